#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need, then runs the unit,
# integration and end-to-end tests. Safe to run again; exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v cc >/dev/null || need_pkgs+=(gcc)
command -v ip >/dev/null || need_pkgs+=(iproute2)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing: ${need_pkgs[*]}"
    apt-get update -qq && apt-get install -y -qq "${need_pkgs[@]}"
  else
    echo "missing packages: ${need_pkgs[*]} (install them or run as root)" >&2
  fi
fi

echo "== unit and integration tests"
cargo test --no-fail-fast 2>&1

echo "== end to end: demo blackout of site a (fast profile)"
cargo run --quiet -- demo --fast --blackout a --at 2 --exit-after-verdict | tail -n 1 | tee /tmp/quorate-demo-result.json
grep -q '"verdict":"down"' /tmp/quorate-demo-result.json
echo "end-to-end: 1 passed, 0 failed"
