//! `--history-file`: the rooms (their topics and kept histories), the
//! next message id and the epoch on disk, so that a restart neither wipes
//! the chat's memory nor issues an id twice, and a resuming client can
//! tell the same history from a new one.
//!
//! # The format (version 3)
//!
//! UTF-8 text, one JSON object per line. The first line is the header:
//!
//! ```text
//! {"wschat_history":3,"epoch":"k3x9a2bq","next_seq":42}
//! {"type":"room","room":"#main","topic":null,"dropped":0}
//! {"type":"message","id":40,"from":{"id":7,"nick":"ann"},"text":"hi","ts":1764093600000,"room":"#main"}
//! {"type":"room","room":"#rust","topic":"borrowing","dropped":12}
//! {"type":"message","id":41,"from":{"id":9,"nick":"bo"},"text":"waves","ts":1764093601000,"room":"#rust","action":true}
//! {"type":"trim","room":"#rust","through":41}
//! {"type":"gone","room":"#rust"}
//! ```
//!
//! - `wschat_history`: the format's version. A file of a newer version
//!   than this server reads is refused at start-up (never overwritten).
//! - `epoch`: the epoch of the ids in this file ([`Epoch`]); a new file
//!   gets a fresh one, and it never changes while the file lives.
//! - `next_seq`: the id the next message gets, at the time the header was
//!   written. Ids of the records after it count too: the next id is one
//!   more than the greatest of all, torn lines' included.
//! - Then one record per line, each an object with a `type`, applied in
//!   order:
//!   - `message`: the `message` event exactly as clients receive it
//!     ([`message_seq`] says which lines are whole), kept in its `room`'s
//!     history (a room it names that has no record yet is made);
//!   - `room`: a room made, or its topic set (`null`: none); `dropped` is
//!     the newest id its history has let go of;
//!   - `trim`: the room's messages up to id `through` let go of (to keep
//!     within `--room-history-bytes`);
//!   - `gone`: the room evicted, with its history;
//!   - `oplock`: whether only the room's operators may set its topic
//!     (`"on":true|false`);
//!   - `owner`: a name (`name`, folded as nicknames are compared) owned
//!     by the signed-in user `sub`;
//!   - `private`: a room some token's `rooms` claim named;
//!   - `sanction`: a ban or mute (`kind`) of a `target` (`{"sub":..}` or
//!     `{"address":..}`), shown as `label`, in a `room` (`null`: the
//!     whole server), `until` a time in ms (`null`: until lifted);
//!   - `lift`: the bans of that `kind`, `target` and `room` lifted;
//!   - `dm`: a direct message between two signed-in users (`pair`, their
//!     two `sub`s in order), the `event` as they received it.
//!
//!   ```text
//!   {"type":"oplock","room":"#rust","on":true}
//!   {"type":"owner","name":"ann","sub":"u-17"}
//!   {"type":"private","room":"#staff"}
//!   {"type":"sanction","kind":"ban","target":{"address":"192.0.2.7"},"label":"troll","room":null,"until":1764097200000}
//!   {"type":"lift","kind":"ban","target":{"address":"192.0.2.7"},"room":null}
//!   {"type":"dm","pair":["u-17","u-42"],"event":{"type":"direct","from":..,"to":..,"text":"hi","ts":1764093600000}}
//!   ```
//!
//!   Version 1 had `message` lines only, without `room`: a version 1 file
//!   loads as `#main`'s history. Version 2 had the room kinds (`room`,
//!   `trim`, `gone`) and no identity or moderation kinds; it loads as it
//!   is, with no names owned and no bans. Each new kind comes with a new
//!   version number, and a server reads every older version.
//!
//! A file without a header (written before the format had one: bare
//! `message` lines) is loaded as a version 1 file with no header: its
//! messages are kept, a fresh epoch is given, and it is rewritten in the
//! current format at once.
//!
//! # Writing, bounded
//!
//! At start-up the file is loaded and rewritten (see [`rewrite`]: a
//! temporary file, fsync, rename, fsync of the directory), which drops
//! torn and damaged lines and what no longer fits the history. Then each
//! new message is appended as one line by a thread of its own, so the
//! broadcaster never waits for a disk. When [`COMPACT_AFTER_BYTES`] have
//! been appended, the writer rewrites the file again from its copy of the
//! rooms (kept in step by applying the same records): the file holds at
//! most the kept histories (at most `--room-history-bytes`) plus that
//! much, and loading it at start-up reads no more.
//!
//! The writer's queue is bounded too ([`QUEUE_MAX_RECORDS`],
//! [`QUEUE_MAX_BYTES`]). If the disk stalls and the queue fills, the
//! broadcaster does not wait and does not drop lines one by one: it
//! replaces everything waiting by a copy of the rooms and their kept
//! histories (a pointer per message; the text is shared) and the next id, logs it
//! once, and the writer rewrites the file from that copy when the disk
//! comes back. The file's promise — the last `--history` messages, the
//! next id and the epoch — is kept whole; only messages that had already
//! left the kept history skip the disk, as compaction would have dropped
//! them. A failed write is handled the same way: logged, then the file is
//! rewritten from memory every [`RETRY_AFTER`] until it works.
//!
//! Lines are written without fsync (a crash of the process loses nothing
//! the kernel has; a power cut may lose the last lines, and then a client
//! resuming from a lost id is told `gap`, as its id is not issued yet).
//! Rewrites are fsynced before the rename, so the file is always either
//! the old one or the new one, whole.

use crate::json::{self, Value};
use crate::room::{
    Epoch, History, KeptIdentity, KeptRoom, RoomName, Sanction, SanctionKind, SanctionTarget,
    direct_record, message_id, now_ms, oplock_record, owner_record, private_record, room_record,
    sanction_record,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The format version this server writes and reads (and every older one).
pub const FORMAT_VERSION: u64 = 3;
/// The header's first key: a line starting with this is a header.
const HEADER_PREFIX: &str = "{\"wschat_history\":";
/// Bytes appended after which the file is compacted (rewritten from the
/// kept history).
pub const COMPACT_AFTER_BYTES: usize = 1024 * 1024;
/// Messages waiting for the writer, at most, before the broadcaster stops
/// queueing them one by one and leaves a copy of the history instead...
pub const QUEUE_MAX_RECORDS: usize = 1024;
/// ... or this many bytes of them (one message larger than this still
/// waits alone).
pub const QUEUE_MAX_BYTES: usize = 1024 * 1024;
/// After a failed write, how long before the file is rewritten again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What a history file holds once loaded.
#[derive(Debug)]
pub struct Loaded {
    /// The rooms, `#main` first, each with its last `--history` messages
    /// and what is older marked dropped.
    pub rooms: Vec<KeptRoom>,
    /// The id the next message gets.
    pub next_seq: u64,
    /// The file's epoch; `None` for a new file, one without a header, or
    /// one whose header is damaged (a fresh epoch then starts).
    pub epoch: Option<Epoch>,
    /// Names owned, private rooms, bans and mutes (in force when
    /// loaded), direct-message histories.
    pub identity: KeptIdentity,
}

/// The epoch of a loaded file, or a fresh one.
pub fn epoch_of(path: &Path, loaded: &Loaded) -> Epoch {
    match &loaded.epoch {
        Some(epoch) => epoch.clone(),
        None => {
            let epoch = Epoch::fresh();
            log::info!(
                "history file {}: new epoch {epoch} (a new file, or one without a header)",
                path.display()
            );
            epoch
        }
    }
}

#[cfg(test)]
impl Loaded {
    /// `#main`'s history.
    pub fn main(&self) -> &History {
        &self.rooms[0].history
    }
}

/// The chat's state as the writer rewrites it: the rooms with their kept
/// histories, and the next id (the epoch is the file's own).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub rooms: Vec<KeptRoom>,
    pub next_seq: u64,
    pub identity: KeptIdentity,
}

/// The rooms as the file's records leave them, in the order they were
/// made (`#main` first): what a load builds and what the writer keeps in
/// step, applying the same records.
#[derive(Debug, Clone)]
struct Kept {
    limit: usize,
    /// `None`: a room gone.
    rooms: Vec<Option<KeptRoom>>,
    index: HashMap<RoomName, usize>,
    /// Owned names: folded name to `sub`.
    owners: BTreeMap<String, String>,
    private_rooms: BTreeSet<RoomName>,
    /// Bans and mutes, in the order given (expired ones are left out
    /// when the file is rewritten).
    sanctions: Vec<Sanction>,
    /// Direct-message histories by pair of `sub`s.
    direct: BTreeMap<(String, String), History>,
}

/// What one line was.
enum Record {
    Message(u64),
    Room,
    Damaged,
}

impl Kept {
    /// `#main` alone, empty, keeping `limit` messages per room.
    fn new(limit: usize) -> Kept {
        Kept::from_rooms(limit, Vec::new())
    }

    fn from_rooms(limit: usize, rooms: Vec<KeptRoom>) -> Kept {
        let mut kept = Kept {
            limit,
            rooms: Vec::new(),
            index: HashMap::new(),
            owners: BTreeMap::new(),
            private_rooms: BTreeSet::new(),
            sanctions: Vec::new(),
            direct: BTreeMap::new(),
        };
        kept.room(&RoomName::main());
        for room in rooms {
            let name = room.name.clone();
            *kept.room(&name) = room;
        }
        kept
    }

    fn from_snapshot(limit: usize, snapshot: Snapshot) -> Kept {
        let mut kept = Kept::from_rooms(limit, snapshot.rooms);
        let identity = snapshot.identity;
        kept.owners = identity.owners.into_iter().collect();
        kept.private_rooms = identity.private_rooms.into_iter().collect();
        kept.sanctions = identity.sanctions;
        kept.direct = identity.direct.into_iter().collect();
        kept
    }

    /// The identity and moderation state, with the sanctions in force at
    /// `now` (ms).
    fn identity(&self, now: u64) -> KeptIdentity {
        KeptIdentity {
            owners: self.owners.clone().into_iter().collect(),
            private_rooms: self.private_rooms.iter().cloned().collect(),
            sanctions: self
                .sanctions
                .iter()
                .filter(|s| s.in_force(now))
                .cloned()
                .collect(),
            direct: self.direct.clone().into_iter().collect(),
        }
    }

    /// The room called `name`, made if need be.
    fn room(&mut self, name: &RoomName) -> &mut KeptRoom {
        let at = match self.index.get(name) {
            Some(at) => *at,
            None => {
                self.rooms.push(Some(KeptRoom {
                    oplock: false,
                    name: name.clone(),
                    topic: None,
                    history: History::new(self.limit),
                }));
                self.index.insert(name.clone(), self.rooms.len() - 1);
                self.rooms.len() - 1
            }
        };
        self.rooms[at].as_mut().expect("indexed rooms exist")
    }

    fn iter(&self) -> impl Iterator<Item = &KeptRoom> {
        self.rooms.iter().flatten()
    }

    fn bytes(&self) -> usize {
        let direct: usize = self.direct.values().map(|h| h.bytes() + h.len() * 64).sum();
        self.iter()
            .map(|r| r.history.bytes() + r.history.len())
            .sum::<usize>()
            + direct
    }

    fn into_rooms(self) -> Vec<KeptRoom> {
        self.rooms.into_iter().flatten().collect()
    }

    /// Forgets the places of the rooms gone (so that rooms made and
    /// evicted between rewrites do not add up).
    fn compact(&mut self) {
        if self.rooms.iter().any(Option::is_none) {
            let rooms = std::mem::take(&mut self.rooms)
                .into_iter()
                .flatten()
                .collect();
            let identity = std::mem::replace(self, Kept::from_rooms(self.limit, rooms));
            self.owners = identity.owners;
            self.private_rooms = identity.private_rooms;
            self.sanctions = identity.sanctions;
            self.direct = identity.direct;
        }
        let now = now_ms();
        self.sanctions.retain(|s| s.in_force(now));
    }

    /// Applies one line; says what it was.
    fn apply(&mut self, line: &str) -> Record {
        if let Some(seq) = message_seq(line) {
            let name = json::parse(line)
                .and_then(|event| event.get("room").and_then(Value::as_str).map(String::from));
            let name = match name {
                Some(name) => RoomName::parse(&name),
                None => Some(RoomName::main()),
            };
            let Some(name) = name else {
                return Record::Damaged;
            };
            self.room(&name).history.push(line.into());
            return Record::Message(seq);
        }
        let Some(record) = json::parse(line) else {
            return Record::Damaged;
        };
        let name = record
            .get("room")
            .and_then(Value::as_str)
            .and_then(RoomName::parse);
        match (record.get("type").and_then(Value::as_str), name) {
            (Some("room"), Some(name)) => {
                let topic = match record.get("topic") {
                    Some(Value::String(topic)) => Some(Arc::from(topic.as_str())),
                    Some(Value::Null) | None => None,
                    Some(_) => return Record::Damaged,
                };
                let dropped = record.get("dropped").and_then(Value::as_u64).unwrap_or(0);
                let room = self.room(&name);
                room.topic = topic;
                let dropped = dropped.max(room.history.dropped_through());
                room.history.set_dropped_through(dropped);
                Record::Room
            }
            (Some("trim"), Some(name)) => {
                let Some(through) = record.get("through").and_then(Value::as_u64) else {
                    return Record::Damaged;
                };
                let history = &mut self.room(&name).history;
                while history
                    .iter()
                    .next()
                    .and_then(message_id)
                    .is_some_and(|id| id <= through)
                {
                    history.pop_oldest();
                }
                let dropped = history.dropped_through().max(through);
                history.set_dropped_through(dropped);
                Record::Room
            }
            (Some("gone"), Some(name)) if !name.is_main() => {
                if let Some(at) = self.index.remove(&name) {
                    self.rooms[at] = None;
                }
                Record::Room
            }
            (Some("oplock"), Some(name)) => match record.get("on") {
                Some(Value::Bool(on)) => {
                    self.room(&name).oplock = *on;
                    Record::Room
                }
                _ => Record::Damaged,
            },
            (Some("private"), Some(name)) => {
                self.private_rooms.insert(name);
                Record::Room
            }
            (Some(kind), _) => self.apply_identity(kind, &record, line),
            _ => Record::Damaged,
        }
    }

    /// Applies an identity or moderation record (`owner`, `sanction`,
    /// `lift`, `dm`).
    fn apply_identity(&mut self, kind: &str, record: &Value, line: &str) -> Record {
        let applied = match kind {
            "owner" => record_str(record, "name")
                .zip(record_str(record, "sub"))
                .map(|(name, sub)| {
                    self.owners.insert(name.to_string(), sub.to_string());
                }),
            "sanction" => parse_sanction(record).map(|sanction| self.sanctions.push(sanction)),
            "lift" => parse_lift(record).map(|(kind, target, room)| {
                self.sanctions
                    .retain(|s| !(s.kind == kind && s.target == target && s.room == room));
            }),
            "dm" => parse_dm(record, line).map(|(pair, event)| {
                let limit = self.limit;
                self.direct
                    .entry(pair)
                    .or_insert_with(|| History::new(limit))
                    .push(event.into());
            }),
            _ => None,
        };
        match applied {
            Some(()) => Record::Room,
            None => Record::Damaged,
        }
    }

    /// The identity and moderation records that restore this state (the
    /// bans and mutes in force at `now`), one per line.
    fn identity_records(&self, now: u64, text: &mut String) {
        for room in self.iter().filter(|room| room.oplock) {
            text.push_str(&oplock_record(&room.name, true));
            text.push('\n');
        }
        for (name, sub) in &self.owners {
            text.push_str(&owner_record(name, sub));
            text.push('\n');
        }
        for room in &self.private_rooms {
            text.push_str(&private_record(room));
            text.push('\n');
        }
        for sanction in self.sanctions.iter().filter(|s| s.in_force(now)) {
            text.push_str(&sanction_record(sanction));
            text.push('\n');
        }
        for ((a, b), history) in &self.direct {
            for event in history.iter() {
                text.push_str(&direct_record(a, b, event));
                text.push('\n');
            }
        }
    }
}

/// One identity or moderation record of this format, read back (a cluster
/// snapshot keeps the same state in the same records: see
/// `cluster::replica`). `lift` is not among them: a state written out
/// holds only the sanctions in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityRecord {
    Oplock(RoomName, bool),
    /// A name's key, and its owner's `sub`.
    Owner(String, String),
    Private(RoomName),
    Sanction(Sanction),
    /// A pair of `sub`s and a direct message's event.
    Direct((String, String), String),
}

/// The record `line` holds, if it is a whole `oplock`, `owner`,
/// `private`, `sanction` or `dm` record.
pub fn parse_identity_record(line: &str) -> Option<IdentityRecord> {
    let record = json::parse(line)?;
    let room = || record_str(&record, "room").and_then(RoomName::parse);
    match record_str(&record, "type")? {
        "oplock" => match record.get("on")? {
            Value::Bool(on) => Some(IdentityRecord::Oplock(room()?, *on)),
            _ => None,
        },
        "owner" => {
            let name = record_str(&record, "name")?.to_string();
            let sub = record_str(&record, "sub")?.to_string();
            Some(IdentityRecord::Owner(name, sub))
        }
        "private" => Some(IdentityRecord::Private(room()?)),
        "sanction" => parse_sanction(&record).map(IdentityRecord::Sanction),
        "dm" => parse_dm(&record, line).map(|(pair, event)| IdentityRecord::Direct(pair, event)),
        _ => None,
    }
}

fn record_str<'v>(record: &'v Value, key: &str) -> Option<&'v str> {
    record.get(key).and_then(Value::as_str)
}

/// A record's `kind`, `target` and `room` (`null`: the whole server).
fn parse_sanction_key(record: &Value) -> Option<(SanctionKind, SanctionTarget, Option<RoomName>)> {
    let kind = match record_str(record, "kind")? {
        "ban" => SanctionKind::Ban,
        "mute" => SanctionKind::Mute,
        _ => return None,
    };
    let target = record.get("target")?;
    let target = match (record_str(target, "sub"), record_str(target, "address")) {
        (Some(sub), None) => SanctionTarget::User(sub.into()),
        (None, Some(address)) => SanctionTarget::Address(address.parse().ok()?),
        _ => return None,
    };
    let room = match record.get("room")? {
        Value::Null => None,
        Value::String(name) => Some(RoomName::parse(name)?),
        _ => return None,
    };
    Some((kind, target, room))
}

fn parse_sanction(record: &Value) -> Option<Sanction> {
    let (kind, target, room) = parse_sanction_key(record)?;
    let until = match record.get("until")? {
        Value::Null => None,
        until => Some(until.as_u64()?),
    };
    Some(Sanction {
        kind,
        target,
        label: record_str(record, "label")?.to_string(),
        room,
        until,
    })
}

fn parse_lift(record: &Value) -> Option<(SanctionKind, SanctionTarget, Option<RoomName>)> {
    parse_sanction_key(record)
}

/// A `dm` record's pair, and its event's text exactly as written (what
/// follows `"event":`; a `sub` cannot hold an unescaped quote, so the
/// first such text is the member's).
fn parse_dm(record: &Value, line: &str) -> Option<((String, String), String)> {
    let Some(Value::Array(pair)) = record.get("pair") else {
        return None;
    };
    let [a, b] = pair.as_slice() else {
        return None;
    };
    let pair = (a.as_str()?.to_string(), b.as_str()?.to_string());
    record.get("event")?;
    let start = line.find(",\"event\":")? + ",\"event\":".len();
    let event = line[start..].strip_suffix('}')?;
    json::parse(event)?;
    Some((pair, event.to_string()))
}

/// What waits for the writer.
#[derive(Debug, Default)]
struct Outbox {
    /// If set, the file is to be rewritten from it first (the disk fell
    /// behind, and what waited was replaced by it).
    rewrite: Option<Snapshot>,
    /// Lines to append after it, oldest first.
    appends: VecDeque<Arc<str>>,
    bytes: usize,
    /// Times the queue was full since the writer last caught up.
    overflows: u64,
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    outbox: Mutex<Outbox>,
    wake: Condvar,
    /// Tests only: held, it stalls the writer as a hung disk would.
    #[cfg(test)]
    stall: Mutex<()>,
}

impl Shared {
    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        // The writer never panics holding the lock; if it did, the
        // queue's contents are still whole.
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sending end of the history writer thread.
#[derive(Debug)]
pub struct HistoryLog {
    shared: Arc<Shared>,
    writer: std::thread::JoinHandle<()>,
}

impl HistoryLog {
    /// Loads `path` (a missing file is a new, empty history), rewrites it
    /// in the current format with its last `limit` messages per room, and
    /// starts the writer. Returns what was loaded, with the epoch to use.
    #[cfg(test)]
    pub fn open(path: &Path, limit: usize) -> io::Result<(Loaded, Epoch, HistoryLog)> {
        let loaded = load(path, limit)?;
        let epoch = epoch_of(path, &loaded);
        let snapshot = Snapshot {
            rooms: loaded.rooms.clone(),
            next_seq: loaded.next_seq,
            identity: loaded.identity.clone(),
        };
        let log = HistoryLog::start(path, epoch.clone(), limit, snapshot)?;
        Ok((loaded, epoch, log))
    }

    /// Rewrites `path` from `snapshot` (what the chat made of a loaded
    /// file, within its limits) and starts the writer.
    pub fn start(
        path: &Path,
        epoch: Epoch,
        limit: usize,
        snapshot: Snapshot,
    ) -> io::Result<HistoryLog> {
        let mut writer = Writer {
            path: path.to_path_buf(),
            epoch,
            next_seq: snapshot.next_seq,
            kept: Kept::from_snapshot(limit, snapshot),
            file: None,
            appended: 0,
            retry_at: None,
        };
        writer.file = Some(rewrite(path, &writer.header(), &writer.kept)?);
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("wschat-history".into())
                .stack_size(64 * 1024)
                .spawn(move || writer.run(&shared))?
        };
        Ok(HistoryLog {
            shared,
            writer: thread,
        })
    }

    /// Writes out everything appended so far, then stops the writer.
    pub fn close(self) {
        self.shared.outbox().closed = true;
        self.shared.wake.notify_one();
        let _ = self.writer.join();
    }

    /// Queues a record (a message, a room's) for the file without waiting.
    /// If the queue is full (the disk is behind), what waits is replaced
    /// by `snapshot()`: the rooms and the next id, `event` included.
    pub fn append(&self, event: Arc<str>, snapshot: impl FnOnce() -> Snapshot) {
        let mut outbox = self.shared.outbox();
        let fits = outbox.appends.len() < QUEUE_MAX_RECORDS
            && outbox.bytes + event.len() <= QUEUE_MAX_BYTES;
        if fits || outbox.appends.is_empty() {
            outbox.bytes += event.len();
            outbox.appends.push_back(event);
        } else {
            if outbox.overflows == 0 {
                log::warn!(
                    "history file: the disk is {} messages ({} bytes) behind; the file will be \
                     rewritten from the kept history when it catches up",
                    outbox.appends.len(),
                    outbox.bytes
                );
            }
            outbox.overflows += 1;
            outbox.rewrite = Some(snapshot());
            outbox.appends.clear();
            outbox.bytes = 0;
        }
        drop(outbox);
        self.shared.wake.notify_one();
    }

    /// Tests only: messages and bytes waiting, and whether a rewrite does.
    #[cfg(test)]
    fn backlog(&self) -> (usize, usize, bool) {
        let outbox = self.shared.outbox();
        (outbox.appends.len(), outbox.bytes, outbox.rewrite.is_some())
    }
}

/// The writer thread's state: the file, and its own copy of the rooms
/// (their histories' pointers shared with the chat's) to compact from.
struct Writer {
    path: PathBuf,
    epoch: Epoch,
    kept: Kept,
    next_seq: u64,
    /// Open for appending; `None` after a failed write, until a rewrite
    /// works.
    file: Option<File>,
    /// Bytes appended since the last rewrite.
    appended: usize,
    /// After a failed write: when to try rewriting again.
    retry_at: Option<Instant>,
}

impl Writer {
    fn header(&self) -> String {
        format!(
            "{HEADER_PREFIX}{FORMAT_VERSION},\"epoch\":\"{}\",\"next_seq\":{}}}",
            self.epoch, self.next_seq
        )
    }

    fn run(mut self, shared: &Shared) {
        loop {
            let (rewrite, appends, overflows, closed) = {
                let mut outbox = shared.outbox();
                while outbox.rewrite.is_none() && outbox.appends.is_empty() && !outbox.closed {
                    let wait = self
                        .retry_at
                        .map(|at| at.saturating_duration_since(Instant::now()));
                    outbox = match wait {
                        None => shared.wake.wait(outbox).unwrap_or_else(|e| e.into_inner()),
                        Some(wait) if wait.is_zero() => break,
                        Some(wait) => {
                            shared
                                .wake
                                .wait_timeout(outbox, wait)
                                .unwrap_or_else(|e| e.into_inner())
                                .0
                        }
                    };
                }
                outbox.bytes = 0;
                (
                    outbox.rewrite.take(),
                    std::mem::take(&mut outbox.appends),
                    std::mem::take(&mut outbox.overflows),
                    outbox.closed,
                )
            };
            #[cfg(test)]
            let _stalled = shared.stall.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(snapshot) = rewrite {
                self.next_seq = self.next_seq.max(snapshot.next_seq);
                self.kept = Kept::from_snapshot(self.kept.limit, snapshot);
                self.file = None; // rewrite from it
            }
            self.write(appends, closed);
            if overflows > 0 {
                log::info!(
                    "history file {}: caught up after the disk fell behind ({overflows} times \
                     the queue was full)",
                    self.path.display()
                );
            }
            if closed {
                return;
            }
        }
    }

    /// Appends `lines`, or rewrites the whole file when it is due (after
    /// a rewrite from memory was asked for, a failed write, or
    /// [`COMPACT_AFTER_BYTES`]).
    fn write(&mut self, lines: VecDeque<Arc<str>>, closing: bool) {
        let mut buffer = Vec::new();
        for line in &lines {
            if let Record::Message(id) = self.kept.apply(line) {
                self.next_seq = self.next_seq.max(id.saturating_add(1));
            }
            buffer.extend_from_slice(line.as_bytes());
            buffer.push(b'\n');
        }
        let compact = self.appended + buffer.len() >= COMPACT_AFTER_BYTES;
        if let (Some(file), false) = (&mut self.file, compact) {
            // One write for the lot: a crash tears at most the last line,
            // which the next start cuts off.
            match file.write_all(&buffer) {
                Ok(()) => {
                    self.appended += buffer.len();
                    return;
                }
                Err(e) => {
                    log::error!(
                        "Error: writing history file {}: {e}; rewriting it from memory",
                        self.path.display()
                    );
                    self.file = None;
                }
            }
        }
        if !closing && self.retry_at.is_some_and(|at| Instant::now() < at) {
            return; // the lines are in `kept`; the retry writes them
        }
        self.kept.compact();
        match rewrite(&self.path, &self.header(), &self.kept) {
            Ok(file) => {
                if self.retry_at.take().is_some() {
                    log::info!("history file {}: written again", self.path.display());
                }
                self.file = Some(file);
                self.appended = 0;
            }
            Err(e) => {
                log::error!(
                    "Error: rewriting history file {}: {e}; trying again in {} s",
                    self.path.display(),
                    RETRY_AFTER.as_secs()
                );
                self.retry_at = Some(Instant::now() + RETRY_AFTER);
            }
        }
    }
}

/// Replaces the file at `path` by `header` and the rooms, each its record
/// then its kept messages, safely:
/// written to `PATH.tmp`, fsynced, renamed over `path` (atomic), and the
/// directory fsynced so that the rename itself survives a power cut.
/// Returns the new file, open for appending.
fn rewrite(path: &Path, header: &str, kept: &Kept) -> io::Result<File> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let temporary = path.with_file_name(name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temporary)?;
        let mut text = String::with_capacity(header.len() + kept.bytes() + 1);
        text.push_str(header);
        text.push('\n');
        for room in kept.iter() {
            let dropped = room.history.dropped_through();
            text.push_str(&room_record(&room.name, room.topic.as_deref(), dropped));
            text.push('\n');
            for event in room.history.iter() {
                text.push_str(event);
                text.push('\n');
            }
        }
        kept.identity_records(now_ms(), &mut text);
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        let directory = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        File::open(directory)?.sync_all()?;
        Ok(file)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result.map_err(|e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// The header's fields, if `line` is a whole header.
fn parse_header(line: &str) -> Option<(u64, Option<Epoch>, u64)> {
    let header = json::parse(line)?;
    let version = header.get("wschat_history")?.as_u64()?;
    let epoch = header
        .get("epoch")
        .and_then(Value::as_str)
        .and_then(Epoch::parse);
    let next_seq = header.get("next_seq").and_then(Value::as_u64).unwrap_or(1);
    Some((version, epoch, next_seq))
}

/// Loads the rooms and the last `limit` messages of each from `path` (a
/// missing file is `#main` alone, empty) with the next free id and the
/// epoch. The next id is one more than the greatest id in the file (whole
/// lines or torn) and at least the header's `next_seq`. In a version 1
/// file (messages only, all `#main`'s) messages older than the first one
/// kept count as dropped (so a client resuming from before them is told
/// `gap`); version 2 says so in each room's record. Lines that are not
/// whole records — a line torn by a crash — are skipped with a warning. A
/// file of a newer format version is an error (`InvalidData`), to be
/// refused, not overwritten.
pub fn load(path: &Path, limit: usize) -> io::Result<Loaded> {
    let mut kept = Kept::new(limit);
    let mut next_seq = 1;
    let mut epoch = None;
    let mut version = 1;
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Loaded {
                rooms: kept.into_rooms(),
                next_seq,
                epoch,
                identity: KeptIdentity::default(),
            });
        }
        Err(e) => return Err(e),
    };
    for (number, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line?;
        let text = std::str::from_utf8(&line).ok();
        if let Some(text) = text.filter(|t| number == 0 && t.starts_with(HEADER_PREFIX)) {
            match parse_header(text) {
                Some((newer, _, _)) if newer > FORMAT_VERSION => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "history file {} is in format version {newer}, written by a newer \
                             wschat; this one reads versions up to {FORMAT_VERSION} \
                             (refusing to start rather than overwrite it)",
                            path.display()
                        ),
                    ));
                }
                Some((header_version, header_epoch, header_next)) => {
                    version = header_version;
                    epoch = header_epoch;
                    next_seq = next_seq.max(header_next);
                    continue;
                }
                None => {} // damaged: skipped below, and a new epoch starts
            }
        }
        match text.map(|text| kept.apply(text)) {
            Some(Record::Message(seq)) => next_seq = next_seq.max(seq.saturating_add(1)),
            Some(Record::Room) => {}
            _ if line.is_empty() => {}
            _ => {
                // Its id may have been issued to clients already.
                if let Some(seq) = torn_seq(&line) {
                    next_seq = next_seq.max(seq.saturating_add(1));
                }
                log::warn!(
                    "history file {}: skipping damaged line {}",
                    path.display(),
                    number + 1
                );
            }
        }
    }
    if version < 2 {
        // Whatever came before the first message kept is no longer kept.
        let history = &mut kept.room(&RoomName::main()).history;
        let first_kept = history
            .iter()
            .next()
            .and_then(message_id)
            .unwrap_or(next_seq);
        let dropped = history.dropped_through().max(first_kept.saturating_sub(1));
        history.set_dropped_through(dropped);
    }
    let identity = kept.identity(now_ms());
    Ok(Loaded {
        rooms: kept.into_rooms(),
        next_seq,
        epoch,
        identity,
    })
}

/// The sequence number of a line, if it is a complete, well-formed
/// `message` event as [`crate::room::message_event`] writes it: a JSON
/// object with `type` "message", a whole-number `id`, `from` (an object of
/// a whole-number `id` and a string `nick`, and for a signed-in sender
/// `"verified":true` and an operator's `"op":true`), a string `text`, a
/// whole-number `ts`, an optional `room` (a room's name, folded) and an
/// optional `action` of `true`, and nothing else.
pub fn message_seq(line: &str) -> Option<u64> {
    let event = json::parse(line)?;
    let Value::Object(members) = &event else {
        return None;
    };
    let from = event.get("from")?;
    let Value::Object(from_members) = from else {
        return None;
    };
    let room = match event.get("room") {
        None => Some(0),
        Some(Value::String(name)) => RoomName::parse(name)
            .filter(|room| room.as_str() == name)
            .map(|_| 1),
        Some(_) => None,
    };
    let action = match event.get("action") {
        None => Some(0),
        Some(Value::Bool(true)) => Some(1),
        Some(_) => None,
    };
    let flag = |name| match from.get(name) {
        None => Some(0),
        Some(Value::Bool(true)) => Some(1),
        Some(_) => None,
    };
    let well_formed = event.get("type")?.as_str() == Some("message")
        && from_members.len() == 2 + flag("verified")? + flag("op")?
        && from.get("id")?.as_u64().is_some()
        && from.get("nick")?.as_str().is_some()
        && event.get("text")?.as_str().is_some()
        && event.get("ts")?.as_u64().is_some()
        && members.len() == 5 + room? + action?;
    if well_formed {
        event.get("id")?.as_u64()
    } else {
        None
    }
}

/// The id of a damaged line, if it still starts as a message event does
/// and its id is whole (followed by the comma after it).
fn torn_seq(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(b"{\"type\":\"message\",\"id\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if rest.get(digits) != Some(&b',') {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests;
