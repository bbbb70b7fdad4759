//! Hostile clients against the real server: stalled handshakes, huge
//! heads, path traversal, absurd frame lengths, a reader that never reads,
//! a flood, a full house, thousands of connect/disconnect cycles, a panic
//! and a silent peer. Every test also checks that the other clients carry
//! on, and every loop is bounded in count and in time.
//!
//! Tests that measure the whole process (threads, file descriptors, RSS) or
//! that depend on timing hold the exclusive side of [`GATE`], so that no
//! other test of this file runs beside them; the rest share it.

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant};
use wschat::metrics::{PROTOCOL_ERROR_CODES, REJECTION_STATUSES};
use wschat::protocol::OpCode;
use wschat::protocol::message::{Message, ReadError, Role};

// ---------------------------------------------------------------------------
// Helpers

static GATE: RwLock<()> = RwLock::new(());

/// For tests that measure the process or depend on timing: run alone.
fn alone() -> RwLockWriteGuard<'static, ()> {
    GATE.write().unwrap_or_else(|e| e.into_inner())
}

/// For the others: run beside each other, never beside an `alone` test.
fn together() -> RwLockReadGuard<'static, ()> {
    GATE.read().unwrap_or_else(|e| e.into_inner())
}

/// Reads the v1 welcome and returns this client's id. A welcome proves the
/// broadcaster has processed the join: the client is in the room.
fn v1(addr: SocketAddr) -> (Client, u64) {
    let mut client = Client::connect(addr, "/", &["wschat.v1"]);
    let text = client.recv_text();
    let prefix = "{\"type\":\"welcome\",\"you\":{\"id\":";
    assert!(text.starts_with(prefix), "{text}");
    let id = text[prefix.len()..]
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (client, id)
}

/// `from` says `text` (plain ASCII, no quotes) and every v1 client in
/// `all` (the sender too) receives it as a message event.
fn chat(from: &mut Client, all: &mut [&mut Client], text: &str) {
    from.text(text);
    for client in all.iter_mut() {
        recv_until(client, &format!("\"text\":\"{text}\""));
    }
}

/// Two v1 clients in the room who have exchanged a first message: the
/// bystanders every test keeps an eye on.
fn bystanders(addr: SocketAddr) -> (Client, Client) {
    let (mut ann, _) = v1(addr);
    let (mut bo, _) = v1(addr);
    chat(&mut ann, &mut [&mut bo], "bystanders ready");
    (ann, bo)
}

/// Checks that the bystanders still chat, both ways.
fn still_chatting(ann: &mut Client, bo: &mut Client, tag: &str) {
    chat(ann, &mut [bo], &format!("ann {tag}"));
    chat(bo, &mut [ann], &format!("bo {tag}"));
}

/// A v1 client that watches raw clients join. Raw clients get no welcome,
/// so connect this one first, then the raw ones, then [`await_joins`].
fn observer(addr: SocketAddr) -> Client {
    v1(addr).0
}

/// Waits until the observer has seen `n` join events (so the broadcaster
/// has processed those joins), then leaves.
fn await_joins(mut observer: Client, n: usize) {
    for _ in 0..n {
        recv_until(&mut observer, "\"type\":\"join\"");
    }
}

/// A fresh echo connection round-trips a message: the server still serves.
fn echo_works(addr: SocketAddr) {
    let mut client = Client::echo(addr);
    client.text("still serving");
    assert_eq!(client.recv_data(), Message::Text("still serving".into()));
    client.close();
}

fn get(addr: SocketAddr, path: &str) -> String {
    http_exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
}

fn rejections(server: &wschat::ServerHandle, status: u16) -> u64 {
    let i = REJECTION_STATUSES
        .iter()
        .position(|&s| s == status)
        .unwrap();
    server.metrics().rejections[i].load(Relaxed)
}

fn protocol_errors(server: &wschat::ServerHandle, code: u16) -> u64 {
    let i = PROTOCOL_ERROR_CODES
        .iter()
        .position(|&c| c == code)
        .unwrap();
    server.metrics().protocol_errors[i].load(Relaxed)
}

/// Polls `check` every 20 ms until it holds or `limit` passes.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn threads_now() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// The connection threads of the servers in this process, by name.
fn client_threads() -> usize {
    let mut connections = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        // A thread may end between the listing and the read: skip it.
        if let Ok("wschat-conn\n") = std::fs::read_to_string(task.path().join("comm")).as_deref() {
            connections += 1;
        }
    }
    connections
}

/// For an `alone` test that counts threads: waits until the servers of
/// earlier tests have wound down (their readers see their clients go), so
/// that every client thread counted from here on is this test's.
fn wait_for_quiet() {
    assert!(
        eventually(TIMEOUT, || client_threads() == 0),
        "client threads of earlier tests still running: {}",
        client_threads()
    );
}

fn fds_now() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Resident memory of this process (the server runs in it), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Reads until the server ends the connection (EOF or reset), at most
/// `max` bytes and `limit` time. Returns what was read and whether the
/// connection ended.
fn read_until_closed(stream: &mut TcpStream, max: usize, limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while got.len() <= max {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (got, false);
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (got, false);
            }
            Err(_) => return (got, true), // reset: closed as well
        }
    }
    (got, false)
}

/// Reads the frames a client is sent until the connection ends; returns
/// the close code if a Close frame came first (`None` for none).
fn close_code_then_eof(client: &mut Client, limit: Duration) -> Option<u16> {
    let deadline = Instant::now() + limit;
    loop {
        assert!(Instant::now() < deadline, "the server never closed");
        match client.try_recv() {
            Ok(Message::Close(frame)) => {
                let code = frame.map(|f| u16::from(f.code));
                client.expect_tcp_closed();
                return code;
            }
            Ok(_) => {}
            Err(ReadError::Eof) => return None,
            Err(ReadError::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                panic!("the server did not close within {TIMEOUT:?}")
            }
            Err(ReadError::Io(_)) => return None, // reset
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

/// A client frame header with the 64-bit length form and a masking key,
/// and no payload.
fn header_64(first_byte: u8, len: u64) -> Vec<u8> {
    let mut out = vec![first_byte, 0x80 | 127];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&MASK);
    out
}

// ---------------------------------------------------------------------------
// Slowloris and oversized heads

#[test]
fn three_hundred_stalled_handshakes_get_408_and_the_room_carries_on() {
    let _gate = alone();
    let server = start_with(|c| c.handshake_timeout = Duration::from_secs(1));
    let addr = server.addr();
    let (mut ann, mut bo) = bystanders(addr);

    let full = handshake_request(addr, "/", "");
    let mut stalled = Vec::new();
    for i in 0..300 {
        let mut stream = TcpStream::connect(addr).unwrap();
        match i % 3 {
            0 => {}                                                           // nothing at all
            1 => stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap(), // no blank line
            _ => stream.write_all(&full.as_bytes()[..40]).unwrap(),           // cut mid-line
        }
        stalled.push((stream, Instant::now()));
    }
    // Meanwhile the room works, and new clients get in.
    still_chatting(&mut ann, &mut bo, "during the stall");
    let (mut cy, _) = v1(addr);
    chat(
        &mut cy,
        &mut [&mut ann, &mut bo],
        "cy got in during the stall",
    );

    let mut answered_408 = 0;
    let mut quickest = Duration::MAX;
    let mut slowest = Duration::ZERO;
    for (stream, connected) in &mut stalled {
        let (response, closed) = read_until_closed(stream, 4096, TIMEOUT);
        let after = connected.elapsed();
        assert!(closed, "a stalled handshake was never dropped");
        let response = String::from_utf8_lossy(&response);
        if !response.is_empty() {
            assert!(response.starts_with("HTTP/1.1 408 "), "{response}");
            answered_408 += 1;
        }
        quickest = quickest.min(after);
        slowest = slowest.max(after);
    }
    eprintln!(
        "300 stalled handshakes: {answered_408} answered 408, dropped after {quickest:?}..{slowest:?}"
    );
    // Not before the timeout (the server's deadline starts after our connect)...
    assert!(quickest >= Duration::from_millis(950), "{quickest:?}");
    // ...and not long after it.
    assert!(slowest < Duration::from_secs(6), "{slowest:?}");
    assert_eq!(rejections(&server, 408), answered_408);
    assert_eq!(server.metrics().connections_current.load(Relaxed), 3);
    still_chatting(&mut ann, &mut bo, "after the stall");
}

/// Connects from `from` and expects to be answered at once, before
/// sending anything, by the accept loop: returns the response.
fn answered_at_once(addr: SocketAddr, from: &str) -> String {
    let started = Instant::now();
    let mut stream = connect_from(from.parse().unwrap(), addr);
    let (response, closed) = read_until_closed(&mut stream, 4096, TIMEOUT);
    assert!(closed);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn a_flood_of_silent_connections_is_capped_per_address_and_without_a_thread_each() {
    let _gate = alone();
    wait_for_quiet();
    const PER_ADDRESS: usize = 16;
    let server = start_with(|c| {
        c.handshake_timeout = Duration::from_secs(30);
        // Given explicitly, so that it counts loopback addresses too.
        c.max_pending_per_ip = wschat::config::PerAddressLimit::everywhere(PER_ADDRESS);
    });
    let addr = server.addr();
    let (mut ann, mut bo) = bystanders(addr);
    let threads_before = threads_now();

    // One address that says nothing gets its own share of the pending
    // places and no more: the next is answered 429 by the accept loop...
    let mut silent: Vec<TcpStream> = (0..PER_ADDRESS)
        .map(|_| connect_from("127.0.0.1".parse().unwrap(), addr))
        .collect();
    let response = answered_at_once(addr, "127.0.0.1");
    assert!(response.starts_with("HTTP/1.1 429 "), "{response}");
    assert!(
        response.ends_with("too many pending handshakes from this address\n"),
        "{response}"
    );
    // ...while everyone else is served.
    let healthz = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut probe = connect_from("127.0.0.2".parse().unwrap(), addr);
    probe.write_all(healthz.as_bytes()).unwrap();
    let (response, _) = read_until_closed(&mut probe, 4096, TIMEOUT);
    assert!(response.starts_with(b"HTTP/1.1 200 "));

    // Many addresses together fill every pending-handshake place; the
    // next one is answered 503 at once, by the accept loop itself.
    for n in 1..wschat::MAX_PENDING_HANDSHAKES / PER_ADDRESS {
        let from = format!("127.0.1.{n}").parse().unwrap();
        silent.extend((0..PER_ADDRESS).map(|_| connect_from(from, addr)));
    }
    assert_eq!(silent.len(), wschat::MAX_PENDING_HANDSHAKES);
    let response = answered_at_once(addr, "127.0.2.1");
    assert!(response.starts_with("HTTP/1.1 503 "), "{response}");
    assert!(
        response.ends_with("too many pending handshakes\n"),
        "{response}"
    );
    let threads_full = threads_now();
    assert!(
        threads_full <= threads_before + wschat::MAX_PENDING_HANDSHAKES + 8,
        "one thread per pending handshake at most: {threads_before} -> {threads_full}"
    );
    assert_eq!(rejections(&server, 429), 1);
    assert_eq!(rejections(&server, 503), 1);
    // Chat goes on, and once the silent ones go away, newcomers get in.
    still_chatting(&mut ann, &mut bo, "during the flood");
    drop(silent);
    assert!(eventually(TIMEOUT, || {
        let mut probe = TcpStream::connect(addr).unwrap();
        probe.write_all(healthz.as_bytes()).unwrap();
        let (response, _) = read_until_closed(&mut probe, 4096, TIMEOUT);
        response.starts_with(b"HTTP/1.1 200 ")
    }));
    still_chatting(&mut ann, &mut bo, "after the flood");
}

#[test]
fn past_the_thread_budget_clients_get_503_and_the_server_carries_on() {
    let _gate = together();
    // A budget of six client threads, and the places kept for plain HTTP.
    let server = start_with(|c| c.thread_limit = Some(wschat::threads::HTTP_RESERVE + 6));
    let addr = server.addr();
    let mut clients: Vec<Client> = (0..6).map(|_| Client::echo(addr)).collect();
    // The next one is turned away at the door...
    let response = http_exchange(addr, handshake_request(addr, "/echo", "").as_bytes());
    assert_eq!(status_of(&response), 503, "{response}");
    assert!(
        response.ends_with("server at its thread limit\n"),
        "{response}"
    );
    // ...while /healthz and /metrics still answer.
    assert_eq!(status_of(&get(addr, "/healthz")), 200);
    assert_eq!(status_of(&get(addr, "/metrics")), 200);
    // The ones already in are unaffected.
    for (i, client) in clients.iter_mut().enumerate() {
        client.text(&format!("still here {i}"));
        assert_eq!(client.recv_data(), Message::Text(format!("still here {i}")));
    }
    // Once one leaves, a newcomer gets in.
    clients.remove(0).close();
    assert!(eventually(TIMEOUT, || {
        let response = response_head(addr, handshake_request(addr, "/echo", "").as_bytes());
        status_of(&response) == 101
    }));
}

#[test]
fn an_idle_client_costs_one_thread_and_a_full_socket_costs_none() {
    let _gate = alone();
    wait_for_quiet();
    // Long enough that the clients, which answer only the first ping, stay
    // in for the whole test.
    let server = start_with(|c| c.ping_interval = Duration::from_secs(3));
    let addr = server.addr();
    let mut clients: Vec<Client> = (0..20).map(|_| Client::connect(addr, "/", &[])).collect();
    // Idle: a reader thread each.
    assert!(
        eventually(TIMEOUT, || client_threads() == 20),
        "connection threads: {}",
        client_threads()
    );
    let baseline = threads_now();
    // Idle clients are pinged, and a message reaches them all, without a
    // thread more.
    for client in &mut clients {
        assert!(matches!(client.recv(), Message::Ping(_)));
        client.send(OpCode::Pong, b"");
    }
    clients[0].text("wake up");
    for client in &mut clients[1..] {
        assert_eq!(client.recv_text(), "wake up");
    }
    assert_eq!(
        threads_now(),
        baseline,
        "pings and messages start no thread"
    );
    // A client whose socket is full waits without a thread of its own: an
    // echo client that sends 24 MiB without reading (more than the kernel
    // buffers on both sides) adds its reader and nothing else (the other
    // new thread is this test's sender).
    const MIB: usize = 1 << 20;
    const MESSAGES: usize = 24;
    let mut echo = Client::echo(addr);
    let mut sending = echo.stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        for i in 0..MESSAGES {
            sending
                .write_all(&masked(true, OpCode::Binary, &vec![i as u8; MIB]))
                .unwrap();
        }
    });
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        threads_now(),
        baseline + 2,
        "threads with a full socket: {}",
        threads_now()
    );
    // Everything comes back, in order, once the client reads.
    for i in 0..MESSAGES {
        assert_eq!(
            echo.recv_data(),
            Message::Binary(vec![i as u8; MIB]),
            "echo {i}"
        );
    }
    sender.join().unwrap();
    // And the room still works.
    clients[1].text("again");
    assert_eq!(clients[2].recv_text(), "again");
}

#[test]
fn a_one_mebibyte_request_head_is_refused_with_431_before_it_is_sent() {
    let _gate = together();
    let server = start();
    let addr = server.addr();
    let (mut ann, mut bo) = bystanders(addr);

    let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Filler: ".to_vec();
    head.resize(1 << 20, b'a');
    const FIRST: usize = 64 * 1024;
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut sending = stream.try_clone().unwrap();
    let (answered, answer_seen) = mpsc::channel::<()>();
    let started = Instant::now();
    let sender = thread::spawn(move || {
        // The first 64 KiB only; the rest waits until the answer is in, so
        // an answer at all proves the server did not wait for the whole head.
        sending.write_all(&head[..FIRST]).unwrap();
        let answered_early = answer_seen.recv_timeout(TIMEOUT).is_ok();
        let mut sent = FIRST;
        for chunk in head[FIRST..].chunks(64 * 1024) {
            if sending.write_all(chunk).is_err() {
                break; // the server closed: expected
            }
            sent += chunk.len();
        }
        (answered_early, sent)
    });
    let response = read_response_head(&mut stream);
    let answer_time = started.elapsed();
    answered.send(()).unwrap();
    assert_eq!(status_of(&response), 431, "{response}");
    assert!(response.contains("Connection: close"), "{response}");
    // The server half-closes right after the answer.
    let (_, closed) = read_until_closed(&mut stream, 4096, TIMEOUT);
    assert!(closed, "no EOF after the 431");
    let (answered_early, sent) = sender.join().unwrap();
    eprintln!(
        "431 after {answer_time:?}, with {FIRST} of {} bytes sent",
        1 << 20
    );
    assert!(
        answered_early,
        "431 only came after the whole head ({sent} bytes sent)"
    );
    assert!(answer_time < Duration::from_secs(5), "{answer_time:?}");
    // The server then closes its socket fully (within its 1 s drain): a
    // write from us soon fails.
    let mut probe = stream;
    let gone = eventually(Duration::from_secs(5), || probe.write_all(b"more").is_err());
    assert!(gone, "the server kept the connection open");
    assert_eq!(rejections(&server, 431), 1);
    still_chatting(&mut ann, &mut bo, "after the huge head");
    echo_works(addr);
}

// ---------------------------------------------------------------------------
// Static files

#[test]
fn path_traversal_in_every_encoding_never_leaves_the_www_root() {
    let _gate = together();
    let dir = std::env::temp_dir().join(format!("wschat-hostile-www-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let www = dir.join("www");
    std::fs::create_dir_all(www.join("sub")).unwrap();
    std::fs::create_dir_all(dir.join("www-private")).unwrap();
    let index = "<html>the public index</html>";
    let secret = format!("TOP-SECRET-{}-b7c1", std::process::id());
    std::fs::write(www.join("index.html"), index).unwrap();
    std::fs::write(www.join("sub").join("page.html"), "<p>sub page</p>").unwrap();
    std::fs::write(dir.join("secret.txt"), &secret).unwrap();
    std::fs::write(dir.join("www-private").join("secret.txt"), &secret).unwrap();
    // Symlinks out of the root are refused too.
    std::os::unix::fs::symlink("../secret.txt", www.join("link.txt")).unwrap();
    std::os::unix::fs::symlink("../../secret.txt", www.join("sub").join("up.txt")).unwrap();
    std::os::unix::fs::symlink("..", www.join("parent")).unwrap();

    let server = start_with(|c| c.www = Some(www.clone()));
    let addr = server.addr();
    let (mut ann, mut bo) = bystanders(addr);
    let secret_path = dir.join("secret.txt").display().to_string();

    // The file is served at all: the test is not vacuous.
    let page = get(addr, "/sub/page.html");
    assert_eq!(status_of(&page), 200);
    assert!(page.ends_with("<p>sub page</p>"), "{page}");

    let mut targets: Vec<Vec<u8>> = [
        "/../secret.txt",
        "/../../secret.txt",
        "/./../secret.txt",
        "/sub/../../secret.txt",
        "/sub/../sub/../../secret.txt",
        "/..%2fsecret.txt",
        "/..%2Fsecret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/%2E%2e/secret.txt",
        "/%2e%2E%2fsecret.txt",
        "/.%2e/secret.txt",
        "/%2e./secret.txt",
        "/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt",
        "/%252e%252e/secret.txt",
        "/%252e%252e%252fsecret.txt",
        "//../secret.txt",
        "//..//secret.txt",
        "///..///..///secret.txt",
        "/..//secret.txt",
        "/..\\secret.txt",
        "/\\..\\secret.txt",
        "/sub\\..\\..\\secret.txt",
        "/..%5csecret.txt",
        "/..%5Csecret.txt",
        "/%5c..%5csecret.txt",
        "/%2e%2e%5csecret.txt",
        "/%c0%ae%c0%ae/secret.txt",
        "/%c0%ae%c0%ae%c0%afsecret.txt",
        "/%e0%80%ae%e0%80%ae/secret.txt",
        "/%c1%9c..%c1%9csecret.txt",
        "/..%c0%afsecret.txt",
        "/..%00/secret.txt",
        "/index.html%00/../../secret.txt",
        "/%00../secret.txt",
        "/..;/secret.txt",
        "/...//secret.txt",
        "/.../secret.txt",
        "/link.txt",
        "/sub/up.txt",
        "/parent/secret.txt",
        "/parent/www-private/secret.txt",
        "/../www-private/secret.txt",
        "/%2e%2e/www-private/secret.txt",
        "/www/../secret.txt",
        "../secret.txt",
        "..%2fsecret.txt",
        "secret.txt",
        "*",
        "http://127.0.0.1/../secret.txt",
        "http://127.0.0.1/%2e%2e/secret.txt",
        "http://x/..%2f..%2fsecret.txt",
        "https://x/../secret.txt",
        "http:/../secret.txt",
        "file:///../secret.txt",
        "/?../secret.txt",
        "/#/../secret.txt",
        "/%3f/../secret.txt",
        "/%u002e%u002e/secret.txt",
        "/%2",
        "/%zz",
    ]
    .iter()
    .map(|t| t.as_bytes().to_vec())
    .collect();
    targets.push(format!("/{secret_path}").into_bytes());
    targets.push(format!("//{secret_path}").into_bytes());
    targets.push(format!("file://{secret_path}").into_bytes());
    targets.push(format!("http://127.0.0.1{secret_path}").into_bytes());
    // Raw bytes that no client library would send.
    targets.push(b"/..\0/secret.txt".to_vec());
    targets.push(b"/\xc0\xae\xc0\xae/secret.txt".to_vec());
    targets.push(b"/\xff/../secret.txt".to_vec());

    let mut refused = 0;
    for target in &targets {
        for method in ["GET", "HEAD"] {
            let mut request = format!("{method} ").into_bytes();
            request.extend_from_slice(target);
            request.extend_from_slice(format!(" HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
            let response = http_exchange(addr, &request);
            let shown = String::from_utf8_lossy(target);
            assert!(
                !response.contains(&secret),
                "{method} {shown} served the secret: {response}"
            );
            if !response.starts_with("HTTP/1.1 200 ") {
                let status = status_of(&response);
                assert!((400..500).contains(&status), "{method} {shown}: {status}");
                refused += 1;
            } else if method == "GET" {
                // Only the index itself (e.g. `/?../secret.txt` is `/`).
                assert!(response.ends_with(index), "{shown}: {response}");
            }
        }
    }
    eprintln!(
        "{} traversal requests, {refused} refused",
        targets.len() * 2
    );
    assert!(
        refused >= targets.len() * 2 - 8,
        "most are refused outright"
    );
    still_chatting(&mut ann, &mut bo, "after the traversal attempts");
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------
// Frames

#[test]
fn absurd_frame_lengths_and_bad_control_frames_are_closed_at_once() {
    let _gate = together();
    let server = start();
    let addr = server.addr();
    let (mut ann, mut bo) = bystanders(addr);
    let mut echo = Client::echo(addr);

    let ping_126 = {
        let mut f = vec![0x89, 0x80 | 126, 0x00, 126];
        f.extend_from_slice(&MASK);
        f.extend_from_slice(&[0u8; 126]);
        f
    };
    let close_126 = {
        let mut f = vec![0x88, 0x80 | 126, 0x00, 126];
        f.extend_from_slice(&MASK);
        f.extend_from_slice(&[0u8; 126]);
        f
    };
    let mut in_the_middle = masked(false, OpCode::Text, b"half a message");
    in_the_middle.extend(masked(false, OpCode::Ping, b"not final"));
    let mut huge_continuation = masked(false, OpCode::Binary, b"first part");
    huge_continuation.extend(header_64(0x80, 1 << 40));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "binary, length 2^63-1",
            header_64(0x82, (1 << 63) - 1),
            1009,
        ),
        ("text, length 2^63-1", header_64(0x81, (1 << 63) - 1), 1009),
        ("binary, length 2^40", header_64(0x82, 1 << 40), 1009),
        ("text fragment, length 2^40", header_64(0x01, 1 << 40), 1009),
        ("continuation of 2^40", huge_continuation, 1009),
        ("length 2^63 (top bit set)", header_64(0x82, 1 << 63), 1002),
        ("length 2^64-1", header_64(0x81, u64::MAX), 1002),
        ("ping of 126 bytes", ping_126, 1002),
        ("close of 126 bytes", close_126, 1002),
        ("ping with a 64-bit length", header_64(0x89, 1 << 40), 1002),
        (
            "fragmented ping",
            masked(false, OpCode::Ping, b"frag"),
            1002,
        ),
        (
            "fragmented pong",
            masked(false, OpCode::Pong, b"frag"),
            1002,
        ),
        (
            "fragmented close",
            masked(false, OpCode::Close, &close_payload(1000, b"")),
            1002,
        ),
        ("fragmented ping inside a message", in_the_middle, 1002),
    ];
    let before_1009 = protocol_errors(&server, 1009);
    let before_1002 = protocol_errors(&server, 1002);
    for path in ["/echo", "/"] {
        for (name, bytes, code) in &cases {
            let mut client = Client::connect(addr, path, &[]);
            let started = Instant::now();
            client.send_raw(bytes);
            // Nothing more is sent: the close must come from the header alone.
            let code_seen = close_code_then_eof(&mut client, TIMEOUT);
            let took = started.elapsed();
            assert_eq!(code_seen, Some(*code), "{path}: {name}");
            assert!(took < Duration::from_secs(5), "{path}: {name}: {took:?}");
            echo.text(name);
            assert_eq!(echo.recv_data(), Message::Text(name.to_string()));
        }
    }
    let expected_1009 = 2 * cases.iter().filter(|c| c.2 == 1009).count() as u64;
    let expected_1002 = 2 * cases.iter().filter(|c| c.2 == 1002).count() as u64;
    assert_eq!(protocol_errors(&server, 1009) - before_1009, expected_1009);
    assert_eq!(protocol_errors(&server, 1002) - before_1002, expected_1002);
    still_chatting(&mut ann, &mut bo, "after the bad frames");
    echo.close();
}

// ---------------------------------------------------------------------------
// Slow consumers and floods

#[test]
fn a_client_that_never_reads_is_dropped_and_the_others_get_every_message() {
    let _gate = alone();
    const MESSAGES: usize = 3000;
    const SIZE: usize = 4096;
    // Far smaller than 12 MB of messages, far larger than the readers lag.
    const LAG: usize = 1 << 20;
    let server = start_with(|c| c.max_lag_bytes = LAG);
    let addr = server.addr();
    let rss_before = rss_kib();

    let watch = observer(addr);
    let readers: Vec<Client> = (0..2).map(|_| Client::connect(addr, "/", &[])).collect();
    let mut sender = Client::connect(addr, "/", &[]);
    let mut sleeper = Client::connect(addr, "/", &[]);
    await_joins(watch, 4);

    // How far each reader has got: the sender stays within a quarter of the
    // limit of the slower one, so that only the sleeper can fall that far
    // behind, on however slow a machine.
    let progress: std::sync::Arc<[std::sync::atomic::AtomicUsize; 2]> = Default::default();
    let readers: Vec<_> = readers
        .into_iter()
        .enumerate()
        .map(|(n, mut reader)| {
            let progress = progress.clone();
            thread::spawn(move || {
                for i in 0..MESSAGES {
                    let text = reader.recv_text();
                    let expected = format!("msg {i:06} ");
                    assert!(text.starts_with(&expected), "expected {expected}...");
                    assert_eq!(text.len(), SIZE);
                    progress[n].store(i + 1, Relaxed);
                }
                reader
            })
        })
        .collect();
    let started = Instant::now();
    let mut text = String::with_capacity(SIZE);
    for i in 0..MESSAGES {
        let slowest = || progress.iter().map(|p| p.load(Relaxed)).min().unwrap_or(0);
        assert!(
            eventually(TIMEOUT, || i < slowest() + LAG / 4 / SIZE),
            "the readers stopped reading"
        );
        text.clear();
        text.push_str(&format!("msg {i:06} "));
        while text.len() < SIZE {
            text.push((b'a' + (text.len() % 26) as u8) as char);
        }
        sender.text(&text);
    }
    let mut readers: Vec<Client> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let took = started.elapsed();

    // The sleeper was dropped, the others were not.
    let metrics = server.metrics();
    assert_eq!(metrics.drops_slow_consumer.load(Relaxed), 1);
    let max_depth = metrics.max_queue_depth.load(Relaxed);
    assert!(max_depth <= 2 * LAG as u64, "{max_depth} bytes behind");
    // The server closed the sleeper's connection: what was in flight, then EOF.
    let (backlog, closed) = read_until_closed(&mut sleeper.stream, 64 << 20, TIMEOUT);
    assert!(closed, "the slow consumer's connection was left open");
    assert!(
        backlog.len() < MESSAGES * SIZE,
        "it was dropped, not sent everything"
    );
    assert!(eventually(TIMEOUT, || {
        metrics.connections_current.load(Relaxed) == 3
    }));
    let rss_after = rss_kib();
    eprintln!(
        "{MESSAGES} x {SIZE} B in {took:?}; sleeper dropped with {} KiB in flight; \
         max queue {max_depth}; RSS {rss_before} -> {rss_after} KiB",
        backlog.len() / 1024
    );
    assert!(
        rss_after < rss_before + 200 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );

    // The room goes on.
    sender.text("after the drop");
    for reader in &mut readers {
        assert_eq!(reader.recv_text(), "after the drop");
    }
}

/// A masked binary frame with an all-zero key (valid, and free to mask).
fn zero_masked_binary(len: usize) -> Vec<u8> {
    let mut out = vec![0x82, 0x80 | 127];
    out.extend_from_slice(&(len as u64).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.resize(out.len() + len, 0x5a);
    out
}

#[test]
fn an_echo_client_that_never_reads_cannot_make_the_server_hoard_memory() {
    let _gate = alone();
    let server = start();
    let addr = server.addr();
    let (mut ann, mut bo) = bystanders(addr);
    let mut hoarder = Client::echo(addr);
    hoarder
        .stream
        .set_write_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    // 1 MiB messages, echoed into a socket nobody reads. The server must
    // stop reading (TCP pushes back, our write times out) while what it
    // holds for this client is still small. (With the largest messages
    // /echo takes, 16 MiB, it holds about 110-140 MiB: four queued echoes,
    // one being written, one waiting to be queued.)
    let frame = zero_masked_binary(1 << 20);
    let rss_before = rss_kib();
    let mut sent_mib = 0;
    let mut worst_growth = 0;
    let mut pushed_back = false;
    for _ in 0..512 {
        if hoarder.stream.write_all(&frame).is_err() {
            pushed_back = true;
            break;
        }
        sent_mib += frame.len() >> 20;
        let growth = rss_kib().saturating_sub(rss_before) / 1024;
        worst_growth = worst_growth.max(growth);
        if growth > 256 {
            break;
        }
    }
    // What the server holds once it has stopped reading.
    thread::sleep(Duration::from_millis(300));
    worst_growth = worst_growth.max(rss_kib().saturating_sub(rss_before) / 1024);
    eprintln!(
        "never-reading echo client: {sent_mib} MiB sent, pushed back: {pushed_back}, \
         RSS grew by up to {worst_growth} MiB"
    );
    assert!(pushed_back, "no back-pressure after {sent_mib} MiB");
    assert!(
        worst_growth < 64,
        "the server held {worst_growth} MiB for one client that never reads ({sent_mib} MiB sent)"
    );
    still_chatting(&mut ann, &mut bo, "beside the hoarder");
}

#[test]
fn a_client_that_sends_but_never_reads_is_dropped_by_the_ping_timeout() {
    let _gate = alone();
    let server = start_with(|c| c.ping_interval = Duration::from_secs(1));
    let addr = server.addr();
    let metrics = server.metrics();
    let mut mute = Client::echo(addr);
    // A few messages (their echoes fit in the socket's buffers), then
    // nothing: it neither reads nor sends, so it answers no ping.
    for i in 0..10 {
        mute.text(&format!("hello {i}"));
    }
    let started = Instant::now();
    let dropped = eventually(Duration::from_secs(6), || {
        metrics.connections_current.load(Relaxed) == 0
    });
    assert!(dropped, "still connected {:?} later", started.elapsed());
    assert_eq!(metrics.drops_ping_timeout.load(Relaxed), 1);
    assert_eq!(metrics.drops_slow_consumer.load(Relaxed), 0);
    // Its echoes, the unanswered pings, then Close 1001 ping_timeout.
    let mut echoes = 0;
    let close = loop {
        match mute.recv() {
            Message::Text(_) => echoes += 1,
            Message::Ping(_) => {}
            Message::Close(close) => break close.expect("a close code"),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(echoes, 10);
    assert_eq!(u16::from(close.code), 1001);
    assert_eq!(close.reason, "ping_timeout");
    mute.expect_tcp_closed();
    echo_works(addr);
}

#[test]
fn a_client_whose_socket_stays_full_is_dropped_by_the_stall_rule() {
    let _gate = alone();
    let server = start_with(|c| c.ping_interval = Duration::from_secs(1));
    let addr = server.addr();
    let metrics = server.metrics();
    let mut stuck = Client::echo(addr);
    stuck
        .stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Echo 64 KiB messages into a socket nobody reads, until TCP pushes
    // back (at most 256 MiB): from then on the server can neither send to
    // it nor, waiting for its backlog to drain, read from it. Its input
    // is not silent (it waits unread), so this is the stall rule's case
    // (two ping intervals without progress), not the ping timeout's.
    let frame = zero_masked_binary(64 * 1024);
    let mut sent = 0;
    while sent < 4096 && stuck.stream.write_all(&frame).is_ok() {
        sent += 1;
    }
    let stalled = Instant::now();
    assert!(sent < 4096, "no back-pressure after {sent} x 64 KiB");
    // (No bystanders here: the test clients do not answer pings, so with a
    // 1 s interval they would be dropped too. A fresh echo client checks
    // the server afterwards.)
    let dropped = eventually(Duration::from_secs(6), || {
        metrics.connections_current.load(Relaxed) == 0
    });
    eprintln!(
        "send-only client: {sent} x 64 KiB sent; dropped: {dropped} after {:?}",
        stalled.elapsed()
    );
    assert!(
        dropped,
        "a client that stopped reading was still connected {:?} after its socket stalled \
         (stall limit 2 s)",
        stalled.elapsed()
    );
    assert_eq!(metrics.drops_slow_consumer.load(Relaxed), 1);
    assert_eq!(metrics.drops_ping_timeout.load(Relaxed), 0);
    let (_, closed) = read_until_closed(&mut stuck.stream, 1 << 30, TIMEOUT);
    assert!(closed, "the server did not close TCP");
    echo_works(addr);
}

/// A client whose receive buffer is 4 KiB: little of what it does not read
/// waits in its own kernel.
fn small_buffer_client(addr: SocketAddr, path: &str, protocols: &[&str]) -> Client {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let extra = if protocols.is_empty() {
        String::new()
    } else {
        format!("Sec-WebSocket-Protocol: {}\r\n", protocols.join(", "))
    };
    let request = handshake_request(addr, path, &extra);
    Client::over(socket.into(), request.as_bytes())
}

/// Sends `client` (an echo client that does not read) 256 KiB messages
/// until the server can no longer write their echoes at once: from then
/// on, what it is sent waits in the server, not in the kernel.
fn fill_the_kernel_buffers(client: &mut Client, metrics: &wschat::metrics::Metrics) {
    let frame = zero_masked_binary(256 * 1024);
    for _ in 0..100 {
        let before = metrics.bytes_out.load(Relaxed);
        client.send_raw(&frame);
        thread::sleep(Duration::from_millis(100));
        if metrics.bytes_out.load(Relaxed) - before < frame.len() as u64 - 14 {
            return;
        }
    }
    panic!("the kernel took 25 MiB for a client that does not read");
}

#[test]
fn an_echo_client_that_pings_or_sends_tiny_messages_and_never_reads_is_held_small() {
    let _gate = alone();
    let server = start();
    let addr = server.addr();
    let metrics = server.metrics();
    const COUNT: usize = 200_000;
    // Empty pings: one pong each, two bytes on the wire, far more in a
    // queue. Then one-byte messages, echoed: three bytes each.
    let ping = masked(true, OpCode::Ping, b"");
    let tiny = masked(true, OpCode::Binary, b"x");
    for (what, frame) in [("pings", ping), ("1-byte messages", tiny.clone())] {
        let mut hoarder = Client::echo(addr);
        fill_the_kernel_buffers(&mut hoarder, metrics);
        let rss_before = rss_kib();
        hoarder
            .stream
            .set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let many = frame.repeat(1000);
        let mut sent = 0;
        while sent < COUNT && hoarder.stream.write_all(&many).is_ok() {
            sent += 1000;
        }
        // A last message: once it is read, everything before it was.
        let _ = hoarder.stream.write_all(&tiny);
        let mut read = u64::MAX;
        while read != metrics.messages_in.load(Relaxed) {
            read = metrics.messages_in.load(Relaxed);
            thread::sleep(Duration::from_millis(500));
        }
        let growth = rss_kib().saturating_sub(rss_before) / 1024;
        eprintln!("never-reading echo client, {what}: {sent} sent, RSS grew by {growth} MiB");
        assert!(
            growth < 8,
            "the server held {growth} MiB for {sent} {what} from one client that never reads"
        );
        assert_eq!(metrics.drops_slow_consumer.load(Relaxed), 0);
    }
}

#[test]
fn a_v1_client_that_never_reads_its_errors_is_pushed_back_not_dropped() {
    let _gate = alone();
    let server = start();
    let addr = server.addr();
    let metrics = server.metrics();
    let (mut ann, mut bo) = bystanders(addr);
    let mut asker = small_buffer_client(addr, "/", &["wschat.v1"]);
    assert!(asker.recv_text().starts_with("{\"type\":\"welcome\""));
    asker
        .stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Unknown commands of 200 control characters, each answered with an
    // error, none read.
    let command = format!("/{}", "\u{1}".repeat(200));
    let many = masked(true, OpCode::Text, command.as_bytes()).repeat(100);
    let mut sent = 0;
    let pushed_back = loop {
        if sent >= 60_000 {
            break false;
        }
        match asker.stream.write_all(&many) {
            Ok(()) => sent += 100,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break true;
            }
            Err(e) => panic!("after {sent} commands: {e} (dropped?)"),
        }
    };
    eprintln!("never-reading v1 client: {sent} unknown commands sent, pushed back: {pushed_back}");
    assert!(pushed_back, "no back-pressure after {sent} commands");
    assert_eq!(metrics.drops_slow_consumer.load(Relaxed), 0);
    still_chatting(&mut ann, &mut bo, "beside the asker");
    // Once it reads, every error it was sent comes, each short.
    asker.stream.set_write_timeout(None).unwrap();
    let mut errors = 0;
    // It reads now, with a receive buffer a reader would have: a 4 KiB
    // window, under loopback's 64 KiB segment size, can leave TCP pacing
    // the transfer by its timers (about 200 errors a second was seen once,
    // and the server then dropped the client as stalled).
    socket2::SockRef::from(&asker.stream)
        .set_recv_buffer_size(1 << 20)
        .unwrap();
    // Read until every error has come (a loaded machine may pause the
    // server longer than a short timeout); a missing one ends it at 5 s.
    asker
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    while errors < sent {
        match asker.try_recv() {
            Ok(Message::Text(text)) if text.contains("unknown_command") => {
                assert!(text.len() < 300, "{} bytes: {text}", text.len());
                errors += 1;
            }
            Ok(Message::Text(_)) => {} // the bystanders' chat
            // Reading it all can outlast a ping interval on a loaded
            // machine: the server's keepalive is not an error.
            Ok(Message::Ping(_)) => {}
            Ok(other) => panic!("after {errors} errors: unexpected {other:?}"),
            Err(_) => break,
        }
    }
    assert!(errors >= sent, "{errors} errors for {sent} commands");
}

#[test]
fn a_close_then_a_half_close_gets_the_close_back_and_what_came_before_it() {
    let _gate = together();
    let server = start();
    let addr = server.addr();
    // §5.5.1: the server MUST answer a Close with a Close, even when the
    // client has shut its sending half right after it (and so is at EOF
    // as soon as the server reads the Close).
    for path in ["/echo", "/"] {
        for run in 0..15 {
            let mut client = Client::connect(addr, path, &[]);
            let mut bytes = Vec::new();
            if path == "/echo" {
                bytes.extend(masked(true, OpCode::Text, b"last words"));
            }
            bytes.extend(masked(true, OpCode::Close, &close_payload(1000, b"")));
            client.send_raw(&bytes);
            client.stream.shutdown(std::net::Shutdown::Write).unwrap();
            let (got, closed) = read_until_closed(&mut client.stream, 1 << 20, TIMEOUT);
            assert!(closed, "{path} run {run}: TCP left open");
            let mut reader =
                wschat::protocol::message::MessageReader::new(&got[..], Role::Client, 1 << 20);
            let mut messages = Vec::new();
            while let Ok(message) = reader.read_message() {
                messages.push(message);
            }
            let close = match messages.pop() {
                Some(Message::Close(Some(close))) => close,
                other => panic!("{path} run {run}: no Close back, the last was {other:?}"),
            };
            assert_eq!(u16::from(close.code), 1000, "{path} run {run}");
            if path == "/echo" {
                assert_eq!(messages, [Message::Text("last words".into())], "run {run}");
            }
        }
    }
}

#[test]
fn a_sustained_flood_is_closed_with_1008_and_the_room_goes_on() {
    let _gate = together();
    let server = start_with(|c| c.rate_limit = 20);
    let addr = server.addr();
    let watch = observer(addr);
    let mut flooder = Client::connect(addr, "/", &[]);
    let mut talker = Client::connect(addr, "/", &[]);
    let mut listener = Client::connect(addr, "/", &[]);
    await_joins(watch, 3);

    // 5,000 messages in batches of 100 every 20 ms, until the server has
    // had enough and the socket fails.
    let mut flood_stream = flooder.stream.try_clone().unwrap();
    let started = Instant::now();
    let flood = thread::spawn(move || {
        let mut sent = 0;
        'flood: for batch in 0..50 {
            let mut bytes = Vec::new();
            for i in 0..100 {
                bytes.extend(masked(
                    true,
                    OpCode::Text,
                    format!("flood {}", batch * 100 + i).as_bytes(),
                ));
            }
            if flood_stream.write_all(&bytes).is_err() {
                break 'flood;
            }
            sent += 100;
            thread::sleep(Duration::from_millis(20));
        }
        sent
    });
    // The talker stays under the limit (10/s) during the flood.
    for i in 0..10 {
        talker.text(&format!("talk {i}"));
        thread::sleep(Duration::from_millis(100));
    }
    talker.text("talk done");
    let mut flood_seen = 0;
    let mut talk_seen = 0;
    loop {
        let text = listener.recv_text();
        if text == "talk done" {
            break;
        } else if text.starts_with("flood ") {
            assert_eq!(text, format!("flood {flood_seen}"), "flood order");
            flood_seen += 1;
        } else {
            assert_eq!(text, format!("talk {talk_seen}"), "talk order");
            talk_seen += 1;
        }
    }
    assert_eq!(talk_seen, 10, "every message of the talker arrived");
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        flood_seen as f64 <= 40.0 + 20.0 * elapsed + 1.0,
        "{flood_seen} flood messages got through in {elapsed:.1} s"
    );
    assert_eq!(close_code_then_eof(&mut flooder, TIMEOUT), Some(1008));
    let sent = flood.join().unwrap();
    eprintln!("flood: {sent} sent, {flood_seen} delivered before the 1008");
    assert!(sent >= 1000, "the flood was sustained ({sent} sent)");
    assert_eq!(server.metrics().drops_rate_limit.load(Relaxed), 1);

    talker.text("after the flood");
    assert_eq!(listener.recv_text(), "after the flood");
}

// ---------------------------------------------------------------------------
// Limits and lifecycle

#[test]
fn a_full_house_answers_503_and_admits_again_when_clients_leave() {
    let _gate = together();
    let server = start_with(|c| c.max_clients = 4);
    let addr = server.addr();
    let (mut ann, mut bo) = bystanders(addr);
    let echo_1 = Client::echo(addr);
    let echo_2 = Client::echo(addr);
    let metrics = server.metrics();
    assert_eq!(metrics.connections_current.load(Relaxed), 4);

    for path in ["/", "/echo"] {
        for _ in 0..3 {
            let response = http_exchange(addr, handshake_request(addr, path, "").as_bytes());
            assert_eq!(status_of(&response), 503, "{response}");
        }
    }
    assert_eq!(rejections(&server, 503), 6);
    // Plain HTTP is still served, and the room works while full.
    assert!(get(addr, "/healthz").ends_with("ok\n"));
    still_chatting(&mut ann, &mut bo, "while full");

    // One leaves cleanly, one just vanishes.
    echo_1.close();
    drop(echo_2);
    assert!(
        eventually(TIMEOUT, || metrics.connections_current.load(Relaxed) == 2),
        "places were not freed"
    );
    let (mut cy, _) = v1(addr);
    let mut echo_3 = Client::echo(addr);
    echo_3.text("back in");
    assert_eq!(echo_3.recv_data(), Message::Text("back in".into()));
    chat(&mut cy, &mut [&mut ann, &mut bo], "cy got a freed place");
    let response = http_exchange(addr, handshake_request(addr, "/echo", "").as_bytes());
    assert_eq!(status_of(&response), 503, "full again");
    assert_eq!(metrics.connections_current.load(Relaxed), 4);
}

#[test]
fn two_thousand_connect_disconnect_cycles_leak_no_thread_or_descriptor() {
    let _gate = alone();
    wait_for_quiet();
    let server = start();
    let addr = server.addr();
    let (threads_before, fds_before) = (threads_now(), fds_now());
    const WORKERS: usize = 4;
    const CYCLES: usize = 500;
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            thread::spawn(move || {
                let mut handshakes = 0;
                for i in 0..CYCLES {
                    match (w + i) % 6 {
                        // A clean echo exchange and close.
                        0 => {
                            let mut client = Client::echo(addr);
                            client.text("hi");
                            assert_eq!(client.recv_data(), Message::Text("hi".into()));
                            client.close();
                            handshakes += 1;
                        }
                        // Connect, then nothing.
                        1 => drop(TcpStream::connect(addr).unwrap()),
                        // Gone in the middle of the handshake.
                        2 => {
                            let mut s = TcpStream::connect(addr).unwrap();
                            let request = handshake_request(addr, "/echo", "");
                            let _ = s.write_all(&request.as_bytes()[..request.len() / 2]);
                        }
                        // Gone in the middle of a frame.
                        3 => {
                            let mut client = Client::echo(addr);
                            let frame = masked(true, OpCode::Binary, &[7u8; 1000]);
                            client.send_raw(&frame[..300]);
                            handshakes += 1;
                        }
                        // A chat client that says something and vanishes.
                        4 => {
                            let mut client = Client::connect(addr, "/", &[]);
                            client.text("here and gone");
                            handshakes += 1;
                        }
                        // A chat client that closes cleanly.
                        _ => {
                            let client = Client::connect(addr, "/", &["wschat.v1"]);
                            client.close();
                            handshakes += 1;
                        }
                    }
                }
                handshakes
            })
        })
        .collect();
    let handshakes: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let took = started.elapsed();
    let metrics = server.metrics();
    let settled = eventually(Duration::from_secs(15), || {
        metrics.connections_current.load(Relaxed) == 0
            && threads_now() <= threads_before + 3
            && fds_now() <= fds_before + 3
    });
    let (threads_after, fds_after) = (threads_now(), fds_now());
    eprintln!(
        "{} cycles in {took:?}; threads {threads_before} -> {threads_after}, \
         fds {fds_before} -> {fds_after}",
        WORKERS * CYCLES
    );
    assert!(
        settled,
        "not back to the baseline: connections {}, threads {threads_before} -> {threads_after}, \
         fds {fds_before} -> {fds_after}",
        metrics.connections_current.load(Relaxed)
    );
    assert_eq!(metrics.connections_total.load(Relaxed), handshakes);
    let (mut ann, mut bo) = bystanders(addr);
    still_chatting(&mut ann, &mut bo, "after the cycles");
    echo_works(addr);
}

#[test]
fn a_panic_in_one_connection_stays_in_that_connection() {
    let _gate = together();
    let trigger = "please panic now";
    let server = start_with(|c| c.panic_trigger = Some(trigger.into()));
    let addr = server.addr();
    let (mut ann, mut bo) = bystanders(addr);
    let (mut doomed, doomed_id) = v1(addr);
    recv_until(
        &mut ann,
        &format!("\"type\":\"join\",\"user\":{{\"id\":{doomed_id},"),
    );
    chat(&mut doomed, &mut [&mut ann, &mut bo], "before the panic");

    doomed.text(trigger);
    // The room sees it leave...
    let leave = format!("\"type\":\"leave\",\"user\":{{\"id\":{doomed_id},");
    recv_until(&mut ann, &leave);
    recv_until(&mut bo, &leave);
    // ...and its connection is closed with 1011 (internal error), then EOF.
    let code = close_code_then_eof(&mut doomed, TIMEOUT);
    assert_eq!(code, Some(1011));
    let metrics = server.metrics();
    assert!(eventually(TIMEOUT, || metrics.panics.load(Relaxed) == 1));
    assert!(eventually(TIMEOUT, || {
        metrics.connections_current.load(Relaxed) == 2
    }));

    // The server keeps serving, the room keeps chatting.
    still_chatting(&mut ann, &mut bo, "after the panic");
    let (mut cy, _) = v1(addr);
    chat(
        &mut cy,
        &mut [&mut ann, &mut bo],
        "cy joined after the panic",
    );
    echo_works(addr);
    assert!(get(addr, "/healthz").ends_with("ok\n"));
    assert_eq!(metrics.panics.load(Relaxed), 1);
    drop((ann, bo, cy));
    assert!(eventually(TIMEOUT, || {
        metrics.connections_current.load(Relaxed) == 0
    }));
}

#[test]
fn pings_keep_a_live_client_and_drop_a_silent_one() {
    let _gate = alone();
    let server = start_with(|c| c.ping_interval = Duration::from_secs(1));
    let addr = server.addr();
    let mut lively = Client::echo(addr);
    let mut silent = Client::connect(addr, "/", &[]);
    let started = Instant::now();
    let metrics = server.metrics();

    // The lively one answers every ping for 4 s; the silent one does nothing.
    lively
        .stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut pings = 0;
    let mut silent_dropped_after = None;
    while started.elapsed() < Duration::from_secs(4) {
        match lively.try_recv() {
            Ok(Message::Ping(payload)) => {
                lively.send(OpCode::Pong, &payload);
                pings += 1;
            }
            Ok(other) => panic!("the lively client got {other:?}"),
            Err(ReadError::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("the lively client was dropped: {e}"),
        }
        if silent_dropped_after.is_none() && metrics.drops_ping_timeout.load(Relaxed) > 0 {
            silent_dropped_after = Some(started.elapsed());
        }
    }
    lively.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    eprintln!("lively answered {pings} pings; silent dropped after {silent_dropped_after:?}");
    assert!(pings >= 3, "{pings} pings in 4 s");
    let dropped = silent_dropped_after.expect("the silent client was not dropped within 4 s");
    assert!(
        dropped >= Duration::from_secs(1),
        "dropped too early: {dropped:?}"
    );
    assert_eq!(metrics.drops_ping_timeout.load(Relaxed), 1);
    // The lively one is still there.
    lively.text("still alive");
    assert_eq!(lively.recv_data(), Message::Text("still alive".into()));
    // The silent one got (unread) pings, then a Close 1001, then EOF.
    assert_eq!(close_code_then_eof(&mut silent, TIMEOUT), Some(1001));
    assert!(eventually(TIMEOUT, || {
        metrics.connections_current.load(Relaxed) == 1
    }));
    lively.close();
}

// ---------------------------------------------------------------------------
// Observability under load

/// `name{labels} value` lines of the exposition, checked to be well formed.
fn samples(text: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut typed = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            assert!(matches!(parts.next(), Some("gauge" | "counter")), "{line}");
            typed.push(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect(line);
        let family = series.split('{').next().unwrap();
        assert!(family.starts_with("wschat_"), "{line}");
        assert!(
            typed.last().map(String::as_str) == Some(family),
            "{line}: not under its # TYPE"
        );
        out.push((series.to_string(), value.parse().expect(line)));
    }
    out
}

#[test]
fn healthz_and_metrics_answer_under_load() {
    let _gate = alone();
    let server = start();
    let addr = server.addr();
    // Something in the counters besides chat: a refusal and a protocol error.
    assert_eq!(
        status_of(&http_exchange(
            addr,
            handshake_request(addr, "/nowhere", "").as_bytes()
        )),
        404
    );
    let mut bad = Client::echo(addr);
    bad.send_raw(&frame(true, 0, 1, b"unmasked", false));
    assert_eq!(close_code_then_eof(&mut bad, TIMEOUT), Some(1002));

    // The load: a sender, two readers and an echo client, in the background.
    const MESSAGES: usize = 2000;
    let watch = observer(addr);
    let readers: Vec<Client> = (0..2).map(|_| Client::connect(addr, "/", &[])).collect();
    let mut sender = Client::connect(addr, "/", &[]);
    await_joins(watch, 3);
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for mut reader in readers {
        load.push(thread::spawn(move || {
            for i in 0..MESSAGES {
                assert_eq!(reader.recv_text(), format!("load {i} {}", "x".repeat(200)));
            }
        }));
    }
    let stop_sender = stop.clone();
    load.push(thread::spawn(move || {
        for i in 0..MESSAGES {
            sender.text(&format!("load {i} {}", "x".repeat(200)));
            if i % 50 == 49 {
                thread::sleep(Duration::from_millis(5));
            }
        }
        stop_sender.store(true, Relaxed);
    }));
    let stop_echo = stop.clone();
    load.push(thread::spawn(move || {
        let mut echo = Client::echo(addr);
        for i in 0..100_000 {
            if stop_echo.load(Relaxed) {
                break;
            }
            echo.text(&format!("round trip {i}"));
            assert_eq!(echo.recv_data(), Message::Text(format!("round trip {i}")));
        }
        echo.close();
    }));

    let mut scrapes = 0;
    let mut busy_scrapes = 0;
    let deadline = Instant::now() + TIMEOUT;
    let mut most_open = 0;
    while scrapes < 10 || (!stop.load(Relaxed) && Instant::now() < deadline) {
        let busy = !stop.load(Relaxed);
        let health = get(addr, "/healthz");
        assert_eq!(status_of(&health), 200, "{health}");
        assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
        let metrics = get(addr, "/metrics");
        assert_eq!(status_of(&metrics), 200, "{metrics}");
        assert!(
            metrics.contains("Content-Type: text/plain; version=0.0.4"),
            "{metrics}"
        );
        let body = metrics.split("\r\n\r\n").nth(1).unwrap();
        let open = samples(body)
            .into_iter()
            .find(|(series, _)| series == "wschat_connections")
            .expect("wschat_connections")
            .1;
        if busy {
            most_open = most_open.max(open);
        }
        scrapes += 1;
        busy_scrapes += usize::from(busy);
    }
    for thread in load {
        thread.join().unwrap();
    }
    eprintln!("{scrapes} scrapes, {busy_scrapes} of them under load");
    assert!(busy_scrapes >= 1, "no scrape happened under load");
    assert!(most_open >= 4, "the load's connections were counted");
    // Once the load is over, every message is in the counters (the writers
    // count a batch just after writing it: allow a moment).
    let mut last = String::new();
    let counted = eventually(TIMEOUT, || {
        last = get(addr, "/metrics");
        let values = samples(last.split("\r\n\r\n").nth(1).unwrap());
        let at_least =
            |series: &str, min: usize| values.iter().any(|(s, v)| s == series && *v >= min as u64);
        at_least("wschat_messages_in_total", MESSAGES)
            && at_least("wschat_messages_out_total", 2 * MESSAGES)
    });
    assert!(counted, "{last}");
    let last = last.split("\r\n\r\n").nth(1).unwrap().to_string();

    let mut families = vec![
        ("connections", "gauge"),
        ("connections_total", "counter"),
        ("messages_in_total", "counter"),
        ("bytes_in_total", "counter"),
        ("messages_out_total", "counter"),
        ("bytes_out_total", "counter"),
        ("drops_total", "counter"),
        ("protocol_errors_total", "counter"),
        ("handshake_rejections_total", "counter"),
        ("max_queue_depth", "gauge"),
    ];
    families.push(("panics_total", "counter"));
    for (name, kind) in families {
        assert!(
            last.contains(&format!("# HELP wschat_{name} ")),
            "HELP {name}"
        );
        assert!(
            last.contains(&format!("# TYPE wschat_{name} {kind}\n")),
            "TYPE {name}"
        );
    }
    let values = samples(&last);
    let value = |series: &str| {
        values
            .iter()
            .find(|(s, _)| s == series)
            .unwrap_or_else(|| panic!("no {series} in\n{last}"))
            .1
    };
    for reason in ["slow_consumer", "rate_limit", "ping_timeout"] {
        value(&format!("wschat_drops_total{{reason=\"{reason}\"}}"));
    }
    for code in PROTOCOL_ERROR_CODES {
        value(&format!("wschat_protocol_errors_total{{code=\"{code}\"}}"));
    }
    for status in REJECTION_STATUSES {
        value(&format!(
            "wschat_handshake_rejections_total{{status=\"{status}\"}}"
        ));
    }
    assert_eq!(
        value("wschat_handshake_rejections_total{status=\"404\"}"),
        1
    );
    assert_eq!(value("wschat_protocol_errors_total{code=\"1002\"}"), 1);
    assert!(value("wschat_connections_total") >= 6);
    assert!(value("wschat_messages_in_total") >= MESSAGES as u64);
    assert!(value("wschat_bytes_in_total") >= (MESSAGES * 200) as u64);
    assert!(value("wschat_messages_out_total") >= 2 * MESSAGES as u64);
    assert!(value("wschat_bytes_out_total") >= (2 * MESSAGES * 200) as u64);
    assert!(value("wschat_max_queue_depth") >= 1);
}

/// Raw clients in a fan-out: `senders` of them each send `each` messages
/// of `size` bytes as fast as they can, while every client reads (calling
/// `pause(i, n)` before its n-th message, which may sleep); returns how
/// many each client received. Every message is tagged `sender:seq:`.
fn fan_out(
    addr: SocketAddr,
    clients: usize,
    senders: usize,
    each: usize,
    size: usize,
    pause: impl Fn(usize, usize) + Send + Sync + 'static,
) -> Vec<usize> {
    let pause = Arc::new(pause);
    let watch = observer(addr);
    let all: Vec<Client> = (0..clients)
        .map(|_| Client::connect(addr, "/", &[]))
        .collect();
    await_joins(watch, clients);
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for (i, client) in all.into_iter().enumerate() {
        let expected = if i < senders {
            (senders - 1) * each
        } else {
            senders * each
        };
        if i < senders {
            let mut sending = client.stream.try_clone().unwrap();
            writers.push(thread::spawn(move || {
                let mut text = String::with_capacity(size);
                for n in 0..each {
                    text.clear();
                    text.push_str(&format!("{i}:{n}:"));
                    while text.len() < size {
                        text.push('x');
                    }
                    sending
                        .write_all(&masked(true, OpCode::Text, text.as_bytes()))
                        .unwrap();
                }
            }));
        }
        let mut client = client;
        let pause = pause.clone();
        readers.push(thread::spawn(move || {
            let mut next = vec![0usize; senders];
            for n in 0..expected {
                pause(i, n);
                let text = client.recv_text();
                let mut parts = text.splitn(3, ':');
                let from: usize = parts.next().unwrap().parse().unwrap();
                let seq: usize = parts.next().unwrap().parse().unwrap();
                assert_eq!(seq, next[from], "client {i}: out of order from {from}");
                next[from] += 1;
            }
            expected
        }));
    }
    for writer in writers {
        writer.join().unwrap();
    }
    readers.into_iter().map(|r| r.join().unwrap()).collect()
}

#[test]
fn a_client_that_stalls_for_a_moment_beside_a_cpu_hog_keeps_every_message() {
    let _gate = alone();
    let server = start_with(|c| c.rate_limit = 0);
    let addr = server.addr();
    // Two busy threads: the machine's cores are taken, as on a loaded
    // laptop or phone, and everyone is descheduled now and then.
    let hogging = Arc::new(AtomicBool::new(true));
    let hogs: Vec<_> = (0..2)
        .map(|_| {
            let hogging = hogging.clone();
            thread::spawn(move || {
                let mut x = 0u64;
                while hogging.load(Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                x
            })
        })
        .collect();
    // Client 5 stops reading after 500 messages until the server holds
    // 4 MiB for it (more than the kernel's buffers, and far more than a
    // fixed queue of 1,024 frames would allow), 10 s at most.
    let got = fan_out(addr, 30, 4, 4000, 1024, move |i, n| {
        if i == 5 && n == 500 {
            let behind = || {
                samples(get(addr, "/metrics").split("\r\n\r\n").nth(1).unwrap_or(""))
                    .into_iter()
                    .find(|(series, _)| series == "wschat_max_queue_depth")
                    .map_or(0, |(_, v)| v)
            };
            eventually(Duration::from_secs(10), || behind() > 4 << 20);
        }
    });
    hogging.store(false, Relaxed);
    for hog in hogs {
        hog.join().unwrap();
    }
    assert_eq!(got.iter().sum::<usize>(), 4 * 3 * 4000 + 26 * 4 * 4000);
    // It really fell far behind: the server held megabytes for it.
    let depth = server.metrics().max_queue_depth.load(Relaxed);
    assert!(depth > 4 << 20, "only {depth} bytes were ever waiting");
    assert_eq!(server.metrics().drops_slow_consumer.load(Relaxed), 0);
}

#[test]
fn a_large_broadcast_at_the_thread_limit_cuts_nobody() {
    let _gate = together();
    // Every client thread place is taken: what a client's full socket
    // cannot take waits in its delivery thread, which needs no new thread.
    let server = start_with(|c| {
        c.thread_limit = Some(wschat::threads::HTTP_RESERVE + 21);
        c.rate_limit = 0;
        c.max_message_bytes = 1 << 20;
    });
    let addr = server.addr();
    // Everyone stops reading for a moment while a MiB a message goes by.
    let got = fan_out(addr, 20, 1, 24, 1 << 19, |_, n| {
        if n == 0 {
            thread::sleep(Duration::from_millis(300));
        }
    });
    assert_eq!(got, [0].into_iter().chain([24; 19]).collect::<Vec<_>>());
    assert_eq!(server.metrics().drops_slow_consumer.load(Relaxed), 0);
    assert_eq!(status_of(&get(addr, "/healthz")), 200);
}

#[test]
fn a_dead_broadcaster_fails_healthz() {
    let _gate = together();
    let server = start_with(|c| c.broadcaster_panic_trigger = Some("stop the room".into()));
    let addr = server.addr();
    assert_eq!(status_of(&get(addr, "/healthz")), 200);
    let mut client = Client::connect(addr, "/", &[]);
    client.text("stop the room");
    assert!(eventually(TIMEOUT, || status_of(&get(addr, "/healthz")) == 503));
    assert!(get(addr, "/healthz").ends_with("the chat has stopped\n"));
}

#[test]
fn joiners_that_never_read_cannot_make_welcomes_hoard_memory() {
    let _gate = alone();
    let server = start_with(|c| {
        c.rate_limit = 0;
        c.max_message_bytes = 64 * 1024;
    });
    let addr = server.addr();
    let (mut ann, mut bo) = bystanders(addr);
    // A raw client fills the history with the largest messages, full of
    // control characters (each one six bytes once escaped as JSON).
    let mut raw = Client::connect(addr, "/", &[]);
    let ugly: String = "\u{1}".repeat(64 * 1024);
    for _ in 0..100 {
        raw.text(&ugly);
    }
    recv_until(&mut ann, "\"type\":\"message\"");
    // The welcome a newcomer gets is bounded, whatever the history held.
    let (_, welcome) = {
        let mut probe = Client::connect(addr, "/", &["wschat.v1"]);
        let text = probe.recv_text();
        (probe, text)
    };
    assert!(
        welcome.len() <= wschat::room::MAX_HISTORY_BYTES + 4096,
        "a welcome of {} bytes",
        welcome.len()
    );
    // Twenty joiners that never read: their welcomes share one copy.
    let rss_before = rss_kib();
    let sleepers: Vec<Client> = (0..20)
        .map(|_| Client::connect(addr, "/", &["wschat.v1"]))
        .collect();
    thread::sleep(Duration::from_millis(500));
    let grew = rss_kib().saturating_sub(rss_before) / 1024;
    eprintln!("20 joiners that never read: RSS grew by {grew} MiB");
    assert!(grew < 32, "the server grew by {grew} MiB for 20 welcomes");
    still_chatting(&mut ann, &mut bo, "beside the sleepers");
    drop(sleepers);
}
