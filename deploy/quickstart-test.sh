#!/usr/bin/env bash
# Quick start, command two: set up, then the whole test suite (unit,
# integration against real libvirt/QEMU/RabbitMQ, end to end).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bash "$top/deploy/setup.sh" >&2
cd "$top"
# Tests embed libvirt in vitest's workers: they need fds 3-19 reserved.
exec bash deploy/with-reserved-fds.sh npx vitest run "$@"
