#!/usr/bin/env bash
# The package step of CI (tests/run-all.sh): builds the .deb (packaging/build-deb.sh), installs
# it with dpkg, checks what it installed (the unit with `systemd-analyze verify` and its
# exposure with `systemd-analyze security`, the user, the data directory, `quorate --version`,
# the man page, the completions, the recipes and an example fleet), then purges it. Needs
# root for dpkg; without it only the package is built. Exits non-zero on the first failure.
# QUORATE_PACKAGE_CI=0 skips the step. Prints the time each part took.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${QUORATE_PACKAGE_CI:-1}" = 0 ]; then
  echo "package: skipped (QUORATE_PACKAGE_CI=0)"
  exit 0
fi
# The exposure figure the unit must not exceed (systemd-analyze security: 0 is best, 10 worst).
max_exposure=${QUORATE_MAX_EXPOSURE:-2.5}

t0=$(date +%s)
# The test suite has built the debug binary already; packaging it saves a release build.
deb=$(QUORATE_DEB_PROFILE=${QUORATE_DEB_PROFILE:-dev} packaging/build-deb.sh | tail -n 1)
t1=$(date +%s)
echo "package: built $deb ($(du -k "$deb" | cut -f1) KiB) in $((t1 - t0)) s"

if [ "$(id -u)" != 0 ] || ! command -v dpkg >/dev/null; then
  echo "package: SKIPPED install checks (they need root and dpkg)"
  exit 0
fi

need=()
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v adduser >/dev/null || need+=(adduser)
[ -x /usr/bin/deb-systemd-helper ] || need+=(init-system-helpers)
if [ ${#need[@]} -gt 0 ]; then
  echo "package: installing ${need[*]}"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

purge() { dpkg --purge quorate >/dev/null 2>&1 || true; }
trap purge EXIT
fail() { echo "package: FAILED: $*" >&2; exit 1; }

dpkg -i "$deb" >/dev/null
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
got=$(/usr/bin/quorate --version)
[ "$got" = "quorate $version" ] || fail "installed quorate --version says '$got', not 'quorate $version'"

unit=$(dpkg -L quorate | grep '/systemd/system/quorate.service$') || fail "no quorate.service in the package"
# An unknown or misspelt key is only a warning to systemd-analyze: any output fails.
verify=$(systemd-analyze verify "$unit" 2>&1) && [ -z "$verify" ] ||
  { echo "$verify" >&2; fail "systemd-analyze verify $unit"; }
security=$(systemd-analyze security --offline=true "$unit" 2>&1) || true
exposure=$(echo "$security" | sed -n 's/.*Overall exposure level for quorate.service: *\([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || { echo "$security" >&2; fail "no exposure figure from systemd-analyze security"; }
awk -v e="$exposure" -v m="$max_exposure" 'BEGIN { exit !(e <= m) }' ||
  { echo "$security" >&2; fail "exposure $exposure is above $max_exposure"; }

getent passwd quorate >/dev/null || fail "no quorate user"
[ "$(stat -c %U:%G:%a /var/lib/quorate)" = quorate:quorate:750 ] ||
  fail "/var/lib/quorate is $(stat -c %U:%G:%a /var/lib/quorate), not quorate:quorate:750"
[ "$(stat -c %U:%G:%a /etc/quorate)" = root:quorate:750 ] || fail "/etc/quorate is not root:quorate:750"
for f in /usr/share/man/man1/quorate.1.gz /usr/share/man/man1/quorate-run.1.gz \
    /usr/share/bash-completion/completions/quorate /usr/share/zsh/vendor-completions/_quorate \
    /usr/share/fish/vendor_completions.d/quorate.fish /etc/default/quorate \
    /usr/share/quorate/recipes/common.sh /usr/share/doc/quorate/docs/install.md; do
  [ -s "$f" ] || fail "$f is missing or empty"
done
[ -x /usr/share/quorate/recipes/drbd-promote.sh ] || fail "the recipes are not executable"
zcat /usr/share/man/man1/quorate-run.1.gz | grep -qF 'log\-format' || fail "the man page misses --log-format"
/usr/bin/quorate check-config /usr/share/doc/quorate/examples/three-sites.toml >/dev/null ||
  fail "the installed example fleet does not pass check-config"

dpkg --purge quorate >/dev/null
trap - EXIT
[ ! -e /usr/bin/quorate ] || fail "/usr/bin/quorate is still there after the purge"
t2=$(date +%s)
echo "package: unit verified, exposure $exposure (at most $max_exposure), installed, checked and purged in $((t2 - t1)) s"
echo "package: 1 passed, 0 failed"
