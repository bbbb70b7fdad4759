#!/usr/bin/env python3
"""The client side of tests/proxy/run.sh: talks to wschat through nginx over
TLS, as a browser would, with nothing but Python's standard library (the
WebSocket handshake and the masked frames are written by hand).

Exits 0 when every check passed; otherwise prints what failed and exits 1.
"""

import argparse
import base64
import hashlib
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TIMEOUT = 10.0
# wschat's --max-clients-per-ip in run.sh.
PER_IP = 3


class Fail(Exception):
    pass


def check(condition, what):
    if not condition:
        raise Fail(what)


def step(text):
    print(f"  ok  {text}", flush=True)


class Peer:
    """One TLS connection to nginx, with a read buffer. `source` is the
    client's own address: Linux routes all of 127.0.0.0/8 to lo, so one
    machine can be several clients (127.0.0.2, 127.0.0.3, ...)."""

    def __init__(self, port, ca, source="127.0.0.1"):
        context = ssl.create_default_context(cafile=ca)
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT, source_address=(source, 0))
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self.buf = b""

    def read_some(self):
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            data = b""
        if not data:
            raise EOFError
        self.buf += data

    def read_exact(self, n):
        while len(self.buf) < n:
            self.read_some()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            check(len(self.buf) < 65536, "response head too long")
            self.read_some()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def read_to_end(self):
        try:
            while True:
                self.read_some()
        except EOFError:
            pass
        out, self.buf = self.buf, b""
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def https_get(port, ca, path):
    peer = Peer(port, ca)
    peer.sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    )
    status, headers = peer.read_head()
    body = peer.read_to_end()
    peer.close()
    return status, headers, body


def http_get(port, path):
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {l.partition(":")[0].lower(): l.partition(":")[2].strip() for l in head[1:]}
    return int(head[0].split(" ")[1]), headers


class WebSocket:
    """A WebSocket client over TLS: handshake, masked frames out, pings answered."""

    def __init__(self, port, ca, origin, path="/", protocol="wschat.v1", source="127.0.0.1", extra=""):
        self.peer = Peer(port, ca, source)
        self.pings = 0
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"Origin: {origin}\r\n"
        )
        if protocol:
            request += f"Sec-WebSocket-Protocol: {protocol}\r\n"
        self.peer.sock.sendall((request + extra + "\r\n").encode())
        self.status, self.headers = self.peer.read_head()
        if self.status == 101:
            expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
            check(self.headers.get("sec-websocket-accept") == expected, "wrong Sec-WebSocket-Accept")
            check(self.headers.get("upgrade", "").lower() == "websocket", "no Upgrade: websocket")
            if protocol:
                check(self.headers.get("sec-websocket-protocol") == protocol, "subprotocol not chosen")

    def send_frame(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.peer.sock.sendall(header + mask + body)

    def send_text(self, text):
        self.send_frame(0x1, text.encode())

    def recv_frame(self):
        # Parse from the buffer and consume only a whole frame, so that a
        # read timeout in the middle of one loses nothing.
        while True:
            buf = self.peer.buf
            if len(buf) >= 2:
                b0, b1 = buf[0], buf[1]
                check(b1 & 0x80 == 0, "the server masked a frame")
                n, at = b1 & 0x7F, 2
                if n == 126 and len(buf) >= 4:
                    (n,), at = struct.unpack("!H", buf[2:4]), 4
                elif n == 127 and len(buf) >= 10:
                    (n,), at = struct.unpack("!Q", buf[2:10]), 10
                if (b1 & 0x7F) < 126 or at > 2:
                    if len(buf) >= at + n:
                        self.peer.buf = buf[at + n :]
                        return bool(b0 & 0x80), b0 & 0x0F, buf[at : at + n]
            self.peer.read_some()

    def recv(self):
        """The next message or close frame; pings are answered on the way,
        and the frames of a fragmented message (a welcome is two: the
        newcomer's part, then the history shared by every newcomer) are
        joined."""
        message = None
        while True:
            fin, opcode, payload = self.recv_frame()
            if opcode == 0x9:
                self.pings += 1
                self.send_frame(0xA, payload)
                continue
            if message is None:
                if fin or opcode >= 0x8:
                    return opcode, payload
                message = (opcode, bytearray(payload))
                continue
            check(opcode == 0x0, f"expected a continuation frame, got opcode {opcode}")
            message[1].extend(payload)
            if fin:
                return message[0], bytes(message[1])

    def recv_event(self, kind):
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            opcode, payload = self.recv()
            check(opcode == 0x1, f"expected a text frame, got opcode {opcode}")
            event = json.loads(payload)
            if event.get("type") == kind:
                return event
        raise Fail(f"no {kind} event within {TIMEOUT} s")

    def idle(self, seconds):
        """Reads (answering pings) for `seconds`; returns what else came."""
        got = []
        deadline = time.monotonic() + seconds
        self.peer.sock.settimeout(0.1)
        try:
            while time.monotonic() < deadline:
                try:
                    got.append(self.recv())
                except (socket.timeout, TimeoutError):
                    pass
        finally:
            self.peer.sock.settimeout(TIMEOUT)
        return got

    def close(self, code=1000):
        self.send_frame(0x8, struct.pack("!H", code))
        opcode, payload = self.recv()
        check(opcode == 0x8, f"expected the close echoed, got opcode {opcode}")
        check(struct.unpack("!H", payload[:2])[0] == code, "close code not echoed")
        check(self.peer.read_to_end() == b"", "data after the close")
        self.peer.close()


def scenario(args):
    port, ca = args.tls_port, args.ca
    origin = f"https://127.0.0.1:{port}"

    status, headers, body = https_get(port, ca, "/healthz")
    check(status == 200 and body == b"ok\n", f"/healthz: {status} {body!r}")
    step("GET https://.../healthz -> 200 ok (TLS verified against the test CA)")

    status, headers, body = https_get(port, ca, "/")
    check(status == 200, f"/: {status}")
    check(headers.get("content-type", "").startswith("text/html"), f"/: {headers}")
    check(b"<html" in body.lower(), "the page has no <html")
    step("GET https://.../ -> 200, the chat page")

    status, _, _ = https_get(port, ca, "/metrics")
    check(status == 403, f"/metrics through the proxy: {status}")
    step("GET https://.../metrics -> 403 (kept off the internet by the proxy)")

    status, headers = http_get(args.http_port, "/some/where?x=1")
    check(status == 301, f"http:// -> {status}")
    check(headers.get("location", "").startswith("https://127.0.0.1"), f"Location {headers}")
    check(headers["location"].endswith("/some/where?x=1"), f"Location {headers}")
    step(f"GET http://... -> 301 {headers['location']}")

    ann = WebSocket(port, ca, origin)
    check(ann.status == 101, f"ann: {ann.status}")
    ann_id = ann.recv_event("welcome")["you"]["id"]
    bo = WebSocket(port, ca, origin)
    check(bo.status == 101, f"bo: {bo.status}")
    bo_id = bo.recv_event("welcome")["you"]["id"]
    join = ann.recv_event("join")
    check(join["user"]["id"] == bo_id, f"join: {join}")
    step(f"two wss:// clients with Origin {origin}: 101 wschat.v1, welcome, join")

    text = "hello through nginx \u2713"
    bo.send_text(text)
    for who, client in (("ann", ann), ("bo", bo)):
        event = client.recv_event("message")
        check(event["text"] == text, f"{who} got {event}")
        check(event["from"]["id"] == bo_id, f"{who} got {event}")
    step("bo's message reaches ann and bo as the same JSON event")

    for bad in ("https://evil.example", f"https://127.0.0.1:{port + 1}", "https://127.0.0.1", "null"):
        stranger = WebSocket(port, ca, bad)
        check(stranger.status == 403, f"Origin {bad}: {stranger.status}")
        stranger.peer.close()
    step("foreign Origins (another site, another port, the default port, null) -> 403")

    echo = WebSocket(port, ca, origin, path="/echo", protocol=None)
    check(echo.status == 101, f"/echo: {echo.status}")
    big = "x" * 60000
    echo.send_text(big)
    opcode, payload = echo.recv()
    check(opcode == 0x1 and payload == big.encode(), "60 KB echo came back changed")
    echo.close()
    step("wss://.../echo returns a 60 KB message, clean close 1000")

    # Limits per address: wschat runs with --trusted-proxy 127.0.0.1 and
    # --max-clients-per-ip PER_IP, so the address it counts is the one nginx
    # appends to X-Forwarded-For, not what a client writes there itself.
    held = []
    for n in range(PER_IP):
        forged = f"X-Forwarded-For: 203.0.113.{n + 1}\r\n"
        ws = WebSocket(port, ca, origin, path="/echo", protocol=None, source="127.0.0.2", extra=forged)
        check(ws.status == 101, f"client {n + 1} from 127.0.0.2: {ws.status}")
        held.append(ws)
    forged = "X-Forwarded-For: 198.51.100.77\r\n"
    over = WebSocket(port, ca, origin, path="/echo", protocol=None, source="127.0.0.2", extra=forged)
    check(over.status == 429, f"client {PER_IP + 1} from 127.0.0.2: {over.status}")
    # nginx keeps the browser's connection open after an error: read the body by its length.
    body = over.peer.read_exact(int(over.headers.get("content-length", "0")))
    check(b"too many connections from this address" in body, f"429 body {body!r}")
    over.peer.close()
    deadline = time.monotonic() + TIMEOUT
    while b"Rejected handshake from 127.0.0.2 via 127.0.0.1:" not in open(args.wschat_log, "rb").read():
        check(time.monotonic() < deadline, "the 429 is not logged with the client's address")
        time.sleep(0.05)
    other = WebSocket(port, ca, origin, path="/echo", protocol=None, source="127.0.0.3", extra=forged)
    check(other.status == 101, f"a client from 127.0.0.3: {other.status}")
    for ws in held + [other]:
        ws.close()
    step(f"{PER_IP} sockets from 127.0.0.2 with forged X-Forwarded-For, then 429 logged as "
         "'127.0.0.2 via 127.0.0.1'; 127.0.0.3 still connects")

    hold = 3.0
    end = time.monotonic() + hold
    while time.monotonic() < end:
        ann.idle(0.2)
        bo.idle(0.2)
    check(ann.pings >= 2 and bo.pings >= 2, f"pings seen: ann {ann.pings}, bo {bo.pings}")
    ann.send_text("still here")
    check(bo.recv_event("message")["text"] == "still here", "chat after the pings")
    check(ann.recv_event("message")["text"] == "still here", "chat after the pings")
    step(f"pings pass through both ways: ann answered {ann.pings}, bo {bo.pings} in {hold:.0f} s")

    bo.close()
    leave = ann.recv_event("leave")
    check(leave["user"]["id"] == bo_id, f"leave: {leave}")
    step("bo closes cleanly (1000 echoed); ann sees the leave")

    # A restart: SIGTERM stops wschat gracefully, and the Close it sends
    # every client (1001, going away) passes through nginx.
    with open(args.wschat_pid_file) as f:
        os.kill(int(f.read().strip()), signal.SIGTERM)
    started = time.monotonic()
    opcode, payload = ann.recv()
    check(opcode == 0x8, f"ann got opcode {opcode} instead of a Close")
    check(struct.unpack("!H", payload[:2])[0] == 1001, f"close payload {payload!r}")
    check(ann.peer.read_to_end() == b"", "data after the close")
    step(f"wschat stopped (SIGTERM): ann gets Close 1001 through the proxy "
         f"after {time.monotonic() - started:.2f} s")
    # The process exits once its clients are closed (within 2 s).
    while True:
        probe = WebSocket(port, ca, origin)
        if probe.status == 502:
            break
        probe.peer.close()
        check(time.monotonic() - started < TIMEOUT, f"wschat still answers: {probe.status}")
        time.sleep(0.1)
    probe.peer.close()

    step("while wschat is down, nginx answers 502")

    with open(args.wschat_log, "ab") as log:
        child = subprocess.Popen(args.wschat_cmd, stderr=log, stdout=log, start_new_session=True)
    with open(args.wschat_pid_file, "w") as f:
        f.write(str(child.pid))
    deadline = time.monotonic() + TIMEOUT
    while True:
        again = WebSocket(port, ca, origin)
        if again.status == 101:
            break
        again.peer.close()
        check(time.monotonic() < deadline, f"wschat not back: {again.status}")
        time.sleep(0.1)
    again.recv_event("welcome")
    again.send_text("back again")
    check(again.recv_event("message")["text"] == "back again", "chat after the restart")
    again.close()
    step(f"wschat restarted: a reconnecting client chats again "
         f"({time.monotonic() - started:.2f} s after the stop)")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tls-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--ca", required=True, help="the self-signed certificate to trust")
    parser.add_argument("--wschat-pid-file", required=True)
    parser.add_argument("--wschat-log", required=True)
    parser.add_argument("wschat_cmd", nargs="+", help="how to start wschat again")
    args = parser.parse_args()
    try:
        scenario(args)
    except (Fail, EOFError, OSError, ValueError, KeyError) as e:
        print(f"  FAILED: {type(e).__name__}: {e}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
