//! The chat room as a state machine with no I/O: members, nicknames,
//! history and the message sequence. It takes what clients did (joined,
//! sent text, left) and says what to send to whom; it never touches a
//! thread, a channel or a socket, so every chat rule is a unit test (the
//! sans-I/O style of quinn-proto and h11, and of `protocol::message`).
//!
//! The broadcaster is the loop around it: it feeds the room one event at a
//! time, encodes each output once, and hands the bytes to delivery.

mod chat;
mod epoch;
mod events;
mod history;
mod input;
mod names;

pub use chat::*;
pub use names::*;

pub use epoch::{Epoch, FRESH_EPOCH_CHARS, MAX_EPOCH_CHARS, Resume, resume_param};
pub use events::*;
pub use history::{History, MAX_HISTORY_BYTES};
pub use input::*;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The subprotocol a client offers to get JSON events (§1.9, §4.2.2).
pub const SUBPROTOCOL: &str = "wschat.v1";
/// The `text` of a `not_member` error.
pub const NOT_MEMBER_TEXT: &str = "you are not in the room any more; reconnect to rejoin";
/// The `text` of the error cluster mode answers room and direct-message
/// commands with.
pub const ROOMS_UNAVAILABLE_TEXT: &str =
    "rooms and direct messages are not available in cluster mode yet";
/// Nicknames are 1 to this many characters.
pub const MAX_NICK_CHARS: usize = 24;
/// An error event quotes at most this many characters of what the client
/// sent (JSON-escaped, so at most six bytes each), then `…`: an error
/// costs about the same whatever the input's size.
pub const MAX_QUOTED_CHARS: usize = 32;

/// The start of `input`, for quoting in an error event: at most
/// [`MAX_QUOTED_CHARS`] characters, `…` if there were more.
pub fn excerpt(input: &str) -> String {
    match input.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &input[..cut]),
        None => input.to_string(),
    }
}

/// A client's number, unique for the life of the process.
pub type ClientId = u64;

/// Which chat protocol a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No subprotocol: the PHP tutorial's behaviour. Text in, the same text
    /// out to everyone else; no events.
    Raw,
    /// `wschat.v1`: commands in, JSON events out, own messages echoed.
    V1,
}

/// The `code` of an `error` event: stable names a program can match on
/// (the `text` beside it is for people and may change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// `/nick NAME` when someone else has that name (ignoring case).
    NickTaken,
    /// `/nick NAME` with a name that breaks the rules (length, spaces,
    /// control or invisible characters, the reserved `guest-N` form).
    NickInvalid,
    /// `/nick NAME` with the name you already have.
    NickUnchanged,
    /// A known command used wrongly; the text says how to use it.
    Usage,
    /// `/something` that is not a command.
    UnknownCommand,
    /// A message with nothing but spaces in it.
    EmptyMessage,
    /// A message with control characters other than tab and newline.
    BadText,
    /// A binary message on a `wschat.v1` connection.
    TextOnly,
    /// Cluster mode: Redis cannot be reached, so the message was not sent.
    Unavailable,
    /// A message from a client the room does not count as a member (in
    /// cluster mode, one announced gone while its node was cut off): not
    /// sent; the client should reconnect.
    NotMember,
    /// A room name that breaks the rules (see [`RoomName`]).
    RoomInvalid,
    /// Saying, parting, asking or setting a topic in a room you are not in.
    NotInRoom,
    /// `/msg NICK` when no client has that nickname.
    NoSuchUser,
    /// `/join` past `--max-rooms-per-client`.
    TooManyRooms,
    /// A room cannot be created: `--max-rooms` rooms exist and none is
    /// empty to evict.
    RoomLimit,
    /// `/join` a room that has `--max-room-members` members.
    RoomFull,
    /// `/join` a room you are in.
    AlreadyInRoom,
    /// A moderation command from someone who is not an operator there, a
    /// private room not listed in your token, a room you are banned from,
    /// `/nick` by a signed-in user.
    NotAllowed,
    /// A message while muted.
    Muted,
    /// Signing in with a name another signed-in user owns: you got
    /// `NAME-2` (or `-3`, ...) instead.
    NameClaimed,
    /// `/auth TOKEN` with a token for another user.
    AuthMismatch,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::NickTaken,
        ErrorCode::NickInvalid,
        ErrorCode::NickUnchanged,
        ErrorCode::Usage,
        ErrorCode::UnknownCommand,
        ErrorCode::EmptyMessage,
        ErrorCode::BadText,
        ErrorCode::TextOnly,
        ErrorCode::Unavailable,
        ErrorCode::NotMember,
        ErrorCode::RoomInvalid,
        ErrorCode::NotInRoom,
        ErrorCode::NoSuchUser,
        ErrorCode::TooManyRooms,
        ErrorCode::RoomLimit,
        ErrorCode::RoomFull,
        ErrorCode::AlreadyInRoom,
        ErrorCode::NotAllowed,
        ErrorCode::Muted,
        ErrorCode::NameClaimed,
        ErrorCode::AuthMismatch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NickTaken => "nick_taken",
            ErrorCode::NickInvalid => "nick_invalid",
            ErrorCode::NickUnchanged => "nick_unchanged",
            ErrorCode::Usage => "usage",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::EmptyMessage => "empty_message",
            ErrorCode::BadText => "bad_text",
            ErrorCode::TextOnly => "text_only",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::NotMember => "not_member",
            ErrorCode::RoomInvalid => "room_invalid",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::NoSuchUser => "no_such_user",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::RoomLimit => "room_limit",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::AlreadyInRoom => "already_in_room",
            ErrorCode::NotAllowed => "not_allowed",
            ErrorCode::Muted => "muted",
            ErrorCode::NameClaimed => "name_claimed",
            ErrorCode::AuthMismatch => "auth_mismatch",
        }
    }
}

/// Something a client did, as the room sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `resume`: where a resuming client stands (`/?since=ID&epoch=E`).
    Join {
        id: ClientId,
        mode: Mode,
        resume: Option<Resume>,
    },
    Text {
        id: ClientId,
        text: String,
    },
    Binary {
        id: ClientId,
        data: Vec<u8>,
    },
    Leave {
        id: ClientId,
    },
}

/// A message's body: text or binary, as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Text(Arc<str>),
    Binary(Vec<u8>),
}

/// What the room wants sent, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// To every member speaking `mode`, but `except`.
    Broadcast {
        mode: Mode,
        payload: Payload,
        except: Option<ClientId>,
    },
    /// A `wschat.v1` event for one member only.
    Reply { to: ClientId, event: String },
    /// A newcomer's `welcome`: `head` (its own) then `tail` (the history,
    /// shared by every newcomer until it changes), as one message.
    Welcome {
        to: ClientId,
        head: String,
        tail: Arc<str>,
    },
    /// A chat line was numbered and kept: its `message` event, for the
    /// history file.
    Said(Arc<str>),
    /// To the members of `room` speaking `mode`, but `except` (the chat
    /// with rooms; the one-room `Room` says [`Output::Broadcast`]).
    ToRoom {
        room: RoomId,
        mode: Mode,
        payload: Payload,
        except: Option<ClientId>,
    },
    /// `id` is a member of `room` from here on: what is sent to the room
    /// after this output reaches it.
    Enter { id: ClientId, room: RoomId },
    /// `id` is no longer a member of `room`.
    Exit { id: ClientId, room: RoomId },
    /// A line for the history file other than a message: a room created
    /// or its topic set, a room evicted, a history trimmed.
    Record(Arc<str>),
    /// A raw client whose room could not take it (it cannot be told by an
    /// event): to be closed, saying why (`room_full`, `room_limit` or
    /// `not_allowed`).
    Refused { to: ClientId, code: ErrorCode },
    /// An operator removed this connection from the server: Close 1008
    /// `kicked`, or `banned` if it was banned, after what was sent
    /// before.
    Removed { to: ClientId, banned: bool },
    /// A moderation action was taken (for its metric).
    Moderated { action: &'static str },
}

#[derive(Debug)]
struct Member {
    nick: String,
    mode: Mode,
}

/// One chat room.
#[derive(Debug)]
pub struct Room {
    members: BTreeMap<ClientId, Member>,
    /// `nick_key` of every chosen nickname, to its holder. Guest names
    /// (`guest-N`) are not here: no one can choose one, so they cannot
    /// clash, and a room of idle guests keeps no second copy of each name.
    nicks: HashMap<String, ClientId>,
    history: History,
    next_seq: u64,
    /// The epoch of this history of ids, in every welcome.
    epoch: Epoch,
    /// `welcome_tail` of the current history, built on the first join
    /// after it changes.
    tail: Option<Arc<str>>,
}

impl Room {
    /// A room that remembers `history`, numbers the next line `next_seq`,
    /// and calls this history of ids `epoch`.
    pub fn new(history: History, next_seq: u64, epoch: Epoch) -> Room {
        Room {
            members: BTreeMap::new(),
            nicks: HashMap::new(),
            history,
            next_seq,
            epoch,
            tail: None,
        }
    }

    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// The history was lost (cluster mode: Redis lost its data): forget
    /// the kept messages and call what follows `epoch`. Members stay; ids
    /// are the caller's to restart.
    pub fn start_epoch(&mut self, epoch: Epoch) {
        self.history = History::new(self.history.limit());
        self.epoch = epoch;
        self.tail = None;
    }

    /// Whether a client resuming from `resume` has missed messages that
    /// are no longer kept, or stands in another history: then its welcome
    /// carries the whole history and `"gap":true`. See [`welcome_event`].
    pub fn is_gap(&self, resume: &Resume) -> bool {
        resume_gap(resume, &self.epoch, &self.history, self.next_seq)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn contains(&self, id: ClientId) -> bool {
        self.members.contains_key(&id)
    }

    pub fn nick(&self, id: ClientId) -> Option<&str> {
        self.members.get(&id).map(|m| m.nick.as_str())
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// The id the next chat line will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Numbers the next chat line `seq`. Cluster mode calls it before
    /// applying each text entry, so that a message's id is its entry's
    /// cluster-wide sequence number on every node.
    pub fn set_next_seq(&mut self, seq: u64) {
        self.next_seq = seq;
    }

    /// Every member: id, mode and nickname, by id (for a cluster snapshot).
    pub fn members(&self) -> impl Iterator<Item = (ClientId, Mode, &str)> {
        self.members
            .iter()
            .map(|(id, m)| (*id, m.mode, m.nick.as_str()))
    }

    /// Puts a member back without announcing it (loading a cluster
    /// snapshot). False if the id or the nickname is already taken.
    pub fn restore_member(&mut self, id: ClientId, mode: Mode, nick: &str) -> bool {
        let key = nick_key(nick);
        if self.members.contains_key(&id) || self.nicks.contains_key(&key) {
            return false;
        }
        self.nicks.insert(key, id);
        let nick = nick.to_string();
        self.members.insert(id, Member { nick, mode });
        true
    }

    /// Applies one action at time `now_ms`, appending what to send to `out`.
    pub fn handle(&mut self, now_ms: u64, action: Action, out: &mut Vec<Output>) {
        match action {
            Action::Join { id, mode, resume } => self.join(id, mode, resume, now_ms, out),
            Action::Text { id, text } => self.text(id, text, now_ms, out),
            Action::Binary { id, data } => self.binary(id, data, out),
            Action::Leave { id } => self.leave(id, now_ms, out),
        }
    }

    fn users(&self) -> impl Iterator<Item = (ClientId, &str)> {
        self.members.iter().map(|(id, m)| (*id, m.nick.as_str()))
    }

    /// A newcomer gets a `welcome` (who is here, the history); everyone
    /// else a `join`.
    fn join(
        &mut self,
        id: ClientId,
        mode: Mode,
        resume: Option<Resume>,
        now: u64,
        out: &mut Vec<Output>,
    ) {
        if self.members.contains_key(&id) {
            return;
        }
        let nick = guest_nick(id);
        self.members.insert(
            id,
            Member {
                nick: nick.clone(),
                mode,
            },
        );
        if mode == Mode::V1 {
            if let Some(resume) = &resume {
                // A resuming client: its own slice of the history.
                let welcome = welcome_event(
                    id,
                    &nick,
                    self.users(),
                    &self.history,
                    &self.epoch,
                    Some(resume),
                    self.next_seq,
                );
                out.push(Output::Reply {
                    to: id,
                    event: welcome,
                });
            } else {
                let history = &self.history;
                let tail = self
                    .tail
                    .get_or_insert_with(|| welcome_tail(history).into())
                    .clone();
                out.push(Output::Welcome {
                    to: id,
                    head: welcome_head(id, &nick, &self.epoch, self.users()),
                    tail,
                });
            }
        }
        out.push(v1_broadcast(
            presence_event("join", id, &nick, now),
            Some(id),
        ));
    }

    fn leave(&mut self, id: ClientId, now: u64, out: &mut Vec<Output>) {
        if let Some(member) = self.members.remove(&id) {
            self.nicks.remove(&nick_key(&member.nick));
            let event = presence_event("leave", id, &member.nick, now);
            out.push(v1_broadcast(event, Some(id)));
        }
    }

    fn text(&mut self, id: ClientId, text: String, now: u64, out: &mut Vec<Output>) {
        let Some(member) = self.members.get(&id) else {
            // Gone while its message was in flight (then nobody hears
            // this), or, in cluster mode, still connected to a node that
            // was cut off while the others announced it gone: never
            // silence.
            return reply_error(out, id, ErrorCode::NotMember, NOT_MEMBER_TEXT);
        };
        let nick = member.nick.clone();
        match member.mode {
            // The PHP tutorial's behaviour: verbatim to every other raw
            // client. v1 clients see it as a message, control characters
            // shown as U+FFFD (they cannot be told "not allowed").
            Mode::Raw => {
                let shown: String = if text.chars().all(allowed_in_text) {
                    text.clone()
                } else {
                    let replace = |c| if allowed_in_text(c) { c } else { '\u{fffd}' };
                    text.chars().map(replace).collect()
                };
                let raw = Payload::Text(text.into());
                self.say(id, &nick, &shown, false, raw, now, out);
            }
            Mode::V1 => match parse_input(&text) {
                Input::Say(line) => self.say_v1(id, &nick, line, false, now, out),
                Input::Action(line) => self.say_v1(id, &nick, line, true, now, out),
                Input::Nick(wanted) => self.rename(id, wanted, now, out),
                Input::Who => out.push(Output::Reply {
                    to: id,
                    event: users_event(self.users()),
                }),
                // Rooms and direct messages are the multi-room chat's
                // (`Chat`); this one-room state machine serves cluster
                // mode, which does not have them yet.
                Input::SayIn(..)
                | Input::Join(_)
                | Input::Part(_)
                | Input::Rooms
                | Input::Topic(..)
                | Input::WhoIn(_)
                | Input::Moderate(_)
                | Input::Msg(..) => {
                    reply_error(out, id, ErrorCode::UnknownCommand, ROOMS_UNAVAILABLE_TEXT)
                }
                Input::Unknown(command) => reply_error(
                    out,
                    id,
                    ErrorCode::UnknownCommand,
                    &format!("unknown command /{}", excerpt(command)),
                ),
                Input::Usage(usage) => reply_error(out, id, ErrorCode::Usage, usage),
                Input::Empty => reply_error(out, id, ErrorCode::EmptyMessage, "empty message"),
            },
        }
    }

    fn say_v1(
        &mut self,
        id: ClientId,
        nick: &str,
        line: &str,
        action: bool,
        now: u64,
        out: &mut Vec<Output>,
    ) {
        if !line.chars().all(allowed_in_text) {
            let text = "messages may not contain control characters (tab and newline are fine)";
            return reply_error(out, id, ErrorCode::BadText, text);
        }
        let raw = Payload::Text(raw_line(nick, line, action).into());
        self.say(id, nick, line, action, raw, now, out);
    }

    /// One chat line: numbered, kept in the history, and sent — the JSON
    /// to every v1 client, the sender included, so that all see one order;
    /// `raw` to every raw client but the sender.
    #[allow(clippy::too_many_arguments)]
    fn say(
        &mut self,
        id: ClientId,
        nick: &str,
        text: &str,
        action: bool,
        raw: Payload,
        now: u64,
        out: &mut Vec<Output>,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let event: Arc<str> = message_event(seq, id, nick, text, now, action).into();
        out.push(Output::Broadcast {
            mode: Mode::Raw,
            payload: raw,
            except: Some(id),
        });
        out.push(Output::Broadcast {
            mode: Mode::V1,
            payload: Payload::Text(event.clone()),
            except: None,
        });
        out.push(Output::Said(event.clone()));
        self.history.push(event);
        self.tail = None;
    }

    fn binary(&mut self, id: ClientId, data: Vec<u8>, out: &mut Vec<Output>) {
        match self.members.get(&id).map(|m| m.mode) {
            None => reply_error(out, id, ErrorCode::NotMember, NOT_MEMBER_TEXT),
            Some(Mode::Raw) => out.push(Output::Broadcast {
                mode: Mode::Raw,
                payload: Payload::Binary(data),
                except: Some(id),
            }),
            Some(Mode::V1) => reply_error(
                out,
                id,
                ErrorCode::TextOnly,
                "wschat.v1 takes text messages only",
            ),
        }
    }

    fn rename(&mut self, id: ClientId, wanted: &str, now: u64, out: &mut Vec<Output>) {
        if let Err(reason) = validate_nick(wanted) {
            return reply_error(out, id, ErrorCode::NickInvalid, reason);
        }
        let key = nick_key(wanted);
        match self.nicks.get(&key) {
            Some(holder) if *holder != id => {
                let text = format!("nickname {wanted} is already taken");
                return reply_error(out, id, ErrorCode::NickTaken, &text);
            }
            _ => {}
        }
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        if member.nick == wanted {
            // Nothing changes, but the asker still gets an answer.
            let text = format!("you are already {wanted}");
            return reply_error(out, id, ErrorCode::NickUnchanged, &text);
        }
        let old = std::mem::replace(&mut member.nick, wanted.to_string());
        self.nicks.remove(&nick_key(&old));
        self.nicks.insert(key, id);
        log::info!(
            "({id}) is now known as {} (was {})",
            wanted.escape_debug(),
            old.escape_debug()
        );
        out.push(v1_broadcast(nick_event(id, wanted, &old, now), None));
    }
}

fn v1_broadcast(event: String, except: Option<ClientId>) -> Output {
    Output::Broadcast {
        mode: Mode::V1,
        payload: Payload::Text(event.into()),
        except,
    }
}

fn reply_error(out: &mut Vec<Output>, to: ClientId, code: ErrorCode, text: &str) {
    out.push(Output::Reply {
        to,
        event: error_event(code, text),
    });
}

/// Milliseconds since the Unix epoch, the `ts` of every event.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
