//! Incremental UTF-8 validation (RFC 6455 §8.1, §5.6).
//!
//! A text message may arrive in many frames, and one frame in many reads, so
//! a multi-byte character can be split anywhere. The validator keeps the at
//! most three bytes of an unfinished character between calls, and fails as
//! soon as the bytes seen so far cannot begin any valid character: §8.1 says
//! an endpoint receiving invalid UTF-8 must fail the connection, and failing
//! early means a hostile client cannot make us buffer a megabyte of garbage
//! first.
//!
//! The bulk of the work is done by `std::str::from_utf8`, which is
//! vectorised; this type only stitches the pieces together. `from_utf8`
//! already distinguishes "invalid" (`error_len() == Some(_)`) from "valid so
//! far but cut short" (`error_len() == None`), and it checks the second byte
//! of a sequence against the first (so `F4 90` — above U+10FFFF — and `ED A0`
//! — a surrogate — are rejected before the sequence is complete).

use std::fmt;

/// The bytes are not UTF-8, and no continuation could make them so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error;

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

impl std::error::Error for Utf8Error {}

/// Validates UTF-8 fed in pieces of any size.
///
/// ```
/// use wschat::protocol::utf8::Utf8Validator;
///
/// let euro = "€".as_bytes(); // e2 82 ac
/// let mut v = Utf8Validator::new();
/// v.feed(&euro[..1]).unwrap(); // a valid beginning
/// v.feed(&euro[1..]).unwrap();
/// assert!(v.finish().is_ok());
///
/// let mut v = Utf8Validator::new();
/// assert!(v.feed(&[0xed, 0xa0]).is_err()); // a surrogate: fails at once
/// ```
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: usize,
}

impl Utf8Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next piece. `Ok` means everything fed so far is UTF-8 or a
    /// valid beginning of it.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Utf8Error> {
        if self.pending_len > 0 {
            // Complete the character left over from the previous piece.
            let width = sequence_width(self.pending[0]);
            while self.pending_len < width && !bytes.is_empty() {
                self.pending[self.pending_len] = bytes[0];
                self.pending_len += 1;
                bytes = &bytes[1..];
            }
            match std::str::from_utf8(&self.pending[..self.pending_len]) {
                Ok(_) => self.pending_len = 0,
                // Still a valid prefix, and `bytes` is exhausted.
                Err(e) if e.error_len().is_none() => return Ok(()),
                Err(_) => return Err(Utf8Error),
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let rest = &bytes[e.valid_up_to()..];
                self.pending[..rest.len()].copy_from_slice(rest);
                self.pending_len = rest.len();
                Ok(())
            }
            Err(_) => Err(Utf8Error),
        }
    }

    /// Call at the end of the message: an unfinished character is an error.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let complete = self.pending_len == 0;
        self.pending_len = 0;
        if complete { Ok(()) } else { Err(Utf8Error) }
    }

    /// True when no character is left unfinished.
    pub fn is_complete(&self) -> bool {
        self.pending_len == 0
    }
}

/// The length of the sequence a valid lead byte starts (only called on bytes
/// that `from_utf8` accepted as the start of a sequence).
fn sequence_width(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate_in_pieces(bytes: &[u8], piece: usize) -> Result<(), Utf8Error> {
        let mut v = Utf8Validator::new();
        for chunk in bytes.chunks(piece.max(1)) {
            v.feed(chunk)?;
        }
        v.finish()
    }

    #[test]
    fn valid_text_passes_in_any_piece_size() {
        let text = "héllo wörld € 𝄞 \u{10FFFF} \u{7f} \u{80} \u{7ff} \u{800} \u{ffff} \u{10000}";
        for piece in 1..=text.len() {
            assert_eq!(
                validate_in_pieces(text.as_bytes(), piece),
                Ok(()),
                "piece {piece}"
            );
        }
    }

    #[test]
    fn invalid_sequences_fail_in_any_piece_size() {
        let cases: &[&[u8]] = &[
            &[0xc0, 0x80],             // overlong NUL
            &[0xe0, 0x80, 0xaf],       // overlong '/'
            &[0xed, 0xa0, 0x80],       // surrogate U+D800
            &[0xed, 0xbf, 0xbf],       // surrogate U+DFFF
            &[0xf4, 0x90, 0x80, 0x80], // U+110000
            &[0xf5, 0x80, 0x80, 0x80],
            &[0xff],
            &[0x80],
            &[0xce, 0xba, 0xe1, 0xbd], // truncated at the end
        ];
        for case in cases {
            for piece in 1..=case.len() {
                assert!(
                    validate_in_pieces(case, piece).is_err(),
                    "{case:x?} piece {piece}"
                );
            }
        }
    }

    #[test]
    fn fails_fast_on_an_impossible_prefix() {
        let mut v = Utf8Validator::new();
        v.feed(b"ok ").unwrap();
        v.feed(&[0xf4]).unwrap();
        assert_eq!(
            v.feed(&[0x90]),
            Err(Utf8Error),
            "F4 90 can only be above U+10FFFF"
        );

        let mut v = Utf8Validator::new();
        assert_eq!(
            v.feed(&[
                0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xf4, 0x90
            ]),
            Err(Utf8Error)
        );
    }

    #[test]
    fn a_truncated_character_is_an_error_only_at_the_end() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xe2, 0x82]).unwrap();
        assert!(!v.is_complete());
        assert_eq!(v.finish(), Err(Utf8Error));
    }
}
