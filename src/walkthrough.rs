//! Each chapter of docs/ included as documentation, so `cargo test` runs its
//! Rust code blocks as doctests (see lib.rs). A chapter whose examples no
//! longer match the code breaks the build: the walkthrough cannot go stale.
//!
//! Blocks marked `text`, `sh` or `json` are not compiled; every other fenced
//! block in these files is Rust and must compile and pass.

#[doc = include_str!("../docs/README.md")]
pub struct Readme;

#[doc = include_str!("../docs/00-intro.md")]
pub struct Intro;

#[doc = include_str!("../docs/00-map.md")]
pub struct Map;

#[doc = include_str!("../docs/01-handshake.md")]
pub struct Handshake;

#[doc = include_str!("../docs/02-frames.md")]
pub struct Frames;

#[doc = include_str!("../docs/03-messages.md")]
pub struct Messages;

#[doc = include_str!("../docs/04-closing.md")]
pub struct Closing;

#[doc = include_str!("../docs/05-threads.md")]
pub struct Threads;

#[doc = include_str!("../docs/06-chat-protocols.md")]
pub struct ChatProtocols;

#[doc = include_str!("../docs/07-browser-client.md")]
pub struct BrowserClient;

#[doc = include_str!("../docs/08-testing.md")]
pub struct Testing;

#[doc = include_str!("../docs/09-performance.md")]
pub struct Performance;

#[doc = include_str!("../docs/10-security.md")]
pub struct Security;

#[doc = include_str!("../docs/12-traceability.md")]
pub struct Traceability;

#[doc = include_str!("../docs/13-compression.md")]
pub struct Compression;

#[doc = include_str!("../docs/14-cluster.md")]
pub struct Cluster;

#[doc = include_str!("../docs/15-rooms.md")]
pub struct Rooms;

#[doc = include_str!("../docs/16-identity.md")]
pub struct Identity;
