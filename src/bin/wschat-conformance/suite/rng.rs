//! A seeded random generator for payloads and cuts: the tool and the
//! wschat tests (tests/common) share this file.

/// SplitMix64: a small, fast, deterministic generator (the tests have no
/// `rand`); a fixed seed makes every run the same.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let tail = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        tail.copy_from_slice(&last[..tail.len()]);
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }

    /// Valid UTF-8 of exactly `n` bytes, mixing 1- to 4-byte characters
    /// (and ASCII at the end to make the length exact).
    pub fn text(&mut self, n: usize) -> String {
        const CHARS: [char; 12] = [
            'a',
            'Z',
            ' ',
            '~',
            '\u{7f}',
            'é',
            '\u{7ff}',
            '€',
            '\u{ffff}',
            '𝄞',
            '\u{10ffff}',
            '\0',
        ];
        let mut s = String::with_capacity(n);
        while s.len() < n {
            let c = CHARS[self.below(CHARS.len())];
            if s.len() + c.len_utf8() <= n {
                s.push(c);
            } else {
                s.push('x');
            }
        }
        s
    }

    /// Cuts `len` into random positive pieces (at most `max_pieces` of
    /// them); returns the piece lengths, which sum to `len`.
    pub fn split(&mut self, len: usize, max_pieces: usize) -> Vec<usize> {
        if len == 0 {
            return vec![0];
        }
        let pieces = self.range(1, max_pieces.clamp(1, len));
        let mut cuts: Vec<usize> = (0..pieces - 1).map(|_| self.range(1, len - 1)).collect();
        cuts.push(0);
        cuts.push(len);
        cuts.sort_unstable();
        cuts.dedup();
        cuts.windows(2).map(|w| w[1] - w[0]).collect()
    }
}
