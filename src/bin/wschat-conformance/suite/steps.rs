//! What the cases are made of: frame builders (every byte written here,
//! not by a codec under test) and the steps most cases share, each with
//! its verdict rules.

use super::client::{Client, Message, describe, describe_all, same_message};
use super::verdict::{Check, Finding};
use super::{Target, transcript};
use std::thread::JoinHandle;
use std::time::Duration;

pub use super::client::MASK;
pub use super::rng::Rng;
pub use super::verdict::ensure;

pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// A short pause so that two writes reach the server as two reads.
pub const PAUSE: Duration = Duration::from_millis(2);

/// The target of the case running on this thread.
pub fn target() -> Target {
    super::current_target()
}

/// A frame with every header field chosen: FIN, RSV bits, opcode, and the
/// payload masked with [`MASK`] (or not).
pub fn any_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
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
            *b ^= MASK[i & 3];
        }
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A masked frame with any header bits.
pub fn raw_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    any_frame(fin, rsv, opcode, payload, true)
}

/// A well-formed masked frame.
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    any_frame(fin, 0, opcode, payload, true)
}

pub fn text_frame(s: &str) -> Vec<u8> {
    frame(true, TEXT, s.as_bytes())
}

/// A close frame payload: code then reason.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

pub fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    frame(true, CLOSE, &close_payload(code, reason))
}

/// Just the header of a masked frame that claims `len` payload bytes.
pub fn header_only(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    match len {
        0..=125 => out.push(0x80 | len as u8),
        126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out
}

/// The message split into `pieces` fragments of about equal size.
pub fn fragmented(opcode: u8, payload: &[u8], pieces: usize) -> Vec<u8> {
    let pieces = pieces.max(1);
    let size = payload.len().div_ceil(pieces).max(1);
    let mut chunks: Vec<&[u8]> = payload.chunks(size).collect();
    while chunks.len() < pieces {
        chunks.push(&[]);
    }
    fragments_of(opcode, &chunks)
}

/// The message made of exactly these fragments.
pub fn fragments_of(opcode: u8, chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let op = if i == 0 { opcode } else { CONTINUATION };
        out.extend(frame(i + 1 == chunks.len(), op, chunk));
    }
    out
}

/// `[a, b, c]` concatenated.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

pub fn text(s: &str) -> Message {
    Message::Text(s.as_bytes().to_vec())
}

pub fn binary(b: &[u8]) -> Message {
    Message::Binary(b.to_vec())
}

pub fn pong(b: &[u8]) -> Message {
    Message::Pong(b.to_vec())
}

/// Text of exactly `n` bytes (1- to 4-byte characters, ASCII-padded).
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

/// Binary of exactly `n` bytes, every byte value.
pub fn pattern_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A valid opening handshake for the target with extra header lines.
pub fn handshake_request(extra: &str) -> String {
    let t = target();
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n",
        t.path, t.host
    )
}

/// A client on the target's echo endpoint.
pub fn echo() -> Result<Client, Finding> {
    let request = handshake_request("");
    Client::connect_pieces(&target(), &[request.as_bytes()], Duration::ZERO)
}

/// Writes on a second thread, so that a large send and the reading of its
/// echoes overlap (if neither side read, both could block).
pub fn write_in_background(
    client: &Client,
    bytes: Vec<u8>,
) -> Result<JoinHandle<Result<(), String>>, Finding> {
    let mut stream = client
        .stream
        .try_clone()
        .map_err(|e| format!("clone: {e}"))?;
    transcript::sent_frames(&bytes);
    Ok(std::thread::spawn(move || {
        use std::io::Write;
        stream
            .write_all(&bytes)
            .map_err(|e| format!("background write failed: {e}"))
    }))
}

pub fn join_writer(writer: JoinHandle<Result<(), String>>) -> Check {
    writer
        .join()
        .map_err(|_| "the writer thread panicked".to_string())??;
    Ok(())
}

/// The close codes an endpoint may never put in a Close frame (§7.4.1,
/// §7.4.2): 0-999, 1004-1006, 1015, 1016-2999.
pub fn forbidden_code(code: u16) -> bool {
    code < 1000 || matches!(code, 1004..=1006 | 1015) || (1016..3000).contains(&code)
}

/// What a Close from the server says, checked against what §5.5.1 and
/// §7.4 allow a server to send: a code it may send, a UTF-8 reason.
fn check_server_close(code: Option<u16>, reason: &[u8]) -> Check {
    if let Some(code) = code {
        if reason == [0xff] && code < 256 {
            return Err(Finding::fail(
                "the server's Close has a 1-byte payload (§5.5.1: the code is 2 bytes)",
            ));
        }
        if forbidden_code(code) {
            return Err(Finding::fail(format!(
                "the server sent close code {code}, which no endpoint may send (§7.4.1, §7.4.2)"
            )));
        }
        if std::str::from_utf8(reason).is_err() {
            return Err(Finding::fail(
                "the server's close reason is not UTF-8 (§5.5.1)",
            ));
        }
    }
    Ok(())
}

/// Ends a case the clean way: a Close 1000 from us, answered with a Close
/// and nothing before it, then TCP closed by the server.
pub fn finish(mut client: Client) -> Check {
    client.write(&close_frame(1000, b""))?;
    expect_close(&mut client, &[], 1000)
}

/// The whole outcome of a case: exactly `before`, then a Close with
/// `code`, then TCP closed.
///
/// - `before` cut short, then the right Close: non-strict (the server
///   failed fast, before echoing what preceded the error: allowed, but
///   Autobahn calls it non-strict too);
/// - a Close with another code: non-strict (the code is a SHOULD), unless
///   the code is one no endpoint may send (fail), or we closed normally
///   and the server did not echo our 1000 (non-strict: "typically echos");
/// - TCP closed with no Close frame: non-strict when the server had to
///   fail the connection (§7.1.7 SHOULD send a Close), fail when it had to
///   answer our Close (§5.5.1 MUST);
/// - anything else before the Close, or no Close within the wait: fail;
/// - the Close, then TCP left open: non-strict (§7.1.1 SHOULD close first).
pub fn expect_close(client: &mut Client, before: &[Message], code: u16) -> Check {
    let answering = !matches!(code, 1002 | 1007 | 1009);
    let mut got = Vec::new();
    let mut lateness: Option<Finding> = None;
    let close = loop {
        match client.next_message(client.wait) {
            Ok(Message::Close(c, reason)) => break Some((c, reason)),
            Ok(m) => got.push(m),
            Err(super::client::ReadEnd::Closed) => {
                transcript::got_event("TCP closed");
                break None;
            }
            Err(e) => {
                let extra = got.len().saturating_sub(before.len());
                let verb = if answering {
                    "answer our Close"
                } else {
                    "fail the connection"
                };
                return Err(Finding::fail(if extra > 0 && got.starts_with(before) {
                    format!(
                        "did not {verb}: sent back {} where only Close {code} may come, then {}",
                        describe_all(&got[before.len()..]),
                        e.describe(client.wait)
                    )
                } else {
                    format!(
                        "did not {verb}: expected Close {code}, got {} (after {})",
                        e.describe(client.wait),
                        describe_all(&got)
                    )
                }));
            }
        }
    };
    // What came before the Close.
    let prefix = got.len() <= before.len() && got.iter().zip(before).all(|(g, w)| g == w);
    if !prefix {
        let i = got
            .iter()
            .zip(before)
            .position(|(g, w)| g != w)
            .unwrap_or(before.len());
        let detail = match (got.get(i), before.get(i)) {
            (Some(g), Some(w)) => same_message(g, w).err().unwrap_or_default(),
            (Some(g), None) => format!("got {} where only the Close may come", describe(g)),
            _ => String::new(),
        };
        return Err(Finding::fail(format!(
            "before the Close: {detail} (got {}, expected {})",
            describe_all(&got),
            describe_all(before)
        )));
    }
    if got.len() < before.len() {
        lateness = Some(Finding::non_strict(format!(
            "failed fast: closed before echoing {} of the {} valid message(s) sent before the error",
            before.len() - got.len(),
            before.len()
        )));
    }
    let Some((c, reason)) = close else {
        return Err(if answering {
            Finding::fail(format!(
                "TCP closed with no Close frame in answer (§5.5.1 MUST answer a Close), after {}",
                describe_all(&got)
            ))
        } else {
            Finding::non_strict(format!(
                "TCP closed with no Close frame (§7.1.7 SHOULD send Close {code}), after {}",
                describe_all(&got)
            ))
        });
    };
    check_server_close(c, &reason)?;
    // A Close we did not start is answered, as a client must (§5.5.1).
    if !answering {
        let _ = std::io::Write::write_all(&mut client.stream, &close_frame(c.unwrap_or(1000), b""));
    }
    let wrong_code = if c == Some(code) {
        None
    } else if code == 1000 && c.is_none() {
        // An empty Close in answer to our Close 1000: allowed (§5.5.1).
        None
    } else {
        let got = c.map(|c| c.to_string()).unwrap_or_else(|| "empty".into());
        Some(Finding::non_strict(if answering {
            format!(
                "answered Close {got}; §5.5.1: a Close in answer typically echoes the code ({code})"
            )
        } else {
            format!("Close {got}; the code for this error is {code} (§7.4.1)")
        }))
    };
    if !client.tcp_closed_after_close()? {
        return Err(Finding::non_strict(format!(
            "after Close {}, the server left TCP open for {}s (§7.1.1: the server SHOULD close first)",
            c.map(|c| c.to_string()).unwrap_or_default(),
            client.wait.as_secs_f64()
        )));
    }
    transcript::got_event("TCP closed");
    match lateness.or(wrong_code) {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

/// On a fresh echo connection: sends `bytes` (on a second thread), expects
/// exactly `want` back, then closes cleanly.
pub fn echo_case(bytes: Vec<u8>, want: &[Message]) -> Check {
    let mut client = echo()?;
    let writer = write_in_background(&client, bytes)?;
    client.expect_all(want)?;
    join_writer(writer)?;
    finish(client)
}

/// On a fresh echo connection: sends `bytes`, expects exactly `before`,
/// then a Close with `code`, then TCP closed (see [`expect_close`]).
/// Write errors are ignored: the server may close before reading all.
pub fn fail_case(bytes: &[u8], before: &[Message], code: u16) -> Check {
    let mut client = echo()?;
    let _ = client.write(bytes);
    expect_close(&mut client, before, code)
}

/// Like [`fail_case`], in pieces of `piece` bytes.
pub fn fail_case_chopped(bytes: &[u8], piece: usize, before: &[Message], code: u16) -> Check {
    let mut client = echo()?;
    let _ = client.write_chopped(bytes, piece);
    expect_close(&mut client, before, code)
}

/// Like [`fail_case`] with nothing expected before the Close, for errors a
/// server can see before the message (or frame) ends: one that waits for
/// the end instead, and so says nothing within the wait, is non-strict
/// (`waits`, Autobahn's rule for 6.4.x), not failed.
pub fn fail_fast_case(bytes: &[u8], code: u16, waits: &str) -> Check {
    let mut client = echo()?;
    let _ = client.write(bytes);
    match client.next_message(client.wait) {
        Err(super::client::ReadEnd::Timeout) => Err(Finding::non_strict(format!(
            "{waits}: nothing within {}s",
            client.wait.as_secs_f64()
        ))),
        Ok(m) => {
            // Not silent: judge what came like any other case.
            let mut got = vec![m];
            if !matches!(got[0], Message::Close(..)) {
                return Err(Finding::fail(format!(
                    "expected Close {code}, got {}",
                    describe_all(&got)
                )));
            }
            let Message::Close(c, reason) = got.remove(0) else {
                unreachable!()
            };
            check_server_close(c, &reason)?;
            let _ =
                std::io::Write::write_all(&mut client.stream, &close_frame(c.unwrap_or(1000), b""));
            if c != Some(code) {
                let got = c.map(|c| c.to_string()).unwrap_or_else(|| "empty".into());
                return Err(Finding::non_strict(format!(
                    "Close {got}; the code for this error is {code} (§7.4.1)"
                )));
            }
            if !client.tcp_closed_after_close()? {
                return Err(Finding::non_strict(format!(
                    "after Close {code}, the server left TCP open for {}s (§7.1.1: the server SHOULD close first)",
                    client.wait.as_secs_f64()
                )));
            }
            transcript::got_event("TCP closed");
            Ok(())
        }
        Err(super::client::ReadEnd::Closed) => {
            transcript::got_event("TCP closed");
            Err(Finding::non_strict(format!(
                "TCP closed with no Close frame (§7.1.7 SHOULD send Close {code})"
            )))
        }
        Err(e) => Err(Finding::fail(e.describe(client.wait))),
    }
}
