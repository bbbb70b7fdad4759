//! Chapter 00's echo server: a complete WebSocket server in one file, built
//! on `wschat::protocol` (the handshake, frames and messages of RFC 6455)
//! and nothing else but `std`. Every message a client sends comes back to
//! it. Run it with
//!
//! ```sh
//! cargo run --example echo              # ws://127.0.0.1:9001/
//! cargo run --example echo -- 127.0.0.1:9002
//! ```
//!
//! It is a lesson, not a server to deploy: one thread per client, no limit
//! on clients, no timeouts, no Origin or Host check. wschat itself adds
//! those (chapters 05 and 10).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use wschat::protocol::close::CloseCode;
use wschat::protocol::frame::{OpCode, encode_close, encode_frame};
use wschat::protocol::handshake::{Request, find_head_end, response_101};
use wschat::protocol::message::{Message, MessageReader, ReadError, Role};

/// The address used when none is given on the command line.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9001";
/// A request head longer than this is refused (a real server needs a
/// bound on everything a client sends before it is checked).
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// The largest message echoed; a larger one is closed with 1009 (§7.4.1).
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1);
    let listener = TcpListener::bind(addr.as_deref().unwrap_or(DEFAULT_ADDR))?;
    println!(
        "echo server on ws://{}/ (Ctrl+C stops it)",
        listener.local_addr()?
    );
    serve(listener)
}

/// Accepts connections for ever, each on a thread of its own.
pub fn serve(listener: TcpListener) -> io::Result<()> {
    for stream in listener.incoming() {
        let stream = stream?;
        thread::spawn(move || {
            if let Err(e) = handle(stream) {
                eprintln!("connection ended: {e}");
            }
        });
    }
    Ok(())
}

/// One connection: read the HTTP request, answer 101, then echo messages
/// until a Close (§7.1.2) or a broken rule (§7.1.7).
fn handle(mut stream: TcpStream) -> io::Result<()> {
    // 1. Read the request head: everything up to the blank line (§4.1).
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(end) = find_head_end(&buf, 0) {
            break end;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return refuse(&mut stream, 431, "request head too large");
        }
        match stream.read(&mut chunk)? {
            0 => return Ok(()), // gone before finishing the request
            n => buf.extend_from_slice(&chunk[..n]),
        }
    };
    // 2. Check it is a valid opening handshake (§4.2.1) and answer 101
    //    with the key's Sec-WebSocket-Accept (§4.2.2).
    let upgrade = Request::parse(&buf[..head_end]).and_then(|r| r.validate_upgrade());
    let key = match upgrade {
        Ok(upgrade) => upgrade.key,
        Err(rejection) => return refuse(&mut stream, rejection.status, rejection.reason),
    };
    stream.write_all(&response_101(key, None))?;
    // 3. From here on the bytes are frames. Bytes that came in the same
    //    read as the head are already the first frame's.
    let mut reader =
        MessageReader::with_buffered(&stream, Role::Server, MAX_MESSAGE_BYTES, &buf[head_end..]);
    let mut writer = &stream;
    loop {
        let reply = match reader.read_message() {
            Ok(Message::Text(text)) => encode_frame(OpCode::Text, text.as_bytes(), None),
            Ok(Message::Binary(data)) => encode_frame(OpCode::Binary, &data, None),
            // §5.5.2: a Ping is answered with a Pong carrying its payload.
            Ok(Message::Ping(payload)) => encode_frame(OpCode::Pong, &payload, None),
            Ok(Message::Pong(_)) => continue,
            // §5.5.1: answer a Close with a Close (the same code, or 1000
            // when it had none), then close TCP: the server closes first.
            Ok(Message::Close(frame)) => {
                let code = frame.map_or(CloseCode::Normal, |f| f.code);
                return writer.write_all(&encode_close(code, "", None));
            }
            // §7.1.7: a broken rule is answered with a Close carrying its
            // code (1002, 1007 or 1009) and a short reason.
            Err(ReadError::Protocol(e)) => {
                return writer.write_all(&encode_close(e.close_code(), &e.to_string(), None));
            }
            Err(ReadError::Eof) => return Ok(()), // TCP closed without a Close: 1006
            Err(ReadError::Io(e)) => return Err(e),
        };
        writer.write_all(&reply)?;
    }
}

/// Refuses a request with an HTTP status and a one-line reason. A client
/// that asked for another version is told which one we speak (§4.2.2).
fn refuse(stream: &mut TcpStream, status: u16, reason: &str) -> io::Result<()> {
    let version = if status == 426 {
        "Sec-WebSocket-Version: 13\r\n"
    } else {
        ""
    };
    let response = format!(
        "HTTP/1.1 {status} Refused\r\n{version}Content-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{reason}\n",
        reason.len() + 1
    );
    stream.write_all(response.as_bytes())
}
