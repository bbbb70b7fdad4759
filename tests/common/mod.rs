//! Shared helpers for the integration tests: start a real server on an
//! ephemeral loopback port, and a test client that can send anything —
//! well-formed frames, or any sequence of bytes in any chunking.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
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

    /// Sends a handshake request of your own and expects a 101.
    pub fn connect_with(addr: SocketAddr, request: &[u8]) -> Client {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.write_all(request).unwrap();
        let response = read_response_head(&mut stream);
        assert!(
            response.starts_with("HTTP/1.1 101"),
            "expected 101, got {response:?}"
        );
        let reader = MessageReader::new(stream.try_clone().unwrap(), Role::Client, 64 << 20);
        Client {
            stream,
            reader,
            response,
        }
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
        let mut before = Vec::new();
        loop {
            match self.reader.read_message() {
                Ok(Message::Close(frame)) => {
                    let got = frame.map(|f: CloseFrame| u16::from(f.code));
                    assert_eq!(got, Some(code), "close code (after {before:?})");
                    break;
                }
                Ok(Message::Ping(_)) => {}
                Ok(m) => before.push(m),
                Err(e) => panic!("expected close {code}, got {e} (after {before:?})"),
            }
        }
        self.expect_tcp_closed();
        before
    }

    /// Asserts the server closes the TCP connection (EOF or reset) without
    /// sending anything more, within the timeout.
    pub fn expect_tcp_closed(&mut self) {
        let mut buf = [0u8; 256];
        match self.stream.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("unexpected {n} bytes after close: {:x?}", &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("server did not close TCP within {TIMEOUT:?}")
            }
            Err(_) => {} // reset: closed as well
        }
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
