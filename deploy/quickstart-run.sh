#!/usr/bin/env bash
# Quick start, command one: set up, then novalet's main job. For now that is
# `novalet validate` on the sample configuration: what this host can run and why.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bash "$top/deploy/setup.sh" >&2
exec node "$top/dist/cli/main.js" validate --config-file "$top/etc/novalet.conf.sample" "$@"
