//! The inspected connection (`/inspect/ws`): an echo whose every byte is
//! reported. The reader takes one whole frame at a time off the socket,
//! reports it as it arrived (header, masking key, masked payload), then
//! hands exactly those bytes to the same [`MessageDecoder`] the chat uses,
//! which checks every rule and unmasks them in place.

use super::session::{Dir, MessageReport, OutFrame, Session};
use super::{MAX_FRAGMENTS, MAX_INSPECT_MESSAGE, hex, redact_head};
use crate::config::Config;
use crate::json::{self, Value, push_string};
use crate::protocol::ProtocolError;
use crate::protocol::close::{CloseCode, MAX_CLOSE_REASON};
use crate::protocol::deflate::{Agreement, Compressor};
use crate::protocol::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, OpCode, RSV1};
use crate::protocol::handshake::{Request, WEBSOCKET_GUID, response_101_with_extensions};
use crate::protocol::message::{Message, MessageDecoder, Role};
use sha1::{Digest, Sha1};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Runs an inspected connection from its 101 to its end.
pub fn run(
    stream: &TcpStream,
    request: &Request<'_>,
    head: &[u8],
    buffered: &[u8],
    session: &Session,
    config: &Config,
) {
    let deflate = session.deflate;
    let key = request.header("Sec-WebSocket-Key").unwrap_or_default();
    let extensions = deflate.map(|agreement| agreement.response_header());
    let response = response_101_with_extensions(key, None, extensions.as_deref());
    if (&*stream).write_all(&response).is_err() {
        return;
    }
    session.report(handshake_report(head, &response, key));
    log::info!(
        "Inspector ({}) opened{}",
        session.id,
        if deflate.is_some() {
            ", permessage-deflate"
        } else {
            ""
        }
    );
    let mut hello = String::from("{\"inspect\":{\"conn\":");
    hello.push_str(&format!("{},\"key\":", session.id));
    push_string(&mut hello, session.key());
    hello.push_str("}}");
    let frame = OutFrame::new(true, false, OpCode::Text, hello.as_bytes());
    if session.send(&[frame], "text", hello.as_bytes()).is_err() {
        return;
    }
    let mut reader = Reader {
        session,
        deflate,
        decoder: MessageDecoder::new(Role::Server, MAX_INSPECT_MESSAGE),
        buf: buffered.to_vec(),
        open: None,
    };
    if deflate.is_some() {
        reader.decoder.enable_deflate();
    }
    let (code, reason) = reader.run(stream, config.ping_interval);
    let mut end = format!("{{\"type\":\"closed\",\"code\":{code},\"reason\":");
    push_string(&mut end, &reason);
    end.push('}');
    session.report(end);
    log::info!("Inspector ({}) closed: {code} {reason}", session.id);
    super::drain(stream);
}

/// The handshake as it happened, and the accept key's first steps
/// (RFC 6455 §4.2.2): the key, the GUID, the SHA-1 of the two.
fn handshake_report(head: &[u8], response: &[u8], key: &str) -> String {
    let digest = Sha1::new()
        .chain_update(key.as_bytes())
        .chain_update(WEBSOCKET_GUID.as_bytes())
        .finalize();
    let mut json = String::from("{\"type\":\"handshake\",\"request\":");
    push_string(&mut json, &redact_head(&String::from_utf8_lossy(head)));
    json.push_str(",\"response\":");
    push_string(&mut json, &String::from_utf8_lossy(response));
    json.push_str(",\"key\":");
    push_string(&mut json, key);
    json.push_str(",\"guid\":");
    push_string(&mut json, WEBSOCKET_GUID);
    // The last step, base64, is left to the page: it shows its own
    // result next to the response's Sec-WebSocket-Accept.
    json.push_str(&format!(",\"sha1\":\"{}\"}}", hex(&digest)));
    json
}

/// A data message whose frames are still coming.
struct Open {
    frames: Vec<Option<u64>>,
    compressed: bool,
    /// Its payload as carried (unmasked), for the report.
    wire: Vec<u8>,
}

struct Reader<'a> {
    session: &'a Session,
    deflate: Option<Agreement>,
    decoder: MessageDecoder,
    /// Bytes read and not yet taken as a frame.
    buf: Vec<u8>,
    open: Option<Open>,
}

impl Reader<'_> {
    /// Frames in until the connection ends; the close code and reason.
    fn run(&mut self, stream: &TcpStream, ping_interval: Duration) -> (u16, String) {
        let _ = stream.set_read_timeout(Some(ping_interval));
        let mut silent = 0;
        loop {
            match self.next_frame() {
                Ok(Some(len)) => {
                    silent = 0;
                    if let Some(end) = self.take_frame(len) {
                        return end;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => return self.fail(e),
            }
            let mut chunk = [0u8; 2048];
            match (&*stream).read(&mut chunk) {
                Ok(0) => return (1006, "closed without a Close frame".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    // §5.5.2: ask once; a live client answers within an interval.
                    silent += 1;
                    if silent >= 2 {
                        return self.close(CloseCode::Away, "ping_timeout");
                    }
                    let ping = OutFrame::new(true, false, OpCode::Ping, b"");
                    let _ = self.session.send(&[ping], "ping", b"");
                }
                Err(e) => return (1006, format!("read error: {e}")),
            }
        }
    }

    /// The length of the whole frame at the front of the buffer, once it
    /// has all arrived. A header announcing more than the limit is
    /// refused before its payload is waited for.
    fn next_frame(&mut self) -> Result<Option<usize>, ProtocolError> {
        let rsv = if self.deflate.is_some() { RSV1 } else { 0 };
        let Some((header, header_len)) = FrameHeader::parse_allowing(&self.buf, rsv)? else {
            return Ok(None);
        };
        if header.payload_len > MAX_INSPECT_MESSAGE as u64 {
            return Err(ProtocolError::MessageTooBig {
                limit: MAX_INSPECT_MESSAGE,
            });
        }
        let len = header_len + header.payload_len as usize;
        Ok((self.buf.len() >= len).then_some(len))
    }

    /// Reports the frame of `len` bytes at the front of the buffer as it
    /// arrived, then decodes it. `Some` when the connection ends.
    fn take_frame(&mut self, len: usize) -> Option<(u16, String)> {
        let rsv = if self.deflate.is_some() { RSV1 } else { 0 };
        let (header, header_len) = FrameHeader::parse_allowing(&self.buf, rsv)
            .ok()
            .flatten()
            .expect("parsed by next_frame");
        let number = self.session.frame(Dir::In, &self.buf[..len], header_len);
        let mut frame: Vec<u8> = self.buf.drain(..len).collect();
        let decoded = self.decoder.decode(&mut frame);
        let payload = &frame[header_len..]; // unmasked in place by the decoder
        let message = match decoded {
            Ok((_, message)) => message,
            Err(e) => return Some(self.fail(e)),
        };
        if !header.opcode.is_control() {
            let open = self.open.get_or_insert_with(|| Open {
                frames: Vec::new(),
                compressed: header.rsv & RSV1 != 0,
                wire: Vec::new(),
            });
            open.frames.push(number);
            open.wire.extend_from_slice(payload);
        }
        let message = message?;
        let (frames, compressed, wire) = if header.opcode.is_control() {
            (vec![number], false, payload.to_vec())
        } else {
            let open = self.open.take().expect("a data message is open");
            (open.frames, open.compressed, open.wire)
        };
        self.report_message(&frames, compressed, &wire, &message);
        self.answer(message)
    }

    fn report_message(&self, frames: &[Option<u64>], compressed: bool, wire: &[u8], m: &Message) {
        let close_payload;
        let (kind, data): (&str, &[u8]) = match m {
            Message::Text(t) => ("text", t.as_bytes()),
            Message::Binary(b) => ("binary", b),
            Message::Ping(p) => ("ping", p),
            Message::Pong(p) => ("pong", p),
            Message::Close(_) => {
                close_payload = wire.to_vec();
                ("close", &close_payload)
            }
        };
        self.session.message(&MessageReport {
            dir: Dir::In,
            frames,
            kind,
            wire,
            compressed,
            data,
        });
    }

    /// Echoes data, answers a Ping, returns a Close.
    fn answer(&self, message: Message) -> Option<(u16, String)> {
        match message {
            Message::Text(text) => send_data(
                self.session,
                self.deflate,
                OpCode::Text,
                text.as_bytes(),
                true,
            ),
            Message::Binary(data) => {
                send_data(self.session, self.deflate, OpCode::Binary, &data, true)
            }
            Message::Ping(payload) => {
                let pong = OutFrame::new(true, false, OpCode::Pong, &payload);
                let _ = self.session.send(&[pong], "pong", &payload);
            }
            Message::Pong(_) => {}
            Message::Close(frame) => {
                let (code, reason) =
                    frame.map_or((1005, String::new()), |f| (f.code.into(), f.reason));
                if !self.session.close_sent() {
                    // §5.5.1: echo the code (1000 for an empty Close).
                    let reply = if code == 1005 { 1000 } else { code };
                    send_close(self.session, reply, "");
                }
                return Some((code, format!("closed by client {reason}").trim_end().into()));
            }
        }
        None
    }

    fn fail(&self, e: ProtocolError) -> (u16, String) {
        log::warn!("Inspector ({}): protocol error: {e}", self.session.id);
        self.close(e.close_code(), &e.to_string())
    }

    fn close(&self, code: CloseCode, reason: &str) -> (u16, String) {
        send_close(self.session, code.into(), reason);
        (code.into(), reason.to_string())
    }
}

/// Sends a data message: compressed when the connection negotiated
/// permessage-deflate and `compress` is set (RFC 7692 §6: RSV1 on its
/// first frame), as it is otherwise.
fn send_data(
    session: &Session,
    deflate: Option<Agreement>,
    opcode: OpCode,
    data: &[u8],
    compress: bool,
) {
    let kind = if opcode == OpCode::Text {
        "text"
    } else {
        "binary"
    };
    let frame = match deflate.filter(|_| compress) {
        Some(agreement) => {
            let mut compressed = Vec::new();
            Compressor::new().compress(data, agreement.compress_window_bits(), &mut compressed);
            OutFrame::new(true, true, opcode, &compressed)
        }
        None => OutFrame::new(true, false, opcode, data),
    };
    let _ = session.send(&[frame], kind, data);
}

pub fn send_close(session: &Session, code: u16, reason: &str) {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    let frame = OutFrame::new(true, false, OpCode::Close, &payload);
    let _ = session.send(&[frame], "close", &payload);
}

/// Carries out a request from the page (sent on its feed): frames the
/// server sends on the inspected connection so the page can watch them
/// arrive. `Err` is the one-line reason a request was refused.
pub fn request(session: &Session, command: &str) -> Result<(), String> {
    let value = json::parse(command).ok_or("a request is a JSON object")?;
    let text = value.get("text").and_then(Value::as_str).unwrap_or("");
    match value.get("send").and_then(Value::as_str) {
        Some("fragments") => {
            let count = value.get("count").and_then(Value::as_u64).unwrap_or(0) as usize;
            if !(1..=MAX_FRAGMENTS).contains(&count) {
                return Err(format!("count must be 1 to {MAX_FRAGMENTS}"));
            }
            too_long(text, MAX_INSPECT_MESSAGE)?;
            send_fragments(session, text, count)
        }
        Some("ping") => {
            too_long(text, MAX_CONTROL_PAYLOAD)?;
            let ping = OutFrame::new(true, false, OpCode::Ping, text.as_bytes());
            session
                .send(&[ping], "ping", text.as_bytes())
                .map_err(|e| e.to_string())
        }
        Some("both") => {
            too_long(text, MAX_INSPECT_MESSAGE)?;
            let deflate = session.deflate;
            if deflate.is_none() {
                return Err(
                    "permessage-deflate is off on this connection: reconnect with it on".into(),
                );
            }
            send_data(session, deflate, OpCode::Text, text.as_bytes(), true);
            send_data(session, deflate, OpCode::Text, text.as_bytes(), false);
            Ok(())
        }
        Some("close") => {
            let code = value.get("code").and_then(Value::as_u64).unwrap_or(0);
            let allowed =
                u16::try_from(code).is_ok_and(|c| CloseCode::from(c).is_allowed_on_wire());
            if !allowed {
                return Err(format!(
                    "{code} may not be sent in a Close frame (RFC 6455 §7.4)"
                ));
            }
            too_long(text, MAX_CLOSE_REASON)?;
            send_close(session, code as u16, text);
            Ok(())
        }
        _ => Err("send must be fragments, ping, both or close".into()),
    }
}

fn too_long(text: &str, max: usize) -> Result<(), String> {
    if text.len() > max {
        return Err(format!("text over {max} bytes"));
    }
    Ok(())
}

/// The text in `count` frames: Text with FIN 0, Continuations, the last
/// with FIN 1 (RFC 6455 §5.4). Split on byte counts: a fragment may end
/// inside a UTF-8 sequence; only the whole message must be valid.
fn send_fragments(session: &Session, text: &str, count: usize) -> Result<(), String> {
    let bytes = text.as_bytes();
    let frames: Vec<OutFrame> = (0..count)
        .map(|i| {
            let piece = &bytes[bytes.len() * i / count..bytes.len() * (i + 1) / count];
            let opcode = if i == 0 {
                OpCode::Text
            } else {
                OpCode::Continuation
            };
            OutFrame::new(i + 1 == count, false, opcode, piece)
        })
        .collect();
    session
        .send(&frames, "text", bytes)
        .map_err(|e| e.to_string())
}
