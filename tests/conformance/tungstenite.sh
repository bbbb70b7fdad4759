#!/usr/bin/env bash
# Calibration of wschat-conformance against an independent server: the
# sync tungstenite peer of the benchmarks (tests/bench/tungstenite-threads,
# whose /echo path echoes), compared with the committed verdicts in
# tests/conformance/expected/tungstenite.txt. Its own Cargo project takes
# about a minute to build from scratch, so this runs from .ci/run rather
# than in `cargo test`.
#
#   tests/conformance/tungstenite.sh            # compare
#   tests/conformance/tungstenite.sh --bless    # rewrite the expected file
set -euo pipefail
cd "$(dirname "$0")/../.."

expected=tests/conformance/expected/tungstenite.txt
peer_dir=tests/bench/tungstenite-threads
cargo build --release --quiet --bin wschat-conformance
cargo build --release --quiet --manifest-path "$peer_dir/Cargo.toml"

log=$(mktemp)
"$peer_dir/target/release/tungstenite-threads-chat" --addr 127.0.0.1:0 2>"$log" &
peer=$!
trap 'kill "$peer" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do
    addr=$(sed -n 's|^Listening on http://\([^/]*\)/.*|\1|p' "$log")
    [ -n "$addr" ] && break
    sleep 0.05
done
[ -n "$addr" ] || { echo "the tungstenite peer did not start"; cat "$log"; exit 1; }

if [ "${1:-}" = --bless ]; then
    { echo "# Expected verdicts of wschat-conformance against tungstenite 0.30 (tests/bench/tungstenite-threads)."
      echo "# Written by tests/conformance/tungstenite.sh --bless; informational cases carry their reason."
    } >"$expected"
    ./target/release/wschat-conformance "ws://$addr/echo" --write-expected "$expected.new" >/dev/null || true
    cat "$expected.new" >>"$expected"
    rm -f "$expected.new"
    echo "wrote $expected"
else
    # The tool's own "N passed, N failed" line is reworded: CI reads such
    # lines as the verdict of the whole run, and tungstenite's failures are
    # expected (the script fails when they differ from the committed file).
    ./target/release/wschat-conformance "ws://$addr/echo" --expect "$expected" | tail -n 4 |
        sed -E 's/^([0-9]+) passed, ([0-9]+) failed$/tungstenite: \1 cases pass, \2 fail, as expected/'
fi
