//! The operations cluster mode runs on Redis, each one round trip: the
//! room's event stream, its sequence numbers and snapshot, and which nodes
//! are alive.
//!
//! Keys (all under `wschat:`; a room's keys share the hash tag `{room}`):
//!
//! ```text
//!   wschat:{ROOM}:events   stream  one entry per chat event, field `seq` + the event's fields
//!   wschat:{ROOM}:seq      string  the last sequence number given out in the room
//!   wschat:{ROOM}:snapshot hash    the room's state after entry `after` (field `body`)
//!   wschat:{ROOM}:appended hash    per writer, the last append counter stored (dedupes retries)
//!   wschat:{ROOM}:epoch    string  the epoch of the stream's history (set once, SET NX)
//!   wschat:node-numbers    string  the last node number given out
//!   wschat:node:NODE       string  present while NODE is alive (expires unless renewed)
//!   wschat:nodes           set     every node that ever sent a heartbeat, until forgotten
//!   wschat:cleanup:NODE    string  who is announcing dead NODE's users leaving (expires)
//! ```
//!
//! The scripts read only the keys they are given, except `live_nodes` /
//! `dead_nodes` and `claim_cleanup`, which look up node keys by name: this
//! layer is for one Redis (a primary, with or without replicas), not for
//! Redis Cluster.

use super::client::{RedisConnection, RedisError};
use super::resp::Value;
use crate::room::Epoch;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How many entries a room's stream keeps by default (`MAXLEN ~`).
pub const DEFAULT_STREAM_MAXLEN: usize = 10_000;
/// The largest `stream_maxlen` accepted: a stream of chat events this long
/// is a few GiB of Redis memory.
pub const MAX_STREAM_MAXLEN: usize = 10_000_000;
/// The most entries one read asks for.
pub const MAX_READ_COUNT: usize = 10_000;
/// The stream field that carries the sequence number; callers' fields
/// must use other names.
pub const SEQ_FIELD: &str = "seq";
/// The longest node name, in bytes.
pub const MAX_NODE_NAME: usize = 64;

/// The id Redis gives a stream entry: milliseconds of the server's clock,
/// then a counter within that millisecond. Ids only grow, so their order
/// is the stream's order; it is written `ms-seq`.
///
/// ```
/// use wschat::cluster::stream::StreamId;
///
/// let id: StreamId = "1700000000000-3".parse().unwrap();
/// assert_eq!((id.ms, id.seq), (1700000000000, 3));
/// assert!(id < "1700000000001-0".parse().unwrap());
/// assert_eq!(id.to_string(), "1700000000000-3");
/// assert_eq!(StreamId::ZERO.to_string(), "0-0"); // "from the beginning"
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// Compared first (the derived order follows field order).
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    /// Before every entry: reading after it reads from the beginning.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A string that is not `ms-seq` with two decimal numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadStreamId(pub String);

impl fmt::Display for BadStreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a stream id (ms-seq): {:?}", self.0)
    }
}

impl std::error::Error for BadStreamId {}

impl FromStr for StreamId {
    type Err = BadStreamId;

    fn from_str(text: &str) -> Result<StreamId, BadStreamId> {
        let number = |part: &str| {
            // u64::from_str accepts a leading '+'; an id never has one.
            part.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| part.parse::<u64>().ok())
                .flatten()
        };
        text.split_once('-')
            .and_then(|(ms, seq)| {
                Some(StreamId {
                    ms: number(ms)?,
                    seq: number(seq)?,
                })
            })
            .ok_or_else(|| BadStreamId(text.to_string()))
    }
}

/// One stream entry: its id and its fields in the order they were added
/// (`seq` first for entries added by [`Store::append`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: StreamId,
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Entry {
    /// The value of the first field called `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_slice())
    }

    /// The sequence number [`Store::append`] gave the entry.
    pub fn seq(&self) -> Option<u64> {
        std::str::from_utf8(self.get(SEQ_FIELD)?).ok()?.parse().ok()
    }
}

/// Appends an event and gives it the room's next sequence number, in one
/// atomic step.
///
/// Two separate calls, `INCR` then `XADD`, would not keep the order: node
/// A takes seq 5, node B takes seq 6, B's `XADD` lands first, and the
/// stream holds 6 before 5, so clients that follow the stream would see
/// the numbers go backwards. `MULTI`/`EXEC` would be atomic too, but cannot
/// put the result of `INCR` into the `XADD`. Redis runs a script from start
/// to end with nothing in between, so here the number given out and the
/// entry's place in the stream are decided together.
///
/// The same script makes a retried append safe: a writer that lost the
/// reply to an append cannot know whether it was stored, so it sends it
/// again with the same idempotency key (its writer name and a counter
/// that grows with each append it makes, in the order it makes them).
/// The script keeps each writer's last counter and answers `0` for a
/// counter not past it: the entry is stored once, however often it is
/// sent.
///
/// KEYS[1] = the stream, KEYS[2] = the counter, KEYS[3] = the writers'
/// last counters; ARGV[1] = MAXLEN, ARGV[2] = the writer (empty: no key),
/// ARGV[3] = its counter, then field, value, field, value...
const APPEND_SCRIPT: &str = r#"
if ARGV[2] ~= '' then
  local last = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
  if tonumber(ARGV[3]) <= last then
    return 0
  end
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
end
local seq = redis.call('INCR', KEYS[2])
local xadd = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'seq', string.format('%d', seq)}
for i = 4, #ARGV do
  xadd[#xadd + 1] = ARGV[i]
end
local id = redis.call(unpack(xadd))
return {id, seq}
"#;

/// What an append with an idempotency key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored now, with this id and sequence number.
    New(StreamId, u64),
    /// Stored already, by an earlier send of the same key.
    Duplicate,
}

/// An append's idempotency key: which writer, and its counter (growing
/// with each append, in the order they are sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendKey<'a> {
    pub writer: &'a str,
    pub counter: u64,
}

/// Stores a room's snapshot only if it was taken after the stored one
/// (nodes write theirs independently; an older one must not win).
/// KEYS[1] = the snapshot hash; ARGV[1] = the stream id it was taken at
/// (`ms-seq`), ARGV[2] = its text.
const SAVE_SNAPSHOT_SCRIPT: &str = r#"
local function parse(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local old = redis.call('HGET', KEYS[1], 'after')
if old then
  local old_ms, old_seq = parse(old)
  local new_ms, new_seq = parse(ARGV[1])
  if new_ms < old_ms or (new_ms == old_ms and new_seq <= old_seq) then
    return 0
  end
end
redis.call('HSET', KEYS[1], 'after', ARGV[1], 'body', ARGV[2])
return 1
"#;

/// The stream's epoch: the one stored, or `ARGV[1]` stored now if there
/// is none (the key is new: the stream's history is new too, or was lost
/// with it). Concurrent callers all get the first one stored.
/// KEYS[1] = the epoch key; ARGV[1] = a fresh epoch.
const EPOCH_SCRIPT: &str = r#"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"#;

/// Stores `ARGV[1]` as the room limits (`KEYS[1]`) for `ARGV[2]` ms if
/// none are stored, renews the stored ones if they are `ARGV[1]`, and
/// returns what is stored.
const LIMITS_SCRIPT: &str = r#"
local stored = redis.call('GET', KEYS[1])
if not stored then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
if stored == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return stored
"#;

/// The Redis side of cluster mode, over one [`RedisConnection`].
///
/// A `Store` is used by one thread at a time. A node needs at least two:
/// one that blocks in [`Store::read_after`] waiting for new events, and one
/// for everything else (a connection blocked in `XREAD BLOCK` answers
/// nothing else until the read returns).
#[derive(Debug)]
pub struct Store {
    pub(super) redis: RedisConnection,
    stream_maxlen: usize,
}

impl Store {
    /// A store whose rooms keep about `stream_maxlen` events.
    ///
    /// # Panics
    /// If `stream_maxlen` is not in `1..=MAX_STREAM_MAXLEN`; a configuration
    /// parser checks the value first, with a message for the user.
    pub fn new(redis: RedisConnection, stream_maxlen: usize) -> Store {
        assert!(
            (1..=MAX_STREAM_MAXLEN).contains(&stream_maxlen),
            "stream_maxlen must be in 1..={MAX_STREAM_MAXLEN}"
        );
        Store {
            redis,
            stream_maxlen,
        }
    }

    /// The connection, for `reconnect` and for commands not wrapped here.
    pub fn redis(&mut self) -> &mut RedisConnection {
        &mut self.redis
    }

    /// How many events a room's stream keeps, about (`MAXLEN ~`).
    pub fn stream_maxlen(&self) -> usize {
        self.stream_maxlen
    }

    /// Adds an event to the room's stream and gives it the room's next
    /// sequence number ([`APPEND_SCRIPT`] says why both in one script).
    /// Returns the entry's id and its number. The stream is trimmed to
    /// about [`Store::stream_maxlen`] entries at the same time.
    ///
    /// # Panics
    /// If a field is called [`SEQ_FIELD`], which this function writes.
    pub fn append(
        &mut self,
        room: &str,
        fields: &[(&str, &[u8])],
    ) -> Result<(StreamId, u64), RedisError> {
        let fields: Vec<(&str, Vec<u8>)> = fields.iter().map(|(n, v)| (*n, v.to_vec())).collect();
        let mut results = self.append_many(room, &[fields])?;
        results.pop().unwrap_or(Err(RedisError::NotConnected))
    }

    /// Appends several events in one round trip (a pipeline of the
    /// [`Store::append`] script). The outer error means the connection
    /// failed (some of the events may have been added all the same); the
    /// inner ones are per event, in order.
    #[allow(clippy::type_complexity)]
    pub fn append_many(
        &mut self,
        room: &str,
        events: &[Vec<(&str, Vec<u8>)>],
    ) -> Result<Vec<Result<(StreamId, u64), RedisError>>, RedisError> {
        let keyed: Vec<_> = events.iter().map(|fields| (None, fields)).collect();
        Ok(self
            .append_pipeline(room, &keyed)?
            .into_iter()
            .map(|result| match result? {
                Appended::New(id, seq) => Ok((id, seq)),
                Appended::Duplicate => Err(RedisError::UnexpectedReply(
                    "append: a duplicate without a key".into(),
                )),
            })
            .collect())
    }

    /// Like [`Store::append_many`], each event with an idempotency key
    /// ([`APPEND_SCRIPT`] says how it is used): after a failed call, the
    /// same events with the same keys can be sent again safely, and
    /// those stored the first time come back as [`Appended::Duplicate`].
    /// A writer's counters must grow in the order it sends them.
    #[allow(clippy::type_complexity)]
    pub fn append_keyed(
        &mut self,
        room: &str,
        events: &[(AppendKey<'_>, Vec<(&str, Vec<u8>)>)],
    ) -> Result<Vec<Result<Appended, RedisError>>, RedisError> {
        let keyed: Vec<_> = events
            .iter()
            .map(|(key, fields)| (Some(*key), fields))
            .collect();
        self.append_pipeline(room, &keyed)
    }

    #[allow(clippy::type_complexity)]
    fn append_pipeline(
        &mut self,
        room: &str,
        events: &[(Option<AppendKey<'_>>, &Vec<(&str, Vec<u8>)>)],
    ) -> Result<Vec<Result<Appended, RedisError>>, RedisError> {
        let events_key = events_key(room);
        let seq = seq_key(room);
        let appended = appended_key(room);
        let maxlen = self.stream_maxlen.to_string();
        let counters: Vec<String> = events
            .iter()
            .map(|(key, _)| key.map_or(0, |k| k.counter).to_string())
            .collect();
        let commands: Vec<Vec<&[u8]>> = events
            .iter()
            .zip(&counters)
            .map(|((key, fields), counter)| {
                let mut args: Vec<&[u8]> = vec![
                    b"EVAL",
                    APPEND_SCRIPT.as_bytes(),
                    b"3",
                    events_key.as_bytes(),
                    seq.as_bytes(),
                    appended.as_bytes(),
                    maxlen.as_bytes(),
                    key.map_or(&b""[..], |k| k.writer.as_bytes()),
                    counter.as_bytes(),
                ];
                for (name, value) in fields.iter() {
                    assert!(*name != SEQ_FIELD, "{SEQ_FIELD:?} is reserved");
                    args.push(name.as_bytes());
                    args.push(value);
                }
                args
            })
            .collect();
        let replies = self.redis.pipeline(&commands)?;
        Ok(replies
            .into_iter()
            .map(|reply| match reply {
                Value::Array(reply) => match reply.as_slice() {
                    [id, Value::Integer(seq)] if *seq > 0 => {
                        Ok(Appended::New(stream_id(id)?, *seq as u64))
                    }
                    _ => Err(unexpected("append", &Value::Array(reply))),
                },
                Value::Integer(0) => Ok(Appended::Duplicate),
                Value::Error(text) => Err(RedisError::Server(text)),
                other => Err(unexpected("append", &other)),
            })
            .collect())
    }

    /// Stores the room's snapshot taken after entry `after`, unless a
    /// later one is stored already. True if stored.
    pub fn save_snapshot(
        &mut self,
        room: &str,
        after: StreamId,
        body: &str,
    ) -> Result<bool, RedisError> {
        let key = snapshot_key(room);
        let after = after.to_string();
        let reply = self.redis.command(&[
            &b"EVAL"[..],
            SAVE_SNAPSHOT_SCRIPT.as_bytes(),
            b"1",
            key.as_bytes(),
            after.as_bytes(),
            body.as_bytes(),
        ])?;
        Ok(integer("save_snapshot", reply)? == 1)
    }

    /// The epoch of the room's stream ([`EPOCH_SCRIPT`]): the stored one,
    /// or `fresh`, stored now, if Redis has none. The key lives beside the
    /// stream, with no expiry: a Redis that loses its data (restarted
    /// without AOF or RDB) loses both together, and the next caller starts
    /// a new epoch.
    pub fn epoch(&mut self, room: &str, fresh: &Epoch) -> Result<Epoch, RedisError> {
        let key = epoch_key(room);
        let reply = self.redis.command(&[
            &b"EVAL"[..],
            EPOCH_SCRIPT.as_bytes(),
            b"1",
            key.as_bytes(),
            fresh.as_str().as_bytes(),
        ])?;
        let stored = text("epoch", &reply)?;
        Epoch::parse(&stored)
            .ok_or_else(|| RedisError::UnexpectedReply(format!("{key} holds no valid epoch")))
    }

    /// The room limits the cluster runs with ([`LIMITS_SCRIPT`]): the
    /// stored ones, or `limits`, stored now for `ttl`, if none are. Every
    /// running node renews them with each heartbeat, so they expire `ttl`
    /// after the last node stops, and the next cluster may choose others.
    pub fn share_limits(
        &mut self,
        room: &str,
        limits: &str,
        ttl: Duration,
    ) -> Result<String, RedisError> {
        let key = limits_key(room);
        let reply = self.redis.command(&[
            &b"EVAL"[..],
            LIMITS_SCRIPT.as_bytes(),
            b"1",
            key.as_bytes(),
            limits.as_bytes(),
            ttl.as_millis().to_string().as_bytes(),
        ])?;
        text("limits", &reply)
    }

    /// The room's latest snapshot, if any.
    pub fn load_snapshot(&mut self, room: &str) -> Result<Option<String>, RedisError> {
        let key = snapshot_key(room);
        let reply = self
            .redis
            .command(&[&b"HGET"[..], key.as_bytes(), b"body"])?;
        if reply.is_null() {
            return Ok(None);
        }
        text("HGET snapshot", &reply).map(Some)
    }

    /// Up to `count` entries after `after` (exclusive), oldest first.
    /// With none there yet, waits up to `block_ms` for one (`XREAD BLOCK`);
    /// `block_ms = 0` does not wait at all (it does not mean "forever" as
    /// in Redis: a thread must not hang on a Redis that went silent).
    /// An empty result means nothing arrived in time.
    ///
    /// # Panics
    /// If `count` is not in `1..=MAX_READ_COUNT`.
    pub fn read_after(
        &mut self,
        room: &str,
        after: StreamId,
        block_ms: u64,
        count: usize,
    ) -> Result<Vec<Entry>, RedisError> {
        check_count(count);
        let key = events_key(room);
        let (count, block, after) = (count.to_string(), block_ms.to_string(), after.to_string());
        let mut args: Vec<&[u8]> = vec![b"XREAD", b"COUNT", count.as_bytes()];
        if block_ms > 0 {
            args.extend_from_slice(&[b"BLOCK", block.as_bytes()]);
        }
        args.extend_from_slice(&[b"STREAMS", key.as_bytes(), after.as_bytes()]);
        let reply = self
            .redis
            .command_blocking(&args, Duration::from_millis(block_ms))?;
        match reply {
            // Timed out (or, without BLOCK, nothing new).
            Value::NullArray | Value::NullBulk => Ok(Vec::new()),
            // One stream asked for: [[key, entries]].
            Value::Array(streams) => match streams.as_slice() {
                [] => Ok(Vec::new()),
                [Value::Array(pair)] if pair.len() == 2 => {
                    let mut streams = streams;
                    match streams.pop() {
                        Some(Value::Array(mut pair)) => {
                            entries(pair.pop().unwrap_or(Value::NullArray))
                        }
                        _ => Ok(Vec::new()),
                    }
                }
                _ => Err(unexpected("XREAD", &Value::Array(streams))),
            },
            other => Err(unexpected("XREAD", &other)),
        }
    }

    /// The last `count` entries of the room, oldest first: the history a
    /// newcomer is shown (`XREVRANGE key + - COUNT n`, reversed).
    pub fn last_entries(&mut self, room: &str, count: usize) -> Result<Vec<Entry>, RedisError> {
        check_count(count);
        let key = events_key(room);
        let count = count.to_string();
        let reply = self.redis.command(&[
            &b"XREVRANGE"[..],
            key.as_bytes(),
            b"+",
            b"-",
            b"COUNT",
            count.as_bytes(),
        ])?;
        let mut found = entries(reply)?;
        found.reverse();
        Ok(found)
    }

    /// Up to `count` entries after `after` (exclusive), oldest first,
    /// without waiting: for a client resuming from the last id it saw.
    /// (`XRANGE key (ID + COUNT n`; the `(` makes the start exclusive, in
    /// Redis 6.2 and later.)
    pub fn range_after(
        &mut self,
        room: &str,
        after: StreamId,
        count: usize,
    ) -> Result<Vec<Entry>, RedisError> {
        check_count(count);
        let key = events_key(room);
        let (start, count) = (format!("({after}"), count.to_string());
        let reply = self.redis.command(&[
            &b"XRANGE"[..],
            key.as_bytes(),
            start.as_bytes(),
            b"+",
            b"COUNT",
            count.as_bytes(),
        ])?;
        entries(reply)
    }

    /// How many entries the room's stream holds now (`XLEN`).
    pub fn stream_len(&mut self, room: &str) -> Result<u64, RedisError> {
        let key = events_key(room);
        integer("XLEN", self.redis.command(&[&b"XLEN"[..], key.as_bytes()])?)
    }
}

/// The stream of a room. The braces are a Redis hash tag: all of a room's
/// keys hash to the same slot, which a script touching two of them needs
/// should the data ever be sharded.
pub fn events_key(room: &str) -> String {
    format!("wschat:{{{room}}}:events")
}

/// The counter of a room's sequence numbers.
pub fn seq_key(room: &str) -> String {
    format!("wschat:{{{room}}}:seq")
}

/// The hash of each writer's last append counter (see [`Store::append_keyed`]).
pub fn appended_key(room: &str) -> String {
    format!("wschat:{{{room}}}:appended")
}

/// The hash that holds a room's latest snapshot (`after`, `body`).
pub fn snapshot_key(room: &str) -> String {
    format!("wschat:{{{room}}}:snapshot")
}

/// The room limits every node shares ([`Store::share_limits`]).
pub fn limits_key(room: &str) -> String {
    format!("wschat:{{{room}}}:limits")
}

/// The epoch of a room's stream ([`Store::epoch`]).
pub fn epoch_key(room: &str) -> String {
    format!("wschat:{{{room}}}:epoch")
}

fn check_count(count: usize) {
    assert!(
        (1..=MAX_READ_COUNT).contains(&count),
        "count must be in 1..={MAX_READ_COUNT}"
    );
}

fn unexpected(command: &str, reply: &Value) -> RedisError {
    let mut shown = format!("{reply:?}");
    if shown.len() > 120 {
        let mut end = 120;
        while !shown.is_char_boundary(end) {
            end -= 1;
        }
        shown.truncate(end);
        shown.push('…');
    }
    RedisError::UnexpectedReply(format!("{command}: {shown}"))
}

pub(super) fn integer(command: &str, reply: Value) -> Result<u64, RedisError> {
    match reply {
        Value::Integer(n) if n >= 0 => Ok(n as u64),
        other => Err(unexpected(command, &other)),
    }
}

fn text(command: &str, value: &Value) -> Result<String, RedisError> {
    value
        .as_bytes()
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .map(str::to_string)
        .ok_or_else(|| unexpected(command, value))
}

fn stream_id(value: &Value) -> Result<StreamId, RedisError> {
    text("stream id", value)?
        .parse()
        .map_err(|e: BadStreamId| RedisError::UnexpectedReply(e.to_string()))
}

/// An array of strings.
pub(super) fn strings(command: &str, reply: &Value) -> Result<Vec<String>, RedisError> {
    match reply {
        Value::Array(items) => items.iter().map(|item| text(command, item)).collect(),
        other => Err(unexpected(command, other)),
    }
}

/// Stream entries, as XRANGE, XREVRANGE and XREAD give them:
/// `[[id, [field, value, ...]], ...]`. Taken by value: each field's bytes
/// move into the entry, never copied.
fn entries(reply: Value) -> Result<Vec<Entry>, RedisError> {
    let Value::Array(items) = reply else {
        return Err(unexpected("stream entries", &reply));
    };
    items.into_iter().map(entry).collect()
}

fn entry(item: Value) -> Result<Entry, RedisError> {
    let Value::Array(pair) = item else {
        return Err(unexpected("stream entry", &item));
    };
    let Ok([id, flat]) = <[Value; 2]>::try_from(pair) else {
        return Err(RedisError::UnexpectedReply(
            "stream entry: not [id, fields]".into(),
        ));
    };
    let flat = match flat {
        Value::Array(flat) if flat.len() % 2 == 0 => flat,
        // An entry deleted while being read has no fields.
        Value::NullArray => Vec::new(),
        other => return Err(unexpected("stream entry", &other)),
    };
    let mut fields = Vec::with_capacity(flat.len() / 2);
    let mut flat = flat.into_iter();
    while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
        let name = text("stream field name", &name)?;
        let Value::Bulk(value) = value else {
            return Err(unexpected("stream field value", &value));
        };
        fields.push((name, value));
    }
    Ok(Entry {
        id: stream_id(&id)?,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::nodes::{NodeId, node_key};

    fn bulk(text: &str) -> Value {
        Value::Bulk(text.as_bytes().to_vec())
    }

    #[test]
    fn stream_ids_parse_order_and_display() {
        let a: StreamId = "5-0".parse().unwrap();
        let b: StreamId = "5-1".parse().unwrap();
        let c: StreamId = "10-0".parse().unwrap();
        assert!(
            StreamId::ZERO < a && a < b && b < c,
            "numeric, not text, order"
        );
        assert_eq!(c.to_string(), "10-0");
        let max = format!("{}-{}", u64::MAX, u64::MAX);
        assert_eq!(max.parse::<StreamId>().unwrap().to_string(), max);
        for bad in [
            "",
            "5",
            "5-",
            "-5",
            "a-1",
            "1-b",
            "+1-1",
            "1-+1",
            "1-1-1",
            " 1-1",
            "18446744073709551616-0",
        ] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn node_names() {
        assert!(NodeId::new("node-1.eu_west").is_ok());
        for bad in ["", "a#b", "a b", "{x}", "é", &"n".repeat(MAX_NODE_NAME + 1)] {
            let e = NodeId::new(bad).unwrap_err();
            assert!(e.starts_with("node name must be"), "{bad:?}: {e}");
        }
        assert!(NodeId::new(&"n".repeat(MAX_NODE_NAME)).is_ok());
    }

    #[test]
    fn keys_share_the_rooms_hash_tag() {
        assert_eq!(events_key("lobby"), "wschat:{lobby}:events");
        assert_eq!(seq_key("lobby"), "wschat:{lobby}:seq");
        assert_eq!(snapshot_key("lobby"), "wschat:{lobby}:snapshot");
        assert_eq!(epoch_key("lobby"), "wschat:{lobby}:epoch");
        assert_eq!(node_key(&NodeId::new("n1").unwrap()), "wschat:node:n1");
    }

    #[test]
    fn entries_are_decoded_from_the_reply_shape() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk("1-0"),
                Value::Array(vec![bulk("seq"), bulk("7"), bulk("text"), bulk("hi")]),
            ]),
            Value::Array(vec![bulk("1-1"), Value::NullArray]),
        ]);
        let found = entries(reply).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].id, StreamId { ms: 1, seq: 0 });
        assert_eq!(found[0].seq(), Some(7));
        assert_eq!(found[0].get("text"), Some(&b"hi"[..]));
        assert_eq!(found[0].get("nope"), None);
        assert!(found[1].fields.is_empty());

        let bad = [
            Value::Integer(1),
            Value::Array(vec![Value::Integer(1)]),
            Value::Array(vec![Value::Array(vec![bulk("x-1"), Value::Array(vec![])])]),
            Value::Array(vec![Value::Array(vec![
                bulk("1-1"),
                Value::Array(vec![bulk("odd")]),
            ])]),
            Value::Array(vec![Value::Array(vec![
                bulk("1-1"),
                Value::Array(vec![bulk("f"), Value::Integer(3)]),
            ])]),
        ];
        for reply in bad {
            assert!(
                matches!(entries(reply.clone()), Err(RedisError::UnexpectedReply(_))),
                "{reply:?}"
            );
        }
    }
}
