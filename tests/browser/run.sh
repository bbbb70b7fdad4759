#!/usr/bin/env bash
# End-to-end browser test of the wschat web client.
# Installs what it needs (Chromium, npm packages), builds the server and runs
# the tests with node's own test runner. Works from any directory; exits
# non-zero when anything fails.
set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd -- "$HERE/../.." && pwd)"
export DEBIAN_FRONTEND=noninteractive

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

if [ ! -x /usr/bin/chromium ]; then
  echo "==> installing Chromium"
  as_root apt-get update -q
  as_root apt-get install -y -q chromium
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "==> installing Node.js and npm"
  as_root apt-get update -q
  as_root apt-get install -y -q nodejs npm
fi

echo "==> npm ci (tests/browser)"
(cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)

echo "==> cargo build --release"
(cd "$ROOT" && cargo build --release)
export WSCHAT_BIN="${WSCHAT_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/wschat}"

echo "==> running browser tests"
cd "$HERE"
# page-logic: the page's pure helpers, in node. e2e, rooms, identity and
# inspect: the pages in Chromium.
exec node --test --test-concurrency=1 --test-reporter=spec page-logic.test.mjs e2e.test.mjs rooms.test.mjs \
    identity.test.mjs inspect.test.mjs
