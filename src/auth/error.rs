//! Why a token is refused, and why a key set is. Each refusal has a stable
//! reason token ([`TokenError::reason`], for clients and metrics: it never
//! changes once released) and the RFC section that requires it
//! ([`TokenError::rfc_section`]); its `Display` is a sentence for logs.
//!
//! None of them holds or prints any part of the token: not its header,
//! claims or signature, not even the `alg` it asked for. A token is a
//! bearer credential, and error texts end up in logs (see the module
//! documentation of [`crate::auth`]).

use std::fmt;

/// The three parts of a compact JWS (RFC 7515 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Header,
    Claims,
    Signature,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Header => "header",
            Part::Claims => "claims",
            Part::Signature => "signature",
        }
    }
}

/// What is wrong with a token that is not a well-formed JWT for this
/// server. All of them share the reason `token_malformed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Not exactly three parts separated by two dots (RFC 7515 §7.1; RFC
    /// 7519 §7.2 step 1). A truncated token usually ends up here.
    NotThreeParts,
    /// A part is not unpadded base64url (RFC 7515 §2, §5.2 step 2).
    Base64(Part),
    /// The header or the claims are not a UTF-8 JSON object (RFC 7515
    /// §5.2 step 3; RFC 7519 §7.2 step 10).
    NotJsonObject(Part),
    /// A member name appears twice: the two could be read differently by
    /// the issuer and this server, so such a token is refused (RFC 7515
    /// §5.2 step 4; RFC 7519 §4).
    DuplicateMember(Part),
    /// A required header parameter or claim is absent: `alg` (RFC 7515
    /// §4.1.1), `sub` or `exp` (required by this server).
    Missing(&'static str),
    /// A header parameter or claim has the wrong JSON type: a string for
    /// `alg`, `sub`, `name` and `role`; a NumericDate (RFC 7519 §2) for
    /// `exp`, `nbf`, `iat`; an array of strings for `rooms`; a string or
    /// an array of strings for `aud`.
    WrongType(&'static str),
    /// `sub` is the empty string: it names no one.
    EmptySubject,
}

impl Malformed {
    fn rfc_section(self) -> &'static str {
        match self {
            Malformed::NotThreeParts => "RFC 7515 §7.1",
            Malformed::Base64(_) => "RFC 7515 §2",
            Malformed::NotJsonObject(Part::Header) => "RFC 7515 §5.2",
            Malformed::NotJsonObject(_) => "RFC 7519 §7.2",
            Malformed::DuplicateMember(Part::Header) => "RFC 7515 §5.2",
            Malformed::DuplicateMember(_) => "RFC 7519 §4",
            Malformed::Missing(name) | Malformed::WrongType(name) => member_section(name),
            Malformed::EmptySubject => "RFC 7519 §4.1.2",
        }
    }
}

/// The section that defines a header parameter or claim this server reads.
fn member_section(name: &str) -> &'static str {
    match name {
        "alg" => "RFC 7515 §4.1.1",
        "crit" => "RFC 7515 §4.1.11",
        "aud" => "RFC 7519 §4.1.3",
        "sub" => "RFC 7519 §4.1.2",
        "exp" => "RFC 7519 §4.1.4",
        "nbf" => "RFC 7519 §4.1.5",
        "iat" => "RFC 7519 §4.1.6",
        // `name` is a public claim (registered by OpenID Connect).
        "name" => "RFC 7519 §4.2",
        // `role` and `rooms` are this server's private claims.
        _ => "RFC 7519 §4.3",
    }
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Longer than `auth::jwt::MAX_TOKEN_LEN`: refused before any
    /// decoding, so that an unauthenticated peer cannot make the server
    /// decode or hash much.
    TooLong,
    /// Not a well-formed JWT; the detail says how.
    Malformed(Malformed),
    /// An `alg` other than HS256, `none` included (RFC 7515 §4.1.1; RFC
    /// 8725 §3.1: a verifier accepts only the algorithms it was set up
    /// for, and decides from its own set-up, never from the token).
    AlgorithmNotAllowed,
    /// A `crit` header: it lists extensions the recipient must understand,
    /// and this server understands none (RFC 7515 §4.1.11).
    CriticalExtension,
    /// The signature is not HS256 of the first two parts under any of the
    /// keys (RFC 7515 §5.2 step 8), or is not 32 bytes long.
    BadSignature,
    /// `exp`, plus the leeway, has passed (RFC 7519 §4.1.4).
    Expired,
    /// `nbf`, minus the leeway, is still to come (RFC 7519 §4.1.5).
    NotYetValid,
    /// The token names audiences (`aud`) and this server is not one of
    /// them, or the server expects an audience and the token names none
    /// (RFC 7519 §4.1.3).
    WrongAudience,
}

impl TokenError {
    /// The stable, machine-readable reason: what a client or a metric
    /// sees. These strings never change.
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::TooLong => "token_too_long",
            TokenError::Malformed(_) => "token_malformed",
            TokenError::AlgorithmNotAllowed => "token_alg_not_allowed",
            TokenError::CriticalExtension => "token_crit_unsupported",
            TokenError::BadSignature => "token_bad_signature",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::WrongAudience => "token_wrong_audience",
        }
    }

    /// The RFC section that requires this refusal.
    pub fn rfc_section(self) -> &'static str {
        match self {
            // The JOSE RFCs set no length; the limit is this server's own,
            // in the spirit of RFC 6455's "implementation-specific limits"
            // against denial of service.
            TokenError::TooLong => "RFC 6455 §10.4",
            TokenError::Malformed(detail) => detail.rfc_section(),
            TokenError::AlgorithmNotAllowed => "RFC 8725 §3.1",
            TokenError::CriticalExtension => "RFC 7515 §4.1.11",
            TokenError::BadSignature => "RFC 7515 §5.2",
            TokenError::Expired => "RFC 7519 §4.1.4",
            TokenError::NotYetValid => "RFC 7519 §4.1.5",
            TokenError::WrongAudience => "RFC 7519 §4.1.3",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::TooLong => {
                write!(f, "token over {} bytes", crate::auth::jwt::MAX_TOKEN_LEN)?
            }
            TokenError::Malformed(detail) => {
                f.write_str("malformed token: ")?;
                match detail {
                    Malformed::NotThreeParts => f.write_str("not three parts separated by dots")?,
                    Malformed::Base64(part) => {
                        write!(f, "the {} is not unpadded base64url", part.name())?
                    }
                    Malformed::NotJsonObject(part) => {
                        write!(f, "the {} is not a UTF-8 JSON object", part.name())?
                    }
                    Malformed::DuplicateMember(part) => {
                        write!(f, "a member name appears twice in the {}", part.name())?
                    }
                    Malformed::Missing(name) => write!(f, "no `{name}`")?,
                    Malformed::WrongType(name) => write!(f, "`{name}` has the wrong type")?,
                    Malformed::EmptySubject => f.write_str("`sub` is empty")?,
                }
            }
            TokenError::AlgorithmNotAllowed => f.write_str("token algorithm is not HS256")?,
            TokenError::CriticalExtension => {
                f.write_str("token header has `crit`, and no extension is supported")?
            }
            TokenError::BadSignature => f.write_str("token signature does not match any key")?,
            TokenError::Expired => f.write_str("token expired")?,
            TokenError::NotYetValid => f.write_str("token not yet valid")?,
            TokenError::WrongAudience => {
                f.write_str("token audience does not include this server")?
            }
        }
        write!(f, " ({}, {})", self.rfc_section(), self.reason())
    }
}

impl std::error::Error for TokenError {}

/// Why a set of HS256 keys is refused. Like [`TokenError`], it never holds
/// or prints any byte of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// No key at all.
    NoKey,
    /// More than `auth::jwt::MAX_KEYS` keys.
    TooManyKeys,
    /// Key number `index` (counting from 1) is shorter than
    /// `auth::jwt::MIN_KEY_LEN` bytes (RFC 7518 §3.2).
    TooShort { index: usize },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::auth::jwt::{MAX_KEYS, MIN_KEY_LEN};
        match self {
            KeyError::NoKey => f.write_str("no HS256 key"),
            KeyError::TooManyKeys => write!(f, "more than {MAX_KEYS} HS256 keys"),
            KeyError::TooShort { index } => write!(
                f,
                "HS256 key {index} is shorter than {MIN_KEY_LEN} bytes (RFC 7518 §3.2)"
            ),
        }
    }
}

impl std::error::Error for KeyError {}
