//! permessage-deflate (RFC 7692), on a DEFLATE (RFC 1951) written by hand.
//!
//! Everything here is pure: bytes in, bytes out.
//!
//! - [`extension`]: the `Sec-WebSocket-Extensions` negotiation (RFC 7692
//!   §5, §7.1), [`negotiate`];
//! - [`compress`]: [`compress_message`], one message to its compressed
//!   payload (§7.2.1), the same bytes every time;
//! - [`inflate`]: [`Inflater::inflate_message`], a compressed payload back to
//!   the message (§7.2.2), with an output limit;
//! - [`huffman`]: the tables and canonical Huffman codes both sides share.
//!
//! The server always negotiates no context takeover in both directions, so
//! no state is kept between messages: each message is compressed and
//! inflated on its own.

pub mod compress;
pub mod extension;
pub mod huffman;
pub mod inflate;

pub use compress::{Compressor, compress_message, compress_message_with_window};
pub use extension::{Agreement, negotiate, negotiate_where};
pub use inflate::{InflateError, Inflater};

/// What a sync flush ends with (an empty stored block's LEN and NLEN), and
/// what RFC 7692 §7.2.1 removes from each compressed message and §7.2.2
/// appends again before inflating.
pub const SYNC_FLUSH_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The smallest LZ77 window a peer may ask for: 2^8 = 256 bytes
/// (RFC 7692 §7.1.2.1).
pub const MIN_WINDOW_BITS: u8 = 8;
/// The largest, and DEFLATE's own limit: 2^15 = 32 KiB (RFC 1951 §2).
pub const MAX_WINDOW_BITS: u8 = 15;

/// The most a compressor may need for a message of `len` bytes: zlib's
/// `deflateBound` for raw DEFLATE. Data that does not compress goes in
/// stored blocks (RFC 1951 §3.2.4: 5 bytes of header per 65,535 bytes);
/// the bound leaves room for a little more. A compressed payload is held
/// to the bound of the message limit, so that a message of exactly the
/// limit that does not compress is still accepted.
///
/// ```
/// use wschat::protocol::deflate::{compress_message, compressed_bound};
///
/// let mut x = 0x2545_f491_4f6c_dd1d_u64; // xorshift64: bytes that do not compress
/// let noise: Vec<u8> = (0..70_000)
///     .map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; (x >> 32) as u8 })
///     .collect();
/// assert!(compress_message(&noise).len() > noise.len());
/// assert!(compress_message(&noise).len() <= compressed_bound(noise.len()));
/// ```
pub fn compressed_bound(len: usize) -> usize {
    len + (len >> 12) + (len >> 14) + (len >> 25) + 13
}
