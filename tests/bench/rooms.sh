#!/usr/bin/env bash
# Rooms benchmark: many small rooms against one big room at the same
# number of deliveries a second, and the memory an idle room keeps. Run by
# hand, not in CI, on an otherwise idle machine with at least 2 CPUs.
#
#   many-rooms: ROOMS rooms x MEMBERS raw clients, each in its one room
#               (`?rooms=NAME`), every client sending RATE msg/s
#   one-room:   as many raw clients, all in #main, one sender at the rate
#               that gives the same deliveries a second
#   big-room:   the same in a room other than #main (`?rooms=big`; not run
#               by default): one room of everybody without the lobby's log
#   idle-rooms: IDLE rooms filled with HISTORY messages each, then left
#               empty: the server's resident memory per room
#
# Every run gets a fresh server pinned to CPU 0 and the generator pinned to
# CPU 1; ROUNDS rounds, the runs interleaved; the table gives every round
# and the median. Server CPU per delivery: utime+stime from /proc/PID/stat
# from the first message to the end of the drain, divided by the
# deliveries ("whole run": from the server's start, the connections
# included). The load average is printed beside the figures: anything
# else running makes them worthless.
#
# Usage: tests/bench/rooms.sh [--no-build] [--rounds N] [--rooms N] [--members N]
#        [--rate MSGS_PER_SEC] [--duration SECS] [--history N] [--idle-rooms N]
#        [--runs many-rooms,one-room,idle-rooms,big-room] [--out DIR]
# Environment: WSCHAT_BIN, WSCHAT_BENCH_BIN (defaults: target/release/...).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/../.." && pwd)
WSCHAT_BIN=${WSCHAT_BIN:-$ROOT/target/release/wschat}
WSCHAT_BENCH_BIN=${WSCHAT_BENCH_BIN:-$ROOT/target/release/wschat-bench}

build=1
rounds=3
rooms=1000
members=10
rate=1
duration=10
history=100
idle=1000
runs="many-rooms,one-room,idle-rooms"
out=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-build) build=0 ;;
        --rounds) rounds=${2:?--rounds needs a value}; shift ;;
        --rooms) rooms=${2:?--rooms needs a value}; shift ;;
        --members) members=${2:?--members needs a value}; shift ;;
        --rate) rate=${2:?--rate needs a value}; shift ;;
        --duration) duration=${2:?--duration needs a value}; shift ;;
        --history) history=${2:?--history needs a value}; shift ;;
        --idle-rooms) idle=${2:?--idle-rooms needs a value}; shift ;;
        --runs) runs=${2:?--runs needs a value}; shift ;;
        --out) out=${2:?--out needs a value}; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "rooms.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

die() { echo "rooms.sh: $*" >&2; exit 1; }
note() { echo "== $*" >&2; }
command -v taskset >/dev/null || die "taskset not found (util-linux)"
[[ $(nproc) -ge 2 ]] || die "needs at least 2 CPUs"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [[ $build == 1 ]]; then
    (cd "$ROOT" && cargo build --release --bins) >&2
fi
[[ -n $out ]] || out=$(mktemp -d /tmp/wschat-rooms.XXXXXX)
mkdir -p "$out"
results="$out/results.jsonl"
: >"$results"

clients=$((rooms * members))
# One sender in a room of all the clients, at the many-rooms run's
# deliveries a second: clients x rate x (members - 1) / (clients - 1).
one_rate=$(python3 -c "print(round($clients * $rate * ($members - 1) / ($clients - 1), 4))")

server_pid=""
cleanup() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# utime+stime of a process, in clock ticks.
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# Starts a fresh server pinned to CPU 0; sets server_pid and url.
start_server() {
    local log=$1
    taskset -c 0 "$WSCHAT_BIN" --addr 127.0.0.1:0 --log-level warn --rate-limit 0 \
        --max-clients $((clients + 1000)) --history "$history" 2>"$log" &
    server_pid=$!
    for _ in $(seq 200); do
        grep -q 'Listening on' "$log" && break
        sleep 0.05
    done
    local addr
    addr=$(sed -n 's|.*Listening on http://\([^/]*\)/.*|\1|p' "$log" | head -1)
    [[ -n $addr ]] || die "the server did not start: $(cat "$log")"
    url="ws://$addr/"
}

stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

# One run: a fresh server, the generator on CPU 1, one JSON line kept.
run_one() {
    local round=$1 run=$2 name="$out/$2.$1"
    start_server "$name.server.log"
    local load before json
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    before=0 # the server's CPU from its start: the whole run
    case "$run" in
        many-rooms)
            args=(rooms --rooms "$rooms" --members "$members" --rate "$rate" --size 64
                --duration "$duration") ;;
        one-room)
            args=(fanout --clients "$clients" --senders 1 --rate "$one_rate" --size 64
                --duration "$duration") ;;
        big-room)
            url="${url}?rooms=big"
            args=(fanout --clients "$clients" --senders 1 --rate "$one_rate" --size 64
                --duration "$duration") ;;
        idle-rooms)
            args=(idle-rooms --rooms "$idle" --history "$history" --size 64) ;;
    esac
    note "round $round: $run (load $load)"
    if ! json=$(taskset -c 1 "$WSCHAT_BENCH_BIN" "${args[@]}" --url "$url" \
        --server-pid "$server_pid" 2>"$name.client.log"); then
        note "$run failed: $(tail -1 "$name.client.log")"
        [[ -n $json ]] || json='{}'
        json=$(echo "$json" | python3 -c "import json, sys; l = json.loads(sys.stdin.read()); l['failed'] = True; print(json.dumps(l))")
    fi
    local whole
    whole=$(python3 -c "print(($(ticks "$server_pid") - $before) / 100)")
    stop_server
    echo "$json" | python3 -c "
import json, sys
line = json.loads(sys.stdin.read())
line.update(round=$round, run='$run', load='$load', run_server_cpu_s=$whole)
print(json.dumps(line))" >>"$results"
}

IFS=, read -r -a wanted <<<"$runs"
for round in $(seq "$rounds"); do
    for run in "${wanted[@]}"; do
        case "$run" in
            many-rooms|one-room|big-room|idle-rooms) run_one "$round" "$run" ;;
            *) die "unknown run: $run" ;;
        esac
    done
done

python3 - "$results" <<'EOF' | tee "$out/summary.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def fmt(x, digits=1):
    return "n/a" if x is None else f"{x:,.{digits}f}"
print("| run | round | load (1, 5, 15 min) | deliveries/s | p50 ms | p99 ms | lost | other room | server ns/delivery | whole run ns/delivery |")
print("|---|---|---|---|---|---|---|---|---|---|")
medians = {}
for run in ("many-rooms", "one-room", "big-room"):
    mine = [r for r in rows if r.get("run") == run]
    if not mine:
        continue
    for r in mine:
        whole = r["run_server_cpu_s"] * 1e9 / r["delivered"] if r.get("delivered") else None
        r["whole_ns"] = whole
        print(f"| {run} | {r['round']} | {r['load']} | {fmt(r.get('deliveries_per_sec'), 0)} | "
              f"{fmt(r.get('p50_ms'), 2)} | {fmt(r.get('p99_ms'), 2)} | {r.get('lost', 'n/a')} | "
              f"{r.get('foreign', 'n/a')} | {fmt(r.get('server_ns_per_delivery'))} | {fmt(whole)} |")
    m = {k: med([r.get(k) for r in mine]) for k in
         ("deliveries_per_sec", "p50_ms", "p99_ms", "server_ns_per_delivery", "whole_ns")}
    medians[run] = m
    print(f"| {run} | **median** | | {fmt(m['deliveries_per_sec'], 0)} | {fmt(m['p50_ms'], 2)} | "
          f"{fmt(m['p99_ms'], 2)} | {sum(r.get('lost', 0) for r in mine)} | "
          f"{sum(r.get('foreign', 0) for r in mine)} | **{fmt(m['server_ns_per_delivery'])}** | "
          f"{fmt(m['whole_ns'])} |")
if "many-rooms" in medians and "one-room" in medians:
    a, b = medians["many-rooms"], medians["one-room"]
    for key, what in (("server_ns_per_delivery", "server CPU per delivery"),
                      ("whole_ns", "whole run, connections included")):
        if a[key] and b[key]:
            print(f"\nmany-rooms ÷ one-room, {what}: **{a[key] / b[key]:.2f}×**")
idle = [r for r in rows if r.get("run") == "idle-rooms"]
if idle:
    print("\n| idle rooms | round | load | rooms | messages each | RSS before → after (kB) | bytes per idle room |")
    print("|---|---|---|---|---|---|---|")
    for r in idle:
        print(f"| | {r['round']} | {r['load']} | {r.get('rooms')} | {r.get('history')} | "
              f"{r.get('server_rss_kb_before')} → {r.get('server_rss_kb_after')} | {r.get('bytes_per_room')} |")
    print(f"| | **median** | | | | | **{fmt(med([r.get('bytes_per_room') for r in idle]), 0)}** |")
EOF
note "raw results: $results; summary: $out/summary.md"
