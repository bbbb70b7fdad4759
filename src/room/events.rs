//! The `wschat.v1` events as JSON text. Every event is built by pushing
//! known keys; user text goes through `json::push_string`.

use super::{ClientId, Epoch, ErrorCode, History, Resume};
use crate::json::push_string;
use std::fmt::Write;

/// A user as events show it: `{"id":7,"nick":"ann"}`, plus
/// `"verified":true` when signed in and `"op":true` for an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRef<'a> {
    pub id: ClientId,
    pub nick: &'a str,
    /// Signed in with a valid token.
    pub verified: bool,
    /// An operator (its token says `"role":"op"`).
    pub op: bool,
}

/// A guest: an id and a nickname.
impl<'a> From<(ClientId, &'a str)> for UserRef<'a> {
    fn from((id, nick): (ClientId, &'a str)) -> Self {
        UserRef {
            id,
            nick,
            verified: false,
            op: false,
        }
    }
}

/// `{"id":7,"nick":"ann"}`
pub fn push_user(out: &mut String, id: ClientId, nick: &str) {
    push_user_ref(out, (id, nick).into());
}

/// `{"id":7,"nick":"ann","verified":true,"op":true}` (the flags only when
/// true: a guest's object is as it always was).
pub fn push_user_ref(out: &mut String, user: UserRef<'_>) {
    let _ = write!(out, "{{\"id\":{},\"nick\":", user.id);
    push_string(out, user.nick);
    if user.verified {
        out.push_str(",\"verified\":true");
    }
    if user.op {
        out.push_str(",\"op\":true");
    }
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

/// The `id` of a `message` event built by [`message_event`], read back from
/// its fixed prefix without parsing the JSON.
pub fn message_id(event: &str) -> Option<u64> {
    let rest = event.strip_prefix("{\"type\":\"message\",\"id\":")?;
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..digits].parse().ok()
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

/// `{"type":"error","code":"nick_taken","text":"..."}`: the code is for
/// programs (stable), the text for people.
pub fn error_event(code: ErrorCode, text: &str) -> String {
    let mut out = format!(
        "{{\"type\":\"error\",\"code\":\"{}\",\"text\":",
        code.as_str()
    );
    push_string(&mut out, text);
    out.push('}');
    out
}

/// `[{"id":..,"nick":..},..]`
pub fn push_users<'a, U: Into<UserRef<'a>>>(out: &mut String, users: impl Iterator<Item = U>) {
    out.push('[');
    for (i, user) in users.enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_user_ref(out, user.into());
    }
    out.push(']');
}

pub fn users_event<'a>(users: impl Iterator<Item = (ClientId, &'a str)>) -> String {
    let mut out = String::from("{\"type\":\"users\",\"users\":");
    push_users(&mut out, users);
    out.push('}');
    out
}

/// The `welcome` a newcomer gets: which history of ids this is (`epoch`),
/// who it is, who is here, the history. `resume` is where a resuming
/// client stands: it then gets only the messages after its `since`, or,
/// if [`resume_gap`] says it missed what is no longer kept or stands in
/// another history, the whole history and `"gap":true`.
///
/// Without `resume` it is `welcome_head` (this newcomer's own) followed by
/// `welcome_tail`, the same for every newcomer until the history changes:
/// the server sends them as two frames of one message, the tail built and
/// encoded once.
#[allow(clippy::too_many_arguments)]
pub fn welcome_event<'a>(
    id: ClientId,
    nick: &str,
    users: impl Iterator<Item = (ClientId, &'a str)>,
    history: &History,
    epoch: &Epoch,
    resume: Option<&Resume>,
    next_seq: u64,
) -> String {
    let mut out = welcome_head(id, nick, epoch, users);
    let (events, gap) = match resume {
        Some(resume) if resume_gap(resume, epoch, history, next_seq) => {
            (history.iter().collect(), true)
        }
        Some(resume) => history.after(resume.since),
        None => (history.iter().collect(), false),
    };
    out.push('[');
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(event);
    }
    out.push(']');
    if gap {
        out.push_str(",\"gap\":true");
    }
    out.push('}');
    out
}

/// Whether a client resuming from `resume` cannot be given exactly what
/// it missed: it names another epoch or none (its ids belong to a history
/// this server does not have), its `since` is not an id given yet
/// (`next_seq` or more: the same epoch, but the ids after it were lost,
/// say by a crash before they reached the disk), or messages after it are
/// no longer kept.
pub fn resume_gap(resume: &Resume, epoch: &Epoch, history: &History, next_seq: u64) -> bool {
    resume.epoch.as_ref() != Some(epoch)
        || resume.since >= next_seq
        || resume.since < history.dropped_through()
}

/// `{"type":"welcome","you":{..},"epoch":"..","users":[..],"history":`
pub fn welcome_head<'a>(
    id: ClientId,
    nick: &str,
    epoch: &Epoch,
    users: impl Iterator<Item = (ClientId, &'a str)>,
) -> String {
    let mut out = String::from("{\"type\":\"welcome\",\"you\":");
    push_user(&mut out, id, nick);
    // An epoch needs no escaping (letters, digits, - and _).
    let _ = write!(out, ",\"epoch\":\"{epoch}\",\"users\":");
    push_users(&mut out, users);
    out.push_str(",\"history\":");
    out
}

/// `[..the history..]}`: the end of every welcome.
pub fn welcome_tail(history: &History) -> String {
    let mut out = String::with_capacity(history.bytes() + history.len() + 3);
    out.push('[');
    for (i, event) in history.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(event);
    }
    out.push_str("]}");
    out
}

/// How a v1 message reaches a raw client: plain text, as in the PHP
/// tutorial's chat.
pub fn raw_line(nick: &str, text: &str, action: bool) -> String {
    if action {
        format!("* {nick} {text}")
    } else {
        format!("{nick}: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                &history,
                &Epoch::parse("e1").unwrap(),
                None,
                1
            ),
            r#"{"type":"welcome","you":{"id":1,"nick":"guest-1"},"epoch":"e1","users":[{"id":1,"nick":"guest-1"},{"id":2,"nick":"bo"}],"history":[{"b":2},{"c":3}]}"#
        );
        assert_eq!(raw_line("ann", "waves", true), "* ann waves");
        assert_eq!(
            message_id(&message_event(42, 7, "a", "b", 5, false)),
            Some(42)
        );
        assert_eq!(message_id(r#"{"type":"join","id":4}"#), None);
        assert_eq!(
            error_event(ErrorCode::NickTaken, "nickname ann is already taken"),
            r#"{"type":"error","code":"nick_taken","text":"nickname ann is already taken"}"#
        );
    }
}
