#!/usr/bin/env bash
# Everything both quick-start commands need, idempotently: Node.js check,
# Debian packages, npm packages (npm ci, only when the lock file changed),
# the TypeScript build and the test guest.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

if ! command -v node >/dev/null 2>&1; then
  echo "novalet: Node.js 20 or newer is required and 'node' is not on PATH. Install Node.js 20 (Debian 12's own nodejs is 18, too old) and run this again." >&2
  exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "novalet: Node.js $(node --version) is too old; novalet needs Node.js 20 or newer. Install it and run this again." >&2
  exit 1
fi

bash deploy/install-system-packages.sh

stamp=node_modules/.novalet-lock-stamp
lockhash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lockhash" ]; then
  echo "novalet: installing npm packages (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lockhash" > "$stamp"
fi

npx tsc -p tsconfig.json

# The small guest of the KVM self-test, the tests and the quick start
# (does nothing when it is already built from the same sources).
bash deploy/build-test-guest.sh
