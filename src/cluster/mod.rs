//! The Redis layer of cluster mode: several wschat processes ("nodes")
//! sharing one chat through Redis Streams.
//!
//! Every chat event is appended to one stream per room; every node reads
//! that stream from the last id it has seen and delivers the events to its
//! own clients in stream order, so that all nodes show one order. The
//! Redis protocol is written by hand here, like the WebSocket one in
//! `protocol`:
//!
//! - [`resp`]: RESP2, encoding commands and parsing replies (no I/O);
//! - [`url`]: the `redis://[[user]:password@]host[:port][/db]` URL;
//! - [`client`]: a blocking connection with timeouts, pipelining and
//!   reconnection with backoff;
//! - [`stream`]: the operations cluster mode needs, each one round trip:
//!   append with a sequence number, read after an id, the room's
//!   snapshot;
//! - [`nodes`]: which nodes are alive (heartbeats) and who cleans up
//!   after a dead one;
//! - [`replica`]: what is appended, and how each node applies the stream
//!   to its own copy of the `Chat` (no I/O);
//! - [`node`]: a node's Redis threads (writer, reader, keeper) and its
//!   start-up.
//!
//! ```no_run
//! use wschat::cluster::{RedisConnection, RedisUrl, StreamId, Store};
//!
//! let url = RedisUrl::parse("redis://127.0.0.1:6379").unwrap();
//! let mut writer = Store::new(RedisConnection::connect(&url).unwrap(), 10_000);
//! let mut reader = Store::new(RedisConnection::connect(&url).unwrap(), 10_000);
//!
//! let (id, seq) = writer.append("lobby", &[("text", b"hello")]).unwrap();
//! let events = reader.read_after("lobby", StreamId::ZERO, 1000, 100).unwrap();
//! assert!(events.iter().any(|e| e.id == id && e.seq() == Some(seq)));
//! ```
//!
//! See docs/14-cluster.md for the protocol byte by byte and the design.

pub mod client;
pub mod node;
pub mod nodes;
pub mod replica;
pub mod resp;
pub mod stream;
pub mod url;

pub use client::{Backoff, RedisConnection, RedisError, Timeouts};
pub use nodes::NodeId;
pub use resp::Value;
pub use stream::{Entry, Store, StreamId};
pub use url::RedisUrl;
