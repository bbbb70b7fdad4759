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
//!                        sans-I/O Room (room/); encodes each outgoing frame once and
//!                        gathers frames into batches while events wait ─┐
//!                                                                       ▼
//!                        delivery threads (delivery/), one per core, each owning a
//!                        share of the clients: one non-blocking sendmsg per client
//!                        per turn for everything due; full sockets wait in poll(2)
//! ```

pub mod access;
pub mod broadcaster;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod delivery;
pub mod history_file;
pub mod http;
pub mod json;
pub mod log_text;
pub mod metrics;
pub mod protocol;
pub mod room;
pub mod server;
pub mod threads;

pub use config::Config;
pub use server::{Server, ServerHandle};

/// The chapters of docs/, compiled as doctests so that every Rust listing
/// in the walkthrough is built and run by `cargo test`.
#[cfg(doctest)]
mod walkthrough;
