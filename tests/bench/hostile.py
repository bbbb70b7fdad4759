#!/usr/bin/env python3
"""Repeated-run measurements of wschat against hostile or unlucky clients,
with the release binary (run by hand, not in CI; Python 3 standard library only):

  hostile.py memory    BINARY [SECONDS]  four wschat.v1 clients send "/" + "\\x01"*65000 at
                                         45/s and three /echo clients send empty pings, none
                                         reading, all at once (default 60 s): the server's
                                         peak RSS (VmHWM)
  hostile.py halfclose BINARY [RUNS]     a client sends Close(1000), shutdown(SHUT_WR), reads to
                                         EOF, on /echo and on / (default 200 runs each): how
                                         often the server's Close comes back
  hostile.py slow      BINARY [RUNS]     a chat client with a 4 KiB receive buffer reads slowly
                                         while another sends 60 kB messages at 45/s
                                         (--max-lag-bytes 1048576; default 10 runs): how often
                                         the dropped client gets a whole Close 1008
"""
import re, select, socket, struct, subprocess, sys, threading, time


def start(binary, *args):
    """Starts the server on an ephemeral loopback port; returns (process, port)."""
    p = subprocess.Popen([binary, "--addr", "127.0.0.1:0", "--log-level", "warn", *args],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while True:
        line = p.stderr.readline()
        if not line:
            sys.exit("the server did not start")
        m = re.search(r"http://[\d.]+:(\d+)/", line)
        if m:
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, int(m.group(1))


def stop(p):
    p.terminate()
    p.wait()


def status_kib(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])


def connect(port, path="/", protocol=None, rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    extra = f"Sec-WebSocket-Protocol: {protocol}\r\n" if protocol else ""
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        b = s.recv(1)
        if not b:
            raise IOError("closed during the handshake")
        head += b
    assert b" 101 " in head.split(b"\r\n")[0], head
    return s


def frame(opcode, payload):
    """A client frame, masked with an all-zero key (valid, and free to mask)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


def parse(data):
    """The server's frames in data, as (opcode, payload); a frame cut short ends the list
    as ("cut", bytes of it received)."""
    out, i = [], 0
    while i < len(data):
        b0, j = data[i], i + 2
        n = data[i + 1] & 0x7f if len(data) - i >= 2 else None
        if n == 126:
            n = struct.unpack("!H", data[j:j + 2])[0] if len(data) - j >= 2 else None
            j += 2
        elif n == 127:
            n = struct.unpack("!Q", data[j:j + 8])[0] if len(data) - j >= 8 else None
            j += 8
        if n is None or len(data) - j < n:
            out.append(("cut", len(data) - i))
            break
        out.append((b0 & 0x0f, data[j:j + n]))
        i = j + n
    return out


def send_until(s, data, deadline):
    """Sends all of data (a non-blocking socket) unless the deadline passes first."""
    view = memoryview(data)
    while view and time.time() < deadline:
        if select.select([], [s], [], 0.2)[1]:
            try:
                view = view[s.send(view):]
            except BlockingIOError:
                pass


def memory(binary, seconds=60.0):
    p, port = start(binary)
    base = status_kib(p.pid, "VmRSS")
    deadline = time.time() + seconds
    stats = {}

    def v1_sender(k):
        s = connect(port, "/", "wschat.v1")
        s.setblocking(False)
        msg, n = frame(1, b"/" + b"\x01" * 65000), 0
        try:
            while time.time() < deadline:
                t = time.time()
                send_until(s, msg, deadline)
                n += 1
                time.sleep(max(0, 1 / 45 - (time.time() - t)))
            stats[f"v1 client {k}"] = f"{n} unknown commands sent"
        except OSError as e:
            stats[f"v1 client {k}"] = f"{e} after {n}"

    def pinger(k):
        s = connect(port, "/echo")
        s.setblocking(False)
        pings, n = frame(9, b"") * 1000, 0
        try:
            while time.time() < deadline:
                send_until(s, pings, deadline)
                n += 1000
            stats[f"echo client {k}"] = f"{n} pings sent"
        except OSError as e:
            stats[f"echo client {k}"] = f"{e} after {n}"

    threads = [threading.Thread(target=v1_sender, args=(k,)) for k in range(4)]
    threads += [threading.Thread(target=pinger, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in sorted(stats):
        print(f"{k}: {stats[k]}")
    print(f"RSS at start {base / 1024:.1f} MB; peak (VmHWM) "
          f"{status_kib(p.pid, 'VmHWM') / 1024:.1f} MB")
    stop(p)


def halfclose(binary, runs=200):
    p, port = start(binary)
    close_1000 = struct.pack("!H", 1000)
    for path in ["/echo", "/"]:
        ok = 0
        for _ in range(runs):
            s = connect(port, path)
            s.settimeout(10)
            s.sendall(frame(8, close_1000))
            s.shutdown(socket.SHUT_WR)
            data = b""
            try:
                while b := s.recv(65536):
                    data += b
            except OSError:
                pass
            s.close()
            frames = parse(data)
            ok += bool(frames) and frames[-1][0] == 8 and frames[-1][1][:2] == close_1000
        print(f"{path}: a Close came back in {ok} of {runs} runs")
    stop(p)


def slow(binary, runs=10):
    p, port = start(binary, "--max-lag-bytes", "1048576")
    whole = 0
    for run in range(runs):
        slow_client = connect(port, "/", rcvbuf=4096)
        slow_client.settimeout(20)
        sender = connect(port, "/")
        sender.settimeout(5)
        done = threading.Event()

        def flood():
            msg = frame(1, b"m" * 60000)
            while not done.is_set():
                try:
                    sender.sendall(msg)
                except OSError:
                    return
                time.sleep(1 / 45)

        t = threading.Thread(target=flood)
        t.start()
        data = b""
        try:
            while b := slow_client.recv(4096):
                data += b
                time.sleep(0.01)  # about 400 kB/s
        except OSError:
            pass
        done.set()
        t.join()
        sender.close()
        slow_client.close()
        frames = parse(data)
        last = frames[-1] if frames else (None, b"")
        if last[0] == 8 and last[1][:2] == struct.pack("!H", 1008):
            whole += 1
            how = "Close 1008 " + last[1][2:].decode()
        elif last[0] == "cut":
            how = f"a frame cut short ({last[1]} bytes of it), then EOF"
        else:
            how = f"a frame of opcode {last[0]}, then EOF"
        print(f"run {run}: {len(data)} bytes, {len(frames)} frames, ends with {how}")
    print(f"a whole Close 1008 in {whole} of {runs} drops")
    stop(p)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("memory", "halfclose", "slow"):
        sys.exit(__doc__)
    what, binary = sys.argv[1], sys.argv[2]
    if what == "memory":
        memory(binary, float(sys.argv[3]) if len(sys.argv) > 3 else 60.0)
    elif what == "halfclose":
        halfclose(binary, int(sys.argv[3]) if len(sys.argv) > 3 else 200)
    else:
        slow(binary, int(sys.argv[3]) if len(sys.argv) > 3 else 10)
