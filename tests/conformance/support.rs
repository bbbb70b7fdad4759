//! What the sections share: the one echo server, frame builders, and the
//! steps most cases are made of.

use crate::common::{self, Client, Outcome};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::thread::JoinHandle;
use wschat::protocol::frame::{OpCode, encode_frame_into};
use wschat::protocol::message::Message;
use wschat::{Config, ServerHandle};

pub use common::{MASK, close_payload, pattern_bytes, pattern_text};
// Pure byte builders the tool's cases use too (one copy of each).
pub use crate::suite::steps::{cat, header_only};

/// The one server most cases share (its `/echo` and `/`), started on first
/// use and never stopped.
pub fn shared_addr() -> SocketAddr {
    static SHARED: OnceLock<SocketAddr> = OnceLock::new();
    *SHARED.get_or_init(|| {
        let handle = common::start();
        let addr = handle.addr();
        std::mem::forget(handle); // runs until the process exits
        addr
    })
}

/// A server of its own, for cases that need other settings or a quiet
/// chat room. Dropping the handle stops it.
pub fn own_server(adjust: impl FnOnce(&mut Config)) -> ServerHandle {
    common::start_with(adjust)
}

/// A client on the shared `/echo`.
pub fn echo() -> Result<Client, String> {
    Client::try_echo(shared_addr())
}

pub fn text(s: &str) -> Message {
    Message::Text(s.to_string())
}

pub fn binary(b: &[u8]) -> Message {
    Message::Binary(b.to_vec())
}

/// A masked frame with any header bits (reserved bits and opcodes
/// included). Payloads of any size; masking uses the library's fast path.
pub fn raw_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    match OpCode::from_u8(opcode) {
        Ok(op) if rsv == 0 => {
            let mut out = Vec::with_capacity(payload.len() + 14);
            encode_frame_into(&mut out, fin, op, payload, Some(MASK));
            out
        }
        _ => common::frame(fin, rsv, opcode, payload, true),
    }
}

/// A well-formed masked frame.
pub fn frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    raw_frame(fin, 0, opcode.as_u8(), payload)
}

pub fn text_frame(s: &str) -> Vec<u8> {
    frame(true, OpCode::Text, s.as_bytes())
}

pub fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    frame(true, OpCode::Close, &close_payload(code, reason))
}

/// Ends a case the clean way: a Close 1000 from us, answered with 1000
/// and nothing before it (so nothing unexpected was pending).
pub fn finish(mut client: Client) -> Outcome {
    client.write(&close_frame(1000, b""))?;
    client.expect_close_after(&[], 1000)
}

/// Writes on a second thread, so that a large send and the reading of its
/// echoes can overlap (the server echoes while we still write; if neither
/// side read, both could block on full socket buffers).
pub fn write_in_background(client: &Client, bytes: Vec<u8>) -> Result<JoinHandle<Outcome>, String> {
    let mut stream = client
        .stream
        .try_clone()
        .map_err(|e| format!("clone: {e}"))?;
    Ok(std::thread::spawn(move || {
        use std::io::Write;
        stream
            .write_all(&bytes)
            .map_err(|e| format!("background write failed: {e}"))
    }))
}

pub fn join_writer(writer: JoinHandle<Outcome>) -> Outcome {
    writer
        .join()
        .map_err(|_| "the writer thread panicked".to_string())?
}

/// On a fresh `/echo` connection: sends `bytes` (in one write, on a second
/// thread), expects exactly `want` back, then closes cleanly.
pub fn echo_case(bytes: Vec<u8>, want: &[Message]) -> Outcome {
    let mut client = echo()?;
    let writer = write_in_background(&client, bytes)?;
    client.expect_all(want)?;
    join_writer(writer)?;
    finish(client)
}

pub fn ensure(condition: bool, what: impl FnOnce() -> String) -> Outcome {
    if condition { Ok(()) } else { Err(what()) }
}
