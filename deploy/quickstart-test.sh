#!/usr/bin/env bash
# Quick start, command two: set up, then the whole test suite (unit,
# integration against real libvirt/QEMU/RabbitMQ, end to end).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bash "$top/deploy/setup.sh" >&2
cd "$top"
exec npx vitest run "$@"
