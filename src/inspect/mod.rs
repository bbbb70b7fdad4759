//! The frame inspector: `/inspect`, a page that shows every byte of its own
//! WebSocket connection, as the server read and wrote it.
//!
//! A frame cannot describe itself, so the reports travel on a channel of
//! their own. The page opens two sockets:
//!
//! ```text
//!  page ──── /inspect/ws ─────▶ the inspected connection (inspected.rs):
//!                                an echo that takes no part in the chat; its
//!                                reader and writer record every byte
//!       ◀─── first message: {"inspect":{"conn":ID,"key":SECRET}}
//!  page ──── /inspect/feed?conn=ID&key=SECRET ──▶ the feed (feed.rs): the
//!                                reports, as JSON lines; the page's requests
//!                                ("send this in 3 fragments") the other way
//! ```
//!
//! The key is 128 random bits, good for one feed: only the page that
//! opened the inspected connection (and so read its first message) sees
//! its bytes, and no other connection is ever recorded. The feed's own
//! frames are never reported. With `--inspect off` none of this exists:
//! the page and both endpoints answer 404.
//!
//! Cost: the chat and `/echo` never look at any of this; the only check on
//! their path is one comparison of the request path at the handshake.

mod feed;
mod inspected;
mod session;

use crate::access;
use crate::http::{self, StaticFiles};
use crate::metrics::Metrics;
use crate::protocol::deflate::{Agreement, negotiate_where};
use crate::protocol::handshake::{Rejection, Request};
use session::Session;
use std::collections::HashMap;
use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Inspected connections open at once (each has a feed at most); more
/// are answered 503 [`INSPECTOR_BUSY`].
pub const MAX_INSPECTED: usize = 8;
/// Payload bytes shown per frame; the rest is counted, not shown.
pub const MAX_FRAME_SHOWN: usize = 4096;
/// Frames reported per second per inspected connection; frames over it
/// are counted in a `skipped` report.
pub const MAX_FRAMES_PER_SECOND: u32 = 100;
/// The largest message the inspected connection accepts (1009 above).
pub const MAX_INSPECT_MESSAGE: usize = 64 * 1024;
/// The most fragments the page may ask the server to send one message in.
pub const MAX_FRAGMENTS: usize = 64;
/// Reports held for a feed not attached yet (or slow); beyond, frames
/// are counted as skipped. At most about 12 KiB each (a frame's shown
/// bytes in hex), so 3 MiB per inspected connection at worst.
pub const MAX_BACKLOG: usize = 256;

/// The page, its inspected connection and its feed.
pub const PAGE_PATH: &str = "/inspect";
pub const INSPECTED_PATH: &str = "/inspect/ws";
pub const FEED_PATH: &str = "/inspect/feed";
/// The page's own files (served like the chat page's, and 404 when off).
const PAGE_FILES: &[&str] = &["/inspect.js", "/inspect.css"];

/// The answer past [`MAX_INSPECTED`].
pub const INSPECTOR_BUSY: &str = "inspector busy: at most 8 inspected connections at once";
/// The answer to a feed whose connection or key is unknown or used.
pub const UNKNOWN_FEED: &str = "no such inspected connection, or its key was used";

/// The inspected connections now open, by id.
pub struct Inspectors {
    sessions: Mutex<HashMap<u64, Arc<Session>>>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Inspectors {
    pub fn new(metrics: Arc<Metrics>) -> Inspectors {
        Inspectors {
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            metrics,
        }
    }

    /// A place for a new inspected connection, if one is free.
    fn open(
        &self,
        writer: TcpStream,
        key: String,
        deflate: Option<Agreement>,
    ) -> Option<Place<'_>> {
        let mut sessions = self.sessions.lock().expect("inspector registry");
        if sessions.len() >= MAX_INSPECTED {
            return None;
        }
        let id = self.next_id.fetch_add(1, Relaxed);
        let session = Arc::new(Session::new(id, key, deflate, writer, self.metrics.clone()));
        sessions.insert(id, session.clone());
        self.metrics.inspect_sessions_total.fetch_add(1, Relaxed);
        Some(Place {
            inspectors: self,
            session,
        })
    }

    /// The server is stopping: every inspected connection gets a Close
    /// with 1001 (RFC 6455 §7.4.1), as chat and echo clients do.
    pub fn close_all(&self) {
        let sessions: Vec<Arc<Session>> = self
            .sessions
            .lock()
            .expect("inspector registry")
            .values()
            .cloned()
            .collect();
        for session in sessions {
            inspected::send_close(&session, 1001, "shutting_down");
        }
    }

    /// The session `id`, if `key` is its key and no feed took it yet.
    fn attach_feed(&self, id: u64, key: &str) -> Option<Arc<Session>> {
        let sessions = self.sessions.lock().expect("inspector registry");
        let session = sessions.get(&id)?;
        session.take_feed(key).then(|| session.clone())
    }
}

/// An inspected connection's entry in the registry, removed when dropped.
struct Place<'a> {
    inspectors: &'a Inspectors,
    session: Arc<Session>,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.session.end();
        let mut sessions = self.inspectors.sessions.lock().expect("inspector registry");
        sessions.remove(&self.session.id);
    }
}

/// Is `path` one of the inspector's WebSocket endpoints?
pub fn is_endpoint(path: &str) -> bool {
    path == INSPECTED_PATH || path == FEED_PATH
}

/// Answers the plain-HTTP requests that belong to the inspector (the
/// page, its files, its endpoints asked without an upgrade), `None` for
/// the rest. With the inspector off (`on == false`) all of them are 404.
pub fn answer_http(request: &Request<'_>, files: &StaticFiles, on: bool) -> Option<(u16, Vec<u8>)> {
    let path = request.path();
    let ours = path == PAGE_PATH || PAGE_FILES.contains(&path) || is_endpoint(path);
    if !ours {
        return None;
    }
    if !on {
        return Some((404, http::error_response(404, "the inspector is off", &[])));
    }
    if request.method != "GET" && request.method != "HEAD" {
        return None; // 405, as for any page
    }
    if is_endpoint(path) {
        let reason = "this is a WebSocket endpoint of the inspector (open /inspect)";
        return Some((400, http::error_response(400, reason, &[])));
    }
    if path == PAGE_PATH {
        return Some(http::serve_file(request, files, "inspect.html"));
    }
    None
}

/// Serves an upgrade to one of the inspector's endpoints, start to end:
/// the handshake (refused with a status where it must be), then the
/// inspected connection's read loop or the feed's. `buffered` is what the
/// client sent behind its request head; `head` is the head as received.
/// `take_place` takes the connection's place under the caller's limits
/// (its address's, `--max-clients-per-ip`), held until the connection
/// ends; it is called once the handshake is valid, before a feed uses up
/// its key or an inspected connection takes one of [`MAX_INSPECTED`].
pub fn serve<Held>(
    stream: &TcpStream,
    request: &Request<'_>,
    head: &[u8],
    buffered: &[u8],
    inspectors: &Inspectors,
    config: &crate::config::Config,
    take_place: impl FnOnce() -> Result<Held, Rejection>,
) -> Result<(), Rejection> {
    let upgrade = request.validate_upgrade()?;
    if !access::origin_allowed(upgrade.origin, upgrade.host, &config.allow_origins) {
        return Err(Rejection::new(
            403,
            "origin not allowed (see --allow-origin)",
        ));
    }
    let _place = take_place()?;
    if request.path() == FEED_PATH {
        let session = query(request.target, "conn")
            .and_then(|id| id.parse().ok())
            .zip(query(request.target, "key"))
            .and_then(|(id, key)| inspectors.attach_feed(id, key))
            .ok_or(Rejection::new(403, UNKNOWN_FEED))?;
        feed::run(stream, upgrade.key, buffered, &session);
        return Ok(());
    }
    let key = random_key().ok_or(Rejection::new(503, "no source of random numbers"))?;
    let writer = stream
        .try_clone()
        .map_err(|_| Rejection::new(503, "out of file descriptors"))?;
    // `?deflate=off`: decline the offer browsers always make, to compare.
    let deflate_off = query(request.target, "deflate") == Some("off");
    let deflate = if config.deflate && !deflate_off {
        negotiate_where(request.header_values("Sec-WebSocket-Extensions"), |_| true)
    } else {
        None
    };
    let Some(place) = inspectors.open(writer, key, deflate) else {
        inspectors.metrics.inspect_refused.fetch_add(1, Relaxed);
        return Err(Rejection::new(503, INSPECTOR_BUSY));
    };
    inspected::run(stream, request, head, buffered, &place.session, config);
    Ok(())
}

/// The value of query parameter `name` in a request target, as written.
fn query<'a>(target: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = target.split_once('?')?;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// 128 random bits from the kernel, in hex: the feed's key.
fn random_key() -> Option<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Ends our side and reads off what the peer still sends, for up to a
/// second, so that TCP ends with a FIN rather than a reset.
fn drain(mut stream: &TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let mut scratch = [0u8; 512];
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        if !matches!(stream.read(&mut scratch), Ok(n) if n > 0) {
            return;
        }
    }
}

/// `48 65 6c`: bytes as the page shows them.
fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Headers whose values page script must never see (the browser hides
/// HttpOnly cookies from it, and credentials in general).
const REDACTED_HEADERS: &[&str] = &["cookie", "authorization", "proxy-authorization"];
/// Query parameters likewise (a sign-in token may ride in the URL).
const REDACTED_PARAMS: &[&str] = &["token", "access_token"];
pub const REDACTED: &str = "[redacted]";

/// The request head as received, with credentials replaced by
/// [`REDACTED`]: the values of [`REDACTED_HEADERS`], of the query
/// parameters in [`REDACTED_PARAMS`], and the sign-in token a page offers
/// as a subprotocol (`wschat.auth.TOKEN` in `Sec-WebSocket-Protocol`,
/// shown as `wschat.auth.[redacted]`; the other offers stay).
///
/// ```
/// use wschat::inspect::redact_head;
/// let head = "GET /inspect/ws?token=abc&x=1 HTTP/1.1\r\nHost: h\r\nCookie: s=1\r\n\
///             Sec-WebSocket-Protocol: wschat.v1, wschat.auth.eyJ.eyJ.sig\r\n\r\n";
/// assert_eq!(
///     redact_head(head),
///     "GET /inspect/ws?token=[redacted]&x=1 HTTP/1.1\r\nHost: h\r\nCookie: [redacted]\r\n\
///      Sec-WebSocket-Protocol: wschat.v1, wschat.auth.[redacted]\r\n\r\n"
/// );
/// ```
pub fn redact_head(head: &str) -> String {
    let mut out = String::with_capacity(head.len());
    for (i, line) in head.split_inclusive("\r\n").enumerate() {
        if i == 0 {
            out.push_str(&redact_request_line(line));
            continue;
        }
        match line.split_once(':') {
            Some((name, _))
                if REDACTED_HEADERS.contains(&name.trim().to_ascii_lowercase().as_str()) =>
            {
                out.push_str(name);
                out.push_str(": ");
                out.push_str(REDACTED);
                if line.ends_with("\r\n") {
                    out.push_str("\r\n");
                }
            }
            Some((name, value)) if name.trim().eq_ignore_ascii_case("sec-websocket-protocol") => {
                out.push_str(name);
                out.push(':');
                out.push_str(&redact_offers(value));
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// A `Sec-WebSocket-Protocol` value (and its line ending) with the token
/// of every `wschat.auth.TOKEN` offer replaced, spacing kept.
fn redact_offers(value: &str) -> String {
    let prefix = crate::auth::transport::SUBPROTOCOL_PREFIX;
    value
        .split(',')
        .map(|offer| {
            let start = offer.len() - offer.trim_start().len();
            let (lead, rest) = offer.split_at(start);
            let Some(token) = rest
                .get(..prefix.len())
                .filter(|p| p.eq_ignore_ascii_case(prefix))
            else {
                return offer.to_string();
            };
            // What follows the token: spaces, and the line's end.
            let token_len = rest[prefix.len()..]
                .find([' ', '\t', '\r', '\n'])
                .unwrap_or(rest.len() - prefix.len());
            let tail = &rest[prefix.len() + token_len..];
            format!("{lead}{token}{REDACTED}{tail}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn redact_request_line(line: &str) -> String {
    let mut parts = line.splitn(3, ' ');
    let (Some(method), Some(target), rest) = (parts.next(), parts.next(), parts.next()) else {
        return line.to_string();
    };
    let Some((path, query)) = target.split_once('?') else {
        return line.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if REDACTED_PARAMS.contains(&k.to_ascii_lowercase().as_str()) => {
                format!("{k}={REDACTED}")
            }
            _ => pair.to_string(),
        })
        .collect();
    let mut out = format!("{method} {path}?{}", query.join("&"));
    if let Some(rest) = rest {
        out.push(' ');
        out.push_str(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_credentials_and_keeps_the_rest() {
        let head = "GET /inspect/ws?a=1&TOKEN=s3cret HTTP/1.1\r\nHost: h\r\n\
                    authorization: Bearer xyz\r\nCookie: sid=42\r\n\
                    Proxy-Authorization: Basic q\r\nX-Token: visible\r\n\r\n";
        let out = redact_head(head);
        for secret in ["s3cret", "xyz", "sid=42", "Basic q"] {
            assert!(!out.contains(secret), "{secret} left in {out}");
        }
        assert!(out.starts_with("GET /inspect/ws?a=1&TOKEN=[redacted] HTTP/1.1\r\n"));
        assert!(out.contains("X-Token: visible\r\n"));
        assert!(out.ends_with("\r\n\r\n"));
    }

    #[test]
    fn a_token_offered_as_a_subprotocol_is_redacted_wherever_it_stands() {
        let head = "GET / HTTP/1.1\r\nsec-websocket-protocol:wschat.auth.AAA.BBB.CCC ,wschat.v1\r\n\
                    Sec-WebSocket-Protocol: chat,  WSCHAT.AUTH.DDD.EEE.FFF\r\n\r\n";
        let out = redact_head(head);
        for secret in ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"] {
            assert!(!out.contains(secret), "{secret} left in {out}");
        }
        assert!(
            out.contains("sec-websocket-protocol:wschat.auth.[redacted] ,wschat.v1\r\n"),
            "{out}"
        );
        assert!(
            out.contains("Sec-WebSocket-Protocol: chat,  WSCHAT.AUTH.[redacted]\r\n"),
            "{out}"
        );
    }

    #[test]
    fn a_request_line_without_a_query_is_left_alone() {
        assert_eq!(
            redact_head("GET / HTTP/1.1\r\n\r\n"),
            "GET / HTTP/1.1\r\n\r\n"
        );
    }

    #[test]
    fn the_busy_answer_names_the_limit() {
        assert!(INSPECTOR_BUSY.contains(&format!("at most {MAX_INSPECTED} ")));
    }

    #[test]
    fn query_parameters_are_found_by_exact_name() {
        assert_eq!(query("/f?conn=3&key=ab", "key"), Some("ab"));
        assert_eq!(query("/f?conn=3&xkey=ab", "key"), None);
        assert_eq!(query("/f", "key"), None);
    }
}
