//! Who someone is: verifying the signed tokens (JWTs, RFC 7519) that an
//! application which knows its users gives them, so that the chat server
//! can trust a user's id, name and role without a database or a password
//! of its own. The application signs; the chat server only verifies.
//!
//! Like [`crate::protocol`], this module does no I/O: no sockets, files,
//! threads or clocks. Token bytes, keys and the current time go in; claims
//! or a refusal come out. SHA-256 and HMAC are written here by hand, like
//! the rest of the protocol code.
//!
//! Reading order: [`sha256`] (FIPS 180-4), [`hmac`] (RFC 2104), [`jwt`]
//! (RFC 7515, 7518, 7519: the steps of a verification, in their order),
//! [`error`] (each refusal, its reason and its RFC section).
//!
//! # A JWT, byte by byte
//!
//! A signed JWT in compact form (RFC 7515 §7.1) is three base64url texts
//! joined by dots: `HEADER.CLAIMS.SIGNATURE`. Base64url (RFC 4648 §5,
//! RFC 7515 §2) writes every 3 bytes as 4 characters from `A–Z a–z 0–9 -
//! _`, without `=` padding, so a token fits in a URL unescaped.
//!
//! RFC 7515 Appendix A.1's example. The **header** is a JSON object that
//! says how the token is signed; its 30 bytes,
//!
//! ```text
//! {"typ":"JWT",\r\n "alg":"HS256"}
//! [123, 34, 116, 121, 112, 34, 58, 34, 74, 87, 84, 34, 44, 13, 10, 32,
//!  34, 97, 108, 103, 34, 58, 34, 72, 83, 50, 53, 54, 34, 125]
//! ```
//!
//! encode as `eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9` (every token
//! starts with `eyJ`: the encoding of `{"`). The **claims** (RFC 7519 §4)
//! are a second JSON object, the statements the token makes:
//!
//! ```text
//! {"iss":"joe",\r\n "exp":1300819380,\r\n "http://example.com/is_root":true}
//! ```
//!
//! encoded as `eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ`.
//! The JSON is signed as the issuer wrote it, line breaks and all: the
//! verifier never re-encodes it, it checks the exact bytes it received.
//!
//! The **signature** is HS256 (RFC 7518 §3.2): HMAC-SHA-256, under a key
//! shared by the issuer and the verifier, of the *signing input*, the
//! ASCII bytes of `HEADER.CLAIMS` as they appear in the token. Here the
//! key is 64 bytes (the JWK's `k`: `AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow`),
//! and the 32-byte tag
//!
//! ```text
//! [116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186,
//!  22, 212, 37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121]
//! ```
//!
//! is the third part, `dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk`. HMAC
//! (RFC 2104) hashes the key into the message twice, inside and outside,
//! so that no one without the key can compute a tag for changed claims,
//! not even by extending a message whose tag they have seen. Only the key
//! holder can sign; anyone who can read the token can read its claims
//! (they are encoded, not encrypted): a token must not carry secrets.
//!
//! ```
//! use base64::Engine;
//! use base64::engine::general_purpose::URL_SAFE_NO_PAD;
//! use wschat::auth::hmac::HmacSha256;
//! use wschat::auth::jwt::{self, KeySet};
//! use wschat::auth::{Malformed, TokenError};
//!
//! // RFC 7515 Appendix A.1, byte for byte.
//! let header = "{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}";
//! let claims = "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}";
//! let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9\
//!              .eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
//!              .dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
//! let key = URL_SAFE_NO_PAD
//!     .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
//!     .unwrap();
//!
//! let parts: Vec<&str> = token.split('.').collect();
//! assert_eq!(URL_SAFE_NO_PAD.decode(parts[0]).unwrap(), header.as_bytes());
//! assert_eq!(URL_SAFE_NO_PAD.decode(parts[1]).unwrap(), claims.as_bytes());
//!
//! // The signature is HMAC-SHA-256 of the first two parts, as sent.
//! let signing_input = &token[..parts[0].len() + 1 + parts[1].len()];
//! let tag = HmacSha256::mac(&key, signing_input.as_bytes());
//! assert_eq!(URL_SAFE_NO_PAD.encode(tag), parts[2]);
//!
//! // The signature layer accepts it and hands back the claims' bytes...
//! let keys = KeySet::new(&[&key]).unwrap();
//! assert_eq!(jwt::verify_signature(token.as_bytes(), &keys).unwrap(), claims.as_bytes());
//!
//! // ...but it is no sign-in for the chat: it has no `sub`, the user's id
//! // (and its `exp`, March 2011, has long passed).
//! let now = 1_780_000_000; // 2026
//! let refusal = jwt::verify(token.as_bytes(), &keys, now).unwrap_err();
//! assert_eq!(refusal, TokenError::Malformed(Malformed::Missing("sub")));
//! assert_eq!(refusal.reason(), "token_malformed");
//! ```
//!
//! # What the chat reads from a token
//!
//! [`jwt::verify`] returns [`Claims`]: `sub` (required: the user's id),
//! `exp` (required: a token without an end is a password that never
//! expires), `name` (the nickname to show), and the optional `nbf`, `iat`,
//! `role` (`"op"` for operators) and `rooms` (the private rooms the user
//! may join). Every refusal is a [`TokenError`] with a stable
//! [`reason`](TokenError::reason) (`token_expired`, `token_bad_signature`,
//! ...) and the RFC section that requires it; [`jwt`] lists the checks in
//! the order they run, the header before the signature, the signature
//! before the claims.
//!
//! # Keys and their rotation
//!
//! HS256 keys are at least 32 bytes ([`jwt::MIN_KEY_LEN`], RFC 7518
//! §3.2). A token carries both a message and its tag, so anyone holding
//! one can test guesses of the key offline, as fast as they can compute
//! HMACs: a short or guessable key falls, 32 random bytes do not. The keys
//! are secrets of the same rank as the tokens they sign: never in a flag
//! (`ps` shows flags), never in a log. A [`KeySet`] holds one
//! key, or two while a key changes: add the new key (a token signed with
//! either is accepted), move the issuers to it, and remove the old key
//! once every token it signed has expired. No moment exists at which a
//! valid token is refused.
//!
//! # Why a token must never reach a log
//!
//! A token is a bearer credential: whoever holds it *is* its user, for
//! every connection, until its `exp`. Logs are copied to files, shipped to
//! aggregators, pasted into bug reports and read by many more people than
//! hold the signing key; a token in a log line hands each of them the
//! user's identity (an operator's, with `"role":"op"`). Even a part of one
//! helps: the claims say who and until when, the signature is what makes
//! a copy work. So no error here holds or prints any of the token's bytes
//! (a test checks each refusal), keys and prepared keys have no printable
//! form, and the reason tokens say what was wrong without quoting it. For
//! the same reason a browser should send a token over the socket rather
//! than in a URL's query string, which proxies and servers write to their
//! access logs.

pub mod error;
pub mod hmac;
pub mod jwt;
pub mod sha256;
pub mod transport;

pub use error::{KeyError, Malformed, Part, TokenError};
pub use jwt::{Claims, KeySet, verify, verify_signature};

#[cfg(test)]
mod tests;

/// A fixed-seed generator for the property tests (SplitMix64): the tests
/// have no `rand`, and a failure repeats with the same inputs.
#[cfg(test)]
pub(crate) mod test_rng {
    pub(crate) struct Rng(u64);

    impl Rng {
        pub(crate) fn new(seed: u64) -> Self {
            Rng(seed)
        }

        pub(crate) fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
            z ^ (z >> 31)
        }

        /// A number in `0..n`.
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
    }
}
