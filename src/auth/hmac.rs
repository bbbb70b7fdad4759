//! HMAC-SHA-256 (RFC 2104), by hand, and the constant-time comparison its
//! tags need.
//!
//! RFC 2104 §2: with `B` = 64 (SHA-256's block size) and `K` the key,
//!
//! ```text
//! HMAC(K, text) = H((K0 ^ opad) || H((K0 ^ ipad) || text))
//! ```
//!
//! where `K0` is `K` padded with zeros to `B` bytes (or, for a key longer
//! than `B`, `H(K)` padded: RFC 2104 §3), `ipad` is `0x36` and `opad` is
//! `0x5c` repeated `B` times. [`HmacSha256::new`] hashes the two padded
//! keys once, so a prepared key (a clone of it) costs only the message's
//! blocks and one more block for the outer hash per tag.
//!
//! ```
//! use wschat::auth::hmac::HmacSha256;
//! // RFC 4231 §4.3, test case 2: a short key.
//! let tag = HmacSha256::mac(b"Jefe", b"what do ya want for nothing?");
//! let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
//! assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
//! ```

use super::sha256::{BLOCK_LEN, DIGEST_LEN, Sha256};

/// Bytes in an HMAC-SHA-256 tag: the digest's length (RFC 2104 §2, `L`).
pub const TAG_LEN: usize = DIGEST_LEN;

/// RFC 2104 §2: the inner and outer pad bytes.
const IPAD: u8 = 0x36;
const OPAD: u8 = 0x5c;

/// An HMAC-SHA-256 computation: the inner hash (already fed `K0 ^ ipad`)
/// and the outer one (already fed `K0 ^ opad`). Cloning a fresh one reuses
/// a key without hashing its pads again. It has no `Debug`, so that the
/// state derived from a key cannot be printed by accident.
#[derive(Clone)]
pub struct HmacSha256 {
    inner: Sha256,
    outer: Sha256,
}

impl HmacSha256 {
    /// Prepares `key`, of any length (RFC 2104 §3: longer than a block, it
    /// is hashed first; RFC 7518 §3.2 asks at least 32 bytes for HS256,
    /// which the caller checks: see `auth::jwt::KeySet`).
    pub fn new(key: &[u8]) -> Self {
        let mut padded = [0u8; BLOCK_LEN];
        if key.len() > BLOCK_LEN {
            padded[..DIGEST_LEN].copy_from_slice(&super::sha256::digest(key));
        } else {
            padded[..key.len()].copy_from_slice(key);
        }
        let mut inner = Sha256::new();
        let mut outer = Sha256::new();
        inner.update(&padded.map(|b| b ^ IPAD));
        outer.update(&padded.map(|b| b ^ OPAD));
        HmacSha256 { inner, outer }
    }

    /// Feeds message bytes, which follow everything fed before.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    /// The tag of the message fed so far.
    pub fn finalize(self) -> [u8; TAG_LEN] {
        let mut outer = self.outer;
        outer.update(&self.inner.finalize());
        outer.finalize()
    }

    /// The tag of `data` under `key`, in one call.
    pub fn mac(key: &[u8], data: &[u8]) -> [u8; TAG_LEN] {
        let mut hmac = HmacSha256::new(key);
        hmac.update(data);
        hmac.finalize()
    }
}

/// Whether `a` and `b` are equal, in a time that depends on their length
/// only, never on where they first differ.
///
/// Why: an attacker who can forge tokens and time the server's answers
/// could otherwise learn the right tag for a message of their choosing
/// byte by byte (an early-exit comparison such as `==` on slices answers
/// sooner the earlier the first difference is), in about 256 guesses per
/// byte instead of 2^256. So every byte is compared, the differences are
/// OR-ed together, and only the total is tested. The lengths are compared
/// first: a tag's length is public (32 bytes for HS256), not a secret.
/// `black_box` keeps the optimiser from turning the fold back into an
/// early exit; it is a best-effort hint, which is what any Rust code
/// without assembly can offer.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut difference = 0u8;
    for (x, y) in a.iter().zip(b) {
        difference |= std::hint::black_box(x ^ y);
    }
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::{HmacSha256, TAG_LEN, constant_time_eq};
    use crate::auth::test_rng::Rng;
    use ::hmac::Mac;

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// RFC 4231 §4.2–§4.8: every HMAC-SHA-256 test case. Case 5 is
    /// truncated to 128 bits (§4.6); cases 6 and 7 have a 131-byte key,
    /// longer than a block, which is hashed first.
    #[test]
    fn rfc_4231_test_cases() {
        let long_key = [0xaa; 131];
        let key_4: Vec<u8> = (0x01..=0x19).collect();
        let cases: [(&[u8], &[u8], &str); 7] = [
            (
                &[0x0b; 20],
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                &[0xaa; 20],
                &[0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                &key_4,
                &[0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                &[0x0c; 20],
                b"Test With Truncation",
                "a3b6167473100ee06e0c796c2955552b",
            ),
            (
                &long_key,
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                &long_key,
                b"This is a test using a larger than block-size key and a larger \
                  than block-size data. The key needs to be hashed before being \
                  used by the HMAC algorithm.",
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (number, (key, data, expected)) in cases.into_iter().enumerate() {
            let expected = unhex(expected);
            let tag = HmacSha256::mac(key, data);
            // Case 5 keeps the leftmost 128 bits (RFC 4231 §4.6).
            assert_eq!(
                &tag[..expected.len()],
                &expected[..],
                "RFC 4231 test case {}",
                number + 1
            );
        }
    }

    /// Random keys (shorter than, equal to and longer than a block) and
    /// messages, fed in pieces, agree with the `hmac` crate.
    #[test]
    fn agrees_with_an_independent_implementation() {
        let mut rng = Rng::new(0x4d4ac);
        for round in 0..1_000 {
            let key_len = if round < 140 { round } else { rng.below(300) };
            let key = rng.bytes(key_len);
            let message_len = rng.below(600);
            let message = rng.bytes(message_len);
            let mut reference =
                ::hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
            reference.update(&message);
            let expected: [u8; TAG_LEN] = reference.finalize().into_bytes().into();

            let prepared = HmacSha256::new(&key);
            let mut ours = prepared.clone();
            let cut = rng.below(message.len() + 1);
            ours.update(&message[..cut]);
            ours.update(&message[cut..]);
            assert_eq!(ours.finalize(), expected, "key {} bytes", key.len());
            // The prepared key is unchanged by its clone's use.
            let mut again = prepared;
            again.update(&message);
            assert_eq!(again.finalize(), expected);
        }
    }

    #[test]
    fn constant_time_eq_compares_every_byte_and_the_length() {
        let tag = [7u8; TAG_LEN];
        assert!(constant_time_eq(&tag, &tag));
        assert!(constant_time_eq(&[], &[]));
        for at in [0, 1, TAG_LEN / 2, TAG_LEN - 1] {
            let mut other = tag;
            other[at] ^= 0x80;
            assert!(!constant_time_eq(&tag, &other), "differs at {at}");
            other[at] ^= 0x81;
            assert!(!constant_time_eq(&tag, &other), "differs at {at}");
        }
        assert!(!constant_time_eq(&tag, &tag[..TAG_LEN - 1]));
        assert!(!constant_time_eq(&tag[..1], &tag));
    }
}
