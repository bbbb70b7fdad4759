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
//!                        broadcaster thread (broadcaster.rs, room.rs): owns the room,
//!                        encodes each outgoing frame once: one non-blocking send to an
//!                        idle client, try_push to the queue of a busy one
//!                        (with a backlog: one item per client for many frames) ─┐
//!                                                                               ▼
//!                        writer thread per client (writer.rs): drains its queue,
//!                        one writev per batch; started for a backlog, ends when idle
//! ```

pub mod broadcaster;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod history_file;
pub mod http;
pub mod json;
pub mod metrics;
pub mod protocol;
pub mod room;
pub mod server;
pub mod threads;
pub mod writer;

pub use config::Config;
pub use server::{Server, ServerHandle};

/// The chapters of docs/, compiled as doctests so that every Rust listing
/// in the walkthrough is built and run by `cargo test`.
#[cfg(doctest)]
mod walkthrough;
