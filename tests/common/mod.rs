//! Shared helpers for the integration tests: start a real server on an
//! ephemeral loopback port, and a test client that can send anything —
//! well-formed frames, or any sequence of bytes in any chunking.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use wschat::protocol::close::CloseFrame;
use wschat::protocol::frame::{OpCode, encode_frame_into};
use wschat::protocol::message::{Message, MessageReader, ReadError, Role};
use wschat::{Config, Server, ServerHandle};

/// How long any single wait in a test may take before it fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The mask every test client frame uses (any key works; a fixed one makes
/// failures reproducible).
pub const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// Starts a server on 127.0.0.1:0 with the defaults changed by `adjust`.
/// Dropping the handle stops it.
pub fn start_with(adjust: impl FnOnce(&mut Config)) -> ServerHandle {
    let mut config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        rate_limit: 0,
        ..Config::default()
    };
    adjust(&mut config);
    Server::bind(config).expect("bind").spawn().expect("spawn")
}

pub fn start() -> ServerHandle {
    start_with(|_| {})
}

/// A TCP connection to `addr` from the source address `from`: on Linux
/// all of 127.0.0.0/8 is routed to the loopback interface, so one test can
/// be many client addresses (127.0.0.2, 127.0.0.3, ...).
pub fn connect_from(from: IpAddr, addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::new(from, 0).into())
        .unwrap_or_else(|e| panic!("cannot bind {from}: {e}"));
    socket
        .connect(&addr.into())
        .unwrap_or_else(|e| panic!("cannot connect from {from} to {addr}: {e}"));
    socket.into()
}

/// A valid opening handshake for `path` with optional extra header lines.
pub fn handshake_request(addr: SocketAddr, path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Sends `request` as is and returns the whole response (until the server
/// closes), as text.
pub fn http_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

/// Sends `request` and returns the response head only (a 101 leaves the
/// connection open, so reading to the end would wait).
pub fn response_head(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(request).unwrap();
    read_response_head(&mut stream)
}

/// The status code of an HTTP response.
pub fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

/// Reads an HTTP response head byte by byte (so nothing after it is taken).
pub fn read_response_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Builds one client frame with full control over every header field.
pub fn frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = Vec::new();
    out.push((if fin { 0x80 } else { 0 }) | (rsv & 7) << 4 | (opcode & 0x0f));
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&MASK);
        let start = out.len();
        out.extend_from_slice(payload);
        for (i, b) in out[start..].iter_mut().enumerate() {
            *b ^= MASK[i % 4];
        }
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A well-formed masked frame.
pub fn masked(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame_into(&mut out, fin, opcode, payload, Some(MASK));
    out
}

/// A close frame payload: code then reason.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// A WebSocket test client over a real socket.
pub struct Client {
    pub stream: TcpStream,
    reader: MessageReader<TcpStream>,
    pub response: String,
}

impl Client {
    /// Connects to `path` offering `protocols` and checks for a 101.
    pub fn connect(addr: SocketAddr, path: &str, protocols: &[&str]) -> Client {
        let extra = if protocols.is_empty() {
            String::new()
        } else {
            format!("Sec-WebSocket-Protocol: {}\r\n", protocols.join(", "))
        };
        Self::connect_with(addr, handshake_request(addr, path, &extra).as_bytes())
    }

    /// Performs the handshake `request` over a stream already connected
    /// (one with socket options of its own) and expects a 101.
    pub fn over(mut stream: TcpStream, request: &[u8]) -> Client {
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.write_all(request).unwrap();
        let response = read_response_head(&mut stream);
        assert_eq!(status_of(&response), 101, "{response}");
        let reader = MessageReader::new(stream.try_clone().unwrap(), Role::Client, 1 << 26);
        Client {
            stream,
            reader,
            response,
        }
    }

    /// Sends a handshake request of your own and expects a 101.
    pub fn connect_with(addr: SocketAddr, request: &[u8]) -> Client {
        let client = Self::try_connect_with(addr, request).unwrap_or_else(|e| panic!("{e}"));
        // As before the `try_` versions existed: writes may block.
        client.stream.set_write_timeout(None).unwrap();
        client
    }

    pub fn echo(addr: SocketAddr) -> Client {
        Self::connect(addr, "/echo", &[])
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends `bytes` in pieces of `piece` bytes, each its own `write`.
    pub fn send_chopped(&mut self, bytes: &[u8], piece: usize) {
        for chunk in bytes.chunks(piece.max(1)) {
            self.stream.write_all(chunk).unwrap();
        }
    }

    pub fn send(&mut self, opcode: OpCode, payload: &[u8]) {
        let bytes = masked(true, opcode, payload);
        self.send_raw(&bytes);
    }

    pub fn text(&mut self, text: &str) {
        self.send(OpCode::Text, text.as_bytes());
    }

    /// The next message or control frame; panics on timeout or error.
    pub fn recv(&mut self) -> Message {
        match self.reader.read_message() {
            Ok(m) => m,
            Err(e) => panic!("expected a message, got {e}"),
        }
    }

    /// The next message, skipping pings (which the server sends on a timer).
    pub fn recv_data(&mut self) -> Message {
        loop {
            match self.recv() {
                Message::Ping(_) => {}
                other => return other,
            }
        }
    }

    pub fn recv_text(&mut self) -> String {
        match self.recv_data() {
            Message::Text(t) => t,
            other => panic!("expected text, got {other:?}"),
        }
    }

    /// The result of the next read, errors included.
    pub fn try_recv(&mut self) -> Result<Message, ReadError> {
        self.reader.read_message()
    }

    /// Expects a Close frame with `code` next (data before it is returned),
    /// then the server closing TCP.
    pub fn expect_close(&mut self, code: u16) -> Vec<Message> {
        self.check_close(code).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Asserts the server closes the TCP connection (EOF or reset) without
    /// sending anything more, within the timeout.
    pub fn expect_tcp_closed(&mut self) {
        self.check_tcp_closed().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Completes a clean close from the client side.
    pub fn close(mut self) {
        let bytes = masked(true, OpCode::Close, &close_payload(1000, b""));
        self.send_raw(&bytes);
        self.expect_close(1000);
    }
}

/// Reads JSON-ish v1 events until one contains `needle`; returns it.
pub fn recv_until(client: &mut Client, needle: &str) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "no event containing {needle}");
        let text = client.recv_text();
        if text.contains(needle) {
            return text;
        }
    }
}

// ---------------------------------------------------------------------------
// The same client without panics: every step returns `Result<_, String>`,
// for harnesses (tests/conformance) that report failures as values. The
// panicking helpers above are thin wrappers around these.
// ---------------------------------------------------------------------------

/// What a check returns: `Err` carries a one-line reason.
pub type Outcome = Result<(), String>;

impl Client {
    /// Sends `request` (a handshake, possibly followed by frames) and
    /// expects a 101 response.
    pub fn try_connect_with(addr: SocketAddr, request: &[u8]) -> Result<Client, String> {
        Self::try_connect_chopped(addr, request, usize::MAX, Duration::ZERO)
    }

    /// Like [`Client::try_connect_with`], writing the request in pieces of
    /// `piece` bytes with `pause` between them.
    pub fn try_connect_chopped(
        addr: SocketAddr,
        request: &[u8],
        piece: usize,
        pause: Duration,
    ) -> Result<Client, String> {
        let pieces: Vec<&[u8]> = request.chunks(piece.max(1)).collect();
        Self::try_connect_pieces(addr, &pieces, pause)
    }

    /// Like [`Client::try_connect_with`], writing the request as these
    /// pieces, each its own `write`, with `pause` between them.
    pub fn try_connect_pieces(
        addr: SocketAddr,
        pieces: &[&[u8]],
        pause: Duration,
    ) -> Result<Client, String> {
        let mut stream = tcp_connect(addr)?;
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 && !pause.is_zero() {
                std::thread::sleep(pause);
            }
            stream
                .write_all(piece)
                .map_err(|e| format!("write failed: {e}"))?;
        }
        let response = read_response_head(&mut stream);
        if !response.starts_with("HTTP/1.1 101 ") {
            return Err(format!("expected 101, got {:?}", first_line(&response)));
        }
        let reader = MessageReader::new(
            stream.try_clone().map_err(|e| format!("clone: {e}"))?,
            Role::Client,
            64 << 20,
        );
        Ok(Client {
            stream,
            reader,
            response,
        })
    }

    /// Connects to `path` offering `protocols`.
    pub fn try_connect(addr: SocketAddr, path: &str, protocols: &[&str]) -> Result<Client, String> {
        let extra = if protocols.is_empty() {
            String::new()
        } else {
            format!("Sec-WebSocket-Protocol: {}\r\n", protocols.join(", "))
        };
        Self::try_connect_with(addr, handshake_request(addr, path, &extra).as_bytes())
    }

    pub fn try_echo(addr: SocketAddr) -> Result<Client, String> {
        Self::try_connect(addr, "/echo", &[])
    }

    /// Writes `bytes` in one `write_all`.
    pub fn write(&mut self, bytes: &[u8]) -> Outcome {
        self.stream
            .write_all(bytes)
            .map_err(|e| format!("write of {} bytes failed: {e}", bytes.len()))
    }

    /// Writes `bytes` in pieces of `piece` bytes, each its own `write`.
    pub fn write_chopped(&mut self, bytes: &[u8], piece: usize) -> Outcome {
        write_paced(&mut self.stream, bytes, piece, Duration::ZERO)
    }

    /// Writes `bytes` in pieces with a pause after each, so that the server
    /// really sees them arrive apart.
    pub fn write_paced(&mut self, bytes: &[u8], piece: usize, pause: Duration) -> Outcome {
        write_paced(&mut self.stream, bytes, piece, pause)
    }

    /// The next message or control frame, server pings (sent on a timer)
    /// skipped.
    pub fn next(&mut self) -> Result<Message, String> {
        loop {
            match self.reader.read_message() {
                Ok(Message::Ping(_)) => {}
                Ok(m) => return Ok(m),
                Err(e) => return Err(describe_read_error(&e)),
            }
        }
    }

    /// Expects exactly `want` next, byte for byte.
    pub fn expect(&mut self, want: &Message) -> Outcome {
        let got = self
            .next()
            .map_err(|e| format!("expected {}, got {e}", describe(want)))?;
        same_message(&got, want)
    }

    /// Expects exactly these messages next, in order.
    pub fn expect_all(&mut self, want: &[Message]) -> Outcome {
        for (i, w) in want.iter().enumerate() {
            self.expect(w).map_err(|e| format!("message {i}: {e}"))?;
        }
        Ok(())
    }

    /// Expects a Close frame with `code` next (data before it is returned),
    /// then the server closing TCP.
    pub fn check_close(&mut self, code: u16) -> Result<Vec<Message>, String> {
        let mut before = Vec::new();
        loop {
            match self.next() {
                Ok(Message::Close(frame)) => {
                    let got = frame.map(|f: CloseFrame| u16::from(f.code));
                    if got != Some(code) {
                        return Err(format!(
                            "close code {got:?}, expected {code} (after {})",
                            describe_all(&before)
                        ));
                    }
                    break;
                }
                Ok(m) => before.push(m),
                Err(e) => {
                    return Err(format!(
                        "expected close {code}, got {e} (after {})",
                        describe_all(&before)
                    ));
                }
            }
        }
        self.check_tcp_closed()?;
        Ok(before)
    }

    /// Expects exactly the messages `before`, then a Close with `code`,
    /// then the server closing TCP: the whole outcome of a case.
    pub fn expect_close_after(&mut self, before: &[Message], code: u16) -> Outcome {
        let got = self.check_close(code)?;
        if got.len() != before.len() {
            return Err(format!(
                "before close {code}: got {}, expected {}",
                describe_all(&got),
                describe_all(before)
            ));
        }
        for (i, (g, w)) in got.iter().zip(before).enumerate() {
            same_message(g, w).map_err(|e| format!("before close, message {i}: {e}"))?;
        }
        Ok(())
    }

    /// Checks that the server closes TCP (EOF or reset) without sending
    /// anything more, within the read timeout.
    pub fn check_tcp_closed(&mut self) -> Outcome {
        let mut buf = [0u8; 256];
        match self.stream.read(&mut buf) {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!(
                "unexpected {n} bytes after close: {:02x?}",
                &buf[..n.min(16)]
            )),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err("server did not close TCP after the close handshake".into())
            }
            Err(_) => Ok(()), // reset: closed as well
        }
    }

    /// The next message if one arrives within `wait` (server pings
    /// skipped), `None` if none does; the read timeout is restored after.
    pub fn next_within(&mut self, wait: Duration) -> Result<Option<Message>, String> {
        self.stream
            .set_read_timeout(Some(wait))
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + wait;
        let result = loop {
            match self.reader.read_message() {
                Ok(Message::Ping(_)) if Instant::now() < deadline => {}
                Ok(m) => break Ok(Some(m)),
                Err(ReadError::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break Ok(None);
                }
                Err(e) => break Err(describe_read_error(&e)),
            }
        };
        self.stream
            .set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        result
    }

    /// Checks that nothing arrives for `quiet`.
    pub fn expect_silence(&mut self, quiet: Duration) -> Outcome {
        match self.next_within(quiet)? {
            None => Ok(()),
            Some(m) => Err(format!("expected nothing, got {}", describe(&m))),
        }
    }
}

fn tcp_connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|_| stream.set_write_timeout(Some(TIMEOUT)))
        .and_then(|_| stream.set_nodelay(true))
        .map_err(|e| format!("socket setup: {e}"))?;
    Ok(stream)
}

fn write_paced(stream: &mut TcpStream, bytes: &[u8], piece: usize, pause: Duration) -> Outcome {
    let mut pieces = bytes.chunks(piece.max(1)).peekable();
    while let Some(chunk) = pieces.next() {
        stream
            .write_all(chunk)
            .map_err(|e| format!("write failed: {e}"))?;
        if !pause.is_zero() && pieces.peek().is_some() {
            std::thread::sleep(pause);
        }
    }
    Ok(())
}

fn describe_read_error(e: &ReadError) -> String {
    match e {
        ReadError::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            format!("nothing within {TIMEOUT:?} (timeout)")
        }
        other => other.to_string(),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// A short description of a message: its kind, length and first bytes, so
/// that a 16 MiB mismatch makes a one-line report.
pub fn describe(m: &Message) -> String {
    fn preview(bytes: &[u8]) -> String {
        let shown = &bytes[..bytes.len().min(12)];
        let more = if bytes.len() > shown.len() { ".." } else { "" };
        format!("{} bytes {:02x?}{more}", bytes.len(), shown)
    }
    match m {
        Message::Text(t) if t.len() <= 40 => format!("Text({t:?})"),
        Message::Text(t) => format!("Text({})", preview(t.as_bytes())),
        Message::Binary(b) => format!("Binary({})", preview(b)),
        Message::Ping(b) => format!("Ping({})", preview(b)),
        Message::Pong(b) => format!("Pong({})", preview(b)),
        Message::Close(None) => "Close(empty)".into(),
        Message::Close(Some(f)) => format!("Close({} {:?})", u16::from(f.code), f.reason),
    }
}

pub fn describe_all(ms: &[Message]) -> String {
    if ms.is_empty() {
        return "nothing".into();
    }
    let list: Vec<String> = ms.iter().take(5).map(describe).collect();
    let more = if ms.len() > 5 {
        format!(" and {} more", ms.len() - 5)
    } else {
        String::new()
    };
    format!("[{}]{more}", list.join(", "))
}

/// Compares two messages byte for byte; the error names the first
/// difference.
pub fn same_message(got: &Message, want: &Message) -> Outcome {
    if got == want {
        return Ok(());
    }
    let bytes = |m: &Message| -> Option<(&'static str, Vec<u8>)> {
        match m {
            Message::Text(t) => Some(("Text", t.as_bytes().to_vec())),
            Message::Binary(b) => Some(("Binary", b.clone())),
            Message::Ping(b) => Some(("Ping", b.clone())),
            Message::Pong(b) => Some(("Pong", b.clone())),
            Message::Close(_) => None,
        }
    };
    if let (Some((gk, g)), Some((wk, w))) = (bytes(got), bytes(want))
        && gk == wk
    {
        let at = g.iter().zip(&w).position(|(a, b)| a != b);
        return Err(match at {
            Some(i) => format!(
                "{gk} of {} bytes differs from the expected {} bytes at byte {i}",
                g.len(),
                w.len()
            ),
            None => format!("{gk} of {} bytes, expected {} bytes", g.len(), w.len()),
        });
    }
    Err(format!(
        "got {}, expected {}",
        describe(got),
        describe(want)
    ))
}

/// A parsed HTTP response (head and whatever body came with it).
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The whole response as received.
    pub raw: String,
}

impl HttpResponse {
    pub fn parse(raw: &str) -> Result<HttpResponse, String> {
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no complete response head in {raw:?}"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("").to_string();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("bad header line {line:?}"))?;
            headers.push((name.to_string(), value.trim().to_string()));
        }
        Ok(HttpResponse {
            status,
            status_line,
            headers,
            body: body.to_string(),
            raw: raw.to_string(),
        })
    }

    /// Every value of header `name` (case-insensitive).
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The single value of `name`, or None if absent; an error if repeated.
    pub fn header(&self, name: &str) -> Result<Option<&str>, String> {
        match self.values(name)[..] {
            [] => Ok(None),
            [v] => Ok(Some(v)),
            _ => Err(format!("header {name} sent more than once")),
        }
    }
}

/// Sends `request` in pieces and reads the response: until the server
/// closes for an error status, only the head for a 101.
pub fn http_request(
    addr: SocketAddr,
    request: &[u8],
    piece: usize,
    pause: Duration,
) -> Result<HttpResponse, String> {
    let mut stream = tcp_connect(addr)?;
    write_paced(&mut stream, request, piece, pause)?;
    let head = read_response_head(&mut stream);
    if !head.ends_with("\r\n\r\n") {
        return Err(format!("incomplete response head {head:?}"));
    }
    let mut raw = head.clone();
    if !head.starts_with("HTTP/1.1 101 ") {
        let mut rest = Vec::new();
        match stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("server did not close the connection after an error response".into());
            }
            Err(_) => {} // a reset after the response: closed all the same
        }
        raw.push_str(&String::from_utf8_lossy(&rest));
    }
    HttpResponse::parse(&raw)
}

// The seeded generator is the conformance tool's own (one copy of it);
// tests/conformance loads the tool's suite too, hence the same file twice.
#[allow(clippy::duplicate_mod)]
#[path = "../../src/bin/wschat-conformance/suite/rng.rs"]
mod rng;
#[allow(unused_imports)] // not every test uses it
pub use rng::Rng;

/// Text of exactly `n` bytes, fast for large `n` (a repeated pattern of
/// 1- to 4-byte characters, ASCII-padded), the same every time.
pub fn pattern_text(n: usize) -> String {
    const PATTERN: &str = "héllo wörld € 𝄞 κόσμε \u{10ffff} ";
    let mut s = PATTERN.repeat(n / PATTERN.len() + 1);
    let mut cut = n;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    while s.len() < n {
        s.push('.');
    }
    s
}

/// Binary of exactly `n` bytes, every byte value, the same every time.
pub fn pattern_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}
