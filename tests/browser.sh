#!/usr/bin/env bash
# The status page in a real browser (tests/browser/status_page.mjs): Debian's chromium driven
# headless by playwright-core. Installs playwright-core (pinned) under target/browser, never
# into the repository, builds quorate and runs the test within a time bound. Needs chromium
# and node (tests/run-all.sh installs them with apt); without them it says so and fails.
# With --docs it also writes the README's picture, docs/status-page.png.
set -euo pipefail
cd "$(dirname "$0")/.."

PLAYWRIGHT_VERSION=1.65.2
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "browser test: $tool is missing (Debian packages nodejs and npm)" >&2; exit 1; }
done
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || { echo "browser test: $CHROMIUM is missing (Debian package chromium)" >&2; exit 1; }

deps=target/browser
mkdir -p "$deps"
module="$deps/node_modules/playwright-core"
if [ "$(node -p "require('./$module/package.json').version" 2>/dev/null)" != "$PLAYWRIGHT_VERSION" ]; then
  echo "installing playwright-core $PLAYWRIGHT_VERSION into $deps"
  mkdir -p "$deps"
  # Never let it download a browser of its own: Debian's is used.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$deps" --no-audit --no-fund \
    --no-save --silent "playwright-core@$PLAYWRIGHT_VERSION"
fi

# One run at a time: the fleet's addresses are fixed.
exec 9>"$deps/lock"
flock -w 300 9 || { echo "browser test: another run holds $deps/lock" >&2; exit 1; }

cargo build --quiet --bin quorate
export QUORATE_BIN="$PWD/target/debug/quorate"
export PLAYWRIGHT_CORE="$PWD/$module/index.mjs"
export CHROMIUM
if [ "${1:-}" = --docs ]; then
  export DOCS_SCREENSHOT="$PWD/docs/status-page.png"
fi
# The script stops its nodes on every way out it sees; should it be killed outright, the
# nodes it started (their pids in PIDS_FILE) are stopped here.
export PIDS_FILE="$PWD/$deps/node-pids"
: > "$PIDS_FILE"
WORK_DIR=$(mktemp -d -t quorate-browser-XXXXXX)
export WORK_DIR
stop_nodes() {
  while read -r pid; do
    if [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = quorate ]; then kill -9 "$pid" 2>/dev/null || true; fi
  done < "$PIDS_FILE"
  rm -rf "$WORK_DIR"
}
trap stop_nodes EXIT
# The script bounds itself (120 s); this is the backstop.
timeout --kill-after=10 150 node tests/browser/status_page.mjs
