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
pub fn length_symbol(len: usize) -> usize {
    // The bases increase, so the symbol is the last base not above `len`.
    let index = LENGTH_BASE.partition_point(|&base| base as usize <= len) - 1;
    257 + index
}

/// The distance symbol (0..=29) for a distance of 1..=32768.
pub fn dist_symbol(dist: usize) -> usize {
    DIST_BASE.partition_point(|&base| base as usize <= dist) - 1
}

/// Which incomplete codes [`DecodeTable::build`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incomplete {
    /// None: the code-length code (§3.2.7), and the fixed codes.
    Refused,
    /// A single symbol with a one-bit code: the literal/length and
    /// distance codes of a dynamic block.
    OneBitCodeAllowed,
}

/// A canonical Huffman code prepared for decoding, in the style of zlib's
/// `puff.c`: how many codes have each length, and the symbols sorted by
/// code. Decoding reads one bit at a time and walks the lengths.
#[derive(Debug, Clone)]
pub struct DecodeTable {
    /// `count[len]`: how many symbols have a code of `len` bits.
    pub count: [u16; MAX_CODE_BITS + 1],
    /// Symbols in code order (by length, then by symbol value).
    pub symbol: [u16; LITLEN_SYMBOLS],
}

impl DecodeTable {
    pub const fn empty() -> Self {
        DecodeTable {
            count: [0; MAX_CODE_BITS + 1],
            symbol: [0; LITLEN_SYMBOLS],
        }
    }

    /// Builds the table from code lengths. Fails if the lengths ask for
    /// more codes than fit in their bit counts (an over-subscribed code),
    /// or leave some bit patterns without a symbol (an incomplete code),
    /// except as `incomplete` allows. RFC 1951 §3.2.7 allows a distance
    /// code of one one-bit code (a block with one distance); zlib, which
    /// refuses every other incomplete code, allows the same for the
    /// literal/length code, and so do we. No codes at all is accepted
    /// too: a block without matches needs no distance code, and any
    /// attempt to decode with an empty table fails.
    pub fn build(&mut self, lengths: &[u8], incomplete: Incomplete) -> Result<(), &'static str> {
        self.count = [0; MAX_CODE_BITS + 1];
        for &len in lengths.iter().filter(|&&len| len != 0) {
            self.count[len as usize] += 1;
        }
        // Each length doubles the codes available; subtract those used.
        let mut left: i32 = 1;
        for len in 1..=MAX_CODE_BITS {
            left = left * 2 - self.count[len] as i32;
            if left < 0 {
                return Err("over-subscribed Huffman code");
            }
        }
        let used: u16 = self.count.iter().sum();
        let one_bit_code = used == 1 && self.count[1] == 1;
        if left > 0 && used > 0 && !(one_bit_code && incomplete == Incomplete::OneBitCodeAllowed) {
            return Err("incomplete Huffman code");
        }
        let mut offsets = [0u16; MAX_CODE_BITS + 2];
        for len in 1..=MAX_CODE_BITS {
            offsets[len + 1] = offsets[len] + self.count[len];
        }
        for (symbol, &len) in lengths.iter().enumerate() {
            if len != 0 {
                self.symbol[offsets[len as usize] as usize] = symbol as u16;
                offsets[len as usize] += 1;
            }
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
        let mut table = DecodeTable::empty();
        assert!(table.build(&lengths, Incomplete::Refused).is_ok());
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
            DecodeTable::empty()
                .build(&[1, 1, 1], Incomplete::OneBitCodeAllowed)
                .is_err()
        );
    }

    #[test]
    fn incomplete_codes_are_refused_but_one_one_bit_code() {
        let build = |lengths: &[u8], incomplete| DecodeTable::empty().build(lengths, incomplete);
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
