//! End-to-end tests of the chat server: the real server on an ephemeral
//! loopback port, real sockets, both wire protocols.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use wschat::protocol::OpCode;
use wschat::protocol::message::Message;

/// Reads the v1 welcome and returns (its text, this client's id).
fn welcome(client: &mut Client) -> (String, u64) {
    let text = client.recv_text();
    assert!(
        text.starts_with("{\"type\":\"welcome\",\"you\":{\"id\":"),
        "{text}"
    );
    let id = text["{\"type\":\"welcome\",\"you\":{\"id\":".len()..]
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (text, id)
}

fn v1(addr: std::net::SocketAddr) -> (Client, u64) {
    let mut client = Client::connect(addr, "/", &["wschat.v1"]);
    let (_, id) = welcome(&mut client);
    (client, id)
}

#[test]
fn raw_chat_broadcasts_verbatim_to_everyone_but_the_sender() {
    let server = start();
    let mut a = Client::connect(server.addr(), "/", &[]);
    let mut b = Client::connect(server.addr(), "/", &[]);
    let mut c = Client::connect(server.addr(), "/", &[]);
    // Make sure all three have joined before anyone speaks: a message from
    // c reaching a and b proves they are in the room.
    c.text("ready");
    assert_eq!(a.recv_text(), "ready");
    assert_eq!(b.recv_text(), "ready");

    a.text("héllo <b>wörld</b>");
    assert_eq!(b.recv_text(), "héllo <b>wörld</b>");
    assert_eq!(c.recv_text(), "héllo <b>wörld</b>");
    b.send(OpCode::Binary, &[0, 1, 2, 255]);
    assert_eq!(a.recv_data(), Message::Binary(vec![0, 1, 2, 255]));
    assert_eq!(c.recv_data(), Message::Binary(vec![0, 1, 2, 255]));
    // a's next message is b's binary above, not its own text: the sender
    // was skipped. One more from c shows nothing else is queued for a.
    c.text("last");
    assert_eq!(a.recv_text(), "last");
    assert!(
        !a.response.contains("Sec-WebSocket-Protocol"),
        "no subprotocol unless offered"
    );
}

#[test]
fn bursts_from_several_raw_senders_arrive_whole_in_order_and_never_back_to_their_sender() {
    // Three senders each write 300 messages in one go, so the broadcaster
    // has a backlog and delivers them in batches: every client must still
    // get every other sender's lines, each sender's in its order, and
    // none of its own.
    const EACH: usize = 300;
    let server = start();
    let addr = server.addr();
    let mut observer = Client::connect(addr, "/", &[]);
    let mut senders: Vec<Client> = (0..3).map(|_| Client::connect(addr, "/", &[])).collect();
    // Everyone is in the room once a line from the observer reaches all.
    observer.text("ready");
    for sender in &mut senders {
        assert_eq!(sender.recv_text(), "ready");
    }
    let bursts: Vec<Vec<u8>> = (0..3)
        .map(|s| {
            (0..EACH)
                .flat_map(|i| masked(true, OpCode::Text, format!("{s} {i}").as_bytes()))
                .collect()
        })
        .collect();
    for (sender, burst) in senders.iter_mut().zip(&bursts) {
        sender.send_raw(burst);
    }
    // Checks one client's stream: `expected` senders, EACH lines each.
    let check = |client: &mut Client, me: Option<usize>| {
        let mut next = [0usize; 3];
        for _ in 0..EACH * if me.is_some() { 2 } else { 3 } {
            let text = client.recv_text();
            let (s, i) = text.split_once(' ').expect("\"S I\"");
            let (s, i): (usize, usize) = (s.parse().unwrap(), i.parse().unwrap());
            assert_ne!(Some(s), me, "a raw sender got its own line back: {text}");
            assert_eq!(i, next[s], "sender {s}'s lines out of order");
            next[s] += 1;
        }
    };
    check(&mut observer, None);
    for (s, sender) in senders.iter_mut().enumerate() {
        check(sender, Some(s));
    }
    // Nothing more: a last line from the observer is the next thing each gets.
    observer.text("end");
    for sender in &mut senders {
        assert_eq!(sender.recv_text(), "end");
    }
}

#[test]
fn v1_welcome_presence_messages_and_order() {
    let server = start();
    let (mut ann, ann_id) = v1(server.addr());
    assert!(
        ann.response
            .contains("Sec-WebSocket-Protocol: wschat.v1\r\n")
    );
    let (mut bo, bo_id) = v1(server.addr());
    let join = recv_until(&mut ann, "\"type\":\"join\"");
    assert!(
        join.contains(&format!(
            "\"user\":{{\"id\":{bo_id},\"nick\":\"guest-{bo_id}\"}}"
        )),
        "{join}"
    );

    ann.text("hi \"bo\"");
    let to_ann = recv_until(&mut ann, "\"type\":\"message\"");
    let to_bo = recv_until(&mut bo, "\"type\":\"message\"");
    assert_eq!(to_ann, to_bo, "sender and others see the same event");
    assert!(to_ann.contains(&format!(
        "\"from\":{{\"id\":{ann_id},\"nick\":\"guest-{ann_id}\"}}"
    )));
    assert!(to_ann.contains("\"text\":\"hi \\\"bo\\\"\""), "{to_ann}");
    assert!(to_ann.contains("\"ts\":"));

    drop(bo);
    let leave = recv_until(&mut ann, "\"type\":\"leave\"");
    assert!(leave.contains(&format!("\"id\":{bo_id}")), "{leave}");
}

#[test]
fn v1_nick_me_who_and_errors() {
    let server = start();
    let (mut ann, ann_id) = v1(server.addr());
    let (mut bo, _) = v1(server.addr());
    recv_until(&mut ann, "\"type\":\"join\"");

    ann.text("/nick ann");
    let event = recv_until(&mut bo, "\"type\":\"nick\"");
    assert_eq!(
        event,
        format!(
            "{{\"type\":\"nick\",\"user\":{{\"id\":{ann_id},\"nick\":\"ann\"}},\"old\":\"guest-{ann_id}\",\"ts\":{}",
            event.rsplit("\"ts\":").next().unwrap()
        )
    );
    recv_until(&mut ann, "\"type\":\"nick\"");
    ann.text("/nick ann");
    assert!(recv_until(&mut ann, "\"type\":\"error\"").contains("you are already ann"));

    bo.text("/nick ANN");
    assert!(recv_until(&mut bo, "\"type\":\"error\"").contains("already taken"));
    bo.text("/nick has space");
    assert!(recv_until(&mut bo, "\"type\":\"error\"").contains("spaces"));
    bo.text("/nick guest-999");
    assert!(recv_until(&mut bo, "\"type\":\"error\"").contains("reserved"));
    bo.text("/dance");
    assert!(recv_until(&mut bo, "\"type\":\"error\"").contains("unknown command /dance"));

    ann.text("/me waves");
    let action = recv_until(&mut bo, "\"type\":\"message\"");
    assert!(
        action.contains("\"text\":\"waves\"") && action.ends_with(",\"action\":true}"),
        "{action}"
    );

    ann.text("//nick is literal");
    assert!(recv_until(&mut bo, "\"type\":\"message\"").contains("\"text\":\"/nick is literal\""));

    bo.text("/who");
    let users = recv_until(&mut bo, "\"type\":\"users\"");
    assert!(
        users.contains("\"nick\":\"ann\"") && users.matches("\"id\":").count() == 2,
        "{users}"
    );
}

#[test]
fn raw_and_v1_clients_share_the_room() {
    let server = start();
    let (mut ann, _) = v1(server.addr());
    let mut raw = Client::connect(server.addr(), "/", &[]);
    let raw_join = recv_until(&mut ann, "\"type\":\"join\"");
    let raw_id: u64 = raw_join
        .split("\"id\":")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    raw.text("from raw");
    let seen = recv_until(&mut ann, "\"type\":\"message\"");
    assert!(
        seen.contains(&format!("\"nick\":\"guest-{raw_id}\""))
            && seen.contains("\"text\":\"from raw\"")
    );

    ann.text("/nick ann");
    ann.text("from v1");
    assert_eq!(raw.recv_text(), "ann: from v1");
    ann.text("/me dances");
    assert_eq!(raw.recv_text(), "* ann dances");
}

#[test]
fn history_is_sent_to_newcomers_and_bounded() {
    let server = start_with(|c| c.history = 2);
    let (mut ann, _) = v1(server.addr());
    for text in ["one", "two", "three"] {
        ann.text(text);
        recv_until(&mut ann, text);
    }
    let mut late = Client::connect(server.addr(), "/", &["wschat.v1"]);
    let (welcome, _) = welcome(&mut late);
    let history = welcome.split("\"history\":").nth(1).unwrap();
    assert!(!history.contains("\"one\""), "{history}");
    assert!(
        history.contains("\"two\"") && history.contains("\"three\""),
        "{history}"
    );
    assert!(
        history.find("\"two\"") < history.find("\"three\""),
        "oldest first"
    );
}

#[test]
fn history_file_survives_a_restart_and_skips_a_torn_line() {
    let dir = std::env::temp_dir().join(format!("wschat-test-history-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("history.jsonl");
    let _ = std::fs::remove_file(&path);
    {
        let server = start_with(|c| c.history_file = Some(path.clone()));
        let (mut ann, _) = v1(server.addr());
        ann.text("remember me");
        recv_until(&mut ann, "remember me");
        server.shutdown();
    }
    // A crash in the middle of a write leaves half a line.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(b"{\"type\":\"message\",\"id\":2,\"fr")
        .unwrap();
    drop(file);
    let server = start_with(|c| c.history_file = Some(path.clone()));
    let mut late = Client::connect(server.addr(), "/", &["wschat.v1"]);
    let (welcome, _) = welcome(&mut late);
    assert!(welcome.contains("remember me"), "{welcome}");
    late.text("after restart");
    let event = recv_until(&mut late, "after restart");
    // Id 2 may have reached clients before the crash: never issued twice.
    assert!(event.contains("\"id\":3,"), "numbering continues: {event}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn echo_returns_text_and_binary_unchanged() {
    let server = start();
    let mut client = Client::echo(server.addr());
    client.text("echo me ☃");
    assert_eq!(client.recv_data(), Message::Text("echo me ☃".into()));
    let blob: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    client.send(OpCode::Binary, &blob);
    assert_eq!(client.recv_data(), Message::Binary(blob));
    client.close();
}

/// An echo client's reader writes its replies itself: they come in the
/// order the messages were sent, whatever their sizes, and nothing comes
/// after the Close, not even the echo of a message sent behind it.
#[test]
fn echoes_keep_their_order_and_nothing_follows_the_close() {
    let server = start();
    let mut client = Client::echo(server.addr());
    let sizes = [0usize, 1, 125, 126, 65_535, 65_536, 300_000, 16];
    let mut burst = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        burst.extend(masked(true, OpCode::Binary, &vec![i as u8; size]));
        burst.extend(masked(true, OpCode::Ping, &[i as u8]));
    }
    burst.extend(masked(true, OpCode::Close, &close_payload(1000, b"")));
    burst.extend(masked(true, OpCode::Text, b"after the close"));
    client.send_raw(&burst);
    for (i, &size) in sizes.iter().enumerate() {
        assert_eq!(
            client.recv(),
            Message::Binary(vec![i as u8; size]),
            "echo {i}"
        );
        assert_eq!(client.recv(), Message::Pong(vec![i as u8]), "pong {i}");
    }
    let after = client.expect_close(1000);
    assert!(after.is_empty(), "sent after the Close: {after:?}");
}

/// An echo connection is not in the chat: it gets its own echoes and
/// nothing that chat clients send.
#[test]
fn an_echo_client_receives_no_broadcasts() {
    let server = start();
    let mut echo = Client::echo(server.addr());
    let mut chat = Client::connect(server.addr(), "/", &[]);
    let mut listener = Client::connect(server.addr(), "/", &[]);
    chat.text("to the room");
    assert!(listener.recv_text().contains("to the room"));
    echo.text("mine");
    assert_eq!(echo.recv_data(), Message::Text("mine".into()));
    echo.close();
}

#[test]
fn ping_gets_pong_with_the_same_payload_and_close_is_echoed() {
    let server = start();
    let mut client = Client::echo(server.addr());
    client.send(OpCode::Ping, b"are you there?");
    assert_eq!(client.recv(), Message::Pong(b"are you there?".to_vec()));
    client.send(OpCode::Close, &close_payload(4000, b"bye"));
    client.expect_close(4000);
}

#[test]
fn oversized_chat_message_is_closed_with_1009() {
    let server = start_with(|c| c.max_message_bytes = 1000);
    let mut client = Client::connect(server.addr(), "/", &[]);
    client.text(&"x".repeat(1000));
    client.send(OpCode::Text, &[b'y'; 1001]);
    client.expect_close(1009);
}

#[test]
fn flooding_is_closed_with_1008_and_the_room_goes_on() {
    let server = start_with(|c| c.rate_limit = 5);
    let mut flooder = Client::connect(server.addr(), "/", &[]);
    let mut other = Client::connect(server.addr(), "/", &[]);
    let mut listener = Client::connect(server.addr(), "/", &[]);
    other.text("before");
    assert_eq!(listener.recv_text(), "before");
    for i in 0..11 {
        flooder.text(&format!("flood {i}"));
    }
    // The first ten (the burst) are delivered; the eleventh closes it.
    for i in 0..10 {
        assert_eq!(listener.recv_text(), format!("flood {i}"));
    }
    flooder.expect_close(1008);
    other.text("after");
    assert_eq!(listener.recv_text(), "after");
}

#[test]
fn handshake_rejections_have_their_status() {
    let server = start_with(|c| c.allow_origins = vec!["https://friend.example".into()]);
    let addr = server.addr();
    let send = |request: String| status_of(&response_head(addr, request.as_bytes()));
    let good = handshake_request(addr, "/", "");
    assert_eq!(
        send(good.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")),
        400
    );
    assert_eq!(send(good.replace("Upgrade: websocket\r\n", "")), 400);
    assert_eq!(send(good.replace("Connection: Upgrade\r\n", "")), 400);
    assert_eq!(
        send(good.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8")),
        426
    );
    assert_eq!(send(good.replace("GET", "POST")), 405);
    assert_eq!(send(handshake_request(addr, "/nowhere", "")), 404);
    assert_eq!(
        send(handshake_request(
            addr,
            "/",
            "Origin: https://evil.example\r\n"
        )),
        403
    );
    let response = http_exchange(addr, good.replace("13\r\n", "7\r\n").as_bytes());
    assert!(
        response.contains("Sec-WebSocket-Version: 13\r\n"),
        "{response}"
    );
    let same_site = format!("Origin: http://{addr}\r\n");
    assert_eq!(send(handshake_request(addr, "/", &same_site)), 101);
    assert_eq!(
        send(handshake_request(
            addr,
            "/",
            "Origin: https://friend.example\r\n"
        )),
        101
    );
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    assert_eq!(send(huge), 431);
}

#[test]
fn max_clients_answers_503_and_frees_places() {
    let server = start_with(|c| c.max_clients = 2);
    let a = Client::echo(server.addr());
    let _b = Client::echo(server.addr());
    let response = http_exchange(
        server.addr(),
        handshake_request(server.addr(), "/echo", "").as_bytes(),
    );
    assert_eq!(status_of(&response), 503);
    a.close();
    // The place is freed once the connection thread has finished.
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let response = response_head(
            server.addr(),
            handshake_request(server.addr(), "/echo", "").as_bytes(),
        );
        if status_of(&response) == 101 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "place never freed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn the_page_and_the_http_endpoints() {
    let server = start();
    let addr = server.addr();
    let get = |path: &str| {
        http_exchange(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
        )
    };
    let page = get("/");
    assert_eq!(status_of(&page), 200);
    assert!(page.contains("Content-Type: text/html; charset=utf-8\r\n"));
    assert!(page.contains("<html"), "the page itself");
    assert!(get("/app.js").contains("Content-Type: text/javascript"));
    assert!(get("/style.css").contains("Content-Type: text/css"));
    assert_eq!(status_of(&get("/nope.html")), 404);
    assert_eq!(get("/healthz").split("\r\n\r\n").nth(1), Some("ok\n"));
    assert!(get("/metrics").contains("# TYPE wschat_connections gauge"));
    let head = http_exchange(
        addr,
        format!("HEAD / HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    );
    assert_eq!(status_of(&head), 200);
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body");
    let post = http_exchange(
        addr,
        format!("POST / HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    );
    assert_eq!(status_of(&post), 405);
    for path in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/..%2fCargo.toml",
        "/.%2e/Cargo.toml",
        "/..\\Cargo.toml",
    ] {
        let status = status_of(&get(path));
        assert!(status == 400 || status == 404, "{path}: {status}");
    }
}

#[test]
fn a_malformed_percent_escape_in_the_path_is_400_with_its_reason() {
    let server = start();
    let addr = server.addr();
    // `%` must be followed by exactly two hex digits: a sign is not one
    // (`%+1` once passed as 0x01), and neither is an escape cut short.
    for path in ["/%zz", "/%+1", "/%-1", "/%+a.html", "/%2", "/a%1g"] {
        let response = http_exchange(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
        );
        assert_eq!(status_of(&response), 400, "{path}: {response}");
        assert!(
            response.ends_with("\r\n\r\nmalformed percent-encoding in path\n"),
            "{path}: {response}"
        );
    }
}

#[test]
fn www_directory_is_served_and_never_escaped() {
    let dir = std::env::temp_dir().join(format!("wschat-test-www-{}", std::process::id()));
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "<html>from disk</html>").unwrap();
    std::fs::write(dir.join("secret.txt"), "secret").unwrap();
    let server = start_with(|c| c.www = Some(www.clone()));
    let addr = server.addr();
    let get = |path: &str| {
        http_exchange(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
        )
    };
    assert!(get("/").contains("from disk"));
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "//..//secret.txt",
        "/..%5csecret.txt",
    ] {
        let response = get(path);
        assert!(
            !response.contains("secret\n") && !response.ends_with("secret"),
            "{path}: {response}"
        );
        assert_ne!(status_of(&response), 200, "{path}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_first_frame_in_the_same_packet_as_the_handshake_is_not_lost() {
    let server = start();
    let mut bytes = handshake_request(server.addr(), "/echo", "").into_bytes();
    bytes.extend(masked(true, OpCode::Text, b"early bird"));
    let mut client = Client::connect_with(server.addr(), &bytes);
    assert_eq!(client.recv_data(), Message::Text("early bird".into()));
}

#[test]
fn server_shutdown_sends_1001_to_chat_clients() {
    let server = start();
    let mut client = Client::connect(server.addr(), "/", &["wschat.v1"]);
    welcome(&mut client);
    server.shutdown();
    client.expect_close(1001);
}

/// The binary itself: flags, errors, and serving on the address it logs.
#[test]
fn the_binary_parses_flags_and_serves() {
    let exe = env!("CARGO_BIN_EXE_wschat");
    let help = Command::new(exe).arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--addr",
        "--www",
        "--log-level",
        "--allow-origin",
        "--max-message-bytes",
        "--history",
        "--max-clients",
        "--ping-interval",
        "--handshake-timeout",
        "--rate-limit",
    ] {
        assert!(help.contains(flag), "--help lists {flag}");
    }
    let bad = Command::new(exe)
        .args(["--history", "lots"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8(bad.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one-line error: {stderr}");

    let mut child = Command::new(exe)
        .args(["--addr", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut log = Vec::new();
    let mut byte = [0u8];
    while !String::from_utf8_lossy(&log).contains("/\n") && stderr.read(&mut byte).unwrap() == 1 {
        log.push(byte[0]);
    }
    let log = String::from_utf8_lossy(&log).into_owned();
    let port: u16 = log
        .split("http://127.0.0.1:")
        .nth(1)
        .unwrap()
        .trim_end_matches(['/', '\n'])
        .parse()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut a = Client::connect(addr, "/", &[]);
    let mut b = Client::connect(addr, "/", &[]);
    b.text("ping from b");
    // b might have joined after a's join was processed; either way a gets it.
    assert_eq!(a.recv_text(), "ping from b");
    let mut probe = TcpStream::connect(addr).unwrap();
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    probe.read_to_string(&mut response).unwrap();
    assert!(response.ends_with("ok\n"));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_client_is_in_the_room_as_soon_as_it_has_its_101() {
    let server = start();
    let mut ann = Client::connect(server.addr(), "/", &[]);
    for i in 0..20 {
        // No warm-up message: the 101 alone says the newcomer is in.
        let mut newcomer = Client::connect(server.addr(), "/", &[]);
        ann.text(&format!("welcome {i}"));
        assert_eq!(newcomer.recv_text(), format!("welcome {i}"));
    }
}
