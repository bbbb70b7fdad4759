//! Verifying a JWT (RFC 7519) in JWS compact form (RFC 7515 §7.1) signed
//! with HS256 (RFC 7518 §3.2): token bytes, keys and the time in; the
//! claims the chat needs, or the reason for a refusal, out.
//!
//! The steps, in this order (each refusal is a [`TokenError`]):
//!
//! 1. **Length.** Over [`MAX_TOKEN_LEN`] bytes: refused before anything
//!    else is looked at ([`TokenError::TooLong`]).
//! 2. **Shape.** Exactly three base64url parts separated by two dots.
//! 3. **Header.** A JSON object without duplicate names whose `alg` is
//!    exactly `HS256` ([`ALGORITHM`]) and without `crit`. This comes
//!    before the signature, because the signature can only be checked by
//!    the algorithm the server was set up for: a token saying `none` (or
//!    `HS512`, or `RS256`) is refused as such, never "verified" its way
//!    (RFC 8725 §3.1).
//! 4. **Signature.** HMAC-SHA-256 of the token's first two parts, exactly
//!    as sent (the ASCII of `header.claims`, not re-encoded), under each
//!    key of the [`KeySet`], compared in constant time with the decoded
//!    third part. [`verify_signature`] stops here and returns the claims'
//!    bytes.
//! 5. **Claims.** Only now are the claims decoded and read: a JSON object
//!    without duplicate names, with `sub` and `exp`, each known claim of
//!    its type, and an `aud` only if the server has an audience and is in
//!    it ([`verify_for_audience`], RFC 7519 §4.1.3). Unknown claims are
//!    ignored (RFC 7519 §4).
//! 6. **Time.** `exp` and `nbf` against `now`, with [`LEEWAY_SECONDS`] of
//!    tolerance each way for clocks that disagree (RFC 7519 §4.1.4, §4.1.5
//!    allow "some small leeway").
//!
//! Nothing here reads a clock: `now` is an argument, so that every
//! boundary can be tested to the second.

use super::error::{KeyError, Malformed, Part, TokenError};
use super::hmac::{HmacSha256, TAG_LEN, constant_time_eq};
use crate::json::{self, Value};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;

/// The longest token accepted, in bytes. Real tokens are 150–600 bytes;
/// 4 KiB leaves room for a long `rooms` list, is what backends already
/// keep tokens under (a cookie holds 4096 bytes), and bounds what an
/// unauthenticated peer can make the server decode, parse and hash.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Seconds of tolerance for clock skew between the issuer and this
/// server: a token is accepted until `LEEWAY_SECONDS` after its `exp`, and
/// from `LEEWAY_SECONDS` before its `nbf`. RFC 7519 speaks of "no more
/// than a few minutes"; 30 s covers NTP-synchronised machines with a wide
/// margin while keeping a revoked-by-expiry token short-lived.
pub const LEEWAY_SECONDS: i64 = 30;

/// The shortest HS256 key accepted: the hash's output size (RFC 7518
/// §3.2: "a key of the same size as the hash output ... or larger MUST be
/// used").
pub const MIN_KEY_LEN: usize = 32;

/// How many keys a [`KeySet`] holds at most: the current one and the one
/// being rotated in or out.
pub const MAX_KEYS: usize = 2;

/// The only `alg` accepted (RFC 7518 §3.1).
pub const ALGORITHM: &str = "HS256";

/// The `role` that makes a user an operator.
pub const OPERATOR_ROLE: &str = "op";

/// The HS256 keys tokens may be signed with: one, or two while a key is
/// being rotated (a token signed with either is accepted). Each key is
/// kept prepared ([`HmacSha256`] with its pads hashed), not as bytes.
/// Its `Debug` shows how many keys there are, never a key.
#[derive(Clone)]
pub struct KeySet {
    keys: Vec<HmacSha256>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// A key set from one or two keys of at least [`MIN_KEY_LEN`] bytes.
    pub fn new(keys: &[&[u8]]) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::NoKey);
        }
        if keys.len() > MAX_KEYS {
            return Err(KeyError::TooManyKeys);
        }
        if let Some(index) = keys.iter().position(|key| key.len() < MIN_KEY_LEN) {
            return Err(KeyError::TooShort { index: index + 1 });
        }
        Ok(KeySet {
            keys: keys.iter().map(|key| HmacSha256::new(key)).collect(),
        })
    }

    /// A key set from the contents of a secret file: one key per line, the
    /// bytes of the line as they are (only the line ending, `\n` or
    /// `\r\n`, is removed); empty lines are skipped. So a file is rotated
    /// by adding the new key as a second line, then, once no token signed
    /// with the old key can still be valid, removing the old one.
    ///
    /// ```
    /// use wschat::auth::jwt::KeySet;
    /// use wschat::auth::KeyError;
    /// let file = b"first-key-of-at-least-32-bytes!!\r\nsecond-key-of-at-least-32-bytes!\n";
    /// assert_eq!(KeySet::from_secret_file(file).unwrap().count(), 2);
    /// assert_eq!(KeySet::from_secret_file(b"short\n").unwrap_err(), KeyError::TooShort { index: 1 });
    /// ```
    pub fn from_secret_file(contents: &[u8]) -> Result<Self, KeyError> {
        let keys: Vec<&[u8]> = contents
            .split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .filter(|line| !line.is_empty())
            .collect();
        KeySet::new(&keys)
    }

    /// How many keys the set holds (1 or 2).
    pub fn count(&self) -> usize {
        self.keys.len()
    }

    /// Whether `signature` is the HS256 tag of `signing_input` under one of
    /// the keys. Every key is tried, whether or not an earlier one
    /// matched, so the time taken says nothing about which key signed.
    fn signed(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        if signature.len() != TAG_LEN {
            return false;
        }
        let mut matched = false;
        for key in &self.keys {
            let mut hmac = key.clone();
            hmac.update(signing_input);
            matched |= constant_time_eq(&hmac.finalize(), signature);
        }
        matched
    }
}

/// What a verified token says about its holder: the claims the chat uses.
/// NumericDates (RFC 7519 §2) are whole seconds since the epoch; a
/// fractional `exp` or `iat` is rounded down and a fractional `nbf` up,
/// so that rounding never widens the token's validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `sub`: the user's id, unique for the issuer (RFC 7519 §4.1.2).
    pub sub: String,
    /// `exp`: when the token stops being valid (RFC 7519 §4.1.4).
    pub exp: i64,
    /// `name`: the nickname to show, if the issuer gave one.
    pub name: Option<String>,
    /// `nbf`: when the token starts being valid (RFC 7519 §4.1.5).
    pub nbf: Option<i64>,
    /// `iat`: when the token was issued (RFC 7519 §4.1.6); informative.
    pub iat: Option<i64>,
    /// `role`: [`OPERATOR_ROLE`] for operators; other values mean nothing
    /// to this server yet.
    pub role: Option<String>,
    /// `rooms`: the private rooms this user may join (empty if absent).
    pub rooms: Vec<String>,
}

impl Claims {
    /// Whether the token makes its holder an operator (`"role":"op"`).
    pub fn is_operator(&self) -> bool {
        self.role.as_deref() == Some(OPERATOR_ROLE)
    }

    /// The first second (since the epoch) at which these claims are
    /// refused as expired: `exp` plus the leeway. A connection that
    /// signed in with them is due to be closed then.
    pub fn expires_at(&self) -> i64 {
        self.exp.saturating_add(LEEWAY_SECONDS)
    }

    /// Whether the claims are valid at `now` (seconds since the epoch):
    /// before [`Claims::expires_at`], and not before `nbf` minus the
    /// leeway. An expired token is reported as such even if its `nbf` is
    /// also in the future.
    pub fn check_time(&self, now: u64) -> Result<(), TokenError> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        if now >= self.expires_at() {
            return Err(TokenError::Expired);
        }
        if self
            .nbf
            .is_some_and(|nbf| now.saturating_add(LEEWAY_SECONDS) < nbf)
        {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }
}

/// Verifies `token` (its bytes, as received) against `keys` at `now`
/// (seconds since the epoch), and returns its claims. A token that names
/// an audience (`aud`) is refused: this server then cannot tell whether
/// it is one (RFC 7519 §4.1.3); see [`verify_for_audience`].
pub fn verify(token: &[u8], keys: &KeySet, now: u64) -> Result<Claims, TokenError> {
    let claims = verify_signature(token, keys)?;
    let claims = read_claims(&claims, None)?;
    claims.check_time(now)?;
    Ok(claims)
}

/// [`verify`] for a server that knows itself as `audience`: the token must
/// have an `aud` claim that is, or lists, `audience` (RFC 7519 §4.1.3).
/// This is what keeps a token made for another service that shares the
/// key from being accepted here.
pub fn verify_for_audience(
    token: &[u8],
    keys: &KeySet,
    audience: &str,
    now: u64,
) -> Result<Claims, TokenError> {
    let claims = verify_signature(token, keys)?;
    let claims = read_claims(&claims, Some(audience))?;
    claims.check_time(now)?;
    Ok(claims)
}

/// Steps 1–4 of the verification: length, shape, header, signature.
/// Returns the claims part, base64url-decoded but not parsed: bytes that
/// one of the keys signed, whatever they say.
pub fn verify_signature(token: &[u8], keys: &KeySet) -> Result<Vec<u8>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    let [header, claims, signature] = split(token)?;

    let header_members = parse_object(&decode(header, Part::Header)?, Part::Header)?;
    check_header(&header_members)?;

    let signature = decode(signature, Part::Signature)?;
    // The signing input is the token's own first two parts and the dot
    // between them (RFC 7515 §5.1 step 6), not a re-encoding of them.
    let signing_input = &token[..header.len() + 1 + claims.len()];
    if !keys.signed(signing_input, &signature) {
        return Err(TokenError::BadSignature);
    }
    decode(claims, Part::Claims)
}

/// The three parts of a compact JWS: exactly two dots.
fn split(token: &[u8]) -> Result<[&[u8]; 3], TokenError> {
    let mut parts = token.split(|&b| b == b'.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(claims), Some(signature), None) => Ok([header, claims, signature]),
        _ => Err(TokenError::Malformed(Malformed::NotThreeParts)),
    }
}

fn decode(part: &[u8], which: Part) -> Result<Vec<u8>, TokenError> {
    // The engine refuses padding, whitespace, the `+` and `/` of plain
    // base64, and non-zero trailing bits: one text per byte string.
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(Malformed::Base64(which)))
}

/// Parses a decoded part that must be a JSON object (the header or the
/// claims), and returns its members, refusing duplicate names.
fn parse_object(bytes: &[u8], which: Part) -> Result<Vec<(String, Value)>, TokenError> {
    let not_object = TokenError::Malformed(Malformed::NotJsonObject(which));
    let text = std::str::from_utf8(bytes).map_err(|_| not_object)?;
    let Some(Value::Object(members)) = json::parse(text) else {
        return Err(not_object);
    };
    let mut names: Vec<&str> = members.iter().map(|(name, _)| name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(TokenError::Malformed(Malformed::DuplicateMember(which)));
    }
    Ok(members)
}

fn member<'a>(members: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    members.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

fn wrong_type(name: &'static str) -> TokenError {
    TokenError::Malformed(Malformed::WrongType(name))
}

/// Step 3: `alg` must be HS256, and there must be no `crit`. Other header
/// parameters (`typ`, `kid`, ...) are not needed and are ignored: every
/// key is tried, so `kid` selects nothing.
fn check_header(members: &[(String, Value)]) -> Result<(), TokenError> {
    match member(members, "alg") {
        None => return Err(TokenError::Malformed(Malformed::Missing("alg"))),
        Some(Value::String(alg)) if alg == ALGORITHM => {}
        Some(Value::String(_)) => return Err(TokenError::AlgorithmNotAllowed),
        Some(_) => return Err(wrong_type("alg")),
    }
    if member(members, "crit").is_some() {
        return Err(TokenError::CriticalExtension);
    }
    Ok(())
}

/// Which way a fractional NumericDate is rounded: always towards a
/// shorter validity.
#[derive(Clone, Copy)]
enum Round {
    Down,
    Up,
}

/// A NumericDate (RFC 7519 §2): a JSON number of seconds since the epoch,
/// possibly fractional or with an exponent. Beyond the range of `i64` it
/// saturates (a token valid until the year 292 billion is valid for ever).
fn numeric_date(value: &Value, name: &'static str, round: Round) -> Result<i64, TokenError> {
    let Value::Number(text) = value else {
        return Err(wrong_type(name));
    };
    if let Ok(whole) = text.parse::<i64>() {
        return Ok(whole);
    }
    let seconds: f64 = text.parse().map_err(|_| wrong_type(name))?;
    if !seconds.is_finite() {
        return Err(wrong_type(name));
    }
    let rounded = match round {
        Round::Down => seconds.floor(),
        Round::Up => seconds.ceil(),
    };
    Ok(rounded as i64) // `as` saturates at the bounds of i64
}

fn string(value: Value, name: &'static str) -> Result<String, TokenError> {
    match value {
        Value::String(s) => Ok(s),
        _ => Err(wrong_type(name)),
    }
}

fn strings(value: Value, name: &'static str) -> Result<Vec<String>, TokenError> {
    match value {
        Value::Array(items) => items.into_iter().map(|item| string(item, name)).collect(),
        _ => Err(wrong_type(name)),
    }
}

/// Step 5: the claims this server reads, each of its type. The parsed
/// values are moved into the claims, not copied.
fn read_claims(bytes: &[u8], audience: Option<&str>) -> Result<Claims, TokenError> {
    let mut members = parse_object(bytes, Part::Claims)?;
    // Names are unique (checked above), so taking the first is taking
    // the only one.
    let mut take = |name: &str| {
        let at = members.iter().position(|(n, _)| n == name)?;
        Some(members.swap_remove(at).1)
    };
    let required =
        |value: Option<Value>, name| value.ok_or(TokenError::Malformed(Malformed::Missing(name)));

    let sub = string(required(take("sub"), "sub")?, "sub")?;
    if sub.is_empty() {
        return Err(TokenError::Malformed(Malformed::EmptySubject));
    }
    let exp = numeric_date(&required(take("exp"), "exp")?, "exp", Round::Down)?;
    let nbf = take("nbf")
        .map(|v| numeric_date(&v, "nbf", Round::Up))
        .transpose()?;
    let iat = take("iat")
        .map(|v| numeric_date(&v, "iat", Round::Down))
        .transpose()?;
    let name = take("name").map(|v| string(v, "name")).transpose()?;
    let role = take("role").map(|v| string(v, "role")).transpose()?;
    let rooms = take("rooms").map(|v| strings(v, "rooms")).transpose()?;

    // `aud` is a string or an array of strings (RFC 7519 §4.1.3).
    let audiences = match take("aud") {
        None => None,
        Some(Value::String(one)) => Some(vec![one]),
        Some(value) => Some(strings(value, "aud")?),
    };
    let accepted = match (audience, &audiences) {
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(ours), Some(theirs)) => theirs.iter().any(|aud| aud == ours),
    };
    if !accepted {
        return Err(TokenError::WrongAudience);
    }
    Ok(Claims {
        sub,
        exp,
        name,
        nbf,
        iat,
        role,
        rooms: rooms.unwrap_or_default(),
    })
}
