//! Cluster mode as state-machine replication, without I/O: what a node
//! appends to the room's stream (a [`Record`]: one chat action), how an
//! entry read back is applied to the node's own copy of the `Room`, and
//! the snapshot a starting node loads instead of the whole stream.
//!
//! Every node applies the same entries in the same (stream) order to the
//! same `Room` code, so every replica holds the same members, nicknames,
//! history and message ids; each node then delivers the room's outputs to
//! its own clients only.

use super::nodes::NodeId;
use super::stream::{Entry, StreamId};
use crate::room::{Action, ClientId, Epoch, History, Mode, Output, Room, now_ms};
use std::collections::HashMap;
use std::fmt::Write;

/// The room every node shares (one today; the key names leave room for
/// more).
pub const ROOM: &str = "main";

/// Client ids are `node number × NODE_ID_BLOCK + a local counter`: unique
/// across nodes, and still exact in JavaScript (below 2^53) for nine
/// million node start-ups.
pub const NODE_ID_BLOCK: u64 = 1_000_000_000;

/// The node number in a client id.
pub fn node_number(id: ClientId) -> u64 {
    id / NODE_ID_BLOCK
}

/// One chat action as appended to the stream: the room's own [`Action`],
/// the node that appended it, and the time it happened there. Every
/// replica uses this `ts`, so events carry the same time everywhere. A
/// join's `resume` is never written: it matters only to the node whose
/// client resumes, which puts it back when the entry returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub action: Action,
    /// The node that appended it (empty for an entry other than a join
    /// written by a version that named the node on joins only).
    pub node: String,
    pub ts: u64,
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

/// The client an action is about.
pub fn client_of(action: &Action) -> ClientId {
    match action {
        Action::Join { id, .. }
        | Action::Text { id, .. }
        | Action::Binary { id, .. }
        | Action::Leave { id } => *id,
    }
}

impl Record {
    /// `action`, appended by `node`, happening now.
    pub fn now(action: Action, node: &NodeId) -> Record {
        Record {
            action,
            node: node.to_string(),
            ts: now_ms(),
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
    ///   op join   id 3000000001  ts 1764093600000  node n1  mode v1
    ///   op text   id 3000000001  ts 1764093601000  node n1  text hello
    ///   op binary id 3000000002  ts ...            node n2  data <bytes>
    ///   op leave  id 3000000001  ts ...            node n1
    /// ```
    pub fn fields(&self) -> Vec<(&'static str, Vec<u8>)> {
        let name = match &self.action {
            Action::Join { .. } => "join",
            Action::Text { .. } => "text",
            Action::Binary { .. } => "binary",
            Action::Leave { .. } => "leave",
        };
        let mut fields = vec![
            ("op", name.as_bytes().to_vec()),
            ("id", self.client().to_string().into_bytes()),
            ("ts", self.ts.to_string().into_bytes()),
            ("node", self.node.as_bytes().to_vec()),
        ];
        match &self.action {
            Action::Join { mode, .. } => {
                fields.push(("mode", mode_name(*mode).as_bytes().to_vec()))
            }
            Action::Text { text, .. } => fields.push(("text", text.as_bytes().to_vec())),
            Action::Binary { data, .. } => fields.push(("data", data.clone())),
            Action::Leave { .. } => {}
        }
        fields
    }

    /// Reads a stream entry back; the error says which field is wrong.
    /// Entries from versions that named the node on joins only load too.
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
        let action = match op {
            "join" => Action::Join {
                id,
                mode: parse_mode(text("mode")?)
                    .ok_or_else(|| format!("entry {}: unknown mode", entry.id))?,
                resume: None,
            },
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
            other => return Err(format!("entry {}: unknown op {other:?}", entry.id)),
        };
        Ok(Record { action, node, ts })
    }
}

/// What applying an entry did, besides the room's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied; `missed` entries before it were never seen (trimmed).
    Done { missed: u64 },
    /// Already applied (an id or a sequence number not past the last).
    Duplicate,
}

/// A node's replica: the room, plus what cluster mode needs beside it.
#[derive(Debug)]
pub struct Replica {
    pub room: Room,
    /// The node each member joined through (for cleaning up a dead node).
    pub nodes: HashMap<ClientId, String>,
    /// The last entry applied: the stream is read after it.
    pub last_id: StreamId,
    /// Its sequence number (0: none yet).
    pub last_seq: u64,
}

impl Replica {
    /// An empty room that keeps `history` messages, before any entry, in
    /// the stream's `epoch`.
    pub fn new(history: usize, epoch: Epoch) -> Replica {
        Replica {
            room: Room::new(History::new(history), 1, epoch),
            nodes: HashMap::new(),
            last_id: StreamId::ZERO,
            last_seq: 0,
        }
    }

    /// Redis lost the stream's history (its epoch key is new): what was
    /// kept is forgotten, the room's ids start again, and the entries read
    /// from now on belong to `epoch`. Every node starts it at the same
    /// place in the order: before the first entry of the new stream.
    pub fn start_epoch(&mut self, epoch: Epoch) {
        self.room.start_epoch(epoch);
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
    /// join carries where it resumes from); the room's outputs go to
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
        match &record.action {
            Action::Join { id, .. } => {
                self.nodes.entry(*id).or_insert(record.node);
            }
            Action::Text { .. } => self.room.set_next_seq(seq),
            Action::Binary { .. } => {}
            Action::Leave { id } => {
                self.nodes.remove(id);
            }
        }
        self.room.handle(record.ts, record.action, out);
        applied
    }

    /// The members who joined through `node` (sorted by id).
    pub fn members_of(&self, node: &str) -> Vec<ClientId> {
        let mut ids: Vec<ClientId> = self
            .nodes
            .iter()
            .filter(|(id, name)| name.as_str() == node && self.room.contains(**id))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The state as text, to store in Redis:
    ///
    /// ```text
    /// wschat-snapshot 2
    /// epoch k3x9a2bq
    /// after 1764093600000-0
    /// seq 42
    /// dropped 17
    /// member 3000000001 v1 n1 ann
    /// history {"type":"message","id":40,...}
    /// ```
    ///
    /// Nicknames and node names contain no spaces or line breaks, and a
    /// message's JSON no raw line break, so lines and fields split cleanly.
    /// (Version 1 had no `epoch` line.)
    pub fn snapshot(&self) -> String {
        let mut out = String::from("wschat-snapshot 2\n");
        let _ = writeln!(out, "epoch {}", self.room.epoch());
        let _ = writeln!(out, "after {}", self.last_id);
        let _ = writeln!(out, "seq {}", self.last_seq);
        let _ = writeln!(out, "dropped {}", self.room.history().dropped_through());
        for (id, mode, nick) in self.room.members() {
            let node = self.nodes.get(&id).map_or("-", String::as_str);
            let _ = writeln!(out, "member {id} {} {node} {nick}", mode_name(mode));
        }
        for event in self.room.history().iter() {
            let _ = writeln!(out, "history {event}");
        }
        out
    }

    /// The replica a snapshot describes, keeping up to `history` messages,
    /// if it belongs to the stream's `epoch`: a snapshot of another epoch
    /// describes a history Redis has lost since (an error). A version 1
    /// snapshot, from before epochs, is taken to be of the current one.
    pub fn restore(text: &str, history: usize, epoch: &Epoch) -> Result<Replica, String> {
        let mut lines = text.lines();
        match lines.next() {
            Some("wschat-snapshot 1" | "wschat-snapshot 2") => {}
            _ => return Err("snapshot: unknown format".into()),
        }
        let bad = |line: &str| {
            let shown: String = line.chars().take(80).collect();
            format!("snapshot: bad line {shown:?}")
        };
        let (mut last_id, mut last_seq, mut dropped) = (StreamId::ZERO, 0, 0);
        let mut members = Vec::new();
        let mut kept = History::new(history);
        for line in lines {
            let (key, rest) = line.split_once(' ').ok_or_else(|| bad(line))?;
            match key {
                "epoch" if rest != epoch.as_str() => {
                    return Err(format!(
                        "snapshot: of epoch {rest:?}, but the stream is in epoch {epoch} (redis lost its data since)"
                    ));
                }
                "epoch" => {}
                "after" => last_id = rest.parse().map_err(|_| bad(line))?,
                "seq" => last_seq = rest.parse().map_err(|_| bad(line))?,
                "dropped" => dropped = rest.parse().map_err(|_| bad(line))?,
                "member" => {
                    let parts: Vec<&str> = rest.splitn(4, ' ').collect();
                    let [id, mode, node, nick] = parts[..] else {
                        return Err(bad(line));
                    };
                    let id: ClientId = id.parse().map_err(|_| bad(line))?;
                    let mode = parse_mode(mode).ok_or_else(|| bad(line))?;
                    members.push((id, mode, node.to_string(), nick.to_string()));
                }
                "history" => kept.push(rest.into()),
                _ => return Err(bad(line)),
            }
        }
        // A smaller --history here than on the node that wrote it drops
        // the oldest; the mark covers both.
        kept.set_dropped_through(kept.dropped_through().max(dropped));
        let mut replica = Replica {
            room: Room::new(kept, last_seq + 1, epoch.clone()),
            nodes: HashMap::new(),
            last_id,
            last_seq,
        };
        for (id, mode, node, nick) in members {
            if replica.room.restore_member(id, mode, &nick) {
                replica.nodes.insert(id, node);
            }
        }
        Ok(replica)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::{Output, Payload};

    fn epoch() -> Epoch {
        Epoch::parse("e1").unwrap()
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
            },
            Record {
                action: Action::Leave { id: 4 },
                node: "n2".into(),
                ts: 10,
            },
        ];
        for record in records {
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
        let mut replicas = [Replica::new(10, epoch()), Replica::new(10, epoch())];
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
        assert_eq!(replicas[0].room.nick(1_000_000_001), Some("ann"));
        assert_eq!(
            replicas[0].room.nick(2_000_000_001),
            Some("guest-2000000001")
        );
        let taken = outs[0].iter().any(|o| {
            matches!(o, Output::Reply { to: 2_000_000_001, event } if event.contains("nick_taken"))
        });
        assert!(taken, "the second /nick ann loses on every replica");
        let message = outs[0].iter().find_map(|o| match o {
            Output::Broadcast {
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
        let mut replica = Replica::new(10, epoch());
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
        let mut replica = Replica::new(2, epoch());
        let mut out = Vec::new();
        let at = |ms| StreamId { ms, seq: 0 };
        replica.apply(at(1), 1, join(1_000_000_001, "a"), &mut out);
        replica.apply(at(2), 2, text(1_000_000_001, "/nick ann"), &mut out);
        for (n, seq) in [(3, 3), (4, 4), (5, 5)] {
            replica.apply(at(n), seq, text(1_000_000_001, "hi"), &mut out);
        }
        replica.apply(at(6), 6, join(2_000_000_001, "b"), &mut out);
        let text_form = replica.snapshot();
        let back = Replica::restore(&text_form, 2, &epoch()).unwrap();
        assert_eq!(back.snapshot(), text_form);
        assert_eq!(back.last_id, at(6));
        assert_eq!(back.room.history().dropped_through(), 3);
        assert_eq!(back.members_of("a"), vec![1_000_000_001]);
        assert_eq!(back.room.nick(1_000_000_001), Some("ann"));
        assert!(Replica::restore("nonsense", 2, &epoch()).is_err());
        assert!(Replica::restore("wschat-snapshot 1\nmember x", 2, &epoch()).is_err());
        // Another epoch's snapshot is refused; one from before epochs is
        // taken to be of the current one.
        let other = Epoch::parse("other").unwrap();
        let refused = Replica::restore(&text_form, 2, &other).unwrap_err();
        assert!(refused.contains("epoch"), "{refused}");
        let version_1 = text_form
            .replace("wschat-snapshot 2", "wschat-snapshot 1")
            .replace("epoch e1\n", "");
        let back = Replica::restore(&version_1, 2, &other).unwrap();
        assert_eq!(back.room.epoch(), &other);
        assert_eq!(back.last_id, at(6));
    }
}
