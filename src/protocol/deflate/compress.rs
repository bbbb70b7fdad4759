//! Compression of one permessage-deflate message (RFC 7692 §7.2.1): LZ77
//! matching over hash chains, then each block coded whichever of three
//! ways is smallest (RFC 1951 §3.2.4–§3.2.7): stored, fixed Huffman, or
//! dynamic Huffman with codes built for that block.
//!
//! Nothing is carried from one message to the next (the server negotiates
//! `server_no_context_takeover`), so the same payload always compresses to
//! the same bytes: a broadcast is compressed once and those bytes are sent
//! to every client.

use super::huffman::{
    CODELEN_ORDER, CODELEN_SYMBOLS, DIST_BASE, DIST_EXTRA, DIST_SYMBOLS, END_OF_BLOCK, EncodeTable,
    FIXED_DIST_LENGTHS, LENGTH_BASE, LENGTH_EXTRA, LITLEN_SYMBOLS, MAX_CODE_BITS, MAX_CODELEN_BITS,
    code_lengths, dist_symbol, fixed_litlen_lengths, length_symbol,
};
use super::{MAX_WINDOW_BITS, MIN_WINDOW_BITS};
use std::cell::RefCell;

/// The longest match DEFLATE can code (§3.2.5: lengths are 3..=258).
const MAX_MATCH: usize = 258;
/// The shortest match kept: a 3-byte match (the shortest DEFLATE can
/// code) far back costs about as much as three literals, so (as zlib-ng's level 6) shorter ones are sent as
/// literals. Positions are hashed on this many bytes.
const MIN_MATCH_KEPT: usize = 4;
/// Positions are hashed on their first four bytes into this many chains.
const HASH_BITS: u32 = 16;
const HASH_SIZE: usize = 1 << HASH_BITS;
/// The farthest a match may reach back (32 KiB), and so how many chain
/// links are kept.
const WINDOW: usize = 1 << MAX_WINDOW_BITS;
/// How many earlier positions with the same hash are tried for each match
/// (zlib's level 6): enough to find the repeats in chat traffic, bounded
/// so that a hostile payload (all one byte, or a small alphabet) stays
/// linear.
const MAX_CHAIN: usize = 128;
/// A match this long is good enough: stop searching the chain.
const NICE_MATCH: usize = 128;
/// The positions inside a match longer than this are not hashed (only
/// its last one is): long matches are runs and repeats that the chains
/// already reach, and hashing each of their bytes would cost more than
/// it finds (zlib-ng: 16 × its lazy limit of 16).
const MAX_INSERT_MATCH: usize = 256;
/// `head` holds a position as its distance from a point this far before
/// `Compressor::base`, so that 0 (an empty chain) reads as a position out
/// of any window's reach.
const NO_POSITION: usize = WINDOW + 1;
/// How far past `base` the compressor may link positions in one step of
/// its parse: two matches (the current one, and the next one found at its
/// end) and the position after them.
const LINK_REACH: usize = 2 * MAX_MATCH + 2;
/// From this many bytes, a message's chain heads are reset by clearing
/// the whole table rather than by hashing its positions again.
const CLEAR_BY_FILL: usize = 4096;
/// A chain link too long for any window: the end of the chain.
const NO_LINK: u16 = u16::MAX;

/// Tokens per block: each block gets codes fitted to its own statistics.
const BLOCK_TOKENS: usize = 16 * 1024;
/// A stored block holds at most 65535 bytes (§3.2.4: LEN is 16 bits).
const MAX_STORED: usize = 65535;

/// Compresses one message with a 32 KiB window, as RFC 7692 §7.2.1 says:
/// deflate it, sync-flush (which ends it with an empty stored block,
/// `00 00 ff ff` at the end), and remove those last four bytes.
///
/// ```
/// use wschat::protocol::deflate::{compress_message, Inflater};
///
/// let line = br#"{"type":"message","from":"ada","text":"hello, hello, hello!"}"#;
/// let compressed = compress_message(line);
/// assert!(compressed.len() < line.len());
/// assert_eq!(Inflater::new().inflate_message(&compressed, 1024).unwrap(), line);
/// ```
pub fn compress_message(payload: &[u8]) -> Vec<u8> {
    compress_message_with_window(payload, MAX_WINDOW_BITS)
}

/// Like [`compress_message`], with matches no farther back than
/// `2^window_bits` bytes (8..=15): what a client's `server_max_window_bits`
/// asks for (RFC 7692 §7.1.2.1). The work tables are kept per thread and
/// reused, so a call allocates only its output.
pub fn compress_message_with_window(payload: &[u8], window_bits: u8) -> Vec<u8> {
    // Boxed: a thread-local's value is in every thread's static TLS block,
    // which glibc places at the top of the thread's stack, so 2 KiB here
    // would push every connection thread's frames onto one more page.
    thread_local! {
        static COMPRESSOR: RefCell<Box<Compressor>> = RefCell::new(Box::new(Compressor::new()));
    }
    COMPRESSOR.with(|compressor| {
        let mut out = Vec::new();
        compressor
            .borrow_mut()
            .compress(payload, window_bits, &mut out);
        out
    })
}

/// One LZ77 token: a literal byte, or a copy of `len` bytes from `dist`
/// bytes back. A `dist` of 0 marks a literal (whose byte is in `len`).
#[derive(Debug, Clone, Copy)]
struct Token {
    len: u16,
    dist: u16,
}

/// The compressor's working memory: the hash chains and the token buffer.
/// Reused between messages for speed only; no data survives a call.
pub struct Compressor {
    /// `head[h]`: the latest position whose four bytes hash to `h`, as
    /// `position + NO_POSITION - base` (0 = none): an empty chain's head
    /// then lies farther back than any window, so one distance check ends
    /// every walk. 16 bits per entry: the table is 128 KiB, which stays in
    /// the CPU's caches better than twice that.
    head: Box<[u16; HASH_SIZE]>,
    /// Where `head`'s positions count from; moved forward (and `head`
    /// with it) every 32 KiB or so, so that they fit in 16 bits.
    base: usize,
    /// `prev[p % 32768]`: how far back the position before `p` in its
    /// chain is, [`NO_LINK`] if it is out of any window (or there is
    /// none). A distance fits in 16 bits, which halves the table against
    /// storing positions, and walking a chain adds them up.
    prev: Box<[u16; WINDOW]>,
    tokens: Vec<Token>,
    /// How often each symbol occurs in `tokens`, counted as they are
    /// made (the block's codes are built from these).
    freqs: Frequencies,
    /// The fixed Huffman codes (§3.2.6), built once.
    fixed: FixedCodes,
}

struct FixedCodes {
    litlen: EncodeTable<LITLEN_SYMBOLS>,
    dist: EncodeTable<DIST_SYMBOLS>,
}

impl Default for Compressor {
    fn default() -> Self {
        Self::new()
    }
}

impl Compressor {
    pub fn new() -> Self {
        Compressor {
            head: vec![0; HASH_SIZE].try_into().expect("HASH_SIZE entries"),
            base: 0,
            prev: vec![0; WINDOW].try_into().expect("WINDOW entries"),
            tokens: Vec::with_capacity(BLOCK_TOKENS),
            freqs: Frequencies::new(),
            fixed: FixedCodes {
                litlen: EncodeTable::from_lengths(&fixed_litlen_lengths()),
                dist: EncodeTable::from_lengths(&FIXED_DIST_LENGTHS),
            },
        }
    }

    /// Appends the compressed form of `payload` to `out` (see
    /// [`compress_message_with_window`]).
    ///
    /// The parse is zlib-ng's for its level 6 ("medium"): at each
    /// position the longest match on the hash chain is taken if it is at
    /// least [`MIN_MATCH_KEPT`] long, and the match that starts where it
    /// ends is looked up at once. If that next match also fits
    /// backwards, over the whole of the current one, the current one
    /// becomes a literal and the next one starts earlier (one longer
    /// match codes in fewer bits than two). Every position is searched
    /// once.
    pub fn compress(&mut self, payload: &[u8], window_bits: u8, out: &mut Vec<u8>) {
        let window_bits = window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        let max_dist = 1usize << window_bits;
        out.reserve(payload.len() / 2 + 16);
        let mut bits = BitWriter::new(out);
        let mut pos = 0;
        let mut block_start = 0;
        // Positions below this are in the hash chains.
        let mut hashed = 0;
        // The match found at the end of the previous one, if any.
        let mut ahead: Option<Match> = None;
        self.tokens.clear();
        self.freqs = Frequencies::new();
        self.base = 0;
        while pos < payload.len() {
            if pos + LINK_REACH + NO_POSITION - self.base > u16::MAX as usize {
                self.slide(pos);
            }
            let mut current = match ahead.take() {
                Some(found) => found,
                None => {
                    hashed = pos + 1;
                    self.find(payload, pos, max_dist)
                }
            };
            let end = pos + current.len;
            if current.len > MAX_INSERT_MATCH {
                hashed = end - 1;
            }
            self.insert_range(payload, hashed, end);
            hashed = end;
            if end < payload.len() {
                hashed = end + 1;
                let mut next = self.find(payload, end, max_dist);
                if current.len >= MIN_MATCH_KEPT && next.len >= MIN_MATCH_KEPT {
                    Self::move_back(payload, pos, &mut current, end, &mut next);
                }
                ahead = Some(next);
            }
            if current.len >= MIN_MATCH_KEPT {
                self.freqs.litlen[length_symbol(current.len)] += 1;
                self.freqs.dist[dist_symbol(current.dist)] += 1;
                self.tokens.push(Token {
                    len: current.len as u16,
                    dist: current.dist as u16,
                });
            } else if current.len == 1 {
                self.freqs.litlen[payload[pos] as usize] += 1;
                self.tokens.push(Token {
                    len: payload[pos] as u16,
                    dist: 0,
                });
            }
            pos += current.len;
            if self.tokens.len() >= BLOCK_TOKENS {
                write_block(
                    &mut bits,
                    &self.fixed,
                    &self.freqs,
                    &self.tokens,
                    &payload[block_start..pos],
                );
                self.tokens.clear();
                self.freqs = Frequencies::new();
                block_start = pos;
            }
        }
        if !self.tokens.is_empty() {
            write_block(
                &mut bits,
                &self.fixed,
                &self.freqs,
                &self.tokens,
                &payload[block_start..],
            );
        }
        // Sync flush: an empty, non-final stored block. Its header is three
        // zero bits, then padding to a byte boundary, then 00 00 ff ff,
        // which RFC 7692 §7.2.1 has us leave off.
        bits.put(0, 3);
        bits.flush_byte();
        self.clear(payload);
    }

    /// The match to code at `pos` (hashing `pos`): the longest on its
    /// chain, or a literal (length 1) if none is [`MIN_MATCH_KEPT`] long.
    #[inline(always)]
    fn find(&mut self, payload: &[u8], pos: usize, max_dist: usize) -> Match {
        if pos + MIN_MATCH_KEPT > payload.len() {
            return Match { len: 1, dist: 0 };
        }
        let h = Self::hash(payload, pos);
        let first = pos + NO_POSITION - self.base - self.head[h] as usize;
        self.link(pos, h);
        if first > max_dist {
            return Match { len: 1, dist: 0 };
        }
        let (len, dist) = self.longest_match(payload, pos, max_dist, first);
        if len >= MIN_MATCH_KEPT {
            Match { len, dist }
        } else {
            Match { len: 1, dist: 0 }
        }
    }

    /// zlib-ng's `fizzle_matches`: if the bytes before `next` (at
    /// `next_pos`) repeat the bytes before its source, it can start
    /// earlier, taking bytes from the end of `current` (at `pos`). Done
    /// only when that takes all of `current` but at most its first byte,
    /// which is then a literal (or nothing): the next match swallows it.
    fn move_back(
        payload: &[u8],
        pos: usize,
        current: &mut Match,
        next_pos: usize,
        next: &mut Match,
    ) {
        let mut moved = 0;
        while moved < current.len
            && next.len + moved < MAX_MATCH
            && next_pos - moved > pos
            && next_pos - moved > next.dist
            && payload[next_pos - moved - 1] == payload[next_pos - moved - 1 - next.dist]
        {
            moved += 1;
        }
        if moved > 0 && current.len - moved <= 1 {
            current.len -= moved;
            next.len += moved;
        }
    }

    fn hash(payload: &[u8], pos: usize) -> usize {
        let bytes: [u8; MIN_MATCH_KEPT] = payload[pos..pos + MIN_MATCH_KEPT]
            .try_into()
            .expect("four bytes");
        (u32::from_le_bytes(bytes).wrapping_mul(0x9e37_79b1) >> (32 - HASH_BITS)) as usize
    }

    /// Puts `pos`, whose hash is `h`, at the head of its chain.
    #[inline(always)]
    fn link(&mut self, pos: usize, h: usize) {
        let here = pos + NO_POSITION - self.base;
        debug_assert!(here <= u16::MAX as usize, "slid too late");
        let back = here - self.head[h] as usize;
        self.prev[pos & (WINDOW - 1)] = back.min(NO_LINK as usize) as u16;
        self.head[h] = here as u16;
    }

    /// Moves `base` up to `pos`: heads a window or more before `pos` become
    /// empty (a subtraction that goes below zero), the others keep their
    /// positions.
    fn slide(&mut self, pos: usize) {
        let by = (pos - self.base).min(u16::MAX as usize) as u16;
        for entry in self.head.iter_mut() {
            *entry = entry.saturating_sub(by);
        }
        self.base = pos;
    }

    /// Hashes the positions `from..to` (those with four bytes to hash).
    #[inline]
    fn insert_range(&mut self, payload: &[u8], from: usize, to: usize) {
        let to = to.min((payload.len() + 1).saturating_sub(MIN_MATCH_KEPT));
        for pos in from..to {
            let h = Self::hash(payload, pos);
            self.link(pos, h);
        }
    }

    /// Walks the chain of earlier positions with the same hash, newest
    /// first, from the one `dist` bytes back (within `max_dist`), and
    /// returns the longest match (length, distance) found of at least
    /// [`MIN_MATCH_KEPT`] bytes, or (0, 0).
    #[inline(always)]
    fn longest_match(
        &self,
        payload: &[u8],
        pos: usize,
        max_dist: usize,
        dist: usize,
    ) -> (usize, usize) {
        let max_len = (payload.len() - pos).min(MAX_MATCH);
        let scan = &payload[pos..pos + max_len];
        let (mut best_len, mut best_start) = (MIN_MATCH_KEPT - 1, pos);
        let nice = NICE_MATCH.min(max_len);
        let mut chain = MAX_CHAIN;
        // Candidates are walked by their position (signed: a missing link
        // leads below zero), and the walk ends below `limit`.
        let limit = pos as isize - max_dist as isize;
        let mut start = (pos - dist) as isize;
        // The next candidate on the chain: a link is the distance back to
        // it, and a missing one is longer than any window. A candidate's
        // slot is its own: a newer position sharing it would be a window
        // or more past it, so not yet hashed (positions are hashed up to
        // `pos`, and the walk stops a window back).
        let next = |start: isize| start - self.prev[start as usize & (WINDOW - 1)] as isize;
        let found = |best_len: usize, best_start: usize| {
            if best_start == pos {
                (0, 0)
            } else {
                (best_len, pos - best_start)
            }
        };
        if max_len < 8 {
            // The very end of the message: byte by byte.
            while start >= limit && chain > 0 {
                let at = start as usize;
                let len = common_prefix(&payload[at..at + max_len], scan);
                if len > best_len {
                    (best_len, best_start) = (len, at);
                }
                start = next(start);
                chain -= 1;
            }
            return found(best_len, best_start);
        }
        // While the best is under eight bytes, one 8-byte comparison per
        // candidate gives its length: the first differing byte.
        let head = word(scan, 0);
        while best_len < 8 {
            if start < limit || chain == 0 {
                return found(best_len, best_start);
            }
            let at = start as usize;
            let len = match word(payload, at) ^ head {
                0 => 8 + common_prefix(&payload[at + 8..at + max_len], &scan[8..]),
                differ => (differ.trailing_zeros() / 8) as usize,
            };
            if len > best_len {
                (best_len, best_start) = (len, at);
                if len >= nice {
                    return found(best_len, best_start);
                }
            }
            start = next(start);
            chain -= 1;
        }
        // A good match in hand: search a quarter of what is left (zlib's
        // `good_length`, 8 at its level 6).
        chain /= 4;
        // Only a longer match can win: the eight bytes up to the one that
        // would make it longer must be equal before the whole is compared.
        while start >= limit && chain > 0 {
            let at = start as usize;
            let end = best_len - 7;
            if word(payload, at + end) == word(scan, end) {
                let len = common_prefix(&payload[at..at + max_len], scan);
                if len > best_len {
                    (best_len, best_start) = (len, at);
                    if len >= nice {
                        break;
                    }
                }
            }
            start = next(start);
            chain -= 1;
        }
        found(best_len, best_start)
    }

    /// Resets the chain heads this payload set, so that the next message
    /// starts with empty chains: by hashing its positions again for a
    /// short message (cheaper than clearing 65536 entries for 60 bytes),
    /// else by clearing the table (one 128 KiB fill costs about what
    /// hashing a few thousand positions does). `prev` needs no reset: it is
    /// only read through positions reached from `head`.
    fn clear(&mut self, payload: &[u8]) {
        if payload.len() >= CLEAR_BY_FILL {
            self.head.fill(0);
        } else {
            for pos in 0..payload.len().saturating_sub(MIN_MATCH_KEPT - 1) {
                self.head[Self::hash(payload, pos)] = 0;
            }
        }
    }
}

/// A match to code, or a literal (`len` 1, `dist` 0).
#[derive(Debug, Clone, Copy)]
struct Match {
    len: usize,
    dist: usize,
}

/// The eight bytes at `at`, as one number.
#[inline(always)]
fn word(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

/// How many leading bytes `a` and `b` (of equal length) share, compared
/// eight at a time.
#[inline]
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let mut i = 0;
    while i + 8 <= a.len() {
        let (x, y) = (word(a, i), word(b, i));
        if x != y {
            return i + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < a.len() && a[i] == b[i] {
        i += 1;
    }
    i
}

/// Writes bits least-significant first, as DEFLATE packs them (§3.1.1).
///
/// The bits gather in a 64-bit word; when 16 or more are waiting, the
/// whole word is appended and the output cut back to the whole bytes it
/// held (one 8-byte store instead of a store per byte). Fewer than 16
/// bits wait before each [`Self::add`], so one call can take a whole
/// match: its length and distance codes and their extra bits, at most
/// 15 + 5 + 15 + 13 = 48 bits.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    nbits: u32,
}

/// The most bits one [`BitWriter::add`] takes.
const MAX_ADD_BITS: u32 = 48;

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter {
            out,
            acc: 0,
            nbits: 0,
        }
    }

    /// Appends the low `n` (≤ [`MAX_ADD_BITS`]) bits of `value`, whose
    /// other bits are zero.
    #[inline(always)]
    fn add(&mut self, value: u64, n: u32) {
        debug_assert!(n <= MAX_ADD_BITS && value >> n == 0);
        if self.nbits >= 64 - MAX_ADD_BITS {
            self.write_whole_bytes();
        }
        self.acc |= value << self.nbits;
        self.nbits += n;
    }

    #[inline(always)]
    fn write_whole_bytes(&mut self) {
        let len = self.out.len();
        let whole = self.nbits / 8;
        self.out.extend_from_slice(&self.acc.to_le_bytes());
        self.out.truncate(len + whole as usize);
        // `whole` ≤ 7: `nbits` < 64.
        self.acc >>= 8 * whole;
        self.nbits -= 8 * whole;
    }

    /// Appends the low `n` (≤ 32) bits of `value`.
    #[inline]
    fn put(&mut self, value: u32, n: u32) {
        self.add(value as u64 & ((1u64 << n) - 1), n);
    }

    /// Pads with zero bits to a byte boundary, and writes every whole byte
    /// out (a stored block's bytes follow directly).
    fn flush_byte(&mut self) {
        self.nbits = self.nbits.next_multiple_of(8);
        self.write_whole_bytes();
    }
}

/// How many of each symbol a block uses.
struct Frequencies {
    litlen: [u32; LITLEN_SYMBOLS],
    dist: [u32; DIST_SYMBOLS],
}

impl Frequencies {
    /// No symbols yet but the end of block, which every block has.
    fn new() -> Self {
        let mut litlen = [0; LITLEN_SYMBOLS];
        litlen[END_OF_BLOCK] = 1;
        Frequencies {
            litlen,
            dist: [0; DIST_SYMBOLS],
        }
    }

    /// Bits the block's tokens take in codes of these lengths, extra bits
    /// included.
    fn cost(&self, litlen: &[u8; LITLEN_SYMBOLS], dist: &[u8; DIST_SYMBOLS]) -> usize {
        let bits = |counts: &[u32], lengths: &[u8]| -> usize {
            counts
                .iter()
                .zip(lengths)
                .map(|(&n, &len)| n as usize * len as usize)
                .sum()
        };
        // The extra bits of lengths and distances: the same in every code.
        let extra_bits =
            bits(&self.litlen[257..286], &LENGTH_EXTRA) + bits(&self.dist[..30], &DIST_EXTRA);
        bits(&self.litlen, litlen) + bits(&self.dist, dist) + extra_bits
    }
}

/// A dynamic block's header (§3.2.7), prepared: the code lengths of both
/// codes run-length encoded into code-length symbols, and the code for
/// those symbols.
struct DynamicHeader {
    hlit: usize,
    hdist: usize,
    hclen: usize,
    /// (symbol 0..=18, extra-bit value) pairs.
    runs: [(u8, u8); 286 + 30],
    nruns: usize,
    codelen: EncodeTable<CODELEN_SYMBOLS>,
}

impl DynamicHeader {
    fn new(litlen: &[u8; LITLEN_SYMBOLS], dist: &[u8; DIST_SYMBOLS]) -> Self {
        // Trailing zero lengths are left off (HLIT ≥ 257, HDIST ≥ 1).
        let hlit = 257.max(286 - litlen[..286].iter().rev().take_while(|&&l| l == 0).count());
        let hdist = 1.max(30 - dist[..30].iter().rev().take_while(|&&l| l == 0).count());
        let mut all = [0u8; 286 + 30];
        all[..hlit].copy_from_slice(&litlen[..hlit]);
        all[hlit..hlit + hdist].copy_from_slice(&dist[..hdist]);
        let all = &all[..hlit + hdist];

        let mut runs = [(0u8, 0u8); 286 + 30];
        let mut nruns = 0;
        let mut freqs = [0u32; CODELEN_SYMBOLS];
        let mut push = |symbol: u8, extra: u8| {
            runs[nruns] = (symbol, extra);
            nruns += 1;
            freqs[symbol as usize] += 1;
        };
        let mut i = 0;
        while i < all.len() {
            let len = all[i];
            let run = all[i..].iter().take_while(|&&l| l == len).count();
            if len == 0 && run >= 11 {
                let n = run.min(138);
                push(18, (n - 11) as u8);
                i += n;
            } else if len == 0 && run >= 3 {
                push(17, (run - 3) as u8);
                i += run;
            } else if len != 0 && run >= 4 {
                // The length itself, then 16 repeats it 3–6 times.
                push(len, 0);
                let n = (run - 1).min(6);
                push(16, (n - 3) as u8);
                i += 1 + n;
            } else {
                push(len, 0);
                i += 1;
            }
        }
        let mut codelen_lengths = [0u8; CODELEN_SYMBOLS];
        code_lengths(&freqs, MAX_CODELEN_BITS, &mut codelen_lengths);
        let hclen = 4.max(
            CODELEN_SYMBOLS
                - CODELEN_ORDER
                    .iter()
                    .rev()
                    .take_while(|&&s| codelen_lengths[s] == 0)
                    .count(),
        );
        DynamicHeader {
            hlit,
            hdist,
            hclen,
            runs,
            nruns,
            codelen: EncodeTable::from_lengths(&codelen_lengths),
        }
    }

    fn cost(&self) -> usize {
        let runs: usize = self.runs[..self.nruns]
            .iter()
            .map(|&(s, _)| {
                self.codelen.len[s as usize] as usize
                    + [2, 3, 7]
                        .get((s as usize).wrapping_sub(16))
                        .copied()
                        .unwrap_or(0)
            })
            .sum();
        5 + 5 + 4 + 3 * self.hclen + runs
    }

    fn write(&self, bits: &mut BitWriter) {
        bits.put((self.hlit - 257) as u32, 5);
        bits.put((self.hdist - 1) as u32, 5);
        bits.put((self.hclen - 4) as u32, 4);
        for &symbol in &CODELEN_ORDER[..self.hclen] {
            bits.put(self.codelen.len[symbol] as u32, 3);
        }
        for &(symbol, extra) in &self.runs[..self.nruns] {
            let s = symbol as usize;
            bits.put(self.codelen.code[s] as u32, self.codelen.len[s] as u32);
            match symbol {
                16 => bits.put(extra as u32, 2),
                17 => bits.put(extra as u32, 3),
                18 => bits.put(extra as u32, 7),
                _ => {}
            }
        }
    }
}

/// Writes one non-final block holding `tokens` (which encode `raw`), in
/// whichever form is shortest.
fn write_block(
    bits: &mut BitWriter,
    fixed: &FixedCodes,
    freqs: &Frequencies,
    tokens: &[Token],
    raw: &[u8],
) {
    let fixed_cost = 3 + freqs.cost(&fixed.litlen.len, &fixed.dist.len);

    let mut litlen = [0u8; LITLEN_SYMBOLS];
    let mut dist = [0u8; DIST_SYMBOLS];
    code_lengths(&freqs.litlen, MAX_CODE_BITS, &mut litlen);
    code_lengths(&freqs.dist, MAX_CODE_BITS, &mut dist);
    let header = DynamicHeader::new(&litlen, &dist);
    let dynamic_cost = 3 + header.cost() + freqs.cost(&litlen, &dist);

    // Stored: header bits, padding (at most 7), then 4 bytes of lengths and
    // the bytes, per 65535-byte piece.
    let stored_cost = raw.len().div_ceil(MAX_STORED).max(1) * (3 + 7 + 32) + raw.len() * 8;

    if stored_cost < fixed_cost.min(dynamic_cost) {
        for piece in raw.chunks(MAX_STORED) {
            bits.put(0b000, 3);
            bits.flush_byte();
            bits.put(piece.len() as u32, 16);
            bits.put(!piece.len() as u32 & 0xffff, 16);
            bits.flush_byte();
            bits.out.extend_from_slice(piece);
        }
    } else if fixed_cost <= dynamic_cost {
        bits.put(0b010, 3); // BFINAL 0, BTYPE 01
        write_tokens(bits, tokens, &fixed.litlen, &fixed.dist);
    } else {
        bits.put(0b100, 3); // BFINAL 0, BTYPE 10
        header.write(bits);
        write_tokens(
            bits,
            tokens,
            &EncodeTable::from_lengths(&litlen),
            &EncodeTable::from_lengths(&dist),
        );
    }
}

/// Each token in one [`BitWriter::add`]: a literal's code, or a match's
/// length code, its extra bits, distance code and extra bits together.
fn write_tokens(
    bits: &mut BitWriter,
    tokens: &[Token],
    litlen: &EncodeTable<LITLEN_SYMBOLS>,
    dist: &EncodeTable<DIST_SYMBOLS>,
) {
    for t in tokens {
        if t.dist == 0 {
            let s = t.len as usize;
            bits.add(litlen.code[s] as u64, litlen.len[s] as u32);
            continue;
        }
        let (len, d) = (t.len as usize, t.dist as usize);
        let ls = length_symbol(len);
        let mut value = litlen.code[ls] as u64;
        let mut n = litlen.len[ls] as u32;
        value |= ((len - LENGTH_BASE[ls - 257] as usize) as u64) << n;
        n += LENGTH_EXTRA[ls - 257] as u32;
        let ds = dist_symbol(d);
        value |= (dist.code[ds] as u64) << n;
        n += dist.len[ds] as u32;
        value |= ((d - DIST_BASE[ds] as usize) as u64) << n;
        n += DIST_EXTRA[ds] as u32;
        bits.add(value, n);
    }
    bits.add(
        litlen.code[END_OF_BLOCK] as u64,
        litlen.len[END_OF_BLOCK] as u32,
    );
}

#[cfg(test)]
mod tests {
    use super::super::Inflater;
    use super::*;

    fn round_trip(payload: &[u8], window_bits: u8) -> Vec<u8> {
        let compressed = compress_message_with_window(payload, window_bits);
        let inflated = Inflater::new()
            .inflate_message(&compressed, payload.len())
            .unwrap();
        assert_eq!(inflated, payload);
        compressed
    }

    #[test]
    fn empty_message_is_one_zero_byte() {
        // A sync flush with nothing before it: an empty stored block, whose
        // tail removed leaves the single byte 00 (RFC 7692 §7.2.3.6).
        assert_eq!(compress_message(b""), [0x00]);
    }

    #[test]
    fn hello_compresses_like_the_rfc_example() {
        // RFC 7692 §7.2.3.1's bytes: a fixed block, then the flush.
        assert_eq!(
            compress_message(b"Hello"),
            [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
    }

    #[test]
    fn repetitive_text_uses_matches_and_is_deterministic() {
        let text = "the quick brown fox jumps over the lazy dog; ".repeat(50);
        let compressed = round_trip(text.as_bytes(), 15);
        assert!(compressed.len() < text.len() / 10, "{}", compressed.len());
        assert_eq!(compressed, compress_message(text.as_bytes()));
    }

    #[test]
    fn small_windows_keep_distances_short() {
        let mut payload = Vec::new();
        for i in 0..2000u32 {
            payload.extend_from_slice(format!("{:x}", i.wrapping_mul(2654435761)).as_bytes());
        }
        let chunk = payload[..300].to_vec();
        payload.extend_from_slice(&chunk);
        for bits in MIN_WINDOW_BITS..=MAX_WINDOW_BITS {
            round_trip(&payload, bits);
        }
    }

    #[test]
    fn a_repeat_exactly_a_window_back_is_found_across_head_slides() {
        // 32 KiB of noise twice: the second copy is one match (or a few)
        // 32768 bytes back, the farthest DEFLATE reaches, found after the
        // chain heads have moved their base (every 32 KiB or so).
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..WINDOW)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let twice = [noise.clone(), noise].concat();
        let compressed = round_trip(&twice, 15);
        assert!(compressed.len() < WINDOW + 1024, "{}", compressed.len());
    }

    #[test]
    fn long_runs_and_all_byte_values() {
        round_trip(&[7u8; 100_000], 15);
        let all: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        round_trip(&all, 15);
    }
}
