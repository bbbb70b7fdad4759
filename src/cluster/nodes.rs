//! Which nodes are alive: heartbeats that expire, the set of nodes, and
//! the claim that lets exactly one survivor clean up after a dead node.
//! The same `Store` as the stream operations, in a file of its own.

use super::client::RedisError;
use super::resp::Value;
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

/// Claims the cleanup of a node, only if it is dead and nobody else has
/// claimed it: `SET NX` lets exactly one claimer through. KEYS[1] = the
/// dead node's heartbeat key, KEYS[2] = its cleanup key; ARGV[1] = the
/// claimer, ARGV[2] = the claim's time to live in ms.
const CLAIM_CLEANUP_SCRIPT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
"#;

/// The counter that numbers nodes as they start (see `NODE_ID_BLOCK`).
const NODE_NUMBERS_KEY: &str = "wschat:node-numbers";
const NODES_KEY: &str = "wschat:nodes";
const NODE_KEY_PREFIX: &str = "wschat:node:";

impl Store {
    /// A number for a starting node, never given before (`INCR`).
    pub fn next_node_number(&mut self) -> Result<u64, RedisError> {
        integer(
            "INCR",
            self.client
                .command(&[&b"INCR"[..], NODE_NUMBERS_KEY.as_bytes()])?,
        )
    }

    /// A node that stops cleanly: its heartbeat goes, and it leaves the
    /// set of nodes, so nobody cleans up after it.
    pub fn leave_cluster(&mut self, node: &NodeId) -> Result<(), RedisError> {
        let key = node_key(node);
        let commands = [
            vec![&b"DEL"[..], key.as_bytes()],
            vec![&b"SREM"[..], NODES_KEY.as_bytes(), node.as_str().as_bytes()],
        ];
        self.client.pipeline(&commands)?;
        Ok(())
    }

    /// Says that `node` is alive for the next `ttl` (`SET … PX`), and
    /// registers it in the set of nodes; a node repeats this well within
    /// its ttl (a third of it, say), so that one late heartbeat does not
    /// declare it dead. Pipelined: one round trip.
    pub fn heartbeat(&mut self, node: &NodeId, ttl: Duration) -> Result<(), RedisError> {
        let key = node_key(node);
        let ttl_ms = ttl.as_millis().max(1).to_string();
        let commands = [
            vec![&b"SET"[..], key.as_bytes(), b"1", b"PX", ttl_ms.as_bytes()],
            vec![&b"SADD"[..], NODES_KEY.as_bytes(), node.as_str().as_bytes()],
        ];
        for reply in self.client.pipeline(&commands)? {
            if let Value::Error(text) = reply {
                return Err(RedisError::Server(text));
            }
        }
        Ok(())
    }

    /// True while `node`'s last heartbeat has not expired.
    pub fn is_alive(&mut self, node: &NodeId) -> Result<bool, RedisError> {
        let key = node_key(node);
        Ok(integer(
            "EXISTS",
            self.client.command(&[&b"EXISTS"[..], key.as_bytes()])?,
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
        let reply = self.client.command(&[
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
    /// nodes that ask while the claim lasts, and false for all if `dead` is
    /// in fact alive. The claim expires after `ttl`, so that if the
    /// claimer dies too, another node can take over; the claimer calls
    /// [`Store::forget_node`] once done.
    pub fn claim_cleanup(
        &mut self,
        dead: &NodeId,
        claimer: &NodeId,
        ttl: Duration,
    ) -> Result<bool, RedisError> {
        let heartbeat = node_key(dead);
        let cleanup = format!("wschat:cleanup:{dead}");
        let ttl_ms = ttl.as_millis().max(1).to_string();
        let reply = self.client.command(&[
            &b"EVAL"[..],
            CLAIM_CLEANUP_SCRIPT.as_bytes(),
            b"2",
            heartbeat.as_bytes(),
            cleanup.as_bytes(),
            claimer.as_str().as_bytes(),
            ttl_ms.as_bytes(),
        ])?;
        Ok(integer("claim_cleanup", reply)? == 1)
    }

    /// Removes a node from the set of nodes, once its cleanup is done.
    pub fn forget_node(&mut self, node: &NodeId) -> Result<(), RedisError> {
        self.client
            .command(&[&b"SREM"[..], NODES_KEY.as_bytes(), node.as_str().as_bytes()])?;
        Ok(())
    }
}

/// The heartbeat key of a node.
pub fn node_key(node: &NodeId) -> String {
    format!("{NODE_KEY_PREFIX}{node}")
}
