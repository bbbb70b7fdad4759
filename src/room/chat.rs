//! The chat with rooms, as a state machine with no I/O: clients, their
//! global nicknames, rooms by name (each with its members, topic and
//! history), and the one sequence of message ids. It takes what clients
//! did and says what to send to whom, with the time passed in, so every
//! rule is a unit test.
//!
//! A room is named on the wire (`#rust`) and known to the outputs by a
//! small number, its [`RoomId`] (`#main` is [`MAIN`], and always exists),
//! so that delivery can keep its members as a group without a string per
//! frame. Ids are reused once a room is evicted (it has no members then).
//!
//! Ids of messages stay one global sequence across rooms: a resuming
//! client names one position (`since`) and gets, per room, what came
//! after it.

mod events;
mod identity;
mod moderation;

pub use events::*;
pub use identity::*;
pub use moderation::*;

use super::events::UserRef;
use super::{
    Action, ClientId, Epoch, ErrorCode, History, MAX_NICK_CHARS, ModAction, Mode, Moderation,
    NOT_MEMBER_TEXT, Output, Payload, ROOM_INVALID_TEXT, Resume, RoomName, allowed_in_text,
    excerpt, guest_nick, nick_event, nick_key, raw_line, resume_gap, validate_nick, welcome_tail,
};
use super::{Input, parse_input};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

/// A room as the outputs name it.
pub type RoomId = u32;
/// `#main`'s id.
pub const MAIN: RoomId = 0;
/// A topic is at most this many characters.
pub const MAX_TOPIC_CHARS: usize = 256;

/// The limits of a chat with rooms (each a flag, see `config.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The newest messages kept per room (`--history`).
    pub history: usize,
    /// Rooms one client may be in at once (`--max-rooms-per-client`).
    pub max_rooms_per_client: usize,
    /// Rooms that may exist, `#main` included (`--max-rooms`).
    pub max_rooms: usize,
    /// Members one room may have (`--max-room-members`).
    pub max_room_members: usize,
    /// Bytes of history kept for all rooms together
    /// (`--room-history-bytes`).
    pub room_history_bytes: usize,
}

/// A room as the history file keeps it.
#[derive(Debug, Clone)]
pub struct KeptRoom {
    pub name: RoomName,
    pub topic: Option<Arc<str>>,
    pub history: History,
    /// Only its operators may set its topic (`/oplock`).
    pub oplock: bool,
}

#[derive(Debug)]
struct ChatRoom {
    name: RoomName,
    members: BTreeSet<ClientId>,
    history: History,
    topic: Option<Arc<str>>,
    /// When it last became empty (a tick of `Chat::clock`); `None` while
    /// it has members.
    idle_since: Option<u64>,
    /// Its room operator: whoever entered it while it was empty (its
    /// creator, or the first back in a kept empty room), until it is
    /// empty again. `#main` has none.
    operator: Option<Principal>,
    /// `/oplock #room on`: only its operators may set the topic.
    oplock: bool,
}

/// Someone an operator right can belong to: a signed-in user (by `sub`,
/// whatever connection) or a guest's one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Principal {
    User(Arc<str>),
    Guest(ClientId),
}

#[derive(Debug)]
struct Client {
    nick: String,
    mode: Mode,
    /// The rooms it is in, in the order it entered them.
    rooms: Vec<RoomId>,
    /// When its token expires (`exp`), if it signed in.
    exp: Option<i64>,
    /// The signed-in user (its `sub`) this connection belongs to.
    user: Option<Arc<str>>,
    /// The client's address, as the server sees it after the
    /// trusted-proxy rules (`None` in unit tests that do not say).
    address: Option<IpAddr>,
}

/// A signed-in user: one per `sub`, however many connections.
#[derive(Debug)]
struct User {
    /// Its first connection's id: its `id` in events.
    id: ClientId,
    nick: String,
    /// Its token says `"role":"op"`.
    op: bool,
    /// The private rooms its token lists.
    rooms: BTreeSet<RoomName>,
    /// Its open connections.
    connections: BTreeSet<ClientId>,
}

/// Why a room could not take a client.
type Refusal = (ErrorCode, String);

/// The chat: every client and every room.
#[derive(Debug)]
pub struct Chat {
    limits: Limits,
    clients: HashMap<ClientId, Client>,
    /// `nick_key` of every chosen nickname, to its holder. Guest names
    /// (`guest-N`) are not here: no one can choose one, so they cannot
    /// clash, and a room of idle guests keeps no second copy of each name.
    nicks: HashMap<String, ClientId>,
    /// Indexed by `RoomId`; `None` is a free id.
    rooms: Vec<Option<ChatRoom>>,
    free: Vec<RoomId>,
    /// Every room by name, in name order (for `/rooms`).
    by_name: BTreeMap<RoomName, RoomId>,
    /// The empty rooms, `#main` aside, the one unused longest first.
    idle: BTreeSet<(u64, RoomId)>,
    clock: u64,
    /// Bytes of all the histories together.
    history_bytes: usize,
    next_seq: u64,
    epoch: Epoch,
    /// The newest id an evicted room had: a room created later may have
    /// had messages (in an earlier life) up to it, so a client resuming
    /// into it from before is told `gap`.
    evicted_through: u64,
    /// `welcome_tail` of `#main`'s history, built on the first welcome
    /// after it changes.
    main_tail: Option<Arc<str>>,
    /// Signed-in users by `sub`.
    users: HashMap<Arc<str>, User>,
    /// `nick_key` of every signed-in user's name, to its `sub`: reserved
    /// while the server keeps its state, whether or not it is connected.
    owners: HashMap<String, Arc<str>>,
    /// The rooms some token's `rooms` claim named.
    private_rooms: BTreeSet<RoomName>,
    /// Bans and mutes, in force or expired (dropped when next looked at
    /// by an operator's action).
    sanctions: Vec<Sanction>,
    /// Direct messages between two signed-in users, by pair (the two
    /// `sub`s in order).
    direct: BTreeMap<(Arc<str>, Arc<str>), History>,
    /// The newest time the chat was told (ms since the epoch): when bans
    /// and mutes are checked.
    now: u64,
}

impl Chat {
    /// A chat that numbers the next line `next_seq`, in `epoch`, with the
    /// rooms `kept` from an earlier run (`#main` is made if not among
    /// them). Kept rooms past the limits are let go of, the ones listed
    /// first going first.
    pub fn new(limits: Limits, next_seq: u64, epoch: Epoch, kept: Vec<KeptRoom>) -> Chat {
        let mut chat = Chat {
            limits,
            clients: HashMap::new(),
            nicks: HashMap::new(),
            rooms: Vec::new(),
            free: Vec::new(),
            by_name: BTreeMap::new(),
            idle: BTreeSet::new(),
            clock: 0,
            history_bytes: 0,
            next_seq,
            epoch,
            evicted_through: 0,
            main_tail: None,
            users: HashMap::new(),
            owners: HashMap::new(),
            private_rooms: BTreeSet::new(),
            sanctions: Vec::new(),
            direct: BTreeMap::new(),
            now: 0,
        };
        let main = kept.iter().position(|r| r.name.is_main());
        let main = main.map(|i| kept[i].clone()).unwrap_or_else(|| KeptRoom {
            name: RoomName::main(),
            topic: None,
            history: History::new(limits.history),
            oplock: false,
        });
        chat.restore(main);
        let mut ignored = Vec::new();
        for room in kept.into_iter().filter(|r| !r.name.is_main()) {
            if chat.by_name.len() >= limits.max_rooms && chat.evict_idle(&mut ignored).is_none() {
                break;
            }
            chat.restore(room);
        }
        chat.trim_to_budget(MAIN, &mut ignored);
        chat
    }

    fn restore(&mut self, kept: KeptRoom) {
        let mut history = History::new(self.limits.history);
        history.set_dropped_through(kept.history.dropped_through());
        for event in kept.history.events() {
            history.push(event.clone());
        }
        let id = self.slot();
        self.history_bytes += history.bytes();
        self.by_name.insert(kept.name.clone(), id);
        self.rooms[id as usize] = Some(ChatRoom {
            name: kept.name,
            members: BTreeSet::new(),
            history,
            topic: kept.topic,
            idle_since: None,
            operator: None,
            oplock: kept.oplock,
        });
        if id != MAIN {
            self.mark_idle(id);
        }
    }

    /// A free room id.
    fn slot(&mut self) -> RoomId {
        match self.free.pop() {
            Some(id) => id,
            None => {
                self.rooms.push(None);
                (self.rooms.len() - 1) as RoomId
            }
        }
    }

    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// The id the next chat line will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Clients connected.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    pub fn contains(&self, id: ClientId) -> bool {
        self.clients.contains_key(&id)
    }

    pub fn nick(&self, id: ClientId) -> Option<&str> {
        self.clients.get(&id).map(|c| c.nick.as_str())
    }

    /// Rooms that exist, `#main` included.
    pub fn room_count(&self) -> usize {
        self.by_name.len()
    }

    /// Bytes of all kept histories together.
    pub fn history_bytes(&self) -> usize {
        self.history_bytes
    }

    /// The id of the room called `name`, if it exists.
    pub fn room_id(&self, name: &RoomName) -> Option<RoomId> {
        self.by_name.get(name).copied()
    }

    /// The history of the room called `name`.
    pub fn history(&self, name: &RoomName) -> Option<&History> {
        self.room_id(name).map(|id| &self.room(id).history)
    }

    /// The members of the room called `name`, by id.
    pub fn members(&self, name: &RoomName) -> Vec<ClientId> {
        self.room_id(name)
            .map(|id| self.room(id).members.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The rooms client `id` is in, in the order it entered them.
    pub fn rooms_of(&self, id: ClientId) -> Vec<RoomName> {
        self.clients
            .get(&id)
            .map(|c| c.rooms.iter().map(|r| self.room(*r).name.clone()).collect())
            .unwrap_or_default()
    }

    /// Every room with its topic and history, for the history file:
    /// `#main` first, then the empty rooms, unused longest first, then
    /// the others (so that a restart evicts in the same order).
    pub fn kept(&self) -> Vec<KeptRoom> {
        let keep = |id: RoomId| {
            let room = self.room(id);
            KeptRoom {
                name: room.name.clone(),
                topic: room.topic.clone(),
                history: room.history.clone(),
                oplock: room.oplock,
            }
        };
        let busy = self
            .rooms
            .iter()
            .enumerate()
            .filter(|(id, r)| {
                *id != MAIN as usize && r.as_ref().is_some_and(|r| r.idle_since.is_none())
            })
            .map(|(id, _)| id as RoomId);
        std::iter::once(MAIN)
            .chain(self.idle.iter().map(|(_, id)| *id))
            .chain(busy)
            .map(keep)
            .collect()
    }

    /// Whether a client resuming from `resume` into `rooms` has missed
    /// messages of one of them that are no longer kept.
    pub fn is_gap(&self, resume: &Resume, rooms: &[RoomName]) -> bool {
        rooms.iter().any(|name| match self.room_id(name) {
            Some(id) => self.room_gap(id, resume),
            None => self.new_room_gap(resume),
        })
    }

    fn room_gap(&self, id: RoomId, resume: &Resume) -> bool {
        resume_gap(resume, &self.epoch, &self.room(id).history, self.next_seq)
    }

    fn new_room_gap(&self, resume: &Resume) -> bool {
        resume.epoch.as_ref() != Some(&self.epoch)
            || resume.since >= self.next_seq
            || resume.since < self.evicted_through
    }

    fn room(&self, id: RoomId) -> &ChatRoom {
        self.rooms[id as usize].as_ref().expect("a room in use")
    }

    fn room_mut(&mut self, id: RoomId) -> &mut ChatRoom {
        self.rooms[id as usize].as_mut().expect("a room in use")
    }

    /// How events show client `id`: a guest's own id and nickname, a
    /// signed-in user's first connection's id, its name and its flags.
    pub(crate) fn user_ref(&self, id: ClientId) -> UserRef<'_> {
        let client = &self.clients[&id];
        match client.user.as_ref().and_then(|sub| self.users.get(sub)) {
            Some(user) => UserRef {
                id: user.id,
                nick: &client.nick,
                verified: true,
                op: user.op,
            },
            None => UserRef {
                id,
                nick: &client.nick,
                verified: false,
                op: false,
            },
        }
    }

    /// Applies one action at time `now_ms` (a join enters `#main`).
    pub fn handle(&mut self, now_ms: u64, action: Action, out: &mut Vec<Output>) {
        self.now = self.now.max(now_ms);
        match action {
            Action::Join { id, mode, resume } => {
                self.connect(now_ms, id, mode, resume, &[RoomName::main()], out)
            }
            Action::Text { id, text } => self.text(id, text, now_ms, out),
            Action::Binary { id, data } => self.binary(id, data, out),
            Action::Leave { id } => self.disconnect(id, now_ms, out),
            Action::Refresh { id, identity } => self.refresh(id, *identity, out),
        }
    }
}

mod membership;
mod replication;
mod speech;

pub use replication::{KeptClient, KeptOperator, KeptUser};

#[cfg(test)]
mod tests;
