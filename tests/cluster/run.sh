#!/usr/bin/env bash
# Cluster mode against a real redis-server: runs every test of
# tests/cluster.rs, including the ones that plain `cargo test` skips
# because a fresh machine has no Redis — the Redis layer (src/cluster/),
# and three wschat nodes (the real binary) sharing one Redis: one order,
# presence, nicknames, a node killed, Redis restarted, resuming; then the
# faults of tests/cluster/fault.rs; then a browser page on one node and a
# raw client on another.
# Each test starts its own redis-server and wschat processes on free
# loopback ports and kills them by PID when it ends.
#
# Usage: tests/cluster/run.sh        (as root to install redis-server if missing)
# Non-interactive; prints PASS or FAIL last; exits non-zero on failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

say() { echo "cluster test: $*"; }

RESULT="FAIL"
finish() {
    local status=$?
    if [[ "$RESULT" == PASS && $status -eq 0 ]]; then
        echo "cluster test: PASS"
    else
        echo "cluster test: FAIL"
        [[ $status -eq 0 ]] && status=1
    fi
    exit $status
}
trap finish EXIT
trap 'exit 130' INT TERM

die() { say "error: $*" >&2; exit 1; }

find_redis() { command -v redis-server 2>/dev/null || { [[ -x /usr/bin/redis-server ]] && echo /usr/bin/redis-server; } || true; }
if [[ -z "$(find_redis)" ]]; then
    [[ "$(id -u)" == 0 ]] || die "redis-server is missing; run as root to install it"
    say "installing redis-server with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends redis-server
    [[ -n "$(find_redis)" ]] || die "redis-server still not found after installing it"
    # The package may start a system-wide Redis on port 6379; the tests do
    # not use it (each starts its own), so it is left as the system has it.
fi
say "using $("$(find_redis)" --version | cut -d' ' -f1-3)"

cd "$ROOT"
cargo test --test cluster -- --include-ignored || die "cargo test --test cluster failed"

# Faults (tests/cluster/fault.rs): Redis restarted with AOF after 5 s
# down, a node stalled 6 s, a 17 MiB message, a paused node catching up
# under 10 MB/s. Release mode (they measure catching up), one at a time;
# the run itself is bounded at 10 minutes.
say "building the fault test (release)"
cargo test --release --test cluster_fault --no-run || die "building the fault test failed"
say "fault test"
fault_started=$SECONDS
timeout 600 cargo test --release --test cluster_fault -- --include-ignored --test-threads=1 --nocapture \
    || die "the fault test failed (tests/cluster/fault.rs)"
say "fault test took $((SECONDS - fault_started)) s"

# A browser page on one node and a raw client on another
# (tests/browser/cluster.test.mjs): Chromium and the npm packages, installed
# as tests/browser/run.sh installs them.
export DEBIAN_FRONTEND=noninteractive
if [[ ! -x /usr/bin/chromium ]]; then
    [[ "$(id -u)" == 0 ]] || die "Chromium is missing; run as root to install it"
    say "installing Chromium"
    apt-get update -q
    apt-get install -y -q chromium
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    [[ "$(id -u)" == 0 ]] || die "Node.js is missing; run as root to install it"
    say "installing Node.js and npm"
    apt-get update -q
    apt-get install -y -q nodejs npm
fi
(cd "$ROOT/tests/browser" && npm ci --no-audit --no-fund --loglevel=error)
cargo build --release
export WSCHAT_BIN="${WSCHAT_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/wschat}"
REDIS_SERVER="$(find_redis)" node --test --test-concurrency=1 --test-reporter=spec \
    "$ROOT/tests/browser/cluster.test.mjs" || die "the browser test across nodes failed"
RESULT=PASS
