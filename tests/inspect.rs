//! The frame inspector, server side: a raw client on `/inspect/ws` that
//! masks with keys of its own, and its feed, over real sockets. What the
//! feed reports must be exactly the bytes that crossed the wire, and only
//! the inspected connection's own.

mod common;

use common::*;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use wschat::config::PerAddressLimit;
use wschat::inspect::{
    INSPECTOR_BUSY, MAX_BACKLOG, MAX_FRAME_SHOWN, MAX_FRAMES_PER_SECOND, MAX_INSPECT_MESSAGE,
    MAX_INSPECTED, REDACTED,
};
use wschat::metrics::{REFUSAL_LIMITS, REJECTION_STATUSES};
use wschat::protocol::OpCode;
use wschat::protocol::deflate::{Inflater, compress_message};
use wschat::protocol::message::Message;

/// A second client address on this machine (see `connect_from`).
const IP_2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// RFC 6455 §5.7's masked "Hello": its key, and the frame as sent.
const RFC_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const RFC_HELLO: [u8; 11] = [
    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];

/// An inspected connection and the feed that reports it.
struct Inspector {
    conn: Client,
    feed: Client,
    id: u64,
    key: String,
    /// The feed's reports up to the server's first message: the
    /// handshake, its frame and message.
    opening: Vec<Value>,
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A frame of the client's own making: masked with `key`, any flags.
fn masked_with(key: [u8; 4], first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Opens `/inspect/ws{query}` with `extra` header lines, reads its first
/// message (the feed's key) and opens the feed.
fn open(addr: SocketAddr, query: &str, extra: &str) -> Inspector {
    let request = handshake_request(addr, &format!("/inspect/ws{query}"), extra);
    let mut conn = Client::connect_with(addr, request.as_bytes());
    let hello: Value = serde_json::from_str(&conn.recv_text()).unwrap();
    let id = hello["inspect"]["conn"].as_u64().unwrap();
    let key = hello["inspect"]["key"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 32, "128 bits in hex: {key}");
    let feed = Client::connect(addr, &format!("/inspect/feed?conn={id}&key={key}"), &[]);
    let mut inspector = Inspector {
        conn,
        feed,
        id,
        key,
        opening: Vec::new(),
    };
    let first = inspector.next_report();
    assert_eq!(first["type"], "hello", "{first}");
    assert_eq!(first["conn"], id);
    inspector.opening = inspector.reports_until(|r| r["type"] == "message");
    inspector
}

impl Inspector {
    fn next_report(&mut self) -> Value {
        match self.feed.recv_data() {
            Message::Text(text) => serde_json::from_str(&text).unwrap(),
            other => panic!("expected a report, got {other:?}"),
        }
    }

    /// Reports up to and including the first that `done` accepts.
    fn reports_until(&mut self, done: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let report = self.next_report();
            let stop = done(&report);
            seen.push(report);
            if stop {
                return seen;
            }
        }
    }

    /// The next report of a frame that went `dir`.
    fn frame(&mut self, dir: &str) -> Value {
        self.reports_until(|r| r["type"] == "frame" && r["dir"] == dir)
            .pop()
            .unwrap()
    }

    fn message(&mut self, dir: &str) -> Value {
        self.reports_until(|r| r["type"] == "message" && r["dir"] == dir)
            .pop()
            .unwrap()
    }

    fn request(&mut self, json: &str) {
        self.feed.text(json);
    }
}

#[test]
fn reported_bytes_are_exactly_what_the_client_sent() {
    let server = start();
    let mut i = open(server.addr(), "", "");
    // The handshake first, then the server's first message (the key).
    let kinds: Vec<&Value> = i.opening.iter().map(|r| &r["type"]).collect();
    assert_eq!(kinds, ["handshake", "frame", "message"]);
    let out = &i.opening[1];
    assert_eq!(
        out["payload_len"],
        32 + format!("{{\"inspect\":{{\"conn\":{},\"key\":\"\"}}}}", i.id).len()
    );

    i.conn.send_raw(&RFC_HELLO);
    let frame = i.frame("in");
    assert_eq!(frame["header"], "81 85 37 fa 21 3d");
    assert_eq!(
        frame["payload"], "7f 9f 4d 51 58",
        "the masked bytes as they arrived"
    );
    assert_eq!(frame["payload_len"], 5);
    let message = i.message("in");
    assert_eq!(message["kind"], "text");
    assert_eq!(message["text"], "Hello");
    assert_eq!(message["frames"], serde_json::json!([frame["n"]]));
    // The echo, as written: unmasked, 7-bit length.
    assert_eq!(i.frame("out")["header"], "81 05");
    assert_eq!(i.conn.recv_text(), "Hello");

    // A 16-bit length and another key: every byte as sent.
    let key = [0xa5, 0x00, 0xff, 0x5a];
    let payload: Vec<u8> = (0..300u32).map(|n| (n * 7) as u8).collect();
    let sent = masked_with(key, 0x82, &payload);
    i.conn.send_raw(&sent);
    let frame = i.frame("in");
    assert_eq!(frame["header"], hex(&sent[..8]));
    assert_eq!(frame["header"], "82 fe 01 2c a5 00 ff 5a");
    assert_eq!(frame["payload"], hex(&sent[8..]));
    assert_eq!(i.message("in")["data"], hex(&payload));
}

#[test]
fn requested_fragments_ping_and_close_are_reported_as_written() {
    let server = start();
    let mut i = open(server.addr(), "", "");
    i.request(r#"{"send":"fragments","count":3,"text":"abcdef"}"#);
    let frames: Vec<Value> = (0..3).map(|_| i.frame("out")).collect();
    let headers: Vec<&str> = frames
        .iter()
        .map(|f| f["header"].as_str().unwrap())
        .collect();
    // FIN 0, 0, 1; Text, Continuation, Continuation (§5.4).
    assert_eq!(headers, ["01 02", "00 02", "80 02"]);
    let message = i.message("out");
    let numbers: Vec<&Value> = frames.iter().map(|f| &f["n"]).collect();
    assert_eq!(message["frames"], serde_json::json!(numbers));
    assert_eq!(message["text"], "abcdef");
    assert_eq!(i.conn.recv_text(), "abcdef");

    i.request(r#"{"send":"ping","text":"hi"}"#);
    assert_eq!(i.frame("out")["header"], "89 02");
    assert_eq!(i.conn.recv(), Message::Ping(b"hi".to_vec()));
    i.conn.send(OpCode::Pong, b"hi");
    let pong = i.frame("in");
    assert_eq!(pong["header"], format!("8a 82 {}", hex(&MASK)));
    assert_eq!(i.message("in")["kind"], "pong");

    i.request(r#"{"send":"close","code":4000,"text":"bye"}"#);
    let close = i.frame("out");
    assert_eq!(close["header"], "88 05");
    assert_eq!(close["payload"], "0f a0 62 79 65");
    let message = i.message("out");
    assert_eq!(
        (&message["code"], &message["reason"]),
        (&Value::from(4000), &Value::from("bye"))
    );
    assert!(matches!(i.conn.recv(), Message::Close(Some(f)) if f.reason == "bye"));
    i.conn.send(OpCode::Close, &close_payload(4000, b""));
    assert_eq!(i.message("in")["code"], 4000);
    let end = i.reports_until(|r| r["type"] == "closed").pop().unwrap();
    assert_eq!(end["code"], 4000);
    i.feed.expect_close(1000);
}

#[test]
fn bad_requests_are_answered_on_the_feed() {
    let server = start();
    let mut i = open(server.addr(), "", "");
    for (request, says) in [
        (
            r#"{"send":"fragments","count":0,"text":"x"}"#,
            "count must be 1 to 64",
        ),
        (
            r#"{"send":"close","code":1005,"text":""}"#,
            "1005 may not be sent",
        ),
        (r#"{"send":"both","text":"x"}"#, "permessage-deflate is off"),
        ("nonsense", "a request is a JSON object"),
    ] {
        i.request(request);
        let error = i.reports_until(|r| r["type"] == "error").pop().unwrap();
        assert!(error["message"].as_str().unwrap().contains(says), "{error}");
    }
}

#[test]
fn compressed_messages_show_their_compressed_bytes_and_the_text() {
    let server = start();
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    let mut i = open(server.addr(), "", offer);
    assert!(
        i.conn.response.contains("permessage-deflate"),
        "{}",
        i.conn.response
    );
    i.request(r#"{"send":"both","text":"Hello, Hello, Hello"}"#);
    let compressed = i.frame("out");
    let header = compressed["header"].as_str().unwrap();
    assert!(header.starts_with("c1 "), "RSV1 and FIN, Text: {header}");
    let message = i.message("out");
    assert_eq!(message["compressed"], true);
    assert_eq!(message["tail"], "00 00 ff ff");
    assert_eq!(message["wire"], compressed["payload"]);
    let wire: Vec<u8> = message["wire"]
        .as_str()
        .unwrap()
        .split(' ')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    assert_eq!(
        Inflater::new().inflate_message(&wire, 1024).unwrap(),
        b"Hello, Hello, Hello"
    );
    assert_eq!(message["text"], "Hello, Hello, Hello");
    assert!(
        i.frame("out")["header"]
            .as_str()
            .unwrap()
            .starts_with("81 "),
        "then uncompressed"
    );

    // The client's own compressed message, as it sent it.
    let deflated = compress_message(b"abcabcabc");
    let sent = masked_with(RFC_KEY, 0xc1, &deflated);
    i.conn.send_raw(&sent);
    let frame = i.frame("in");
    assert_eq!(frame["payload"], hex(&sent[6..]));
    let message = i.message("in");
    assert_eq!(
        (&message["compressed"], &message["text"]),
        (&Value::from(true), &Value::from("abcabcabc"))
    );
    assert_eq!(
        message["wire"],
        hex(&deflated),
        "the unmasked compressed bytes"
    );

    // ?deflate=off declines the same offer.
    let off = open(server.addr(), "?deflate=off", offer);
    assert!(
        !off.conn.response.contains("permessage-deflate"),
        "{}",
        off.conn.response
    );
}

#[test]
fn an_inspector_never_shows_another_connections_bytes() {
    let server = start();
    let mut a = open(server.addr(), "", "");
    let mut b = open(server.addr(), "", "");
    let mut chat = Client::connect(server.addr(), "/", &[]);
    let key_b = [0xde, 0xad, 0xbe, 0xef];
    b.conn.send_raw(&masked_with(key_b, 0x81, b"only-for-b"));
    chat.text("chat-line");
    assert_eq!(b.message("in")["text"], "only-for-b");
    // A's own frame, then everything A's feed said up to it.
    a.conn.send_raw(&RFC_HELLO);
    let seen = a.reports_until(|r| r["type"] == "message" && r["dir"] == "in");
    let all = serde_json::to_string(&seen).unwrap();
    for foreign in ["de ad be ef", "only-for-b", "chat-line", &b.key] {
        assert!(!all.contains(foreign), "A's feed shows {foreign}: {all}");
    }
    // A connection whose feed is not open yet: another key never opens it.
    let request = handshake_request(server.addr(), "/inspect/ws", "");
    let mut c = Client::connect_with(server.addr(), request.as_bytes());
    let hello: Value = serde_json::from_str(&c.recv_text()).unwrap();
    let c_id = hello["inspect"]["conn"].as_u64().unwrap();
    let c_key = hello["inspect"]["key"].as_str().unwrap();
    let mut guessed = c_key.to_string().into_bytes();
    guessed[31] = if guessed[31] == b'0' { b'1' } else { b'0' };
    for wrong in [a.key.as_str(), std::str::from_utf8(&guessed).unwrap(), ""] {
        let target = format!("/inspect/feed?conn={c_id}&key={wrong}");
        let request = handshake_request(server.addr(), &target, "");
        assert_eq!(
            status_of(&http_exchange(server.addr(), request.as_bytes())),
            403,
            "{target}"
        );
    }
    let right = format!("/inspect/feed?conn={c_id}&key={c_key}");
    let _feed = Client::connect(server.addr(), &right, &[]);
    // Neither A's key for B's connection, nor B's key a second time.
    for target in [
        format!("/inspect/feed?conn={}&key={}", b.id, a.key),
        format!("/inspect/feed?conn={}&key={}", b.id, b.key),
    ] {
        let request = handshake_request(server.addr(), &target, "");
        assert_eq!(
            status_of(&http_exchange(server.addr(), request.as_bytes())),
            403,
            "{target}"
        );
    }
}

#[test]
fn the_request_head_is_reported_with_credentials_redacted() {
    let server = start();
    let extra = "Cookie: session=c00kie\r\nAuthorization: Bearer s3cret\r\nX-Visible: yes\r\n";
    let i = open(server.addr(), "?token=t0ken&room=a", extra);
    let handshake = i.opening[0].clone();
    let head = handshake["request"].as_str().unwrap();
    for secret in ["c00kie", "s3cret", "t0ken"] {
        assert!(!head.contains(secret), "{secret} in {head}");
    }
    assert!(head.starts_with(&format!(
        "GET /inspect/ws?token={REDACTED}&room=a HTTP/1.1\r\n"
    )));
    assert!(head.contains(&format!("Cookie: {REDACTED}\r\n")));
    assert!(head.contains(&format!("Authorization: {REDACTED}\r\n")));
    assert!(head.contains("X-Visible: yes\r\n"));
    // The accept computation, step by step (RFC 6455 §4.2.2's example key).
    assert_eq!(handshake["key"], "dGhlIHNhbXBsZSBub25jZQ==");
    assert_eq!(
        handshake["sha1"],
        "b3 7a 4f 2c c0 62 4f 16 90 f6 46 06 cf 38 59 45 b2 be c4 ea"
    );
    assert!(
        handshake["response"]
            .as_str()
            .unwrap()
            .contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n")
    );
}

/// A page signing in offers its token as a subprotocol
/// (`wschat.auth.TOKEN`): the inspector shows the offer, never the token.
#[test]
fn a_sign_in_token_offered_as_a_subprotocol_is_redacted() {
    let server = start();
    let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1LTEifQ.c2lnbmF0dXJl";
    let extra = format!("Sec-WebSocket-Protocol: wschat.v1, wschat.auth.{token}\r\n");
    let i = open(server.addr(), "", &extra);
    let head = i.opening[0]["request"].as_str().unwrap().to_string();
    for part in token.split('.') {
        assert!(!head.contains(part), "{part} in {head}");
    }
    assert!(
        head.contains(&format!(
            "Sec-WebSocket-Protocol: wschat.v1, wschat.auth.{REDACTED}\r\n"
        )),
        "{head}"
    );
    // The 101 selects no subprotocol: nothing is echoed back either.
    let response = i.opening[0]["response"].as_str().unwrap();
    assert!(!response.contains("Sec-WebSocket-Protocol"), "{response}");
}

#[test]
fn connections_at_once_are_bounded() {
    let server = start();
    let mut open_now: Vec<Inspector> = (0..MAX_INSPECTED)
        .map(|_| open(server.addr(), "", ""))
        .collect();
    let request = handshake_request(server.addr(), "/inspect/ws", "");
    let refused = http_exchange(server.addr(), request.as_bytes());
    assert_eq!(status_of(&refused), 503);
    assert!(
        refused.ends_with(&format!("\r\n\r\n{INSPECTOR_BUSY}\n")),
        "{refused}"
    );
    assert_eq!(
        server
            .metrics()
            .inspect_refused
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // One closes: its place is free again.
    open_now.pop().unwrap().conn.close();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let response = response_head(server.addr(), request.as_bytes());
        if status_of(&response) == 101 {
            break;
        }
        assert!(Instant::now() < deadline, "no place freed: {response}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // And none of them counted as a chat or echo connection.
    assert_eq!(
        server
            .metrics()
            .connections_total
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

/// `--max-clients-per-ip` counts the inspector's connections (the
/// inspected one and its feed) with the address's chat and echo ones, and
/// refuses past it as it refuses those: 429 and the same reason. Given
/// explicitly, the limit counts loopback addresses too, so 127.0.0.1 and
/// 127.0.0.2 are two client addresses.
#[test]
fn the_inspectors_connections_count_under_max_clients_per_ip() {
    let server = start_with(|c| c.max_clients_per_ip = PerAddressLimit::everywhere(2));
    let addr = server.addr();
    let over_the_limit = "\r\n\r\ntoo many connections from this address (--max-clients-per-ip)\n";
    // Counted as a chat or echo refusal is: by limit and by status.
    let refused_now = || {
        let metrics = server.metrics();
        let by_limit = REFUSAL_LIMITS
            .iter()
            .position(|&l| l == "clients_per_address")
            .map(|i| metrics.refusals[i].load(Relaxed));
        let by_status = REJECTION_STATUSES
            .iter()
            .position(|&s| s == 429)
            .map(|i| metrics.rejections[i].load(Relaxed));
        assert_eq!(by_limit, by_status);
        by_limit.unwrap()
    };
    // An inspected connection and its feed: both places of 127.0.0.1.
    let first = open(addr, "", "");
    for path in ["/inspect/ws", "/echo"] {
        let refused = http_exchange(addr, handshake_request(addr, path, "").as_bytes());
        assert_eq!(status_of(&refused), 429, "{path}: {refused}");
        assert!(refused.ends_with(over_the_limit), "{path}: {refused}");
    }
    assert_eq!(refused_now(), 2);
    // Another address is counted apart.
    let request = handshake_request(addr, "/inspect/ws", "");
    let from_other = Client::over(connect_from(IP_2, addr), request.as_bytes());
    // The inspector's places are given back when its connections end.
    drop(first);
    let echo = eventually_connected(addr, "/echo");
    // An echo and an inspected connection: the feed is over the limit,
    // and refused before it uses up its key, so it can come back.
    let mut conn = Client::connect(addr, "/inspect/ws", &[]);
    let hello: Value = serde_json::from_str(&conn.recv_text()).unwrap();
    let feed_path = format!(
        "/inspect/feed?conn={}&key={}",
        hello["inspect"]["conn"],
        hello["inspect"]["key"].as_str().unwrap()
    );
    let refused = http_exchange(addr, handshake_request(addr, &feed_path, "").as_bytes());
    assert_eq!(status_of(&refused), 429, "{refused}");
    assert!(refused.ends_with(over_the_limit), "{refused}");
    assert_eq!(refused_now(), 3);
    echo.close();
    let mut feed = eventually_connected(addr, &feed_path);
    let Message::Text(report) = feed.recv_data() else {
        panic!("a report")
    };
    assert!(report.contains("\"type\":\"hello\""), "{report}");
    drop((conn, from_other));
}

/// A client on `path`, once the server has freed a place for it.
fn eventually_connected(addr: SocketAddr, path: &str) -> Client {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match Client::try_connect(addr, path, &[]) {
            Ok(client) => return client,
            Err(e) => assert!(Instant::now() < deadline, "{path}: no place freed: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn large_frames_are_summarised_and_over_large_ones_refused() {
    let server = start();
    let mut i = open(server.addr(), "", "");
    let payload = vec![b'x'; MAX_FRAME_SHOWN + 100];
    i.conn.send_raw(&masked_with(RFC_KEY, 0x82, &payload));
    let frame = i.frame("in");
    assert_eq!(frame["payload_len"], MAX_FRAME_SHOWN + 100);
    let shown = frame["payload"].as_str().unwrap().split(' ').count();
    assert_eq!(shown, MAX_FRAME_SHOWN);

    let header = masked_with(RFC_KEY, 0x82, &vec![0; MAX_INSPECT_MESSAGE + 1]);
    i.conn.send_raw(&header[..14]); // the header alone is refused
    i.conn.expect_close(1009);
}

#[test]
fn frames_over_the_rate_are_counted_not_shown() {
    let server = start();
    let mut i = open(server.addr(), "", "");
    let start = Instant::now();
    let sent = MAX_FRAMES_PER_SECOND as usize + 50;
    let burst: Vec<u8> = (0..sent)
        .flat_map(|_| masked_with(RFC_KEY, 0x8a, b""))
        .collect();
    i.conn.send_raw(&burst); // pongs: nothing is sent back
    let reports = i.reports_until(|r| r["type"] == "skipped");
    assert!(start.elapsed() < Duration::from_secs(10));
    let shown = i
        .opening
        .iter()
        .chain(&reports)
        .filter(|r| r["type"] == "frame")
        .count();
    let skipped = reports.last().unwrap()["frames"].as_u64().unwrap() as usize;
    // The server's first message was a frame too.
    assert!(shown <= MAX_FRAMES_PER_SECOND as usize, "{shown} shown");
    assert_eq!(shown + skipped, sent + 1, "every frame shown or counted");
}

#[test]
fn with_the_inspector_off_the_page_and_its_endpoints_are_404() {
    let on = start();
    let page = http_exchange(
        on.addr(),
        format!("GET /inspect HTTP/1.1\r\nHost: {}\r\n\r\n", on.addr()).as_bytes(),
    );
    assert_eq!(status_of(&page), 200);
    assert!(page.contains("Content-Type: text/html"), "{page}");
    let plain = http_exchange(
        on.addr(),
        format!("GET /inspect/ws HTTP/1.1\r\nHost: {}\r\n\r\n", on.addr()).as_bytes(),
    );
    assert_eq!(status_of(&plain), 400);

    let off = start_with(|c| c.inspect = false);
    for path in [
        "/inspect",
        "/inspect.js",
        "/inspect.css",
        "/inspect/ws",
        "/inspect/feed",
    ] {
        let get = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", off.addr());
        assert_eq!(
            status_of(&http_exchange(off.addr(), get.as_bytes())),
            404,
            "GET {path}"
        );
        let upgrade = handshake_request(off.addr(), path, "");
        assert_eq!(
            status_of(&http_exchange(off.addr(), upgrade.as_bytes())),
            404,
            "upgrade {path}"
        );
    }
}

#[test]
fn a_stopping_server_closes_inspected_connections_with_1001() {
    let server = start();
    let mut i = open(server.addr(), "", "");
    server.shutdown();
    assert!(
        matches!(i.conn.recv(), Message::Close(Some(f)) if u16::from(f.code) == 1001 && f.reason == "shutting_down")
    );
    let close = i.frame("out");
    assert_eq!(close["header"], "88 0f");
}

#[test]
fn a_feed_opened_late_finds_at_most_the_backlog_and_a_count_of_the_rest() {
    let server = start();
    let request = handshake_request(server.addr(), "/inspect/ws", "");
    let mut conn = Client::connect_with(server.addr(), request.as_bytes());
    let hello: Value = serde_json::from_str(&conn.recv_text()).unwrap();
    let (id, key) = (
        &hello["inspect"]["conn"],
        hello["inspect"]["key"].as_str().unwrap(),
    );
    // Enough frames, under the rate, to fill the backlog: one window each.
    let per_window = MAX_FRAMES_PER_SECOND as usize;
    let windows = MAX_BACKLOG / per_window + 1;
    let pongs: Vec<u8> = (0..per_window)
        .flat_map(|_| masked_with(RFC_KEY, 0x8a, b""))
        .collect();
    for _ in 0..windows {
        conn.send_raw(&pongs);
        std::thread::sleep(Duration::from_millis(1050));
    }
    let mut feed = Client::connect(
        server.addr(),
        &format!("/inspect/feed?conn={id}&key={key}"),
        &[],
    );
    let (mut frames, mut skipped, mut marked) = (0, 0, false);
    loop {
        let Message::Text(text) = feed.recv_data() else {
            panic!("a report")
        };
        let report: Value = serde_json::from_str(&text).unwrap();
        if report["type"] == "message" && report["text"] == "Hello" {
            break;
        }
        if report["type"] == "frame" && !marked {
            // The feed sends what was held all at once: one more frame
            // now marks its end.
            conn.send_raw(&RFC_HELLO);
            marked = true;
        }
        frames += usize::from(report["type"] == "frame");
        skipped += report["frames"]
            .as_u64()
            .filter(|_| report["type"] == "skipped")
            .unwrap_or(0) as usize;
    }
    let sent = 1 + windows * per_window; // the server's first message, then the pongs
    assert!(frames > 0 && frames <= MAX_BACKLOG, "{frames} frames held");
    assert_eq!(
        frames - 1 + skipped,
        sent,
        "every frame shown or counted (less the marker)"
    );
}
