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

/// What [`max_compressed_len`] allows above 9/8 of the limit: the
/// headers and flush bits of a few blocks.
pub const COMPRESSED_SLACK: usize = 64;

/// How many bytes a compressed message may take, as received, for a
/// message limit of `limit` bytes: `limit × 9/8 + COMPRESSED_SLACK`. The
/// payload is buffered up to this before it is inflated, and the inflater
/// then holds the output to `limit` (RFC 7692 §8 leaves both to the
/// endpoint). No bound admits every valid stream (empty blocks can make
/// one as long as you like), so this one covers what real encoders send
/// for a message of `limit` bytes that does not compress: a single
/// fixed-Huffman block (RFC 1951 §3.2.6: 9 bits for a literal of 144 or
/// more, so 9/8 of the message), and stored blocks as small as zlib at
/// its smallest memory level makes them (5 bytes of header per 128
/// bytes, about 4 %). A frame that would take a compressed message over
/// it is refused with 1009 from its header.
///
/// ```
/// use wschat::protocol::deflate::{COMPRESSED_SLACK, compress_message, max_compressed_len};
///
/// assert_eq!(max_compressed_len(65_536), 73_728 + COMPRESSED_SLACK);
/// let mut x = 0x2545_f491_4f6c_dd1d_u64; // xorshift64: bytes that do not compress
/// let noise: Vec<u8> = (0..70_000)
///     .map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; (x >> 32) as u8 })
///     .collect();
/// assert!(compress_message(&noise).len() > noise.len());
/// assert!(compress_message(&noise).len() <= max_compressed_len(noise.len()));
/// ```
pub fn max_compressed_len(limit: usize) -> usize {
    limit
        .saturating_add(limit / 8)
        .saturating_add(COMPRESSED_SLACK)
}
