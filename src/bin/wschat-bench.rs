//! `wschat-bench`: a load generator for WebSocket chat servers, built on
//! std and wschat's own protocol code (client frames masked, as RFC 6455
//! §5.3 requires). It speaks the raw-chat semantics every peer server
//! supports: a message sent on `/` goes to every other client.
//!
//! ```text
//! wschat-bench fanout --url ws://127.0.0.1:8080/ --clients 100 --senders 10 --size 64 --rate max --window 64 --duration 10
//! wschat-bench connections --url ws://127.0.0.1:8080/ --count 5000 --hold 5 --server-pid PID
//! wschat-bench echo --url ws://127.0.0.1:8080/echo --duration 5
//! ```
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

const USAGE: &str =
    "usage: wschat-bench fanout|connections|echo --url ws://HOST:PORT/PATH[,ws://...] [options]
  fanout      --clients N --senders N --size BYTES --rate max|MSGS_PER_SEC_PER_SENDER
              [--window N] [--duration SECS] [--server-pid PID] [--connect-threads N]
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
    last_delivery: Option<Instant>,
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
    let server_pid: Option<String> = options.values.get("server-pid").cloned();
    let connect_threads: usize = options
        .get::<usize>("connect-threads", CONNECT_THREADS)?
        .max(1);
    if senders == 0 || senders > clients || clients < 2 {
        return Err("need 2 <= clients and 1 <= senders <= clients".into());
    }
    ensure_fd_limit(clients)?;

    let shown: Vec<String> = urls
        .iter()
        .map(|u| format!("{}{}", u.host, u.path))
        .collect();
    eprintln!(
        "fanout: connecting {clients} clients to {} with {connect_threads} threads",
        shown.join(", ")
    );
    let connect_start = Instant::now();
    let streams = connect_all(&urls, clients, connect_threads)?;
    eprintln!(
        "fanout: {clients} connected in {:.2} s",
        connect_start.elapsed().as_secs_f64()
    );
    // Let the server register everyone before the first message.
    std::thread::sleep(Duration::from_millis(200 + clients as u64 / 5));

    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    // progress[receiver * senders + sender]: the last sequence number that
    // receiver has seen from that sender. Senders keep within `window` of
    // the slowest receiver, so no server queue ever holds more than
    // senders x window of our messages.
    let progress: Arc<Vec<AtomicU64>> =
        Arc::new((0..clients * senders).map(|_| AtomicU64::new(0)).collect());
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
    let start = Instant::now();
    let mut sender_threads = Vec::new();
    for sender in 0..senders {
        let sockets = sockets.clone();
        let progress = progress.clone();
        sender_threads.push(std::thread::spawn(move || {
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
                payload[0..4].copy_from_slice(&(sender as u32).to_le_bytes());
                payload[4..12].copy_from_slice(&seq.to_le_bytes());
                payload[12..20].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_le_bytes());
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
    let expected = sent * (clients as u64 - 1);
    // Drain: wait until everything arrived or nothing arrives for 2 s.
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    let mut last_total = 0;
    let mut last_change = Instant::now();
    loop {
        let total: u64 = progress.iter().map(|c| c.load(Relaxed)).sum();
        let target = sent * (clients as u64 - 1);
        if total >= target
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
    let server_cpu_after = server_pid.as_deref().and_then(cpu_seconds);
    stop.store(true, Relaxed);
    let r = receiver.join().map_err(|_| "receiver panicked")?;
    let (histogram, delivered, out_of_order) = (r.histogram, r.delivered, r.out_of_order);
    let last_delivery = r.last_delivery.unwrap_or(start).max(start);
    let busy = last_delivery
        .duration_since(start)
        .max(send_elapsed)
        .as_secs_f64();
    let per_sec = delivered as f64 / busy;
    let lost = expected.saturating_sub(delivered);
    let client_cpu = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) => (b - a) / busy * 100.0,
        _ => f64::NAN,
    };
    let server_cpu = match (server_cpu_before, server_cpu_after) {
        (Some(a), Some(b)) => (b - a) / busy * 100.0,
        _ => f64::NAN,
    };
    let (p50, p90, p99, max) = (
        histogram.quantile(0.50),
        histogram.quantile(0.90),
        histogram.quantile(0.99),
        histogram.quantile(1.0),
    );
    eprintln!(
        "fanout: {clients} clients, {senders} senders, {size} B, rate {rate_text}: sent {sent}, delivered {delivered}/{expected} \
         in {busy:.2} s = {per_sec:.0} deliveries/s; latency p50 {:.2} ms p90 {:.2} ms p99 {:.2} ms max {:.2} ms; \
         lost {lost}, out of order {out_of_order}; client CPU {client_cpu:.0} %, server CPU {server_cpu:.0} %",
        ms(p50),
        ms(p90),
        ms(p99),
        ms(max)
    );
    println!(
        "{{\"bench\":\"fanout\",\"clients\":{clients},\"senders\":{senders},\"size\":{size},\"rate\":\"{rate_text}\",\
         \"window\":{window},\"duration_s\":{:.3},\"sent\":{sent},\"expected\":{expected},\"delivered\":{delivered},\
         \"deliveries_per_sec\":{per_sec:.1},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\
         \"lost\":{lost},\"out_of_order\":{out_of_order},\"client_cpu_pct\":{},\"server_cpu_pct\":{}}}",
        busy,
        ms(p50),
        ms(p90),
        ms(p99),
        ms(max),
        json_number(client_cpu),
        json_number(server_cpu)
    );
    Ok(())
}

/// The receiving side of `fanout`: one thread, epoll over every client.
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
    senders: usize,
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
                        result.histogram.record(now_ns.saturating_sub(sent_ns));
                        result.delivered += 1;
                        if sender < senders {
                            let slot = &progress[index * senders + sender];
                            if seq <= slot.load(Relaxed) {
                                result.out_of_order += 1;
                            } else {
                                slot.store(seq, Relaxed);
                            }
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
