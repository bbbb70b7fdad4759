//! Decompression (RFC 1951 §3.2.3–§3.2.7) of one permessage-deflate
//! message (RFC 7692 §7.2.2), with an output limit checked as it goes.
//!
//! The input is read through a [`BitReader`]: DEFLATE packs its fields
//! starting at the least significant bit of each byte (§3.1.1). A message
//! is a sequence of blocks, each one of three kinds:
//!
//! - *stored* (BTYPE 00): the bytes as they are, after a 4-byte length;
//! - *fixed Huffman* (01): literals and matches in a code the RFC fixes;
//! - *dynamic Huffman* (10): the same, in codes sent at the block's start.

use super::huffman::{
    CODELEN_ORDER, CODELEN_SYMBOLS, CodeLenTable, DistTable, END_OF_BLOCK, Entry,
    FIXED_DIST_LENGTHS, Incomplete, LitLenTable, MAX_CODE_BITS, codelen_entry, dist_entry,
    fixed_litlen_lengths, litlen_entry,
};
use super::{MAX_WINDOW_BITS, MIN_WINDOW_BITS, SYNC_FLUSH_TAIL};
use std::fmt;
use std::sync::OnceLock;

/// Why a message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// The message inflates to more than the limit (answered with 1009).
    TooBig { limit: usize },
    /// The bytes are not valid DEFLATE data (answered with 1007; see
    /// [`crate::protocol::ProtocolError::InvalidCompressedData`]).
    Corrupt(&'static str),
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InflateError::TooBig { limit } => write!(f, "message inflates to over {limit} bytes"),
            InflateError::Corrupt(why) => write!(f, "invalid compressed data: {why}"),
        }
    }
}

impl std::error::Error for InflateError {}

/// Reads bits least-significant first from the message's bytes followed by
/// the four bytes `00 00 ff ff` (RFC 7692 §7.2.2), without copying the
/// message to append them.
///
/// The bits wait in a 64-bit buffer, refilled eight bytes at a time while
/// eight bytes are left, so that one refill covers a whole length and
/// distance pair (at most 15 + 5 + 15 + 13 = 48 bits).
#[derive(Clone, Copy)]
struct BitReader<'a> {
    data: &'a [u8],
    /// Bytes moved into `bits` from `data` then `SYNC_FLUSH_TAIL`.
    pos: usize,
    /// The next `nbits` input bits, first bit lowest. Above them, `bits`
    /// holds zeros or the input's next bits, never anything else: a
    /// Huffman lookup may read past `nbits`, and the code it finds is then
    /// checked against `nbits`.
    bits: u64,
    nbits: u32,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            bits: 0,
            nbits: 0,
        }
    }

    fn total_len(&self) -> usize {
        self.data.len() + SYNC_FLUSH_TAIL.len()
    }

    /// Tops the buffer up to at least 56 bits, or to every bit left.
    #[inline(always)]
    fn refill(&mut self) {
        if let Some(word) = self.data.get(self.pos..self.pos + 8) {
            // The whole word goes in; the bytes that fit are counted. The
            // rest of the last one sits above `nbits`, and is loaded again
            // (the same bits) next time.
            let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            self.bits |= word << self.nbits;
            let whole_bytes = (63 - self.nbits) / 8;
            self.pos += whole_bytes as usize;
            self.nbits += 8 * whole_bytes;
        } else {
            self.refill_near_the_end();
        }
    }

    /// Byte by byte, the message's last bytes and then the tail.
    #[cold]
    fn refill_near_the_end(&mut self) {
        while self.nbits <= 56 {
            let byte = match self.data.get(self.pos) {
                Some(&b) => b,
                None => match SYNC_FLUSH_TAIL.get(self.pos - self.data.len()) {
                    Some(&b) => b,
                    None => return,
                },
            };
            self.bits |= (byte as u64) << self.nbits;
            self.nbits += 8;
            self.pos += 1;
        }
    }

    /// [`Self::refill`] where eight bytes of the message are known to be
    /// left (the fast loop's condition): no test for the end.
    #[inline(always)]
    fn refill_word(&mut self) {
        let word = &self.data[self.pos..self.pos + 8];
        let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        self.bits |= word << self.nbits;
        let whole_bytes = (63 - self.nbits) / 8;
        self.pos += whole_bytes as usize;
        self.nbits += 8 * whole_bytes;
    }

    /// Consumes a code of `len` bits and the `extra` bits after it, which
    /// it returns (§3.2.5), in one shift; the buffer holds them all.
    #[inline(always)]
    fn code_and_extra(&mut self, len: u32, extra: u32) -> u32 {
        let value = (self.bits >> len) as u32 & ((1u32 << extra) - 1);
        self.consume(len + extra);
        value
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.bits >>= n;
        self.nbits -= n;
    }

    /// The next `n` (≤ 32) bits as a number, first bit lowest, from the
    /// buffer as it is (the caller refilled it).
    #[inline(always)]
    fn take(&mut self, n: u32) -> Result<u32, InflateError> {
        if n > self.nbits {
            return Err(TRUNCATED);
        }
        let value = (self.bits & ((1u64 << n) - 1)) as u32;
        self.consume(n);
        Ok(value)
    }

    /// The next `n` (≤ 32) bits as a number, first bit lowest.
    fn bits(&mut self, n: u32) -> Result<u32, InflateError> {
        if self.nbits < n {
            self.refill();
        }
        self.take(n)
    }

    /// Decodes one symbol with one table lookup (two for a code longer
    /// than the table's root), from the buffer as it is: its entry says
    /// what it means, and how many extra bits follow (§3.2.5).
    #[inline(always)]
    fn symbol<const ROOT: u32, const SIZE: usize>(
        &mut self,
        table: &super::huffman::DecodeTable<ROOT, SIZE>,
    ) -> Result<Entry, InflateError> {
        let (entry, len) = table.lookup(self.bits);
        // A code longer than the bits left: the input ends inside it.
        if len > self.nbits {
            return Err(TRUNCATED);
        }
        self.consume(len);
        Ok(entry)
    }

    /// Drops the bits left in the current byte (before a stored block).
    fn align(&mut self) {
        let drop = self.nbits % 8;
        self.consume(drop);
    }

    /// Appends the next `n` bytes (the reader byte-aligned) to `out`: the
    /// whole bytes in the buffer, then a bulk copy from the input.
    fn copy_bytes(&mut self, n: usize, out: &mut Output) -> Result<(), InflateError> {
        debug_assert_eq!(self.nbits % 8, 0);
        let buffered = (self.nbits / 8) as usize;
        if buffered + (self.total_len() - self.pos) < n {
            return Err(TRUNCATED);
        }
        let from_buffer = buffered.min(n);
        for _ in 0..from_buffer {
            out.push_unchecked_room(self.bits as u8);
            self.consume(8);
        }
        let rest = n - from_buffer;
        if rest > 0 {
            // The buffer is empty now; the bits above `nbits` are bytes
            // that follow, counted again below.
            self.bits = 0;
            let data_left = self.data.get(self.pos..).unwrap_or_default();
            let tail_left = &SYNC_FLUSH_TAIL[self.pos.saturating_sub(self.data.len())..];
            let from_data = data_left.len().min(rest);
            out.extend_unchecked_room(&data_left[..from_data]);
            out.extend_unchecked_room(&tail_left[..rest - from_data]);
            self.pos += rest;
        }
        Ok(())
    }

    /// True when every bit has been read, the appended tail's included. A
    /// flushed message ends exactly there (its last block is the empty
    /// stored block whose LEN and NLEN are the tail); bits left over in the
    /// tail's last byte are the start of a next block header, and are read
    /// as one (so `ff`'s ones are a reserved block type, as zlib says).
    fn at_end(&self) -> bool {
        self.pos == self.total_len() && self.nbits == 0
    }

    /// How many of the message's own bytes (the tail not counted) have
    /// been read, in whole or in part.
    fn message_bytes_read(&self) -> usize {
        (self.pos - self.nbits as usize / 8).min(self.data.len())
    }
}

/// The message being inflated: a buffer that grows (doubling, like `Vec`,
/// but never past the limit) ahead of what is written, so that writes are
/// plain stores and short copies can move eight bytes at a time.
struct Output {
    /// Written bytes, then zeros or scratch: `buf.len()` is the room.
    buf: Vec<u8>,
    len: usize,
    limit: usize,
}

impl Output {
    fn new(initial: usize, limit: usize) -> Self {
        Output {
            buf: vec![0; initial.min(limit)],
            len: 0,
            limit,
        }
    }

    /// Makes room for `more` bytes; fails if they would take the message
    /// over the limit.
    #[inline(always)]
    fn room_for(&mut self, more: usize) -> Result<(), InflateError> {
        if self.buf.len() - self.len < more {
            self.grow(more)?;
        }
        Ok(())
    }

    #[cold]
    fn grow(&mut self, more: usize) -> Result<(), InflateError> {
        let needed = self.len + more;
        if needed > self.limit {
            return Err(InflateError::TooBig { limit: self.limit });
        }
        let target = (self.buf.len() * 2).clamp(needed, self.limit);
        // `resize` alone could double the capacity past the limit.
        self.buf.reserve_exact(target - self.buf.len());
        self.buf.resize(target, 0);
        Ok(())
    }

    /// One byte; fails if it would take the message over the limit.
    #[inline(always)]
    fn push(&mut self, byte: u8) -> Result<(), InflateError> {
        match self.buf.get_mut(self.len) {
            Some(slot) => *slot = byte,
            None => {
                self.grow(1)?;
                self.buf[self.len] = byte;
            }
        }
        self.len += 1;
        Ok(())
    }

    /// One byte, room already made.
    #[inline(always)]
    fn push_unchecked_room(&mut self, byte: u8) {
        self.buf[self.len] = byte;
        self.len += 1;
    }

    fn extend_unchecked_room(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// §3.2.5: copies `length` bytes from `distance` back (room made,
    /// `distance` ≤ `len` checked). The copy may overlap what it writes:
    /// "abcabcabc" is "abc" then length 6, distance 3.
    #[inline(always)]
    fn copy_match(&mut self, distance: usize, length: usize) {
        let (to, from) = (self.len, self.len - distance);
        if distance >= 8 && to + length.next_multiple_of(8) <= self.buf.len() {
            // Eight bytes at a time, past the end if need be: each chunk's
            // source lies before its destination, so it is already
            // written, and bytes past `to + length` are scratch.
            for i in (0..length).step_by(8) {
                self.buf.copy_within(from + i..from + i + 8, to + i);
            }
        } else if distance >= length {
            self.buf.copy_within(from..from + length, to);
        } else if distance == 1 {
            let byte = self.buf[from];
            self.buf[to..to + length].fill(byte);
        } else {
            for i in to..to + length {
                self.buf[i] = self.buf[i - distance];
            }
        }
        self.len += length;
    }

    /// True when [`FAST_OUTPUT_ROOM`] bytes of room are there, growing
    /// the buffer if the limit allows.
    #[inline(always)]
    fn fast_room(&mut self) -> bool {
        if self.buf.len() - self.len >= FAST_OUTPUT_ROOM {
            return true;
        }
        self.len + FAST_OUTPUT_ROOM <= self.limit && self.grow(FAST_OUTPUT_ROOM).is_ok()
    }

    /// [`Self::copy_match`] with [`FAST_OUTPUT_ROOM`] of room: whole
    /// chunks, past `len + length` if need be (scratch, written over
    /// later). A chunk's source ends before its destination starts when
    /// the distance is at least the chunk, so it is already written.
    #[inline(always)]
    fn copy_match_fast(&mut self, distance: usize, length: usize) {
        let (to, from) = (self.len, self.len - distance);
        if distance >= COPY_CHUNK {
            copy_chunks::<COPY_CHUNK>(&mut self.buf, from, to, length);
        } else if distance >= 8 {
            copy_chunks::<8>(&mut self.buf, from, to, length);
        } else if distance == 1 {
            let byte = self.buf[from];
            self.buf[to..to + length].fill(byte);
        } else {
            // A pattern shorter than eight bytes: copy what is written, so
            // each copy doubles the bytes that repeat it.
            let (mut at, mut span) = (to, distance);
            while at < to + length {
                let n = span.min(to + length - at);
                self.buf.copy_within(at - span..at - span + n, at);
                at += n;
                span *= 2;
            }
        }
        self.len += length;
    }

    fn into_vec(mut self) -> Vec<u8> {
        self.buf.truncate(self.len);
        self.buf
    }
}

/// The most a match copy moves at once (where the distance allows).
const COPY_CHUNK: usize = 16;

/// Copies `length` bytes from `from` to `to` (`to - from` ≥ `N`) in
/// `N`-byte chunks, the last one possibly past `to + length`.
#[inline(always)]
fn copy_chunks<const N: usize>(buf: &mut [u8], from: usize, to: usize, length: usize) {
    let mut i = 0;
    while i < length {
        let chunk: [u8; N] = buf[from + i..from + i + N].try_into().expect("N bytes");
        buf[to + i..to + i + N].copy_from_slice(&chunk);
        i += N;
    }
}

/// What a sender that flushes after a final block adds (RFC 7692
/// §7.2.3.4): the header bits of an empty stored block (BFINAL 0, BTYPE
/// 00) and five bits of padding, whose LEN and NLEN were the removed tail.
pub const FLUSH_AFTER_FINAL_BLOCK: [u8; 1] = [0x00];

const TRUNCATED: InflateError = InflateError::Corrupt("data ends inside a block");

/// Inflates permessage-deflate messages. It holds no data between
/// messages: the server negotiates `client_no_context_takeover`, so no
/// window is carried from one message to the next (each message's own
/// output is its window), and a connection that has negotiated compression
/// costs no more memory than one that has not.
///
/// ```
/// use wschat::protocol::deflate::Inflater;
///
/// // RFC 7692 §7.2.3.1: "Hello", compressed.
/// let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
/// let inflater = Inflater::new();
/// assert_eq!(inflater.inflate_message(&hello, 1024).unwrap(), b"Hello");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inflater {
    /// Matches may reach at most this far back (32768 unless set).
    max_distance: usize,
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

/// The fixed Huffman codes (§3.2.6), built on first use.
fn fixed_codes() -> &'static (LitLenTable, DistTable) {
    static FIXED: OnceLock<(LitLenTable, DistTable)> = OnceLock::new();
    FIXED.get_or_init(|| {
        let mut litlen = LitLenTable::empty();
        let mut dist = DistTable::empty();
        litlen
            .build(&fixed_litlen_lengths(), Incomplete::Refused, litlen_entry)
            .expect("the fixed code is complete");
        dist.build(&FIXED_DIST_LENGTHS, Incomplete::Refused, dist_entry)
            .expect("the fixed code is complete");
        (litlen, dist)
    })
}

impl Inflater {
    pub fn new() -> Self {
        Inflater {
            max_distance: 1 << MAX_WINDOW_BITS,
        }
    }

    /// An inflater that refuses matches reaching back more than
    /// `2^window_bits` bytes (clamped to 8..=15): what an endpoint that
    /// asked for `server_max_window_bits` or `client_max_window_bits`
    /// (RFC 7692 §7.1.2) may enforce on its peer.
    pub fn with_window_bits(window_bits: u8) -> Self {
        Inflater {
            max_distance: 1 << window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS),
        }
    }

    /// Inflates one message's payload (all its fragments, joined), as RFC
    /// 7692 §7.2.2 says: append `00 00 ff ff` and inflate. The output is
    /// checked against `limit` before every byte is added, and its buffer
    /// never grows past `limit`, so a small payload that would inflate to
    /// gigabytes fails after at most `limit` bytes of work and memory.
    ///
    /// An empty payload is an empty message. After a block marked final
    /// (BFINAL), the message may hold nothing more, or exactly one `00`
    /// octet: RFC 7692 §7.2.3.4 lets a sender end a message with a final
    /// block and then flush, which adds an empty stored block's header bits
    /// and padding (`00`) before the `00 00 ff ff` that §7.2.1 removes.
    /// Anything else after a final block is refused.
    pub fn inflate_message(
        &self,
        compressed: &[u8],
        limit: usize,
    ) -> Result<Vec<u8>, InflateError> {
        if compressed.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Output::new(compressed.len().saturating_mul(4), limit);
        let mut input = BitReader::new(compressed);
        // A dynamic block's codes, rebuilt for each such block (their
        // entries, 13 KiB, are on the heap).
        let mut dynamic: Option<(LitLenTable, DistTable)> = None;
        while !input.at_end() {
            let last = input.bits(1)? == 1;
            match input.bits(2)? {
                0 => stored_block(&mut input, &mut out)?,
                1 => {
                    let codes = fixed_codes();
                    huffman_block(&mut input, &mut out, self.max_distance, codes)?;
                }
                2 => {
                    let codes = dynamic
                        .get_or_insert_with(|| (LitLenTable::unbuilt(), DistTable::unbuilt()));
                    read_dynamic_tables(&mut input, codes)?;
                    huffman_block(&mut input, &mut out, self.max_distance, codes)?;
                }
                _ => return Err(InflateError::Corrupt("reserved block type 3")),
            }
            if last {
                // The final block's last byte is padded; after it, only the
                // §7.2.3.4 flush octet and the appended tail may remain.
                let after = &compressed[input.message_bytes_read()..];
                if !(after.is_empty() || after == FLUSH_AFTER_FINAL_BLOCK) {
                    return Err(InflateError::Corrupt("data after the final block"));
                }
                break;
            }
        }
        Ok(out.into_vec())
    }
}

/// §3.2.4: skip to a byte boundary, then LEN and its complement NLEN, then
/// LEN bytes copied as they are, in one piece.
fn stored_block(input: &mut BitReader, out: &mut Output) -> Result<(), InflateError> {
    input.align();
    let len = input.bits(16)?;
    let nlen = input.bits(16)?;
    if len != !nlen & 0xffff {
        return Err(InflateError::Corrupt("stored block length check failed"));
    }
    out.room_for(len as usize)?;
    input.copy_bytes(len as usize, out)
}

/// §3.2.7: a dynamic block starts with the sizes of its two codes, then the
/// code-length code, then both codes' lengths in the code-length code,
/// run-length compressed with symbols 16 (repeat the last length 3–6
/// times), 17 (3–10 zeros) and 18 (11–138 zeros).
fn read_dynamic_tables(
    input: &mut BitReader,
    (litlen, dist): &mut (LitLenTable, DistTable),
) -> Result<(), InflateError> {
    let hlit = input.bits(5)? as usize + 257;
    let hdist = input.bits(5)? as usize + 1;
    let hclen = input.bits(4)? as usize + 4;
    if hlit > 286 || hdist > 30 {
        return Err(InflateError::Corrupt("too many length or distance codes"));
    }
    let mut codelen_lengths = [0u8; CODELEN_SYMBOLS];
    for &symbol in &CODELEN_ORDER[..hclen] {
        codelen_lengths[symbol] = input.bits(3)? as u8;
    }
    let mut codelen = CodeLenTable::unbuilt();
    codelen
        .build(&codelen_lengths, Incomplete::Refused, codelen_entry)
        .map_err(InflateError::Corrupt)?;

    let mut lengths = [0u8; 286 + 30];
    let mut n = 0;
    while n < hlit + hdist {
        input.refill();
        let entry = input.symbol(&codelen)?;
        let symbol = entry.value();
        if entry.kind() == Entry::INVALID {
            // No code-length code at all: nothing decodes.
            return Err(invalid(entry));
        }
        let (value, times) = match symbol {
            0..=15 => (symbol as u8, 1),
            16 if n == 0 => return Err(InflateError::Corrupt("repeat with no previous length")),
            16 => (lengths[n - 1], 3 + input.take(2)? as usize),
            17 => (0, 3 + input.take(3)? as usize),
            _ => (0, 11 + input.take(7)? as usize),
        };
        if n + times > hlit + hdist {
            return Err(InflateError::Corrupt("code lengths overrun"));
        }
        lengths[n..n + times].fill(value);
        n += times;
    }
    if lengths[END_OF_BLOCK] == 0 {
        return Err(InflateError::Corrupt("no end-of-block code"));
    }
    litlen
        .build(
            &lengths[..hlit],
            Incomplete::OneBitCodeAllowed,
            litlen_entry,
        )
        .map_err(InflateError::Corrupt)?;
    dist.build(
        &lengths[hlit..hlit + hdist],
        Incomplete::OneBitCodeAllowed,
        dist_entry,
    )
    .map_err(InflateError::Corrupt)?;
    Ok(())
}

/// The most bits a literal/length code and its extra bits take, and a
/// distance code and its extra bits (§3.2.5).
const LENGTH_BITS: u32 = MAX_CODE_BITS as u32 + 5;
const DISTANCE_BITS: u32 = MAX_CODE_BITS as u32 + 13;

/// The error for an entry that no valid stream reaches.
#[cold]
fn invalid(entry: Entry) -> InflateError {
    InflateError::Corrupt(Entry::INVALID_REASONS[entry.value() as usize])
}

/// §3.2.5: literals are copied; a length symbol and a distance symbol
/// (each with extra bits) copy `length` bytes from `distance` bytes back
/// in the output.
///
/// Most of a block is decoded by [`fast_symbols`], which checks the input
/// and the output room once per step instead of once per field; this loop
/// takes the steps it cannot (near the end of the input, or of the output
/// limit), one symbol at a time, every check made.
fn huffman_block(
    reader: &mut BitReader,
    writer: &mut Output,
    max_distance: usize,
    codes: &(LitLenTable, DistTable),
) -> Result<(), InflateError> {
    // Copies in locals, which stay in registers; written back at the end
    // of the block (an error ends the message, so then it does not matter).
    let mut input = *reader;
    let input = &mut input;
    let mut output = std::mem::replace(writer, Output::new(0, 0));
    let out = &mut output;
    let (litlen, dist) = codes;
    loop {
        if fast_symbols(input, out, max_distance, codes)? {
            *reader = *input;
            *writer = output;
            return Ok(());
        }
        if input.nbits < LENGTH_BITS {
            input.refill();
        }
        let entry = input.symbol(litlen)?;
        if entry.kind() == Entry::LITERAL {
            out.push(entry.value() as u8)?;
            continue;
        }
        if entry.kind() != Entry::BASE {
            if entry.kind() == Entry::END_OF_BLOCK {
                *reader = *input;
                *writer = output;
                return Ok(());
            }
            return Err(invalid(entry));
        }
        let length = (entry.value() + input.take(entry.extra())?) as usize;
        if input.nbits < DISTANCE_BITS {
            input.refill();
        }
        let entry = input.symbol(dist)?;
        if entry.kind() != Entry::BASE {
            return Err(invalid(entry));
        }
        let distance = (entry.value() + input.take(entry.extra())?) as usize;
        check_distance(distance, out.len, max_distance)?;
        out.room_for(length)?;
        out.copy_match(distance, length);
    }
}

/// Input bytes [`fast_symbols`] needs left before a step: a step refills
/// twice (before the literal/length code, and before the distance code),
/// and each refill reads eight bytes and keeps at most seven.
const FAST_INPUT_BYTES: usize = 7 + 8;
/// Output room [`fast_symbols`] needs before a step: two literals, then
/// the longest match rounded up to whole chunks of [`Output::copy_match_fast`].
const FAST_OUTPUT_ROOM: usize = 2 + MAX_MATCH_LEN.next_multiple_of(COPY_CHUNK);
/// §3.2.5: the longest match.
const MAX_MATCH_LEN: usize = 258;

/// Decodes while at least [`FAST_INPUT_BYTES`] of the message are left
/// unread and [`FAST_OUTPUT_ROOM`] bytes of room can be had under the
/// limit. Returns true at the end of the block, false when the caller must
/// go on one symbol at a time.
///
/// Each step refills the bit buffer to at least 56 bits of the message's
/// own bytes, so no field of the step can run out of input (no
/// truncation checks): up to three literals (3 × 15 bits), or up to two
/// literals and a length with its extra bits (2 × 15 + 20 = 50). A second
/// refill before the distance code and its extra bits (28 bits) makes it
/// whole. Several literals per refill is where text spends its time.
#[inline(always)]
fn fast_symbols(
    input: &mut BitReader,
    out: &mut Output,
    max_distance: usize,
    (litlen, dist): &(LitLenTable, DistTable),
) -> Result<bool, InflateError> {
    while input.pos + FAST_INPUT_BYTES <= input.data.len() && out.fast_room() {
        input.refill_word();
        let (mut entry, mut len) = litlen.lookup(input.bits);
        if entry.kind() == Entry::LITERAL {
            input.consume(len);
            out.push_unchecked_room(entry.value() as u8);
            (entry, len) = litlen.lookup(input.bits);
            if entry.kind() == Entry::LITERAL {
                input.consume(len);
                out.push_unchecked_room(entry.value() as u8);
                (entry, len) = litlen.lookup(input.bits);
                if entry.kind() == Entry::LITERAL {
                    input.consume(len);
                    out.push_unchecked_room(entry.value() as u8);
                    continue;
                }
            }
        }
        if entry.kind() != Entry::BASE {
            if entry.kind() == Entry::END_OF_BLOCK {
                input.consume(len);
                return Ok(true);
            }
            return Err(invalid(entry));
        }
        let length = (entry.value() + input.code_and_extra(len, entry.extra())) as usize;
        if input.nbits < DISTANCE_BITS {
            input.refill_word();
        }
        let (entry, len) = dist.lookup(input.bits);
        if entry.kind() != Entry::BASE {
            return Err(invalid(entry));
        }
        let distance = (entry.value() + input.code_and_extra(len, entry.extra())) as usize;
        check_distance(distance, out.len, max_distance)?;
        out.copy_match_fast(distance, length);
    }
    Ok(false)
}

/// A match may reach back only into this message (no window is kept
/// between messages) and within the negotiated window (RFC 7692 §7.1.2).
#[inline(always)]
fn check_distance(
    distance: usize,
    written: usize,
    max_distance: usize,
) -> Result<(), InflateError> {
    if distance > written.min(max_distance) {
        return Err(if distance > written {
            InflateError::Corrupt("distance reaches before the message")
        } else {
            InflateError::Corrupt("distance beyond the window")
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflate(bytes: &[u8]) -> Result<Vec<u8>, InflateError> {
        Inflater::new().inflate_message(bytes, 1 << 20)
    }

    #[test]
    fn rfc_7692_7_2_3_examples() {
        // §7.2.3.1: "Hello" in one fixed-Huffman block.
        assert_eq!(
            inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]).unwrap(),
            b"Hello"
        );
        // §7.2.3.2: the second "Hello" with context takeover refers back to
        // the first; with no window kept it is refused, not misread.
        assert!(inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00]).is_err());
        // §7.2.3.3: "Hello" in a stored block.
        assert_eq!(
            inflate(&[
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00
            ])
            .unwrap(),
            b"Hello"
        );
        // §7.2.3.4: "Hello" in a final (BFINAL) block, then the octet
        // holding an empty stored block's header bits and padding.
        assert_eq!(
            inflate(&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00]).unwrap(),
            b"Hello"
        );
        // The same final block with nothing after it.
        assert_eq!(
            inflate(&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]).unwrap(),
            b"Hello"
        );
        // §7.2.3.5: two fixed blocks, "He" then "llo".
        assert_eq!(
            inflate(&[
                0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00
            ])
            .unwrap(),
            b"Hello"
        );
        // §7.2.3.6: an empty flushed piece is the single byte 00; an empty
        // payload is an empty message too.
        assert_eq!(inflate(&[0x00]).unwrap(), b"");
        assert_eq!(inflate(&[]).unwrap(), b"");
    }

    #[test]
    fn the_output_limit_is_enforced_while_inflating() {
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(
            Inflater::new().inflate_message(&hello, 5).unwrap(),
            b"Hello"
        );
        assert_eq!(
            Inflater::new().inflate_message(&hello, 4),
            Err(InflateError::TooBig { limit: 4 })
        );
    }

    #[test]
    fn corrupt_inputs_are_errors() {
        // Block type 3.
        assert_eq!(
            inflate(&[0x06]),
            Err(InflateError::Corrupt("reserved block type 3"))
        );
        // Stored block whose NLEN is not the complement of LEN.
        assert!(inflate(&[0x00, 0x05, 0x00, 0x00, 0x00]).is_err());
        // Truncated: a stored block promising 256 bytes, with 2 (and the
        // four appended ones).
        assert_eq!(
            inflate(&[0x00, 0x00, 0x01, 0xff, 0xfe, 0x48, 0x65]),
            Err(TRUNCATED)
        );
        // After a final block, anything but the one §7.2.3.4 octet.
        let after_final = Err(InflateError::Corrupt("data after the final block"));
        let hello = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        for extra in [
            &[0x01][..],
            &[0x00, 0x00],
            &[0x00, 0x00, 0x00, 0xff, 0xff],
            &[0x03, 0x00],
        ] {
            assert_eq!(
                inflate(&[&hello[..], extra].concat()),
                after_final,
                "{extra:x?}"
            );
        }
    }

    /// Bits written least significant first (RFC 1951 §3.1.1).
    #[derive(Default)]
    struct Bits {
        bytes: Vec<u8>,
        n: usize,
    }

    impl Bits {
        fn put(&mut self, value: u32, n: u32) {
            for i in 0..n {
                if self.n.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                self.bytes[self.n / 8] |= (((value >> i) & 1) as u8) << (self.n % 8);
                self.n += 1;
            }
        }
        /// A Huffman code, most significant bit first.
        fn code(&mut self, code: u32, len: u32) {
            self.put(code.reverse_bits() >> (32 - len), len);
        }
    }

    /// A dynamic block's header (BFINAL, BTYPE 10, then the codes) giving
    /// the 257 literal/length symbols the lengths `litlen` and the one
    /// distance symbol length `dist`. The code-length code gives each of
    /// the lengths 0..=15 four bits (code = the length itself).
    fn dynamic_header(bits: &mut Bits, last: bool, litlen: &[(usize, u8)], dist: u8) {
        bits.put(last as u32, 1);
        bits.put(2, 2);
        bits.put(0, 5); // HLIT: 257
        bits.put(0, 5); // HDIST: 1
        bits.put(15, 4); // HCLEN: 19
        for symbol in CODELEN_ORDER {
            bits.put(if symbol < 16 { 4 } else { 0 }, 3);
        }
        let mut lengths = [0u8; 258];
        for &(symbol, len) in litlen {
            lengths[symbol] = len;
        }
        lengths[257] = dist;
        for len in lengths {
            bits.code(len as u32, 4);
        }
    }

    #[test]
    fn incomplete_huffman_codes_are_refused_as_zlib_does() {
        // 'x' is 0 and end-of-block 10; the pattern 11 has no symbol.
        let mut bits = Bits::default();
        dynamic_header(&mut bits, true, &[(b'x' as usize, 1), (END_OF_BLOCK, 2)], 0);
        bits.code(0, 1);
        bits.code(0b10, 2);
        assert_eq!(
            inflate(&bits.bytes),
            Err(InflateError::Corrupt("incomplete Huffman code"))
        );
        // The same with a third symbol on 11 is complete, and inflates.
        let mut bits = Bits::default();
        let complete = [(b'x' as usize, 1), (b'y' as usize, 2), (END_OF_BLOCK, 2)];
        dynamic_header(&mut bits, true, &complete, 0);
        bits.code(0, 1);
        bits.code(0b11, 2);
        assert_eq!(inflate(&bits.bytes).unwrap(), b"x");
        // A single one-bit code is the one incomplete code allowed: here
        // an end-of-block alone, and a one-bit distance code.
        let mut bits = Bits::default();
        dynamic_header(&mut bits, true, &[(END_OF_BLOCK, 1)], 1);
        bits.code(0, 1);
        assert_eq!(inflate(&bits.bytes).unwrap(), b"");
    }

    #[test]
    fn bits_left_in_the_appended_tail_are_a_block_header() {
        // A dynamic block where 'x' is 0 and end-of-block is thirteen 1s
        // (lengths 1, 2, ..., 12, 13, 13 make a complete code). The
        // message stops inside it: its padding and the tail's 00 00 decode
        // as 'x', the first 13 bits of ff ff end the block, and the three
        // 1s left are a block header with the reserved type 3, as zlib
        // says ("invalid block type").
        let mut litlen = vec![(b'x' as usize, 1)];
        litlen.extend((2..=12).map(|len| (b'a' as usize + len as usize, len)));
        litlen.extend([(b'y' as usize, 13), (END_OF_BLOCK, 13)]);
        let mut bits = Bits::default();
        dynamic_header(&mut bits, false, &litlen, 0);
        assert_eq!(
            inflate(&bits.bytes),
            Err(InflateError::Corrupt("reserved block type 3"))
        );
        // With end-of-block 14 and 15 bits long, two and one bits are
        // left: a block header cut short.
        for longest in [14, 15] {
            let mut litlen = vec![(b'x' as usize, 1)];
            litlen.extend((2..longest).map(|len| (b'a' as usize + len as usize, len)));
            litlen.extend([(b'y' as usize, longest), (END_OF_BLOCK, longest)]);
            let mut bits = Bits::default();
            dynamic_header(&mut bits, false, &litlen, 0);
            assert_eq!(inflate(&bits.bytes), Err(TRUNCATED), "{longest}");
        }
    }

    #[test]
    fn overlapping_copies() {
        // Fixed block: 'a', then length 5 distance 1 → "aaaaaa". Built by
        // hand: BFINAL=1, BTYPE=01, literal 'a' (0x61 → code 0x91, 8 bits),
        // length symbol 259 (7 bits, 0000011), distance symbol 0 (00000),
        // end of block (0000000).
        let mut bits: Vec<u8> = vec![1, 1, 0];
        let push = |bits: &mut Vec<u8>, code: u32, len: u32| {
            for i in (0..len).rev() {
                bits.push(((code >> i) & 1) as u8);
            }
        };
        push(&mut bits, 0x30 + 0x61, 8);
        push(&mut bits, 259 - 256, 7);
        push(&mut bits, 0, 5);
        push(&mut bits, 0, 7);
        let mut bytes = vec![0u8; bits.len().div_ceil(8)];
        for (i, bit) in bits.iter().enumerate() {
            bytes[i / 8] |= bit << (i % 8);
        }
        assert_eq!(inflate(&bytes).unwrap(), b"aaaaaa");
    }
}
