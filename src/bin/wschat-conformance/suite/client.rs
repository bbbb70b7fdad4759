//! The tool's own WebSocket client: it writes whatever bytes a case gives
//! it and reads the server's frames with a parser of its own (not the
//! server's codec), so that a bug in wschat's codec cannot hide on both
//! sides of a test. It also checks what the server sends: a masked frame,
//! a reserved bit nobody negotiated or an unknown opcode from the server
//! is reported as such.

use super::verdict::{Check, Finding};
use super::{Target, transcript};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The mask every client frame uses (any key works; a fixed one makes
/// failures reproducible).
pub const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// A message or control frame as the server sent it. Text stays bytes, so
/// that invalid UTF-8 from a server can be shown rather than lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// The status code (if the payload had one) and the payload after it.
    Close(Option<u16>, Vec<u8>),
}

/// Why a read ended without a message.
#[derive(Debug)]
pub enum ReadEnd {
    /// Nothing arrived within the wait.
    Timeout,
    /// The server closed TCP (EOF or reset).
    Closed,
    /// The server sent something no server may send.
    Violation(String),
}

impl ReadEnd {
    pub fn describe(&self, wait: Duration) -> String {
        match self {
            ReadEnd::Timeout => format!("nothing within {}s", wait.as_secs_f64()),
            ReadEnd::Closed => "TCP closed".into(),
            ReadEnd::Violation(v) => v.clone(),
        }
    }
}

/// A WebSocket connection to the target, after a 101.
pub struct Client {
    pub stream: TcpStream,
    /// The response head, as received.
    pub response: String,
    /// Bytes read and not yet parsed.
    buf: Vec<u8>,
    /// Fragments of a message the server has not finished.
    partial: Option<(u8, bool, Vec<u8>)>,
    /// permessage-deflate was agreed: RSV1 marks a compressed message.
    pub deflate: bool,
    /// How long one wait for the server may take.
    pub wait: Duration,
    _permit: super::Permit,
}

/// A TCP connection to the target, counted against the connection limit.
pub fn tcp_connect(target: &Target) -> Result<(TcpStream, super::Permit), String> {
    let permit = target.permit();
    let stream = TcpStream::connect_timeout(&target.addr, target.wait)
        .map_err(|e| format!("cannot connect to {}: {e}", target.addr))?;
    stream
        .set_read_timeout(Some(target.wait))
        .and_then(|_| stream.set_write_timeout(Some(target.wait.max(Duration::from_secs(10)))))
        .and_then(|_| stream.set_nodelay(true))
        .map_err(|e| format!("socket setup: {e}"))?;
    Ok((stream, permit))
}

/// Reads an HTTP response head byte by byte (so nothing after it is taken).
pub fn read_response_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

impl Client {
    /// Sends `pieces` (a handshake request, possibly followed by frames),
    /// each its own write with `pause` between, and expects a 101.
    pub fn connect_pieces(
        target: &Target,
        pieces: &[&[u8]],
        pause: Duration,
    ) -> Result<Client, Finding> {
        let (mut stream, permit) = tcp_connect(target)?;
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 && !pause.is_zero() {
                std::thread::sleep(pause);
            }
            stream
                .write_all(piece)
                .map_err(|e| format!("write failed: {e}"))?;
        }
        let request: Vec<u8> = pieces.concat();
        let head_end = request
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 4)
            .unwrap_or(request.len());
        transcript::sent_frames(&request[head_end..]);
        let response = read_response_head(&mut stream);
        if !response.starts_with("HTTP/1.1 101 ") {
            let line = response.lines().next().unwrap_or("");
            let got = if line.is_empty() {
                "no response".to_string()
            } else {
                format!("{line:?}")
            };
            return Err(Finding::fail(format!(
                "a valid opening handshake got {got}, expected 101"
            )));
        }
        Ok(Client {
            stream,
            response,
            buf: Vec::new(),
            partial: None,
            deflate: false,
            wait: target.wait,
            _permit: permit,
        })
    }

    /// Writes `bytes` in one `write_all`.
    pub fn write(&mut self, bytes: &[u8]) -> Check {
        transcript::sent_frames(bytes);
        self.stream
            .write_all(bytes)
            .map_err(|e| Finding::fail(format!("write of {} bytes failed: {e}", bytes.len())))
    }

    /// Writes `bytes` in pieces of `piece` bytes, each its own `write`.
    pub fn write_chopped(&mut self, bytes: &[u8], piece: usize) -> Check {
        self.write_paced(bytes, piece, Duration::ZERO)
    }

    /// Writes `bytes` in pieces with a pause after each.
    pub fn write_paced(&mut self, bytes: &[u8], piece: usize, pause: Duration) -> Check {
        transcript::sent_frames(bytes);
        let mut pieces = bytes.chunks(piece.max(1)).peekable();
        while let Some(chunk) = pieces.next() {
            self.stream
                .write_all(chunk)
                .map_err(|e| Finding::fail(format!("write failed: {e}")))?;
            if !pause.is_zero() && pieces.peek().is_some() {
                std::thread::sleep(pause);
            }
        }
        Ok(())
    }

    /// Reads until the buffer holds `n` bytes.
    fn fill(&mut self, n: usize, deadline: Instant) -> Result<(), ReadEnd> {
        let mut chunk = [0u8; 65536];
        while self.buf.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadEnd::Timeout);
            }
            let _ = self.stream.set_read_timeout(Some(left));
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ReadEnd::Closed),
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(ReadEnd::Timeout);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Err(ReadEnd::Closed),
            }
        }
        Ok(())
    }

    /// The next frame: (fin, rsv, opcode, payload).
    fn read_frame(&mut self, deadline: Instant) -> Result<(bool, u8, u8, Vec<u8>), ReadEnd> {
        self.fill(2, deadline)?;
        let (b0, b1) = (self.buf[0], self.buf[1]);
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 7;
        let opcode = b0 & 0x0f;
        if b1 & 0x80 != 0 {
            return Err(ReadEnd::Violation(
                "the server sent a masked frame (§5.1: a server MUST NOT mask)".into(),
            ));
        }
        let (header, len) = match b1 & 0x7f {
            126 => {
                self.fill(4, deadline)?;
                (4, u16::from_be_bytes([self.buf[2], self.buf[3]]) as u64)
            }
            127 => {
                self.fill(10, deadline)?;
                let mut l = [0u8; 8];
                l.copy_from_slice(&self.buf[2..10]);
                (10, u64::from_be_bytes(l))
            }
            n => (2, n as u64),
        };
        if len > 256 << 20 {
            return Err(ReadEnd::Violation(format!(
                "the server announced a frame of {len} bytes"
            )));
        }
        let total = header + len as usize;
        self.fill(total, deadline)?;
        let payload = self.buf[header..total].to_vec();
        self.buf.drain(..total);
        Ok((fin, rsv, opcode, payload))
    }

    /// The next message or control frame within `wait`; server pings are
    /// skipped (a server may ping on a timer).
    pub fn next_message(&mut self, wait: Duration) -> Result<Message, ReadEnd> {
        let deadline = Instant::now() + wait;
        loop {
            let (fin, rsv, opcode, payload) = self.read_frame(deadline)?;
            let compressed = rsv & 4 != 0;
            let allowed_rsv = if self.deflate && self.partial.is_none() && matches!(opcode, 1 | 2) {
                4
            } else {
                0
            };
            if rsv & !allowed_rsv != 0 {
                return Err(ReadEnd::Violation(format!(
                    "the server set reserved bits {rsv:03b} on an opcode {opcode:x} frame (§5.2)"
                )));
            }
            let message = match opcode {
                0x8..=0xA if !fin || payload.len() > 125 => {
                    return Err(ReadEnd::Violation(format!(
                        "the server sent a control frame (opcode {opcode:x}) that is fragmented or over 125 bytes (§5.5)"
                    )));
                }
                0x9 => continue,
                0xA => Message::Pong(payload),
                0x8 => match payload.len() {
                    0 => Message::Close(None, Vec::new()),
                    1 => Message::Close(Some(payload[0] as u16), vec![0xff]),
                    _ => Message::Close(
                        Some(u16::from_be_bytes([payload[0], payload[1]])),
                        payload[2..].to_vec(),
                    ),
                },
                0x1 | 0x2 => {
                    if self.partial.is_some() {
                        return Err(ReadEnd::Violation(
                            "the server started a new message inside an unfinished one (§5.4)"
                                .into(),
                        ));
                    }
                    if fin {
                        self.assemble(opcode, compressed, payload)?
                    } else {
                        self.partial = Some((opcode, compressed, payload));
                        continue;
                    }
                }
                0x0 => {
                    let Some((op, comp, mut data)) = self.partial.take() else {
                        return Err(ReadEnd::Violation(
                            "the server sent a continuation frame with no message to continue (§5.4)".into(),
                        ));
                    };
                    data.extend_from_slice(&payload);
                    if fin {
                        self.assemble(op, comp, data)?
                    } else {
                        self.partial = Some((op, comp, data));
                        continue;
                    }
                }
                other => {
                    return Err(ReadEnd::Violation(format!(
                        "the server sent reserved opcode {other:x} (§5.2)"
                    )));
                }
            };
            transcript::got(&message);
            return Ok(message);
        }
    }

    fn assemble(&self, opcode: u8, compressed: bool, data: Vec<u8>) -> Result<Message, ReadEnd> {
        let data = if compressed {
            super::deflate::inflate(&data).map_err(|e| {
                ReadEnd::Violation(format!(
                    "the server's compressed message does not inflate: {e}"
                ))
            })?
        } else {
            data
        };
        Ok(if opcode == 1 {
            Message::Text(data)
        } else {
            Message::Binary(data)
        })
    }

    /// The next message, with the client's wait; a timeout or a close is
    /// an error that says so.
    pub fn next(&mut self) -> Result<Message, String> {
        let wait = self.wait;
        self.next_message(wait).map_err(|e| e.describe(wait))
    }

    /// Expects exactly `want` next, byte for byte.
    pub fn expect(&mut self, want: &Message) -> Check {
        let got = self
            .next()
            .map_err(|e| Finding::fail(format!("expected {}, got {e}", describe(want))))?;
        same_message(&got, want).map_err(Finding::fail)
    }

    /// Expects exactly these messages next, in order.
    pub fn expect_all(&mut self, want: &[Message]) -> Check {
        for (i, w) in want.iter().enumerate() {
            self.expect(w)
                .map_err(|f| f.prefixed(&format!("message {} of {}: ", i + 1, want.len())))?;
        }
        Ok(())
    }

    /// The next message if one arrives within `wait`, `None` if none does.
    pub fn next_within(&mut self, wait: Duration) -> Result<Option<Message>, String> {
        match self.next_message(wait) {
            Ok(m) => Ok(Some(m)),
            Err(ReadEnd::Timeout) => Ok(None),
            Err(e) => Err(e.describe(wait)),
        }
    }

    /// Checks that nothing arrives for `quiet`.
    pub fn expect_silence(&mut self, quiet: Duration) -> Check {
        match self.next_within(quiet)? {
            None => Ok(()),
            Some(m) => Err(Finding::fail(format!(
                "expected nothing, got {}",
                describe(&m)
            ))),
        }
    }

    /// After the server's Close: whether it then closes TCP, sending
    /// nothing more. `Ok(true)`: closed; `Ok(false)`: still open after
    /// the wait.
    pub fn tcp_closed_after_close(&mut self) -> Result<bool, Finding> {
        if !self.buf.is_empty() {
            return Err(Finding::fail(format!(
                "the server sent {} more bytes after its Close (§5.5.1: nothing may follow a Close)",
                self.buf.len()
            )));
        }
        let _ = self.stream.set_read_timeout(Some(self.wait));
        let mut buf = [0u8; 256];
        match self.stream.read(&mut buf) {
            Ok(0) => Ok(true),
            Ok(n) => Err(Finding::fail(format!(
                "the server sent {n} more bytes after its Close (§5.5.1: nothing may follow a Close): {:02x?}",
                &buf[..n.min(12)]
            ))),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(_) => Ok(true),
        }
    }
}

/// A short description of a message: kind, length and first bytes.
pub fn describe(m: &Message) -> String {
    fn preview(bytes: &[u8]) -> String {
        let shown = &bytes[..bytes.len().min(12)];
        let more = if bytes.len() > shown.len() { ".." } else { "" };
        format!("{} bytes {:02x?}{more}", bytes.len(), shown)
    }
    match m {
        Message::Text(t) => match std::str::from_utf8(t) {
            Ok(s) if s.len() <= 40 => format!("Text({s:?})"),
            Ok(_) => format!("Text({})", preview(t)),
            Err(_) => format!("Text(invalid UTF-8, {})", preview(t)),
        },
        Message::Binary(b) => format!("Binary({})", preview(b)),
        Message::Ping(b) => format!("Ping({})", preview(b)),
        Message::Pong(b) => format!("Pong({})", preview(b)),
        Message::Close(None, _) => "Close(empty)".into(),
        Message::Close(Some(code), reason) => {
            if reason.is_empty() {
                format!("Close({code})")
            } else {
                format!(
                    "Close({code} {:?})",
                    String::from_utf8_lossy(&reason[..reason.len().min(40)])
                )
            }
        }
    }
}

pub fn describe_all(ms: &[Message]) -> String {
    if ms.is_empty() {
        return "nothing".into();
    }
    let list: Vec<String> = ms.iter().take(4).map(describe).collect();
    let more = if ms.len() > 4 {
        format!(" and {} more", ms.len() - 4)
    } else {
        String::new()
    };
    format!("[{}]{more}", list.join(", "))
}

/// Compares two messages byte for byte; the error names the first
/// difference.
pub fn same_message(got: &Message, want: &Message) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    let bytes = |m: &Message| -> Option<(&'static str, Vec<u8>)> {
        match m {
            Message::Text(t) => Some(("Text", t.clone())),
            Message::Binary(b) => Some(("Binary", b.clone())),
            Message::Ping(b) => Some(("Ping", b.clone())),
            Message::Pong(b) => Some(("Pong", b.clone())),
            Message::Close(..) => None,
        }
    };
    if let (Some((gk, g)), Some((wk, w))) = (bytes(got), bytes(want))
        && gk == wk
    {
        let at = g.iter().zip(&w).position(|(a, b)| a != b);
        return Err(match at {
            Some(i) => format!(
                "{gk} of {} bytes differs from the {} bytes sent at byte {i}",
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
