#!/usr/bin/env bash
# Installs the Debian packages listed in deploy/debian-packages.txt, and the
# system accounts libvirt's QEMU driver insists on. Idempotent: does nothing
# (not even `apt-get update`) when everything is already there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

mapfile -t packages < <(grep -v '^[[:space:]]*#' "$here/debian-packages.txt" | grep -v '^[[:space:]]*$')
missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "novalet: these Debian packages are missing: ${missing[*]}. Run this as root (or install them) and try again." >&2
    exit 1
  fi
  echo "novalet: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# libvirt's embedded QEMU driver refuses to start without a libvirt-qemu user
# and group (Debian's libvirt-daemon-system would create them; we do not need
# the daemon). System accounts only: an ordinary 'kvm' group breaks udev later.
if [ "$(id -u)" -eq 0 ]; then
  getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
  getent passwd libvirt-qemu >/dev/null || useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
fi
