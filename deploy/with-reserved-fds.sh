#!/usr/bin/env bash
# Runs a command with file descriptors 3-19 held open on /dev/null, so that
# libvirt can fork QEMU from the Node processes below it (libuv's fork
# handler would otherwise close libvirt's pipe in QEMU's parent; the whole
# story is in hypervisor/libvirt/reserved-low-fds.ts). Child processes
# inherit the reservation, vitest's workers included.
set -euo pipefail
for fd in $(seq 3 19); do
  eval "exec $fd</dev/null"
done
exec "$@"
