//! SHA-256 (FIPS 180-4 §6.2), by hand: the hash under HMAC-SHA-256
//! ([`super::hmac`]) and so under every token signature.
//!
//! The message is processed in 64-byte blocks (§5.2.1). Each block goes
//! through the compression function (`compress`): a 64-word message
//! schedule (§6.2.2 step 1) and 64 rounds over eight 32-bit working
//! variables (steps 2–4), added back into the hash value. The last block
//! is padded (§5.1.1): a `1` bit, zeros, and the message length in bits as
//! a 64-bit big-endian number, so that the padded length is a multiple of
//! 512 bits.
//!
//! [`Sha256`] is streaming (`update` any number of times, then
//! `finalize`); [`digest`] is the one-shot form. Nothing allocates: the
//! state is eight words, a one-block buffer and a byte count.
//!
//! ```
//! use wschat::auth::sha256::{Sha256, digest};
//! // FIPS 180-4's first example (NIST's "SHA256.pdf"): "abc".
//! let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
//! let hex = |d: [u8; 32]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
//! assert_eq!(hex(digest(b"abc")), expected);
//!
//! // The same message in pieces gives the same digest.
//! let mut hasher = Sha256::new();
//! hasher.update(b"a");
//! hasher.update(b"bc");
//! assert_eq!(hex(hasher.finalize()), expected);
//! ```

/// Bytes in a digest (256 bits).
pub const DIGEST_LEN: usize = 32;

/// Bytes in a message block (512 bits, FIPS 180-4 §5.2.1).
pub const BLOCK_LEN: usize = 64;

/// The initial hash value H(0) (§5.3.3): the first 32 bits of the
/// fractional parts of the square roots of the first eight primes.
const INITIAL_STATE: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The round constants K (§4.2.2): the first 32 bits of the fractional
/// parts of the cube roots of the first 64 primes.
const ROUND_CONSTANTS: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// A SHA-256 computation in progress.
#[derive(Clone)]
pub struct Sha256 {
    /// The hash value H(i) after the blocks processed so far.
    state: [u32; 8],
    /// The start of the next block, `buffered` bytes of it.
    buffer: [u8; BLOCK_LEN],
    buffered: usize,
    /// Message bytes seen so far. FIPS 180-4 allows messages under 2^64
    /// bits; the bit count below wraps past that, as every implementation
    /// does (2^61 bytes is far beyond anything a token holds).
    length: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256 {
    /// A fresh computation, at H(0).
    pub const fn new() -> Self {
        Sha256 {
            state: INITIAL_STATE,
            buffer: [0; BLOCK_LEN],
            buffered: 0,
            length: 0,
        }
    }

    /// Feeds `data`, which follows everything fed before.
    pub fn update(&mut self, mut data: &[u8]) {
        self.length = self.length.wrapping_add(data.len() as u64);
        if self.buffered > 0 {
            let take = (BLOCK_LEN - self.buffered).min(data.len());
            self.buffer[self.buffered..self.buffered + take].copy_from_slice(&data[..take]);
            self.buffered += take;
            data = &data[take..];
            if self.buffered < BLOCK_LEN {
                return;
            }
            compress(&mut self.state, &self.buffer);
            self.buffered = 0;
        }
        // Whole blocks straight from the input, without copying them.
        let mut blocks = data.chunks_exact(BLOCK_LEN);
        for block in &mut blocks {
            compress(&mut self.state, block.try_into().expect("a 64-byte chunk"));
        }
        let rest = blocks.remainder();
        self.buffer[..rest.len()].copy_from_slice(rest);
        self.buffered = rest.len();
    }

    /// Pads the message (§5.1.1) and returns its digest H(N) as bytes,
    /// big-endian word by word (§6.2.2, last step).
    pub fn finalize(mut self) -> [u8; DIGEST_LEN] {
        let bit_length = self.length.wrapping_mul(8);
        // A `1` bit, then zeros up to 56 bytes into a block (two blocks
        // when fewer than 9 bytes are left in this one), then the length.
        let mut padding = [0u8; BLOCK_LEN];
        padding[0] = 0x80;
        let zeros_to = if self.buffered < BLOCK_LEN - 8 {
            BLOCK_LEN - 8
        } else {
            2 * BLOCK_LEN - 8
        };
        self.update(&padding[..zeros_to - self.buffered]);
        self.update(&bit_length.to_be_bytes());
        debug_assert_eq!(self.buffered, 0);

        let mut out = [0u8; DIGEST_LEN];
        for (bytes, word) in out.chunks_exact_mut(4).zip(self.state) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

/// SHA-256 of `data`, in one call.
pub fn digest(data: &[u8]) -> [u8; DIGEST_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(data);
    hasher.finalize()
}

/// The compression function (§6.2.2): folds one 512-bit block into the
/// hash value. Everything lives on the stack.
///
/// The rounds are written out rather than looped, for speed (about twice
/// as fast as the loop of §6.2.2 as written): instead of shifting the
/// eight working variables along after every round (`h = g; g = f; ...`),
/// each round is written with the variables renamed, so that a round
/// only updates two of them (`d` and `h`), and the schedule keeps just the
/// last 16 words (§6.2.2 step 1, W(t) from W(t-2), W(t-7), W(t-15) and
/// W(t-16)), updated in place. The tests check it against the NIST
/// vectors and an independent implementation.
fn compress(state: &mut [u32; 8], block: &[u8; BLOCK_LEN]) {
    // W0..W15: the block as big-endian words.
    let mut w = [0u32; 16];
    for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_be_bytes(bytes.try_into().expect("4 bytes"));
    }

    // Step 2: the working variables start at H(i-1).
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;

    // Step 3, one round: T1 and T2, then `d + T1` becomes the next `e` and
    // `T1 + T2` the next `a`; the caller rotates the names.
    macro_rules! round {
        ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $k:expr, $w:expr) => {
            let t1 = $h
                .wrapping_add(big_sigma1($e))
                .wrapping_add(choose($e, $f, $g))
                .wrapping_add($k)
                .wrapping_add($w);
            let t2 = big_sigma0($a).wrapping_add(majority($a, $b, $c));
            $d = $d.wrapping_add(t1);
            $h = t1.wrapping_add(t2);
        };
    }

    for group in 0..4 {
        if group > 0 {
            // The next 16 schedule words, in place: w[j] holds W(t-16)
            // and becomes W(t), for t = 16 * group + j.
            for j in 0..16 {
                w[j] = w[j]
                    .wrapping_add(small_sigma0(w[(j + 1) % 16]))
                    .wrapping_add(w[(j + 9) % 16])
                    .wrapping_add(small_sigma1(w[(j + 14) % 16]));
            }
        }
        let k: &[u32; 16] = ROUND_CONSTANTS[16 * group..16 * group + 16]
            .try_into()
            .expect("16 constants");
        round!(a, b, c, d, e, f, g, h, k[0], w[0]);
        round!(h, a, b, c, d, e, f, g, k[1], w[1]);
        round!(g, h, a, b, c, d, e, f, k[2], w[2]);
        round!(f, g, h, a, b, c, d, e, k[3], w[3]);
        round!(e, f, g, h, a, b, c, d, k[4], w[4]);
        round!(d, e, f, g, h, a, b, c, k[5], w[5]);
        round!(c, d, e, f, g, h, a, b, k[6], w[6]);
        round!(b, c, d, e, f, g, h, a, k[7], w[7]);
        round!(a, b, c, d, e, f, g, h, k[8], w[8]);
        round!(h, a, b, c, d, e, f, g, k[9], w[9]);
        round!(g, h, a, b, c, d, e, f, k[10], w[10]);
        round!(f, g, h, a, b, c, d, e, k[11], w[11]);
        round!(e, f, g, h, a, b, c, d, k[12], w[12]);
        round!(d, e, f, g, h, a, b, c, k[13], w[13]);
        round!(c, d, e, f, g, h, a, b, k[14], w[14]);
        round!(b, c, d, e, f, g, h, a, k[15], w[15]);
    }

    // Step 4: the intermediate hash value H(i). After a multiple of eight
    // rounds the names are back in place.
    for (word, working) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *word = word.wrapping_add(working);
    }
}

// The functions of FIPS 180-4 §4.1.2 (equations 4.2–4.7).

#[inline(always)]
fn choose(x: u32, y: u32, z: u32) -> u32 {
    (x & y) ^ (!x & z)
}

#[inline(always)]
fn majority(x: u32, y: u32, z: u32) -> u32 {
    (x & y) ^ (x & z) ^ (y & z)
}

#[inline(always)]
fn big_sigma0(x: u32) -> u32 {
    x.rotate_right(2) ^ x.rotate_right(13) ^ x.rotate_right(22)
}

#[inline(always)]
fn big_sigma1(x: u32) -> u32 {
    x.rotate_right(6) ^ x.rotate_right(11) ^ x.rotate_right(25)
}

#[inline(always)]
fn small_sigma0(x: u32) -> u32 {
    x.rotate_right(7) ^ x.rotate_right(18) ^ (x >> 3)
}

#[inline(always)]
fn small_sigma1(x: u32) -> u32 {
    x.rotate_right(17) ^ x.rotate_right(19) ^ (x >> 10)
}

#[cfg(test)]
mod tests {
    use super::{BLOCK_LEN, Sha256, digest};
    use crate::auth::test_rng::Rng;
    use sha2::Digest;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The well-known vectors: FIPS 180-2 Appendix B ("abc", one block;
    /// the 448-bit message, whose padding needs a second block), the
    /// 896-bit message of its SHA-384/512 examples (Appendix C.2), and the
    /// first three byte-oriented vectors of NIST CAVP's SHA256ShortMsg.rsp
    /// (Len = 0, 8 and 16 bits).
    #[test]
    fn nist_vectors() {
        let vectors: [(&[u8], &str); 6] = [
            (
                b"",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                b"abc",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
            ),
            (
                b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn\
                  hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
                "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
            ),
            (
                &[0xd3],
                "28969cdfa74a12c82f3bad960b0b000aca2ac329deea5c2328ebc6f2ba9802c1",
            ),
            (
                &[0x11, 0xaf],
                "5ca7133fa735326081558ac312c620eeca9970d1e70a4b95533d956f072d1f98",
            ),
        ];
        for (message, expected) in vectors {
            assert_eq!(hex(&digest(message)), expected, "{message:?}");
        }
    }

    /// FIPS 180-2 Appendix B.3: one million 'a's (SHA256LongMsg's kind of
    /// test), fed both at once and in uneven pieces.
    #[test]
    fn one_million_a() {
        let expected = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
        let message = vec![b'a'; 1_000_000];
        assert_eq!(hex(&digest(&message)), expected);
        let mut hasher = Sha256::new();
        for piece in message.chunks(999) {
            hasher.update(piece);
        }
        assert_eq!(hex(&hasher.finalize()), expected);
    }

    /// Every length around the padding boundaries (55, 56, 63, 64 bytes in
    /// a block) and random messages, cut at random places, agree with the
    /// `sha2` crate.
    #[test]
    fn agrees_with_an_independent_implementation() {
        let mut rng = Rng::new(0x5eed_5a256);
        for round in 0..2_000 {
            let len = if round < 3 * BLOCK_LEN {
                round
            } else {
                rng.below(1_000)
            };
            let message = rng.bytes(len);
            let expected: [u8; 32] = sha2::Sha256::digest(&message).into();
            assert_eq!(digest(&message), expected, "length {len}");

            let mut hasher = Sha256::new();
            let mut rest = &message[..];
            while !rest.is_empty() {
                let (piece, after) = rest.split_at(rng.below(rest.len() + 1));
                hasher.update(piece);
                rest = after;
            }
            hasher.update(&[]);
            assert_eq!(hasher.finalize(), expected, "length {len}, in pieces");
        }
    }
}
