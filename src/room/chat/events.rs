//! The events of a chat with rooms, as JSON text: today's events with a
//! `room` field, and the new ones (`joined`, `parted`, `rooms`, `topic`,
//! `direct`). Built by pushing known keys; user text goes through
//! `json::push_string`; a room name needs no escaping (`#a-z0-9-_`).

use super::super::events::{push_user, push_users};
use super::super::{ClientId, Epoch, ErrorCode, RoomName};
use crate::json::push_string;
use std::fmt::Write;

/// The `message` event of a chat line in `room`.
#[allow(clippy::too_many_arguments)]
pub fn room_message_event(
    seq: u64,
    room: &RoomName,
    from: ClientId,
    nick: &str,
    text: &str,
    ts: u64,
    action: bool,
) -> String {
    let mut out = String::with_capacity(text.len() + nick.len() + 100);
    let _ = write!(out, "{{\"type\":\"message\",\"id\":{seq},\"from\":");
    push_user(&mut out, from, nick);
    out.push_str(",\"text\":");
    push_string(&mut out, text);
    // Today's events only gain fields, after the ones they had (an
    // action still ends with `"action":true`).
    let _ = write!(out, ",\"ts\":{ts},\"room\":\"{room}\"");
    if action {
        out.push_str(",\"action\":true");
    }
    out.push('}');
    out
}

/// `join` and `leave` events of `room`.
pub fn room_presence_event(
    kind: &str,
    room: &RoomName,
    id: ClientId,
    nick: &str,
    ts: u64,
) -> String {
    let mut out = format!("{{\"type\":\"{kind}\",\"user\":");
    push_user(&mut out, id, nick);
    let _ = write!(out, ",\"ts\":{ts},\"room\":\"{room}\"}}");
    out
}

/// The reply to `/who`.
pub fn room_users_event<'a>(
    room: &RoomName,
    users: impl Iterator<Item = (ClientId, &'a str)>,
) -> String {
    let mut out = String::from("{\"type\":\"users\",\"users\":");
    push_users(&mut out, users);
    let _ = write!(out, ",\"room\":\"{room}\"}}");
    out
}

/// An `error` about `room`.
pub fn room_error_event(code: ErrorCode, text: &str, room: &RoomName) -> String {
    let mut out = format!(
        "{{\"type\":\"error\",\"code\":\"{}\",\"text\":",
        code.as_str()
    );
    push_string(&mut out, text);
    let _ = write!(out, ",\"room\":\"{room}\"}}");
    out
}

fn push_topic(out: &mut String, topic: Option<&str>) {
    match topic {
        Some(topic) => push_string(out, topic),
        None => out.push_str("null"),
    }
}

fn push_history<'a>(out: &mut String, events: impl Iterator<Item = &'a str>) {
    out.push('[');
    for (i, event) in events.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(event);
    }
    out.push(']');
}

/// To a client now in `room`: its topic, members and history (the
/// messages after `since` when resuming), `"gap":true` if some it missed
/// are no longer kept.
pub fn joined_event<'a>(
    room: &RoomName,
    topic: Option<&str>,
    users: impl Iterator<Item = (ClientId, &'a str)>,
    history: impl Iterator<Item = &'a str>,
    gap: bool,
) -> String {
    let mut out = format!("{{\"type\":\"joined\",\"room\":\"{room}\",\"topic\":");
    push_topic(&mut out, topic);
    out.push_str(",\"users\":");
    push_users(&mut out, users);
    out.push_str(",\"history\":");
    push_history(&mut out, history);
    if gap {
        out.push_str(",\"gap\":true");
    }
    out.push('}');
    out
}

pub fn parted_event(room: &RoomName) -> String {
    format!("{{\"type\":\"parted\",\"room\":\"{room}\"}}")
}

/// The reply to `/rooms`: each room's name, member count and topic.
pub fn rooms_event<'a>(
    rooms: impl Iterator<Item = (&'a RoomName, usize, Option<&'a str>)>,
) -> String {
    let mut out = String::from("{\"type\":\"rooms\",\"rooms\":[");
    for (i, (room, members, topic)) in rooms.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"room\":\"{room}\",\"members\":{members},\"topic\":"
        );
        push_topic(&mut out, topic);
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// A topic set (`by` who) or, with `by` `None`, the answer to asking.
pub fn topic_event(
    room: &RoomName,
    topic: Option<&str>,
    by: Option<(ClientId, &str)>,
    ts: u64,
) -> String {
    let mut out = format!("{{\"type\":\"topic\",\"room\":\"{room}\",\"topic\":");
    push_topic(&mut out, topic);
    out.push_str(",\"by\":");
    match by {
        Some((id, nick)) => push_user(&mut out, id, nick),
        None => out.push_str("null"),
    }
    let _ = write!(out, ",\"ts\":{ts}}}");
    out
}

/// A direct message: not numbered, not kept.
pub fn direct_event(from: (ClientId, &str), to: (ClientId, &str), text: &str, ts: u64) -> String {
    let mut out = String::from("{\"type\":\"direct\",\"from\":");
    push_user(&mut out, from.0, from.1);
    out.push_str(",\"to\":");
    push_user(&mut out, to.0, to.1);
    out.push_str(",\"text\":");
    push_string(&mut out, text);
    let _ = write!(out, ",\"ts\":{ts}}}");
    out
}

/// `{"type":"welcome","you":..,"epoch":..,["room":"#main","topic":..,]
/// "rooms":[..],"users":[..],"history":` — the head of a welcome; `main`
/// is `#main`'s topic if the client is in `#main` (then its `users`
/// follow, else `[]`).
pub fn chat_welcome_head<'a>(
    id: ClientId,
    nick: &str,
    epoch: &Epoch,
    main: Option<Option<&str>>,
    rooms: impl Iterator<Item = &'a RoomName>,
    users: impl Iterator<Item = (ClientId, &'a str)>,
) -> String {
    let mut out = String::from("{\"type\":\"welcome\",\"you\":");
    push_user(&mut out, id, nick);
    let _ = write!(out, ",\"epoch\":\"{epoch}\"");
    if let Some(topic) = main {
        let _ = write!(out, ",\"room\":\"{}\",\"topic\":", RoomName::main());
        push_topic(&mut out, topic);
    }
    out.push_str(",\"rooms\":[");
    for (i, room) in rooms.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{room}\"");
    }
    out.push_str("],\"users\":");
    push_users(&mut out, users);
    out.push_str(",\"history\":");
    out
}

/// The end of a welcome whose history is `events`.
pub fn chat_welcome_end<'a>(events: impl Iterator<Item = &'a str>, gap: bool) -> String {
    let mut out = String::new();
    push_history(&mut out, events);
    if gap {
        out.push_str(",\"gap\":true");
    }
    out.push('}');
    out
}

/// The history file's record of a room: created, or its topic set, and
/// the newest id its history has let go of.
pub fn room_record(room: &RoomName, topic: Option<&str>, dropped: u64) -> String {
    let mut out = format!("{{\"type\":\"room\",\"room\":\"{room}\",\"topic\":");
    push_topic(&mut out, topic);
    let _ = write!(out, ",\"dropped\":{dropped}}}");
    out
}

/// The history file's record of a room evicted.
pub fn gone_record(room: &RoomName) -> String {
    format!("{{\"type\":\"gone\",\"room\":\"{room}\"}}")
}

/// The history file's record of a room's oldest messages let go of, up to
/// and including id `through`, to keep within `--room-history-bytes`.
pub fn trim_record(room: &RoomName, through: u64) -> String {
    format!("{{\"type\":\"trim\",\"room\":\"{room}\",\"through\":{through}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_their_room() {
        let rust = RoomName::parse("#rust").unwrap();
        assert_eq!(
            room_message_event(3, &rust, 7, "ann", "hi", 5, false),
            r##"{"type":"message","id":3,"from":{"id":7,"nick":"ann"},"text":"hi","ts":5,"room":"#rust"}"##
        );
        assert_eq!(
            room_presence_event("leave", &rust, 7, "ann", 5),
            r##"{"type":"leave","user":{"id":7,"nick":"ann"},"ts":5,"room":"#rust"}"##
        );
        assert_eq!(
            joined_event(
                &rust,
                None,
                [(7, "ann")].into_iter(),
                ["{}"].into_iter(),
                true
            ),
            r##"{"type":"joined","room":"#rust","topic":null,"users":[{"id":7,"nick":"ann"}],"history":[{}],"gap":true}"##
        );
        assert_eq!(
            topic_event(&rust, Some("t \"q\""), Some((7, "ann")), 5),
            r##"{"type":"topic","room":"#rust","topic":"t \"q\"","by":{"id":7,"nick":"ann"},"ts":5}"##
        );
        assert_eq!(
            rooms_event([(&rust, 2, Some("x"))].into_iter()),
            r##"{"type":"rooms","rooms":[{"room":"#rust","members":2,"topic":"x"}]}"##
        );
        assert_eq!(
            direct_event((7, "ann"), (9, "bob"), "psst", 5),
            r#"{"type":"direct","from":{"id":7,"nick":"ann"},"to":{"id":9,"nick":"bob"},"text":"psst","ts":5}"#
        );
        assert_eq!(
            room_error_event(ErrorCode::Usage, "x", &rust),
            r##"{"type":"error","code":"usage","text":"x","room":"#rust"}"##
        );
        let epoch = Epoch::parse("e1").unwrap();
        let head = chat_welcome_head(
            1,
            "g",
            &epoch,
            None,
            [&rust].into_iter(),
            std::iter::empty(),
        );
        assert_eq!(
            head + &chat_welcome_end(std::iter::empty(), false),
            r##"{"type":"welcome","you":{"id":1,"nick":"g"},"epoch":"e1","rooms":["#rust"],"users":[],"history":[]}"##
        );
        let main = RoomName::main();
        let head = chat_welcome_head(
            1,
            "g",
            &epoch,
            Some(Some("hi")),
            [&main].into_iter(),
            std::iter::empty(),
        );
        assert_eq!(
            head + &chat_welcome_end(std::iter::empty(), false),
            r##"{"type":"welcome","you":{"id":1,"nick":"g"},"epoch":"e1","room":"#main","topic":"hi","rooms":["#main"],"users":[],"history":[]}"##
        );
    }
}
