"""A line-by-line WebSocket chat client in standard-library Python: each
line typed (or piped) on stdin is sent as a masked Text frame, and each
message received is printed as '< text'. Chapters 06 and 10 use it.

    python3 docs/examples/chat.py ws://127.0.0.1:8080/
    python3 docs/examples/chat.py ws://127.0.0.1:8080/ --protocol wschat.v1

It reads whole frames (a message may come in several, RFC 6455 section
5.4), answers pings, and prints the Close that ends the connection. At the
end of its input it waits until nothing has arrived for --wait seconds
(default 1), then closes with 1000 and waits for the server's Close.
"""

import os
import socket
import sys
import threading
import time
from urllib.parse import urlsplit

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def frame(opcode, payload):
    """A client frame: FIN set, masked with a fresh random key (section 5.3)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Connection:
    def __init__(self, url, protocol):
        url = urlsplit(url)
        self.sock = socket.create_connection((url.hostname, url.port or 80))
        self.buf = b""
        self.lock = threading.Lock()
        offer = "Sec-WebSocket-Protocol: %s\r\n" % protocol if protocol else ""
        # The query too: /?rooms=rust chooses the rooms (chapter 15).
        target = (url.path or "/") + ("?" + url.query if url.query else "")
        self.sock.sendall(
            (
                "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
                % (target, url.netloc, KEY, offer)
            ).encode()
        )
        while b"\r\n\r\n" not in self.buf:
            self.read_more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = head.decode().split("\r\n")[0]

    def read_more(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def read_exact(self, n):
        while len(self.buf) < n:
            self.read_more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self):
        b0, b1 = self.read_exact(2)
        length = b1 & 0x7F
        if length == 126:
            length = int.from_bytes(self.read_exact(2), "big")
        elif length == 127:
            length = int.from_bytes(self.read_exact(8), "big")
        return b0 & 0x80, b0 & 0x0F, self.read_exact(length)

    def send(self, opcode, payload):
        with self.lock:
            self.sock.sendall(frame(opcode, payload))


def receive(conn, closed, heard):
    """Prints messages until the connection ends; `heard` is set on each."""
    message = b""
    try:
        while True:
            fin, opcode, payload = conn.read_frame()
            if opcode == 9:
                conn.send(10, payload)  # a Pong with the Ping's payload (5.5.2)
            elif opcode == 8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                print("closed: %d %s" % (code, payload[2:].decode()), flush=True)
                if not closed.is_set():
                    conn.send(8, payload[:2])  # echo the code (5.5.1)
                break
            elif opcode in (0, 1, 2):
                message += payload
                if fin:
                    print("<", message.decode("utf-8", "replace"), flush=True)
                    message = b""
                    heard.set()
    except (EOFError, OSError):
        print("(connection lost)", flush=True)
    closed.set()


def main(argv):
    url, protocol, wait = None, None, 1.0
    while argv:
        arg = argv.pop(0)
        if arg == "--protocol":
            protocol = argv.pop(0)
        elif arg == "--wait":
            wait = float(argv.pop(0))
        else:
            url = arg
    conn = Connection(url, protocol)
    print(conn.status, flush=True)
    closed, heard = threading.Event(), threading.Event()
    reader = threading.Thread(target=receive, args=(conn, closed, heard))
    reader.start()
    for line in sys.stdin:
        if closed.is_set():
            break
        conn.send(1, line.rstrip("\n").encode())
    # Wait for a silence of `wait` seconds (or the server's Close).
    while not closed.is_set():
        heard.clear()
        if not heard.wait(wait) and not closed.is_set():
            closed.set()
            conn.send(8, (1000).to_bytes(2, "big"))
    reader.join()


if __name__ == "__main__":
    main(sys.argv[1:])
