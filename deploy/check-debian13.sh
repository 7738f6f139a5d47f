#!/usr/bin/env bash
# Checks novalet on Debian 13 (trixie) from a Debian 12 (or later) host, in a
# chroot: builds (once, cached) a minimal trixie root with trixie's own nodejs,
# npm and git, clones the project into it fresh, and runs the README's two
# commands there as root: `npm start` and `npm test`.
#
# Usage: deploy/check-debian13.sh [SOURCE_REPO [REVISION]]
#   SOURCE_REPO  a git repository to clone (default: the one this script is in)
#   REVISION     what to check out in the clone (default: HEAD)
#
# Environment (all optional):
#   NOVALET_D13_BASE           work folder (default /var/tmp/novalet-debian13);
#                              the root is BASE/root, the logs BASE/*.log
#   NOVALET_D13_START_TIMEOUT  seconds for `npm start` (default 1800)
#   NOVALET_D13_TEST_TIMEOUT   seconds for `npm test`  (default 2400)
#   NOVALET_D13_REBUILD=1      throw the cached root away and build it again
#
# Exit status: 0 when both commands pass, 1 when either fails, 2 on a problem
# of the check itself (no mirror, debootstrap failed, ...).
# Needs root. Leaves no mounts and no processes behind, whatever happens.
set -euo pipefail

say() { echo "check-debian13: $*" >&2; }
die() { say "error: $*"; exit 2; }

[ "$(id -u)" -eq 0 ] || die "run this as root (debootstrap, chroot and mounts need it)"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=${1:-$(git -C "$here" rev-parse --show-toplevel)}
rev=${2:-HEAD}
base=${NOVALET_D13_BASE:-/var/tmp/novalet-debian13}
base=$(realpath -m "$base")
root="$base/root"
# The cleanup kills every process whose root is $root and unmounts everything
# under it: $root must be a folder of its own, never "/".
[ "$base" != / ] || die "NOVALET_D13_BASE must not be /"
stamp="$base/root.complete" # written last: its presence means the root is whole
start_timeout=${NOVALET_D13_START_TIMEOUT:-1800}
test_timeout=${NOVALET_D13_TEST_TIMEOUT:-2400}
suite=trixie
clone=/srv/novalet # the project's clone, inside the root
# trixie's own packages this check needs before the project's set-up runs
root_packages=(ca-certificates nodejs npm git)

# The source and revision, checked before anything is built.
git -C "$src" rev-parse --git-dir >/dev/null 2>&1 || die "$src is not a git repository"
commit=$(git -C "$src" rev-parse --verify "$rev^{commit}" 2>/dev/null) || die "$src has no revision $rev"

# --- cleanup: runs on every exit; kills what runs in the root, then unmounts --
# Processes whose root directory is the chroot: by path, and by device and
# inode (a process in a mount namespace of its own, unshare -m, shows another path).
root_id=
chroot_pids() {
  local p pid link
  [ -n "$root" ] && [ "$root" != / ] || return 0
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = "$$" ] && continue
    link=$(readlink "$p/root" 2>/dev/null) || continue
    if [ "$link" = "$root" ] || [[ "$link" == "$root"/* ]] ||
      { [ -n "$root_id" ] && [ "$(stat -L -c %d:%i "$p/root" 2>/dev/null)" = "$root_id" ]; }; then
      echo "$pid"
    fi
  done
}
kill_chroot_processes() {
  local pids i
  pids=$(chroot_pids)
  [ -n "$pids" ] || return 0
  say "stopping processes left in the root: $(echo $pids)"
  kill -TERM $pids 2>/dev/null || true
  for i in $(seq 1 20); do
    sleep 0.5
    pids=$(chroot_pids)
    [ -n "$pids" ] || return 0
  done
  say "killing: $(echo $pids)"
  kill -KILL $pids 2>/dev/null || true
  sleep 1
}
# Every mount at or below the root, most recent first (mountinfo is in mount order).
root_mounts() {
  [ -n "$root" ] && [ "$root" != / ] || return 0
  awk -v r="$root" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo | tac
}
unmount_root() {
  local m pass
  for pass in 1 2 3; do
    [ -n "$(root_mounts)" ] || return 0
    while read -r m; do
      [ -n "$m" ] || continue
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || say "cannot unmount $m"
    done < <(root_mounts)
  done
  [ -z "$(root_mounts)" ] || say "mounts left under $root: $(root_mounts | tr '\n' ' ')"
}
cleaned=
step_pid=
cleanup() {
  [ -z "$cleaned" ] || return 0
  cleaned=1
  kill_chroot_processes
  [ -z "$step_pid" ] || { kill "$step_pid" 2>/dev/null; wait "$step_pid" 2>/dev/null; } || true
  unmount_root
}
trap 'rc=$?; cleanup; exit $rc' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --- the mirror, from this host's apt sources ---------------------------------
# The URI of the host's main archive (suite = the host's codename, e.g.
# bookworm), and of its security archive (codename-security), from one-line
# sources.list files and deb822 .sources files alike.
host_codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$host_codename" ] || die "cannot tell this host's Debian codename from /etc/os-release"
apt_uris() { # apt_uris SUITE: the deb URIs apt uses for SUITE on this host
  local want=$1 f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [options] URI SUITE COMPONENT...
    sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk -v s="$want" '$1 == "deb" && $3 == s { print $2 }'
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v s="$want" '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " s " ") && tolower(enabled) != "no")
          { n = split(uris, u, " "); for (i = 1; i <= n; i++) print u[i] }
        types = uris = suites = ""; enabled = "yes"
      }
      BEGIN { enabled = "yes" }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[A-Za-z-]+:/ {
        key = tolower($1); sub(/:$/, "", key); val = $0; sub(/^[^:]*:[ \t]*/, "", val)
        if (key == "types") types = val; else if (key == "uris") uris = val
        else if (key == "suites") suites = val; else if (key == "enabled") enabled = val
        field = key; next
      }
      /^[ \t]/ { if (field == "uris") uris = uris " " $0; else if (field == "suites") suites = suites " " $0; next }
      END { flush() }' "$f"
  done
}
mirror=$(apt_uris "$host_codename" | head -n 1)
mirror=${mirror%/}
[ -n "$mirror" ] || die "found no 'deb' source for suite $host_codename in /etc/apt/sources.list or /etc/apt/sources.list.d/"
security=$(apt_uris "$host_codename-security" | head -n 1)
security=${security%/}
say "mirror $mirror${security:+, security $security} (from this host's apt sources)"

# --- the trixie root: built once, reused while its stamp matches --------------
# The stamp holds what the root was built from; any change rebuilds it.
want_stamp=$(printf '%s\n' "suite=$suite" "mirror=$mirror" "security=$security" "packages=${root_packages[*]}" "layout=2")
mkdir -p "$base"
chmod 755 "$base"
timings="$base/timings.txt"           # this run's phases
root_timings="$base/root-timings.txt" # the phases of the root's build (kept with it)
: >"$timings"
note_time() { echo "$1: $2 s" >>"${3:-$timings}"; say "$1 took $2 s"; }

bind() { # bind SRC DEST [rbind]: a private (slave for rbind) bind mount in the root
  mkdir -p "$2"
  if [ "${3:-}" = rbind ]; then
    mount --rbind "$1" "$2"
    mount --make-rslave "$2"
  else
    mount --bind "$1" "$2"
    mount --make-private "$2"
  fi
}
mount_root() {
  # The root onto itself first: a mount point at the chroot's / is what lets
  # `unshare -m` (and libvirt) change its propagation inside.
  bind "$root" "$root"
  root_id=$(stat -L -c %d:%i "$root")
  bind /proc "$root/proc"
  # /sys with its submounts (the cgroup hierarchies libvirt uses), as a slave
  # so that unmounting it here never unmounts the host's.
  bind /sys "$root/sys" rbind
  bind /dev "$root/dev"
  bind /dev/pts "$root/dev/pts"
  if mountpoint -q /dev/shm; then bind /dev/shm "$root/dev/shm"; fi
}
# What the root takes from the host on every run: name resolution, /etc/hosts
# and the host's extra CA certificates (a proxy's own CA, for npm).
refresh_root_files() {
  cp -L /etc/hosts "$root/etc/hosts"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  mkdir -p "$root/usr/local/share/ca-certificates"
  local crt
  for crt in /usr/local/share/ca-certificates/*; do
    [ -e "$crt" ] || continue
    cp -rL "$crt" "$root/usr/local/share/ca-certificates/"
  done
  if [ -x "$root/usr/sbin/update-ca-certificates" ]; then
    chroot "$root" update-ca-certificates >/dev/null
  fi
}
# The environment of everything run in the root: clean, plus the host's proxy, if any.
root_env=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive NO_COLOR=1
  NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt)
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  [ -z "${!v:-}" ] || root_env+=("$v=${!v}")
done
in_root() { # in_root COMMAND...: COMMAND in the root, in that environment
  chroot "$root" /usr/bin/env -i "${root_env[@]}" "$@"
}

if [ "${NOVALET_D13_REBUILD:-}" = 1 ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want_stamp" ]; then
  rm -f "$stamp" "$root_timings"
  if [ -e "$root" ]; then
    say "removing the incomplete or outdated root $root"
    kill_chroot_processes
    unmount_root
    [ -z "$(root_mounts)" ] || die "cannot remove $root: something is still mounted under it"
    rm -rf --one-file-system "$root"
  fi
  if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  say "debootstrap --variant=minbase $suite $root $mirror (log: $base/debootstrap.log)"
  t0=$SECONDS
  if ! debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$base/debootstrap.log" 2>&1; then
    tail -n 20 "$base/debootstrap.log" >&2
    unmount_root
    die "debootstrap failed; see $base/debootstrap.log"
  fi
  unmount_root # debootstrap's own /proc and /sys, if it left them
  note_time debootstrap $((SECONDS - t0)) "$root_timings"

  # Packages never start services in the root.
  printf '#!/bin/sh\n# no service starts in this chroot\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  {
    echo "deb $mirror $suite main"
    echo "deb $mirror $suite-updates main"
    [ -z "$security" ] || echo "deb $security $suite-security main"
  } >"$root/etc/apt/sources.list"
  mount_root
  refresh_root_files
  say "installing ${root_packages[*]} in the root (log: $base/packages.log)"
  t0=$SECONDS
  if ! { in_root apt-get update -q && in_root apt-get install -y -q --no-install-recommends "${root_packages[@]}"; } >"$base/packages.log" 2>&1; then
    tail -n 20 "$base/packages.log" >&2
    die "installing ${root_packages[*]} failed; see $base/packages.log"
  fi
  note_time "package install (${root_packages[*]})" $((SECONDS - t0)) "$root_timings"
  refresh_root_files # ca-certificates is there now: take in the host's extra CAs
  echo "$want_stamp" >"$stamp"
else
  say "reusing the root $root (built $(date -r "$stamp" '+%F %T'))"
  mount_root
  refresh_root_files
fi
say "in the root: node $(in_root node --version), npm $(in_root npm --version), $(in_root git --version)"

# --- the project: a fresh clone each run --------------------------------------
rm -rf --one-file-system "$root$clone"
mkdir -p "$(dirname "$root$clone")"
git clone -q --no-hardlinks "$src" "$root$clone"
git -C "$root$clone" checkout -q --detach "$commit"
say "cloned $src at $commit ($(git -C "$root$clone" log -1 --format=%s | cut -c1-70)) into $clone"

# --- the README's two commands ------------------------------------------------
# run_step NAME TIMEOUT COMMAND...: COMMAND in the clone, output (each line with
# the seconds since the step began) to BASE/NAME.log; sets step_rc.
run_step() {
  local name=$1 limit=$2 log="$base/$1.log" t0=$SECONDS
  shift 2
  say "running '$*' in the root (timeout ${limit} s; log: $log)"
  # In the background and waited for, so that a signal to this script is
  # handled at once (its trap stops everything in the root).
  (
    timeout --kill-after=30 "$limit" chroot "$root" /usr/bin/env -i "${root_env[@]}" sh -c 'cd "$1" && shift && exec "$@"' sh "$clone" "$@" </dev/null 2>&1 |
      while IFS= read -r line || [ -n "$line" ]; do printf '[%4d s] %s\n' $((SECONDS - t0)) "$line"; done >"$log"
    exit "${PIPESTATUS[0]}"
  ) &
  step_pid=$!
  set +e
  wait "$step_pid"
  step_rc=$?
  set -e
  step_pid=
  [ "$step_rc" -ne 124 ] || echo "[timeout] '$*' was stopped after $limit s" >>"$log"
  note_time "$name" $((SECONDS - t0))
  kill_chroot_processes # whatever the command left running (brokers, QEMU, ...)
}
# The root shares /proc, the pid space and the network with the host, and the
# tests' paths (/var/tmp/novalet-test-libvirt, ...) are the same on both sides:
# a novalet test run on the host at the same time makes both see each other's
# QEMU (the tests' "no QEMU of ours is left" checks fail) and compete for CPU.
host_test_runs() {
  local p link cmd
  for p in /proc/[0-9]*; do
    link=$(readlink "$p/root" 2>/dev/null) || continue
    [ "$link" = / ] || continue
    cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
    case "$cmd" in *grep*) continue ;; *vitest*|*novalet-test-libvirt*) echo "${p#/proc/}" ;; esac
  done
}
warn_host_tests() {
  local pids
  pids=$(host_test_runs)
  [ -z "$pids" ] || say "warning: a novalet test run is active on the host (pids $(echo $pids)); results here and there may be affected"
}
warn_host_tests
run_step npm-start "$start_timeout" npm start
start_rc=$step_rc
warn_host_tests
run_step npm-test "$test_timeout" npm test
test_rc=$step_rc
overlap=$(host_test_runs)

# --- summary ------------------------------------------------------------------
{
  echo
  echo "=== Debian 13 check of $src at $commit ==="
  echo "root: $root ($(in_root sh -c '. /etc/os-release; echo "$PRETTY_NAME"'), node $(in_root node --version), npm $(in_root npm --version))"
  [ ! -f "$root_timings" ] || sed "s/^/root build, $(date -r "$stamp" '+%F %T'): /" "$root_timings"
  cat "$timings"
  # the phases inside npm start, from its log: Debian packages, npm ci, tsc, test guest
  grep -E '\] (novalet: installing|added [0-9]+ packages|build-test-guest: (building|done|.*up to date)|(PASS|FAIL|WARN) +KVM API)' "$base/npm-start.log" | cut -c1-110 | sed 's/^/  npm start at /' || true
  echo
  echo "--- npm start: exit $start_rc (log $base/npm-start.log); last lines:"
  tail -n 8 "$base/npm-start.log"
  echo
  echo "--- npm test: exit $test_rc (log $base/npm-test.log); last lines:"
  tail -n 12 "$base/npm-test.log"
  echo
  summary=$(grep -E '[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped' "$base/npm-test.log" | tail -n 1 | sed 's/^\[ *[0-9]* s\] //')
  echo "vitest: ${summary:-no 'N passed, N failed, N skipped' line (the suite did not finish)}"
  grep -E '^\[ *[0-9]+ s\] +FAIL ' "$base/npm-test.log" | sed 's/^\[ *[0-9]* s\] *//' | sort -u | head -n 60 | sed 's/^/  /' || true
  [ -z "$overlap" ] || echo "warning: a novalet test run was active on the host at the end (pids $(echo $overlap)): failures about leftover QEMU or timing may come from it"
  echo "npm start: $([ "$start_rc" -eq 0 ] && echo PASS || echo "FAIL (exit $start_rc)"); npm test: $([ "$test_rc" -eq 0 ] && echo PASS || echo "FAIL (exit $test_rc)")"
} | tee "$base/summary.txt"

[ "$start_rc" -eq 0 ] && [ "$test_rc" -eq 0 ] || exit 1
exit 0
