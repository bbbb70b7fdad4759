//! RFC 6455, by hand: everything about the WebSocket protocol itself, and
//! nothing about threads or sockets. Each piece works on byte slices or on
//! any `Read`, so it can be tested without a network.
//!
//! Reading order: [`handshake`] (§4), [`frame`] and [`mask`] (§5.2, §5.3),
//! [`message`] and [`utf8`] (§5.4–§5.6, §8.1), [`close`] (§5.5.1, §7.4),
//! [`error`] (what each violation is answered with), and [`deflate`]
//! (RFC 7692 permessage-deflate, on a hand-written RFC 1951 DEFLATE).

pub mod close;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod message;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use error::ProtocolError;
pub use frame::{FrameHeader, OpCode};
pub use message::{Message, MessageDecoder, MessageReader, ReadError, Role};
