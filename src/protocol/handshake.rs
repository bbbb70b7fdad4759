//! The opening handshake (RFC 6455 §4): parsing the client's HTTP/1.1
//! request head, checking it against §4.2.1, computing
//! `Sec-WebSocket-Accept` (§4.2.2), and writing the responses.
//!
//! Parsing works like `httparse`: the head is scanned in place (nothing is
//! copied; names and values are slices of the input), [`find_head_end`]
//! answers "not yet" until the blank line has arrived, and every limit is a
//! named constant.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};

/// The longest request head accepted; a longer one is answered with 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// The most header lines accepted; more is answered with 431 too.
pub const MAX_HEADERS: usize = 64;
/// The GUID of §1.3 that the accept key is derived with.
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The only protocol version this server speaks (§4.1).
pub const WEBSOCKET_VERSION: &str = "13";

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key` (§4.2.2):
/// base64(SHA-1(key + GUID)).
///
/// ```
/// // The example of RFC 6455 §1.3.
/// assert_eq!(
///     wschat::protocol::handshake::accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
/// );
/// ```
pub fn accept_key(key: &str) -> String {
    String::from_utf8_lossy(&accept_key_bytes(key)).into_owned()
}

/// Length of a `Sec-WebSocket-Accept` value: a 20-byte SHA-1 in base64.
const ACCEPT_KEY_LEN: usize = 28;

/// [`accept_key`] without an allocation: on a connection's thread, a
/// freed block stays cached by the allocator for the connection's life.
fn accept_key_bytes(key: &str) -> [u8; ACCEPT_KEY_LEN] {
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(WEBSOCKET_GUID.as_bytes());
    let mut encoded = [0u8; ACCEPT_KEY_LEN];
    let written = BASE64
        .encode_slice(sha1.finalize(), &mut encoded)
        .expect("20 bytes are 28 in base64");
    debug_assert_eq!(written, ACCEPT_KEY_LEN);
    encoded
}

/// `%XX` escapes in a request target decoded (RFC 3986 §2.1): the path,
/// a query value (`?rooms=`), or a URL's user and password. An escape is
/// `%` and exactly two hex digits, either case; `None` if any escape is
/// anything else. The bytes may not be UTF-8; callers that want text
/// check it.
///
/// ```
/// use wschat::protocol::handshake::percent_decode;
/// assert_eq!(percent_decode("caf%C3%A9").unwrap(), "café".as_bytes());
/// assert_eq!(percent_decode("%zz"), None);
/// assert_eq!(percent_decode("50%"), None);
/// assert_eq!(percent_decode("%+1"), None); // a sign is not a hex digit
/// ```
pub fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let &[high, low] = bytes.get(i + 1..i + 3)? else {
                return None;
            };
            out.push((hex_digit(high)? << 4) | hex_digit(low)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The value of one ASCII hex digit. Not `u8::from_str_radix`, which also
/// takes a leading `+` (so `%+1` would pass as 0x01).
fn hex_digit(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|digit| digit as u8)
}

/// Finds the end of the request head: the index just past the blank line
/// that ends it, or `None` if it has not arrived yet.
///
/// `scanned` is how many bytes a previous call already looked at, so that a
/// caller reading the head in pieces scans each byte about once: the cost
/// stays linear in the bytes received however small the pieces are. Lines
/// may end in CRLF or, leniently (RFC 9112 §2.2), a bare LF.
pub fn find_head_end(buf: &[u8], scanned: usize) -> Option<usize> {
    // Step back far enough to catch a terminator split across pieces.
    let from = scanned.saturating_sub(3);
    let mut i = from;
    while let Some(offset) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + offset;
        if buf.get(nl + 1) == Some(&b'\n') {
            return Some(nl + 2);
        }
        if buf.get(nl + 1) == Some(&b'\r') && buf.get(nl + 2) == Some(&b'\n') {
            return Some(nl + 3);
        }
        i = nl + 1;
    }
    None
}

/// One header line: a name and its value with surrounding spaces trimmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

/// A parsed request head. Borrows from the bytes it was parsed from.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The request target as sent, e.g. `/echo?x=1`.
    pub target: &'a str,
    /// The `x` of `HTTP/1.x`.
    pub minor_version: u8,
    /// On the heap, not inline: a connection thread's stack stays small,
    /// and the list is freed once the handshake is done. (Allocated at
    /// full size: blocks over 1 KiB go back to the allocator's shared
    /// pool when freed instead of staying in a per-thread cache.)
    headers: Vec<Header<'a>>,
}

/// Why a request is refused, and with which HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    /// One line, sent as the body and logged.
    pub reason: &'static str,
}

impl Rejection {
    pub const fn new(status: u16, reason: &'static str) -> Self {
        Rejection { status, reason }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl<'a> Request<'a> {
    /// Parses a complete head (as delimited by [`find_head_end`]).
    ///
    /// ```
    /// use wschat::protocol::handshake::Request;
    ///
    /// let head = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\r\n";
    /// let request = Request::parse(head).unwrap();
    /// assert_eq!((request.method, request.path()), ("GET", "/chat"));
    /// assert_eq!(request.header("upgrade"), Some("websocket")); // names ignore case
    /// ```
    pub fn parse(head: &'a [u8]) -> Result<Request<'a>, Rejection> {
        if head.len() > MAX_HEAD_BYTES {
            return Err(Rejection::new(431, "request head too large"));
        }
        let text = std::str::from_utf8(head)
            .map_err(|_| Rejection::new(400, "request head is not UTF-8"))?;
        let mut lines = text
            .split('\n')
            .map(|line| line.strip_suffix('\r').unwrap_or(line));
        // RFC 9112 §2.2: a bare CR is invalid; RFC 9110 §5.5: a field value
        // holding CR, LF or NUL MUST be refused (or cleaned), and no
        // control character but HTAB belongs in one, nor in the request
        // line (RFC 9112 §3). Such a value could otherwise reach a log or
        // another program's parser, which may read it differently.
        if lines
            .clone()
            .any(|line| line.chars().any(|c| c.is_ascii_control() && c != '\t'))
        {
            return Err(Rejection::new(400, "control character in the request head"));
        }
        let request_line = lines.next().unwrap_or("");
        let mut parts = request_line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Rejection::new(400, "malformed request line"));
        };
        if method.is_empty() || !method.bytes().all(is_token_byte) || target.is_empty() {
            return Err(Rejection::new(400, "malformed request line"));
        }
        let minor_version = match version {
            "HTTP/1.1" => 1,
            "HTTP/1.0" => 0,
            _ => return Err(Rejection::new(505, "HTTP version not supported")),
        };
        let mut request = Request {
            method,
            target,
            minor_version,
            headers: Vec::with_capacity(MAX_HEADERS),
        };
        for line in lines {
            if line.is_empty() {
                break; // the blank line that ends the head
            }
            if line.starts_with([' ', '\t']) {
                // RFC 9112 §5.2: obsolete line folding is to be rejected.
                return Err(Rejection::new(400, "obsolete header line folding"));
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(Rejection::new(400, "malformed header line"));
            };
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(Rejection::new(400, "malformed header name"));
            }
            if request.headers.len() == MAX_HEADERS {
                return Err(Rejection::new(431, "too many header lines"));
            }
            request.headers.push(Header {
                name,
                value: value.trim_matches([' ', '\t']),
            });
        }
        Ok(request)
    }

    pub fn headers(&self) -> &[Header<'a>] {
        &self.headers
    }

    /// The first value of header `name` (names compare ignoring case).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.header_values(name).next()
    }

    /// Every value of header `name`, in order.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.headers()
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The comma-separated tokens of every `name` header, trimmed
    /// (`Connection: keep-alive, Upgrade` gives `keep-alive` and `Upgrade`).
    pub fn header_tokens<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.header_values(name)
            .flat_map(|v| v.split(','))
            .map(|t| t.trim_matches([' ', '\t']))
            .filter(|t| !t.is_empty())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_tokens(name)
            .any(|t| t.eq_ignore_ascii_case(token))
    }

    fn single_header(
        &self,
        name: &'static str,
        duplicate: &'static str,
    ) -> Result<Option<&'a str>, Rejection> {
        let mut values = self.header_values(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(Rejection::new(400, duplicate));
        }
        Ok(first)
    }

    /// The path of the target, without the query string.
    pub fn path(&self) -> &'a str {
        self.target.split(['?', '#']).next().unwrap_or(self.target)
    }

    /// Does the client try to open a WebSocket? True if it sent any of the
    /// headers that only a WebSocket client sends; such a request is then
    /// held to every rule of §4.2.1 rather than served as a page.
    /// `Upgrade` and `Connection: upgrade` alone are not such headers: a
    /// client may offer another protocol (`curl --http2` offers `h2c`),
    /// and a server may ignore that offer (RFC 9110 §7.8) and answer.
    pub fn is_websocket_attempt(&self) -> bool {
        self.has_token("Upgrade", "websocket")
            || self.header("Sec-WebSocket-Key").is_some()
            || self.header("Sec-WebSocket-Version").is_some()
    }

    /// Does the client offer `protocol` in `Sec-WebSocket-Protocol` (§4.1,
    /// a comma-separated list, possibly over several header lines)?
    pub fn offers_protocol(&self, protocol: &str) -> bool {
        self.header_tokens("Sec-WebSocket-Protocol")
            .any(|t| t == protocol)
    }

    /// Checks every requirement of §4.2.1 on an opening handshake and
    /// returns what the response needs.
    pub fn validate_upgrade(&self) -> Result<Upgrade<'a>, Rejection> {
        if self.method != "GET" {
            return Err(Rejection::new(405, "the WebSocket handshake must be a GET"));
        }
        if self.minor_version < 1 {
            return Err(Rejection::new(
                400,
                "the WebSocket handshake needs HTTP/1.1",
            ));
        }
        let host = self
            .single_header("Host", "duplicate Host header")?
            .filter(|h| !h.is_empty())
            .ok_or(Rejection::new(400, "missing Host header"))?;
        if !self.has_token("Upgrade", "websocket") {
            return Err(Rejection::new(
                400,
                "missing or wrong Upgrade header (need websocket)",
            ));
        }
        if !self.has_token("Connection", "upgrade") {
            return Err(Rejection::new(
                400,
                "Connection header must contain Upgrade",
            ));
        }
        let key = self
            .single_header("Sec-WebSocket-Key", "duplicate Sec-WebSocket-Key header")?
            .ok_or(Rejection::new(400, "missing Sec-WebSocket-Key header"))?;
        if !is_valid_key(key) {
            return Err(Rejection::new(
                400,
                "Sec-WebSocket-Key must be base64 of 16 bytes",
            ));
        }
        match self.single_header(
            "Sec-WebSocket-Version",
            "duplicate Sec-WebSocket-Version header",
        )? {
            Some(WEBSOCKET_VERSION) => {}
            _ => {
                return Err(Rejection::new(
                    426,
                    "unsupported Sec-WebSocket-Version (need 13)",
                ));
            }
        }
        let origin = self.single_header("Origin", "duplicate Origin header")?;
        Ok(Upgrade { host, key, origin })
    }
}

/// What a valid opening handshake carries that the response needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upgrade<'a> {
    pub host: &'a str,
    pub key: &'a str,
    pub origin: Option<&'a str>,
}

/// §4.1: the key is a base64-encoded random 16-byte value (24 characters).
fn is_valid_key(key: &str) -> bool {
    // Decoded into the stack: no allocation (see `accept_key_bytes`).
    let mut bytes = [0u8; 18];
    key.len() == 24 && BASE64.decode_slice(key, &mut bytes) == Ok(16)
}

/// RFC 9110 §5.6.2 `tchar`: what a method or header name may contain.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The `101 Switching Protocols` response of §4.2.2, with the subprotocol
/// if one was chosen (only ever one the client offered).
///
/// ```
/// use wschat::protocol::handshake::response_101;
///
/// let response = response_101("dGhlIHNhbXBsZSBub25jZQ==", None);
/// assert_eq!(
///     String::from_utf8(response).unwrap(),
///     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///      Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
/// );
/// ```
pub fn response_101(key: &str, protocol: Option<&str>) -> Vec<u8> {
    response_101_with_extensions(key, protocol, None)
}

/// [`response_101`] with a `Sec-WebSocket-Extensions` header when an
/// extension was accepted (§4.2.2 step 5, §9.1): its value is the
/// agreement, for instance permessage-deflate's (RFC 7692 §5).
///
/// ```
/// use wschat::protocol::handshake::response_101_with_extensions;
///
/// let extensions = "permessage-deflate; server_no_context_takeover";
/// let response = response_101_with_extensions("dGhlIHNhbXBsZSBub25jZQ==", None, Some(extensions));
/// assert!(String::from_utf8(response).unwrap().ends_with(
///     "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n"
/// ));
/// ```
pub fn response_101_with_extensions(
    key: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
) -> Vec<u8> {
    // Sized once: a connection thread keeps the blocks it frees cached for
    // the connection's life, so the response is not grown piece by piece.
    let optional = protocol.map_or(0, str::len) + extensions.map_or(0, str::len);
    let mut response = String::with_capacity(200 + optional);
    response.push_str(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    let accept = accept_key_bytes(key);
    response.push_str(std::str::from_utf8(&accept).expect("base64 is ASCII"));
    response.push_str("\r\n");
    if let Some(protocol) = protocol {
        response.push_str("Sec-WebSocket-Protocol: ");
        response.push_str(protocol);
        response.push_str("\r\n");
    }
    if let Some(extensions) = extensions {
        response.push_str("Sec-WebSocket-Extensions: ");
        response.push_str(extensions);
        response.push_str("\r\n");
    }
    response.push_str("\r\n");
    response.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn rfc_1_3_accept_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_percent_escape_is_exactly_two_hex_digits() {
        assert_eq!(
            percent_decode("%41%7a%7A%00%ff%FF").unwrap(),
            b"Azz\0\xff\xff"
        );
        assert_eq!(percent_decode("a+b").unwrap(), b"a+b"); // '+' alone is itself
        // A sign, a space or a non-hex byte where a digit belongs; an escape
        // cut short. from_str_radix took "+1" as 1.
        for bad in [
            "%+1", "%+f", "%-1", "% 1", "%1 ", "%1+", "%g0", "%0g", "%zz", "%", "%1", "x%",
            "%\u{e9}", "%1\u{e9}",
        ] {
            assert_eq!(percent_decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn control_characters_in_the_head_are_400() {
        // Found by the handshake fuzz target: a bare CR (and a 0x01) inside
        // a header value was kept in the value.
        for bad in [
            "Origin: http://a\rb",
            "Origin: http:/\u{1}/a",
            "Origin: a\0b",
            "X: \u{7f}",
        ] {
            let head = GOOD.replace("Origin: http://example.com", bad);
            let rejection = Request::parse(head.as_bytes()).unwrap_err();
            assert_eq!(
                (rejection.status, rejection.reason),
                (400, "control character in the request head"),
                "{bad:?}"
            );
        }
        let head = GOOD.replace("GET /chat", "GET /ch\rat");
        assert_eq!(Request::parse(head.as_bytes()).unwrap_err().status, 400);
        // A tab is allowed in a value; lines may end in CRLF or LF.
        let head = GOOD.replace(
            "Origin: http://example.com",
            "Origin:\thttp://example.com\t",
        );
        let request = Request::parse(head.as_bytes()).unwrap();
        assert_eq!(request.header("origin"), Some("http://example.com"));
        assert!(Request::parse(GOOD.replace("\r\n", "\n").as_bytes()).is_ok());
    }

    #[test]
    fn the_rfc_request_is_valid() {
        let request = Request::parse(GOOD.as_bytes()).unwrap();
        let upgrade = request.validate_upgrade().unwrap();
        assert_eq!(upgrade.key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(upgrade.origin, Some("http://example.com"));
        assert!(request.offers_protocol("superchat"));
        assert!(!request.offers_protocol("wschat.v1"));
    }

    #[test]
    fn head_end_is_found_in_any_piece_size_and_scanning_is_linear() {
        let bytes = GOOD.as_bytes();
        for piece in 1..=8 {
            let mut scanned = 0;
            let mut found = None;
            let mut len = 0;
            while found.is_none() && len < bytes.len() {
                len = (len + piece).min(bytes.len());
                found = find_head_end(&bytes[..len], scanned);
                scanned = len;
            }
            assert_eq!(found, Some(bytes.len()), "piece {piece}");
        }
        assert_eq!(find_head_end(b"GET / HTTP/1.1\nHost: x\n\n", 0), Some(24));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0), None);
    }

    #[test]
    fn each_missing_requirement_has_its_answer() {
        let without = |line: &str| GOOD.replace(line, "");
        let status = |head: &str| {
            Request::parse(head.as_bytes())
                .and_then(|r| r.validate_upgrade())
                .map(|_| ())
                .unwrap_err()
                .status
        };
        assert_eq!(status(&without("Host: server.example.com\r\n")), 400);
        assert_eq!(status(&without("Upgrade: websocket\r\n")), 400);
        assert_eq!(status(&without("Connection: Upgrade\r\n")), 400);
        assert_eq!(
            status(&without("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")),
            400
        );
        assert_eq!(status(&without("Sec-WebSocket-Version: 13\r\n")), 426);
        assert_eq!(status(&GOOD.replace("13\r\n", "8\r\n")), 426);
        assert_eq!(status(&GOOD.replace("GET", "POST")), 405);
        assert_eq!(status(&GOOD.replace("HTTP/1.1", "HTTP/1.0")), 400);
        assert_eq!(
            status(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ==")),
            400
        );
        assert_eq!(status(&GOOD.replace("Host:", "Host: a\r\nHost:")), 400);
        assert_eq!(
            status(&GOOD.replace("Origin:", "X-Folded: a\r\n b\r\nOrigin:")),
            400
        );
    }

    #[test]
    fn tokens_and_case() {
        let head = GOOD
            .replace("Connection: Upgrade", "connection: keep-alive, UPGRADE")
            .replace("Upgrade: websocket", "UPGRADE: WebSocket");
        assert!(
            Request::parse(head.as_bytes())
                .unwrap()
                .validate_upgrade()
                .is_ok()
        );
    }

    #[test]
    fn other_upgrades_are_plain_http_requests() {
        let attempt = |head: &str| {
            Request::parse(head.as_bytes())
                .unwrap()
                .is_websocket_attempt()
        };
        // curl --http2 on an http:// URL: served as a page, not refused.
        assert!(!attempt(
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        ));
        assert!(!attempt(
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n\r\n"
        ));
        // Anything WebSocket-specific is held to §4.2.1 (and refused there).
        assert!(attempt(
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\n\r\n"
        ));
        assert!(attempt(
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ));
        assert!(attempt(
            "GET / HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Key: a\r\n\r\n"
        ));
        assert!(attempt(GOOD));
    }

    #[test]
    fn oversized_head_is_431() {
        let mut head = String::from("GET / HTTP/1.1\r\n");
        while head.len() <= MAX_HEAD_BYTES {
            head.push_str(
                "X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        head.push_str("\r\n");
        assert_eq!(Request::parse(head.as_bytes()).unwrap_err().status, 431);
    }
}
