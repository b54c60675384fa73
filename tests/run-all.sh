#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need, then runs the unit,
# integration and end-to-end tests. Safe to run again; exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v cc >/dev/null || need_pkgs+=(gcc)
command -v ip >/dev/null || need_pkgs+=(iproute2)
# The chaos testbed (testbed/testbed): BGP routers, nftables faults, REST through curl.
command -v bird >/dev/null || need_pkgs+=(bird2)
command -v nft >/dev/null || need_pkgs+=(nftables)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v jq >/dev/null || need_pkgs+=(jq)
# Actuator backends exercised by tests/actuators.rs.
command -v gobgpd >/dev/null || need_pkgs+=(gobgpd)
command -v exabgp >/dev/null || need_pkgs+=(exabgp)
command -v wireguard-go >/dev/null || need_pkgs+=(wireguard-go)
# The VIP recipes' gratuitous ARP (config/recipes/vip-add.sh, tests/vip_move.rs).
command -v arping >/dev/null || need_pkgs+=(iputils-arping)
command -v criu >/dev/null || [ -x /usr/sbin/criu ] || need_pkgs+=(criu)
command -v wg >/dev/null || need_pkgs+=(wireguard-tools)
# Python's venv, for schemathesis (tests/schemathesis.sh installs it from PyPI).
python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
# promtool, for tests/metrics.rs (a live node's /metrics, the contrib/ alert rules and the
# dashboard's queries). Debian ships it in the prometheus package.
command -v promtool >/dev/null || need_pkgs+=(prometheus)
# The status page's browser test (tests/browser.sh): headless Chromium driven by
# playwright-core, which tests/browser.sh installs with npm under target/browser.
command -v chromium >/dev/null || need_pkgs+=(chromium)
command -v node >/dev/null || need_pkgs+=(nodejs)
command -v npm >/dev/null || need_pkgs+=(npm)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing: ${need_pkgs[*]}"
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
    # Only promtool is wanted: where systemd runs, the package also starts a Prometheus server.
    if [[ " ${need_pkgs[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null; then
      systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
  else
    echo "missing packages: ${need_pkgs[*]} (install them or run as root)" >&2
  fi
fi

# Lint gates, first: formatting and clippy with warnings as errors, over every target. The
# components come with rustup; install them when missing (as root or in CI only, like the
# packages above).
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    if { [ "$(id -u)" = 0 ] || [ "${CI:-}" = true ]; } && command -v rustup >/dev/null; then
      echo "installing the $component component"
      rustup component add "$component"
    else
      echo "missing the $component component: rustup component add $component" >&2
      exit 1
    fi
  fi
done

echo "== cargo fmt --check"
cargo fmt --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

# The chaos scenarios (tests/chaos.rs) run in their own step at the end, with their timelines
# shown; the step below skips them.
export QUORATE_CHAOS_SEPARATE=1

echo "== every target compiles (benchmarks included)"
cargo check --all-targets --quiet

echo "== unit and integration tests"
cargo test --no-fail-fast 2>&1

# The REST API against its OpenAPI document (GET /v1/openapi.json): schemathesis, pinned,
# installed from PyPI into a venv under target/, on a live five-node loopback fleet with the
# operator token; fails on any answer that breaks the contract. About a minute.
echo "== REST contract: schemathesis against a live node"
tests/schemathesis.sh

echo "== end to end: demo blackout of site a (fast profile)"
cargo run --quiet -- demo --fast --blackout a --at 2 --exit-after-verdict | tail -n 1 | tee /tmp/quorate-demo-result.json
grep -q '"verdict":"down"' /tmp/quorate-demo-result.json
echo "end-to-end: 1 passed, 0 failed"

# The status page in headless Chromium against a loopback fleet of quorate run processes:
# every site shows, a blackout of a shows DOWN within 2 s of REST and then its failover run,
# no console error. Screenshots: target/artifacts/.
echo "== status page in a browser"
tests/browser.sh

# The Debian package (packaging/README.md): release build, cargo deb, dpkg -i, systemd-analyze
# verify and security on the installed unit, the installed quorate --version, then a purge.
# Installs cargo-deb when missing (as root or in CI). Without root it only builds the package.
echo "== package: build, install, verify and purge the .deb"
packaging/ci.sh

# Fuzzing (fuzz/README.md): every parser of outside input from its committed corpus, 60 s in
# all; a crash fails the suite. Installs cargo-fuzz when missing (as root or in CI). The
# corpus replay itself (tests/fuzz_corpus.rs) already ran with the tests above.
echo "== fuzz: every target briefly from its committed corpus"
fuzz/ci.sh

# 10,000 seeded faulty worlds through the real node core, failover runs, alarms and a lying
# member included (about a minute on the release build the package step made); exits
# non-zero on any invariant violation and prints the command that replays the seed
# (`quorate sim --seed S --scenario NAME`).
echo "== simulator: 10,000 seeds across every scenario (docs/simulation.md)"
cargo run --release --quiet -- sim --seeds 10000 --scenario all --liars

# Chaos scenarios on the network-namespace testbed, one at a time (they share the testbed's
# namespaces). Needs root; without it the tests say so and pass. Results: target/chaos/*.json.
echo "== chaos scenarios on the namespace testbed"
QUORATE_CHAOS_SEPARATE=0 cargo test --test chaos -- --nocapture --test-threads=1 2>&1
# The VIP move (tests/vip_move.rs): its own namespaces, a client's TCP session across the
# move of a service's virtual IP from a to b; prints the outage. Results: target/chaos/vip-move.json.
echo "== the VIP move on namespaces"
QUORATE_CHAOS_SEPARATE=0 cargo test --test vip_move -- --nocapture 2>&1

# Soak on the namespace testbed (testbed/testbed soak, harness tests/soak): 5 minutes of 5 %
# loss on every WAN path, a random node killed and restarted every 30 s, and one blackout of a
# with its failover, failback and reset. Fails on a false or missed DOWN verdict, a step that
# acted more than once, or a node process whose RSS or open fds moved more than 10 %.
# About 5 minutes plus ~10 s of set-up and teardown. Needs root; without it the step says so.
# Report: target/soak/report.json and target/soak/summary.txt.
echo "== soak: 5 minutes on the namespace testbed"
if [ "$(id -u)" = 0 ] && ip netns list >/dev/null 2>&1; then
  testbed/testbed --dir target/soak/state soak --minutes 5 2>&1
else
  echo "SKIPPED soak: needs root and ip netns"
fi
