//! The load generator's rooms mode (`wschat-bench rooms`, which
//! `tests/bench/rooms.sh` runs) counts what it reports: driven against a
//! fake rooms server (wschat's protocol code routing raw messages by
//! `?rooms=NAME`), against one that leaks messages into other rooms, and
//! against one that drops some; then against wschat itself.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use wschat::protocol::frame::{OpCode, encode_frame};
use wschat::protocol::handshake::{Request, accept_key};
use wschat::protocol::message::{Message, MessageReader, Role};

/// What the fake does with a message.
#[derive(Clone, Copy)]
enum Routing {
    /// To the other members of the sender's room: what a rooms server does.
    Room,
    /// To every other client, whatever its room.
    Everyone,
    /// As `Room`, but every `n`th message is dropped.
    DropEvery(u64),
}

/// The members of each room: their id and socket.
type Rooms = Arc<Mutex<HashMap<String, Vec<(u64, TcpStream)>>>>;

/// Starts a fake raw-chat server with rooms on a loopback port.
fn fake(routing: Routing) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let rooms: Rooms = Arc::default();
    let count = Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        for (id, stream) in listener.incoming().enumerate() {
            let (rooms, count) = (rooms.clone(), count.clone());
            std::thread::spawn(move || serve(stream.unwrap(), id as u64, &rooms, routing, &count));
        }
    });
    addr
}

fn serve(mut stream: TcpStream, id: u64, rooms: &Rooms, routing: Routing, count: &AtomicU64) {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let request = Request::parse(&head).unwrap();
    let room = request
        .target
        .split_once("rooms=")
        .map_or("main", |(_, name)| name)
        .to_string();
    let key = request.header("Sec-WebSocket-Key").unwrap();
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    );
    stream.write_all(response.as_bytes()).unwrap();
    rooms
        .lock()
        .unwrap()
        .entry(room.clone())
        .or_default()
        .push((id, stream.try_clone().unwrap()));
    let mut reader = MessageReader::new(stream, Role::Server, 1 << 20);
    loop {
        let payload = match reader.read_message() {
            Ok(Message::Binary(payload)) => payload,
            Ok(Message::Text(text)) => text.into_bytes(),
            Ok(_) => continue,
            Err(_) => break,
        };
        let n = count.fetch_add(1, Relaxed) + 1;
        if matches!(routing, Routing::DropEvery(every) if n.is_multiple_of(every)) {
            continue;
        }
        let frame = encode_frame(OpCode::Binary, &payload, None);
        let mut rooms = rooms.lock().unwrap();
        for (name, members) in rooms.iter_mut() {
            if *name != room && !matches!(routing, Routing::Everyone) {
                continue;
            }
            for (other, socket) in members.iter_mut() {
                if *other != id {
                    let _ = socket.write_all(&frame);
                }
            }
        }
    }
}

/// Runs `wschat-bench rooms` against `addr`: its exit status and its JSON.
fn bench_rooms(addr: SocketAddr, rooms: u32, members: u32) -> (bool, serde_json::Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_wschat-bench"))
        .args(["rooms", "--url", &format!("ws://{addr}/")])
        .args([
            "--rooms",
            &rooms.to_string(),
            "--members",
            &members.to_string(),
        ])
        .args(["--rate", "20", "--duration", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let json = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    (output.status.success(), json)
}

#[test]
fn against_a_rooms_server_every_message_reaches_its_room_once() {
    let (ok, run) = bench_rooms(fake(Routing::Room), 5, 4);
    assert!(ok, "{run}");
    // 20 clients at 20 msg/s for 1 s, each message to 3 others.
    let sent = run["sent"].as_u64().unwrap();
    assert!((380..=420).contains(&sent), "sent {sent}");
    assert_eq!(run["expected"].as_u64(), Some(sent * 3));
    assert_eq!(run["delivered"], run["expected"]);
    assert_eq!(
        (run["lost"].as_u64(), run["foreign"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(run["out_of_order"].as_u64(), Some(0));
    assert!(run["p99_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_message_heard_outside_its_room_fails_the_run() {
    let (ok, run) = bench_rooms(fake(Routing::Everyone), 3, 2);
    assert!(!ok, "a server without rooms must not pass: {run}");
    let sent = run["sent"].as_u64().unwrap();
    // Each message reaches its 1 room-mate and the 4 clients of the other
    // rooms; the count stops once every room's messages are in.
    let foreign = run["foreign"].as_u64().unwrap();
    assert!(
        foreign > sent && foreign <= sent * 4,
        "{foreign} of {}",
        sent * 4
    );
    assert_eq!(run["lost"].as_u64(), Some(0));
}

#[test]
fn a_dropped_message_is_counted_lost() {
    let (_, run) = bench_rooms(fake(Routing::DropEvery(10)), 2, 3);
    let sent = run["sent"].as_u64().unwrap();
    // Every 10th message reaches none of its 2 room-mates.
    assert_eq!(run["lost"].as_u64(), Some(sent / 10 * 2));
    assert_eq!(run["foreign"].as_u64(), Some(0));
}

#[test]
fn against_wschat_every_room_hears_its_own_members_only() {
    let server = common::start();
    let (ok, run) = bench_rooms(server.addr(), 6, 4);
    assert!(ok, "{run}");
    let sent = run["sent"].as_u64().unwrap();
    assert_eq!(run["delivered"].as_u64(), Some(sent * 3));
    assert_eq!(
        (run["lost"].as_u64(), run["foreign"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(run["out_of_order"].as_u64(), Some(0));
}

#[test]
fn against_wschat_idle_rooms_are_filled_and_measured() {
    let server = common::start();
    let output = Command::new(env!("CARGO_BIN_EXE_wschat-bench"))
        .args(["idle-rooms", "--url", &format!("ws://{}/", server.addr())])
        .args(["--rooms", "20", "--history", "30"])
        .args(["--server-pid", &std::process::id().to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let run: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(run["rooms"].as_u64(), Some(20));
    assert!(run["bytes_per_room"].is_number(), "{run}");
}
