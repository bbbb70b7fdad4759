//! Plain HTTP on the same port: the chat page (embedded in the binary, or
//! from `--www DIR`), `/healthz` and `/metrics`. One request per connection
//! (`Connection: close`): the page is three small files, and keeping the
//! server free of keep-alive bookkeeping keeps it easy to read.

use crate::metrics::Metrics;
use crate::protocol::handshake::{Rejection, Request, WEBSOCKET_VERSION, percent_decode};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

/// The page, compiled into the binary so `cargo run` needs no files at run time.
const EMBEDDED: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("../www/index.html")),
    ("app.js", include_bytes!("../www/app.js")),
    ("style.css", include_bytes!("../www/style.css")),
    ("favicon.svg", include_bytes!("../www/favicon.svg")),
    ("inspect.html", include_bytes!("../www/inspect.html")),
    ("inspect.js", include_bytes!("../www/inspect.js")),
    ("inspect.css", include_bytes!("../www/inspect.css")),
];

/// The page may only load its own files and talk to its own server: a
/// second line of defence should user text ever reach the DOM as HTML.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Where the page comes from.
#[derive(Debug, Clone)]
pub enum StaticFiles {
    Embedded,
    /// `--www DIR`, canonicalised once at start-up.
    Directory(PathBuf),
}

impl StaticFiles {
    pub fn new(www: Option<&Path>) -> std::io::Result<StaticFiles> {
        match www {
            None => Ok(StaticFiles::Embedded),
            Some(dir) => Ok(StaticFiles::Directory(dir.canonicalize()?)),
        }
    }

    fn load(&self, segments: &[String]) -> Option<Vec<u8>> {
        let name = if segments.is_empty() {
            "index.html".to_string()
        } else {
            segments.join("/")
        };
        match self {
            StaticFiles::Embedded => EMBEDDED
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, b)| b.to_vec()),
            StaticFiles::Directory(root) => {
                let path = root.join(&name).canonicalize().ok()?;
                // Belt and braces: the segments are already free of `..`,
                // but a symlink could still point outside the root.
                if !path.starts_with(root) || !path.is_file() {
                    return None;
                }
                std::fs::read(path).ok()
            }
        }
    }
}

/// Answers a request that is not a WebSocket upgrade.
pub fn respond(request: &Request<'_>, files: &StaticFiles, metrics: &Metrics) -> (u16, Vec<u8>) {
    let head_only = request.method == "HEAD";
    if request.method != "GET" && !head_only {
        return (
            405,
            error_response(
                405,
                "only GET and HEAD are served",
                &[("Allow", "GET, HEAD")],
            ),
        );
    }
    let (body, content_type) = match request.path() {
        "/healthz" if metrics.broadcaster_down.load(Relaxed) => {
            return (503, error_response(503, "the chat has stopped", &[]));
        }
        "/healthz" => (b"ok\n".to_vec(), "text/plain; charset=utf-8"),
        "/metrics" => (
            metrics.render().into_bytes(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        "/echo" => {
            return (
                400,
                error_response(400, "/echo is a WebSocket endpoint", &[]),
            );
        }
        path => {
            let segments = match safe_segments(path) {
                Ok(segments) => segments,
                Err(reason) => return (400, error_response(400, reason, &[])),
            };
            match files.load(&segments) {
                Some(body) => {
                    let name = segments.last().map_or("index.html", |s| s.as_str());
                    (body, content_type(name))
                }
                None => return (404, error_response(404, "no such file", &[])),
            }
        }
    };
    (200, ok_response(&body, content_type, head_only))
}

/// Serves the file `name` of the page (the inspector's page, at a path
/// of its own), or 404.
pub fn serve_file(request: &Request<'_>, files: &StaticFiles, name: &str) -> (u16, Vec<u8>) {
    match files.load(&[name.to_string()]) {
        Some(body) => (
            200,
            ok_response(&body, content_type(name), request.method == "HEAD"),
        ),
        None => (404, error_response(404, "no such file", &[])),
    }
}

fn ok_response(body: &[u8], content_type: &str, head_only: bool) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 200 {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\n\
         X-Content-Type-Options: nosniff\r\nContent-Security-Policy: {CONTENT_SECURITY_POLICY}\r\nConnection: close\r\n\r\n",
        status_text(200),
        body.len()
    )
    .into_bytes();
    if !head_only {
        response.extend_from_slice(body);
    }
    response
}

/// Decodes the path and splits it into segments that are safe to look up:
/// percent-escapes decoded once, empty segments (`//`) dropped, and any
/// segment that could climb or hide (`..`, `.`, `.git`), or that holds a
/// backslash, a NUL or a control character, refused outright.
///
/// ```
/// use wschat::http::safe_segments;
/// assert_eq!(safe_segments("/app.js").unwrap(), ["app.js"]);
/// assert!(safe_segments("/../etc/passwd").is_err());
/// assert!(safe_segments("/%2e%2e/%2e%2e/etc/passwd").is_err());
/// assert!(safe_segments("/..%2fetc%2fpasswd").is_err());
/// assert!(safe_segments("/..\\etc\\passwd").is_err());
/// ```
pub fn safe_segments(path: &str) -> Result<Vec<String>, &'static str> {
    let decoded = percent_decode(path).ok_or("malformed percent-encoding in path")?;
    let decoded = String::from_utf8(decoded).map_err(|_| "path is not UTF-8")?;
    let mut segments = Vec::new();
    for segment in decoded.split('/') {
        if segment.is_empty() {
            continue;
        }
        if segment.starts_with('.')
            || segment.contains('\\')
            || segment.chars().any(|c| c.is_control())
        {
            return Err("path not allowed");
        }
        segments.push(segment.to_string());
    }
    Ok(segments)
}

pub fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

// The HTTP side of a refused handshake: RFC 6455 says which status
// (§4.2.1, §4.4); writing an HTTP response is this module's business.
impl Rejection {
    /// The complete HTTP response for this rejection, with the headers the
    /// status calls for (426 names the version we speak, §4.4; 405 the
    /// methods we allow).
    pub fn response(&self) -> Vec<u8> {
        let extra: &[(&str, &str)] = match self.status {
            426 => &[
                ("Sec-WebSocket-Version", WEBSOCKET_VERSION),
                ("Upgrade", "websocket"),
            ],
            405 => &[("Allow", "GET, HEAD")],
            // RFC 9110 §15.5.2: a 401 names the scheme it wants.
            401 => &[("WWW-Authenticate", "Bearer realm=\"wschat\"")],
            _ => &[],
        };
        error_response(self.status, self.reason, extra)
    }
}

/// A complete error response: the status, the extra headers, and the
/// reason as a one-line plain-text body. The connection is closed after it.
pub fn error_response(status: u16, reason: &str, extra_headers: &[(&str, &str)]) -> Vec<u8> {
    let mut response = format!("HTTP/1.1 {status} {}\r\n", status_text(status));
    for (name, value) in extra_headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str(&format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reason}\n",
        reason.len() + 1
    ));
    response.into_bytes()
}

/// The reason phrase for the statuses this server sends.
pub fn status_text(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}
