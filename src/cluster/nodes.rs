//! Which nodes are alive: heartbeats that expire, the set of nodes, and
//! the claim that lets exactly one survivor clean up after a dead node.
//! The same `Store` as the stream operations, in a file of its own.

use super::client::RedisError;
use super::stream::{MAX_NODE_NAME, Store, integer, strings};
use std::fmt;
use std::time::Duration;

/// A wschat process's name in the cluster: 1 to [`MAX_NODE_NAME`] bytes
/// of `A-Z a-z 0-9 _ . -` (so it can never contain spaces, braces or
/// line breaks).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

impl NodeId {
    /// Checks a node name; the error is one line.
    pub fn new(name: &str) -> Result<NodeId, String> {
        let valid_char = |b: u8| b.is_ascii_alphanumeric() || b"_.-".contains(&b);
        if name.is_empty() || name.len() > MAX_NODE_NAME || !name.bytes().all(valid_char) {
            return Err(format!(
                "node name must be 1 to {MAX_NODE_NAME} of A-Z a-z 0-9 _ . -, got {name:?}"
            ));
        }
        Ok(NodeId(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The registered nodes whose heartbeat key exists (ARGV[1] = "1") or is
/// gone (ARGV[1] = "0"). KEYS[1] = the set of nodes; ARGV[2] = the prefix
/// of heartbeat keys.
const NODES_SCRIPT: &str = r#"
local want_alive = ARGV[1] == '1'
local found = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local alive = redis.call('EXISTS', ARGV[2] .. node) == 1
  if alive == want_alive then
    found[#found + 1] = node
  end
end
return found
"#;

/// A heartbeat: the node's key, renewed for `ttl`, and the times (in
/// Redis's clock, the one clock every node shares) of its last beat and of
/// the start of its current run of beats. A run starts again after any
/// gap longer than `ttl`: the node was stopped, cut off, or Redis was
/// down or restarted. Returns how long the run has lasted, in ms.
///
/// KEYS[1] = the node's key, KEYS[2] = the set of nodes, KEYS[3] = the
/// last beats, KEYS[4] = the runs' starts; ARGV[1] = the node, ARGV[2] =
/// `ttl` in ms.
const HEARTBEAT_SCRIPT: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local seen = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '-1')
local since = tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '-1')
if seen < 0 or since < 0 or now - seen > ttl then
  since = now
  redis.call('HSET', KEYS[4], ARGV[1], string.format('%d', since))
end
redis.call('HSET', KEYS[3], ARGV[1], string.format('%d', now))
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return now - since
"#;

/// Claims the cleanup of a node, only on positive evidence that it is
/// dead and only if nobody else has claimed it (`SET NX` lets exactly one
/// claimer through). A missing heartbeat key is not evidence enough: after
/// Redis was down or restarted every key may have expired at once, though
/// every node is alive. The evidence is that the claimer itself has been
/// beating without a break, for at least the heartbeat's `ttl`, since the
/// dead node's last beat: an outage that everyone shared breaks the
/// claimer's run too, and the dead node gets a full `ttl` after it to
/// beat again.
///
/// KEYS[1] = the dead node's heartbeat key, KEYS[2] = its cleanup key,
/// KEYS[3] = the last beats, KEYS[4] = the runs' starts; ARGV[1] = the
/// dead node, ARGV[2] = the claimer, ARGV[3] = the claim's time to live in
/// ms, ARGV[4] = the heartbeat's `ttl` in ms.
const CLAIM_CLEANUP_SCRIPT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[4])
local my_seen = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '-1')
local my_since = tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '-1')
if my_seen < 0 or my_since < 0 or now - my_seen > ttl then
  return 0
end
local dead_seen = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '-1')
if now - math.max(my_since, dead_seen) < ttl then
  return 0
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return 1
end
return 0
"#;

/// Raises the node counter (`KEYS[1]`) to at least `ARGV[1]`.
const KEEP_NODE_NUMBER_SCRIPT: &str = r#"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return n
"#;

/// The counter that numbers nodes as they start (see `NODE_ID_BLOCK`).
const NODE_NUMBERS_KEY: &str = "wschat:node-numbers";
const NODES_KEY: &str = "wschat:nodes";
const NODE_KEY_PREFIX: &str = "wschat:node:";
/// Each node's last heartbeat, in Redis's clock (ms).
const NODE_SEEN_KEY: &str = "wschat:node-seen";
/// When each node's current run of heartbeats began (ms).
const NODE_SINCE_KEY: &str = "wschat:node-since";

impl Store {
    /// A number for a starting node, never given before (`INCR`).
    pub fn next_node_number(&mut self) -> Result<u64, RedisError> {
        integer(
            "INCR",
            self.redis
                .command(&[&b"INCR"[..], NODE_NUMBERS_KEY.as_bytes()])?,
        )
    }

    /// Makes sure no node is given `number` or less from now on: a Redis
    /// that lost its data starts the counter again, and a node started
    /// then would take a running node's number, so its clients' ids.
    /// Running nodes call it when they find the data lost (and a starting
    /// node for the numbers its snapshot shows in use).
    pub fn keep_node_number(&mut self, number: u64) -> Result<(), RedisError> {
        let reply = self.redis.command(&[
            &b"EVAL"[..],
            KEEP_NODE_NUMBER_SCRIPT.as_bytes(),
            b"1",
            NODE_NUMBERS_KEY.as_bytes(),
            number.to_string().as_bytes(),
        ])?;
        integer("EVAL keep node number", reply).map(|_| ())
    }

    /// A node that stops cleanly: its heartbeat goes, and it leaves the
    /// set of nodes, so nobody cleans up after it.
    pub fn leave_cluster(&mut self, node: &NodeId) -> Result<(), RedisError> {
        let key = node_key(node);
        let commands = [
            vec![&b"DEL"[..], key.as_bytes()],
            vec![&b"SREM"[..], NODES_KEY.as_bytes(), node.as_str().as_bytes()],
        ];
        self.redis.pipeline(&commands)?;
        Ok(())
    }

    /// Says that `node` is alive for the next `ttl` (`SET … PX`),
    /// registers it in the set of nodes, and notes the beat in Redis's
    /// clock ([`HEARTBEAT_SCRIPT`]); a node repeats this well within its
    /// ttl (a third of it, say), so that one late heartbeat does not
    /// declare it dead. Returns how long the node has been beating without
    /// a break longer than `ttl`.
    pub fn heartbeat(&mut self, node: &NodeId, ttl: Duration) -> Result<Duration, RedisError> {
        let key = node_key(node);
        let ttl_ms = ttl.as_millis().max(1).to_string();
        let reply = self.redis.command(&[
            &b"EVAL"[..],
            HEARTBEAT_SCRIPT.as_bytes(),
            b"4",
            key.as_bytes(),
            NODES_KEY.as_bytes(),
            NODE_SEEN_KEY.as_bytes(),
            NODE_SINCE_KEY.as_bytes(),
            node.as_str().as_bytes(),
            ttl_ms.as_bytes(),
        ])?;
        Ok(Duration::from_millis(integer("heartbeat", reply)?))
    }

    /// True while `node`'s last heartbeat has not expired.
    pub fn is_alive(&mut self, node: &NodeId) -> Result<bool, RedisError> {
        let key = node_key(node);
        Ok(integer(
            "EXISTS",
            self.redis.command(&[&b"EXISTS"[..], key.as_bytes()])?,
        )? == 1)
    }

    /// The registered nodes whose heartbeat has not expired, sorted.
    pub fn live_nodes(&mut self) -> Result<Vec<NodeId>, RedisError> {
        self.nodes(true)
    }

    /// The registered nodes whose heartbeat has expired and that nobody has
    /// [forgotten](Store::forget_node) yet, sorted: the ones whose users
    /// may still need announcing as gone.
    pub fn dead_nodes(&mut self) -> Result<Vec<NodeId>, RedisError> {
        self.nodes(false)
    }

    fn nodes(&mut self, alive: bool) -> Result<Vec<NodeId>, RedisError> {
        let reply = self.redis.command(&[
            &b"EVAL"[..],
            NODES_SCRIPT.as_bytes(),
            b"1",
            NODES_KEY.as_bytes(),
            if alive { b"1" } else { b"0" },
            NODE_KEY_PREFIX.as_bytes(),
        ])?;
        let mut nodes = strings("nodes", &reply)?
            .iter()
            .map(|name| NodeId::new(name).map_err(RedisError::UnexpectedReply))
            .collect::<Result<Vec<_>, _>>()?;
        nodes.sort();
        Ok(nodes)
    }

    /// Claims the job of cleaning up after `dead`: announcing its users'
    /// departure and releasing their nicks. True for exactly one of the
    /// nodes that ask while the claim lasts, and only on positive evidence
    /// ([`CLAIM_CLEANUP_SCRIPT`]): the claimer has been beating (every
    /// `heartbeat_ttl` at least) for a whole `heartbeat_ttl` since `dead`'s
    /// last beat. False for all if `dead` is in fact alive, or if the
    /// claimer's own beats broke off meanwhile (Redis was away for
    /// everyone). The claim expires after `ttl`, so that if the claimer
    /// dies too, another node can take over; the claimer calls
    /// [`Store::forget_node`] once done.
    pub fn claim_cleanup(
        &mut self,
        dead: &NodeId,
        claimer: &NodeId,
        ttl: Duration,
        heartbeat_ttl: Duration,
    ) -> Result<bool, RedisError> {
        let heartbeat = node_key(dead);
        let cleanup = format!("wschat:cleanup:{dead}");
        let ttl_ms = ttl.as_millis().max(1).to_string();
        let heartbeat_ms = heartbeat_ttl.as_millis().max(1).to_string();
        let reply = self.redis.command(&[
            &b"EVAL"[..],
            CLAIM_CLEANUP_SCRIPT.as_bytes(),
            b"4",
            heartbeat.as_bytes(),
            cleanup.as_bytes(),
            NODE_SEEN_KEY.as_bytes(),
            NODE_SINCE_KEY.as_bytes(),
            dead.as_str().as_bytes(),
            claimer.as_str().as_bytes(),
            ttl_ms.as_bytes(),
            heartbeat_ms.as_bytes(),
        ])?;
        Ok(integer("claim_cleanup", reply)? == 1)
    }

    /// Removes a node from the set of nodes, once its cleanup is done.
    pub fn forget_node(&mut self, node: &NodeId) -> Result<(), RedisError> {
        self.redis
            .command(&[&b"SREM"[..], NODES_KEY.as_bytes(), node.as_str().as_bytes()])?;
        Ok(())
    }
}

/// The heartbeat key of a node.
pub fn node_key(node: &NodeId) -> String {
    format!("{NODE_KEY_PREFIX}{node}")
}
