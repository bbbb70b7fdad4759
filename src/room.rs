//! The chat itself, free of threads: the `wschat.v1` commands, nickname
//! rules, the JSON events, the history ring. The broadcaster owns one room
//! and is the only code that changes it.

use crate::json::push_string;
use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The subprotocol a client offers to get JSON events (§1.9, §4.2.2).
pub const SUBPROTOCOL: &str = "wschat.v1";
/// Nicknames are 1 to this many characters.
pub const MAX_NICK_CHARS: usize = 24;

/// A client's number, unique for the life of the process.
pub type ClientId = u64;

/// Which chat protocol a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No subprotocol: the seed's behaviour. Text in, the same text out to
    /// everyone else; no events.
    Raw,
    /// `wschat.v1`: commands in, JSON events out, own messages echoed.
    V1,
}

/// What a `wschat.v1` client's text frame asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Input<'a> {
    Say(&'a str),
    Action(&'a str),
    Nick(&'a str),
    Who,
    Unknown(&'a str),
    /// A known command used wrongly; the text says how to use it.
    Usage(&'static str),
    Empty,
}

/// Reads a v1 client's line: `/nick NAME`, `/me TEXT`, `/who`, `//text` for
/// a literal `/text`, anything else is said as is.
///
/// ```
/// use wschat::room::{parse_input, Input};
/// assert_eq!(parse_input("hello"), Input::Say("hello"));
/// assert_eq!(parse_input("/me waves"), Input::Action("waves"));
/// assert_eq!(parse_input("//etc/passwd"), Input::Say("/etc/passwd"));
/// assert_eq!(parse_input("/nick ann"), Input::Nick("ann"));
/// ```
pub fn parse_input(text: &str) -> Input<'_> {
    if text.trim().is_empty() {
        return Input::Empty;
    }
    if text.starts_with("//") {
        return Input::Say(&text[1..]);
    }
    let Some(command_line) = text.strip_prefix('/') else {
        return Input::Say(text);
    };
    let (command, argument) = match command_line.split_once(char::is_whitespace) {
        Some((c, a)) => (c, a.trim()),
        None => (command_line, ""),
    };
    match command {
        "me" if argument.is_empty() => Input::Usage("usage: /me TEXT"),
        "me" => Input::Action(argument),
        "nick" => Input::Nick(argument),
        "who" => Input::Who,
        _ => Input::Unknown(command),
    }
}

/// The default nickname of client `id`; such names are reserved.
pub fn guest_nick(id: ClientId) -> String {
    format!("guest-{id}")
}

/// Checks a requested nickname's form (uniqueness is the room's business).
pub fn validate_nick(nick: &str) -> Result<(), &'static str> {
    let chars = nick.chars().count();
    if chars == 0 {
        return Err("usage: /nick NAME");
    }
    if chars > MAX_NICK_CHARS {
        return Err("nickname is longer than 24 characters");
    }
    if nick.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("nickname may not contain spaces or control characters");
    }
    if let Some(digits) = nick.to_ascii_lowercase().strip_prefix("guest-")
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err("guest-<number> names are reserved");
    }
    Ok(())
}

/// Milliseconds since the Unix epoch, the `ts` of every event.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `{"id":7,"nick":"ann"}`
pub fn push_user(out: &mut String, id: ClientId, nick: &str) {
    let _ = write!(out, "{{\"id\":{id},\"nick\":");
    push_string(out, nick);
    out.push('}');
}

/// The `message` event: the one authoritative copy of a chat line.
pub fn message_event(
    seq: u64,
    from: ClientId,
    nick: &str,
    text: &str,
    ts: u64,
    action: bool,
) -> String {
    let mut out = String::with_capacity(text.len() + nick.len() + 80);
    let _ = write!(out, "{{\"type\":\"message\",\"id\":{seq},\"from\":");
    push_user(&mut out, from, nick);
    out.push_str(",\"text\":");
    push_string(&mut out, text);
    let _ = write!(out, ",\"ts\":{ts}");
    if action {
        out.push_str(",\"action\":true");
    }
    out.push('}');
    out
}

/// `join` and `leave` events.
pub fn presence_event(kind: &str, id: ClientId, nick: &str, ts: u64) -> String {
    let mut out = format!("{{\"type\":\"{kind}\",\"user\":");
    push_user(&mut out, id, nick);
    let _ = write!(out, ",\"ts\":{ts}}}");
    out
}

pub fn nick_event(id: ClientId, nick: &str, old: &str, ts: u64) -> String {
    let mut out = String::from("{\"type\":\"nick\",\"user\":");
    push_user(&mut out, id, nick);
    out.push_str(",\"old\":");
    push_string(&mut out, old);
    let _ = write!(out, ",\"ts\":{ts}}}");
    out
}

pub fn error_event(text: &str) -> String {
    let mut out = String::from("{\"type\":\"error\",\"text\":");
    push_string(&mut out, text);
    out.push('}');
    out
}

/// `[{"id":..,"nick":..},..]`
pub fn push_users<'a>(out: &mut String, users: impl Iterator<Item = (ClientId, &'a str)>) {
    out.push('[');
    for (i, (id, nick)) in users.enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_user(out, id, nick);
    }
    out.push(']');
}

pub fn users_event<'a>(users: impl Iterator<Item = (ClientId, &'a str)>) -> String {
    let mut out = String::from("{\"type\":\"users\",\"users\":");
    push_users(&mut out, users);
    out.push('}');
    out
}

pub fn welcome_event<'a>(
    id: ClientId,
    nick: &str,
    users: impl Iterator<Item = (ClientId, &'a str)>,
    history: &History,
) -> String {
    let mut out = String::from("{\"type\":\"welcome\",\"you\":");
    push_user(&mut out, id, nick);
    out.push_str(",\"users\":");
    push_users(&mut out, users);
    out.push_str(",\"history\":[");
    for (i, event) in history.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(event);
    }
    out.push_str("]}");
    out
}

/// How a v1 message reaches a raw client: plain text, as in the seed.
pub fn raw_line(nick: &str, text: &str, action: bool) -> String {
    if action {
        format!("* {nick} {text}")
    } else {
        format!("{nick}: {text}")
    }
}

/// The last N `message` events, as their JSON text, oldest first.
#[derive(Debug, Default)]
pub struct History {
    limit: usize,
    events: VecDeque<Arc<str>>,
}

impl History {
    pub fn new(limit: usize) -> Self {
        History {
            limit,
            events: VecDeque::with_capacity(limit.min(1024)),
        }
    }

    pub fn push(&mut self, event: Arc<str>) {
        if self.limit == 0 {
            return;
        }
        if self.events.len() == self.limit {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.events.iter().map(|e| &**e)
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse_input("  "), Input::Empty);
        assert_eq!(parse_input("/who"), Input::Who);
        assert_eq!(parse_input("/nick"), Input::Nick(""));
        assert_eq!(parse_input("/me"), Input::Usage("usage: /me TEXT"));
        assert_eq!(parse_input("/dance now"), Input::Unknown("dance"));
        assert_eq!(parse_input("//"), Input::Say("/"));
        assert_eq!(parse_input("//me x"), Input::Say("/me x"));
    }

    #[test]
    fn nick_rules() {
        assert!(validate_nick("ann").is_ok());
        assert!(validate_nick("Åsa-ü_1").is_ok());
        assert!(validate_nick(&"x".repeat(24)).is_ok());
        assert!(validate_nick(&"x".repeat(25)).is_err());
        assert!(validate_nick("a b").is_err());
        assert!(validate_nick("a\u{7}").is_err());
        assert!(validate_nick("").is_err());
        assert!(validate_nick("Guest-12").is_err());
        assert!(validate_nick("guest-").is_ok());
    }

    #[test]
    fn events() {
        assert_eq!(
            message_event(3, 7, "ann", "hi \"you\"", 5, true),
            r#"{"type":"message","id":3,"from":{"id":7,"nick":"ann"},"text":"hi \"you\"","ts":5,"action":true}"#
        );
        let mut history = History::new(2);
        for e in ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"] {
            history.push(e.into());
        }
        assert_eq!(
            welcome_event(
                1,
                "guest-1",
                [(1, "guest-1"), (2, "bo")].into_iter(),
                &history
            ),
            r#"{"type":"welcome","you":{"id":1,"nick":"guest-1"},"users":[{"id":1,"nick":"guest-1"},{"id":2,"nick":"bo"}],"history":[{"b":2},{"c":3}]}"#
        );
        assert_eq!(raw_line("ann", "waves", true), "* ann waves");
    }
}
