//! Chapter 00's echo server (docs/examples/echo.rs), the same source
//! `cargo run --example echo` builds, served on an ephemeral port and
//! talked to by a real WebSocket client (tungstenite) and by raw bytes.

#[allow(dead_code)] // its `main` is for `cargo run --example echo`
#[path = "../docs/examples/echo.rs"]
mod echo;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, connect};

fn start() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || echo::serve(listener));
    addr
}

#[test]
fn a_websocket_client_gets_every_message_back() {
    let addr = start();
    let (mut socket, response) = connect(format!("ws://{addr}/")).unwrap();
    assert_eq!(response.status(), 101);
    for message in [
        Message::Text("Hello".into()),
        Message::Text("héllo, wörld".into()),
        Message::Binary(vec![0, 1, 2, 255].into()),
        Message::Text("x".repeat(70_000).into()), // a 64-bit length
    ] {
        socket.send(message.clone()).unwrap();
        assert_eq!(socket.read().unwrap(), message);
    }
    socket
        .send(Message::Ping(b"are you there".to_vec().into()))
        .unwrap();
    assert_eq!(
        socket.read().unwrap(),
        Message::Pong(b"are you there".to_vec().into())
    );
    socket.close(None).unwrap();
    match socket.read().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected the Close echoed, got {other:?}"),
    }
}

#[test]
fn clients_are_served_at_the_same_time() {
    let addr = start();
    let (mut first, _) = connect(format!("ws://{addr}/")).unwrap();
    let (mut second, _) = connect(format!("ws://{addr}/")).unwrap();
    second.send(Message::Text("two".into())).unwrap();
    first.send(Message::Text("one".into())).unwrap();
    assert_eq!(second.read().unwrap(), Message::Text("two".into()));
    assert_eq!(first.read().unwrap(), Message::Text("one".into()));
}

fn raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    reply
}

const HANDSHAKE: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

#[test]
fn an_unmasked_frame_is_closed_with_1002() {
    let addr = start();
    // The handshake and the RFC's "Hello" unmasked, in one write (§5.1).
    let mut bytes = HANDSHAKE.to_vec();
    bytes.extend_from_slice(&[0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
    let reply = raw(addr, &bytes);
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{text}"
    );
    assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    let close = &reply[text.find("\r\n\r\n").unwrap() + 4..];
    let mut expected = vec![0x88, 2 + 28, 0x03, 0xea];
    expected.extend_from_slice(b"client frames must be masked");
    assert_eq!(close, expected);
}

#[test]
fn a_request_that_is_not_a_handshake_gets_a_status() {
    let addr = start();
    let reply = raw(addr, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert!(text.ends_with("missing or wrong Upgrade header (need websocket)\n"));
    let version_8 = String::from_utf8_lossy(HANDSHAKE).replace("Version: 13", "Version: 8");
    let reply = raw(addr, version_8.as_bytes());
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 426 "), "{text}");
    assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
}
