//! The chat rules a client of `#main` (the room everybody starts in)
//! has had since the chat had one room, and the rules common to every
//! room, tested against `Chat` alone: no thread, no socket. The rules of
//! rooms themselves are in `chat/tests.rs`.

use super::*;

const NOW: u64 = 1_000;

fn epoch(text: &str) -> Epoch {
    Epoch::parse(text).unwrap()
}

fn limits(history: usize) -> Limits {
    Limits {
        history,
        max_rooms_per_client: 32,
        max_rooms: 10,
        max_room_members: 10,
        room_history_bytes: 1 << 20,
    }
}

fn room() -> Chat {
    Chat::new(limits(3), 1, epoch("e1"), Vec::new())
}

/// What `action` sends, without the delivery-group bookkeeping (`Enter`,
/// `Exit`) and history-file records that go with it.
fn act(room: &mut Chat, action: Action) -> Vec<Output> {
    let mut out = Vec::new();
    room.handle(NOW, action, &mut out);
    out.retain(|o| {
        !matches!(
            o,
            Output::Enter { .. } | Output::Exit { .. } | Output::Record(_)
        )
    });
    out
}

fn main_history(room: &Chat) -> &History {
    room.history(&RoomName::main()).unwrap()
}

fn join(room: &mut Chat, id: ClientId, mode: Mode) -> Vec<Output> {
    act(
        room,
        Action::Join {
            id,
            mode,
            resume: None,
        },
    )
}

fn say(room: &mut Chat, id: ClientId, text: &str) -> Vec<Output> {
    act(
        room,
        Action::Text {
            id,
            text: text.into(),
        },
    )
}

fn text(payload: &Payload) -> &str {
    match payload {
        Payload::Text(t) => t,
        Payload::Binary(_) => panic!("binary payload"),
    }
}

/// The single reply in `out`, which must hold nothing else.
fn only_reply(out: &[Output], to: ClientId) -> &str {
    match out {
        [Output::Reply { to: t, event }] if *t == to => event,
        other => panic!("expected one reply to {to}, got {other:?}"),
    }
}

fn error_code(event: &str) -> &str {
    let start = event.find("\"code\":\"").expect("an error event") + 8;
    &event[start..start + event[start..].find('"').unwrap()]
}

#[test]
fn a_v1_newcomer_is_welcomed_with_the_users_and_history_and_the_others_see_a_join() {
    let mut room = room();
    join(&mut room, 1, Mode::V1);
    say(&mut room, 1, "before");
    let out = join(&mut room, 2, Mode::V1);
    let Output::Welcome { to: 2, head, tail } = &out[0] else {
        panic!("the welcome comes first: {out:?}")
    };
    let event = &format!("{head}{tail}");
    assert!(
        event.starts_with(
            r##"{"type":"welcome","you":{"id":2,"nick":"guest-2"},"epoch":"e1","room":"#main","topic":null,"rooms":["#main"],"users":"##
        )
    );
    assert!(event.contains(r#""users":[{"id":1,"nick":"guest-1"},{"id":2,"nick":"guest-2"}]"#));
    assert!(event.contains(r#""text":"before""#));
    match &out[1] {
        Output::ToRoom {
            room: MAIN,
            mode: Mode::V1,
            payload,
            except: Some(2),
        } => assert!(text(payload).starts_with(r#"{"type":"join","user":{"id":2"#)),
        other => panic!("expected a join for everyone else: {other:?}"),
    }
    assert_eq!(out.len(), 2);
    // A raw newcomer gets no welcome, only the others' join notice.
    let out = join(&mut room, 3, Mode::Raw);
    assert!(matches!(
        &out[..],
        [Output::ToRoom {
            room: MAIN,
            mode: Mode::V1,
            except: Some(3),
            ..
        }]
    ));
}

#[test]
fn a_v1_line_is_numbered_kept_and_sent_to_every_v1_client_and_to_raw_clients_as_text() {
    let mut room = room();
    join(&mut room, 1, Mode::V1);
    let out = say(&mut room, 1, "hello");
    let [
        Output::ToRoom {
            room: MAIN,
            mode: Mode::Raw,
            payload: raw,
            except: Some(1),
        },
        Output::ToRoom {
            room: MAIN,
            mode: Mode::V1,
            payload: v1,
            except: None,
        },
        Output::Said(said),
    ] = &out[..]
    else {
        panic!("unexpected outputs {out:?}")
    };
    assert_eq!(text(raw), "guest-1: hello");
    assert!(text(v1).starts_with(
        r#"{"type":"message","id":1,"from":{"id":1,"nick":"guest-1"},"text":"hello""#
    ));
    assert_eq!(&**said, text(v1));
    let out = say(&mut room, 1, "/me waves");
    assert!(
        matches!(&out[0], Output::ToRoom { room: MAIN, payload, .. } if text(payload) == "* guest-1 waves")
    );
    assert!(
        matches!(&out[1], Output::ToRoom { room: MAIN, payload, .. } if text(payload).contains(r#""id":2,"#) && text(payload).ends_with(r#""action":true}"#))
    );
    assert_eq!(main_history(&room).len(), 2);
}

#[test]
fn a_raw_line_goes_verbatim_to_other_raw_clients_and_as_a_message_to_v1_clients() {
    let mut room = room();
    join(&mut room, 1, Mode::Raw);
    let out = say(&mut room, 1, "a\u{1b}[31mb");
    assert!(
        matches!(&out[0], Output::ToRoom { room: MAIN, mode: Mode::Raw, payload, except: Some(1) } if text(payload) == "a\u{1b}[31mb")
    );
    // Control characters reach v1 clients (and the history) as U+FFFD.
    assert!(
        matches!(&out[1], Output::ToRoom { room: MAIN, mode: Mode::V1, payload, .. } if text(payload).contains("\"text\":\"a\u{fffd}[31mb\""))
    );
    let out = act(
        &mut room,
        Action::Binary {
            id: 1,
            data: vec![0, 1, 2],
        },
    );
    assert_eq!(
        out,
        vec![Output::ToRoom {
            room: MAIN,
            mode: Mode::Raw,
            payload: Payload::Binary(vec![0, 1, 2]),
            except: Some(1)
        }]
    );
}

#[test]
fn nicknames_are_unique_ignoring_case_and_a_rename_is_announced() {
    let mut room = room();
    join(&mut room, 1, Mode::V1);
    join(&mut room, 2, Mode::V1);
    let out = say(&mut room, 1, "/nick Ann");
    assert!(
        matches!(&out[..], [Output::Broadcast { mode: Mode::V1, payload, except: None }]
        if text(payload).starts_with(r#"{"type":"nick","user":{"id":1,"nick":"Ann"},"old":"guest-1""#))
    );
    assert_eq!(room.nick(1), Some("Ann"));
    assert_eq!(
        error_code(only_reply(&say(&mut room, 2, "/nick aNN"), 2)),
        "nick_taken"
    );
    assert_eq!(
        error_code(only_reply(&say(&mut room, 1, "/nick Ann"), 1)),
        "nick_unchanged"
    );
    assert_eq!(
        error_code(only_reply(&say(&mut room, 2, "/nick a b"), 2)),
        "nick_invalid"
    );
    assert_eq!(
        error_code(only_reply(&say(&mut room, 2, "/nick guest-1"), 2)),
        "nick_invalid"
    );
    // A case change of one's own name is a rename, not a clash.
    assert!(matches!(
        &say(&mut room, 1, "/nick ANN")[..],
        [Output::Broadcast { .. }]
    ));
    // A name is free again once its holder leaves.
    act(&mut room, Action::Leave { id: 1 });
    assert!(matches!(
        &say(&mut room, 2, "/nick ann")[..],
        [Output::Broadcast { .. }]
    ));
}

#[test]
fn an_error_quotes_a_short_excerpt_of_the_input() {
    let mut room = room();
    join(&mut room, 1, Mode::V1);
    // 65,000 control characters: each would be six bytes of JSON.
    let long = format!("/{}", "\u{1}".repeat(65_000));
    let out = say(&mut room, 1, &long);
    let event = only_reply(&out, 1);
    assert_eq!(error_code(event), "unknown_command");
    let quoted = format!("unknown command /{}…", "\\u0001".repeat(MAX_QUOTED_CHARS));
    assert!(event.contains(&quoted), "{event}");
    assert!(event.len() < 300, "{} bytes", event.len());
    // At the bound: quoted whole, no ellipsis.
    let exact = format!("/{}", "x".repeat(MAX_QUOTED_CHARS));
    let out = say(&mut room, 1, &exact);
    assert!(only_reply(&out, 1).contains(&format!("unknown command {exact}\"")));
    assert_eq!(
        excerpt(&"é".repeat(MAX_QUOTED_CHARS + 1)).chars().count(),
        MAX_QUOTED_CHARS + 1
    );
}

#[test]
fn commands_answer_only_the_asker() {
    let mut room = room();
    join(&mut room, 1, Mode::V1);
    join(&mut room, 2, Mode::Raw);
    assert_eq!(
        only_reply(&say(&mut room, 1, "/who"), 1),
        r##"{"type":"users","users":[{"id":1,"nick":"guest-1"},{"id":2,"nick":"guest-2"}],"room":"#main"}"##
    );
    assert_eq!(
        error_code(only_reply(&say(&mut room, 1, "/dance"), 1)),
        "unknown_command"
    );
    assert_eq!(
        error_code(only_reply(&say(&mut room, 1, "/me"), 1)),
        "usage"
    );
    assert_eq!(
        error_code(only_reply(&say(&mut room, 1, "   "), 1)),
        "empty_message"
    );
    assert_eq!(
        error_code(only_reply(&say(&mut room, 1, "bell\u{7}"), 1)),
        "bad_text"
    );
    let out = act(
        &mut room,
        Action::Binary {
            id: 1,
            data: vec![1],
        },
    );
    assert_eq!(error_code(only_reply(&out, 1)), "text_only");
    // None of those was a chat line.
    assert_eq!(main_history(&room).len(), 0);
}

#[test]
fn leaving_is_announced_once_and_late_messages_from_a_leaver_reach_nobody() {
    let mut room = room();
    join(&mut room, 1, Mode::V1);
    join(&mut room, 2, Mode::V1);
    let out = act(&mut room, Action::Leave { id: 2 });
    assert!(
        matches!(&out[..], [Output::ToRoom { room: MAIN, mode: Mode::V1, payload, except: Some(2) }]
        if text(payload).starts_with(r#"{"type":"leave","user":{"id":2"#))
    );
    assert!(act(&mut room, Action::Leave { id: 2 }).is_empty());
    // Only the sender is told (it is gone, unless its node was cut off:
    // see a_message_from_a_non_member_gets_not_member).
    let late = say(&mut room, 2, "still here?");
    assert!(
        matches!(&late[..], [Output::Reply { to: 2, .. }]),
        "{late:?}"
    );
    assert_eq!(room.len(), 1);
    assert_eq!(main_history(&room).len(), 0);
}

#[test]
fn the_history_keeps_the_last_lines_and_numbering_continues_from_the_loaded_history() {
    let mut room = Chat::new(limits(2), 41, epoch("e1"), Vec::new());
    join(&mut room, 1, Mode::V1);
    for line in ["a", "b", "c"] {
        say(&mut room, 1, line);
    }
    let kept: Vec<&str> = main_history(&room).iter().collect();
    assert_eq!(kept.len(), 2);
    assert!(kept[0].contains(r#""id":42,"#) && kept[0].contains(r#""text":"b""#));
    assert!(kept[1].contains(r#""id":43,"#));
}

#[test]
fn every_error_code_is_distinct_and_lowercase() {
    let names: std::collections::BTreeSet<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(names.len(), ErrorCode::ALL.len());
    assert!(
        names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
    );
}

#[test]
fn newcomers_share_the_welcome_tail_until_the_history_changes() {
    let mut room = room();
    join(&mut room, 1, Mode::V1);
    say(&mut room, 1, "one");
    let tail = |out: &[Output]| match &out[0] {
        Output::Welcome { tail, .. } => tail.clone(),
        other => panic!("not a welcome: {other:?}"),
    };
    let a = tail(&join(&mut room, 2, Mode::V1));
    let b = tail(&join(&mut room, 3, Mode::V1));
    assert!(Arc::ptr_eq(&a, &b), "built once, shared");
    say(&mut room, 1, "two");
    let c = tail(&join(&mut room, 4, Mode::V1));
    assert!(!Arc::ptr_eq(&a, &c) && c.contains("\"text\":\"two\""));
}

/// The welcome of a resuming client `id` (`/?since=ID&epoch=E`), which
/// then leaves again; checks that `Chat::is_gap` says what it says.
fn welcome_of(room: &mut Chat, id: ClientId, since: u64, epoch_text: Option<&str>) -> String {
    let resume = Resume {
        since,
        epoch: epoch_text.map(epoch),
    };
    let predicted = room.is_gap(&resume, &[RoomName::main()]);
    let out = act(
        room,
        Action::Join {
            id,
            mode: Mode::V1,
            resume: Some(resume),
        },
    );
    let Some(Output::Reply { event, .. }) = out.into_iter().next() else {
        panic!("no welcome")
    };
    assert_eq!(predicted, event.ends_with(",\"gap\":true}"), "{event}");
    act(room, Action::Leave { id });
    event
}

/// `/?since=ID&epoch=E`: a resuming client gets the messages after ID
/// only; an id older than the history, or one never given, gets
/// everything and a gap.
#[test]
fn a_resuming_member_gets_what_it_missed() {
    let mut room = room(); // keeps 3
    join(&mut room, 1, Mode::V1);
    for n in 0..5 {
        say(&mut room, 1, &format!("line {n}")); // ids 1..=5
    }
    let e1 = Some("e1");
    let w = welcome_of(&mut room, 2, 3, e1);
    assert!(
        w.contains("\"id\":4,") && w.contains("\"id\":5,") && !w.contains("\"id\":3,"),
        "{w}"
    );
    assert!(!w.contains("gap"), "{w}");
    assert!(w.contains(",\"epoch\":\"e1\",\"room\":\"#main\","), "{w}");
    let w = welcome_of(&mut room, 3, 5, e1);
    assert!(w.ends_with("\"history\":[]}"), "{w}");
    let w = welcome_of(&mut room, 4, 1, e1);
    assert!(
        w.contains("\"id\":3,") && w.ends_with(",\"gap\":true}"),
        "{w}"
    );
    let w = welcome_of(&mut room, 5, 6, e1);
    assert!(
        w.contains("\"id\":3,") && w.ends_with(",\"gap\":true}"),
        "{w}"
    );
}

/// A message from a client the room does not count as a member (in
/// cluster mode: announced gone while its node was cut off, yet still
/// connected) gets an error, never silence, and reaches nobody else.
#[test]
fn a_message_from_a_non_member_gets_not_member() {
    let mut room = room();
    join(&mut room, 1, Mode::V1);
    act(&mut room, Action::Leave { id: 2 }); // never joined: no-op
    for out in [
        say(&mut room, 2, "hello?"),
        act(
            &mut room,
            Action::Binary {
                id: 2,
                data: vec![1],
            },
        ),
    ] {
        assert_eq!(out.len(), 1, "{out:?}");
        let Output::Reply { to: 2, event } = &out[0] else {
            panic!("{out:?}")
        };
        assert!(event.contains(r#""code":"not_member""#), "{event}");
    }
    assert!(main_history(&room).iter().next().is_none(), "nothing said");
}

/// Ids start again in a new history: a position from another epoch, or
/// from none, names messages this room never had, however the numbers
/// compare.
#[test]
fn a_position_from_another_epoch_or_none_is_a_gap() {
    let mut room = room(); // keeps 3, epoch e1
    join(&mut room, 1, Mode::V1);
    for n in 0..5 {
        say(&mut room, 1, &format!("line {n}")); // ids 1..=5
    }
    let whole_with_gap = |w: &str| {
        w.contains("\"id\":3,") && w.contains("\"id\":5,") && w.ends_with(",\"gap\":true}")
    };
    // The same id in the right epoch is exact; in another or none, a gap.
    assert!(!welcome_of(&mut room, 2, 4, Some("e1")).contains("gap"));
    let w = welcome_of(&mut room, 3, 4, Some("e0"));
    assert!(whole_with_gap(&w), "{w}");
    let w = welcome_of(&mut room, 4, 4, None);
    assert!(whole_with_gap(&w), "{w}");
    // Epochs are compared exactly (no folding of case).
    let w = welcome_of(&mut room, 5, 4, Some("E1"));
    assert!(whole_with_gap(&w), "{w}");
    // A newcomer without `since` is told the epoch to come back with.
    let out = join(&mut room, 6, Mode::V1);
    let Some(Output::Welcome { head, .. }) = out.first() else {
        panic!("no welcome: {out:?}")
    };
    assert!(
        head.contains(",\"epoch\":\"e1\",\"room\":\"#main\","),
        "{head}"
    );
}

/// Cluster mode: when Redis loses its data, the room starts a new epoch;
/// the old history goes, members stay, and old positions are gaps.
#[test]
fn a_new_epoch_forgets_the_history_but_not_the_members() {
    let mut room = room();
    join(&mut room, 1, Mode::V1);
    for n in 0..3 {
        say(&mut room, 1, &format!("old {n}")); // ids 1..=3
    }
    room.start_epoch(epoch("e2"));
    assert_eq!(room.epoch(), &epoch("e2"));
    assert!(main_history(&room).is_empty() && room.contains(1));
    room.set_next_seq(1);
    say(&mut room, 1, "new 0"); // id 1 again, in e2
    let w = welcome_of(&mut room, 2, 3, Some("e1"));
    assert!(w.ends_with(",\"gap\":true}") && w.contains("new 0"), "{w}");
    assert!(!w.contains("old "), "{w}");
    let w = welcome_of(&mut room, 3, 0, Some("e2"));
    assert!(!w.contains("gap") && w.contains("new 0"), "{w}");
    // A fresh newcomer's shared welcome is rebuilt too.
    let out = join(&mut room, 4, Mode::V1);
    let Some(Output::Welcome { head, tail, .. }) = out.first() else {
        panic!("no welcome: {out:?}")
    };
    assert!(
        head.contains("\"epoch\":\"e2\"") && !tail.contains("old "),
        "{tail}"
    );
}
