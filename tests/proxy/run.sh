#!/usr/bin/env bash
# End-to-end test of the documented deployment (docs/11-deployment.md):
# wschat on 127.0.0.1 behind nginx with TLS, configured by
# docs/nginx/wschat.conf itself, with only the ports and the certificate
# paths substituted. A Python client (standard library only, in client.py)
# then chats over wss:// through the proxy, checks /healthz, the Origin
# check, the limit per client address (X-Forwarded-For from the trusted
# proxy), pings, a clean close, and what clients see when wschat restarts.
#
# Usage: tests/proxy/run.sh        (as root to install nginx if missing)
# Non-interactive; prints PASS or FAIL last; exits non-zero on failure.
# Every process it starts is stopped by PID on exit.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CONF="$ROOT/docs/nginx/wschat.conf"

say() { echo "proxy test: $*"; }

TMP=""
NGINX_PID=""
RESULT="FAIL"
cleanup() {
    local status=$?
    if [[ -n "$NGINX_PID" ]] && kill -0 "$NGINX_PID" 2>/dev/null; then
        kill -QUIT "$NGINX_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$NGINX_PID" 2>/dev/null || true
    fi
    if [[ -n "$TMP" && -f "$TMP/wschat.pid" ]]; then
        local pid
        pid="$(cat "$TMP/wschat.pid")"
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    if [[ "$RESULT" != PASS && -n "$TMP" && -d "$TMP" ]]; then
        for log in wschat.log error.log; do
            if [[ -s "$TMP/$log" ]]; then
                echo "---- last lines of $log"
                tail -n 20 "$TMP/$log"
            fi
        done
    fi
    [[ -n "$TMP" ]] && rm -rf "$TMP"
    if [[ "$RESULT" == PASS && $status -eq 0 ]]; then
        echo "proxy test: PASS"
    else
        echo "proxy test: FAIL"
        [[ $status -eq 0 ]] && status=1
    fi
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { say "error: $*" >&2; exit 1; }

# ---- tools: nginx (with TLS), openssl, python3
find_nginx() { command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true; }
NGINX="$(find_nginx)"
missing=()
[[ -n "$NGINX" ]] || missing+=(nginx)
command -v openssl >/dev/null || missing+=(openssl)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
    [[ "$(id -u)" == 0 ]] || die "missing ${missing[*]}; run as root to install them"
    say "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    packages=()
    for m in "${missing[@]}"; do
        if [[ "$m" == nginx ]]; then
            # nginx-light (Debian 12) has TLS and proxying and nothing else;
            # on releases without it, the plain package.
            if apt-cache show nginx-light >/dev/null 2>&1; then packages+=(nginx-light); else packages+=(nginx); fi
        else
            packages+=("$m")
        fi
    done
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    NGINX="$(find_nginx)"
    [[ -n "$NGINX" ]] || die "nginx still not found after installing ${packages[*]}"
fi
"$NGINX" -V 2>&1 | grep -q -- --with-http_ssl_module || die "$NGINX has no http_ssl_module"
say "using $("$NGINX" -v 2>&1), $(openssl version | cut -d' ' -f1-2), $(python3 --version)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/wschat-proxy.XXXXXX")"
chmod 755 "$TMP" # nginx workers (nobody) read nothing here, but may create temp files

# ---- a self-signed certificate for 127.0.0.1, trusted by the client only
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null || die "openssl could not make a certificate"

# ---- wschat, release build, on an ephemeral loopback port
say "building wschat (cargo build --release)"
(cd "$ROOT" && cargo build --release --quiet --bin wschat) || die "cargo build failed"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/wschat"
[[ -x "$BIN" ]] || die "no binary at $BIN"

# --ping-interval 1 so that pings through the proxy are seen within the test;
# nginx on 127.0.0.1 is the trusted proxy, and the limit per client address
# is client.py's PER_IP.
LIMITS=(--trusted-proxy 127.0.0.1 --max-clients-per-ip 3)
"$BIN" --addr 127.0.0.1:0 --ping-interval 1 "${LIMITS[@]}" 2>"$TMP/wschat.log" &
echo $! >"$TMP/wschat.pid"
WS_PORT=""
for _ in $(seq 100); do
    WS_PORT="$(grep -o 'Listening on http://127\.0\.0\.1:[0-9]*/' "$TMP/wschat.log" | grep -o '[0-9]*/$' | tr -d / || true)"
    [[ -n "$WS_PORT" ]] && break
    kill -0 "$(cat "$TMP/wschat.pid")" 2>/dev/null || die "wschat exited: $(cat "$TMP/wschat.log")"
    sleep 0.1
done
[[ -n "$WS_PORT" ]] || die "wschat did not report its port"
say "wschat listening on 127.0.0.1:$WS_PORT"

# ---- nginx, configured by the documented file with test ports and paths
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
TLS_PORT="$(free_port)"
HTTP_PORT="$(free_port)"
while [[ "$HTTP_PORT" == "$TLS_PORT" ]]; do HTTP_PORT="$(free_port)"; done

# Each substitution must match exactly once, so that the file tested stays
# the file documented: if the doc changes shape, this fails loudly.
substitute() { # FROM TO
    local count
    count="$(grep -cF -- "$1" "$TMP/wschat.conf" || true)"
    [[ "$count" == 1 ]] || die "docs/nginx/wschat.conf: expected '$1' once, found it $count times"
    FROM="$1" TO="$2" python3 - "$TMP/wschat.conf" <<'PY'
import os, sys
path = sys.argv[1]
text = open(path).read().replace(os.environ["FROM"], os.environ["TO"])
open(path, "w").write(text)
PY
}
cp "$CONF" "$TMP/wschat.conf"
substitute "listen 80;" "listen 127.0.0.1:$HTTP_PORT;"
substitute "listen 443 ssl;" "listen 127.0.0.1:$TLS_PORT ssl;"
substitute "server 127.0.0.1:8080;" "server 127.0.0.1:$WS_PORT;"
substitute "/etc/letsencrypt/live/chat.example.com/fullchain.pem;" "$TMP/cert.pem;"
substitute "/etc/letsencrypt/live/chat.example.com/privkey.pem;" "$TMP/key.pem;"

# The rest of a minimal nginx.conf around it: everything under $TMP.
temp_paths=""
for module in client_body proxy fastcgi uwsgi scgi; do
    flag="--http-${module//_/-}-temp-path"
    [[ "$module" == client_body ]] && flag="--http-client-body-temp-path"
    if "$NGINX" -V 2>&1 | grep -q -- "$flag"; then
        temp_paths+="    ${module}_temp_path $TMP/$module;"$'\n'
    fi
done
cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/error.log info;
events { worker_connections 256; }
http {
    access_log $TMP/access.log;
$temp_paths    include $TMP/wschat.conf;
}
EOF
mkdir -p "$TMP/logs"
"$NGINX" -t -q -p "$TMP" -c "$TMP/nginx.conf" -e "$TMP/error.log" || die "nginx -t rejected the configuration"
"$NGINX" -p "$TMP" -c "$TMP/nginx.conf" -e "$TMP/error.log" -g "daemon off;" &
NGINX_PID=$!
for _ in $(seq 100); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $TLS_PORT), 1).close()" 2>/dev/null; then
        break
    fi
    kill -0 "$NGINX_PID" 2>/dev/null || die "nginx exited"
    sleep 0.1
done
say "nginx: https://127.0.0.1:$TLS_PORT/ (and http on $HTTP_PORT) -> 127.0.0.1:$WS_PORT"

# ---- the client
python3 "$HERE/client.py" --tls-port "$TLS_PORT" --http-port "$HTTP_PORT" --ca "$TMP/cert.pem" \
    --wschat-pid-file "$TMP/wschat.pid" --wschat-log "$TMP/wschat.log" \
    -- "$BIN" --addr "127.0.0.1:$WS_PORT" --ping-interval 1 "${LIMITS[@]}" || die "the client's checks failed"
RESULT=PASS
