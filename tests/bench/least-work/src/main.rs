//! Benchmark peer for wschat: the *least-work* "raw chat" WebSocket server, a
//! yardstick for what the hardware allows rather than a server anyone should
//! run. It does the same job as the other peers, with as little work per
//! message as a server can get away with:
//!
//! * ONE thread and one epoll set (level-triggered) for the listener and every
//!   client; non-blocking sockets, `TCP_NODELAY`.
//! * ONE shared read buffer: a read lands there and is parsed in place; only
//!   an incomplete frame (or HTTP head) is copied aside for that client.
//! * Every text/binary message is encoded (server header + payload) ONCE and
//!   appended to every OTHER chat client's output `Vec<u8>`; on path `/echo`
//!   it goes back to the sender instead.
//! * At the end of each loop turn, ONE `write` per client with pending output.
//!   EPOLLOUT is registered only while a write could not finish.
//!
//! What it leaves out, on purpose: no per-client memory limit (a slow reader's
//! output grows without bound), no UTF-8 check of text, no limit on message
//! size, no idle timeout, no logging per message. Fragmentation is not
//! reassembled: each data frame, fragment or not, is forwarded as it came
//! (the benchmark client only sends unfragmented frames; fragments from two
//! senders could interleave here). Ping gets a Pong, Close gets its own
//! payload back in a Close and the connection ends once that is written.
//!
//! Flags: `--addr HOST:PORT` (default 127.0.0.1:0). Prints
//! `Listening on http://ADDR/` to stderr once bound.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use base64::Engine;
use sha1::{Digest, Sha1};

/// epoll token of the listening socket; clients use their slot index.
const LISTENER: u64 = u64::MAX;
/// The shared read buffer: big enough that a 1 MiB echo takes few reads.
const READ_BUF: usize = 256 * 1024;
/// An HTTP request head longer than this is refused (RFC 6455 §4.1 sets no
/// limit; 8 KiB is what common servers allow).
const MAX_HEAD: usize = 8 * 1024;
/// A partly written output buffer is compacted once this much was written.
const COMPACT_AFTER: usize = 64 * 1024;
/// RFC 6455 §1.3: the GUID appended to Sec-WebSocket-Key.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#[derive(PartialEq)]
enum State {
    Handshake,
    Chat,
    Echo,
    /// Output still to write, then the socket is closed; input is ignored.
    Closing,
}

struct Client {
    stream: TcpStream,
    state: State,
    /// An incomplete HTTP head or frame left over from the last read.
    pending_in: Vec<u8>,
    out: Vec<u8>,
    /// How much of `out` is already written.
    out_sent: usize,
    /// Already in this turn's write list.
    queued: bool,
    /// EPOLLOUT is registered (a write could not finish).
    epollout: bool,
}

/// Everything but the shared read buffer, so that a frame parsed in that
/// buffer can be appended to other clients' output.
struct Chat {
    epoll: i32,
    clients: Vec<Option<Client>>,
    free: Vec<usize>,
    /// Clients with output to write at the end of this turn.
    dirty: Vec<usize>,
    /// One encoded server frame, reused for every message.
    frame: Vec<u8>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = match args.as_slice() {
        [] => "127.0.0.1:0".to_string(),
        [flag, addr] if flag == "--addr" => addr.clone(),
        _ => {
            eprintln!("usage: least-work-chat [--addr HOST:PORT]   (default 127.0.0.1:0)");
            std::process::exit(2);
        }
    };
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| {
        eprintln!("cannot bind {addr}: {e}");
        std::process::exit(1);
    });
    listener.set_nonblocking(true).expect("non-blocking listener");
    // SAFETY: plain syscall; the descriptor lives as long as the process.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(epoll >= 0, "epoll_create1: {}", io::Error::last_os_error());
    let mut chat =
        Chat { epoll, clients: Vec::new(), free: Vec::new(), dirty: Vec::new(), frame: Vec::new() };
    chat.ctl(libc::EPOLL_CTL_ADD, listener.as_raw_fd(), libc::EPOLLIN as u32, LISTENER);
    eprintln!("Listening on http://{}/", listener.local_addr().unwrap());

    let mut read_buf = vec![0u8; READ_BUF];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    loop {
        // SAFETY: `events` is a writable array of `events.len()` entries.
        let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, -1) };
        for event in &events[..n.max(0) as usize] {
            let (token, flags) = (event.u64, event.events);
            if token == LISTENER {
                chat.accept_all(&listener);
                continue;
            }
            let i = token as usize;
            if flags & libc::EPOLLOUT as u32 != 0 {
                chat.queue(i);
            }
            if flags & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                chat.on_readable(i, &mut read_buf);
            }
        }
        let dirty = std::mem::take(&mut chat.dirty);
        for &i in &dirty {
            chat.flush(i);
        }
        chat.dirty = dirty;
        chat.dirty.clear();
    }
}

impl Chat {
    fn ctl(&self, op: i32, fd: i32, events: u32, token: u64) {
        let mut event = libc::epoll_event { events, u64: token };
        // SAFETY: `event` is valid for the call; a failure is not fatal here.
        unsafe { libc::epoll_ctl(self.epoll, op, fd, &mut event) };
    }

    fn accept_all(&mut self, listener: &TcpListener) {
        loop {
            let stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // E.g. EMFILE: the connection stays queued; say so and go on.
                    eprintln!("accept: {e}");
                    return;
                }
            };
            if stream.set_nonblocking(true).is_err() || stream.set_nodelay(true).is_err() {
                continue;
            }
            let i = self.free.pop().unwrap_or_else(|| {
                self.clients.push(None);
                self.clients.len() - 1
            });
            self.ctl(libc::EPOLL_CTL_ADD, stream.as_raw_fd(), libc::EPOLLIN as u32, i as u64);
            self.clients[i] = Some(Client {
                stream,
                state: State::Handshake,
                pending_in: Vec::new(),
                out: Vec::new(),
                out_sent: 0,
                queued: false,
                epollout: false,
            });
        }
    }

    fn drop_client(&mut self, i: usize) {
        // Closing the descriptor also removes it from the epoll set.
        if self.clients[i].take().is_some() {
            self.free.push(i);
        }
    }

    /// Puts client `i` on this turn's write list (once).
    fn queue(&mut self, i: usize) {
        if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut)
            && !c.queued
        {
            c.queued = true;
            self.dirty.push(i);
        }
    }

    /// One read into the shared buffer, then every complete head or frame in it.
    fn on_readable(&mut self, i: usize, read_buf: &mut [u8]) {
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let n = match (&c.stream).read(read_buf) {
            Ok(0) => return self.drop_client(i),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                return;
            }
            Err(_) => return self.drop_client(i),
        };
        if c.state == State::Closing {
            return;
        }
        let mut pending = std::mem::take(&mut c.pending_in);
        if pending.is_empty() {
            let used = self.handle_bytes(i, &mut read_buf[..n]);
            pending.extend_from_slice(&read_buf[used..n]);
        } else {
            pending.extend_from_slice(&read_buf[..n]);
            let used = self.handle_bytes(i, &mut pending);
            pending.drain(..used);
        }
        if let Some(c) = self.clients[i].as_mut()
            && c.state != State::Closing
        {
            c.pending_in = pending;
        }
    }

    /// Handles what `data` holds for client `i`; returns how many bytes it used.
    fn handle_bytes(&mut self, i: usize, data: &mut [u8]) -> usize {
        let mut used = 0;
        if self.clients[i].as_ref().is_some_and(|c| c.state == State::Handshake) {
            used = self.handshake(i, data);
        }
        loop {
            match self.clients[i].as_ref().map(|c| &c.state) {
                Some(State::Chat | State::Echo) => {}
                _ => return used,
            }
            match self.on_frame(i, &mut data[used..]) {
                0 => return used,
                n => used += n,
            }
        }
    }

    /// The opening handshake (RFC 6455 §4.2): just enough of it for the
    /// benchmark client and browsers. Returns the bytes of the head, or 0.
    fn handshake(&mut self, i: usize, data: &[u8]) -> usize {
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            if data.len() > MAX_HEAD {
                self.refuse(i, "431 Request Header Fields Too Large");
            }
            return 0;
        };
        let head = String::from_utf8_lossy(&data[..end]);
        let mut lines = head.split("\r\n");
        let mut request = lines.next().unwrap_or("").split(' ');
        let (method, path) = (request.next(), request.next().unwrap_or("/"));
        let key = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-key"))
            .map(|(_, v)| v.trim());
        let (Some("GET"), Some(key)) = (method, key) else {
            self.refuse(i, "400 Bad Request");
            return 0;
        };
        let accept = base64::engine::general_purpose::STANDARD
            .encode(Sha1::digest(format!("{key}{WS_GUID}").as_bytes()));
        let echo = path == "/echo" || path.starts_with("/echo?");
        let c = self.clients[i].as_mut().unwrap();
        c.state = if echo { State::Echo } else { State::Chat };
        write!(
            c.out,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .unwrap();
        self.queue(i);
        end + 4
    }

    fn refuse(&mut self, i: usize, status: &str) {
        let c = self.clients[i].as_mut().unwrap();
        write!(c.out, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
        c.state = State::Closing;
        self.queue(i);
    }

    /// One client frame (RFC 6455 §5.2) at the start of `data`, unmasked in
    /// place and acted on. Returns its length, or 0 if it is incomplete.
    fn on_frame(&mut self, i: usize, data: &mut [u8]) -> usize {
        if data.len() < 2 {
            return 0;
        }
        let (b0, b1) = (data[0], data[1]);
        let (mut header, len) = match b1 & 0x7f {
            126 if data.len() >= 4 => (4, u16::from_be_bytes([data[2], data[3]]) as u64),
            127 if data.len() >= 10 => (10, u64::from_be_bytes(data[2..10].try_into().unwrap())),
            126 | 127 => return 0,
            n => (2, n as u64),
        };
        if b1 & 0x80 == 0 {
            // §5.1: a client frame must be masked.
            self.close_with(i, &1002u16.to_be_bytes());
            return 0;
        }
        header += 4;
        let total = match usize::try_from(len).ok().and_then(|l| l.checked_add(header)) {
            Some(t) if t <= data.len() => t,
            _ => return 0,
        };
        let mask: [u8; 4] = data[header - 4..header].try_into().unwrap();
        let payload = &mut data[header..total];
        unmask(payload, mask);
        let payload = &data[header..total];
        match b0 & 0x0f {
            0x0..=0x2 => {
                encode(&mut self.frame, b0 & 0x8f, payload);
                if self.clients[i].as_ref().unwrap().state == State::Echo {
                    self.append(i);
                } else {
                    for j in 0..self.clients.len() {
                        if j != i && self.clients[j].as_ref().is_some_and(|c| c.state == State::Chat) {
                            self.append(j);
                        }
                    }
                }
            }
            0x8 => self.close_with(i, payload),
            0x9 => {
                encode(&mut self.frame, 0x8a, payload);
                self.append(i);
            }
            0xa => {}
            _ => self.close_with(i, &1002u16.to_be_bytes()),
        }
        total
    }

    /// Appends the encoded frame to client `j`'s output.
    fn append(&mut self, j: usize) {
        self.clients[j].as_mut().unwrap().out.extend_from_slice(&self.frame);
        self.queue(j);
    }

    /// Sends a Close with `payload` (status code first) and ends the connection.
    fn close_with(&mut self, i: usize, payload: &[u8]) {
        encode(&mut self.frame, 0x88, payload);
        self.append(i);
        self.clients[i].as_mut().unwrap().state = State::Closing;
    }

    /// The one write of this turn for client `i`.
    fn flush(&mut self, i: usize) {
        let Some(c) = self.clients[i].as_mut() else {
            return;
        };
        c.queued = false;
        if c.out_sent < c.out.len() {
            match (&c.stream).write(&c.out[c.out_sent..]) {
                Ok(n) => c.out_sent += n,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                Err(_) => return self.drop_client(i),
            }
        }
        let fd = c.stream.as_raw_fd();
        if c.out_sent == c.out.len() {
            c.out.clear();
            c.out_sent = 0;
            if c.state == State::Closing {
                return self.drop_client(i);
            }
            if c.epollout {
                c.epollout = false;
                self.ctl(libc::EPOLL_CTL_MOD, fd, libc::EPOLLIN as u32, i as u64);
            }
        } else {
            if c.out_sent >= COMPACT_AFTER {
                c.out.drain(..c.out_sent);
                c.out_sent = 0;
            }
            if !c.epollout {
                c.epollout = true;
                self.ctl(libc::EPOLL_CTL_MOD, fd, (libc::EPOLLIN | libc::EPOLLOUT) as u32, i as u64);
            }
        }
    }
}

/// A server frame (unmasked, §5.2): `b0` is FIN + opcode, then the length.
fn encode(out: &mut Vec<u8>, b0: u8, payload: &[u8]) {
    out.clear();
    out.push(b0);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// §5.3: XOR with the masking key, eight bytes at a time.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let v = u64::from_ne_bytes((&*chunk).try_into().unwrap()) ^ wide;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (k, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[k & 3];
    }
}
