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

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The subprotocol a client offers to get JSON events (§1.9, §4.2.2).
pub const SUBPROTOCOL: &str = "wschat.v1";
/// The `text` of a `not_member` error.
pub const NOT_MEMBER_TEXT: &str = "you are not in the room any more; reconnect to rejoin";
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
    /// `/auth TOKEN` accepted by the reader: the connection's sign-in
    /// now runs until the new token's `exp`, with its role and rooms.
    Refresh {
        id: ClientId,
        identity: Box<Identity>,
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
    /// To every client speaking `mode`, whatever its rooms, but `except`
    /// (a change of nickname).
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
    /// To the members of `room` speaking `mode`, but `except`.
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

/// Milliseconds since the Unix epoch, the `ts` of every event.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
