//! Cluster mode as state-machine replication, without I/O: what a node
//! appends to the stream (a [`Record`]: one chat action), how an entry
//! read back is applied to the node's own copy of the [`Chat`], and the
//! snapshot a starting node loads instead of the whole stream.
//!
//! Every node applies the same entries in the same (stream) order to the
//! same `Chat` code, so every replica holds the same clients, nicknames,
//! rooms, topics, histories and message ids (and evicts the same room
//! when the history budget is spent: eviction is a function of the
//! entries alone); each node then delivers the outputs to its own
//! clients only. One stream carries every room.

use super::nodes::NodeId;
use super::stream::{Entry, StreamId};
use crate::history_file::{IdentityRecord, parse_identity_record};
use crate::json::push_string;
use crate::json::{self, Value};
use crate::room::{
    Action, Chat, ClientId, Epoch, History, Identity, KeptClient, KeptIdentity, KeptOperator,
    KeptRoom, KeptUser, Limits, Mode, Output, RoomName, Visitor, direct_record, now_ms,
    oplock_record, owner_record, private_record, room_record, sanction_record,
};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

/// The name of the one stream every node shares (its Redis keys are
/// `wschat:{main}:…`): every room's entries are in it.
pub const ROOM: &str = "main";

/// Client ids are `node number × NODE_ID_BLOCK + a local counter`: unique
/// across nodes, and still exact in JavaScript (below 2^53) for nine
/// million node start-ups.
pub const NODE_ID_BLOCK: u64 = 1_000_000_000;

/// The node number in a client id.
pub fn node_number(id: ClientId) -> u64 {
    id / NODE_ID_BLOCK
}

/// One chat action as appended to the stream: the chat's own [`Action`],
/// the node that appended it, the time it happened there, and, for a
/// join, the rooms the client asked for (`?rooms=`) and who it is (its
/// verified sign-in and its address). Every replica uses this `ts`, so
/// events carry the same time everywhere, and this visitor, so every
/// replica signs the same user in. A join's `resume` is never written:
/// it matters only to the node whose client resumes, which puts it back
/// when the entry returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub action: Action,
    /// The node that appended it (empty for an entry other than a join
    /// written by a version that named the node on joins only).
    pub node: String,
    pub ts: u64,
    /// A join's rooms, in the order asked (empty for other actions).
    pub rooms: Vec<RoomName>,
    /// A join's visitor: its sign-in, verified by the node it connected
    /// to, and its address (a guest, address unknown, for other actions).
    pub visitor: Visitor,
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Raw => "raw",
        Mode::V1 => "v1",
    }
}

fn parse_mode(name: &str) -> Option<Mode> {
    match name {
        "raw" => Some(Mode::Raw),
        "v1" => Some(Mode::V1),
        _ => None,
    }
}

/// Room names as a join's `rooms` field and a snapshot write them: the
/// names without their `#`, joined by commas (`main,rust`; empty for
/// none), as in the `?rooms=` query.
pub fn rooms_field(rooms: &[RoomName]) -> String {
    let names: Vec<&str> = rooms.iter().map(|r| &r.as_str()[1..]).collect();
    names.join(",")
}

/// The rooms a `rooms` field lists; `None` if a name is not a room's.
pub fn parse_rooms_field(field: &str) -> Option<Vec<RoomName>> {
    if field.is_empty() {
        return Some(Vec::new());
    }
    field
        .split(',')
        .map(|name| RoomName::parse(&format!("#{name}")))
        .collect()
}

/// The client an action is about.
pub fn client_of(action: &Action) -> ClientId {
    match action {
        Action::Join { id, .. }
        | Action::Text { id, .. }
        | Action::Binary { id, .. }
        | Action::Leave { id }
        | Action::Refresh { id, .. } => *id,
    }
}

impl Record {
    /// `action`, appended by `node`, happening now.
    pub fn now(action: Action, node: &NodeId) -> Record {
        Record {
            action,
            node: node.to_string(),
            ts: now_ms(),
            rooms: Vec::new(),
            visitor: Visitor::default(),
        }
    }

    /// `id`, who is `visitor`, joining in `mode`, into `rooms`, through
    /// `node`, now.
    pub fn join(
        id: ClientId,
        mode: Mode,
        rooms: Vec<RoomName>,
        visitor: Visitor,
        node: &NodeId,
    ) -> Record {
        let join = Action::Join {
            id,
            mode,
            resume: None,
        };
        Record {
            rooms,
            visitor,
            ..Record::now(join, node)
        }
    }

    /// `id` leaving, announced by `node` now.
    pub fn leave(id: ClientId, node: &NodeId) -> Record {
        Record::now(Action::Leave { id }, node)
    }

    /// The client it is about.
    pub fn client(&self) -> ClientId {
        client_of(&self.action)
    }

    /// The stream fields (the `seq` field is added by the append script).
    ///
    /// ```text
    ///   op join   id 3000000001  ts 1764093600000  node n1  mode v1  rooms main,rust
    ///             address 192.0.2.7  sub u-17  name ann  operator 1  private staff  exp 1764097200
    ///   op text   id 3000000001  ts 1764093601000  node n1  text hello
    ///   op binary id 3000000002  ts ...            node n2  data <bytes>
    ///   op leave  id 3000000001  ts ...            node n1
    ///   op auth   id 3000000001  ts ...            node n1  sub u-17  operator 0  private  exp ...
    /// ```
    ///
    /// A join's `address` is there when the node knew it; `sub`,
    /// `operator` (`1` or `0`: its token's `"role":"op"`), `private` (the token's private rooms, as `rooms`) and
    /// `exp` when the client signed in, and `name` when its token gave one.
    /// An `auth` entry (a sign-in refreshed with `/auth`) carries the new
    /// token's `sub`, `name`, `operator`, `private` and `exp` the same way.
    pub fn fields(&self) -> Vec<(&'static str, Vec<u8>)> {
        let name = match &self.action {
            Action::Join { .. } => "join",
            Action::Text { .. } => "text",
            Action::Binary { .. } => "binary",
            Action::Leave { .. } => "leave",
            Action::Refresh { .. } => "auth",
        };
        let mut fields = vec![
            ("op", name.as_bytes().to_vec()),
            ("id", self.client().to_string().into_bytes()),
            ("ts", self.ts.to_string().into_bytes()),
            ("node", self.node.as_bytes().to_vec()),
        ];
        match &self.action {
            Action::Join { mode, .. } => {
                fields.push(("mode", mode_name(*mode).as_bytes().to_vec()));
                fields.push(("rooms", rooms_field(&self.rooms).into_bytes()));
                visitor_fields(&self.visitor, &mut fields);
            }
            Action::Text { text, .. } => fields.push(("text", text.as_bytes().to_vec())),
            Action::Binary { data, .. } => fields.push(("data", data.clone())),
            Action::Leave { .. } => {}
            Action::Refresh { identity, .. } => {
                let visitor = Visitor {
                    identity: Some((**identity).clone()),
                    address: None,
                };
                visitor_fields(&visitor, &mut fields);
            }
        }
        fields
    }

    /// Reads a stream entry back; the error says which field is wrong.
    /// Entries from versions that named the node on joins only load too,
    /// and a join with no `rooms` (written before rooms) is in `#main`.
    pub fn decode(entry: &Entry) -> Result<Record, String> {
        let text = |name: &str| -> Result<&str, String> {
            let value = entry
                .get(name)
                .ok_or_else(|| format!("entry {} has no {name}", entry.id))?;
            std::str::from_utf8(value)
                .map_err(|_| format!("entry {}: {name} is not UTF-8", entry.id))
        };
        let number = |name: &str| -> Result<u64, String> {
            text(name)?
                .parse()
                .map_err(|_| format!("entry {}: {name} is not a number", entry.id))
        };
        let id = number("id")?;
        let ts = number("ts")?;
        let op = text("op")?;
        let node = match (op, entry.get("node")) {
            (_, Some(_)) | ("join", None) => text("node")?.to_string(),
            (_, None) => String::new(),
        };
        let mut rooms = Vec::new();
        let mut visitor = Visitor::default();
        let action = match op {
            "join" => {
                visitor = decode_visitor(entry, &text)?;
                rooms = match entry.get("rooms") {
                    None => vec![RoomName::main()],
                    Some(_) => parse_rooms_field(text("rooms")?)
                        .ok_or_else(|| format!("entry {}: rooms names a bad room", entry.id))?,
                };
                Action::Join {
                    id,
                    mode: parse_mode(text("mode")?)
                        .ok_or_else(|| format!("entry {}: unknown mode", entry.id))?,
                    resume: None,
                }
            }
            "text" => Action::Text {
                id,
                text: text("text")?.to_string(),
            },
            "binary" => Action::Binary {
                id,
                data: entry
                    .get("data")
                    .ok_or_else(|| format!("entry {} has no data", entry.id))?
                    .to_vec(),
            },
            "leave" => Action::Leave { id },
            "auth" => Action::Refresh {
                id,
                identity: Box::new(
                    decode_visitor(entry, &text)?
                        .identity
                        .ok_or_else(|| format!("entry {} has no sub", entry.id))?,
                ),
            },
            other => return Err(format!("entry {}: unknown op {other:?}", entry.id)),
        };
        Ok(Record {
            action,
            node,
            ts,
            rooms,
            visitor,
        })
    }
}

/// A join's visitor as stream fields (see [`Record::fields`]).
fn visitor_fields(visitor: &Visitor, fields: &mut Vec<(&'static str, Vec<u8>)>) {
    if let Some(address) = visitor.address {
        fields.push(("address", address.to_string().into_bytes()));
    }
    let Some(identity) = &visitor.identity else {
        return;
    };
    fields.push(("sub", identity.sub.as_bytes().to_vec()));
    if let Some(name) = &identity.name {
        fields.push(("name", name.as_bytes().to_vec()));
    }
    fields.push(("operator", if identity.op { b"1" } else { b"0" }.to_vec()));
    fields.push(("private", rooms_field(&identity.rooms).into_bytes()));
    fields.push(("exp", identity.exp.to_string().into_bytes()));
}

/// A join entry's visitor: a guest of unknown address if it has none of
/// those fields (as joins written before sign-in in cluster mode).
fn decode_visitor<'e>(
    entry: &'e Entry,
    text: &dyn Fn(&str) -> Result<&'e str, String>,
) -> Result<Visitor, String> {
    let bad = |name: &str| format!("entry {}: bad {name}", entry.id);
    let address = match entry.get("address") {
        None => None,
        Some(_) => Some(text("address")?.parse().map_err(|_| bad("address"))?),
    };
    let identity = match entry.get("sub") {
        None => None,
        Some(_) => Some(Identity {
            sub: text("sub")?.to_string(),
            name: match entry.get("name") {
                None => None,
                Some(_) => Some(text("name")?.to_string()),
            },
            op: match text("operator")? {
                "1" => true,
                "0" => false,
                _ => return Err(bad("operator")),
            },
            rooms: parse_rooms_field(text("private")?).ok_or_else(|| bad("private"))?,
            exp: text("exp")?.parse().map_err(|_| bad("exp"))?,
        }),
    };
    Ok(Visitor { identity, address })
}

/// What applying an entry did, besides the chat's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied; `missed` entries before it were never seen (trimmed).
    Done { missed: u64 },
    /// Already applied (an id or a sequence number not past the last).
    Duplicate,
}

/// A node's replica: the chat, plus what cluster mode needs beside it.
#[derive(Debug)]
pub struct Replica {
    pub chat: Chat,
    /// The node each client joined through (for cleaning up a dead node).
    pub nodes: HashMap<ClientId, String>,
    /// The last entry applied: the stream is read after it.
    pub last_id: StreamId,
    /// Its sequence number (0: none yet).
    pub last_seq: u64,
}

/// The snapshot format a node writes (see [`Replica::snapshot`]).
pub const SNAPSHOT_VERSION: u32 = 4;

impl Replica {
    /// An empty chat with `limits`, before any entry, in the stream's
    /// `epoch`.
    pub fn new(limits: Limits, epoch: Epoch) -> Replica {
        Replica {
            chat: Chat::new(limits, 1, epoch, Vec::new()),
            nodes: HashMap::new(),
            last_id: StreamId::ZERO,
            last_seq: 0,
        }
    }

    /// Redis lost the stream's history (its epoch key is new): what was
    /// kept is forgotten, ids start again, and the entries read from now
    /// on belong to `epoch`. Every node starts it at the same place in
    /// the order: before the first entry of the new stream.
    pub fn start_epoch(&mut self, epoch: Epoch) {
        self.chat.start_epoch(epoch);
        self.last_seq = 0;
    }

    /// Checks an entry's place: a duplicate (its id is not past the last
    /// one applied: stream ids are the order), or how many entries were
    /// missed before it (told by a jump in the sequence numbers).
    pub fn place(&self, id: StreamId, seq: u64) -> Applied {
        if id <= self.last_id {
            Applied::Duplicate
        } else if self.last_seq > 0 && seq > self.last_seq {
            Applied::Done {
                missed: seq - self.last_seq - 1,
            }
        } else {
            // The first entry, or numbers that start again: a Redis that
            // lost its data (no AOF) restarted. The entry is applied all
            // the same; see docs/14-cluster.md.
            Applied::Done { missed: 0 }
        }
    }

    /// Applies one entry at its place in the stream (a local client's
    /// join carries where it resumes from); the chat's outputs go to
    /// `out`. A text's message is numbered with the entry's `seq`, and
    /// every event carries the record's `ts`.
    pub fn apply(
        &mut self,
        id: StreamId,
        seq: u64,
        record: Record,
        out: &mut Vec<Output>,
    ) -> Applied {
        let applied = self.place(id, seq);
        if applied == Applied::Duplicate {
            return applied;
        }
        if self.last_seq > 0 && seq <= self.last_seq {
            log::warn!(
                "cluster: sequence numbers start again at {seq} (after {}): redis lost its data",
                self.last_seq
            );
        }
        self.last_id = id;
        self.last_seq = seq;
        match record.action {
            Action::Join { id, mode, resume } => {
                self.nodes.entry(id).or_insert(record.node);
                let (ts, rooms) = (record.ts, &record.rooms);
                self.chat
                    .connect_as(ts, id, mode, resume, rooms, record.visitor, out);
            }
            action => {
                match &action {
                    Action::Text { .. } => self.chat.set_next_seq(seq),
                    Action::Leave { id } => {
                        self.nodes.remove(id);
                    }
                    _ => {}
                }
                self.chat.handle(record.ts, action, out);
            }
        }
        applied
    }

    /// The clients who joined through `node` (sorted by id).
    pub fn members_of(&self, node: &str) -> Vec<ClientId> {
        let mut ids: Vec<ClientId> = self
            .nodes
            .iter()
            .filter(|(id, name)| name.as_str() == node && self.chat.contains(**id))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The state as text, to store in Redis:
    ///
    /// ```text
    /// wschat-snapshot 4
    /// epoch k3x9a2bq
    /// after 1764093600000-0
    /// seq 42
    /// evicted 12
    /// room {"type":"room","room":"#main","topic":null,"dropped":17}
    /// history {"type":"message","id":40,...,"room":"#main"}
    /// room {"type":"room","room":"#rust","topic":"borrowing","dropped":0}
    /// history {"type":"message","id":41,...,"room":"#rust"}
    /// identity {"type":"oplock","room":"#rust","on":true}
    /// identity {"type":"owner","name":"ann","sub":"u-17"}
    /// identity {"type":"private","room":"#staff"}
    /// identity {"type":"sanction","kind":"ban","target":{"sub":"u-9"},"label":"gus","room":null,"until":null}
    /// identity {"type":"dm","pair":["u-17","u-42"],"event":{"type":"direct",...}}
    /// user {"sub":"u-17","id":3000000001,"nick":"ann","op":true,"rooms":["#staff"]}
    /// client 3000000001 v1 n1 main,rust ann
    /// visitor {"address":"192.0.2.7","sub":"u-17","exp":1764097200}
    /// operator {"room":"#rust","sub":"u-17"}
    /// ```
    ///
    /// A room's line (the history file's room record) is followed by its
    /// messages, oldest first; rooms come in the order [`Chat::kept`]
    /// gives (`#main`, the empty rooms unused longest first, the others),
    /// so a restored chat evicts in the same order. Nicknames and node
    /// names contain no spaces or line breaks, and JSON no raw line
    /// break, so lines and fields split cleanly. The `identity` lines are
    /// the history file's identity records (rooms' `/oplock`, owned
    /// names, private rooms, the bans and mutes in force, direct-message
    /// histories), so both keep the same state in the same words; a
    /// `user` line is a signed-in user, and a `visitor` line says who
    /// the client on the line before is (its address; its user and when
    /// its token expires, if signed in); an `operator` line is a room's
    /// operator (its creator: a user's `sub`, or a guest's `id`). Version 3
    /// has no identity, user, visitor or operator lines (its clients load
    /// as guests, its rooms without operators); versions 1 and 2
    /// (one room: `dropped`, `member` and `history` lines; version 1
    /// without `epoch`) load as `#main`.
    pub fn snapshot(&self) -> String {
        let mut out = format!("wschat-snapshot {SNAPSHOT_VERSION}\n");
        let _ = writeln!(out, "epoch {}", self.chat.epoch());
        let _ = writeln!(out, "after {}", self.last_id);
        let _ = writeln!(out, "seq {}", self.last_seq);
        let _ = writeln!(out, "evicted {}", self.chat.evicted_through());
        for room in self.chat.kept() {
            let dropped = room.history.dropped_through();
            let record = room_record(&room.name, room.topic.as_deref(), dropped);
            let _ = writeln!(out, "room {record}");
            for event in room.history.iter() {
                let _ = writeln!(out, "history {event}");
            }
        }
        for room in self.chat.kept().iter().filter(|room| room.oplock) {
            let _ = writeln!(out, "identity {}", oplock_record(&room.name, true));
        }
        let mut kept = self.chat.kept_identity(self.chat.latest_time());
        // Kept in a hash map: sorted, so that equal replicas write the
        // same text.
        kept.owners.sort_unstable();
        for (name, sub) in &kept.owners {
            let _ = writeln!(out, "identity {}", owner_record(name, sub));
        }
        for room in &kept.private_rooms {
            let _ = writeln!(out, "identity {}", private_record(room));
        }
        for sanction in &kept.sanctions {
            let _ = writeln!(out, "identity {}", sanction_record(sanction));
        }
        for ((a, b), history) in &kept.direct {
            for event in history.iter() {
                let _ = writeln!(out, "identity {}", direct_record(a, b, event));
            }
        }
        for user in self.chat.kept_users() {
            let _ = writeln!(out, "user {}", user_line(&user));
        }
        for client in self.chat.kept_clients() {
            let node = self.nodes.get(&client.id).map_or("-", String::as_str);
            let _ = writeln!(
                out,
                "client {} {} {node} {} {}",
                client.id,
                mode_name(client.mode),
                rooms_field(&client.rooms),
                client.nick
            );
            if client.address.is_some() || client.user.is_some() {
                let _ = writeln!(out, "visitor {}", visitor_line(&client));
            }
        }
        for (room, operator) in self.chat.room_operators() {
            let mut line = format!("{{\"room\":\"{room}\",");
            match operator {
                KeptOperator::User(sub) => {
                    line.push_str("\"sub\":");
                    push_string(&mut line, &sub);
                }
                KeptOperator::Guest(id) => {
                    let _ = write!(line, "\"id\":{id}");
                }
            }
            let _ = writeln!(out, "operator {line}}}");
        }
        out
    }

    /// The replica a snapshot describes, with `limits`, if it belongs to
    /// the stream's `epoch`: a snapshot of another epoch describes a
    /// history Redis has lost since (an error). A version 1 snapshot,
    /// from before epochs, is taken to be of the current one; a version
    /// past [`SNAPSHOT_VERSION`] is refused.
    pub fn restore(text: &str, limits: Limits, epoch: &Epoch) -> Result<Replica, String> {
        let mut lines = text.lines();
        match lines.next() {
            Some(
                "wschat-snapshot 1" | "wschat-snapshot 2" | "wschat-snapshot 3"
                | "wschat-snapshot 4",
            ) => {}
            Some(other) if other.starts_with("wschat-snapshot ") => {
                return Err(format!(
                    "snapshot: format {other:?} is newer than this version reads"
                ));
            }
            _ => return Err("snapshot: unknown format".into()),
        }
        let bad = |line: &str| {
            let shown: String = line.chars().take(80).collect();
            format!("snapshot: bad line {shown:?}")
        };
        // Versions 1 and 2 have `#main` alone, and no room lines.
        let mut parts = Parts {
            last_id: StreamId::ZERO,
            last_seq: 0,
            evicted: 0,
            rooms: vec![KeptRoom {
                name: RoomName::main(),
                topic: None,
                history: History::new(limits.history),
                // Set by an `identity` oplock line, if any.
                oplock: false,
            }],
            clients: Vec::new(),
            nodes: HashMap::new(),
            identity: KeptIdentity::default(),
            oplocks: Vec::new(),
            users: Vec::new(),
            operators: Vec::new(),
        };
        let mut named_main = false;
        for line in lines {
            let (key, rest) = line.split_once(' ').ok_or_else(|| bad(line))?;
            match key {
                "epoch" if rest != epoch.as_str() => {
                    return Err(format!(
                        "snapshot: of epoch {rest:?}, but the stream is in epoch {epoch} (redis lost its data since)"
                    ));
                }
                "epoch" => {}
                "after" => parts.last_id = rest.parse().map_err(|_| bad(line))?,
                "seq" => parts.last_seq = rest.parse().map_err(|_| bad(line))?,
                "evicted" => parts.evicted = rest.parse().map_err(|_| bad(line))?,
                "dropped" => {
                    let dropped = rest.parse().map_err(|_| bad(line))?;
                    parts.rooms[0].history.set_dropped_through(dropped);
                }
                "room" => {
                    let room = parse_room(rest, limits.history).ok_or_else(|| bad(line))?;
                    if room.name.is_main() && !named_main {
                        named_main = true;
                        parts.rooms[0] = room;
                    } else {
                        parts.rooms.push(room);
                    }
                }
                "history" => {
                    let history = &mut parts.rooms.last_mut().expect("#main at least").history;
                    history.push(rest.into());
                }
                "member" | "client" => {
                    let (client, node) = parse_client(key, rest).ok_or_else(|| bad(line))?;
                    parts.nodes.insert(client.id, node);
                    parts.clients.push(client);
                }
                "visitor" => {
                    let client = parts.clients.last_mut().ok_or_else(|| bad(line))?;
                    parse_visitor(rest, client).ok_or_else(|| bad(line))?;
                }
                "user" => parts.users.push(parse_user(rest).ok_or_else(|| bad(line))?),
                "operator" => parts
                    .operators
                    .push(parse_operator(rest).ok_or_else(|| bad(line))?),
                "identity" => {
                    let record = parse_identity_record(rest).ok_or_else(|| bad(line))?;
                    parts.add_identity(record, limits.history);
                }
                _ => return Err(bad(line)),
            }
        }
        Ok(parts.into_replica(limits, epoch))
    }
}

/// What a snapshot's lines say, before a replica is made of it.
struct Parts {
    last_id: StreamId,
    last_seq: u64,
    evicted: u64,
    rooms: Vec<KeptRoom>,
    clients: Vec<KeptClient>,
    /// The node each client joined through.
    nodes: HashMap<ClientId, String>,
    identity: KeptIdentity,
    oplocks: Vec<(RoomName, bool)>,
    users: Vec<KeptUser>,
    operators: Vec<(RoomName, KeptOperator)>,
}

impl Parts {
    /// An `identity` line's record (`history`: `--history`, the length of
    /// a direct-message history).
    fn add_identity(&mut self, record: IdentityRecord, history: usize) {
        let identity = &mut self.identity;
        match record {
            IdentityRecord::Oplock(room, on) => self.oplocks.push((room, on)),
            IdentityRecord::Owner(name, sub) => identity.owners.push((name, sub)),
            IdentityRecord::Private(room) => identity.private_rooms.push(room),
            IdentityRecord::Sanction(sanction) => identity.sanctions.push(sanction),
            // A pair's messages are on consecutive lines, oldest first.
            IdentityRecord::Direct(pair, event) => match identity.direct.last_mut() {
                Some((last, kept)) if *last == pair => kept.push(event.into()),
                _ => {
                    let mut kept = History::new(history);
                    kept.push(event.into());
                    identity.direct.push((pair, kept));
                }
            },
        }
    }

    /// The replica: rooms first, then users, their connections, and the
    /// rooms' operators.
    fn into_replica(mut self, limits: Limits, epoch: &Epoch) -> Replica {
        for (name, on) in self.oplocks {
            if let Some(room) = self.rooms.iter_mut().find(|room| room.name == name) {
                room.oplock = on;
            }
        }
        // A smaller --history here than on the node that wrote it drops
        // the oldest; `History::push` moves the mark past them.
        let mut chat = Chat::new(limits, self.last_seq + 1, epoch.clone(), self.rooms);
        chat.set_evicted_through(self.evicted);
        chat.restore_identity(self.identity);
        for user in self.users {
            chat.restore_user(user);
        }
        let mut replica = Replica {
            chat,
            nodes: HashMap::new(),
            last_id: self.last_id,
            last_seq: self.last_seq,
        };
        for client in self.clients {
            let id = client.id;
            if replica.chat.restore_client(client)
                && let Some(node) = self.nodes.remove(&id)
            {
                replica.nodes.insert(id, node);
            }
        }
        replica.chat.drop_unconnected_users();
        for (room, operator) in self.operators {
            replica.chat.restore_room_operator(&room, operator);
        }
        replica
    }
}

/// A snapshot's `room` line: the history file's room record.
fn parse_room(record: &str, history: usize) -> Option<KeptRoom> {
    let record = json::parse(record)?;
    if record.get("type")?.as_str()? != "room" {
        return None;
    }
    let name = RoomName::parse(record.get("room")?.as_str()?)?;
    let topic = match record.get("topic")? {
        Value::String(topic) => Some(Arc::from(topic.as_str())),
        Value::Null => None,
        _ => return None,
    };
    let mut kept = History::new(history);
    kept.set_dropped_through(record.get("dropped")?.as_u64()?);
    Some(KeptRoom {
        name,
        topic,
        history: kept,
        oplock: false,
    })
}

/// A snapshot's `client` line (`ID MODE NODE ROOMS NICK`), or a version 2
/// `member` line (`ID MODE NODE NICK`, in `#main`), and its node.
fn parse_client(key: &str, rest: &str) -> Option<(KeptClient, String)> {
    let (parts, rooms) = if key == "client" {
        let parts: Vec<&str> = rest.splitn(5, ' ').collect();
        let [id, mode, node, rooms, nick] = parts[..] else {
            return None;
        };
        ([id, mode, node, nick], parse_rooms_field(rooms)?)
    } else {
        let parts: Vec<&str> = rest.splitn(4, ' ').collect();
        let [id, mode, node, nick] = parts[..] else {
            return None;
        };
        ([id, mode, node, nick], vec![RoomName::main()])
    };
    let [id, mode, node, nick] = parts;
    let client = KeptClient {
        id: id.parse().ok()?,
        mode: parse_mode(mode)?,
        nick: nick.to_string(),
        rooms,
        address: None,
        user: None,
    };
    Some((client, node.to_string()))
}

/// A snapshot's `user` line: `{"sub":..,"id":..,"nick":..,"op":..,"rooms":[..]}`.
fn user_line(user: &KeptUser) -> String {
    let mut out = String::from("{\"sub\":");
    push_string(&mut out, &user.sub);
    let _ = write!(out, ",\"id\":{},\"nick\":", user.id);
    push_string(&mut out, &user.nick);
    let _ = write!(out, ",\"op\":{},\"rooms\":[", user.op);
    for (n, room) in user.rooms.iter().enumerate() {
        let comma = if n > 0 { "," } else { "" };
        let _ = write!(out, "{comma}\"{room}\"");
    }
    out.push_str("]}");
    out
}

fn parse_user(line: &str) -> Option<KeptUser> {
    let value = json::parse(line)?;
    let Value::Array(rooms) = value.get("rooms")? else {
        return None;
    };
    let rooms = rooms
        .iter()
        .map(|room| RoomName::parse(room.as_str()?))
        .collect::<Option<Vec<_>>>()?;
    Some(KeptUser {
        sub: value.get("sub")?.as_str()?.to_string(),
        id: value.get("id")?.as_u64()?,
        nick: value.get("nick")?.as_str()?.to_string(),
        op: match value.get("op")? {
            Value::Bool(op) => *op,
            _ => return None,
        },
        rooms,
    })
}

/// A snapshot's `operator` line: `{"room":..,"sub":..}` (a signed-in
/// user) or `{"room":..,"id":..}` (a guest's connection).
fn parse_operator(line: &str) -> Option<(RoomName, KeptOperator)> {
    let value = json::parse(line)?;
    let room = RoomName::parse(value.get("room")?.as_str()?)?;
    let operator = match (value.get("sub"), value.get("id")) {
        (Some(sub), None) => KeptOperator::User(sub.as_str()?.to_string()),
        (None, Some(id)) => KeptOperator::Guest(id.as_u64()?),
        _ => return None,
    };
    Some((room, operator))
}

/// A snapshot's `visitor` line: `{"address":..,"sub":..,"exp":..}`, each
/// there if known.
fn visitor_line(client: &KeptClient) -> String {
    let mut fields = Vec::new();
    if let Some(address) = client.address {
        fields.push(format!("\"address\":\"{address}\""));
    }
    if let Some((sub, exp)) = &client.user {
        let mut sub_field = String::from("\"sub\":");
        push_string(&mut sub_field, sub);
        fields.push(sub_field);
        fields.push(format!("\"exp\":{exp}"));
    }
    format!("{{{}}}", fields.join(","))
}

fn parse_visitor(line: &str, client: &mut KeptClient) -> Option<()> {
    let value = json::parse(line)?;
    if let Some(address) = value.get("address") {
        client.address = Some(address.as_str()?.parse().ok()?);
    }
    if let Some(sub) = value.get("sub") {
        let exp = match value.get("exp")? {
            Value::Number(exp) => exp.parse().ok()?,
            _ => return None,
        };
        client.user = Some((sub.as_str()?.to_string(), exp));
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::{Output, Payload};

    fn epoch() -> Epoch {
        Epoch::parse("e1").unwrap()
    }

    fn limits(history: usize) -> Limits {
        Limits {
            history,
            max_rooms_per_client: 32,
            max_rooms: 100,
            max_room_members: 100,
            room_history_bytes: 1 << 20,
        }
    }

    fn entry(record: &Record, id: u64, seq: u64) -> Entry {
        let mut fields = vec![("seq".to_string(), seq.to_string().into_bytes())];
        for (name, value) in record.fields() {
            fields.push((name.to_string(), value));
        }
        Entry {
            id: StreamId { ms: id, seq: 0 },
            fields,
        }
    }

    fn join(id: ClientId, node: &str) -> Record {
        Record {
            action: Action::Join {
                id,
                mode: Mode::V1,
                resume: None,
            },
            node: node.into(),
            ts: 5,
            rooms: vec![RoomName::main()],
            visitor: Visitor::default(),
        }
    }

    fn text(id: ClientId, text: &str) -> Record {
        Record {
            action: Action::Text {
                id,
                text: text.into(),
            },
            node: "n1".into(),
            ts: 7,
            rooms: Vec::new(),
            visitor: Visitor::default(),
        }
    }

    #[test]
    fn records_round_trip_through_stream_fields() {
        let records = [
            join(3_000_000_001, "n1"),
            text(3_000_000_001, "hi\nthere"),
            Record {
                action: Action::Binary {
                    id: 4,
                    data: vec![0, 255, 10],
                },
                node: "n2".into(),
                ts: 9,
                rooms: Vec::new(),
                visitor: Visitor::default(),
            },
            Record {
                action: Action::Leave { id: 4 },
                node: "n2".into(),
                ts: 10,
                rooms: Vec::new(),
                visitor: Visitor::default(),
            },
        ];
        let signed_in = Record {
            visitor: Visitor {
                identity: Some(Identity {
                    sub: "u 17 \u{e9}".into(),
                    name: Some("ann".into()),
                    op: true,
                    rooms: vec![RoomName::parse("#staff").unwrap()],
                    exp: 1_764_097_200,
                }),
                address: Some("2001:db8::7".parse().unwrap()),
            },
            ..join(3_000_000_002, "n2")
        };
        let signed_in_without_name = Record {
            visitor: Visitor {
                identity: Some(Identity {
                    sub: "u-9".into(),
                    name: None,
                    op: false,
                    rooms: Vec::new(),
                    exp: 1,
                }),
                address: Some("192.0.2.7".parse().unwrap()),
            },
            ..join(3_000_000_003, "n2")
        };
        let refreshed = Record {
            action: Action::Refresh {
                id: 3_000_000_002,
                identity: Box::new(signed_in.visitor.identity.clone().unwrap()),
            },
            ..text(3_000_000_002, "")
        };
        for record in records
            .into_iter()
            .chain([signed_in, signed_in_without_name, refreshed])
        {
            let back = Record::decode(&entry(&record, 1, 1)).unwrap();
            assert_eq!(back, record);
        }
        let mut broken = entry(&join(1, "n1"), 1, 1);
        broken.fields.retain(|(name, _)| name != "mode");
        assert!(Record::decode(&broken).unwrap_err().contains("mode"));
    }

    /// A stream written before every entry named its node (only joins
    /// did) still loads: these are the fields such a version appended,
    /// byte for byte.
    #[test]
    fn entries_that_name_the_node_on_joins_only_still_load() {
        let written = |fields: &[(&str, &[u8])]| Entry {
            id: StreamId { ms: 1, seq: 0 },
            fields: fields
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_vec()))
                .collect(),
        };
        let mut nameless = entry(&join(1, "n1"), 1, 1);
        let join = written(&[
            ("seq", b"1"),
            ("op", b"join"),
            ("id", b"3000000001"),
            ("ts", b"1764093600000"),
            ("mode", b"v1"),
            ("node", b"n1"),
        ]);
        let text = written(&[
            ("seq", b"2"),
            ("op", b"text"),
            ("id", b"3000000001"),
            ("ts", b"1764093601000"),
            ("text", b"hello"),
        ]);
        let leave = written(&[
            ("seq", b"3"),
            ("op", b"leave"),
            ("id", b"3000000001"),
            ("ts", b"1764093602000"),
        ]);
        let join = Record::decode(&join).unwrap();
        assert_eq!(join.node, "n1");
        assert!(matches!(
            join.action,
            Action::Join {
                id: 3_000_000_001,
                mode: Mode::V1,
                resume: None
            }
        ));
        let text = Record::decode(&text).unwrap();
        assert_eq!(text.node, "", "not named: unknown");
        assert_eq!(
            text.action,
            Action::Text {
                id: 3_000_000_001,
                text: "hello".into()
            }
        );
        assert_eq!(text.ts, 1_764_093_601_000);
        let leave = Record::decode(&leave).unwrap();
        assert_eq!(leave.action, Action::Leave { id: 3_000_000_001 });
        // A join must still name its node.
        nameless.fields.retain(|(name, _)| name != "node");
        assert!(Record::decode(&nameless).unwrap_err().contains("node"));
    }

    /// `id` signed in as `sub` (an operator if `op`), through `node`.
    fn signed_in(id: ClientId, node: &str, sub: &str, op: bool) -> Record {
        Record {
            visitor: Visitor {
                identity: Some(Identity {
                    sub: sub.into(),
                    name: Some(sub.into()),
                    op,
                    rooms: Vec::new(),
                    exp: 2_000_000_000,
                }),
                address: Some("192.0.2.7".parse().unwrap()),
            },
            ..join(id, node)
        }
    }

    /// A join carries the sign-in, so an operator on one node bans a user
    /// of another on every replica: each removes it, each turns it away
    /// when it comes back, and each leaves out a join ordered after the
    /// ban.
    #[test]
    fn a_ban_by_an_operator_holds_on_every_replica() {
        let entries = [
            signed_in(1_000_000_001, "a", "olga", true),
            signed_in(2_000_000_001, "b", "gus", false),
            text(1_000_000_001, "/ban gus spam"),
        ];
        let mut replicas = [
            Replica::new(limits(10), epoch()),
            Replica::new(limits(10), epoch()),
        ];
        for replica in &mut replicas {
            let mut out = Vec::new();
            for (n, record) in entries.iter().enumerate() {
                let at = StreamId {
                    ms: n as u64 + 1,
                    seq: 0,
                };
                replica.apply(at, n as u64 + 1, record.clone(), &mut out);
            }
            let removed = out.iter().any(|o| {
                matches!(
                    o,
                    Output::Removed {
                        to: 2_000_000_001,
                        banned: true
                    }
                )
            });
            assert!(removed, "{out:?}");
            let gus = signed_in(2_000_000_002, "b", "gus", false);
            let refusal = replica.chat.admission(&gus.visitor, 10).unwrap_err();
            assert_eq!(refusal, "banned");
            // A join that was on its way when the ban was made is left out.
            let at = StreamId { ms: 9, seq: 0 };
            replica.apply(at, 9, gus, &mut out);
            assert!(!replica.chat.contains(2_000_000_002));
        }
    }

    /// Two replicas fed the same entries agree, and a text's id is its seq.
    #[test]
    fn replicas_agree_and_messages_are_numbered_by_seq() {
        let entries = [
            (join(1_000_000_001, "a"), 10),
            (join(2_000_000_001, "b"), 11),
            (text(1_000_000_001, "/nick ann"), 12),
            (text(2_000_000_001, "/nick ann"), 13),
            (text(2_000_000_001, "hello"), 14),
        ];
        let mut replicas = [
            Replica::new(limits(10), epoch()),
            Replica::new(limits(10), epoch()),
        ];
        let mut outs = [Vec::new(), Vec::new()];
        for (i, replica) in replicas.iter_mut().enumerate() {
            for (n, (record, seq)) in entries.iter().enumerate() {
                let id = StreamId {
                    ms: n as u64 + 1,
                    seq: 0,
                };
                replica.apply(id, *seq, record.clone(), &mut outs[i]);
            }
        }
        assert_eq!(outs[0], outs[1]);
        assert_eq!(replicas[0].snapshot(), replicas[1].snapshot());
        assert_eq!(replicas[0].chat.nick(1_000_000_001), Some("ann"));
        assert_eq!(
            replicas[0].chat.nick(2_000_000_001),
            Some("guest-2000000001")
        );
        let taken = outs[0].iter().any(|o| {
            matches!(o, Output::Reply { to: 2_000_000_001, event } if event.contains("nick_taken"))
        });
        assert!(taken, "the second /nick ann loses on every replica");
        let message = outs[0].iter().find_map(|o| match o {
            Output::ToRoom {
                mode: Mode::V1,
                payload: Payload::Text(t),
                ..
            } if t.contains("\"type\":\"message\"") => Some(t.clone()),
            _ => None,
        });
        let message = message.unwrap();
        assert!(message.contains("\"id\":14,"), "{message}");
        assert!(message.contains("\"ts\":7"), "{message}");
    }

    #[test]
    fn duplicates_are_skipped_and_gaps_counted() {
        let mut replica = Replica::new(limits(10), epoch());
        let mut out = Vec::new();
        let at = |ms| StreamId { ms, seq: 0 };
        let first = replica.apply(at(1), 1, join(1, "a"), &mut out);
        assert_eq!(first, Applied::Done { missed: 0 });
        let again = replica.apply(at(1), 1, join(1, "a"), &mut out);
        assert_eq!(again, Applied::Duplicate);
        let later = replica.apply(at(5), 4, text(1, "x"), &mut out);
        assert_eq!(later, Applied::Done { missed: 2 });
        // A Redis that lost its data numbers from 1 again: still applied.
        let renumbered = replica.apply(at(9), 1, text(1, "y"), &mut out);
        assert_eq!(renumbered, Applied::Done { missed: 0 });
        assert_eq!(replica.last_seq, 1);
    }

    #[test]
    fn a_snapshot_restores_the_same_room() {
        let mut replica = Replica::new(limits(2), epoch());
        let mut out = Vec::new();
        let at = |ms| StreamId { ms, seq: 0 };
        replica.apply(at(1), 1, join(1_000_000_001, "a"), &mut out);
        replica.apply(at(2), 2, text(1_000_000_001, "/nick ann"), &mut out);
        for (n, seq) in [(3, 3), (4, 4), (5, 5)] {
            replica.apply(at(n), seq, text(1_000_000_001, "hi"), &mut out);
        }
        replica.apply(at(6), 6, join(2_000_000_001, "b"), &mut out);
        let text_form = replica.snapshot();
        let back = Replica::restore(&text_form, limits(2), &epoch()).unwrap();
        assert_eq!(back.snapshot(), text_form);
        assert_eq!(back.last_id, at(6));
        assert_eq!(
            back.chat
                .history(&RoomName::main())
                .unwrap()
                .dropped_through(),
            3
        );
        assert_eq!(back.members_of("a"), vec![1_000_000_001]);
        assert_eq!(back.chat.nick(1_000_000_001), Some("ann"));
        assert!(Replica::restore("nonsense", limits(2), &epoch()).is_err());
        assert!(Replica::restore("wschat-snapshot 1\nmember x", limits(2), &epoch()).is_err());
        // Another epoch's snapshot is refused; one from before epochs is
        // taken to be of the current one.
        let other = Epoch::parse("other").unwrap();
        let refused = Replica::restore(&text_form, limits(2), &other).unwrap_err();
        assert!(refused.contains("epoch"), "{refused}");
        let version_1 = text_form
            .replace("wschat-snapshot 2", "wschat-snapshot 1")
            .replace("epoch e1\n", "");
        let back = Replica::restore(&version_1, limits(2), &other).unwrap();
        assert_eq!(back.chat.epoch(), &other);
        assert_eq!(back.last_id, at(6));
    }

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    fn joins(id: ClientId, node: &str, rooms: &[&str]) -> Record {
        Record {
            rooms: rooms.iter().map(|r| room(r)).collect(),
            ..join(id, node)
        }
    }

    #[test]
    fn a_join_carries_its_rooms_and_mode() {
        for rooms in [&["#main", "#rust"][..], &["#go"], &[]] {
            let mut record = joins(7, "n1", rooms);
            record.action = Action::Join {
                id: 7,
                mode: Mode::Raw,
                resume: None,
            };
            let back = Record::decode(&entry(&record, 1, 1)).unwrap();
            assert_eq!(back, record);
        }
        let field = |record: &Record| {
            let fields = record.fields();
            let (_, value) = fields.iter().find(|(name, _)| *name == "rooms").unwrap();
            String::from_utf8(value.clone()).unwrap()
        };
        assert_eq!(field(&joins(7, "n1", &["#main", "#rust"])), "main,rust");
        assert_eq!(field(&joins(7, "n1", &[])), "");
        // Written before rooms: no field, so `#main`.
        let mut old = entry(&join(7, "n1"), 1, 1);
        old.fields.retain(|(name, _)| name != "rooms");
        assert_eq!(Record::decode(&old).unwrap().rooms, vec![RoomName::main()]);
        // A bad name is refused, saying which field.
        let mut bad = entry(&join(7, "n1"), 1, 1);
        for (name, value) in &mut bad.fields {
            if name == "rooms" {
                *value = b"main,Not a room".to_vec();
            }
        }
        assert!(Record::decode(&bad).unwrap_err().contains("rooms"));
    }

    /// Feeds `entries` (record, seq) to `replica` from stream id `from`.
    fn feed(replica: &mut Replica, from: u64, entries: &[Record]) -> Vec<Output> {
        let mut out = Vec::new();
        for (n, record) in entries.iter().enumerate() {
            let at = StreamId {
                ms: from + n as u64,
                seq: 0,
            };
            replica.apply(at, from + n as u64, record.clone(), &mut out);
        }
        out
    }

    /// Three clients on three nodes, rooms with topics and histories, a
    /// budget small enough that rooms are evicted and histories trimmed.
    fn busy_entries() -> (Vec<Record>, Vec<Record>) {
        let (a, b, c) = (1_000_000_001, 2_000_000_001, 3_000_000_001);
        let first = vec![
            joins(a, "n1", &["#main", "#rust"]),
            joins(b, "n2", &["#rust", "#go"]),
            joins(c, "n3", &[]),
            text(a, "/nick ann"),
            text(a, "/topic #rust borrowing"),
            text(a, "/say #rust hello rust"),
            text(b, "/say #go hello go"),
            text(c, "/join #c1"),
            text(c, "/say #c1 one"),
            text(c, "/part #c1"),
            text(c, "/join #c2"),
            text(c, "/say #c2 two"),
            text(c, "/part #c2"),
            text(a, "hello main"),
        ];
        let (mut first, mut second) = (first, Vec::new());
        for n in 0..6 {
            let half = if n < 3 { &mut first } else { &mut second };
            half.push(text(c, &format!("/join #d{n}")));
            half.push(text(c, &format!("/say #d{n} {}", "x".repeat(200))));
            half.push(text(c, &format!("/part #d{n}")));
        }
        second.push(text(b, "/say #rust late"));
        second.push(Record {
            action: Action::Leave { id: b },
            node: "n2".into(),
            ts: 11,
            rooms: Vec::new(),
            visitor: Visitor::default(),
        });
        (first, second)
    }

    /// A `RoomId` is the node's own small number for delivery (ids are
    /// reused, so a restored chat may number its rooms otherwise); the
    /// events name the room.
    fn without_room_ids(mut out: Vec<Output>) -> Vec<Output> {
        for output in &mut out {
            match output {
                Output::ToRoom { room, .. }
                | Output::Enter { room, .. }
                | Output::Exit { room, .. } => *room = 0,
                _ => {}
            }
        }
        out
    }

    fn tight() -> Limits {
        Limits {
            max_rooms: 6,
            room_history_bytes: 900,
            ..limits(3)
        }
    }

    /// Eviction and trimming are functions of the entries alone: replicas
    /// fed the same entries agree, and so does one that loaded a snapshot
    /// taken halfway and applied the rest.
    #[test]
    fn replicas_evict_and_trim_alike_even_from_a_snapshot() {
        let (first, second) = busy_entries();
        let mut one = Replica::new(tight(), epoch());
        let mut two = Replica::new(tight(), epoch());
        feed(&mut one, 1, &first);
        feed(&mut two, 1, &first);
        let halfway = one.snapshot();
        let mut three = Replica::restore(&halfway, tight(), &epoch()).unwrap();
        assert_eq!(three.snapshot(), halfway);
        assert!(three.chat.evicted_through() > 0, "rooms went before it");
        let from = 1 + first.len() as u64;
        let outs = [
            feed(&mut one, from, &second),
            feed(&mut two, from, &second),
            feed(&mut three, from, &second),
        ]
        .map(without_room_ids);
        assert!(outs[0] == outs[1]);
        assert!(outs[0] == outs[2], "the restored replica answers alike");
        assert_eq!(one.snapshot(), two.snapshot());
        assert_eq!(one.snapshot(), three.snapshot());
        // The budget did its work: rooms went, the mark they left is kept.
        assert!(one.chat.history_bytes() <= 900);
        assert!(one.chat.room_count() <= 6);
        assert!(one.chat.room_id(&room("#c1")).is_none(), "unused longest");
        assert!(one.chat.evicted_through() > 0);
        assert_eq!(one.chat.evicted_through(), three.chat.evicted_through());
    }

    #[test]
    fn a_snapshot_keeps_rooms_topics_histories_and_membership() {
        let (first, _) = busy_entries();
        let mut replica = Replica::new(limits(10), epoch());
        feed(&mut replica, 1, &first);
        let text_form = replica.snapshot();
        assert!(text_form.starts_with("wschat-snapshot 4\n"), "{text_form}");
        assert!(text_form.contains(r##"room {"type":"room","room":"#rust","topic":"borrowing""##));
        assert!(text_form.contains("client 3000000001 v1 n3  guest-3000000001\n"));
        let back = Replica::restore(&text_form, limits(10), &epoch()).unwrap();
        assert_eq!(back.snapshot(), text_form);
        assert_eq!(
            back.chat.rooms_of(2_000_000_001),
            vec![room("#rust"), room("#go")]
        );
        assert_eq!(back.chat.rooms_of(3_000_000_001), Vec::<RoomName>::new());
        assert_eq!(back.chat.members(&room("#rust")).len(), 2);
        let rust = back.chat.history(&room("#rust")).unwrap();
        assert_eq!(rust.len(), 1);
        assert!(rust.iter().next().unwrap().contains("hello rust"));
        assert_eq!(back.chat.nick(1_000_000_001), Some("ann"));
        assert_eq!(back.members_of("n2"), vec![2_000_000_001]);
        // A nickname is still taken after loading: the same answer.
        let mut out = [Vec::new(), Vec::new()];
        let again = [text(3_000_000_001, "/nick ANN")];
        for (i, mut r) in [replica, back].into_iter().enumerate() {
            out[i] = feed(&mut r, 100, &again);
        }
        assert_eq!(out[0], out[1]);
        assert!(format!("{:?}", out[0]).contains("nick_taken"));
    }

    /// `/auth` with a token that makes the user an operator (and lists a
    /// private room) reaches every replica: the user may `/kick` now, and
    /// join the room.
    #[test]
    fn a_refreshed_sign_in_takes_the_new_tokens_role_and_rooms() {
        let (olga, gus) = (1_000_000_001, 2_000_000_001);
        let mut promoted = signed_in(olga, "a", "olga", true).visitor.identity.unwrap();
        promoted.rooms = vec![room("#staff")];
        promoted.exp = 2_000_000_100;
        let refresh = Record {
            action: Action::Refresh {
                id: olga,
                identity: Box::new(promoted),
            },
            ..text(olga, "")
        };
        let entries = [
            signed_in(olga, "a", "olga", false),
            signed_in(gus, "b", "gus", false),
            text(olga, "/kick gus"),
            refresh,
            text(olga, "/kick gus"),
        ];
        let mut replica = Replica::new(limits(10), epoch());
        let out = feed(&mut replica, 1, &entries);
        let refused = out.iter().filter(|o| {
            matches!(o, Output::Reply { to, event } if *to == olga && event.contains("not_allowed"))
        });
        assert_eq!(refused.count(), 1, "{out:?}");
        assert!(out.contains(&Output::Removed {
            to: gus,
            banned: false
        }));
        assert!(
            replica
                .snapshot()
                .contains(r#""sub":"olga","exp":2000000100"#)
        );
        assert!(
            replica
                .snapshot()
                .contains(r##""op":true,"rooms":["#staff"]"##)
        );
    }

    /// Version 4 keeps what the history file keeps of identity and
    /// moderation (bans, mutes, owned names, private rooms, `/oplock`,
    /// direct messages) and who each client is: a node that starts from
    /// it holds the same bans and answers the same as the others.
    #[test]
    fn a_snapshot_keeps_sign_ins_bans_mutes_and_direct_messages() {
        let (olga, ann, ann2, gus) = (1_000_000_001, 2_000_000_001, 2_000_000_002, 3_000_000_001);
        let staff = |id| {
            let mut record = signed_in(id, "b", "ann", false);
            if let Some(identity) = &mut record.visitor.identity {
                identity.rooms = vec![room("#staff")];
            }
            record
        };
        let entries = [
            signed_in(olga, "a", "olga", true),
            staff(ann),
            staff(ann2),
            signed_in(gus, "c", "gus", false),
            text(olga, "/join #ops"),
            text(olga, "/oplock #ops on"),
            text(ann, "/msg olga hello olga"),
            text(olga, "/ban gus 1h spam"),
            text(olga, "/mute ann 1h"),
            join(4_000_000_001, "d"),
            text(4_000_000_001, "/join #lobby"),
        ];
        let mut replica = Replica::new(limits(10), epoch());
        feed(&mut replica, 1, &entries);
        let text_form = replica.snapshot();
        for line in [
            r##"identity {"type":"oplock","room":"#ops","on":true}"##,
            r#"identity {"type":"owner","name":"ann","sub":"ann"}"#,
            r##"identity {"type":"private","room":"#staff"}"##,
            r#"identity {"type":"sanction","kind":"ban","target":{"sub":"gus"}"#,
            r#"identity {"type":"sanction","kind":"mute","target":{"sub":"ann"}"#,
            r#"identity {"type":"dm","pair":["ann","olga"]"#,
            r##"user {"sub":"ann","id":2000000001,"nick":"ann","op":false,"rooms":["#staff"]}"##,
            r#"visitor {"address":"192.0.2.7","sub":"ann","exp":2000000000}"#,
            r##"operator {"room":"#ops","sub":"olga"}"##,
            r##"operator {"room":"#lobby","id":4000000001}"##,
        ] {
            assert!(text_form.contains(line), "{line} in:\n{text_form}");
        }
        let mut back = Replica::restore(&text_form, limits(10), &epoch()).unwrap();
        assert_eq!(back.snapshot(), text_form);
        let gus_again = signed_in(3_000_000_002, "c", "gus", false);
        assert!(back.chat.admission(&gus_again.visitor, 10).is_err());
        // The same entries give the same outputs on both: ann is muted on
        // both connections, olga hears the same user, the DM is kept.
        let more = [
            text(ann2, "can you hear me"),
            text(olga, "/topic #ops mine"),
            text(4_000_000_001, "/oplock #lobby on"),
            signed_in(1_000_000_002, "a", "olga", true),
        ];
        let out = [feed(&mut replica, 100, &more), feed(&mut back, 100, &more)];
        assert_eq!(out[0], out[1]);
        let shown = format!("{:?}", out[0]);
        assert!(
            shown.contains("muted") && shown.contains("hello olga"),
            "{shown}"
        );
        assert!(
            back.snapshot()
                .contains(r##"{"type":"oplock","room":"#lobby","on":true}"##)
        );
        // Redis losing its data forgets the rooms' messages; the direct
        // message (no id, no epoch) stays, and still counts.
        let direct_bytes = replica.chat.history_bytes();
        replica.start_epoch(Epoch::parse("e2").unwrap());
        assert_eq!(replica.chat.history_bytes(), direct_bytes);
        assert!(direct_bytes > 0);
    }

    /// A version 2 snapshot (one room) loads as `#main`; a newer format
    /// than this version knows is refused, saying so.
    #[test]
    fn a_one_room_snapshot_loads_as_main_and_a_newer_one_is_refused() {
        let version_2 = "wschat-snapshot 2\nepoch e1\nafter 6-0\nseq 6\ndropped 3\n\
            member 1000000001 v1 a ann\nmember 2000000001 raw b guest-2000000001\n\
            history {\"type\":\"message\",\"id\":4,\"from\":{\"id\":1000000001,\"nick\":\"ann\"},\"text\":\"hi\",\"ts\":7}\n\
            history {\"type\":\"message\",\"id\":5,\"from\":{\"id\":1000000001,\"nick\":\"ann\"},\"text\":\"hi\",\"ts\":7}\n";
        let back = Replica::restore(version_2, limits(10), &epoch()).unwrap();
        let main = back.chat.history(&RoomName::main()).unwrap();
        assert_eq!(main.len(), 2);
        assert_eq!(main.dropped_through(), 3);
        assert_eq!(back.chat.rooms_of(1_000_000_001), vec![RoomName::main()]);
        assert_eq!(back.chat.mode(2_000_000_001), Some(Mode::Raw));
        assert_eq!(back.chat.nick(1_000_000_001), Some("ann"));
        assert_eq!(back.members_of("b"), vec![2_000_000_001]);
        assert_eq!(back.last_seq, 6);
        let newer = Replica::restore("wschat-snapshot 5\n", limits(10), &epoch()).unwrap_err();
        assert!(newer.contains("newer"), "{newer}");
        let bad_room = "wschat-snapshot 3\nroom {\"type\":\"room\",\"room\":\"nope\"}\n";
        assert!(Replica::restore(bad_room, limits(10), &epoch()).is_err());
    }

    /// Redis lost its data: every room forgets its history, members stay.
    #[test]
    fn a_new_epoch_forgets_every_history_but_keeps_the_rooms() {
        let (first, _) = busy_entries();
        let mut replica = Replica::new(limits(10), epoch());
        feed(&mut replica, 1, &first);
        replica.start_epoch(Epoch::parse("e2").unwrap());
        assert_eq!(replica.chat.history_bytes(), 0);
        assert!(replica.chat.history(&room("#rust")).unwrap().is_empty());
        assert_eq!(replica.chat.members(&room("#rust")).len(), 2);
        assert_eq!(replica.last_seq, 0);
    }
}
