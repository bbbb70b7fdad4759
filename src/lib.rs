//! wschat: a WebSocket chat server with a hand-written RFC 6455
//! implementation, on plain threads.
//!
//! The path of one chat message:
//!
//! ```text
//! TcpListener ─accept─▶ connection thread (server.rs → connection.rs)
//!                        reads the HTTP head, checks the handshake (protocol::handshake),
//!                        then reads frames (protocol::message) and sends events ─┐
//!                                                                                 ▼
//!                        broadcaster thread (broadcaster.rs): the loop around the
//!                        sans-I/O Chat (room/), in the order of its queue (or, in
//!                        cluster mode, broadcaster/replicated.rs: of the room's
//!                        stream, cluster/); its Outbox (broadcaster/outbox.rs)
//!                        encodes each outgoing frame once and gathers frames into
//!                        batches while events wait ─┐
//!                                                   ▼
//!                        delivery threads (delivery/), one per core, each owning a
//!                        share of the clients: one non-blocking sendmsg per client
//!                        per turn for everything due; full sockets wait in poll(2)
//! ```

// Public, because the walkthrough (docs/, compiled as doctests) and the
// tests use them as a library: the RFC 6455 code, the chat rules, delivery,
// the Redis layer, and the small pure pieces the chapters show.
pub mod access;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod forwarded;
pub mod http;
pub mod inspect;
pub mod json;
pub mod log_text;
pub mod metrics;
pub mod protocol;
pub mod room;
pub mod threads;

// The server's own plumbing: threads, sockets and files, used through
// `Server` alone.
mod address_limits;
mod broadcaster;
mod connection;
mod echo;
mod history_file;
mod idle_stack;
mod rate_limit;
mod server;

pub use config::Config;
/// Connections allowed to be still sending their request head at once.
pub use connection::MAX_PENDING_HANDSHAKES;
pub use server::{Server, ServerHandle};

/// The chapters of docs/, compiled as doctests so that every Rust listing
/// in the walkthrough is built and run by `cargo test`.
#[cfg(doctest)]
mod walkthrough;
