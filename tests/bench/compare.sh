#!/usr/bin/env bash
# Side-by-side benchmark of wschat against three peer servers doing the same
# "raw chat" job (tungstenite-threads, tokio-tungstenite, and least-work, a
# one-thread epoll yardstick). Run by hand, not in CI: the full matrix takes
# about 10 minutes (longer when a server falls behind in the big-room runs)
# and wants an otherwise idle machine with >= 2 CPUs.
#
# Each server gets a fresh process for every benchmark run, pinned to CPU 0;
# the benchmark client (target/release/wschat-bench) is pinned to CPU 1.
# Server CPU time is read from /proc/PID/stat (utime+stime) before and after
# each run; client CPU time is the user+sys time of the client process (its rusage).
#
# Usage: tests/bench/compare.sh [--no-build] [--servers a,b,..] [--runs a,b,..] [--out DIR]
#   servers: wschat, tungstenite-threads, tokio-tungstenite, least-work (default: all)
#   runs:    fanout-100x10, fanout-1000x1, connections-5000, echo,
#            bigroom-1000x100, bigroom-2000x100, bigroom-5000x100, bigroom-10000x20
#            (default: all; bigroom-CLIENTSxRATE is a fan-out to CLIENTS clients
#            from one sender at RATE 64-byte messages a second for 10 s)
#   --out:   where raw results go (default: a new directory under /tmp)
# Environment overrides (for testing the script itself):
#   WSCHAT_BIN, WSCHAT_BENCH_BIN  paths of the wschat server and benchmark client.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/../.." && pwd)
WSCHAT_BIN=${WSCHAT_BIN:-$ROOT/target/release/wschat}
WSCHAT_BENCH_BIN=${WSCHAT_BENCH_BIN:-$ROOT/target/release/wschat-bench}
THREADS_BIN=$BENCH_DIR/tungstenite-threads/target/release/tungstenite-threads-chat
TOKIO_BIN=$BENCH_DIR/tokio-tungstenite/target/release/tokio-tungstenite-chat
LEAST_WORK_BIN=$BENCH_DIR/least-work/target/release/least-work-chat

ALL_SERVERS=(wschat tungstenite-threads tokio-tungstenite least-work)
ALL_RUNS=(fanout-100x10 fanout-1000x1 connections-5000 echo
    bigroom-1000x100 bigroom-2000x100 bigroom-5000x100 bigroom-10000x20)
SERVER_CPU=0
CLIENT_CPU=1

build=1
servers=("${ALL_SERVERS[@]}")
runs=("${ALL_RUNS[@]}")
out=""

die() { echo "compare.sh: $*" >&2; exit 1; }
note() { echo "== $*" >&2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-build) build=0 ;;
        --servers) IFS=, read -r -a servers <<<"${2:?--servers needs a value}"; shift ;;
        --runs) IFS=, read -r -a runs <<<"${2:?--runs needs a value}"; shift ;;
        --out) out=${2:?--out needs a value}; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (try --help)" ;;
    esac
    shift
done
for s in "${servers[@]}"; do [[ " ${ALL_SERVERS[*]} " == *" $s "* ]] || die "unknown server: $s"; done
for r in "${runs[@]}"; do [[ " ${ALL_RUNS[*]} " == *" $r "* ]] || die "unknown run: $r"; done

command -v taskset >/dev/null || die "taskset not found (Debian/Ubuntu: apt-get install util-linux)"
command -v python3 >/dev/null || die "python3 not found"
ncpu=$(nproc --all 2>/dev/null || nproc)
[[ $ncpu -ge 2 ]] || die "need at least 2 CPUs (server on CPU $SERVER_CPU, client on CPU $CLIENT_CPU); have $ncpu"

# 10,000 connections need far more than the common default of 1024
# descriptors, in the client and in the server alike (the limit is inherited).
if ! ulimit -n 65536 2>/dev/null; then
    hard=$(ulimit -Hn)
    ulimit -n "$hard"
    note "warning: could not raise ulimit -n to 65536; using the hard limit $hard"
fi
# Most clients any selected run opens at once.
max_clients=0
for r in "${runs[@]}"; do
    case "$r" in
        fanout-100x10) n=100 ;;
        fanout-1000x1) n=1000 ;;
        connections-5000) n=5000 ;;
        bigroom-*x*) n=${r#bigroom-}; n=${n%x*} ;;
        *) n=1 ;;
    esac
    if ((n > max_clients)); then max_clients=$n; fi
done
# Descriptors per client: tungstenite-threads clones each chat socket for its
# writer thread; the others hold one. 64 spare for listeners, epoll, stdio.
fds_limit=$(ulimit -n)
for s in wschat-bench "${servers[@]}"; do
    per=1
    [[ $s == tungstenite-threads ]] && per=2
    if [[ $fds_limit != unlimited ]] && ((max_clients * per + 64 > fds_limit)); then
        note "warning: $s needs about $((max_clients * per + 64)) descriptors for $max_clients clients; ulimit -n is $fds_limit, so its largest runs will fail"
    fi
done

if [[ -z $out ]]; then
    out=$(mktemp -d "${TMPDIR:-/tmp}/wschat-compare.XXXXXX")
else
    mkdir -p "$out"
fi
results=$out/results.jsonl
: >"$results"
note "raw results in $out"

if [[ $build -eq 1 ]]; then
    for dir in "$ROOT" "$BENCH_DIR/tungstenite-threads" "$BENCH_DIR/tokio-tungstenite" "$BENCH_DIR/least-work"; do
        note "building $dir (release)"
        cargo build --release --manifest-path "$dir/Cargo.toml"
    done
fi
for bin in "$WSCHAT_BENCH_BIN" "$THREADS_BIN" "$TOKIO_BIN" "$LEAST_WORK_BIN" "$WSCHAT_BIN"; do
    [[ -x $bin ]] || die "missing executable: $bin"
done

clk_tck=$(getconf CLK_TCK)

server_cmd() { # name -> prints nothing, sets global array CMD
    case "$1" in
        wschat) CMD=("$WSCHAT_BIN" --addr 127.0.0.1:0 --log-level warn --rate-limit 0 --max-clients 20000) ;;
        tungstenite-threads) CMD=("$THREADS_BIN" --addr 127.0.0.1:0) ;;
        tokio-tungstenite) CMD=("$TOKIO_BIN" --addr 127.0.0.1:0 --threads 1) ;;
        least-work) CMD=("$LEAST_WORK_BIN" --addr 127.0.0.1:0) ;;
    esac
}

# utime+stime of a whole process (exited threads included), in clock ticks.
proc_ticks() {
    local stat rest f
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    rest=${stat##*) }
    read -r -a f <<<"$rest"
    echo $((f[11] + f[12]))
}

# Port of a TCP socket that process $1 is listening on (IPv4), from /proc;
# used only when the server printed no "Listening on" line.
proc_listen_port() {
    local inodes hex
    inodes=$(find "/proc/$1/fd" -maxdepth 1 -lname 'socket:*' -printf '%l\n' 2>/dev/null |
        sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p' | tr '\n' ' ')
    [[ -n $inodes ]] || return 1
    hex=$(awk -v inodes=" $inodes" 'NR > 1 && $4 == "0A" && index(inodes, " " $10 " ") {
            split($2, a, ":"); print a[2]; exit }' /proc/net/tcp)
    [[ -n $hex ]] || return 1
    echo $((16#$hex))
}

# Whether process $1 is running: it exists and is not a zombie (kill -0
# succeeds on a zombie that bash has not reaped yet).
proc_alive() {
    local stat rest
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    rest=${stat##*) }
    [[ ${rest:0:1} != Z ]]
}

# Busy time of the whole machine (all CPUs), in clock ticks, from /proc/stat.
sys_busy_ticks() {
    local cpu user nice system idle iowait irq softirq steal rest
    read -r cpu user nice system idle iowait irq softirq steal rest </proc/stat
    echo $((user + nice + system + irq + softirq + steal))
}

SERVER_PID=""
PORT=""
start_server() { # name logfile
    server_cmd "$1"
    taskset -c "$SERVER_CPU" "${CMD[@]}" >/dev/null 2>"$2" &
    SERVER_PID=$!
    PORT=""
    local i line
    for ((i = 0; i < 100; i++)); do
        line=$(grep -m1 -o 'Listening on http://127\.0\.0\.1:[0-9]*/' "$2" 2>/dev/null || true)
        if [[ -n $line ]]; then
            PORT=${line##*:}
            PORT=${PORT%/}
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        # No line yet: after 2 s, fall back to the socket the process listens on.
        if ((i >= 20)) && PORT=$(proc_listen_port "$SERVER_PID"); then
            note "warning: $1 printed no 'Listening on http://127.0.0.1:PORT/' line; found port $PORT in /proc"
            return 0
        fi
        sleep 0.1
    done
    note "server $1 did not report its port; its stderr:"
    sed 's/^/   /' "$2" >&2 || true
    stop_server
    return 1
}

stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        local i
        for ((i = 0; i < 50; i++)); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
CLIENT_PID=""
cleanup() {
    if [[ -n $CLIENT_PID ]]; then
        kill -TERM "$CLIENT_PID" 2>/dev/null || true # timeout(1) passes it on to the client
        wait "$CLIENT_PID" 2>/dev/null || true
        CLIENT_PID=""
    fi
    stop_server
    rm -f "$out/.times"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Sets CHILD_CPU to the CPU time (user+sys, seconds, as a python expression) of
# this shell's waited-for children, from the `times` builtin ("0m1.234s
# 0m0.567s" on its second line). `times` must run in this shell, not in a
# subshell, hence the file and the global.
children_cpu() {
    local self u s
    times >"$out/.times"
    { read -r self; read -r u s; } <"$out/.times"
    u=${u%s}; s=${s%s}
    CHILD_CPU="(${u%%m*}*60+${u#*m}+${s%%m*}*60+${s#*m})"
}

run_args() { # run port pid -> sets ARGS and LIMIT (seconds before the client is killed)
    local url=ws://127.0.0.1:$2/
    case "$1" in
        fanout-100x10)
            ARGS=(fanout --url "$url" --clients 100 --senders 10 --size 64 --rate max --window 64 --duration 10)
            LIMIT=120 ;;
        fanout-1000x1)
            ARGS=(fanout --url "$url" --clients 1000 --senders 1 --size 64 --rate 100 --duration 10)
            LIMIT=180 ;;
        connections-5000)
            ARGS=(connections --url "$url" --count 5000 --hold 5 --server-pid "$3")
            LIMIT=300 ;;
        echo)
            ARGS=(echo --url "ws://127.0.0.1:$2/echo" --duration 5)
            LIMIT=180 ;;
        bigroom-*x*)
            local clients=${1#bigroom-} rate
            rate=${clients#*x}
            clients=${clients%x*}
            ARGS=(fanout --url "$url" --clients "$clients" --senders 1 --size 64 --rate "$rate"
                --duration 10 --server-pid "$3")
            # Connecting (up to a minute for 10,000 clients to a slow server),
            # a pause of clients/5 ms, 10 s of sending, up to 10 s of draining.
            LIMIT=$((120 + clients / 50)) ;;
    esac
}

# Numbers are only meaningful on an otherwise idle machine: say so if it is not.
busy_a=$(sys_busy_ticks); sleep 1; busy_b=$(sys_busy_ticks)
busy_pct=$(( (busy_b - busy_a) * 100 / clk_tck ))
if ((busy_pct > 10)); then
    note "warning: the machine is busy before the benchmark starts (${busy_pct}% of one CPU in use); results will be noisy"
fi

for server in "${servers[@]}"; do
    for run in "${runs[@]}"; do
        base=$out/$server.$run
        note "$server: $run"
        if ! start_server "$server" "$base.server.log"; then
            python3 "$BENCH_DIR/table.py" annotate --server "$server" --run "$run" \
                --error "server did not start" </dev/null >>"$results"
            continue
        fi
        run_args "$run" "$PORT" "$SERVER_PID"
        ticks0=$(proc_ticks "$SERVER_PID")
        busy0=$(sys_busy_ticks)
        rc=0
        children_cpu; cpu0=$CHILD_CPU
        t0=$(date +%s.%N)
        # In the background + wait, so that Ctrl-C / TERM reach the trap at once.
        timeout --kill-after=10 "$LIMIT" taskset -c "$CLIENT_CPU" "$WSCHAT_BENCH_BIN" "${ARGS[@]}" \
            >"$base.client.json" 2>"$base.client.log" &
        CLIENT_PID=$!
        wait "$CLIENT_PID" || rc=$?
        CLIENT_PID=""
        t1=$(date +%s.%N)
        children_cpu; cpu1=$CHILD_CPU
        server_alive=1
        ticks1=$(proc_ticks "$SERVER_PID" 2>/dev/null) || { ticks1=$ticks0; server_alive=0; }
        busy1=$(sys_busy_ticks)
        proc_alive "$SERVER_PID" || server_alive=0
        stop_server
        error=""
        if [[ $rc -eq 124 ]]; then
            error="client timed out after ${LIMIT}s"
        elif [[ $rc -ne 0 ]]; then
            error="client exited with status $rc"
        fi
        [[ $server_alive -eq 1 ]] || error="${error:+$error; }server died during the run"
        if [[ -n $error ]]; then
            note "$server $run: $error (see $base.client.log, $base.server.log)"
        fi
        extra=(--wall "$(python3 -c "print(round($t1 - $t0, 3))")"
            --client-cpu "$(python3 -c "print(round($cpu1 - $cpu0, 3))")"
            --machine-cpu "$(python3 -c "print(($busy1 - $busy0) / $clk_tck)")")
        if [[ $server_alive -eq 1 ]]; then
            extra+=(--server-cpu "$(python3 -c "print(($ticks1 - $ticks0) / $clk_tck)")")
        fi
        [[ -z $error ]] || extra+=(--error "$error")
        python3 "$BENCH_DIR/table.py" annotate --server "$server" --run "$run" "${extra[@]}" \
            <"$base.client.json" >>"$results"
        sleep 1 # let sockets from the last run settle
    done
done
cleanup
trap - EXIT

python3 "$BENCH_DIR/table.py" render "$results" | tee "$out/summary.md"
note "raw results: $results; summary: $out/summary.md"
