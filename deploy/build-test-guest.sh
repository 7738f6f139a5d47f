#!/usr/bin/env bash
# Builds novalet's small test guest from Debian packages only:
#
#   OUTDIR/vmlinuz             Debian's cloud kernel (linux-image-cloud-amd64's target;
#                              Debian 12's and 13's alike)
#   OUTDIR/initramfs.cpio.gz   busybox + the few modules it needs + deploy/test-guest/init
#   OUTDIR/disk.qcow2          a disk BIOS boots by itself (MBR, FAT partition, syslinux)
#   OUTDIR/manifest.json       kernel package and version, files and their sha256, builderHash
#
# Usage: deploy/build-test-guest.sh [OUTDIR]    (default /var/lib/novalet/test-guest)
#
# Idempotent: when OUTDIR's manifest has this builder's builderHash (sha256 of
# this script and of deploy/test-guest/*) and the kernel package version apt
# offers now, and its files are intact, it does nothing. Otherwise it builds in
# a temporary folder beside OUTDIR and renames that into place, under a lock,
# so nobody ever sees a half-built guest. Needs root (apt-get download works
# unprivileged too, but OUTDIR's default is under /var/lib) and the packages in
# deploy/debian-packages.txt (busybox-static, cpio, qemu-utils, syslinux,
# syslinux-common, mtools, dosfstools, fdisk).
set -euo pipefail

say() { echo "build-test-guest: $*" >&2; }
die() { say "error: $*"; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/$(basename "${BASH_SOURCE[0]}")"
guestsrc="$here/test-guest"
outdir=${1:-/var/lib/novalet/test-guest}
outdir=$(realpath -m "$outdir")
metapackage=linux-image-cloud-amd64
# Modules the guest loads (dependencies are added from modules.dep):
# virtio disks, and the ACPI power button seen through evdev.
modules=(virtio_pci virtio_blk button evdev)

for tool in apt-cache apt-get dpkg-deb busybox cpio gzip qemu-img mkfs.vfat syslinux mcopy sfdisk sha256sum flock; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is missing; install the packages in deploy/debian-packages.txt (bash deploy/install-system-packages.sh)"
done
[ -f /usr/lib/syslinux/mbr/mbr.bin ] || die "/usr/lib/syslinux/mbr/mbr.bin is missing; install syslinux-common"
[ -x /bin/busybox ] || die "/bin/busybox is missing; install busybox-static"

# builderHash: this script and every file of the guest's sources, by name.
builder_hash=$(
  cd "$here"
  { sha256sum "build-test-guest.sh"; find test-guest -type f | LC_ALL=C sort | xargs -d '\n' sha256sum; } | sha256sum | cut -d' ' -f1
)

# The kernel package the metapackage depends on, and its version: one
# apt-cache call (about 1 s here: Debian's images keep no pkgcache.bin).
kernel_dependency() {
  apt-cache show --no-all-versions "$metapackage" 2>/dev/null |
    sed -n 's/^Depends: .*\(linux-image-[^ ,|]*\)\( (= \([^)]*\))\)\{0,1\}.*/\1 \3/p' | head -n 1
}
dep=$(kernel_dependency || true)
if [ -z "$dep" ]; then
  say "apt does not know $metapackage; running apt-get update"
  apt-get update -qq >&2
  dep=$(kernel_dependency || true)
  [ -n "$dep" ] || die "apt-cache finds no kernel package that $metapackage depends on"
fi
read -r kpkg kver <<<"$dep"
if [ -z "${kver:-}" ]; then
  kver=$(apt-cache policy "$kpkg" | sed -n 's/^ *Candidate: //p')
  { [ -n "$kver" ] && [ "$kver" != "(none)" ]; } || die "apt-cache has no candidate version of $kpkg"
fi

# Is OUTDIR already this build? (manifest fields, then the files' sha256)
up_to_date() {
  local m="$outdir/manifest.json"
  [ -f "$m" ] || return 1
  grep -q "\"builderHash\": \"$builder_hash\"" "$m" || return 1
  grep -q "\"kernelPackage\": \"$kpkg\"" "$m" || return 1
  grep -q "\"kernelPackageVersion\": \"$kver\"" "$m" || return 1
  local name sum seen=0
  while read -r name sum; do
    [ -f "$outdir/$name" ] || return 1
    [ "$(sha256sum "$outdir/$name" | cut -d' ' -f1)" = "$sum" ] || return 1
    seen=$((seen + 1))
  done < <(sed -n 's/^ *"\([a-z0-9.]*\)": { "sha256": "\([0-9a-f]\{64\}\)".*/\1 \2/p' "$m")
  [ "$seen" -eq 3 ]
}

if up_to_date; then
  say "$outdir is up to date ($kpkg $kver, builder $builder_hash); nothing to do"
  exit 0
fi

parent=$(dirname "$outdir")
mkdir -p "$parent"
# One builder at a time per OUTDIR; a second one waits, then finds it built.
exec 9>"$outdir.lock"
flock 9
if up_to_date; then
  say "$outdir was built meanwhile; nothing to do"
  exit 0
fi

work=$(mktemp -d "$parent/.test-guest-build.XXXXXX")
old=
cleanup() {
  rm -rf "$work"
  [ -z "$old" ] || rm -rf "$old"
}
trap cleanup EXIT
chmod 755 "$work"
stage="$work/out"
mkdir "$stage"
start=$(date +%s)
say "building the test guest into $outdir ($kpkg $kver; builder $builder_hash)"

# --- the kernel package: downloaded and unpacked, nothing installed --------
mkdir "$work/deb" "$work/kernel"
chmod 777 "$work/deb" # apt-get download drops privileges to _apt
say "apt-get download $kpkg=$kver"
(cd "$work/deb" && apt-get download -q "$kpkg=$kver" >&2)
deb=$(find "$work/deb" -name '*.deb' | head -n 1)
[ -n "$deb" ] || die "apt-get download left no .deb"
say "unpacking $(basename "$deb")"
dpkg-deb -x "$deb" "$work/kernel"
vmlinuz=$(find "$work/kernel/boot" -maxdepth 1 -name 'vmlinuz-*' | head -n 1)
[ -n "$vmlinuz" ] || die "$kpkg has no /boot/vmlinuz-*"
krel=${vmlinuz##*/vmlinuz-}
# The module tree: /lib/modules in Debian 12's kernel packages, /usr/lib/modules
# in Debian 13's (merged /usr). kbase is what depmod -b takes: KBASE/lib/modules.
kmods=
for kbase in "$work/kernel/usr" "$work/kernel"; do
  if [ -d "$kbase/lib/modules/$krel" ]; then
    kmods="$kbase/lib/modules/$krel"
    break
  fi
done
[ -n "$kmods" ] || die "$kpkg has neither /usr/lib/modules/$krel nor /lib/modules/$krel"
cp "$vmlinuz" "$stage/vmlinuz"

# --- modules and their dependencies, in load order --------------------------
if [ ! -f "$kmods/modules.dep" ]; then
  say "generating modules.dep for $krel (busybox depmod)"
  busybox depmod -b "$kbase" "$krel"
fi
declare -A dep_of=() path_of=() loaded=()
while IFS= read -r line; do
  mod=${line%%:*}
  base=${mod##*/}
  base=${base%%.ko*}
  base=${base//-/_}
  path_of[$base]=$mod
  dep_of[$base]=${line#*:}
done <"$kmods/modules.dep"
order=()
add_module() { # add_module NAME: its dependencies first, then itself
  local name=${1//-/_} dep depname
  [ -n "${loaded[$name]:-}" ] && return 0
  if [ -z "${path_of[$name]:-}" ]; then
    grep -q "/${name}.ko" "$kmods/modules.builtin" 2>/dev/null && return 0
    die "module $name is neither in modules.dep nor built in"
  fi
  loaded[$name]=1
  for dep in ${dep_of[$name]}; do
    depname=${dep##*/}
    depname=${depname%%.ko*}
    add_module "$depname"
  done
  order+=("${path_of[$name]}")
}
for m in "${modules[@]}"; do add_module "$m"; done

root="$work/root"
mkdir -p "$root"/{bin,sbin,dev,proc,sys,run,tmp,var/log,etc/novalet,etc/acpi/PWRF}
mkdir -p "$root/lib/modules/$krel"
: >"$root/etc/novalet/modules"
for ko in "${order[@]}"; do
  dest=${ko%.xz}
  dest=${dest%.zst}
  dest=${dest%.gz}
  mkdir -p "$root/lib/modules/$krel/$(dirname "$dest")"
  # Debian 13's modules are xz-compressed; busybox decompresses them when
  # xz-utils (not in a minimal Debian) is missing.
  case "$ko" in
    *.ko.xz) if command -v xz >/dev/null 2>&1; then xz -dc "$kmods/$ko"; else busybox xzcat "$kmods/$ko"; fi >"$root/lib/modules/$krel/$dest" ;;
    *.ko.zst) command -v zstd >/dev/null 2>&1 || die "$ko is zstd-compressed and zstd is missing; install zstd"
      zstd -qdc "$kmods/$ko" >"$root/lib/modules/$krel/$dest" ;;
    *.ko.gz) gzip -dc "$kmods/$ko" >"$root/lib/modules/$krel/$dest" ;;
    *) cp "$kmods/$ko" "$root/lib/modules/$krel/$dest" ;;
  esac
  echo "$dest" >>"$root/etc/novalet/modules"
done
say "modules, in load order: $(tr '\n' ' ' <"$root/etc/novalet/modules")"

# --- busybox, /init, the power button action --------------------------------
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
for applet in poweroff reboot halt init; do ln -sf ../bin/busybox "$root/sbin/$applet"; done
install -m 0755 "$guestsrc/init" "$root/init"
install -m 0755 "$guestsrc/acpi-power-button" "$root/etc/acpi/PWRF/00000080"

say "packing initramfs.cpio.gz (newc, gzip)"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | gzip -9 -n >"$stage/initramfs.cpio.gz"

# --- disk.qcow2: MBR (syslinux mbr.bin), one active FAT partition at 1 MiB --
# holding syslinux, vmlinuz, the initramfs and syslinux.cfg. No loop device or
# mount: mkfs.vfat --offset, syslinux --offset and mtools work on the file.
kbytes=$(( ($(stat -c %s "$stage/vmlinuz") + $(stat -c %s "$stage/initramfs.cpio.gz")) / 1024 ))
part_mib=$(( kbytes / 1024 + 8 ))
disk_mib=$(( part_mib + 1 ))
raw="$work/disk.raw"
say "making disk.qcow2 (${disk_mib} MiB: MBR, FAT partition, syslinux)"
truncate -s "${disk_mib}M" "$raw"
echo 'start=2048, type=c, bootable' | sfdisk --quiet --no-reread --no-tell-kernel "$raw" >&2
mkfs.vfat -n NOVALET-TG --offset=2048 "$raw" $(( part_mib * 1024 )) >/dev/null
syslinux --install --offset $(( 2048 * 512 )) "$raw"
export MTOOLS_SKIP_CHECK=1
mcopy -i "$raw@@1M" "$stage/vmlinuz" ::vmlinuz
mcopy -i "$raw@@1M" "$stage/initramfs.cpio.gz" ::initramfs.cpio.gz
mcopy -i "$raw@@1M" "$guestsrc/syslinux.cfg" ::syslinux.cfg
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$raw" bs=440 count=1 conv=notrunc status=none
qemu-img convert -q -f raw -O qcow2 "$raw" "$stage/disk.qcow2"

# --- manifest.json ----------------------------------------------------------
sha() { sha256sum "$stage/$1" | cut -d' ' -f1; }
size() { stat -c %s "$stage/$1"; }
cat >"$stage/manifest.json" <<JSON
{
  "kernelPackage": "$kpkg",
  "kernelPackageVersion": "$kver",
  "kernelRelease": "$krel",
  "builderHash": "$builder_hash",
  "kernelCommandLine": "console=ttyS0 novalet.name=NAME",
  "diskKernelCommandLine": "$(sed -n 's/^ *APPEND //p' "$guestsrc/syslinux.cfg")",
  "modules": [$(sed 's/.*/"&"/' "$root/etc/novalet/modules" | paste -sd, | sed 's/,/, /g')],
  "files": {
    "vmlinuz": { "sha256": "$(sha vmlinuz)", "size": $(size vmlinuz) },
    "initramfs.cpio.gz": { "sha256": "$(sha initramfs.cpio.gz)", "size": $(size initramfs.cpio.gz) },
    "disk.qcow2": { "sha256": "$(sha disk.qcow2)", "size": $(size disk.qcow2) }
  }
}
JSON
chmod 755 "$stage"
chmod 644 "$stage"/*

# --- into place: the old OUTDIR (if any) goes aside, the new one is renamed in
if [ -e "$outdir" ]; then
  old="$work/previous"
  mv "$outdir" "$old"
fi
mv "$stage" "$outdir"
say "done in $(( $(date +%s) - start )) s: $outdir"
