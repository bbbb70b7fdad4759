//! The rules of the chat with rooms, tested against `Chat` alone: no
//! thread, no socket.

use super::*;
use crate::json::{self, Value};

const NOW: u64 = 1_000;

fn epoch(text: &str) -> Epoch {
    Epoch::parse(text).unwrap()
}

fn limits() -> Limits {
    Limits {
        history: 3,
        max_rooms_per_client: 3,
        max_rooms: 4,
        max_room_members: 3,
        room_history_bytes: 1 << 20,
    }
}

fn chat_with(limits: Limits) -> Chat {
    Chat::new(limits, 1, epoch("e1"), Vec::new())
}

fn chat() -> Chat {
    chat_with(limits())
}

fn name(text: &str) -> RoomName {
    RoomName::parse(text).unwrap()
}

fn names(rooms: &[&str]) -> Vec<RoomName> {
    rooms.iter().map(|r| name(r)).collect()
}

fn connect(chat: &mut Chat, id: ClientId, mode: Mode, rooms: &[&str]) -> Vec<Output> {
    let mut out = Vec::new();
    chat.connect(NOW, id, mode, None, &names(rooms), &mut out);
    out
}

fn v1(chat: &mut Chat, id: ClientId) -> Vec<Output> {
    connect(chat, id, Mode::V1, &["#main"])
}

fn say(chat: &mut Chat, id: ClientId, text: &str) -> Vec<Output> {
    let mut out = Vec::new();
    let text = text.to_string();
    chat.handle(NOW, Action::Text { id, text }, &mut out);
    out
}

/// Every event replied to `id` (welcomes whole), parsed.
fn replies(out: &[Output], id: ClientId) -> Vec<Value> {
    out.iter()
        .filter_map(|o| match o {
            Output::Reply { to, event } if *to == id => Some(event.clone()),
            Output::Welcome { to, head, tail } if *to == id => Some(format!("{head}{tail}")),
            _ => None,
        })
        .map(|event| json::parse(&event).expect("JSON"))
        .collect()
}

fn field<'a>(event: &'a Value, key: &str) -> Option<&'a str> {
    event.get(key).and_then(Value::as_str)
}

/// The error codes replied to `id`, with the room each names.
fn errors(out: &[Output], id: ClientId) -> Vec<(String, Option<String>)> {
    replies(out, id)
        .iter()
        .filter(|e| field(e, "type") == Some("error"))
        .map(|e| {
            let code = field(e, "code").unwrap().to_string();
            (code, field(e, "room").map(str::to_string))
        })
        .collect()
}

fn error(out: &[Output], id: ClientId) -> String {
    match &errors(out, id)[..] {
        [(code, _)] => code.clone(),
        other => panic!("expected one error to {id}, got {other:?} in {out:?}"),
    }
}

fn text(payload: &Payload) -> &str {
    match payload {
        Payload::Text(t) => t,
        Payload::Binary(_) => panic!("binary payload"),
    }
}

/// The frames sent to rooms: room, mode, text, except.
fn to_rooms(out: &[Output]) -> Vec<(RoomId, Mode, String, Option<ClientId>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::ToRoom {
                room,
                mode,
                payload,
                except,
            } => Some((*room, *mode, text(payload).to_string(), *except)),
            _ => None,
        })
        .collect()
}

fn room_of(chat: &Chat, text: &str) -> RoomId {
    chat.room_id(&name(text)).expect("the room exists")
}

fn ids(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| e.get("id").and_then(Value::as_u64))
        .collect()
}

fn history_of(event: &Value) -> Vec<Value> {
    match event.get("history") {
        Some(Value::Array(items)) => items.clone(),
        other => panic!("no history in {other:?}"),
    }
}

#[test]
fn everyone_starts_in_main_and_the_welcome_names_the_rooms() {
    let mut chat = chat();
    let out = v1(&mut chat, 1);
    assert!(matches!(out[0], Output::Enter { id: 1, room: MAIN }));
    let welcome = &replies(&out, 1)[0];
    assert_eq!(field(welcome, "type"), Some("welcome"));
    assert_eq!(field(welcome, "room"), Some("#main"));
    assert_eq!(
        welcome.get("rooms").unwrap(),
        &json::parse(r##"["#main"]"##).unwrap()
    );
    assert_eq!(chat.rooms_of(1), names(&["#main"]));
    assert_eq!(MAIN, room_of(&chat, "#main"));
}

#[test]
fn a_client_may_connect_to_several_rooms_and_gets_one_joined_per_room_after_the_welcome() {
    let mut chat = chat();
    v1(&mut chat, 1);
    say(&mut chat, 1, "in main");
    let out = connect(&mut chat, 2, Mode::V1, &["#rust", "#main", "#go"]);
    let events = replies(&out, 2);
    let types: Vec<_> = events.iter().map(|e| field(e, "type").unwrap()).collect();
    assert_eq!(types, ["welcome", "joined", "joined"]);
    assert_eq!(
        events[0].get("rooms").unwrap(),
        &json::parse(r##"["#rust","#main","#go"]"##).unwrap()
    );
    assert_eq!(history_of(&events[0]).len(), 1, "main's history");
    assert_eq!(field(&events[1], "room"), Some("#rust"));
    assert_eq!(field(&events[2], "room"), Some("#go"));
    // The others in #main hear a join naming the room.
    let joins = to_rooms(&out);
    assert!(joins.iter().any(|(room, _, text, except)| *room == MAIN
        && text.starts_with(r#"{"type":"join","user":{"id":2,"#)
        && text.ends_with(r##""room":"#main"}"##)
        && *except == Some(2)));
}

#[test]
fn a_client_outside_main_gets_a_welcome_without_users_history_or_room() {
    let mut chat = chat();
    v1(&mut chat, 1);
    say(&mut chat, 1, "in main");
    let out = connect(&mut chat, 2, Mode::V1, &["#rust"]);
    let welcome = &replies(&out, 2)[0];
    assert_eq!(field(welcome, "room"), None);
    assert!(history_of(welcome).is_empty());
    assert_eq!(welcome.get("users").unwrap(), &Value::Array(vec![]));
    // Plain text goes to #main, which it is not in.
    let out = say(&mut chat, 2, "hello");
    assert_eq!(
        errors(&out, 2),
        [("not_in_room".into(), Some("#main".into()))]
    );
    assert!(to_rooms(&out).is_empty());
    // An empty list: no room at all.
    let out = connect(&mut chat, 3, Mode::V1, &[]);
    assert_eq!(field(&replies(&out, 3)[0], "type"), Some("welcome"));
    assert!(chat.rooms_of(3).is_empty());
}

#[test]
fn two_rooms_with_different_members_never_hear_each_other() {
    let mut chat = chat();
    connect(&mut chat, 1, Mode::V1, &["#a"]);
    connect(&mut chat, 2, Mode::V1, &["#b"]);
    let (a, b) = (room_of(&chat, "#a"), room_of(&chat, "#b"));
    assert_ne!(a, b);
    let out = say(&mut chat, 1, "/say #a hello a");
    let sent = to_rooms(&out);
    assert!(sent.iter().all(|(room, ..)| *room == a));
    assert!(sent[1].2.ends_with(r##""room":"#a"}"##));
    assert_eq!(chat.members(&name("#a")), [1]);
    assert_eq!(chat.members(&name("#b")), [2]);
    // Saying in a room one is not in is refused.
    let out = say(&mut chat, 1, "/say #b sneaky");
    assert_eq!(errors(&out, 1), [("not_in_room".into(), Some("#b".into()))]);
    assert!(to_rooms(&out).is_empty());
    assert_eq!(error(&say(&mut chat, 1, "/say b x"), 1), "room_invalid");
    // One answer, about the room, whatever else is wrong with the line.
    assert_eq!(error(&say(&mut chat, 1, "/say #b /me"), 1), "not_in_room");
}

#[test]
fn say_with_me_is_an_action_and_ids_are_one_sequence_across_rooms() {
    let mut chat = chat();
    connect(&mut chat, 1, Mode::V1, &["#main", "#a"]);
    say(&mut chat, 1, "one");
    let out = say(&mut chat, 1, "/say #a /me waves");
    let (_, _, event, _) = &to_rooms(&out)[1];
    let event = json::parse(event).unwrap();
    assert_eq!(event.get("id").and_then(Value::as_u64), Some(2));
    assert_eq!(event.get("action"), Some(&Value::Bool(true)));
    assert_eq!(field(&event, "text"), Some("waves"));
    assert_eq!(to_rooms(&out)[0].2, "* guest-1 waves", "raw members' line");
    assert_eq!(chat.next_seq(), 3);
    assert_eq!(error(&say(&mut chat, 1, "/say #a /me"), 1), "usage");
}

#[test]
fn a_raw_client_is_in_exactly_one_room_and_hears_only_that_room() {
    let mut chat = chat();
    connect(&mut chat, 1, Mode::V1, &["#main", "#go"]);
    let out = connect(&mut chat, 2, Mode::Raw, &["#go", "#main"]);
    assert!(replies(&out, 2).is_empty(), "a raw client gets no events");
    assert_eq!(chat.rooms_of(2), names(&["#go"]));
    let go = room_of(&chat, "#go");
    let out = say(&mut chat, 2, "raw \u{1b} line");
    let sent = to_rooms(&out);
    assert_eq!(sent[0], (go, Mode::Raw, "raw \u{1b} line".into(), Some(2)));
    assert_eq!(sent[1].0, go);
    assert!(sent[1].2.contains(r#""from":{"id":2,"nick":"guest-2"}"#));
    assert!(sent[1].2.ends_with(r##""room":"#go"}"##));
    assert!(sent[1].2.contains("\"text\":\"raw \u{fffd} line\""));
    // Binary from a raw client: to the room's other raw members.
    let mut out = Vec::new();
    chat.handle(
        NOW,
        Action::Binary {
            id: 2,
            data: vec![1],
        },
        &mut out,
    );
    assert!(
        matches!(&out[..], [Output::ToRoom { room, mode: Mode::Raw, except: Some(2), .. }] if *room == go)
    );
    // A line in #main does not reach it.
    let out = say(&mut chat, 1, "main only");
    assert!(to_rooms(&out).iter().all(|(room, ..)| *room == MAIN));
}

#[test]
fn a_raw_client_whose_room_cannot_take_it_is_refused() {
    let mut chat = chat_with(Limits {
        max_room_members: 1,
        ..limits()
    });
    v1(&mut chat, 1);
    let out = connect(&mut chat, 2, Mode::Raw, &["#main"]);
    assert!(matches!(
        &out[..],
        [Output::Refused {
            to: 2,
            code: ErrorCode::RoomFull
        }]
    ));
    let out = connect(&mut chat, 3, Mode::V1, &["#main"]);
    assert_eq!(
        errors(&out, 3),
        [("room_full".into(), Some("#main".into()))]
    );
}

#[test]
fn join_creates_a_room_and_tells_the_joiner_and_the_members() {
    let mut chat = chat();
    v1(&mut chat, 1);
    v1(&mut chat, 2);
    let out = say(&mut chat, 1, "/join #Rust");
    let rust = room_of(&chat, "#rust");
    assert!(
        matches!(out[0], Output::Record(ref r) if r.starts_with(r##"{"type":"room","room":"#rust""##))
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Enter { id: 1, room } if *room == rust))
    );
    let joined = &replies(&out, 1)[0];
    assert_eq!(field(joined, "type"), Some("joined"));
    assert_eq!(joined.get("topic"), Some(&Value::Null));
    let out = say(&mut chat, 2, "/join ＃ＲＵＳＴ");
    let joins = to_rooms(&out);
    assert_eq!(joins.len(), 1);
    assert_eq!(joins[0].0, rust);
    assert_eq!(joins[0].3, Some(2));
    assert!(joins[0].2.starts_with(r#"{"type":"join","user":{"id":2"#));
    assert!(joins[0].2.ends_with(r##""room":"#rust"}"##));
    assert_eq!(chat.members(&name("#rust")), [1, 2]);
    assert_eq!(
        error(&say(&mut chat, 2, "/join #rust"), 2),
        "already_in_room"
    );
    assert_eq!(error(&say(&mut chat, 2, "/join rust"), 2), "room_invalid");
    assert_eq!(error(&say(&mut chat, 2, "/join #a.b"), 2), "room_invalid");
    assert_eq!(error(&say(&mut chat, 2, "/join"), 2), "usage");
}

#[test]
fn rooms_per_client_members_per_room_and_rooms_in_total_are_limited() {
    let mut chat = chat(); // 3 rooms per client, 3 members, 4 rooms
    v1(&mut chat, 1);
    say(&mut chat, 1, "/join #a");
    say(&mut chat, 1, "/join #b");
    assert_eq!(error(&say(&mut chat, 1, "/join #c"), 1), "too_many_rooms");
    assert_eq!(chat.room_id(&name("#c")), None, "not created");
    for id in [2, 3] {
        v1(&mut chat, id);
        say(&mut chat, id, "/join #a");
    }
    v1(&mut chat, 4);
    assert_eq!(error(&say(&mut chat, 4, "/join #a"), 4), "room_full");
    // Four rooms exist with #c; a fifth needs an empty one to evict.
    say(&mut chat, 4, "/join #c");
    assert_eq!(chat.room_count(), 4);
    let out = say(&mut chat, 4, "/join #d");
    assert_eq!(errors(&out, 4), [("room_limit".into(), Some("#d".into()))]);
    let out = connect(&mut chat, 5, Mode::V1, &["#b", "#main", "#a"]);
    assert_eq!(
        errors(&out, 5),
        [
            ("room_full".into(), Some("#main".into())),
            ("room_full".into(), Some("#a".into()))
        ]
    );
    assert_eq!(chat.rooms_of(5), names(&["#b"]));
    // Connecting with more rooms than allowed: the rest are refused.
    let mut chat = chat_with(Limits {
        max_rooms: 10,
        ..limits()
    });
    let out = connect(&mut chat, 1, Mode::V1, &["#a", "#b", "#c", "#d"]);
    assert_eq!(
        errors(&out, 1),
        [("too_many_rooms".into(), Some("#d".into()))]
    );
    assert_eq!(chat.room_id(&name("#d")), None);
}

#[test]
fn creating_a_room_at_the_limit_evicts_the_empty_room_unused_longest() {
    let mut chat = chat(); // 4 rooms at most
    connect(&mut chat, 1, Mode::V1, &["#main", "#a", "#b"]);
    connect(&mut chat, 2, Mode::V1, &["#c"]);
    say(&mut chat, 1, "/say #a kept?");
    say(&mut chat, 1, "/part #b"); // emptied first
    say(&mut chat, 1, "/part #a"); // emptied second
    assert_eq!(chat.room_count(), 4);
    let out = say(&mut chat, 2, "/join #d");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Record(r) if &**r == r##"{"type":"gone","room":"#b"}"##))
    );
    assert_eq!(chat.room_id(&name("#b")), None);
    assert!(chat.room_id(&name("#a")).is_some());
    assert_eq!(
        chat.history(&name("#a")).unwrap().len(),
        1,
        "an empty room keeps its history"
    );
    assert_eq!(chat.room_count(), 4);
    // #main is never evicted, even empty.
    say(&mut chat, 1, "/part");
    say(&mut chat, 2, "/part #c");
    say(&mut chat, 2, "/join #e"); // evicts #a
    say(&mut chat, 2, "/join #f"); // evicts #c
    assert_eq!(error(&say(&mut chat, 2, "/join #g"), 2), "too_many_rooms");
    v1(&mut chat, 3);
    assert_eq!(error(&say(&mut chat, 3, "/join #g"), 3), "room_limit");
    assert!(chat.room_id(&name("#main")).is_some());
}

#[test]
fn part_leaves_a_room_and_the_others_hear_it() {
    let mut chat = chat();
    connect(&mut chat, 1, Mode::V1, &["#main", "#a"]);
    connect(&mut chat, 2, Mode::V1, &["#a"]);
    let a = room_of(&chat, "#a");
    let out = say(&mut chat, 1, "/part #a");
    assert_eq!(field(&replies(&out, 1)[0], "type"), Some("parted"));
    assert_eq!(field(&replies(&out, 1)[0], "room"), Some("#a"));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Exit { id: 1, room } if *room == a))
    );
    let sent = to_rooms(&out);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].2.starts_with(r#"{"type":"leave","user":{"id":1"#));
    assert!(sent[0].2.ends_with(r##""room":"#a"}"##));
    assert_eq!(error(&say(&mut chat, 1, "/part #a"), 1), "not_in_room");
    assert_eq!(
        error(&say(&mut chat, 1, "/part #nowhere"), 1),
        "not_in_room"
    );
    // No argument: #main. Then plain text and /who have no room.
    let out = say(&mut chat, 1, "/part");
    assert_eq!(field(&replies(&out, 1)[0], "room"), Some("#main"));
    assert_eq!(error(&say(&mut chat, 1, "hello"), 1), "not_in_room");
    assert_eq!(error(&say(&mut chat, 1, "/me waves"), 1), "not_in_room");
    assert_eq!(error(&say(&mut chat, 1, "/who"), 1), "not_in_room");
    assert!(chat.rooms_of(1).is_empty());
}

#[test]
fn who_rooms_and_topic() {
    let mut chat = chat();
    connect(&mut chat, 1, Mode::V1, &["#main", "#b"]);
    connect(&mut chat, 2, Mode::V1, &["#b", "#a"]);
    let who = &replies(&say(&mut chat, 2, "/who #b"), 2)[0];
    assert_eq!(field(who, "room"), Some("#b"));
    let Some(Value::Array(users)) = who.get("users") else {
        panic!()
    };
    assert_eq!(ids(users), [1, 2]);
    assert_eq!(
        field(&replies(&say(&mut chat, 1, "/who"), 1)[0], "room"),
        Some("#main")
    );
    assert_eq!(error(&say(&mut chat, 1, "/who #a"), 1), "not_in_room");
    // Topics: set by a member, heard by the room.
    let out = say(&mut chat, 1, "/topic #b all about b");
    let sent = to_rooms(&out);
    assert_eq!(sent[0].0, room_of(&chat, "#b"));
    let topic = json::parse(&sent[0].2).unwrap();
    assert_eq!(field(&topic, "topic"), Some("all about b"));
    assert_eq!(
        topic
            .get("by")
            .and_then(|b| b.get("id"))
            .and_then(Value::as_u64),
        Some(1)
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Record(r) if r.contains(r#""topic":"all about b""#)))
    );
    // Asked: to the asker alone, by null.
    let out = say(&mut chat, 2, "/topic #b");
    assert!(to_rooms(&out).is_empty());
    let answer = &replies(&out, 2)[0];
    assert_eq!(
        (field(answer, "topic"), answer.get("by")),
        (Some("all about b"), Some(&Value::Null))
    );
    assert_eq!(error(&say(&mut chat, 1, "/topic #a x"), 1), "not_in_room");
    assert_eq!(error(&say(&mut chat, 1, "/topic #b a\u{7}"), 1), "bad_text");
    let long = format!("/topic #b {}", "x".repeat(MAX_TOPIC_CHARS + 1));
    assert_eq!(error(&say(&mut chat, 1, &long), 1), "usage");
    let longest = format!("/topic #b {}", "x".repeat(MAX_TOPIC_CHARS));
    assert!(errors(&say(&mut chat, 1, &longest), 1).is_empty());
    // The list: every room, by name, with members and topics.
    say(&mut chat, 1, "/topic #b b");
    let list = &replies(&say(&mut chat, 1, "/rooms"), 1)[0];
    assert_eq!(
        list.get("rooms").unwrap(),
        &json::parse(r##"[{"room":"#a","members":1,"topic":null},{"room":"#b","members":2,"topic":"b"},{"room":"#main","members":1,"topic":null}]"##).unwrap()
    );
    // An empty TEXT (a trailing space) clears it.
    let out = say(&mut chat, 1, "/topic #b ");
    assert_eq!(
        json::parse(&to_rooms(&out)[0].2).unwrap().get("topic"),
        Some(&Value::Null)
    );
}

#[test]
fn a_direct_message_reaches_the_recipient_and_comes_back_to_the_sender_only() {
    let mut chat = chat();
    for id in 1..=3 {
        v1(&mut chat, id);
    }
    say(&mut chat, 2, "/nick Bob");
    let out = say(&mut chat, 1, "/msg bob psst");
    assert!(to_rooms(&out).is_empty());
    let to_bob = replies(&out, 2);
    let back = replies(&out, 1);
    assert_eq!(
        (to_bob.len(), back.len(), replies(&out, 3).len()),
        (1, 1, 0)
    );
    assert_eq!(to_bob, back);
    assert_eq!(field(&to_bob[0], "type"), Some("direct"));
    assert_eq!(field(&to_bob[0], "text"), Some("psst"));
    assert_eq!(to_bob[0].get("id"), None, "not numbered");
    assert_eq!(chat.next_seq(), 1);
    // A guest name still held is a nickname too; one given up is not.
    assert_eq!(replies(&say(&mut chat, 2, "/msg GUEST-3 hi"), 3).len(), 1);
    assert_eq!(
        error(&say(&mut chat, 1, "/msg guest-2 hi"), 1),
        "no_such_user"
    );
    assert_eq!(
        error(&say(&mut chat, 1, "/msg nobody hi"), 1),
        "no_such_user"
    );
    assert_eq!(error(&say(&mut chat, 1, "/msg bob"), 1), "usage");
    assert_eq!(error(&say(&mut chat, 1, "/msg bob a\u{1b}"), 1), "bad_text");
    // To oneself: one copy.
    assert_eq!(replies(&say(&mut chat, 1, "/msg guest-1 memo"), 1).len(), 1);
    // A raw client cannot read one.
    connect(&mut chat, 4, Mode::Raw, &["#main"]);
    assert_eq!(
        error(&say(&mut chat, 1, "/msg guest-4 hi"), 1),
        "no_such_user"
    );
}

#[test]
fn nicknames_are_global_and_a_rename_goes_to_every_v1_client() {
    let mut chat = chat();
    connect(&mut chat, 1, Mode::V1, &["#a"]);
    connect(&mut chat, 2, Mode::V1, &["#b"]);
    say(&mut chat, 1, "/nick ann");
    assert_eq!(error(&say(&mut chat, 2, "/nick ANN"), 2), "nick_taken");
    let out = say(&mut chat, 2, "/nick bo");
    assert!(matches!(
        &out[..],
        [Output::Broadcast {
            mode: Mode::V1,
            except: None,
            ..
        }]
    ));
    assert_eq!(chat.nick(2), Some("bo"));
    // A client that leaves frees its name.
    let mut out = Vec::new();
    chat.handle(NOW, Action::Leave { id: 1 }, &mut out);
    assert!(errors(&say(&mut chat, 2, "/nick ann"), 2).is_empty());
}

#[test]
fn leaving_says_leave_once_per_room() {
    let mut chat = chat();
    connect(&mut chat, 1, Mode::V1, &["#main", "#a"]);
    v1(&mut chat, 2);
    let mut out = Vec::new();
    chat.handle(NOW, Action::Leave { id: 1 }, &mut out);
    let exits = out
        .iter()
        .filter(|o| matches!(o, Output::Exit { id: 1, .. }))
        .count();
    assert_eq!(exits, 2);
    let leaves: Vec<_> = to_rooms(&out).into_iter().map(|(room, ..)| room).collect();
    assert_eq!(leaves.len(), 2);
    assert!(!chat.contains(1));
    assert_eq!(error(&say(&mut chat, 1, "late"), 1), "not_member");
    let mut out = Vec::new();
    chat.handle(NOW, Action::Leave { id: 1 }, &mut out);
    assert!(out.is_empty(), "once");
}

/// Client 9 resumes from `since` into `rooms`; its events by type.
fn resume(chat: &mut Chat, since: u64, epoch_text: &str, rooms: &[&str]) -> Vec<Value> {
    let mut out = Vec::new();
    let resume = Resume {
        since,
        epoch: Some(epoch(epoch_text)),
    };
    let gap = chat.is_gap(&resume, &names(rooms));
    chat.connect(NOW, 9, Mode::V1, Some(resume), &names(rooms), &mut out);
    let events = replies(&out, 9);
    chat.disconnect(9, NOW, &mut Vec::new());
    let any_gap = events.iter().any(|e| e.get("gap").is_some());
    assert_eq!(gap, any_gap, "is_gap agrees with the events");
    events
}

#[test]
fn resuming_gives_each_room_exactly_what_was_missed() {
    let mut chat = chat();
    connect(&mut chat, 1, Mode::V1, &["#main", "#a", "#b"]);
    for line in ["m1", "/say #a a2", "/say #b b3", "m4", "/say #a a5"] {
        say(&mut chat, 1, line);
    }
    let events = resume(&mut chat, 2, "e1", &["#main", "#a", "#b"]);
    assert_eq!(ids(&history_of(&events[0])), [4]);
    assert_eq!(ids(&history_of(&events[1])), [5]);
    assert_eq!(ids(&history_of(&events[2])), [3]);
    assert!(events.iter().all(|e| e.get("gap").is_none()));
    // Up to date: nothing.
    let events = resume(&mut chat, 5, "e1", &["#a"]);
    assert!(history_of(&events[0]).is_empty() && history_of(&events[1]).is_empty());
    // Another epoch: every room's whole history, with gap.
    let events = resume(&mut chat, 2, "zz", &["#main", "#a"]);
    assert_eq!(ids(&history_of(&events[0])), [1, 4]);
    assert_eq!(ids(&history_of(&events[1])), [2, 5]);
    assert!(
        events
            .iter()
            .all(|e| e.get("gap") == Some(&Value::Bool(true)))
    );
}

#[test]
fn a_gap_is_per_room() {
    let mut chat = chat(); // 3 messages kept per room
    connect(&mut chat, 1, Mode::V1, &["#main", "#a"]);
    for line in [
        "/say #a a1",
        "m2",
        "/say #a a3",
        "/say #a a4",
        "/say #a a5",
        "/say #a a6",
    ] {
        say(&mut chat, 1, line);
    }
    let events = resume(&mut chat, 1, "e1", &["#main", "#a"]);
    assert_eq!(
        (ids(&history_of(&events[0])), events[0].get("gap")),
        (vec![2], None)
    );
    assert_eq!(ids(&history_of(&events[1])), [4, 5, 6]);
    assert_eq!(events[1].get("gap"), Some(&Value::Bool(true)), "a3 is lost");
    // From a3 on, #a is whole.
    let events = resume(&mut chat, 3, "e1", &["#a"]);
    assert_eq!(
        (ids(&history_of(&events[1])), events[1].get("gap")),
        (vec![4, 5, 6], None)
    );
}

#[test]
fn a_room_created_after_an_eviction_cannot_promise_it_has_everything() {
    let mut chat = chat_with(Limits {
        max_rooms: 2,
        ..limits()
    });
    connect(&mut chat, 1, Mode::V1, &["#main", "#a"]);
    say(&mut chat, 1, "/say #a a1");
    say(&mut chat, 1, "m2");
    say(&mut chat, 1, "/part #a");
    say(&mut chat, 1, "/join #b"); // evicts #a and its history
    let at = |since| Resume {
        since,
        epoch: Some(epoch("e1")),
    };
    assert!(chat.is_gap(&at(0), &names(&["#a"])));
    assert!(
        !chat.is_gap(&at(1), &names(&["#a"])),
        "a1 was the last #a had"
    );
    assert!(
        chat.is_gap(&at(0), &names(&["#b"])),
        "#b may be #a's successor"
    );
    say(&mut chat, 1, "/part #b");
    let events = resume(&mut chat, 0, "e1", &["#a"]); // evicts #b
    assert_eq!(events[1].get("gap"), Some(&Value::Bool(true)));
}

#[test]
fn one_history_budget_evicts_the_empty_room_unused_longest_then_trims_the_room_itself() {
    let event_bytes =
        room_message_event(1, &name("#a"), (1, "guest-1").into(), "xxxx", NOW, false).len();
    let mut chat = chat_with(Limits {
        history: 100,
        room_history_bytes: 4 * event_bytes,
        ..limits()
    });
    connect(&mut chat, 1, Mode::V1, &["#a", "#b", "#c"]);
    say(&mut chat, 1, "/say #b xxxx");
    say(&mut chat, 1, "/say #c xxxx");
    say(&mut chat, 1, "/say #a xxxx");
    say(&mut chat, 1, "/part #c"); // empty first
    say(&mut chat, 1, "/part #b");
    assert_eq!(chat.history_bytes(), 3 * event_bytes);
    say(&mut chat, 1, "/say #a xxxx");
    assert_eq!(chat.room_count(), 4, "within budget: nothing evicted");
    let out = say(&mut chat, 1, "/say #a xxxx");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Record(r) if r.contains("gone") && r.contains("#c")))
    );
    assert_eq!(chat.room_id(&name("#c")), None);
    assert!(chat.history_bytes() <= 4 * event_bytes);
    say(&mut chat, 1, "/say #a xxxx"); // evicts #b
    assert_eq!(chat.room_id(&name("#b")), None);
    // No empty room left: #a's own oldest messages go.
    let out = say(&mut chat, 1, "/say #a xxxx");
    assert!(out.iter().any(|o| matches!(o, Output::Record(r) if r.starts_with(r##"{"type":"trim","room":"#a","through":"##))));
    assert_eq!(chat.history(&name("#a")).unwrap().len(), 4);
    assert_eq!(chat.history_bytes(), 4 * event_bytes);
    // A budget of nothing keeps nothing, and says so.
    let mut none = chat_with(Limits {
        room_history_bytes: 0,
        ..limits()
    });
    v1(&mut none, 1);
    say(&mut none, 1, "gone at once");
    assert_eq!(
        (
            none.history_bytes(),
            none.history(&name("#main")).unwrap().len()
        ),
        (0, 0)
    );
}

#[test]
fn kept_rooms_come_back_with_topics_and_histories_within_the_limits() {
    let mut chat = chat();
    connect(&mut chat, 1, Mode::V1, &["#main", "#a", "#b"]);
    say(&mut chat, 1, "/topic #a the a");
    say(&mut chat, 1, "/say #a one");
    say(&mut chat, 1, "main");
    let kept = chat.kept();
    assert_eq!(kept[0].name, RoomName::main());
    let mut back = Chat::new(limits(), chat.next_seq(), epoch("e1"), kept.clone());
    assert_eq!(back.room_count(), 3);
    assert_eq!(back.history(&name("#a")).unwrap().len(), 1);
    connect(&mut back, 2, Mode::V1, &["#a"]);
    let joined = &replies(&say(&mut back, 2, "/topic #a"), 2)[0];
    assert_eq!(field(joined, "topic"), Some("the a"));
    // Fewer rooms allowed: the first listed after #main go first.
    let fewer = Chat::new(
        Limits {
            max_rooms: 2,
            ..limits()
        },
        3,
        epoch("e1"),
        kept,
    );
    assert_eq!(fewer.room_count(), 2);
    assert!(fewer.room_id(&RoomName::main()).is_some());
    // Nothing kept: #main alone.
    assert_eq!(chat_with(limits()).room_count(), 1);
}

#[test]
fn v1_only_takes_text_and_unknown_commands_are_still_errors() {
    let mut chat = chat();
    v1(&mut chat, 1);
    let mut out = Vec::new();
    chat.handle(
        NOW,
        Action::Binary {
            id: 1,
            data: vec![0],
        },
        &mut out,
    );
    assert_eq!(error(&out, 1), "text_only");
    assert_eq!(error(&say(&mut chat, 1, "/dance"), 1), "unknown_command");
    assert_eq!(error(&say(&mut chat, 1, "  "), 1), "empty_message");
    assert_eq!(error(&say(&mut chat, 1, "a\u{7}"), 1), "bad_text");
}

// ---------------------------------------------------------------------------
// Signed-in users, private rooms, operators

fn identity(sub: &str, name: &str, op: bool, rooms: &[&str]) -> Identity {
    Identity {
        sub: sub.into(),
        name: Some(name.into()),
        op,
        rooms: names(rooms),
        exp: 2_000_000_000,
    }
}

fn address(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

/// Connects `id` to `#main` from `address`, signed in as `who` if given.
fn visit(chat: &mut Chat, id: ClientId, who: Option<Identity>, from: u8) -> Vec<Output> {
    let visitor = Visitor {
        identity: who,
        address: Some(address(from)),
    };
    let mut out = Vec::new();
    chat.connect_as(
        NOW,
        id,
        Mode::V1,
        None,
        &names(&["#main"]),
        visitor,
        &mut out,
    );
    out
}

fn at(chat: &mut Chat, now: u64, id: ClientId, text: &str) -> Vec<Output> {
    let mut out = Vec::new();
    let text = text.to_string();
    chat.handle(now, Action::Text { id, text }, &mut out);
    out
}

fn records(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Record(line) => Some(line.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_signed_in_name_is_owned_and_a_second_claim_gets_a_suffix() {
    let mut chat = chat();
    v1(&mut chat, 1);
    say(&mut chat, 1, "/nick Ann");
    let out = visit(&mut chat, 2, Some(identity("u-ann", "ann", false, &[])), 1);
    assert_eq!(chat.nick(2), Some("ann"));
    assert_eq!(chat.nick(1), Some("guest-1"), "the guest lost the name");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Broadcast { payload, .. }
        if text(payload).contains("\"old\":\"Ann\"")))
    );
    assert!(
        records(&out)
            .iter()
            .any(|r| r.contains("\"type\":\"owner\""))
    );
    let welcome = &replies(&out, 2)[0];
    assert_eq!(
        welcome.get("you").unwrap().get("verified"),
        Some(&Value::Bool(true))
    );

    assert_eq!(error(&say(&mut chat, 1, "/nick ANN"), 1), "nick_taken");
    assert_eq!(error(&say(&mut chat, 2, "/nick other"), 2), "not_allowed");
    // Another user claiming the name is ann-2, and told so.
    let out = visit(
        &mut chat,
        3,
        Some(identity("u-other", "ann", false, &[])),
        2,
    );
    assert_eq!(chat.nick(3), Some("ann-2"));
    assert_eq!(error(&out, 3), "name_claimed");
    // Owned after its owner left.
    let mut out = Vec::new();
    chat.handle(NOW, Action::Leave { id: 2 }, &mut out);
    assert_eq!(error(&say(&mut chat, 1, "/nick ann"), 1), "nick_taken");
}

#[test]
fn two_connections_of_one_user_are_one_member() {
    let mut chat = chat();
    v1(&mut chat, 1);
    visit(&mut chat, 2, Some(identity("u-ann", "ann", false, &[])), 1);
    let out = visit(&mut chat, 3, Some(identity("u-ann", "ann", false, &[])), 2);
    assert!(to_rooms(&out).is_empty(), "no second join: {out:?}");
    assert_eq!(chat.nick(3), Some("ann"));
    let who = replies(&say(&mut chat, 1, "/who"), 1).remove(0);
    let Some(Value::Array(users)) = who.get("users") else {
        panic!("{who:?}")
    };
    assert_eq!(users.len(), 2, "guest-1 and ann once");
    // A direct message reaches both connections and is kept for the pair
    // only between signed-in users (here: from a guest, not kept).
    let out = say(&mut chat, 1, "/msg ann hi");
    assert_eq!((replies(&out, 2).len(), replies(&out, 3).len()), (1, 1));
    assert!(records(&out).is_empty());
    let mut out = Vec::new();
    chat.handle(NOW, Action::Leave { id: 2 }, &mut out);
    assert!(
        to_rooms(&out).is_empty(),
        "no leave while a connection stays"
    );
    chat.handle(NOW, Action::Leave { id: 3 }, &mut out);
    assert_eq!(to_rooms(&out).len(), 1, "one leave");
}

#[test]
fn direct_messages_between_signed_in_users_come_back_in_the_welcome() {
    let mut chat = chat();
    visit(&mut chat, 1, Some(identity("u-ann", "ann", false, &[])), 1);
    visit(&mut chat, 2, Some(identity("u-bob", "bob", false, &[])), 2);
    let out = say(&mut chat, 1, "/msg bob psst");
    assert!(records(&out)[0].starts_with("{\"type\":\"dm\",\"pair\":[\"u-ann\",\"u-bob\"]"));
    let mut out = Vec::new();
    chat.handle(NOW, Action::Leave { id: 2 }, &mut out);
    let out = visit(&mut chat, 3, Some(identity("u-bob", "bob", false, &[])), 2);
    let welcome = &replies(&out, 3)[0];
    let Some(Value::Array(direct)) = welcome.get("direct") else {
        panic!("{welcome:?}")
    };
    assert_eq!(field(&direct[0], "text"), Some("psst"));
}

#[test]
fn a_private_room_admits_only_the_users_its_tokens_list() {
    let mut chat = chat();
    visit(
        &mut chat,
        1,
        Some(identity("u-sam", "sam", false, &["#staff"])),
        1,
    );
    visit(&mut chat, 2, Some(identity("u-bob", "bob", true, &[])), 2);
    v1(&mut chat, 3);
    assert!(errors(&say(&mut chat, 1, "/join #staff"), 1).is_empty());
    for id in [2, 3] {
        let out = say(&mut chat, id, "/join #staff");
        assert_eq!(error(&out, id), "not_allowed", "an operator too");
        let rooms = replies(&say(&mut chat, id, "/rooms"), id).remove(0);
        assert!(!format!("{rooms:?}").contains("staff"), "{rooms:?}");
    }
    let rooms = replies(&say(&mut chat, 1, "/rooms"), 1).remove(0);
    assert!(format!("{rooms:?}").contains("#staff"));
}

#[test]
fn only_operators_moderate_and_a_kick_removes_the_target() {
    let mut chat = chat();
    visit(&mut chat, 1, Some(identity("u-olga", "olga", true, &[])), 1);
    visit(&mut chat, 2, None, 2);
    visit(&mut chat, 3, None, 3);
    say(&mut chat, 2, "/nick gus");
    assert_eq!(error(&say(&mut chat, 3, "/kick gus"), 3), "not_allowed");
    assert_eq!(error(&say(&mut chat, 2, "/kick olga"), 2), "not_allowed");
    assert_eq!(
        error(&say(&mut chat, 1, "/kick olga"), 1),
        "not_allowed",
        "an operator"
    );
    let out = say(&mut chat, 1, "/kick gus caps");
    let event = replies(&out, 2).remove(0);
    assert_eq!(
        (field(&event, "action"), field(&event, "reason")),
        (Some("kick"), Some("caps"))
    );
    assert_eq!(replies(&out, 3).len(), 1, "the room hears it");
    assert!(out.contains(&Output::Removed {
        to: 2,
        banned: false
    }));
    assert!(out.contains(&Output::Moderated { action: "kick" }));
    assert!(!chat.contains(2));
    // A kick is no ban.
    let visitor = Visitor {
        identity: None,
        address: Some(address(2)),
    };
    assert_eq!(chat.admission(&visitor, NOW), Ok(()));
}

#[test]
fn a_room_kick_parts_the_target_and_a_creator_moderates_its_room() {
    let mut chat = chat();
    visit(&mut chat, 1, None, 1);
    visit(&mut chat, 2, None, 2);
    say(&mut chat, 1, "/join #quiet");
    say(&mut chat, 2, "/join #quiet");
    say(&mut chat, 2, "/nick gus");
    assert_eq!(
        error(&say(&mut chat, 1, "/kick gus"), 1),
        "not_allowed",
        "not server-wide"
    );
    let out = say(&mut chat, 1, "/kick gus #quiet");
    assert!(
        replies(&out, 2)
            .iter()
            .any(|e| field(e, "type") == Some("parted"))
    );
    assert_eq!(chat.rooms_of(2), names(&["#main"]));
    assert!(chat.contains(2));
    // A room ban keeps it out of the room only.
    assert!(errors(&say(&mut chat, 1, "/ban gus #quiet 1h"), 1).is_empty());
    assert_eq!(error(&say(&mut chat, 2, "/join #quiet"), 2), "not_allowed");
    // The creator's right ends when the room is empty.
    say(&mut chat, 1, "/part #quiet");
    say(&mut chat, 1, "/join #quiet");
    assert!(
        errors(&say(&mut chat, 1, "/oplock #quiet on"), 1).is_empty(),
        "created again"
    );
}

#[test]
fn a_ban_holds_at_admission_until_it_ends_or_is_lifted() {
    let mut chat = chat();
    visit(&mut chat, 1, Some(identity("u-olga", "olga", true, &[])), 1);
    visit(&mut chat, 2, None, 2);
    visit(&mut chat, 3, Some(identity("u-bob", "bob", false, &[])), 2);
    let out = at(&mut chat, NOW, 1, "/ban guest-2 1m spam");
    assert!(out.contains(&Output::Removed {
        to: 2,
        banned: true
    }));
    assert!(records(&out)[0].starts_with(
        "{\"type\":\"sanction\",\"kind\":\"ban\",\"target\":{\"address\":\"192.0.2.2\"}"
    ));
    let guest = Visitor {
        identity: None,
        address: Some(address(2)),
    };
    let until = NOW + 60_000;
    assert_eq!(
        chat.admission(&guest, NOW),
        Err(format!("banned until {until}"))
    );
    assert_eq!(chat.admission(&guest, until), Ok(()), "over at its end");
    // A signed-in user from the same address is not held.
    assert!(chat.contains(3));
    let bob = Visitor {
        identity: Some(identity("u-bob", "bob", false, &[])),
        address: Some(address(2)),
    };
    assert_eq!(chat.admission(&bob, NOW), Ok(()));
    // A ban by `sub` holds from any address, until lifted.
    at(&mut chat, NOW, 1, "/ban bob");
    let elsewhere = Visitor {
        address: Some(address(9)),
        ..bob
    };
    assert_eq!(
        chat.admission(&elsewhere, NOW + 1),
        Err("banned".to_string())
    );
    let out = at(&mut chat, NOW, 1, "/unban bob");
    assert!(records(&out)[0].starts_with("{\"type\":\"lift\""));
    assert_eq!(chat.admission(&elsewhere, NOW + 1), Ok(()));
    assert_eq!(
        error(&at(&mut chat, NOW, 1, "/unban bob"), 1),
        "no_such_user"
    );
}

#[test]
fn a_mute_refuses_messages_until_its_end() {
    let mut chat = chat();
    visit(&mut chat, 1, Some(identity("u-olga", "olga", true, &[])), 1);
    visit(&mut chat, 2, None, 2);
    at(&mut chat, NOW, 1, "/mute guest-2 10s");
    let out = at(&mut chat, NOW + 1, 2, "hello");
    assert_eq!(error(&out, 2), "muted");
    assert!(!out.iter().any(|o| matches!(o, Output::Said(_))));
    assert_eq!(
        error(&at(&mut chat, NOW + 1, 2, "/msg olga hi"), 2),
        "muted"
    );
    let out = at(&mut chat, NOW + 10_000, 2, "hello");
    assert!(
        out.iter().any(|o| matches!(o, Output::Said(_))),
        "the mute is over"
    );
}

#[test]
fn kept_identity_comes_back_without_the_sanctions_that_ended() {
    let mut chat = chat();
    visit(
        &mut chat,
        1,
        Some(identity("u-olga", "olga", true, &["#staff"])),
        1,
    );
    visit(&mut chat, 2, None, 2);
    visit(&mut chat, 3, None, 3);
    at(&mut chat, NOW, 1, "/ban guest-2");
    at(&mut chat, NOW, 1, "/mute guest-3 1s");
    let kept = chat.kept_identity(NOW + 5_000);
    assert_eq!(kept.sanctions.len(), 1, "the mute ended");
    let mut again = Chat::new(limits(), 1, epoch("e1"), Vec::new());
    again.restore_identity(kept);
    let guest = Visitor {
        identity: None,
        address: Some(address(2)),
    };
    assert_eq!(
        again.admission(&guest, NOW + 5_000),
        Err("banned".to_string())
    );
    visit(&mut again, 4, None, 4);
    assert_eq!(
        error(&at(&mut again, NOW, 4, "/nick olga"), 4),
        "nick_taken"
    );
    assert_eq!(
        error(&at(&mut again, NOW, 4, "/join #staff"), 4),
        "not_allowed"
    );
}
