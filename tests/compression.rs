//! permessage-deflate (RFC 7692) end to end: a real server on loopback,
//! and a hand-made client in this file that offers the extension, sends
//! messages compressed with `compress_message`, and inflates what it
//! receives with `Inflater`, frame by frame, so that it can also check
//! which frames arrive compressed (RSV1) and which do not.

mod common;

use common::{Rng, TIMEOUT, close_payload, frame, handshake_request, read_response_head};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use wschat::protocol::deflate::{Inflater, compress_message};
use wschat::protocol::frame::{FrameHeader, OpCode, RSV1};

/// What browsers send (Chromium and Firefox alike).
const BROWSER_OFFER: &str = "permessage-deflate; client_max_window_bits";
/// The server's answer to it.
const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// One frame as it arrived: its opcode, whether RSV1 was set, and its
/// payload (inflated when RSV1 was set).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Received {
    opcode: OpCode,
    compressed: bool,
    payload: Vec<u8>,
}

/// A client that speaks permessage-deflate, written for these tests.
/// One frame as it came.
struct Frame {
    fin: bool,
    received: Received,
}

struct DeflateClient {
    stream: TcpStream,
    /// The 101 (or other) response head.
    response: String,
    /// Bytes read and not yet parsed.
    buf: Vec<u8>,
    /// Bytes of the frames received so far (headers and payloads, as on
    /// the wire).
    wire: usize,
}

impl DeflateClient {
    /// Connects to `path` with the given extra header lines (an offer, a
    /// subprotocol) and expects a 101.
    fn connect(addr: SocketAddr, path: &str, extra: &str) -> DeflateClient {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream
            .write_all(handshake_request(addr, path, extra).as_bytes())
            .unwrap();
        let response = read_response_head(&mut stream);
        assert!(
            response.starts_with("HTTP/1.1 101 "),
            "no 101: {response:?}"
        );
        DeflateClient {
            stream,
            response,
            buf: Vec::new(),
            wire: 0,
        }
    }

    /// A chat client offering what a browser offers; `v1` adds the
    /// wschat.v1 subprotocol.
    fn chat(addr: SocketAddr, v1: bool) -> DeflateClient {
        let protocol = if v1 {
            "Sec-WebSocket-Protocol: wschat.v1\r\n"
        } else {
            ""
        };
        let extra = format!("Sec-WebSocket-Extensions: {BROWSER_OFFER}\r\n{protocol}");
        let client = Self::connect(addr, "/", &extra);
        assert_eq!(client.extensions(), Some(ANSWER), "{}", client.response);
        client
    }

    /// The `Sec-WebSocket-Extensions` value of the response, if any.
    fn extensions(&self) -> Option<&str> {
        extensions_of(&self.response)
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends a message in one masked frame, compressed (RSV1 set) or not.
    fn send(&mut self, opcode: OpCode, payload: &[u8], compress: bool) {
        let bytes = if compress {
            frame(true, RSV1, opcode.as_u8(), &compress_message(payload), true)
        } else {
            frame(true, 0, opcode.as_u8(), payload, true)
        };
        self.send_raw(&bytes);
    }

    /// The next frame (pings skipped), inflated if it was compressed.
    fn recv(&mut self) -> Received {
        loop {
            let received = self.recv_any();
            if received.opcode != OpCode::Ping {
                return received;
            }
        }
    }

    /// The next message or control frame: the frames of a fragmented
    /// message (a plain client's welcome is two) are joined.
    fn recv_any(&mut self) -> Received {
        let first = self.recv_frame();
        if first.fin || first.received.opcode.is_control() {
            return first.received;
        }
        let mut message = first.received;
        loop {
            let next = self.recv_frame();
            assert_eq!(next.received.opcode, OpCode::Continuation);
            message.payload.extend_from_slice(&next.received.payload);
            if next.fin {
                return message;
            }
        }
    }

    fn recv_frame(&mut self) -> Frame {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some((header, used)) = FrameHeader::parse_allowing(&self.buf, RSV1).unwrap() {
                let len = header.payload_len as usize;
                if self.buf.len() >= used + len {
                    assert!(
                        header.fin || header.rsv & RSV1 == 0,
                        "compressed messages are not fragmented"
                    );
                    assert_eq!(header.rsv & !RSV1, 0, "RSV2 and RSV3 stay 0");
                    let payload: Vec<u8> = self.buf.drain(..used + len).skip(used).collect();
                    self.wire += used + len;
                    let compressed = header.rsv & RSV1 != 0;
                    if compressed {
                        assert!(
                            !header.opcode.is_control(),
                            "RSV1 on a control frame (RFC 7692 §6.1)"
                        );
                    }
                    let payload = if compressed {
                        Inflater::new()
                            .inflate_message(&payload, usize::MAX)
                            .expect("the server's compressed payload inflates")
                    } else {
                        payload
                    };
                    return Frame {
                        fin: header.fin,
                        received: Received {
                            opcode: header.opcode,
                            compressed,
                            payload,
                        },
                    };
                }
            }
            assert!(Instant::now() < deadline, "no frame within the timeout");
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("connection closed while waiting for a frame"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!(
                    "read error while waiting for a frame: {e} (buffered {:?})",
                    self.buf
                ),
            }
        }
    }

    /// The next v1 event's text (a `message`, `join`, ...).
    fn recv_event(&mut self) -> (String, bool) {
        let received = self.recv();
        assert_eq!(received.opcode, OpCode::Text, "{:?}", received.opcode);
        (
            String::from_utf8(received.payload).unwrap(),
            received.compressed,
        )
    }

    /// Reads events until one contains `needle`.
    fn recv_until(&mut self, needle: &str) -> (String, bool) {
        loop {
            let event = self.recv_event();
            if event.0.contains(needle) {
                return event;
            }
        }
    }

    /// Expects a Close with `code` next (pings skipped), then EOF.
    fn expect_close(&mut self, code: u16) {
        let received = self.recv();
        assert_eq!(
            received.opcode,
            OpCode::Close,
            "{} bytes instead of a Close",
            received.payload.len()
        );
        assert!(!received.compressed);
        assert_eq!(
            u16::from_be_bytes([received.payload[0], received.payload[1]]),
            code,
            "close reason: {}",
            String::from_utf8_lossy(&received.payload[2..])
        );
        let mut rest = Vec::new();
        let _ = self.stream.read_to_end(&mut rest);
    }
}

fn extensions_of(response: &str) -> Option<&str> {
    response.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("Sec-WebSocket-Extensions")
            .then(|| value.trim())
    })
}

/// The answer to a handshake on `path` with `offer` lines.
fn answer(addr: SocketAddr, path: &str, offers: &[&str]) -> Option<String> {
    let extra: String = offers
        .iter()
        .map(|offer| format!("Sec-WebSocket-Extensions: {offer}\r\n"))
        .collect();
    let client = DeflateClient::connect(addr, path, &extra);
    client.extensions().map(str::to_string)
}

fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn negotiation_answers_browsers_and_declines_what_it_cannot_take() {
    let server = common::start();
    let addr = server.addr();
    for path in ["/", "/echo"] {
        assert_eq!(
            answer(addr, path, &[BROWSER_OFFER]).as_deref(),
            Some(ANSWER)
        );
        assert_eq!(
            answer(addr, path, &["permessage-deflate"]).as_deref(),
            Some(ANSWER)
        );
        // Malformed or unknown: declined, and the handshake still succeeds.
        for declined in [
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; mystery",
            "permessage-deflate x",
            "x-webkit-deflate-frame",
            "",
        ] {
            assert_eq!(answer(addr, path, &[declined]), None, "{path} {declined}");
        }
        // A bad first offer falls back to the next, even on another line.
        assert_eq!(
            answer(
                addr,
                path,
                &["permessage-deflate; mystery", "permessage-deflate"]
            )
            .as_deref(),
            Some(ANSWER)
        );
        // No offer, no extension.
        assert_eq!(answer(addr, path, &[]), None);
    }
    // The chat compresses each broadcast once with the full window, so an
    // offer that limits the server's window is declined there, and the
    // fallback taken; /echo compresses for one client and honours it.
    let limited = "permessage-deflate; server_max_window_bits=10";
    assert_eq!(answer(addr, "/", &[limited]), None);
    assert_eq!(
        answer(addr, "/", &[&format!("{limited}, permessage-deflate")]).as_deref(),
        Some(ANSWER)
    );
    assert_eq!(
        answer(addr, "/echo", &[limited]),
        Some(format!("{ANSWER}; server_max_window_bits=10"))
    );
}

#[test]
fn deflate_off_declines_every_offer_and_rsv1_stays_a_protocol_error() {
    let server = common::start_with(|c| c.deflate = false);
    let addr = server.addr();
    for path in ["/", "/echo"] {
        assert_eq!(answer(addr, path, &[BROWSER_OFFER]), None);
        assert_eq!(answer(addr, path, &["permessage-deflate"]), None);
    }
    // Without the extension, a compressed frame is a reserved bit: 1002.
    let mut client = DeflateClient::connect(
        addr,
        "/echo",
        &format!("Sec-WebSocket-Extensions: {BROWSER_OFFER}\r\n"),
    );
    client.send(OpCode::Text, b"hello", true);
    client.expect_close(1002);
    assert_eq!(server.metrics().deflate_messages.load(Relaxed), 0);
}

/// A message of `len` bytes: text (compressible, or not) or binary.
fn message(rng: &mut Rng, len: usize) -> (OpCode, Vec<u8>) {
    match len % 3 {
        0 => (OpCode::Text, common::pattern_text(len).into_bytes()),
        1 => (OpCode::Text, rng.text(len).into_bytes()),
        _ => (OpCode::Binary, rng.bytes(len)),
    }
}

#[test]
fn raw_chat_messages_of_every_size_up_to_the_limit_reach_compressing_and_plain_clients_alike() {
    const LIMIT: usize = 2048;
    let server = common::start_with(|c| c.max_message_bytes = LIMIT);
    let addr = server.addr();
    let mut sender = DeflateClient::chat(addr, false);
    let mut compressing = DeflateClient::chat(addr, false);
    let mut plain = DeflateClient::connect(addr, "/", "");
    assert_eq!(plain.extensions(), None);
    let mut rng = Rng::new(7692);
    for len in 0..=LIMIT {
        let (opcode, payload) = message(&mut rng, len);
        // Both ways: the server inflates a compressed message and takes a
        // plain one (RFC 7692 §6: compression is per message).
        sender.send(opcode, &payload, len % 5 != 0);
        let got = compressing.recv();
        assert_eq!((got.opcode, got.compressed), (opcode, true), "len {len}");
        assert!(got.payload == payload, "len {len}: compressed copy differs");
        let got = plain.recv();
        assert_eq!((got.opcode, got.compressed), (opcode, false), "len {len}");
        assert!(got.payload == payload, "len {len}: plain copy differs");
    }
    // The limit counts inflated bytes: one byte over, however small
    // compressed, is 1009.
    let over = vec![b'a'; LIMIT + 1];
    assert!(compress_message(&over).len() < 100);
    sender.send(OpCode::Text, &over, true);
    sender.expect_close(1009);
}

#[test]
fn the_largest_default_message_both_ways() {
    let server = common::start();
    let addr = server.addr();
    let limit = wschat::config::DEFAULT_MAX_MESSAGE_BYTES;
    let mut sender = DeflateClient::chat(addr, false);
    let mut receiver = DeflateClient::chat(addr, false);
    let mut rng = Rng::new(1);
    for len in [limit - 1, limit] {
        for payload in [rng.bytes(len), common::pattern_bytes(len)] {
            sender.send(OpCode::Binary, &payload, true);
            let got = receiver.recv();
            assert!(got.compressed && got.payload == payload, "len {len}");
        }
    }
    // Echo of the same sizes, compressed both ways.
    let mut echo = DeflateClient::connect(
        addr,
        "/echo",
        &format!("Sec-WebSocket-Extensions: {BROWSER_OFFER}\r\n"),
    );
    for len in [0, 1, 125, 126, 65535, 65536, 1 << 20] {
        let (opcode, payload) = message(&mut rng, len);
        echo.send(opcode, &payload, true);
        let got = echo.recv();
        assert_eq!((got.opcode, got.compressed), (opcode, true), "len {len}");
        assert!(got.payload == payload, "echo len {len}");
    }
}

#[test]
fn v1_clients_compressing_or_not_see_the_same_events_in_the_same_order() {
    let server = common::start();
    let addr = server.addr();
    let mut compressing = DeflateClient::chat(addr, true);
    let (welcome, _) = compressing.recv_until("\"type\":\"welcome\"");
    assert!(welcome.contains("\"you\""));
    let mut plain = DeflateClient::connect(addr, "/", "Sec-WebSocket-Protocol: wschat.v1\r\n");
    assert_eq!(plain.extensions(), None);
    plain.recv_until("\"type\":\"welcome\"");
    // The plain client's join reaches the compressing one, compressed.
    let (join, compressed) = compressing.recv_until("\"type\":\"join\"");
    assert!(compressed, "{join}");
    let mut rng = Rng::new(15);
    for i in 0..200 {
        let len = rng.range(1, 600);
        // v1 refuses control characters (bad_text): leave them out.
        let text = format!("line {i} {}", rng.text(len)).replace(char::is_control, "?");
        let from_compressing = i % 2 == 0;
        if from_compressing {
            compressing.send(OpCode::Text, text.as_bytes(), i % 4 == 0);
        } else {
            plain.send(OpCode::Text, text.as_bytes(), false);
        }
        let (a, a_compressed) = compressing.recv_until("\"type\":\"message\"");
        let (b, b_compressed) = plain.recv_until("\"type\":\"message\"");
        assert!(a_compressed && !b_compressed);
        assert_eq!(a, b, "the same event, byte for byte");
        assert!(a.contains(&format!("\"text\":\"line {i} ")), "{a}");
    }
    // A raw compressing client in the same room gets the lines as text.
    let mut raw = DeflateClient::chat(addr, false);
    plain.send(OpCode::Text, b"to everyone", false);
    let got = raw.recv();
    assert!(got.compressed);
    assert!(got.payload.ends_with(b": to everyone"), "{got:?}");
}

#[test]
fn one_compression_per_broadcast_whatever_the_number_of_recipients() {
    let server = common::start();
    let addr = server.addr();
    let metrics = server.metrics();
    let mut sender = DeflateClient::connect(addr, "/", "");
    let mut receivers: Vec<DeflateClient> = Vec::new();
    for recipients in [1usize, 8] {
        while receivers.len() < recipients {
            receivers.push(DeflateClient::chat(addr, false));
        }
        assert!(eventually(
            || metrics.deflate_clients[0].load(Relaxed) == recipients as u64
        ));
        // Once a broadcast sent after the joins has arrived, the
        // broadcaster is done with them (a join is a v1 broadcast).
        sender.send(OpCode::Binary, b"warm-up", false);
        for receiver in &mut receivers {
            assert_eq!(receiver.recv().payload, b"warm-up");
        }
        let before = (
            metrics.deflate_messages.load(Relaxed),
            metrics.deflate_bytes_in.load(Relaxed),
            metrics.deflate_bytes_out.load(Relaxed),
        );
        const BROADCASTS: u64 = 20;
        let payload = br#"{"text":"the same line, again and again and again"}"#;
        for _ in 0..BROADCASTS {
            // Binary from a raw client: exactly one broadcast each.
            sender.send(OpCode::Binary, payload, false);
        }
        for receiver in &mut receivers {
            for _ in 0..BROADCASTS {
                let got = receiver.recv();
                assert!(got.compressed && got.payload == payload);
            }
        }
        let compressed_len = compress_message(payload).len() as u64;
        assert_eq!(
            (
                metrics.deflate_messages.load(Relaxed) - before.0,
                metrics.deflate_bytes_in.load(Relaxed) - before.1,
                metrics.deflate_bytes_out.load(Relaxed) - before.2,
            ),
            (
                BROADCASTS,
                BROADCASTS * payload.len() as u64,
                BROADCASTS * compressed_len
            ),
            "{recipients} recipients"
        );
    }
    // The gauge follows the clients out, and with none left broadcasts
    // are no longer compressed.
    drop(receivers);
    assert!(eventually(|| metrics.deflate_clients[0].load(Relaxed) == 0));
    let before = metrics.deflate_messages.load(Relaxed);
    let mut plain = DeflateClient::connect(addr, "/", "");
    sender.send(OpCode::Binary, b"x", false);
    assert_eq!(plain.recv().payload, b"x");
    assert_eq!(metrics.deflate_messages.load(Relaxed), before);
    let text = common::http_exchange(
        addr,
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    );
    for family in [
        "wschat_deflate_clients{protocol=\"raw\"} ",
        "wschat_deflate_clients{protocol=\"wschat.v1\"} ",
        "wschat_deflate_messages_total ",
        "wschat_deflate_bytes_in_total ",
        "wschat_deflate_bytes_out_total ",
    ] {
        assert!(text.contains(family), "{family} missing");
    }
}

/// A compressed payload that inflates to `copies` zero bytes: matches of
/// 258 bytes each, about a thousand times smaller than what it describes.
fn bomb(copies: usize) -> Vec<u8> {
    compress_message(&vec![0u8; copies])
}

#[test]
fn bombs_corrupt_streams_and_misplaced_rsv1_get_the_right_close_codes() {
    let server = common::start_with(|c| {
        c.max_message_bytes = 64 * 1024;
        c.echo_max_message_bytes = 64 * 1024;
    });
    let addr = server.addr();
    let offer = format!("Sec-WebSocket-Extensions: {BROWSER_OFFER}\r\n");
    for path in ["/", "/echo"] {
        let connect = || DeflateClient::connect(addr, path, &offer);

        // A bomb: 16 MiB described in a few KiB, refused at 64 KiB.
        let mut client = connect();
        let payload = bomb(16 << 20);
        assert!(payload.len() < 20_000, "{}", payload.len());
        client.send_raw(&frame(true, RSV1, 0x2, &payload, true));
        client.expect_close(1009);

        // The same bomb cut into fragments: one stream (RFC 7692 §6.2).
        let mut client = connect();
        let (first, rest) = payload.split_at(payload.len() / 2);
        client.send_raw(&frame(false, RSV1, 0x2, first, true));
        client.send_raw(&frame(true, 0, 0x0, rest, true));
        client.expect_close(1009);

        // Corrupt streams: reserved block type 3; a stored block whose
        // NLEN is wrong; a distance before the start of the message.
        for corrupt in [
            &[0x07, 0x00][..],
            &[0x00, 0x05, 0x00, 0x00, 0x00, b'a'][..],
            &[0x03, 0x03, 0x00][..],
        ] {
            let mut client = connect();
            client.send_raw(&frame(true, RSV1, 0x1, corrupt, true));
            client.expect_close(1007);
        }

        // Compressed text that inflates to invalid UTF-8: 1007.
        let mut client = connect();
        client.send(OpCode::Text, &[0xff, 0xfe], true);
        client.expect_close(1007);

        // RSV1 on a control frame, or on a continuation: 1002.
        let mut client = connect();
        client.send_raw(&frame(true, RSV1, 0x9, b"", true));
        client.expect_close(1002);
        let mut client = connect();
        client.send_raw(&frame(true, RSV1, 0x8, &close_payload(1000, b""), true));
        client.expect_close(1002);
        let mut client = connect();
        client.send_raw(&frame(false, 0, 0x1, b"hel", true));
        client.send_raw(&frame(true, RSV1, 0x0, b"lo", true));
        client.expect_close(1002);
        // RSV2 and RSV3 stay reserved.
        let mut client = connect();
        client.send_raw(&frame(true, 0b010, 0x1, b"x", true));
        client.expect_close(1002);
    }
    // Every one of them was counted, and the server still serves.
    let metrics = server.metrics();
    let counted: Vec<u64> = metrics
        .protocol_errors
        .iter()
        .map(|c| c.load(Relaxed))
        .collect();
    assert_eq!(wschat::metrics::PROTOCOL_ERROR_CODES, [1002, 1007, 1009]);
    assert_eq!(counted, [8, 8, 4]);
    let mut echo = DeflateClient::connect(addr, "/echo", &offer);
    echo.send(OpCode::Text, b"still here", true);
    assert_eq!(echo.recv().payload, b"still here");
}

#[test]
fn the_server_never_compresses_control_frames() {
    let server = common::start();
    let addr = server.addr();
    let mut client = DeflateClient::chat(addr, false);
    client.send_raw(&frame(true, 0, 0x9, b"ping", true));
    let pong = client.recv();
    assert_eq!(
        pong,
        Received {
            opcode: OpCode::Pong,
            compressed: false,
            payload: b"ping".to_vec()
        }
    );
    client.send_raw(&frame(true, 0, 0x8, &close_payload(1000, b"bye"), true));
    client.expect_close(1000);
}

/// Bytes on the wire for a typical chat session: a newcomer's welcome with
/// 100 lines of history, then 100 lines as they are said, for a listener
/// without and with compression. Prints the figures for docs/13
/// (`cargo test --test compression wire -- --nocapture`).
#[test]
fn wire_bytes_of_a_typical_session() {
    const WORDS: [&str; 10] = [
        "sure",
        "see you at the standup",
        "the build is green again",
        "did anyone look at the flaky test?",
        "lunch?",
        "I pushed a fix for the reconnect bug",
        "thanks!",
        "ok",
        "merging now",
        "what time is the demo tomorrow?",
    ];
    let server = common::start();
    let addr = server.addr();
    let v1 = "Sec-WebSocket-Protocol: wschat.v1\r\n";
    let mut talker = DeflateClient::connect(addr, "/", v1);
    talker.recv_until("\"type\":\"welcome\"");
    talker.send(OpCode::Text, b"/nick ann", false);
    talker.recv_until("\"type\":\"nick\"");
    let say = |talker: &mut DeflateClient, i: usize| {
        let line = format!("{} ({i})", WORDS[i % WORDS.len()]);
        talker.send(OpCode::Text, line.as_bytes(), false);
        talker.recv_until("\"type\":\"message\"");
    };
    for i in 0..100 {
        say(&mut talker, i);
    }
    let mut listeners = Vec::new();
    for offer in ["", "Sec-WebSocket-Extensions: permessage-deflate\r\n"] {
        let mut listener = DeflateClient::connect(addr, "/", &format!("{v1}{offer}"));
        let (welcome, _) = listener.recv_until("\"type\":\"welcome\"");
        assert_eq!(welcome.matches("\"type\":\"message\"").count(), 100);
        listeners.push((listener, 0, welcome));
    }
    for i in 100..200 {
        say(&mut talker, i);
    }
    let mut lines = [0usize; 2];
    for (k, (listener, start, _)) in listeners.iter_mut().enumerate() {
        *start = listener.wire;
        let mut seen = 0;
        while seen < 100 {
            if listener.recv_event().0.contains("\"type\":\"message\"") {
                seen += 1;
            }
        }
        lines[k] = listener.wire - *start;
    }
    let welcome = &listeners[0].2;
    let welcome_plain = welcome.len();
    let welcome_compressed = compress_message(welcome.as_bytes()).len();
    eprintln!(
        "welcome with 100 lines: {welcome_plain} bytes, {welcome_compressed} compressed \
         ({:.0}%); 100 lines said: {} bytes on the wire plain, {} compressed ({:.0}%)",
        100.0 * welcome_compressed as f64 / welcome_plain as f64,
        lines[0],
        lines[1],
        100.0 * lines[1] as f64 / lines[0] as f64,
    );
    assert!(lines[1] < lines[0], "compression saves bytes: {lines:?}");
    assert!(welcome_compressed * 4 < welcome_plain);
}
