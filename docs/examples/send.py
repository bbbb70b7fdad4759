"""Send a WebSocket handshake, then frames written in hex, and print what
comes back: the response's status line, then each frame received, in hex
and decoded. The chapters' "Try it" steps use it to put exact bytes on the
wire (chapters 01-04).

    python3 docs/examples/send.py ws://127.0.0.1:8080/echo 818537fa213d7f9f4d5158

Each HEX argument is sent as given, in its own write; spaces are allowed
inside one argument ('81 85 37 fa ...'). The frames you write must be
masked (RFC 6455 section 5.1): that is what the chapters teach. The key is
the RFC's sample key, so the Sec-WebSocket-Accept is always the same.
Options: -H 'Name: value' adds a request header (repeatable); --head prints
the whole response head, not only its status line.
"""

import socket
import sys
from urllib.parse import urlsplit

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
FIRST_REPLY_SECONDS = 5.0  # how long to wait for the server's first answer
QUIET_SECONDS = 1.0  # then, how long a silence ends the conversation
OPCODES = {0: "Continuation", 1: "Text", 2: "Binary", 8: "Close", 9: "Ping", 10: "Pong"}


def describe(frame):
    """One frame (bytes) as hex, then what it means."""
    op, length, at = frame[0] & 0x0F, frame[1] & 0x7F, 2
    if length == 126:
        length, at = int.from_bytes(frame[2:4], "big"), 4
    elif length == 127:
        length, at = int.from_bytes(frame[2:10], "big"), 10
    payload = frame[at:]
    name = OPCODES.get(op, "opcode %x" % op)
    if op == 8 and len(payload) >= 2:
        code = int.from_bytes(payload[:2], "big")
        meaning = '%s %d "%s"' % (name, code, payload[2:].decode("utf-8", "replace"))
    elif op in (1, 8, 9, 10):
        meaning = '%s "%s"' % (name, payload.decode("utf-8", "replace"))
    else:
        meaning = "%s, %d bytes" % (name, length)
    shown = frame.hex(" ") if len(frame) <= 40 else frame[:40].hex(" ") + " ..."
    return "%s   %s" % (shown, meaning)


def frames(data):
    """Splits received bytes into whole frames (server frames are unmasked);
    returns them and the bytes of a frame not complete yet."""
    out = []
    while len(data) >= 2:
        length, at = data[1] & 0x7F, 2
        if length == 126:
            length, at = int.from_bytes(data[2:4], "big"), 4
        elif length == 127:
            length, at = int.from_bytes(data[2:10], "big"), 10
        if len(data) < at + length:
            break
        out.append(data[: at + length])
        data = data[at + length :]
    return out, data


def main(argv):
    headers, whole_head, args = [], False, []
    while argv:
        arg = argv.pop(0)
        if arg == "-H":
            headers.append(argv.pop(0))
        elif arg == "--head":
            whole_head = True
        else:
            args.append(arg)
    url = urlsplit(args[0])
    path = url.path or "/"
    s = socket.create_connection((url.hostname, url.port or 80))
    s.settimeout(FIRST_REPLY_SECONDS)
    request = (
        "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
        % (path, url.netloc, KEY, "".join(h + "\r\n" for h in headers))
    )
    s.sendall(request.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, data = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    print("\n".join(lines) if whole_head else lines[0])
    if not lines[0].startswith("HTTP/1.1 101"):
        try:  # the body: one line saying why, then the server closes
            while chunk := s.recv(4096):
                data += chunk
        except socket.timeout:
            pass
        print(data.decode(errors="replace").rstrip("\n"))
        return
    for hex_frame in args[1:]:
        s.sendall(bytes.fromhex(hex_frame))
    s.settimeout(QUIET_SECONDS if data else FIRST_REPLY_SECONDS)
    while True:
        done, data = frames(data)
        for frame in done:
            print(describe(frame))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return
        if not chunk:
            print("(the server closed the connection)")
            return
        data += chunk
        s.settimeout(QUIET_SECONDS)


if __name__ == "__main__":
    main(sys.argv[1:])
