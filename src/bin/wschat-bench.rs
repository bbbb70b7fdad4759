//! `wschat-bench`: a load generator for WebSocket chat servers, built on
//! std and wschat's own protocol code (client frames masked, as RFC 6455
//! §5.3 requires). It speaks the raw-chat semantics every peer server
//! supports: a message sent on `/` goes to every other client.
//!
//! ```text
//! wschat-bench fanout --url ws://127.0.0.1:8080/ --clients 100 --senders 10 --size 64 --rate max --window 64 --duration 10
//! wschat-bench connections --url ws://127.0.0.1:8080/ --count 5000 --hold 5 --server-pid PID
//! wschat-bench echo --url ws://127.0.0.1:8080/echo --duration 5
//! wschat-bench rooms --url ws://127.0.0.1:8080/ --rooms 1000 --members 10 --rate 1 --duration 10 --server-pid PID
//! wschat-bench idle-rooms --url ws://127.0.0.1:8080/ --rooms 1000 --history 100 --server-pid PID
//! ```
//!
//! `rooms` and `idle-rooms` need a server with rooms (wschat's
//! `?rooms=NAME` query parameter: a raw client in that one room only).
//!
//! `--url` may list several servers, comma-separated (the nodes of a
//! `--redis` cluster): client `i` connects to URL `i mod n`, so clients
//! are spread evenly and sender 0 sits on the first node.
//! `--deflate on` (fanout, connections) offers permessage-deflate (RFC
//! 7692) as a browser does, fails if the server declines, and inflates the
//! compressed frames that arrive with wschat's own `Inflater`.
//!
//! Human-readable results go to stderr; one JSON line per run to stdout.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wschat::protocol::deflate::Inflater;
use wschat::protocol::frame::{FrameHeader, OpCode, RSV1, encode_frame_into};

const USAGE: &str = "usage: wschat-bench fanout|rooms|idle-rooms|connections|echo --url ws://HOST:PORT/PATH[,ws://...] [options]
  fanout      --clients N --senders N --size BYTES --rate max|MSGS_PER_SEC_PER_SENDER
              [--window N] [--duration SECS] [--server-pid PID] [--connect-threads N]
  rooms       --rooms N --members N --rate MSGS_PER_SEC_PER_CLIENT [--size BYTES]
              [--duration SECS] [--room-prefix NAME] [--server-pid PID] [--connect-threads N]
              (every client sends; client i is in room PREFIX<i / members>, joined with ?rooms=)
  idle-rooms  --rooms N --history MSGS [--size BYTES] [--room-prefix NAME] --server-pid PID
              (fills N rooms with MSGS messages each, leaves them empty; server RSS per room)
  connections --count N [--hold SECS] [--server-pid PID] [--connect-threads N]
  echo        [--duration SECS] [--sizes 16,1024,65536,1048576]
  --deflate on|off (fanout, connections): offer permessage-deflate [default: off]";

/// The header every fan-out payload starts with: sender, sequence number,
/// and send time in nanoseconds since the run's epoch.
const STAMP: usize = 4 + 8 + 8;

/// How long one connection's TCP connect and opening handshake may take. A
/// server that accepts but never answers makes the run fail with a clear
/// error instead of hanging in the connect phase.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Threads opening connections in parallel (`--connect-threads`), so that
/// 10,000 handshakes do not wait on each other one by one.
const CONNECT_THREADS: usize = 8;

/// Descriptors kept free beyond one per connection (stdio, epoll, the
/// allocator's and the runtime's own).
const SPARE_FDS: usize = 64;

/// The fan-out receiver's read buffer per client: 64 KiB up to 1,024
/// clients, then less, so that all of them together stay at 64 MiB (a big
/// room's clients receive a small message at a time). Never under 8 KiB.
const RECEIVE_BUFFERS_TOTAL: usize = 64 << 20;
const RECEIVE_BUFFER_MAX: usize = 64 * 1024;
const RECEIVE_BUFFER_MIN: usize = 8 * 1024;

/// The few Linux calls std does not expose: epoll, so that one thread can
/// read every client's socket (a thread per client would make the load
/// generator's own scheduling part of every latency it reports), and
/// `recv(MSG_DONTWAIT)`, so the sockets stay blocking for the senders.
mod sys {
    use std::io;
    use std::net::TcpStream;
    use std::os::fd::AsRawFd;

    #[cfg_attr(target_arch = "x86_64", repr(C, packed))]
    #[cfg_attr(not(target_arch = "x86_64"), repr(C))]
    #[derive(Clone, Copy)]
    pub struct EpollEvent {
        pub events: u32,
        pub data: u64,
    }

    unsafe extern "C" {
        fn epoll_create1(flags: i32) -> i32;
        fn epoll_ctl(epfd: i32, op: i32, fd: i32, event: *mut EpollEvent) -> i32;
        fn epoll_wait(epfd: i32, events: *mut EpollEvent, maxevents: i32, timeout: i32) -> i32;
        fn recv(fd: i32, buf: *mut u8, len: usize, flags: i32) -> isize;
        fn close(fd: i32) -> i32;
        fn getrlimit(resource: i32, rlim: *mut RLimit) -> i32;
        fn setrlimit(resource: i32, rlim: *const RLimit) -> i32;
    }

    /// `struct rlimit`: two `rlim_t`, an unsigned long on Linux.
    #[repr(C)]
    struct RLimit {
        current: std::ffi::c_ulong,
        max: std::ffi::c_ulong,
    }

    const RLIMIT_NOFILE: i32 = 7;

    /// Raises this process's descriptor limit (soft, up to the hard limit)
    /// to at least `needed`. Returns the limit now in force and the hard limit.
    pub fn raise_fd_limit(needed: usize) -> io::Result<(usize, usize)> {
        let needed = needed as std::ffi::c_ulong;
        let mut limit = RLimit { current: 0, max: 0 };
        // SAFETY: `limit` is a valid rlimit for the call's duration.
        if unsafe { getrlimit(RLIMIT_NOFILE, &mut limit) } < 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.current < needed {
            let raised = RLimit {
                current: needed.min(limit.max),
                max: limit.max,
            };
            // SAFETY: `raised` is a valid rlimit for the call's duration.
            if unsafe { setrlimit(RLIMIT_NOFILE, &raised) } < 0 {
                return Err(io::Error::last_os_error());
            }
            limit.current = raised.current;
        }
        Ok((limit.current as usize, limit.max as usize))
    }

    const EPOLLIN: u32 = 0x1;
    const EPOLL_CTL_ADD: i32 = 1;
    const EPOLL_CLOEXEC: i32 = 0o2000000;
    const MSG_DONTWAIT: i32 = 0x40;

    pub struct Epoll(i32);

    impl Epoll {
        pub fn new() -> io::Result<Epoll> {
            // SAFETY: plain syscall wrapper; the fd is owned by the result.
            let fd = unsafe { epoll_create1(EPOLL_CLOEXEC) };
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(Epoll(fd))
            }
        }

        pub fn add(&self, stream: &TcpStream, token: u64) -> io::Result<()> {
            let mut event = EpollEvent {
                events: EPOLLIN,
                data: token,
            };
            // SAFETY: `event` is a valid epoll_event for the call's duration.
            let rc = unsafe { epoll_ctl(self.0, EPOLL_CTL_ADD, stream.as_raw_fd(), &mut event) };
            if rc < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        }

        /// Waits up to `timeout_ms`; returns how many of `events` are filled.
        pub fn wait(&self, events: &mut [EpollEvent], timeout_ms: i32) -> usize {
            // SAFETY: `events` is a writable buffer of `events.len()` entries.
            let n =
                unsafe { epoll_wait(self.0, events.as_mut_ptr(), events.len() as i32, timeout_ms) };
            n.max(0) as usize
        }
    }

    impl Drop for Epoll {
        fn drop(&mut self) {
            // SAFETY: we own the fd.
            unsafe { close(self.0) };
        }
    }

    /// One non-blocking read on an otherwise blocking socket.
    pub fn recv_now(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe {
            recv(
                stream.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
                MSG_DONTWAIT,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let options = match Options::parse(&args[1..]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("wschat-bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match command.as_str() {
        "fanout" => fanout(&options),
        "rooms" => rooms(&options),
        "idle-rooms" => idle_rooms(&options),
        "connections" => connections(&options),
        "echo" => echo(&options),
        "-h" | "--help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => Err(format!("unknown command {other}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wschat-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Options {
    values: HashMap<String, String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut values = HashMap::new();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {flag}"))?;
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            values.insert(name.to_string(), value.clone());
        }
        Ok(Options { values })
    }

    fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.values.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{name}: bad value {v}")),
        }
    }

    /// The first `--url`.
    fn url(&self) -> Result<Url, String> {
        Ok(self.urls()?.swap_remove(0))
    }

    /// Every `--url`, comma-separated, each with `--deflate`'s choice.
    fn urls(&self) -> Result<Vec<Url>, String> {
        let urls = self.values.get("url").ok_or("--url is required")?;
        let deflate = match self.values.get("deflate").map(String::as_str) {
            None | Some("off") => false,
            Some("on") => true,
            Some(other) => return Err(format!("--deflate: on or off, not {other}")),
        };
        urls.split(',')
            .map(|u| {
                let mut url = Url::parse(u)?;
                url.deflate = deflate;
                Ok(url)
            })
            .collect()
    }
}

#[derive(Clone)]
struct Url {
    addr: SocketAddr,
    host: String,
    path: String,
    /// Offer permessage-deflate, and require it.
    deflate: bool,
}

impl Url {
    fn parse(url: &str) -> Result<Url, String> {
        let rest = url.strip_prefix("ws://").ok_or("only ws:// URLs")?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = host
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| format!("cannot resolve {host}"))?;
        Ok(Url {
            addr,
            host: host.to_string(),
            path: path.to_string(),
            deflate: false,
        })
    }
}

/// Makes sure this process may hold `connections` sockets at once.
fn ensure_fd_limit(connections: usize) -> Result<(), String> {
    let needed = connections + SPARE_FDS;
    let (limit, hard) =
        sys::raise_fd_limit(needed).map_err(|e| format!("descriptor limit: {e}"))?;
    if limit < needed {
        return Err(format!(
            "{connections} connections need about {needed} descriptors, but the limit is {limit} \
             (hard limit {hard}); raise it, e.g. `ulimit -n {needed}` as root"
        ));
    }
    Ok(())
}

/// Opens `count` WebSockets with `threads` threads in parallel; the result
/// is in a fixed order (thread by thread), and any failure fails them all.
/// Client `i` goes to `urls[i % urls.len()]`: spread evenly over several
/// servers, in a known order.
fn connect_all(urls: &[Url], count: usize, threads: usize) -> Result<Vec<TcpStream>, String> {
    let per_thread = count.div_ceil(threads.max(1));
    let workers: Vec<_> = (0..threads.max(1))
        .map(|t| {
            let urls = urls.to_vec();
            let first = t * per_thread;
            let n = per_thread.min(count.saturating_sub(first));
            std::thread::spawn(move || {
                (first..first + n)
                    .map(|i| connect(&urls[i % urls.len()]))
                    .collect::<io::Result<Vec<_>>>()
            })
        })
        .collect();
    let mut streams = Vec::with_capacity(count);
    for worker in workers {
        let part = worker.join().map_err(|_| "connect thread panicked")?;
        streams.extend(part.map_err(|e| format!("connect: {e}"))?);
    }
    Ok(streams)
}

/// Opens a WebSocket: TCP connect, the opening handshake, check for 101.
/// Connect and handshake are bounded by `HANDSHAKE_TIMEOUT`; the socket
/// returned has no timeouts.
fn connect(url: &Url) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&url.addr, HANDSHAKE_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    // What Chromium and Firefox offer.
    let offer = if url.deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    } else {
        ""
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n",
        url.path, url.host
    );
    stream.write_all(request.as_bytes())?;
    // Byte by byte so that nothing after the head is consumed here.
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed during handshake",
            ));
        }
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        let line = String::from_utf8_lossy(&head)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        return Err(io::Error::other(format!("handshake refused: {line}")));
    }
    stream.set_read_timeout(None)?;
    stream.set_write_timeout(None)?;
    if url.deflate
        && !String::from_utf8_lossy(&head)
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions: permessage-deflate")
    {
        return Err(io::Error::other("the server declined permessage-deflate"));
    }
    Ok(stream)
}

/// A masked client frame.
fn client_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], key: [u8; 4]) {
    encode_frame_into(out, true, opcode, payload, Some(key));
}

/// Reads server frames from a socket without allocating per frame: the
/// payload is handed out as a slice of the read buffer.
struct FrameStream {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl FrameStream {
    fn new(stream: TcpStream) -> Self {
        FrameStream {
            stream,
            buf: vec![0; 256 * 1024],
            start: 0,
            end: 0,
        }
    }

    /// Calls `each` for every complete frame now buffered; if there was
    /// none, reads more first. Returns false on EOF or a read error other
    /// than a timeout.
    fn pump(&mut self, mut each: impl FnMut(OpCode, &[u8])) -> bool {
        let mut handled = false;
        while let Ok(Some((header, header_len))) =
            FrameHeader::parse(&self.buf[self.start..self.end])
        {
            let total = header_len + header.payload_len as usize;
            if total > self.buf.len() {
                self.buf.resize(total.next_power_of_two(), 0);
            }
            if self.end - self.start < total {
                break;
            }
            let payload = &self.buf[self.start + header_len..self.start + total];
            each(header.opcode, payload);
            handled = true;
            self.start += total;
        }
        if handled {
            return true;
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        match self.stream.read(&mut self.buf[self.end..]) {
            Ok(0) => false,
            Ok(n) => {
                self.end += n;
                true
            }
            Err(e) => matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ),
        }
    }
}

/// A log-linear latency histogram (about 3 % resolution), cheap enough to
/// keep one per receiving thread.
#[derive(Clone)]
struct Histogram {
    counts: Vec<u64>,
}

impl Histogram {
    const SUB: u32 = 5;

    fn new() -> Self {
        Histogram {
            counts: vec![0; 64 << Self::SUB],
        }
    }

    fn bucket(ns: u64) -> usize {
        let ns = ns.max(1);
        let exponent = 63 - ns.leading_zeros();
        if exponent < Self::SUB {
            return ns as usize;
        }
        let mantissa = (ns >> (exponent - Self::SUB)) & ((1 << Self::SUB) - 1);
        ((exponent << Self::SUB) as u64 + mantissa) as usize
    }

    fn value(bucket: usize) -> u64 {
        let exponent = (bucket >> Self::SUB) as u32;
        if exponent < Self::SUB {
            return bucket as u64;
        }
        let mantissa = (bucket as u64) & ((1 << Self::SUB) - 1);
        ((1 << Self::SUB) + mantissa) << (exponent - Self::SUB)
    }

    fn record(&mut self, ns: u64) {
        self.counts[Self::bucket(ns)] += 1;
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The value (ns) at quantile `q`.
    fn quantile(&self, q: f64) -> u64 {
        let total = self.total();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::value(bucket);
            }
        }
        0
    }
}

/// CPU seconds (user + system) of a process, from /proc.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0) // USER_HZ is 100 on Linux
}

fn proc_status(pid: &str, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()
}

/// What a server's clients cost the machine, in kB: its resident memory,
/// its page tables, and the kernel stacks of every thread. The last is
/// only reported machine-wide (`KernelStack` in /proc/meminfo), so its
/// delta counts any other process's threads started meanwhile: run on an
/// otherwise idle machine.
fn all_in_kb(pid: &str) -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kernel_stack: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("KernelStack:"))?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()?;
    Some(proc_status(pid, "VmRSS:")? + proc_status(pid, "VmPTE:")? + kernel_stack)
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

struct ReceiverResult {
    histogram: Histogram,
    delivered: u64,
    out_of_order: u64,
    /// Messages from a room the receiver is not in.
    foreign: u64,
    last_delivery: Option<Instant>,
}

/// Who sends what the receivers hear, so that they can check the order of
/// each sender's messages and that each hears its own room only.
#[derive(Clone, Copy)]
enum Senders {
    /// Clients `0..n` send, and every client hears them all (one room).
    First(usize),
    /// Every client sends, its index in the stamp; client `i` is in room
    /// `i / members`, and hears that room's other members only.
    Rooms { members: usize },
}

impl Senders {
    /// The senders a receiver keeps progress for.
    fn per_receiver(self) -> usize {
        match self {
            Senders::First(n) => n,
            Senders::Rooms { members } => members,
        }
    }

    /// Where `receiver` keeps its progress on `sender`'s messages; `None`
    /// for a sender it is not to hear.
    fn slot(self, receiver: usize, sender: usize) -> Option<usize> {
        match self {
            Senders::First(n) => (sender < n).then_some(receiver * n + sender),
            Senders::Rooms { members } => (sender / members == receiver / members)
                .then_some(receiver * members + sender % members),
        }
    }
}

/// A load run under way: its clients, the receiving thread, and the
/// counters read before the first message.
struct Run {
    sockets: Arc<Vec<ClientSocket>>,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    /// `progress[slot]` (see [`Senders::slot`]): the last sequence number
    /// a receiver has seen from a sender.
    progress: Arc<Vec<AtomicU64>>,
    receiver: std::thread::JoinHandle<ReceiverResult>,
    server_pid: Option<String>,
    cpu_before: Option<f64>,
    server_cpu_before: Option<f64>,
    start: Instant,
}

/// What a run measured, once its deliveries drained.
struct Outcome {
    expected: u64,
    delivered: u64,
    /// Seconds from the first send to the last delivery (at least the
    /// sending time).
    busy: f64,
    histogram: Histogram,
    out_of_order: u64,
    foreign: u64,
    client_cpu_pct: f64,
    server_cpu_pct: f64,
    /// Server CPU seconds (utime + stime) from the first send to the end
    /// of the drain.
    server_cpu_s: f64,
}

impl Run {
    /// Connects the clients (`urls[i]` for client `i`, cycling), lets the
    /// server register them, and starts the receiver.
    fn start(
        urls: &[Url],
        clients: usize,
        senders: Senders,
        options: &Options,
    ) -> Result<Run, String> {
        let server_pid: Option<String> = options.values.get("server-pid").cloned();
        let connect_threads: usize = options
            .get::<usize>("connect-threads", CONNECT_THREADS)?
            .max(1);
        ensure_fd_limit(clients)?;
        let connect_start = Instant::now();
        let streams = connect_all(urls, clients, connect_threads)?;
        eprintln!(
            "{clients} connected in {:.2} s",
            connect_start.elapsed().as_secs_f64()
        );
        // Let the server register everyone before the first message.
        std::thread::sleep(Duration::from_millis(200 + clients as u64 / 5));
        let epoch = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let progress: Arc<Vec<AtomicU64>> = Arc::new(
            (0..clients * senders.per_receiver())
                .map(|_| AtomicU64::new(0))
                .collect(),
        );
        // One descriptor per client, shared by the receiver (reads) and the
        // senders and pong replies (writes, one writer at a time).
        let sockets: Arc<Vec<ClientSocket>> = Arc::new(
            streams
                .into_iter()
                .map(|stream| ClientSocket {
                    stream,
                    write_lock: Mutex::new(()),
                })
                .collect(),
        );
        let receiver = {
            let stop = stop.clone();
            let progress = progress.clone();
            let sockets = sockets.clone();
            std::thread::Builder::new()
                .name("receiver".into())
                .spawn(move || receive_all(&sockets, senders, epoch, &stop, &progress))
                .map_err(|e| format!("spawn: {e}"))?
        };
        let cpu_before = cpu_seconds("self");
        let server_cpu_before = server_pid.as_deref().and_then(cpu_seconds);
        Ok(Run {
            sockets,
            epoch,
            stop,
            progress,
            receiver,
            server_pid,
            cpu_before,
            server_cpu_before,
            start: Instant::now(),
        })
    }

    /// The sending is over (after `send_elapsed`): waits until `expected`
    /// deliveries arrived or nothing arrives for 2 s (10 s at most), then
    /// measures.
    fn finish(self, send_elapsed: Duration, expected: u64) -> Result<Outcome, String> {
        let drain_deadline = Instant::now() + Duration::from_secs(10);
        let mut last_total = 0;
        let mut last_change = Instant::now();
        loop {
            let total: u64 = self.progress.iter().map(|c| c.load(Relaxed)).sum();
            if total >= expected
                || Instant::now() > drain_deadline
                || last_change.elapsed() > Duration::from_secs(2)
            {
                break;
            }
            if total != last_total {
                last_total = total;
                last_change = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let cpu_after = cpu_seconds("self");
        let server_cpu_after = self.server_pid.as_deref().and_then(cpu_seconds);
        self.stop.store(true, Relaxed);
        let r = self.receiver.join().map_err(|_| "receiver panicked")?;
        let last_delivery = r.last_delivery.unwrap_or(self.start).max(self.start);
        let busy = last_delivery
            .duration_since(self.start)
            .max(send_elapsed)
            .as_secs_f64();
        let spent = |before: Option<f64>, after: Option<f64>| match (before, after) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        };
        let server_cpu_s = spent(self.server_cpu_before, server_cpu_after);
        Ok(Outcome {
            expected,
            delivered: r.delivered,
            busy,
            histogram: r.histogram,
            out_of_order: r.out_of_order,
            foreign: r.foreign,
            client_cpu_pct: spent(self.cpu_before, cpu_after) / busy * 100.0,
            server_cpu_pct: server_cpu_s / busy * 100.0,
            server_cpu_s,
        })
    }
}

impl Outcome {
    fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }

    /// Server CPU nanoseconds per delivery.
    fn server_ns_per_delivery(&self) -> f64 {
        self.server_cpu_s * 1e9 / self.delivered.max(1) as f64
    }

    /// The human-readable figures.
    fn summary(&self) -> String {
        let h = &self.histogram;
        format!(
            "delivered {}/{} in {:.2} s = {:.0} deliveries/s; latency p50 {:.2} ms p90 {:.2} ms p99 {:.2} ms \
             max {:.2} ms; lost {}, out of order {}, from another room {}; client CPU {:.0} %, \
             server CPU {:.0} % ({:.0} ns per delivery)",
            self.delivered,
            self.expected,
            self.busy,
            self.delivered as f64 / self.busy,
            ms(h.quantile(0.5)),
            ms(h.quantile(0.9)),
            ms(h.quantile(0.99)),
            ms(h.quantile(1.0)),
            self.lost(),
            self.out_of_order,
            self.foreign,
            self.client_cpu_pct,
            self.server_cpu_pct,
            self.server_ns_per_delivery()
        )
    }

    /// The figures as JSON members (no braces).
    fn json(&self) -> String {
        let h = &self.histogram;
        format!(
            "\"expected\":{},\"delivered\":{},\"deliveries_per_sec\":{:.1},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\
             \"p99_ms\":{:.3},\"max_ms\":{:.3},\"lost\":{},\"out_of_order\":{},\"client_cpu_pct\":{},\
             \"server_cpu_pct\":{},\"foreign\":{},\"server_cpu_s\":{},\"server_ns_per_delivery\":{}",
            self.expected,
            self.delivered,
            self.delivered as f64 / self.busy,
            ms(h.quantile(0.5)),
            ms(h.quantile(0.9)),
            ms(h.quantile(0.99)),
            ms(h.quantile(1.0)),
            self.lost(),
            self.out_of_order,
            json_number(self.client_cpu_pct),
            json_number(self.server_cpu_pct),
            self.foreign,
            if self.server_cpu_s.is_finite() {
                format!("{:.3}", self.server_cpu_s)
            } else {
                "null".into()
            },
            json_number(self.server_ns_per_delivery())
        )
    }
}

/// The payload of a timed message: sender, sequence number, send time.
fn stamp(payload: &mut [u8], sender: usize, seq: u64, epoch: Instant) {
    payload[0..4].copy_from_slice(&(sender as u32).to_le_bytes());
    payload[4..12].copy_from_slice(&seq.to_le_bytes());
    payload[12..20].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_le_bytes());
}

fn fanout(options: &Options) -> Result<(), String> {
    let urls = options.urls()?;
    let clients: usize = options.get("clients", 100)?;
    let senders: usize = options.get("senders", 10)?;
    let size: usize = options.get::<usize>("size", 64)?.max(STAMP);
    let rate_text: String = options.get("rate", "max".to_string())?;
    let rate: Option<f64> = if rate_text == "max" {
        None
    } else {
        Some(rate_text.parse().map_err(|_| "--rate: max or a number")?)
    };
    let window: u64 = options.get("window", 64)?;
    let duration = Duration::from_secs_f64(options.get("duration", 10.0)?);
    if senders == 0 || senders > clients || clients < 2 {
        return Err("need 2 <= clients and 1 <= senders <= clients".into());
    }
    let shown: Vec<String> = urls
        .iter()
        .map(|u| format!("{}{}", u.host, u.path))
        .collect();
    eprintln!(
        "fanout: connecting {clients} clients to {}",
        shown.join(", ")
    );
    let run = Run::start(&urls, clients, Senders::First(senders), options)?;
    let start = run.start;
    let mut sender_threads = Vec::new();
    for sender in 0..senders {
        let sockets = run.sockets.clone();
        let progress = run.progress.clone();
        let epoch = run.epoch;
        sender_threads.push(std::thread::spawn(move || {
            // Senders keep within `window` of the slowest receiver, so no
            // server queue ever holds more than senders x window of ours.
            let slowest = || {
                (0..clients)
                    .filter(|&r| r != sender)
                    .map(|r| progress[r * senders + sender].load(Relaxed))
                    .min()
                    .unwrap_or(0)
            };
            let mut payload = vec![b'x'; size];
            let mut frame = Vec::with_capacity(size + 14);
            let mut seq = 0u64;
            let interval = rate.map(|r| Duration::from_secs_f64(1.0 / r));
            let mut next = Instant::now();
            let key = (sender as u32 * 2654435761u32).to_le_bytes();
            while start.elapsed() < duration {
                if let Some(interval) = interval {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                    next += interval;
                } else {
                    // Max rate, but never more than `window` messages in flight.
                    while seq.saturating_sub(slowest()) >= window {
                        if start.elapsed() >= duration {
                            return seq;
                        }
                        std::thread::sleep(WINDOW_POLL);
                    }
                }
                seq += 1;
                stamp(&mut payload, sender, seq, epoch);
                frame.clear();
                client_frame(&mut frame, OpCode::Binary, &payload, key);
                if sockets[sender].write_all(&frame).is_err() {
                    break;
                }
            }
            seq
        }));
    }
    let sent: u64 = sender_threads
        .into_iter()
        .map(|t| t.join().unwrap_or(0))
        .sum();
    let send_elapsed = start.elapsed();
    let outcome = run.finish(send_elapsed, sent * (clients as u64 - 1))?;
    eprintln!(
        "fanout: {clients} clients, {senders} senders, {size} B, rate {rate_text}: sent {sent}, {}",
        outcome.summary()
    );
    println!(
        "{{\"bench\":\"fanout\",\"clients\":{clients},\"senders\":{senders},\"size\":{size},\"rate\":\"{rate_text}\",\
         \"window\":{window},\"duration_s\":{:.3},\"sent\":{sent},{}}}",
        outcome.busy,
        outcome.json()
    );
    Ok(())
}

/// The URL of a client in room `name`: `?rooms=NAME` added to `url`.
fn in_room(url: &Url, name: &str) -> Url {
    let mut url = url.clone();
    let separator = if url.path.contains('?') { '&' } else { '?' };
    url.path = format!("{}{separator}rooms={name}", url.path);
    url
}

/// Many rooms at once: `--rooms` × `--members` raw clients, client `i` in
/// room `i / members` only, every client sending `--rate` messages a
/// second; each message is for its room's other members. One sending
/// thread keeps the whole schedule (client after client, evenly spaced),
/// so that the load generator stays on one core beside its receiver.
fn rooms(options: &Options) -> Result<(), String> {
    let urls = options.urls()?;
    let rooms: usize = options.get("rooms", 1000)?;
    let members: usize = options.get("members", 10)?;
    let rate: f64 = options.get("rate", 1.0)?;
    let size: usize = options.get::<usize>("size", 64)?.max(STAMP);
    let duration = Duration::from_secs_f64(options.get("duration", 10.0)?);
    let prefix: String = options.get("room-prefix", "r".to_string())?;
    if rooms == 0 || members < 2 || rate.is_nan() || rate <= 0.0 {
        return Err("need 1 <= rooms, 2 <= members and a rate above 0".into());
    }
    let clients = rooms * members;
    let client_urls: Vec<Url> = (0..clients)
        .map(|i| in_room(&urls[i % urls.len()], &format!("{prefix}{}", i / members)))
        .collect();
    eprintln!(
        "rooms: connecting {rooms} rooms x {members} clients to {}{}?rooms={prefix}N",
        urls[0].host, urls[0].path
    );
    let run = Run::start(&client_urls, clients, Senders::Rooms { members }, options)?;
    let interval = Duration::from_secs_f64(1.0 / (rate * clients as f64));
    let mut sent = vec![0u64; clients];
    let mut payload = vec![b'x'; size];
    let mut frame = Vec::with_capacity(size + 14);
    let mut k: u64 = 0;
    let start = run.start;
    while start.elapsed() < duration {
        let due = (start.elapsed().as_secs_f64() / interval.as_secs_f64()) as u64 + 1;
        while k < due {
            let client = (k % clients as u64) as usize;
            sent[client] += 1;
            stamp(&mut payload, client, sent[client], run.epoch);
            frame.clear();
            let key = (client as u32).wrapping_mul(2654435761).to_le_bytes();
            client_frame(&mut frame, OpCode::Binary, &payload, key);
            run.sockets[client]
                .write_all(&frame)
                .map_err(|e| format!("client {client} write: {e}"))?;
            k += 1;
        }
        let next = start + interval.mul_f64(k as f64);
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
    let send_elapsed = start.elapsed();
    let total_sent: u64 = sent.iter().sum();
    let outcome = run.finish(send_elapsed, total_sent * (members as u64 - 1))?;
    eprintln!(
        "rooms: {rooms} rooms x {members} clients, {size} B, {rate} msg/s each: sent {total_sent}, {}",
        outcome.summary()
    );
    println!(
        "{{\"bench\":\"rooms\",\"rooms\":{rooms},\"members\":{members},\"clients\":{clients},\"size\":{size},\
         \"rate\":{rate},\"duration_s\":{:.3},\"sent\":{total_sent},{}}}",
        outcome.busy,
        outcome.json()
    );
    if outcome.foreign > 0 {
        return Err(format!(
            "{} messages reached a client outside their room (does the server have rooms?)",
            outcome.foreign
        ));
    }
    Ok(())
}

/// The receiving side of `fanout` and `rooms`: one thread, epoll over
/// every client.
/// How often a sender with a full window looks again. Not shorter: at
/// 20 µs, perf showed a quarter of the load generator's core going to the
/// context switches of these sleeps, and the generator, not the server,
/// set the fan-out figure. A window of 64 messages to 99 recipients takes
/// milliseconds to drain, so 200 µs keeps it full (1 ms did not).
const WINDOW_POLL: Duration = Duration::from_micros(200);

/// A fan-out client's socket: read by the receiver thread, written by its
/// sender (if it is one) and by the receiver's pong replies.
struct ClientSocket {
    stream: TcpStream,
    write_lock: Mutex<()>,
}

impl ClientSocket {
    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        let _writing = self.write_lock.lock().unwrap();
        (&self.stream).write_all(bytes)
    }
}

fn receive_all(
    sockets: &[ClientSocket],
    senders: Senders,
    epoch: Instant,
    stop: &AtomicBool,
    progress: &[AtomicU64],
) -> ReceiverResult {
    struct Conn {
        buf: Vec<u8>,
        end: usize,
    }
    let mut result = ReceiverResult {
        histogram: Histogram::new(),
        delivered: 0,
        out_of_order: 0,
        foreign: 0,
        last_delivery: None,
    };
    let epoll = sys::Epoll::new().expect("epoll");
    let buffer_size = (RECEIVE_BUFFERS_TOTAL / sockets.len().max(1))
        .clamp(RECEIVE_BUFFER_MIN, RECEIVE_BUFFER_MAX);
    let mut conns: Vec<Conn> = sockets
        .iter()
        .enumerate()
        .map(|(i, socket)| {
            epoll.add(&socket.stream, i as u64).expect("epoll add");
            Conn {
                buf: vec![0; buffer_size],
                end: 0,
            }
        })
        .collect();
    let mut events = vec![sys::EpollEvent { events: 0, data: 0 }; 1024];
    let mut pong = Vec::new();
    // Compressed payload -> its inflated message. A server that compresses
    // each broadcast once sends every client the same bytes: each distinct
    // payload is inflated once here, so that this one thread measures the
    // server rather than its own inflating. (Cleared when large.)
    let mut inflated: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let inflater = Inflater::new();
    let mut ready = Vec::with_capacity(1024);
    while !stop.load(Relaxed) {
        ready.clear();
        let n = epoll.wait(&mut events, 50);
        ready.extend(events[..n].iter().map(|e| e.data));
        for &token in &ready {
            let index = token as usize;
            let conn = &mut conns[index];
            let n = match sys::recv_now(&sockets[index].stream, &mut conn.buf[conn.end..]) {
                Ok(0) => continue, // closed: reported as lost messages
                Ok(n) => n,
                Err(_) => continue,
            };
            conn.end += n;
            let now_ns = epoch.elapsed().as_nanos() as u64;
            let mut start = 0;
            while let Ok(Some((header, header_len))) =
                FrameHeader::parse_allowing(&conn.buf[start..conn.end], RSV1)
            {
                let total = header_len + header.payload_len as usize;
                if conn.end - start < total {
                    if total > conn.buf.len() {
                        conn.buf.resize(total.next_power_of_two(), 0);
                    }
                    break;
                }
                let mut payload = &conn.buf[start + header_len..start + total];
                if header.rsv & RSV1 != 0 {
                    if inflated.len() > 100_000 {
                        inflated.clear();
                    }
                    if !inflated.contains_key(payload) {
                        let message = inflater
                            .inflate_message(payload, usize::MAX)
                            .expect("the server's compressed payload inflates");
                        inflated.insert(payload.to_vec(), message);
                    }
                    payload = &inflated[payload];
                }
                match header.opcode {
                    OpCode::Binary | OpCode::Text if payload.len() >= STAMP => {
                        let sender = u32::from_le_bytes(payload[0..4].try_into().unwrap()) as usize;
                        let seq = u64::from_le_bytes(payload[4..12].try_into().unwrap());
                        let sent_ns = u64::from_le_bytes(payload[12..20].try_into().unwrap());
                        match senders.slot(index, sender) {
                            Some(slot) => {
                                result.histogram.record(now_ns.saturating_sub(sent_ns));
                                result.delivered += 1;
                                let slot = &progress[slot];
                                if seq <= slot.load(Relaxed) {
                                    result.out_of_order += 1;
                                } else {
                                    slot.store(seq, Relaxed);
                                }
                            }
                            None => result.foreign += 1,
                        }
                    }
                    OpCode::Ping => {
                        pong.clear();
                        client_frame(&mut pong, OpCode::Pong, payload, [1, 2, 3, 4]);
                        let _ = sockets[index].write_all(&pong);
                    }
                    _ => {}
                }
                start += total;
            }
            conn.buf.copy_within(start..conn.end, 0);
            conn.end -= start;
            result.last_delivery = Some(Instant::now());
        }
    }
    result
}

/// Memory per idle room: fills `--rooms` rooms with `--history` text
/// messages each (one raw client sends them, a second one in the room
/// reads them all, so the server has taken every one), leaves each room
/// empty, and divides the growth of the server's resident memory by the
/// number of rooms.
fn idle_rooms(options: &Options) -> Result<(), String> {
    let url = options.url()?;
    let rooms: usize = options.get("rooms", 1000)?;
    let history: usize = options.get("history", 100)?;
    let size: usize = options.get("size", 64)?;
    let prefix: String = options.get("room-prefix", "idle".to_string())?;
    let threads: usize = options
        .get::<usize>("connect-threads", CONNECT_THREADS)?
        .max(1);
    let pid: String = options
        .values
        .get("server-pid")
        .cloned()
        .ok_or("--server-pid is required")?;
    let rss = || proc_status(&pid, "VmRSS:").ok_or("cannot read the server's VmRSS");
    // The same work in one room first, so that what connections cost the
    // allocator is paid before the first reading.
    for _ in 0..2 * threads {
        fill_room(&url, &format!("{prefix}-warm"), history, size)?;
    }
    std::thread::sleep(Duration::from_secs(1));
    let before = rss()?;
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (url, prefix) = (url.clone(), prefix.clone());
            std::thread::spawn(move || {
                (t..rooms)
                    .step_by(threads)
                    .try_for_each(|room| fill_room(&url, &format!("{prefix}{room}"), history, size))
            })
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| "fill thread panicked")??;
    }
    let filled = start.elapsed();
    // Let the server forget the clients that left.
    std::thread::sleep(Duration::from_secs(1));
    let after = rss()?;
    let per_room = (after as f64 - before as f64) * 1024.0 / rooms as f64;
    eprintln!(
        "idle-rooms: {rooms} rooms of {history} messages of {size} B, filled in {:.2} s; server RSS {before} -> {after} kB: {per_room:.0} bytes per idle room",
        filled.as_secs_f64()
    );
    println!(
        "{{\"bench\":\"idle-rooms\",\"rooms\":{rooms},\"history\":{history},\"size\":{size},\
         \"server_rss_kb_before\":{before},\"server_rss_kb_after\":{after},\"bytes_per_room\":{per_room:.0}}}"
    );
    Ok(())
}

/// Puts `history` messages in room `name` and leaves it empty: a raw
/// client sends them, a second one reads them back, then both close.
fn fill_room(url: &Url, name: &str, history: usize, size: usize) -> Result<(), String> {
    let url = in_room(url, name);
    let failed = |e: io::Error| format!("room {name}: {e}");
    let reader = connect(&url).map_err(failed)?;
    let mut writer = connect(&url).map_err(failed)?;
    reader
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(failed)?;
    let mut frames = FrameStream::new(reader);
    let mut frame = Vec::new();
    for i in 0..history {
        let mut line = format!("message {i} ");
        line.extend(std::iter::repeat_n('x', size.saturating_sub(line.len())));
        frame.clear();
        client_frame(&mut frame, OpCode::Text, line.as_bytes(), [1, 2, 3, 4]);
        writer.write_all(&frame).map_err(failed)?;
    }
    let mut read = 0;
    while read < history {
        let alive = frames.pump(|opcode, _| read += usize::from(opcode == OpCode::Text));
        if !alive {
            return Err(format!(
                "room {name}: closed after {read} of {history} messages"
            ));
        }
    }
    for stream in [&mut writer, &mut frames.stream] {
        frame.clear();
        client_frame(
            &mut frame,
            OpCode::Close,
            &1000u16.to_be_bytes(),
            [1, 2, 3, 4],
        );
        let _ = stream.write_all(&frame);
    }
    Ok(())
}

fn json_number(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "null".into()
    }
}

fn connections(options: &Options) -> Result<(), String> {
    let urls = options.urls()?;
    let count: usize = options.get("count", 1000)?;
    let hold = Duration::from_secs_f64(options.get("hold", 5.0)?);
    let threads: usize = options
        .get::<usize>("connect-threads", CONNECT_THREADS)?
        .max(1);
    let pid: Option<String> = options.values.get("server-pid").cloned();
    ensure_fd_limit(count)?;
    let rss_before = pid.as_deref().and_then(|p| proc_status(p, "VmRSS:"));
    let all_in_before = pid.as_deref().and_then(all_in_kb);
    let threads_before = pid.as_deref().and_then(|p| proc_status(p, "Threads:"));

    eprintln!("connections: opening {count} idle connections with {threads} threads");
    let start = Instant::now();
    let per_thread = count.div_ceil(threads);
    let mut workers = Vec::new();
    for t in 0..threads {
        let urls = urls.clone();
        let n = per_thread.min(count.saturating_sub(t * per_thread));
        workers.push(std::thread::spawn(move || {
            let mut held = Vec::with_capacity(n);
            let mut times = Vec::with_capacity(n);
            let mut failed = 0;
            for i in 0..n {
                let t0 = Instant::now();
                match connect(&urls[i % urls.len()]) {
                    Ok(s) => {
                        times.push(t0.elapsed().as_nanos() as u64);
                        held.push(s);
                    }
                    Err(_) => failed += 1,
                }
            }
            (held, times, failed)
        }));
    }
    let mut held = Vec::with_capacity(count);
    let mut histogram = Histogram::new();
    let mut failed = 0;
    for w in workers {
        let (h, times, f) = w.join().map_err(|_| "connect thread panicked")?;
        held.extend(h);
        for t in times {
            histogram.record(t);
        }
        failed += f;
    }
    let ramp = start.elapsed();
    std::thread::sleep(hold);
    let rss_after = pid.as_deref().and_then(|p| proc_status(p, "VmRSS:"));
    let all_in_after = pid.as_deref().and_then(all_in_kb);
    let threads_after = pid.as_deref().and_then(|p| proc_status(p, "Threads:"));
    // Are they all still open? A server that dropped idle clients fails here.
    let mut alive = 0;
    for s in &held {
        let _ = s.set_nonblocking(true);
        let mut b = [0u8; 64];
        match (&*s).read(&mut b) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => alive += 1,
            Ok(n) if n > 0 => alive += 1, // a ping, say
            _ => {}
        }
    }
    let opened = held.len();
    drop(held);
    let per_conn = match (rss_before, rss_after) {
        (Some(a), Some(b)) if opened > 0 => Some((b as f64 - a as f64) / opened as f64),
        _ => None,
    };
    let all_in_per_conn = match (all_in_before, all_in_after) {
        (Some(a), Some(b)) if opened > 0 => Some((b as f64 - a as f64) / opened as f64),
        _ => None,
    };
    eprintln!(
        "connections: {opened} open ({failed} failed, {alive} alive after {:.1} s) in {:.2} s; connect p50 {:.2} ms p99 {:.2} ms; \
         server RSS {:?} -> {:?} kB ({} kB per connection; {} kB all-in), threads {:?} -> {:?}",
        hold.as_secs_f64(),
        ramp.as_secs_f64(),
        ms(histogram.quantile(0.5)),
        ms(histogram.quantile(0.99)),
        rss_before,
        rss_after,
        per_conn.map_or("?".into(), |v| format!("{v:.1}")),
        all_in_per_conn.map_or("?".into(), |v| format!("{v:.1}")),
        threads_before,
        threads_after
    );
    let opt = |v: Option<u64>| v.map_or("null".into(), |v| v.to_string());
    println!(
        "{{\"bench\":\"connections\",\"count\":{count},\"opened\":{opened},\"failed\":{failed},\"alive\":{alive},\
         \"ramp_s\":{:.3},\"connect_p50_ms\":{:.3},\"connect_p99_ms\":{:.3},\"server_rss_kb_before\":{},\
         \"server_rss_kb_after\":{},\"rss_kb_per_conn\":{},\"all_in_kb_per_conn\":{},\"server_threads_before\":{},\"server_threads\":{}}}",
        ramp.as_secs_f64(),
        ms(histogram.quantile(0.5)),
        ms(histogram.quantile(0.99)),
        opt(rss_before),
        opt(rss_after),
        per_conn.map_or("null".into(), |v| format!("{v:.2}")),
        all_in_per_conn.map_or("null".into(), |v| format!("{v:.2}")),
        opt(threads_before),
        opt(threads_after)
    );
    Ok(())
}

fn echo(options: &Options) -> Result<(), String> {
    let url = options.url()?;
    if url.deflate {
        return Err("--deflate is for fanout and connections".into());
    }
    let duration = Duration::from_secs_f64(options.get("duration", 5.0)?);
    let sizes: String = options.get("sizes", "16,1024,65536,1048576".to_string())?;
    let sizes: Vec<usize> = sizes
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .map_err(|_| format!("--sizes: bad size {s}"))
        })
        .collect::<Result<_, _>>()?;
    let per_size = duration / sizes.len().max(1) as u32;
    for size in sizes {
        let stream = connect(&url).map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut frames = FrameStream::new(stream);
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let mut frame = Vec::with_capacity(size + 14);
        let mut histogram = Histogram::new();
        let mut round_trips = 0u64;
        let mut mismatches = 0u64;
        let start = Instant::now();
        while start.elapsed() < per_size {
            frame.clear();
            client_frame(&mut frame, OpCode::Binary, &payload, [9, 8, 7, 6]);
            let t0 = Instant::now();
            writer
                .write_all(&frame)
                .map_err(|e| format!("write: {e}"))?;
            let mut done = false;
            while !done {
                let alive = frames.pump(|opcode, echoed| {
                    if opcode == OpCode::Binary {
                        if echoed != payload.as_slice() {
                            mismatches += 1;
                        }
                        done = true;
                    }
                });
                if !alive && !done {
                    return Err("server closed the echo connection".into());
                }
            }
            histogram.record(t0.elapsed().as_nanos() as u64);
            round_trips += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        let per_sec = round_trips as f64 / secs;
        let mb_per_sec = per_sec * size as f64 / 1e6;
        eprintln!(
            "echo {size} B: {round_trips} round trips in {secs:.2} s = {per_sec:.0}/s, {mb_per_sec:.1} MB/s each way; \
             p50 {:.3} ms p99 {:.3} ms; mismatches {mismatches}",
            ms(histogram.quantile(0.5)),
            ms(histogram.quantile(0.99))
        );
        println!(
            "{{\"bench\":\"echo\",\"size\":{size},\"round_trips\":{round_trips},\"round_trips_per_sec\":{per_sec:.1},\
             \"mb_per_sec\":{mb_per_sec:.2},\"p50_ms\":{:.4},\"p99_ms\":{:.4},\"mismatches\":{mismatches}}}",
            ms(histogram.quantile(0.5)),
            ms(histogram.quantile(0.99))
        );
        if mismatches > 0 {
            return Err(format!("{mismatches} echoes differed from what was sent"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    #[test]
    fn histogram_quantiles_are_within_resolution() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for (q, expected) in [(0.5, 50_000_000.0), (0.99, 99_000_000.0)] {
            let got = h.quantile(q) as f64;
            assert!(
                (got - expected).abs() / expected < 0.05,
                "q{q}: {got} vs {expected}"
            );
        }
    }
}
