//! Rooms and direct messages over real sockets: who hears what, resuming
//! every room after a reconnect, the raw client's room, each limit, and a
//! restart with `--history-file`. The rules themselves are unit tests of
//! `room::Chat`; these check the wiring (the query, the outbox's routing,
//! the history file).

mod common;

use common::*;
use std::net::SocketAddr;
use std::path::PathBuf;
use wschat::json::{self, Value};

/// A `wschat.v1` client connected to `target` (`/?rooms=a,b`), and its
/// welcome.
fn v1_at(addr: SocketAddr, target: &str) -> (Client, Value) {
    let mut client = Client::connect(addr, target, &["wschat.v1"]);
    let welcome = next(&mut client, "welcome");
    (client, welcome)
}

/// The next event of type `kind`, skipping others.
fn next(client: &mut Client, kind: &str) -> Value {
    let needle = format!("\"type\":\"{kind}\"");
    let text = recv_until(client, &needle);
    json::parse(&text).unwrap_or_else(|| panic!("not JSON: {text}"))
}

fn field<'a>(event: &'a Value, key: &str) -> &'a str {
    event.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Events up to and including the `message` whose text is `text`.
fn events_until_message(client: &mut Client, text: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let event = json::parse(&client.recv_text()).expect("JSON");
        let done = field(&event, "type") == "message" && field(&event, "text") == text;
        seen.push(event);
        if done {
            return seen;
        }
    }
}

fn ids(history: Option<&Value>) -> Vec<u64> {
    match history {
        Some(Value::Array(events)) => events
            .iter()
            .filter_map(|e| e.get("id").and_then(Value::as_u64))
            .collect(),
        other => panic!("not a history: {other:?}"),
    }
}

fn id_of(event: &Value) -> u64 {
    event.get("id").and_then(Value::as_u64).expect("an id")
}

fn error_code(client: &mut Client) -> (String, String) {
    let error = next(client, "error");
    (field(&error, "code").into(), field(&error, "room").into())
}

fn status(addr: SocketAddr, target: &str, protocols: &str) -> (u16, String) {
    let extra = if protocols.is_empty() {
        String::new()
    } else {
        format!("Sec-WebSocket-Protocol: {protocols}\r\n")
    };
    let response = http_exchange(addr, handshake_request(addr, target, &extra).as_bytes());
    (status_of(&response), response)
}

#[test]
fn two_rooms_with_different_members_never_see_each_others_messages() {
    let server = start();
    let (mut ann, _) = v1_at(server.addr(), "/?rooms=a");
    let (mut bob, _) = v1_at(server.addr(), "/?rooms=b");
    let (mut cy, welcome) = v1_at(server.addr(), "/?rooms=a,b");
    assert_eq!(
        welcome.get("rooms").unwrap(),
        &json::parse(r##"["#a","#b"]"##).unwrap()
    );
    next(&mut cy, "joined");
    next(&mut cy, "joined");
    bob.text("/say #b for b");
    let seen = events_until_message(&mut cy, "for b");
    assert_eq!(field(seen.last().unwrap(), "room"), "#b");
    ann.text("/say #a for a");
    // Had bob's message reached ann, it would have come before her own.
    let seen = events_until_message(&mut ann, "for a");
    assert!(
        seen.iter().all(|e| field(e, "room") != "#b"),
        "ann heard #b: {seen:?}"
    );
    let seen = events_until_message(&mut cy, "for a");
    assert_eq!(field(seen.last().unwrap(), "room"), "#a");
    bob.text("/say #b after");
    let seen = events_until_message(&mut bob, "after");
    assert!(seen.iter().all(|e| field(e, "text") != "for a"), "{seen:?}");
    // Plain text goes to #main, which none of them is in.
    ann.text("hello?");
    assert_eq!(error_code(&mut ann), ("not_in_room".into(), "#main".into()));
}

#[test]
fn a_direct_message_reaches_only_its_two_users() {
    let server = start();
    let (mut ann, _) = v1_at(server.addr(), "/");
    let (mut bob, _) = v1_at(server.addr(), "/?rooms=elsewhere");
    let (mut cy, _) = v1_at(server.addr(), "/");
    bob.text("/nick bob");
    next(&mut bob, "nick");
    ann.text("/msg BOB psst");
    let to_bob = next(&mut bob, "direct");
    let back = next(&mut ann, "direct");
    assert_eq!(to_bob, back);
    assert_eq!(field(&to_bob, "text"), "psst");
    assert_eq!(field(to_bob.get("to").unwrap(), "nick"), "bob");
    assert!(to_bob.get("id").is_none(), "not numbered");
    ann.text("after the secret");
    let seen = events_until_message(&mut cy, "after the secret");
    assert!(
        seen.iter().all(|e| field(e, "type") != "direct"),
        "{seen:?}"
    );
    ann.text("/msg nobody hi");
    assert_eq!(error_code(&mut ann).0, "no_such_user");
}

#[test]
fn a_reconnect_with_since_returns_exactly_the_missed_messages_of_each_room() {
    let server = start();
    let (mut talker, _) = v1_at(server.addr(), "/?rooms=main,a,b,c");
    let (mut reader, welcome) = v1_at(server.addr(), "/?rooms=main,a,b");
    let epoch = field(&welcome, "epoch").to_string();
    talker.text("/say #a seen");
    let seen = events_until_message(&mut reader, "seen");
    let since = id_of(seen.last().unwrap());
    reader.close();
    let mut missed = std::collections::HashMap::<&str, Vec<u64>>::new();
    for (room, line) in [
        ("#main", "m1"),
        ("#a", "a1"),
        ("#c", "c1"),
        ("#b", "b1"),
        ("#a", "a2"),
    ] {
        talker.text(&format!("/say {room} {line}"));
        let event = events_until_message(&mut talker, line).pop().unwrap();
        missed.entry(room).or_default().push(id_of(&event));
    }
    let target = format!("/?since={since}&epoch={epoch}&rooms=main,a,b");
    let (mut back, welcome) = v1_at(server.addr(), &target);
    assert_eq!(ids(welcome.get("history")), missed["#main"]);
    assert!(welcome.get("gap").is_none());
    for room in ["#a", "#b"] {
        let joined = next(&mut back, "joined");
        assert_eq!(field(&joined, "room"), room);
        assert_eq!(ids(joined.get("history")), missed[room], "{room}");
        assert!(joined.get("gap").is_none());
    }
    // From another epoch: everything kept, and a gap.
    let (mut other, welcome) = v1_at(
        server.addr(),
        &format!("/?since={since}&epoch=zz&rooms=main,a"),
    );
    assert_eq!(welcome.get("gap"), Some(&Value::Bool(true)));
    let joined = next(&mut other, "joined");
    assert_eq!(joined.get("gap"), Some(&Value::Bool(true)));
    assert_eq!(ids(joined.get("history")).len(), 3);
}

#[test]
fn a_raw_client_chooses_its_one_room_in_the_query() {
    let server = start();
    let (mut v1, _) = v1_at(server.addr(), "/?rooms=main,go");
    let mut raw = Client::connect(server.addr(), "/?rooms=go", &[]);
    next(&mut v1, "join");
    v1.text("in main only");
    v1.text("/say #go hello go");
    assert_eq!(raw.recv_text(), "guest-1: hello go");
    raw.text("raw line");
    let seen = events_until_message(&mut v1, "raw line");
    assert_eq!(field(seen.last().unwrap(), "room"), "#go");
    // A raw client on `/` is in #main, as ever, and hears #main only.
    let mut plain = Client::connect(server.addr(), "/", &[]);
    v1.text("/say #go not for plain");
    v1.text("for plain");
    assert_eq!(plain.recv_text(), "guest-1: for plain");
    // Exactly one room for a raw client; a bad name for anyone.
    for (target, protocols) in [
        ("/?rooms=a,b", ""),
        ("/?rooms=", ""),
        ("/?rooms=a.b", "wschat.v1"),
        ("/?rooms=%23", ""),
    ] {
        let (code, response) = status(server.addr(), target, protocols);
        assert_eq!(code, 400, "{target}: {response}");
    }
    // `/echo` has no rooms: the parameter means nothing there.
    Client::connect(server.addr(), "/echo?rooms=a.b", &[]);
}

#[test]
fn every_room_limit_answers_over_the_wire() {
    let server = start_with(|c| {
        c.max_rooms_per_client = 2;
        c.max_rooms = 3;
        c.max_room_members = Some(2);
    });
    let addr = server.addr();
    let (code, response) = status(addr, "/?rooms=a,b,c", "wschat.v1");
    assert_eq!(code, 400, "{response}");
    assert!(response.contains("--max-rooms-per-client"), "{response}");
    let (mut ann, _) = v1_at(addr, "/?rooms=a");
    ann.text("/join #b");
    next(&mut ann, "joined");
    ann.text("/join #c");
    assert_eq!(error_code(&mut ann), ("too_many_rooms".into(), "#c".into()));
    ann.text("/join #a");
    assert_eq!(
        error_code(&mut ann),
        ("already_in_room".into(), "#a".into())
    );
    ann.text("/join #a.b");
    assert_eq!(error_code(&mut ann).0, "room_invalid");
    let (mut bob, _) = v1_at(addr, "/");
    bob.text("/join #c"); // #main, #a, #b exist, none empty
    assert_eq!(error_code(&mut bob), ("room_limit".into(), "#c".into()));
    bob.text("/say #a hi");
    assert_eq!(error_code(&mut bob), ("not_in_room".into(), "#a".into()));
    bob.text("/join #a");
    next(&mut bob, "joined");
    let (mut cy, _) = v1_at(addr, "/");
    cy.text("/join #a");
    assert_eq!(error_code(&mut cy), ("room_full".into(), "#a".into()));
    // Once #b is empty, creating a room evicts it.
    ann.text("/part #b");
    next(&mut ann, "parted");
    cy.text("/join #c");
    next(&mut cy, "joined");
    cy.text("/rooms");
    let rooms = next(&mut cy, "rooms");
    let names: Vec<&str> = match rooms.get("rooms") {
        Some(Value::Array(rooms)) => rooms.iter().map(|r| field(r, "room")).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(names, ["#a", "#c", "#main"]);
    // A raw client whose room is full is closed with 1013.
    let mut raw = Client::connect(addr, "/?rooms=a", &[]);
    raw.expect_close(1013);
}

#[test]
fn the_history_budget_evicts_the_empty_room_unused_longest() {
    // Each message event is about 345 bytes: room for three.
    let server = start_with(|c| c.room_history_bytes = 1100);
    let (mut ann, _) = v1_at(server.addr(), "/?rooms=old,new,busy");
    for room in ["old", "new"] {
        ann.text(&format!("/say #{room} {}", "x".repeat(250)));
        ann.text(&format!("/part #{room}"));
        next(&mut ann, "parted");
    }
    for n in 0..2 {
        ann.text(&format!("/say #busy {n}{}", "y".repeat(250)));
    }
    ann.text("/rooms");
    let rooms = next(&mut ann, "rooms").get("rooms").cloned();
    let names: Vec<String> = match rooms {
        Some(Value::Array(rooms)) => rooms.iter().map(|r| field(r, "room").into()).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(names, ["#busy", "#main", "#new"], "#old went first");
}

#[test]
fn joining_and_parting_in_a_loop_is_rate_limited() {
    let server = start_with(|c| c.rate_limit = 5);
    let (mut ann, _) = v1_at(server.addr(), "/");
    for _ in 0..20 {
        ann.text("/join #loop");
        ann.text("/part #loop");
    }
    // Whatever it was told before, it is closed for going too fast.
    ann.expect_close(1008);
}

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wschat-rooms-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("history.jsonl")
}

#[test]
fn a_restart_with_the_history_file_keeps_rooms_topics_and_histories() {
    let path = temp_file("restart");
    let (epoch, said) = {
        let server = start_with(|c| c.history_file = Some(path.clone()));
        let (mut ann, welcome) = v1_at(server.addr(), "/?rooms=main,rust");
        next(&mut ann, "joined");
        ann.text("/topic #rust borrowing");
        next(&mut ann, "topic");
        ann.text("/say #rust kept line");
        let said = id_of(events_until_message(&mut ann, "kept line").last().unwrap());
        ann.text("main line");
        events_until_message(&mut ann, "main line");
        server.shutdown();
        (field(&welcome, "epoch").to_string(), said)
    };
    let server = start_with(|c| c.history_file = Some(path.clone()));
    let (mut back, welcome) = v1_at(server.addr(), "/?rooms=rust,main");
    assert_eq!(field(&welcome, "epoch"), epoch);
    assert_eq!(ids(welcome.get("history")), [said + 1]);
    let joined = next(&mut back, "joined");
    assert_eq!(field(&joined, "topic"), "borrowing");
    assert_eq!(ids(joined.get("history")), [said]);
    back.text("/say #rust after");
    let event = events_until_message(&mut back, "after").pop().unwrap();
    assert_eq!(id_of(&event), said + 2, "ids go on");
    server.shutdown();
    // And the file is in version 3 (the current format).
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("{\"wschat_history\":3,"), "{text}");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
