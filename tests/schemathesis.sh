#!/usr/bin/env bash
# The REST API against its own OpenAPI document: schemathesis (pinned, from PyPI, in a venv
# under target/) generates requests from GET /v1/openapi.json of a live node and checks every
# answer against the document: status codes, content types, bodies, no 5xx where none is
# documented, refusals of invalid input, the bearer token on operator calls.
#
# It starts its own five-node fleet on 127.246.S.N: site a's Indicator a1, watched by the
# Pingers and Voters b1, b2 (backup site) and c1, c2 (witness), whose failover steps are `exec true`, so drills, failovers, failbacks and maintenance
# all run for real and harmlessly; the operator calls carry the fleet's token. The fleet is
# stopped and its files removed on exit, failure included. Bounded: 5 minutes at most.
#
#   tests/schemathesis.sh            # exits non-zero on any failure schemathesis reports
#   ST_MAX_EXAMPLES=50 tests/schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ST_VERSION=4.32.5
VENV=target/schemathesis-venv
MAX_EXAMPLES=${ST_MAX_EXAMPLES:-30}
BOUND_S=${ST_BOUND_S:-300}

if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$ST_VERSION"; then
  echo "installing schemathesis $ST_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

cargo build --quiet --bin quorate
QUORATE=$PWD/target/debug/quorate

WORK=$(mktemp -d /tmp/quorate-schemathesis.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

node() { # site number site-octet roles
  cat <<EOF
[[node]]
id    = "$1$2"
site  = "$1"
roles = $4
mesh  = "127.246.$3.$2:17401"
api   = "127.246.$3.$2:17501"

EOF
}

{
  cat <<EOF
[timing]
probe_interval_ms = 20
probe_timeout_ms  = 20
retries           = 3
vote_timeout_ms   = 200
hold_down_s       = 1

[[site]]
id = "a"
kind = "primary"

[[site]]
id = "b"
kind = "backup"

[[site]]
id = "c"
kind = "witness"

EOF
  node a 1 1 '["indicator"]'
  for site in "b 2" "c 3"; do
    for n in 1 2; do node ${site% *} $n ${site#* } '["pinger", "voter"]'; done
  done
  cat <<EOF
[[watch]]
site = "a"
by = ["b", "c"]
takeover_delay_s = 2
self_fence_after_s = 1

[[watch.pipeline.step]]
name = "promote-b"
kind = "exec"
timeout_s = 5
argv = ["true"]

[watch.pipeline.step.compensation]
name = "demote-b"
kind = "exec"
timeout_s = 5
argv = ["true"]

[api]
token_file = "$WORK/api.token"

# The fire panel's hook shares the operator token here, so that the run's one bearer header
# reaches it too (a real fleet gives each source a token of its own).
[[alarm_source]]
name = "fire-a"
sites = ["a"]
kind = "http"
token_file = "$WORK/api.token"
EOF
} > "$WORK/fleet.toml"
echo "schemathesis-$RANDOM-$RANDOM" > "$WORK/api.token"
chmod 600 "$WORK/api.token"

"$QUORATE" check-config "$WORK/fleet.toml" >/dev/null
"$QUORATE" certs init --fleet "$WORK/fleet.toml" --ca "$WORK/ca" --dir "$WORK/certs" >/dev/null
for id in a1 b1 b2 c1 c2; do
  "$QUORATE" run --fleet "$WORK/fleet.toml" --node "$id" --certs "$WORK/certs" \
    --data "$WORK/data-$id" >"$WORK/$id.log" 2>&1 &
  PIDS+=($!)
done

# b1 votes on site a: its operator calls are entitled. Wait until every voter sees a up.
API=127.246.2.1:17501
all_up() {
  for addr in 127.246.2.1 127.246.2.2 127.246.3.1 127.246.3.2; do
    curl -fsS "http://$addr:17501/v1/sites/a" 2>/dev/null | grep -q '"opinion":"up"' || return 1
  done
}
for _ in $(seq 1 150); do all_up && break; sleep 0.2; done
all_up || {
  echo "the fleet did not come up; b1's log:" >&2
  tail -n 30 "$WORK/b1.log" >&2
  exit 1
}

echo "== schemathesis $ST_VERSION against http://$API/v1/openapi.json"
status=0
# schemathesis keeps a cache in its working directory: target/, not the source tree.
mkdir -p target/schemathesis
(cd target/schemathesis && timeout --kill-after=10 "$BOUND_S" "../../$VENV/bin/st" \
  --config-file ../../tests/schemathesis.toml run "http://$API/v1/openapi.json" \
  --header "Authorization: Bearer $(cat "$WORK/api.token")" \
  --checks all \
  --max-examples "$MAX_EXAMPLES" \
  --request-timeout 30 \
  --seed "${ST_SEED:-1}" \
  --no-color) || status=$?
for pid in "${PIDS[@]}"; do
  kill -0 "$pid" 2>/dev/null || { echo "a node stopped during the run" >&2; status=1; }
done
# The operator calls got past the token to the node: the examples' failover of a ran.
runs=$(curl -fsS "http://$API/v1/failovers" | grep -o '"id":"a-[0-9]*"' | wc -l)
echo "failover runs of site a led by b1 after the run: $runs"
[ "$runs" -gt 0 ] || { echo "no operator call reached the node" >&2; status=1; }
# And the alarm calls: the examples raised alarms of a at b1.
alarms=$(curl -fsS "http://$API/v1/alarms" | grep -o '"source":"[^"]*"' | wc -l)
echo "alarm calls of site a known at b1 after the run: $alarms"
[ "$alarms" -gt 0 ] || { echo "no alarm call reached the node" >&2; status=1; }
exit "$status"
