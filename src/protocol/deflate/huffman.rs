//! The tables and Huffman codes that both directions of DEFLATE share
//! (RFC 1951 §3.2.2, §3.2.5, §3.2.6, §3.2.7).
//!
//! A DEFLATE Huffman code is *canonical*: only the length of each symbol's
//! code is transmitted, and both sides rebuild the same codes from the
//! lengths (§3.2.2). So the encoder's job is to choose lengths (short for
//! frequent symbols, at most 15 bits), and the decoder's is to turn lengths
//! back into a lookup structure.

/// Symbols of the literal/length alphabet: 0–255 literals, 256 end of
/// block, 257–285 match lengths (§3.2.5). 286 and 287 take part in the
/// fixed code but never occur in valid data.
pub const LITLEN_SYMBOLS: usize = 288;
/// Symbols of the distance alphabet: 0–29 (30 and 31 never occur).
pub const DIST_SYMBOLS: usize = 32;
/// Symbols of the code-length alphabet used to send a dynamic block's
/// code lengths (§3.2.7): 0–15 literal lengths, 16–18 repeat codes.
pub const CODELEN_SYMBOLS: usize = 19;
/// The end-of-block symbol.
pub const END_OF_BLOCK: usize = 256;
/// No code in DEFLATE is longer than 15 bits (§3.2.7).
pub const MAX_CODE_BITS: usize = 15;
/// Code-length codes are sent in 3 bits each, so at most 7 bits long.
pub const MAX_CODELEN_BITS: usize = 7;

/// §3.2.5: length symbols 257..=285, their base lengths and extra bits.
pub const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
pub const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
/// §3.2.5: distance symbols 0..=29, their base distances and extra bits.
pub const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
pub const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// §3.2.7: the order in which code-length code lengths are sent (the ones
/// most likely to be zero last, so they can be left off).
pub const CODELEN_ORDER: [usize; CODELEN_SYMBOLS] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// §3.2.6: the fixed literal/length code lengths.
pub fn fixed_litlen_lengths() -> [u8; LITLEN_SYMBOLS] {
    let mut lengths = [8u8; LITLEN_SYMBOLS];
    lengths[144..256].fill(9);
    lengths[256..280].fill(7);
    lengths
}

/// §3.2.6: every fixed distance code is 5 bits long.
pub const FIXED_DIST_LENGTHS: [u8; DIST_SYMBOLS] = [5; DIST_SYMBOLS];

/// The length symbol (257..=285) for a match length of 3..=258.
#[inline]
pub fn length_symbol(len: usize) -> usize {
    257 + LENGTH_INDEX[len - 3] as usize
}

/// The distance symbol (0..=29) for a distance of 1..=32768.
#[inline]
pub fn dist_symbol(dist: usize) -> usize {
    // Distances above 256 share their symbol in runs of at least 128
    // (their extra bits are 7 or more), so one table serves both ranges
    // (zlib's `d_code`).
    let d = dist - 1;
    DIST_INDEX[if d < 256 { d } else { 256 + (d >> 7) }] as usize
}

/// `LENGTH_INDEX[len - 3]`: the index in `LENGTH_BASE` of a length's
/// symbol, the last base not above it.
const LENGTH_INDEX: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut len = 3;
    let mut index = 0;
    while len <= 258 {
        while index + 1 < LENGTH_BASE.len() && LENGTH_BASE[index + 1] as usize <= len {
            index += 1;
        }
        table[len - 3] = index as u8;
        len += 1;
    }
    table
};

/// Distance symbols: for `d = distance - 1`, at `d` below 256, and at
/// `256 + (d >> 7)` above.
const DIST_INDEX: [u8; 512] = {
    const fn symbol_of(dist: usize) -> u8 {
        let mut index = 0;
        while index + 1 < DIST_BASE.len() && DIST_BASE[index + 1] as usize <= dist {
            index += 1;
        }
        index as u8
    }
    let mut table = [0u8; 512];
    let mut d = 0;
    while d < 256 {
        table[d] = symbol_of(d + 1);
        table[256 + d] = symbol_of((d << 7) + 1);
        d += 1;
    }
    table
};

/// Which incomplete codes [`DecodeTable::build`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incomplete {
    /// None: the code-length code (§3.2.7), and the fixed codes.
    Refused,
    /// A single symbol with a one-bit code: the literal/length and
    /// distance codes of a dynamic block.
    OneBitCodeAllowed,
}

/// One entry of a [`DecodeTable`], packed in 32 bits: what the next bits
/// of the input mean, and how many of them it takes.
///
/// - bits 0–3: how many input bits the code takes (in a sub-table: past
///   the root bits);
/// - bits 4–7: how many extra bits follow (§3.2.5), or a link's
///   sub-table size in bits;
/// - bits 8–15: the kind ([`Entry::LITERAL`] and the others);
/// - bits 16–31: the value (a literal, a base length or distance, a
///   sub-table's offset, or an index into [`Entry::INVALID_REASONS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry(u32);

impl Entry {
    /// A literal byte, or a code-length symbol (0–18).
    pub const LITERAL: u32 = 0;
    /// A length (257–285) or a distance (0–29): base and extra bits.
    pub const BASE: u32 = 1;
    pub const END_OF_BLOCK: u32 = 2;
    /// The code is longer than the root: look again in a sub-table.
    pub const LINK: u32 = 3;
    /// A pattern no valid stream contains.
    pub const INVALID: u32 = 4;
    /// Why an [`Entry::INVALID`] pattern is refused, by its value.
    pub const INVALID_REASONS: [&'static str; 3] = [
        "no symbol for this Huffman code",
        "invalid length symbol",
        "invalid distance symbol",
    ];

    pub const fn new(kind: u32, value: u32, extra: u32) -> Self {
        Entry(value << 16 | kind << 8 | extra << 4)
    }
    const fn with_bits(self, bits: u32) -> Self {
        Entry(self.0 & !0xf | bits)
    }
    /// Input bits the code takes.
    #[inline(always)]
    pub fn bits(self) -> u32 {
        self.0 & 0xf
    }
    #[inline(always)]
    pub fn extra(self) -> u32 {
        (self.0 >> 4) & 0xf
    }
    #[inline(always)]
    pub fn kind(self) -> u32 {
        (self.0 >> 8) & 0xff
    }
    #[inline(always)]
    pub fn value(self) -> u32 {
        self.0 >> 16
    }
}

/// §3.2.5: what a literal/length symbol means.
pub fn litlen_entry(symbol: usize) -> Entry {
    match symbol {
        0..=255 => Entry::new(Entry::LITERAL, symbol as u32, 0),
        END_OF_BLOCK => Entry::new(Entry::END_OF_BLOCK, 0, 0),
        257..=285 => Entry::new(
            Entry::BASE,
            LENGTH_BASE[symbol - 257] as u32,
            LENGTH_EXTRA[symbol - 257] as u32,
        ),
        // 286 and 287: in the fixed code, never in valid data.
        _ => Entry::new(Entry::INVALID, 1, 0),
    }
}

/// §3.2.5: what a distance symbol means (30 and 31 never occur).
pub fn dist_entry(symbol: usize) -> Entry {
    match symbol {
        0..=29 => Entry::new(
            Entry::BASE,
            DIST_BASE[symbol] as u32,
            DIST_EXTRA[symbol] as u32,
        ),
        _ => Entry::new(Entry::INVALID, 2, 0),
    }
}

/// §3.2.7: a code-length symbol stands for itself.
pub fn codelen_entry(symbol: usize) -> Entry {
    Entry::new(Entry::LITERAL, symbol as u32, 0)
}

/// Root bits of the literal/length table: most codes in real data are
/// shorter, so most symbols take one lookup.
pub const LITLEN_ROOT_BITS: u32 = 10;
/// The literal/length table's size: the root, and the most its
/// sub-tables can take. A sub-table of `s` bits serves codes whose
/// deepest is `s` bits past the root, and a complete code that deep has
/// at least `s + 1` symbols there; with `s` ≤ 15 − 10 = 5, 288 symbols
/// fill at most 288 / 6 sub-tables of 32 entries: 1536.
pub const LITLEN_TABLE_SIZE: usize = (1 << LITLEN_ROOT_BITS) + 1536;
/// Root bits of the distance table.
pub const DIST_ROOT_BITS: u32 = 8;
/// The same bound: `s` ≤ 7, 32 symbols, at most 32 / 8 sub-tables of 128.
pub const DIST_TABLE_SIZE: usize = (1 << DIST_ROOT_BITS) + 512;
/// Code-length codes are at most 7 bits: one lookup, no sub-tables.
pub const CODELEN_ROOT_BITS: u32 = MAX_CODELEN_BITS as u32;
pub const CODELEN_TABLE_SIZE: usize = 1 << CODELEN_ROOT_BITS;

pub type LitLenTable = DecodeTable<LITLEN_ROOT_BITS, LITLEN_TABLE_SIZE>;
pub type DistTable = DecodeTable<DIST_ROOT_BITS, DIST_TABLE_SIZE>;
pub type CodeLenTable = DecodeTable<CODELEN_ROOT_BITS, CODELEN_TABLE_SIZE>;

/// `len` low bits of `code`, in reverse order: Huffman codes are sent
/// most significant bit first inside a stream read least significant bit
/// first (§3.1.1), so a code's first bit is the input's lowest.
fn reversed(code: u32, len: u32) -> usize {
    (code.reverse_bits() >> (32 - len)) as usize
}

/// A canonical Huffman code prepared for decoding several bits at a time.
///
/// The next `root` input bits (`ROOT`, or fewer if no code is that long)
/// index the table directly: a code of `len` ≤ `root` bits fills every
/// entry whose low `len` bits are its (reversed) code, so whatever bits
/// follow it, one lookup gives the symbol and its length. A longer code's
/// first `root` bits lead to a sub-table indexed by the bits after them,
/// sized for the longest code sharing that start (zlib's `inflate_table`
/// makes the same tables). Each entry also says what the symbol means
/// (literal, length base and extra bits, ...), so the decoder does one
/// lookup per symbol.
///
/// The entries are on the heap, allocated there directly (the
/// literal/length table is 10 KiB): a table never passes through a stack
/// frame, so the threads that inflate can have small stacks.
#[derive(Debug, Clone)]
pub struct DecodeTable<const ROOT: u32, const SIZE: usize> {
    root: u32,
    /// Zeros until built; `build` writes every entry a lookup can reach.
    entries: Box<[Entry; SIZE]>,
}

/// What fills a table before it is built, and an incomplete code's
/// patterns that have no symbol.
const NO_SYMBOL: Entry = Entry::new(Entry::INVALID, 0, 0).with_bits(1);

impl<const ROOT: u32, const SIZE: usize> DecodeTable<ROOT, SIZE> {
    /// A table that decodes nothing: every lookup gives a pattern with no
    /// symbol.
    pub fn empty() -> Self {
        Self::filled(NO_SYMBOL)
    }

    /// Zeros, for `build` to fill (cheaper to allocate than `empty`).
    pub fn unbuilt() -> Self {
        Self::filled(Entry(0))
    }

    fn filled(entry: Entry) -> Self {
        DecodeTable {
            root: 0,
            entries: vec![entry; SIZE].try_into().expect("SIZE entries"),
        }
    }

    /// The entry for the code at the start of `bits` (the input's next
    /// bits, first bit lowest), and how many bits the code takes. Bits
    /// past the end of the input may be anything: a code is never longer
    /// than the bits it was found with, so the caller checks the length
    /// against the bits it really has.
    #[inline(always)]
    pub fn lookup(&self, bits: u64) -> (Entry, u32) {
        let first = self.entries[bits as usize & ((1 << self.root) - 1)];
        if first.kind() != Entry::LINK {
            return (first, first.bits());
        }
        let index = (bits >> self.root) as usize & ((1 << first.extra()) - 1);
        let entry = self.entries[first.value() as usize + index];
        (entry, self.root + entry.bits())
    }

    /// Builds the table from code lengths, `meaning` giving each symbol's
    /// entry. Fails if the lengths ask for more codes than fit in their
    /// bit counts (an over-subscribed code), or leave some bit patterns
    /// without a symbol (an incomplete code), except as `incomplete`
    /// allows. RFC 1951 §3.2.7 allows a distance code of one one-bit code
    /// (a block with one distance); zlib, which refuses every other
    /// incomplete code, allows the same for the literal/length code, and
    /// so do we. No codes at all is accepted too: a block without matches
    /// needs no distance code, and any attempt to decode with an empty
    /// table fails.
    pub fn build(
        &mut self,
        lengths: &[u8],
        incomplete: Incomplete,
        meaning: fn(usize) -> Entry,
    ) -> Result<(), &'static str> {
        let mut count = [0u16; MAX_CODE_BITS + 1];
        for &len in lengths.iter().filter(|&&len| len != 0) {
            count[len as usize] += 1;
        }
        // Each length doubles the codes available; subtract those used.
        let mut left: i32 = 1;
        for &codes in &count[1..] {
            left = left * 2 - codes as i32;
            if left < 0 {
                return Err("over-subscribed Huffman code");
            }
        }
        let used: u16 = count.iter().sum();
        let one_bit_code = used == 1 && count[1] == 1;
        if left > 0 && used > 0 && !(one_bit_code && incomplete == Incomplete::OneBitCodeAllowed) {
            return Err("incomplete Huffman code");
        }
        // No longer than the longest code: a short code fills fewer
        // entries (a small message's block is built, then used briefly).
        let longest = (1..=MAX_CODE_BITS).rev().find(|&len| count[len] > 0);
        let root = ROOT.min(longest.unwrap_or(0) as u32);
        self.root = root;
        if left > 0 {
            // Incomplete (one one-bit code, or none): the patterns no
            // code covers are refused. A complete code covers them all.
            self.entries[..1 << root].fill(NO_SYMBOL);
        }
        // Symbols in code order: by length, then by symbol (§3.2.2).
        let mut offsets = [0u16; MAX_CODE_BITS + 2];
        for len in 1..=MAX_CODE_BITS {
            offsets[len + 1] = offsets[len] + count[len];
        }
        let mut sorted = [0u16; LITLEN_SYMBOLS];
        for (symbol, &len) in lengths.iter().enumerate() {
            if len != 0 {
                sorted[offsets[len as usize] as usize] = symbol as u16;
                offsets[len as usize] += 1;
            }
        }
        // Walk the codes in order: each is the previous plus one, shifted
        // left when the length grows (§3.2.2).
        let (mut code, mut code_len) = (0u32, 0u32);
        let mut remaining = count;
        let (mut sub_prefix, mut sub_offset, mut sub_bits) = (u32::MAX, 0usize, 0u32);
        let mut next_sub = 1usize << root;
        for &symbol in &sorted[..used as usize] {
            let len = lengths[symbol as usize] as u32;
            code <<= len - code_len;
            code_len = len;
            let entry = meaning(symbol as usize);
            if len <= root {
                let entry = entry.with_bits(len);
                for index in (reversed(code, len)..1 << root).step_by(1 << len) {
                    self.entries[index] = entry;
                }
            } else {
                // Only when `root` is `ROOT`: codes longer than it exist.
                let prefix = code >> (len - root);
                if prefix != sub_prefix {
                    // A new sub-table: as many bits as the codes that
                    // start with this prefix need. Codes of a complete
                    // code fill the prefix's share exactly, so add
                    // lengths until the codes left fill it (zlib's rule).
                    sub_bits = len - root;
                    let mut room = 1i32 << sub_bits;
                    loop {
                        room -= remaining[(root + sub_bits) as usize] as i32;
                        if room <= 0 {
                            break;
                        }
                        sub_bits += 1;
                        room <<= 1;
                    }
                    (sub_prefix, sub_offset) = (prefix, next_sub);
                    next_sub += 1 << sub_bits;
                    self.entries[reversed(prefix, root)] =
                        Entry::new(Entry::LINK, sub_offset as u32, sub_bits).with_bits(root);
                }
                let tail_len = len - root;
                let entry = entry.with_bits(tail_len);
                let tail = reversed(code & ((1 << tail_len) - 1), tail_len);
                for index in (tail..1 << sub_bits).step_by(1 << tail_len) {
                    self.entries[sub_offset + index] = entry;
                }
            }
            remaining[len as usize] -= 1;
            code += 1;
        }
        Ok(())
    }
}

/// A canonical Huffman code prepared for encoding: each symbol's code,
/// bit-reversed because DEFLATE sends Huffman codes most significant bit
/// first inside a least-significant-bit-first stream (§3.1.1).
#[derive(Debug, Clone, Copy)]
pub struct EncodeTable<const N: usize> {
    pub code: [u16; N],
    pub len: [u8; N],
}

impl<const N: usize> EncodeTable<N> {
    /// §3.2.2's algorithm: count the codes of each length, find the first
    /// code of each length, then number the symbols in order.
    pub fn from_lengths(lengths: &[u8; N]) -> Self {
        let mut count = [0u16; MAX_CODE_BITS + 1];
        for &len in lengths.iter().filter(|&&len| len != 0) {
            count[len as usize] += 1;
        }
        let mut next = [0u16; MAX_CODE_BITS + 1];
        let mut code = 0u16;
        for bits in 1..=MAX_CODE_BITS {
            code = (code + count[bits - 1]) << 1;
            next[bits] = code;
        }
        let mut table = EncodeTable {
            code: [0; N],
            len: *lengths,
        };
        for (symbol, &len) in lengths.iter().enumerate() {
            let len = len as usize;
            if len != 0 {
                table.code[symbol] = next[len].reverse_bits() >> (16 - len);
                next[len] += 1;
            }
        }
        table
    }
}

/// Chooses code lengths for symbols with the given frequencies: a Huffman
/// code (the shortest possible total), limited to `max_bits`. When the
/// optimal tree is too deep, the frequencies are halved (keeping every
/// used symbol at least 1) and the tree rebuilt: flatter frequencies give
/// a shallower tree, and the loss is small because only rare symbols were
/// that deep. At least two symbols always get a code, so every code is
/// complete (zlib's deflate does the same, for decoders that insist).
pub fn code_lengths<const N: usize>(freqs: &[u32; N], max_bits: usize, lengths: &mut [u8; N]) {
    *lengths = [0; N];
    // Leaves as (frequency, symbol), sorted by frequency.
    let mut leaves = [(0u32, 0u16); N];
    let mut n = 0;
    for (symbol, &f) in freqs.iter().enumerate() {
        if f > 0 {
            leaves[n] = (f, symbol as u16);
            n += 1;
        }
    }
    if n < 2 {
        // Zero or one symbol used: give symbols 0 and 1 (or the one used
        // and another) one bit each.
        let used = if n == 1 { leaves[0].1 as usize } else { 0 };
        lengths[used] = 1;
        lengths[if used == 0 { 1 } else { 0 }] = 1;
        return;
    }
    loop {
        leaves[..n].sort_unstable();
        if huffman_depths(&leaves[..n], max_bits, lengths) {
            return;
        }
        for leaf in &mut leaves[..n] {
            leaf.0 = (leaf.0 >> 1).max(1);
        }
    }
}

/// Builds a Huffman tree over `leaves` (sorted by frequency) with the
/// two-queue method: the leaves are one queue, the merged nodes another,
/// both in increasing weight, so the two lightest nodes are always at the
/// front of one queue or the other. Writes each leaf's depth to `lengths`;
/// returns false if a depth exceeds `max_bits`.
fn huffman_depths<const N: usize>(
    leaves: &[(u32, u16)],
    max_bits: usize,
    lengths: &mut [u8; N],
) -> bool {
    let n = leaves.len();
    // n leaves make n - 1 merged nodes; the last one is the root.
    let mut node_weight = [0u32; N];
    let mut node_parent = [0u16; N];
    let mut leaf_parent = [0u16; N];
    let (mut next_leaf, mut next_node) = (0, 0);
    for new in 0..n - 1 {
        let mut weight = 0;
        for _ in 0..2 {
            let take_leaf = next_leaf < n
                && (next_node == new || leaves[next_leaf].0 <= node_weight[next_node]);
            if take_leaf {
                weight += leaves[next_leaf].0;
                leaf_parent[next_leaf] = new as u16;
                next_leaf += 1;
            } else {
                weight += node_weight[next_node];
                node_parent[next_node] = new as u16;
                next_node += 1;
            }
        }
        node_weight[new] = weight;
    }
    // A parent is always made after its children, so walking down from
    // the root sets each node's depth after its parent's.
    let mut node_depth = [0u8; N];
    for node in (0..n - 2).rev() {
        node_depth[node] = node_depth[node_parent[node] as usize] + 1;
    }
    for (i, leaf) in leaves.iter().enumerate() {
        let depth = node_depth[leaf_parent[i] as usize] + 1;
        if depth as usize > max_bits {
            return false;
        }
        lengths[leaf.1 as usize] = depth;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_1951_3_2_2_example_codes() {
        // §3.2.2: lengths (3, 3, 3, 3, 3, 2, 4, 4) for A..H give
        // 010, 011, 100, 101, 110, 00, 1110, 1111.
        let table = EncodeTable::<8>::from_lengths(&[3, 3, 3, 3, 3, 2, 4, 4]);
        let expected = [0b010, 0b011, 0b100, 0b101, 0b110, 0b00, 0b1110, 0b1111];
        for (symbol, &code) in expected.iter().enumerate() {
            let len = table.len[symbol] as u32;
            assert_eq!(
                table.code[symbol] as u32,
                (code as u32).reverse_bits() >> (32 - len)
            );
        }
    }

    #[test]
    fn length_and_distance_symbols() {
        assert_eq!(length_symbol(3), 257);
        assert_eq!(length_symbol(10), 264);
        assert_eq!(length_symbol(11), 265);
        assert_eq!(length_symbol(12), 265);
        assert_eq!(length_symbol(257), 284);
        assert_eq!(length_symbol(258), 285);
        assert_eq!(dist_symbol(1), 0);
        assert_eq!(dist_symbol(5), 4);
        assert_eq!(dist_symbol(6), 4);
        assert_eq!(dist_symbol(32768), 29);
        // Against the definition, every length and distance.
        for len in 3..=258 {
            let index = LENGTH_BASE.partition_point(|&base| base as usize <= len) - 1;
            assert_eq!(length_symbol(len), 257 + index, "{len}");
        }
        for dist in 1..=32768 {
            let index = DIST_BASE.partition_point(|&base| base as usize <= dist) - 1;
            assert_eq!(dist_symbol(dist), index, "{dist}");
        }
    }

    #[test]
    fn code_lengths_are_limited_and_complete() {
        // Fibonacci frequencies make the deepest possible tree.
        let mut freqs = [0u32; 40];
        let (mut a, mut b) = (1u32, 1u32);
        for f in freqs.iter_mut().take(30) {
            *f = a;
            (a, b) = (b, a.saturating_add(b));
        }
        let mut lengths = [0u8; 40];
        code_lengths(&freqs, 15, &mut lengths);
        assert!(lengths.iter().all(|&l| l <= 15));
        assert!(lengths[..30].iter().all(|&l| l > 0));
        let kraft: f64 = lengths
            .iter()
            .filter(|&&l| l > 0)
            .map(|&l| 0.5f64.powi(l as i32))
            .sum();
        assert!(kraft <= 1.0);
        let mut table = LitLenTable::empty();
        assert!(
            table
                .build(&lengths, Incomplete::Refused, litlen_entry)
                .is_ok()
        );
    }

    /// Every symbol of `lengths` decodes, through the table, to its own
    /// meaning and code length, whatever bits follow its code.
    fn check_table<const ROOT: u32, const SIZE: usize, const N: usize>(
        lengths: &[u8; N],
        meaning: fn(usize) -> Entry,
    ) {
        let mut table = DecodeTable::<ROOT, SIZE>::empty();
        table
            .build(lengths, Incomplete::Refused, meaning)
            .expect("complete");
        let codes = EncodeTable::<N>::from_lengths(lengths);
        for symbol in (0..N).filter(|&s| lengths[s] != 0) {
            let len = lengths[symbol] as u32;
            for after in [0u64, u64::MAX, 0x5555_5555_5555_5555] {
                let bits = codes.code[symbol] as u64 | after << len;
                let (entry, bits_taken) = table.lookup(bits);
                assert_eq!(bits_taken, len, "symbol {symbol}");
                assert_eq!(
                    (entry.kind(), entry.value(), entry.extra()),
                    {
                        let m = meaning(symbol);
                        (m.kind(), m.value(), m.extra())
                    },
                    "symbol {symbol}"
                );
            }
        }
    }

    #[test]
    fn decode_tables_find_every_symbol_of_short_and_long_codes() {
        check_table::<LITLEN_ROOT_BITS, LITLEN_TABLE_SIZE, LITLEN_SYMBOLS>(
            &fixed_litlen_lengths(),
            litlen_entry,
        );
        // Fibonacci frequencies: codes of every length up to 15, so
        // sub-tables of every size, in both tables.
        let mut freqs = [0u32; LITLEN_SYMBOLS];
        let (mut a, mut b) = (1u32, 1u32);
        for f in freqs.iter_mut().take(40) {
            *f = a;
            (a, b) = (b, a.saturating_add(b));
        }
        let mut lengths = [0u8; LITLEN_SYMBOLS];
        code_lengths(&freqs, MAX_CODE_BITS, &mut lengths);
        assert_eq!(lengths.iter().max(), Some(&15));
        check_table::<LITLEN_ROOT_BITS, LITLEN_TABLE_SIZE, LITLEN_SYMBOLS>(&lengths, litlen_entry);
        let mut freqs = [0u32; DIST_SYMBOLS];
        let (mut a, mut b) = (1u32, 1u32);
        for f in freqs.iter_mut() {
            *f = a;
            (a, b) = (b, a.saturating_add(b));
        }
        let mut lengths = [0u8; DIST_SYMBOLS];
        code_lengths(&freqs, MAX_CODE_BITS, &mut lengths);
        assert!(lengths.iter().max() >= Some(&13), "{lengths:?}");
        check_table::<DIST_ROOT_BITS, DIST_TABLE_SIZE, DIST_SYMBOLS>(&lengths, dist_entry);
    }

    #[test]
    fn the_largest_sub_tables_fit() {
        // The bound's worst case: as many 5-bit-deep sub-tables as 288
        // symbols allow, each prefix holding lengths 11, 12, 13, 14, 15,
        // 15 (six symbols, 32 entries). 48 prefixes take 288 symbols and
        // 48 of the 1024 root patterns; the other 976 patterns need
        // codes of 10 bits or less, but no symbols are left, so the
        // worst complete code is smaller; building any code of up to 288
        // symbols must stay inside the table. Try every split between
        // short codes and deep prefixes.
        for deep in 1..=47usize {
            // `deep` prefixes of six symbols; the rest of the code space
            // split into the fewest short codes: 1024 - deep root patterns
            // as codes of up to 10 bits (by binary decomposition).
            let mut lengths = vec![];
            for _ in 0..deep {
                lengths.extend([11u8, 12, 13, 14, 15, 15]);
            }
            let free = 1024 - deep;
            for bit in 0..10 {
                if free & (1 << bit) != 0 {
                    lengths.push(10 - bit as u8);
                }
            }
            if lengths.len() > LITLEN_SYMBOLS {
                continue;
            }
            let mut table = LitLenTable::empty();
            table
                .build(&lengths, Incomplete::Refused, |_| {
                    Entry::new(Entry::LITERAL, 0, 0)
                })
                .expect("complete");
        }
    }

    #[test]
    fn one_used_symbol_still_gets_a_complete_code() {
        let mut freqs = [0u32; 30];
        freqs[7] = 5;
        let mut lengths = [0u8; 30];
        code_lengths(&freqs, 15, &mut lengths);
        assert_eq!((lengths[0], lengths[7]), (1, 1));
    }

    #[test]
    fn over_subscribed_lengths_are_refused() {
        assert!(
            DistTable::empty()
                .build(&[1, 1, 1], Incomplete::OneBitCodeAllowed, dist_entry)
                .is_err()
        );
    }

    #[test]
    fn incomplete_codes_are_refused_but_one_one_bit_code() {
        let build =
            |lengths: &[u8], incomplete| DistTable::empty().build(lengths, incomplete, dist_entry);
        let allowed = Incomplete::OneBitCodeAllowed;
        // Lengths 1, 2 leave the pattern 11 without a symbol.
        assert_eq!(build(&[1, 2, 0], allowed), Err("incomplete Huffman code"));
        assert_eq!(
            build(&[0, 3, 3, 2, 2], allowed),
            Err("incomplete Huffman code")
        );
        // One symbol of two bits: incomplete, and not the allowed case.
        assert_eq!(build(&[0, 2], allowed), Err("incomplete Huffman code"));
        // One symbol of one bit: allowed where asked, refused elsewhere.
        assert_eq!(build(&[0, 0, 1], allowed), Ok(()));
        assert_eq!(
            build(&[0, 0, 1], Incomplete::Refused),
            Err("incomplete Huffman code")
        );
        // Complete codes, and no code at all, are accepted.
        assert_eq!(build(&[1, 2, 2], Incomplete::Refused), Ok(()));
        assert_eq!(build(&[0, 0, 0], Incomplete::Refused), Ok(()));
    }
}
