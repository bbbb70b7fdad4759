#!/usr/bin/env bash
# Cluster benchmark: three wschat nodes sharing one redis-server (all on
# loopback), clients spread evenly over the nodes by wschat-bench. Run by
# hand, not in CI, on an otherwise idle machine.
#
#   latency: 1,000 clients, 1 sender (on the first node) at 100 msg/s:
#            p50/p99 from send to delivery, two thirds of them cross-node
#   fanout:  100 clients, 10 senders, as fast as the window allows
#
# Usage: tests/bench/cluster.sh [--no-build] [--clients N] [--duration SECS] [--runs latency,fanout]
# Environment: WSCHAT_BIN, WSCHAT_BENCH_BIN (defaults: target/release/...).
# redis-server must be installed (tests/cluster/run.sh installs it).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/../.." && pwd)
WSCHAT_BIN=${WSCHAT_BIN:-$ROOT/target/release/wschat}
WSCHAT_BENCH_BIN=${WSCHAT_BENCH_BIN:-$ROOT/target/release/wschat-bench}

build=1
clients=1000
duration=10
runs="latency,fanout"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-build) build=0 ;;
        --clients) clients=${2:?--clients needs a value}; shift ;;
        --duration) duration=${2:?--duration needs a value}; shift ;;
        --runs) runs=${2:?--runs needs a value}; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "cluster.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

die() { echo "cluster.sh: $*" >&2; exit 1; }
note() { echo "== $*" >&2; }
command -v redis-server >/dev/null || die "redis-server not found (tests/cluster/run.sh installs it)"
ulimit -n 65536 2>/dev/null || true

if [[ $build == 1 ]]; then
    (cd "$ROOT" && cargo build --release --bins) >&2
fi

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
    >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break
    sleep 0.05
done

urls=()
for n in 1 2 3; do
    "$WSCHAT_BIN" --addr 127.0.0.1:0 --redis "redis://127.0.0.1:$redis_port" --node-name "bench$n" \
        --rate-limit 0 --log-level warn 2>"$work/node$n.log" &
    pids+=($!)
    for _ in $(seq 200); do
        grep -q 'Listening on' "$work/node$n.log" && break
        sleep 0.05
    done
    addr=$(sed -n 's|.*Listening on http://\([^/]*\)/.*|\1|p' "$work/node$n.log" | head -1)
    [[ -n $addr ]] || die "node $n did not start: $(cat "$work/node$n.log")"
    urls+=("ws://$addr/")
done
all=$(IFS=,; echo "${urls[*]}")
note "nodes: $all (redis on $redis_port)"

IFS=, read -r -a wanted <<<"$runs"
for run in "${wanted[@]}"; do
    case "$run" in
        latency)
            note "latency: $clients clients over 3 nodes, 1 sender at 100 msg/s, ${duration}s"
            "$WSCHAT_BENCH_BIN" fanout --url "$all" --clients "$clients" --senders 1 --size 64 \
                --rate 100 --duration "$duration"
            ;;
        fanout)
            note "fanout: 100 clients over 3 nodes, 10 senders, max rate, ${duration}s"
            "$WSCHAT_BENCH_BIN" fanout --url "$all" --clients 100 --senders 10 --size 64 \
                --rate max --window 64 --duration "$duration"
            ;;
        *) die "unknown run: $run" ;;
    esac
done
