//! How a token reaches the server and what a connection does with it,
//! still without I/O: the subprotocol that carries a token at the
//! handshake, the refusal a handshake gets, the `/auth TOKEN` refresh,
//! and when an open connection's sign-in runs out (the time is passed in).
//!
//! A browser cannot set headers on a WebSocket, and a query string lands
//! in access logs, so the token rides in `Sec-WebSocket-Protocol` (RFC
//! 6455 §4.1, §11.3.4) as one more offered value, `wschat.auth.TOKEN`
//! (every character of a JWT is an RFC 7230 `tchar`). The server never
//! selects it, so the token is never echoed back in the 101.

use super::{Claims, KeySet, TokenError, jwt};

/// The prefix of the offered subprotocol that carries a token.
pub const SUBPROTOCOL_PREFIX: &str = "wschat.auth.";
/// The command that hands an open connection a fresh token.
pub const REFRESH_COMMAND: &str = "/auth";
/// The 401 reason with `--auth required` and no token.
pub const AUTH_REQUIRED: &str = "auth_required";
/// The error code of a `/auth` whose token names another `sub`.
pub const AUTH_MISMATCH: &str = "auth_mismatch";
/// The Close reason (1008) when a sign-in runs out.
pub const TOKEN_EXPIRED: &str = "token_expired";

/// Whether clients sign in with a signed token (`--auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// No sign-in: every client is a guest; a token offered is ignored.
    Off,
    /// Guests as with `Off`, and signed-in users beside them.
    Optional,
    /// A connection without a valid token is refused (401).
    Required,
}

/// The token among the offered subprotocols, if one carries one (the
/// first such offer; its bytes as offered).
///
/// ```
/// use wschat::auth::transport::offered_token;
/// let offers = ["wschat.v1", "wschat.auth.aaa.bbb.ccc"];
/// assert_eq!(offered_token(offers.into_iter()), Some("aaa.bbb.ccc"));
/// assert_eq!(offered_token(["wschat.v1"].into_iter()), None);
/// ```
pub fn offered_token<'a>(mut offers: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    offers.find_map(|offer| offer.strip_prefix(SUBPROTOCOL_PREFIX))
}

/// Who a handshake says it is: `Ok(None)` a guest, `Ok(Some)` signed in,
/// `Err(reason)` refused with 401 and that stable reason. With `Off`, a
/// token is ignored.
pub fn sign_in(
    mode: AuthMode,
    keys: Option<&KeySet>,
    token: Option<&str>,
    now: u64,
) -> Result<Option<Claims>, &'static str> {
    let (AuthMode::Optional | AuthMode::Required, Some(keys)) = (mode, keys) else {
        return Ok(None);
    };
    match token {
        Some(token) => jwt::verify(token.as_bytes(), keys, now)
            .map(Some)
            .map_err(TokenError::reason),
        None if mode == AuthMode::Required => Err(AUTH_REQUIRED),
        None => Ok(None),
    }
}

/// The argument of a `/auth TOKEN` line, if the line is one (`Some("")`
/// for `/auth` alone).
///
/// ```
/// use wschat::auth::transport::refresh_argument;
/// assert_eq!(refresh_argument("/auth a.b.c"), Some("a.b.c"));
/// assert_eq!(refresh_argument("/auth"), Some(""));
/// assert_eq!(refresh_argument("/authors"), None);
/// ```
pub fn refresh_argument(line: &str) -> Option<&str> {
    let rest = line.strip_prefix(REFRESH_COMMAND)?;
    if rest.is_empty() {
        return Some("");
    }
    rest.starts_with(char::is_whitespace).then(|| rest.trim())
}

/// An open connection's sign-in: whose it is and when it runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub sub: String,
    /// The first second at which the token is refused as expired
    /// ([`Claims::expires_at`]: `exp` plus the leeway).
    pub expires_at: i64,
}

/// Why a `/auth` refresh was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshError {
    /// The token itself was refused.
    Token(TokenError),
    /// It is valid but names another user.
    Mismatch,
}

impl RefreshError {
    /// The stable code an `error` event carries.
    pub fn code(self) -> &'static str {
        match self {
            RefreshError::Token(e) => e.reason(),
            RefreshError::Mismatch => AUTH_MISMATCH,
        }
    }
}

impl SignedIn {
    pub fn new(claims: &Claims) -> SignedIn {
        SignedIn {
            sub: claims.sub.clone(),
            expires_at: claims.expires_at(),
        }
    }

    /// Whether the sign-in has run out at `now` (seconds since the epoch).
    pub fn is_due(&self, now: u64) -> bool {
        i64::try_from(now).unwrap_or(i64::MAX) >= self.expires_at
    }

    /// Seconds from `now` until it runs out (0 if it has).
    pub fn seconds_left(&self, now: u64) -> u64 {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        u64::try_from(self.expires_at.saturating_sub(now)).unwrap_or(0)
    }

    /// A fresh token on the same connection: it must verify now and name
    /// the same `sub`; then the sign-in runs until its expiry. Returns the
    /// new token's claims (its `exp`, and the role and rooms the chat
    /// takes from it).
    pub fn refresh(
        &mut self,
        token: &str,
        keys: &KeySet,
        now: u64,
    ) -> Result<Claims, RefreshError> {
        let claims = jwt::verify(token.as_bytes(), keys, now).map_err(RefreshError::Token)?;
        if claims.sub != self.sub {
            return Err(RefreshError::Mismatch);
        }
        self.expires_at = claims.expires_at();
        Ok(claims)
    }
}
