//! Limits per client address, against the real server over real sockets:
//! `--max-clients-per-ip`, `--max-pending-per-ip`, and who the client is
//! behind a `--trusted-proxy` (the rightmost `X-Forwarded-For` entry that
//! is not itself a trusted proxy). Several client addresses come from one
//! machine by binding 127.0.0.2, 127.0.0.3, ... as the source (Linux routes
//! all of 127.0.0.0/8 to the loopback interface).

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use wschat::ServerHandle;
use wschat::config::PerAddressLimit;
use wschat::forwarded::AddrBlock;
use wschat::metrics::{REFUSAL_LIMITS, REJECTION_STATUSES};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The answer to a WebSocket upgrade of `/echo` from source address `from`,
/// with an `X-Forwarded-For` line if given: the status, and the stream
/// (still open after a 101; read to its end otherwise, with the body).
fn upgrade(addr: SocketAddr, from: &str, forwarded_for: Option<&str>) -> (u16, TcpStream, String) {
    let mut stream = connect_from(ip(from), addr);
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let extra = forwarded_for.map_or(String::new(), |v| format!("X-Forwarded-For: {v}\r\n"));
    stream
        .write_all(handshake_request(addr, "/echo", &extra).as_bytes())
        .unwrap();
    let head = read_response_head(&mut stream);
    let status = status_of(&head);
    let mut body = String::new();
    if status != 101 {
        let _ = stream.read_to_string(&mut body);
    }
    (status, stream, body)
}

/// Expects a 101 and keeps the connection open.
fn accepted(addr: SocketAddr, from: &str, forwarded_for: Option<&str>) -> TcpStream {
    let (status, stream, body) = upgrade(addr, from, forwarded_for);
    assert_eq!(
        status, 101,
        "from {from}, X-Forwarded-For {forwarded_for:?}: {body}"
    );
    stream
}

/// Expects a 429 for too many WebSockets from one address.
fn refused(addr: SocketAddr, from: &str, forwarded_for: Option<&str>) {
    let (status, _, body) = upgrade(addr, from, forwarded_for);
    assert_eq!(
        (status, body.as_str()),
        (
            429,
            "too many connections from this address (--max-clients-per-ip)\n"
        ),
        "from {from}, X-Forwarded-For {forwarded_for:?}"
    );
}

/// `GET /healthz` from source address `from`: the status.
fn healthz_from(addr: SocketAddr, from: &str) -> u16 {
    let mut stream = connect_from(ip(from), addr);
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    status_of(&read_response_head(&mut stream))
}

/// Whatever the server sends, until it closes or `limit` passes: the
/// bytes, and whether it closed.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (String::from_utf8_lossy(&got).into_owned(), false);
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (String::from_utf8_lossy(&got).into_owned(), false);
            }
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), true),
        }
    }
}

/// Polls `check` every 20 ms until it holds or `limit` passes.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !check() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

fn rejections(server: &ServerHandle, status: u16) -> u64 {
    let i = REJECTION_STATUSES
        .iter()
        .position(|&s| s == status)
        .unwrap();
    server.metrics().rejections[i].load(Relaxed)
}

fn refusals(server: &ServerHandle, limit: &str) -> u64 {
    let i = REFUSAL_LIMITS.iter().position(|&l| l == limit).unwrap();
    server.metrics().refusals[i].load(Relaxed)
}

#[test]
fn one_address_gets_its_limit_and_then_429_while_another_still_connects() {
    const LIMIT: usize = 50;
    const ATTEMPTS: usize = 2000;
    let server = start_with(|c| c.max_clients_per_ip = PerAddressLimit::everywhere(LIMIT));
    let addr = server.addr();
    let started = Instant::now();
    let mut held = Vec::new();
    let mut refused_count = 0;
    for attempt in 0..ATTEMPTS {
        let (status, stream, body) = upgrade(addr, "127.0.0.1", None);
        match status {
            101 => held.push(stream),
            429 => {
                assert_eq!(
                    body,
                    "too many connections from this address (--max-clients-per-ip)\n"
                );
                refused_count += 1;
            }
            other => panic!("attempt {attempt}: {other} {body}"),
        }
        // The first LIMIT get in, every later one is refused.
        assert_eq!(held.len(), (attempt + 1).min(LIMIT), "attempt {attempt}");
    }
    eprintln!(
        "{ATTEMPTS} upgrades from 127.0.0.1: {} accepted, {refused_count} refused with 429 in {:?}",
        held.len(),
        started.elapsed()
    );
    assert_eq!(refused_count, ATTEMPTS - LIMIT);
    assert_eq!(rejections(&server, 429), (ATTEMPTS - LIMIT) as u64);
    assert_eq!(
        refusals(&server, "clients_per_address"),
        (ATTEMPTS - LIMIT) as u64
    );
    // The limits are rendered in /metrics.
    let metrics = http_exchange(
        addr,
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    );
    assert!(
        metrics.contains("wschat_limit_refusals_total{limit=\"clients_per_address\"} 1950\n"),
        "{metrics}"
    );
    assert!(metrics.contains("wschat_handshake_rejections_total{status=\"429\"} 1950\n"));
    // A second address is counted apart, and still connects.
    let other: Vec<TcpStream> = (0..3).map(|_| accepted(addr, "127.0.0.2", None)).collect();
    // The ones held are real WebSockets, and still work.
    let mut echo = Client::try_connect(addr, "/echo", &[]);
    assert!(echo.is_err(), "127.0.0.1 is still full");
    let mut first = held.remove(0);
    first
        .write_all(&masked(true, wschat::protocol::OpCode::Text, b"hi"))
        .unwrap();
    let mut reply = [0u8; 4];
    first.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [0x81, 2, b'h', b'i']);
    // One goes; its place is given back to its address.
    drop(first);
    assert!(eventually(TIMEOUT, || {
        echo = Client::try_connect(addr, "/echo", &[]);
        echo.is_ok()
    }));
    drop((held, other));
}

#[test]
fn the_default_limit_leaves_loopback_alone_but_counts_other_addresses() {
    // Behind a trusted proxy on 127.0.0.1 the clients have other addresses.
    let server = start_with(|c| {
        c.trusted_proxies = vec![AddrBlock::parse("127.0.0.1").unwrap()];
    });
    let addr = server.addr();
    let default = wschat::config::DEFAULT_MAX_CLIENTS_PER_IP;
    // Loopback: more than the default, all accepted.
    let local: Vec<TcpStream> = (0..default + 16)
        .map(|_| accepted(addr, "127.0.0.2", None))
        .collect();
    // A client named by the proxy: the default applies.
    let far: Vec<TcpStream> = (0..default)
        .map(|_| accepted(addr, "127.0.0.1", Some("203.0.113.7")))
        .collect();
    refused(addr, "127.0.0.1", Some("203.0.113.7"));
    let _next = accepted(addr, "127.0.0.1", Some("203.0.113.8"));
    drop((local, far));
}

#[test]
fn x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    let server = start_with(|c| c.max_clients_per_ip = PerAddressLimit::everywhere(2));
    let addr = server.addr();
    let _a = accepted(addr, "127.0.0.1", Some("198.51.100.1"));
    let _b = accepted(addr, "127.0.0.1", Some("198.51.100.2"));
    // A third client "address" in the header changes nothing: the peer is
    // 127.0.0.1, and it has two.
    refused(addr, "127.0.0.1", Some("198.51.100.3"));
    refused(addr, "127.0.0.1", None);
    let _c = accepted(addr, "127.0.0.2", Some("198.51.100.1"));
}

#[test]
fn from_a_trusted_proxy_the_rightmost_untrusted_entry_is_counted() {
    let server = start_with(|c| {
        c.max_clients_per_ip = PerAddressLimit::everywhere(2);
        c.trusted_proxies = vec![
            AddrBlock::parse("127.0.0.1").unwrap(),
            AddrBlock::parse("10.0.0.0/8").unwrap(),
        ];
    });
    let addr = server.addr();
    let proxy = "127.0.0.1";
    let mut held = vec![
        accepted(addr, proxy, Some("198.51.100.1")),
        // A forged entry on the left (nginx appends the real one).
        accepted(addr, proxy, Some("203.0.113.50, 198.51.100.1")),
    ];
    // 198.51.100.1 has two, whatever is forged to the left of it...
    refused(addr, proxy, Some("203.0.113.51, 198.51.100.1"));
    // ...or however many trusted proxies stand to the right of it.
    refused(addr, proxy, Some("198.51.100.1, 10.1.2.3"));
    refused(addr, proxy, Some("198.51.100.1, 127.0.0.1"));
    refused(addr, proxy, Some("198.51.100.1"));
    // Another client of the same proxy has its own count.
    held.push(accepted(addr, proxy, Some("198.51.100.2")));
    held.push(accepted(addr, proxy, Some("198.51.100.1, 198.51.100.2")));
    // Without the header, or with an entry that is not an address, the
    // request is counted as the proxy's own.
    held.push(accepted(addr, proxy, None));
    held.push(accepted(addr, proxy, Some("unknown")));
    refused(addr, proxy, Some("not-an-address"));
    refused(addr, proxy, None);
    // 127.0.0.2 is no trusted proxy: its header is ignored.
    held.push(accepted(addr, "127.0.0.2", Some("198.51.100.9")));
    held.push(accepted(addr, "127.0.0.2", Some("198.51.100.10")));
    refused(addr, "127.0.0.2", Some("198.51.100.11"));
    assert_eq!(server.metrics().connections_current.load(Relaxed), 8);
}

/// Opens `n` connections from `from` that send nothing.
fn silent(addr: SocketAddr, from: &str, n: usize) -> Vec<TcpStream> {
    (0..n).map(|_| connect_from(ip(from), addr)).collect()
}

/// The next connection from `from` is answered 429 by the accept loop,
/// at once, before it has sent anything.
fn pending_refused(addr: SocketAddr, from: &str) {
    let started = Instant::now();
    let mut stream = connect_from(ip(from), addr);
    let (response, closed) = read_until_closed(&mut stream, TIMEOUT);
    assert!(
        response.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{response}"
    );
    assert!(
        response.ends_with("\r\n\r\ntoo many pending handshakes from this address\n"),
        "{response}"
    );
    assert!(closed);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn one_address_cannot_hold_more_than_its_pending_handshakes() {
    let server = start_with(|c| {
        c.handshake_timeout = Duration::from_secs(30);
        c.max_pending_per_ip = PerAddressLimit::everywhere(4);
    });
    let addr = server.addr();
    let quiet = silent(addr, "127.0.0.1", 4);
    pending_refused(addr, "127.0.0.1");
    // Others are served meanwhile.
    assert_eq!(healthz_from(addr, "127.0.0.2"), 200);
    assert_eq!(rejections(&server, 429), 1);
    assert_eq!(refusals(&server, "pending_per_address"), 1);
    // Once the heads arrive, the places are free again.
    drop(quiet);
    assert!(eventually(TIMEOUT, || healthz_from(addr, "127.0.0.1") == 200));
    // The four closed connections free their places as their threads
    // notice the close, not all at once.
    let quiet = silent(addr, "127.0.0.1", 3);
    assert!(eventually(TIMEOUT, || healthz_from(addr, "127.0.0.1") == 200));
    drop(quiet);
}

#[test]
fn a_trusted_proxy_is_exempt_from_the_pending_cap() {
    let server = start_with(|c| {
        c.handshake_timeout = Duration::from_secs(30);
        c.max_pending_per_ip = PerAddressLimit::everywhere(2);
        c.trusted_proxies = vec![AddrBlock::parse("127.0.0.1").unwrap()];
    });
    let addr = server.addr();
    // All of a proxy's clients share its address: many pending at once.
    let via_proxy = silent(addr, "127.0.0.1", 8);
    assert_eq!(healthz_from(addr, "127.0.0.1"), 200);
    // Anyone else has the cap.
    let quiet = silent(addr, "127.0.0.2", 2);
    pending_refused(addr, "127.0.0.2");
    assert_eq!(healthz_from(addr, "127.0.0.3"), 200);
    drop((via_proxy, quiet));
}
