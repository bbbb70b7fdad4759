//! A deliberately broken echo server, to calibrate the conformance tool:
//! it answers any request that carries a key with a 101 and echoes, but
//! checks nothing. No UTF-8 check; RSV bits ignored; unknown opcodes
//! dropped; fragmentation rules ignored (a stray continuation starts a
//! binary message, a new message inside one just replaces it); control
//! frames of any size; the client's Close payload echoed verbatim. Every
//! section it breaks must show failures, with readable reasons.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// Starts the server on an ephemeral loopback port; it runs until the
/// process exits.
pub fn start() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = serve(stream);
            });
        }
    });
    addr
}

fn serve(stream: TcpStream) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    let mut key = None;
    loop {
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("sec-websocket-key")
        {
            key = Some(value.trim().to_string());
        }
    }
    let Some(key) = key else { return Ok(()) };
    let accept = BASE64.encode(Sha1::digest(format!(
        "{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    )));
    write!(
        out,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )?;
    let mut message: Option<(u8, Vec<u8>)> = None;
    loop {
        let mut head = [0u8; 2];
        input.read_exact(&mut head)?;
        let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
        let len = match head[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                input.read_exact(&mut l)?;
                u16::from_be_bytes(l) as u64
            }
            127 => {
                let mut l = [0u8; 8];
                input.read_exact(&mut l)?;
                u64::from_be_bytes(l)
            }
            n => n as u64,
        };
        let mut mask = [0u8; 4];
        if head[1] & 0x80 != 0 {
            input.read_exact(&mut mask)?;
        }
        let mut payload = Vec::new();
        (&mut input).take(len).read_to_end(&mut payload)?;
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        match opcode {
            0x8 => {
                send(&mut out, 0x8, &payload)?;
                return Ok(());
            }
            0x9 => send(&mut out, 0xA, &payload)?,
            0x1 | 0x2 => message = Some((opcode, payload)),
            0x0 => message.get_or_insert((0x2, Vec::new())).1.extend(payload),
            _ => continue,
        }
        if fin
            && matches!(opcode, 0x0..=0x2)
            && let Some((op, data)) = message.take()
        {
            send(&mut out, op, &data)?;
        }
    }
}

fn send(out: &mut TcpStream, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n @ 0..=125 => frame.push(n as u8),
        n @ 126..=0xffff => {
            frame.push(126);
            frame.extend((n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend((n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    out.write_all(&frame)
}
