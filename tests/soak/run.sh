#!/usr/bin/env bash
# Soak test, run by hand (not in CI): hundreds of clients chat for a long
# time while others connect and leave; the server's RSS and thread count
# are sampled every SAMPLE seconds, and the run fails if a message was lost
# or reordered, or if memory kept growing.
#
# Usage: tests/soak/run.sh [SECONDS]     (default 600)
# Environment: CLIENTS (300), SENDERS (30), RATE per sender (3 msg/s),
#              SAMPLE (30 s), CHURN (200 idle clients per churn cycle).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DURATION="${1:-600}"
CLIENTS="${CLIENTS:-300}" SENDERS="${SENDERS:-30}" RATE="${RATE:-3}"
SAMPLE="${SAMPLE:-30}" CHURN="${CHURN:-200}"

ulimit -n 65536 2>/dev/null || true
(cd "$ROOT" && cargo build --release -q)
TMP="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null || true
    jobs -p | xargs -r kill 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
"$TARGET/release/wschat" --addr 127.0.0.1:0 --log-level warn --rate-limit 0 2>"$TMP/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do
    PORT="$(grep -o 'http://127.0.0.1:[0-9]*' "$TMP/server.log" | head -1 | cut -d: -f3 || true)"
    [[ -n "$PORT" ]] && break
    sleep 0.1
done
[[ -n "$PORT" ]] || { echo "soak: server did not start"; exit 1; }
BENCH="$TARGET/release/wschat-bench"
URL="ws://127.0.0.1:$PORT/"

sample() {
    local rss threads
    rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status")"
    threads="$(awk '/^Threads:/ {print $2}' "/proc/$SERVER_PID/status")"
    printf '%6ds  rss %7s kB  threads %5s\n' "$1" "$rss" "$threads"
    echo "$1 $rss $threads" >> "$TMP/samples"
}

echo "soak: $CLIENTS clients, $SENDERS senders at $RATE msg/s each, for $DURATION s; churn $CHURN idle clients"
"$BENCH" fanout --url "$URL" --clients "$CLIENTS" --senders "$SENDERS" --size 200 --rate "$RATE" \
    --duration "$DURATION" --server-pid "$SERVER_PID" > "$TMP/fanout.json" 2> "$TMP/fanout.txt" &
FANOUT=$!
start=$(date +%s)
sample 0
next=$SAMPLE
while kill -0 "$FANOUT" 2>/dev/null; do
    # Churn: idle clients connect, wait, and leave, over and over.
    timeout 60 "$BENCH" connections --url "$URL" --count "$CHURN" --hold 5 > /dev/null 2>&1 || true
    now=$(( $(date +%s) - start ))
    if (( now >= next )); then
        sample "$now"
        next=$(( next + SAMPLE ))
    fi
done
wait "$FANOUT"
sleep 3
sample "$(( $(date +%s) - start ))"
cat "$TMP/fanout.txt"
python3 - "$TMP/fanout.json" "$TMP/samples" <<'PY'
import json, sys
run = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
samples = [tuple(map(int, l.split())) for l in open(sys.argv[2])]
ok = run["lost"] == 0 and run["out_of_order"] == 0
# Memory after the first third of the run may not keep climbing.
third = [s for s in samples if s[0] >= samples[-1][0] / 3]
growth = (third[-1][1] - third[0][1]) if len(third) > 1 else 0
print(f"soak: delivered {run['delivered']}/{run['expected']}, lost {run['lost']}, "
      f"out of order {run['out_of_order']}, p99 {run['p99_ms']} ms; "
      f"RSS {samples[0][1]} -> {samples[-1][1]} kB (growth over the last two thirds {growth} kB); "
      f"threads {samples[0][2]} -> {samples[-1][2]}")
if growth > 20 * 1024:
    ok = False
    print("soak: RSS kept growing")
print("soak: PASS" if ok else "soak: FAIL")
sys.exit(0 if ok else 1)
PY
