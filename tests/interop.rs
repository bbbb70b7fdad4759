//! Interoperability with an independent implementation: the tungstenite
//! client (a dev-dependency) against the real server, over real sockets.
//! Whatever our own test client and our server might agree on wrongly,
//! tungstenite would not.

mod common;

use common::{Rng, start};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};
use tungstenite::protocol::{Message, WebSocket, WebSocketConfig};
use tungstenite::stream::MaybeTlsStream;

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

const MIB: usize = 1 << 20;

/// A tungstenite client on `path`, offering `protocol` if given; frames up
/// to the 16 MiB `/echo` limit (and a little over) are accepted.
fn connect(addr: SocketAddr, path: &str, protocol: Option<&str>) -> (Socket, Option<String>) {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(protocol) = protocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    }
    let config = WebSocketConfig::default()
        .max_frame_size(Some(17 * MIB))
        .max_message_size(Some(17 * MIB));
    let (socket, response) = tungstenite::client::connect_with_config(request, Some(config), 0)
        .unwrap_or_else(|e| panic!("tungstenite cannot connect to {path}: {e}"));
    if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
    }
    let chosen = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap().to_string());
    (socket, chosen)
}

/// The next data message (tungstenite answers pings by itself).
fn read_data(socket: &mut Socket) -> Message {
    loop {
        match socket.read().expect("a message") {
            Message::Ping(_) | Message::Pong(_) => {}
            m => return m,
        }
    }
}

fn read_text(socket: &mut Socket) -> String {
    match read_data(socket) {
        Message::Text(t) => t.as_str().to_string(),
        other => panic!("expected text, got {}", short(&other)),
    }
}

fn short(m: &Message) -> String {
    match m {
        Message::Text(t) if t.len() <= 60 => format!("Text({:?})", t.as_str()),
        Message::Text(t) => format!("Text({} bytes)", t.len()),
        Message::Binary(b) => format!("Binary({} bytes)", b.len()),
        other => format!("{other:?}"),
    }
}

/// Closes from the client side and checks the server echoes the code.
fn close(mut socket: Socket, code: u16) {
    socket
        .close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: "done".into(),
        }))
        .unwrap();
    loop {
        match socket.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), code, "the server echoes the code");
            }
            Ok(Message::Close(None)) => panic!("the server's close carries no code"),
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => return,
            Err(e) => panic!("close handshake: {e}"),
        }
    }
}

#[test]
fn echo_text_and_binary_of_random_sizes_up_to_16_mib() {
    let server = start();
    let (mut socket, protocol) = connect(server.addr(), "/echo", None);
    assert_eq!(protocol, None, "/echo never picks a subprotocol");
    let mut rng = Rng::new(0x5eed_1e55);
    let mut sizes: Vec<usize> = (0..300)
        .map(|_| match rng.below(20) {
            0 => rng.range(65_536, 300_000),
            1..=4 => rng.range(120, 70_000),
            _ => rng.below(200),
        })
        .collect();
    // The length-form boundaries, and a few large ones up to the limit.
    sizes.extend([0, 125, 126, 127, 65_535, 65_536, MIB, 3 * MIB + 1, 16 * MIB]);
    for (i, len) in sizes.into_iter().enumerate() {
        let sent = if rng.chance(1, 2) {
            Message::text(rng.text(len))
        } else {
            Message::binary(rng.bytes(len))
        };
        socket.send(sent.clone()).unwrap();
        let got = read_data(&mut socket);
        assert!(
            got == sent,
            "message {i}: sent {}, got {}",
            short(&sent),
            short(&got)
        );
    }
    close(socket, 1000);
}

#[test]
fn echo_pipelined_messages_come_back_in_order() {
    let server = start();
    let (mut socket, _) = connect(server.addr(), "/echo", None);
    let mut rng = Rng::new(7);
    let sent: Vec<Message> = (0..500)
        .map(|i| {
            let len = rng.below(3000);
            if i % 3 == 0 {
                Message::binary(rng.bytes(len))
            } else {
                Message::text(rng.text(len))
            }
        })
        .collect();
    // Queue everything, then flush once: many frames per TCP write.
    for m in &sent {
        socket.write(m.clone()).unwrap();
    }
    socket.flush().unwrap();
    for (i, m) in sent.iter().enumerate() {
        let got = read_data(&mut socket);
        assert!(&got == m, "message {i}: got {}", short(&got));
    }
    close(socket, 4000);
}

#[test]
fn echo_reassembles_messages_tungstenite_fragments() {
    let server = start();
    let (mut socket, _) = connect(server.addr(), "/echo", None);
    let text = "fragmented κόσμε 𝄞 message";
    let bytes = text.as_bytes();
    // Cut inside the four-byte character on purpose.
    let cut = text.find('𝄞').unwrap() + 2;
    socket
        .send(Message::Frame(Frame::message(
            bytes[..cut].to_vec(),
            OpCode::Data(Data::Text),
            false,
        )))
        .unwrap();
    socket.send(Message::Ping("between".into())).unwrap();
    socket
        .send(Message::Frame(Frame::message(
            bytes[cut..].to_vec(),
            OpCode::Data(Data::Continue),
            true,
        )))
        .unwrap();
    // The pong for the ping comes first, then the message.
    match socket.read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"between"),
        other => panic!("expected the pong, got {}", short(&other)),
    }
    assert_eq!(read_text(&mut socket), text);
    close(socket, 1000);
}

#[test]
fn ping_payloads_come_back_in_pongs() {
    let server = start();
    let (mut socket, _) = connect(server.addr(), "/echo", None);
    let mut rng = Rng::new(99);
    for len in [0, 1, 17, 125] {
        let payload = rng.bytes(len);
        socket.send(Message::Ping(payload.clone().into())).unwrap();
        match socket.read().unwrap() {
            Message::Pong(p) => assert_eq!(&p[..], &payload[..]),
            other => panic!("expected a pong, got {}", short(&other)),
        }
    }
    close(socket, 3000);
}

#[test]
fn chat_raw_and_v1_clients_at_once() {
    let server = start();
    let addr = server.addr();
    let (mut v1, protocol) = connect(addr, "/", Some("wschat.v1"));
    assert_eq!(protocol.as_deref(), Some("wschat.v1"));
    let welcome = read_text(&mut v1);
    assert!(welcome.starts_with("{\"type\":\"welcome\""), "{welcome}");
    let (mut ann, protocol) = connect(addr, "/", None);
    assert_eq!(protocol, None, "raw clients get no subprotocol");
    let (mut bob, _) = connect(addr, "/", None);
    // The v1 client sees both raw clients join: all three are in the room.
    let mut raw_ids = Vec::new();
    while raw_ids.len() < 2 {
        let event = read_text(&mut v1);
        if event.starts_with("{\"type\":\"join\"") {
            let id: u64 = event
                .split("\"id\":")
                .nth(1)
                .and_then(|s| s.split(',').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no id in {event}"));
            raw_ids.push(id);
        }
    }

    // Raw to everyone: verbatim to the other raw client, JSON to v1.
    ann.send(Message::text("hello from raw ☃")).unwrap();
    assert_eq!(read_text(&mut bob), "hello from raw ☃");
    let event = read_text(&mut v1);
    assert!(
        event.starts_with("{\"type\":\"message\"")
            && event.contains(&format!("\"nick\":\"guest-{}\"", raw_ids[0]))
            && event.contains("\"text\":\"hello from raw ☃\""),
        "{event}"
    );

    // v1 to everyone: `NICK: text` to raw clients, the event to itself.
    v1.send(Message::text("/nick ann_v1")).unwrap();
    let renamed = read_text(&mut v1);
    assert!(renamed.starts_with("{\"type\":\"nick\""), "{renamed}");
    v1.send(Message::text("hi from \"v1\"")).unwrap();
    assert_eq!(read_text(&mut ann), "ann_v1: hi from \"v1\"");
    assert_eq!(read_text(&mut bob), "ann_v1: hi from \"v1\"");
    let own = read_text(&mut v1);
    assert!(
        own.contains("\"text\":\"hi from \\\"v1\\\"\"") && own.contains("\"nick\":\"ann_v1\""),
        "{own}"
    );

    // Binary between raw clients only.
    bob.send(Message::binary(vec![0u8, 1, 2, 255])).unwrap();
    match read_data(&mut ann) {
        Message::Binary(b) => assert_eq!(&b[..], &[0, 1, 2, 255]),
        other => panic!("expected binary, got {}", short(&other)),
    }
    // Nothing else was queued for the v1 client: the next thing it sees is
    // this.
    ann.send(Message::text("last")).unwrap();
    let last = read_text(&mut v1);
    assert!(last.contains("\"text\":\"last\""), "{last}");

    close(ann, 1000);
    close(bob, 1001);
    close(v1, 1000);
}

#[test]
fn tungstenite_sees_handshake_rejections_as_http_errors() {
    let server = start();
    let addr = server.addr();
    let mut request = format!("ws://{addr}/").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Origin", "https://evil.example".parse().unwrap());
    match tungstenite::connect(request) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        Err(e) => panic!("expected an HTTP 403, got {e}"),
        Ok(_) => panic!("a cross-site origin was accepted"),
    }
    match tungstenite::connect(format!("ws://{addr}/nowhere")) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 404),
        Err(e) => panic!("expected an HTTP 404, got {e}"),
        Ok(_) => panic!("/nowhere was accepted"),
    }
}
