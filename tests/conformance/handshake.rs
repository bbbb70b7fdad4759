//! The opening handshake as wschat's own policies shape it: origins
//! (`--allow-origin`), paths, subprotocols (`wschat.v1` on `/`), head size
//! limits, the handshake timeout, and what it refuses that the RFCs leave
//! open (an empty Host, a non-UTF-8 head). The handshake cases any server
//! must pass are in the conformance tool (src/bin/wschat-conformance).

use crate::Cases;
use crate::common::{Client, HttpResponse, handshake_request, http_request};
use crate::support::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;
use wschat::protocol::message::Message;

const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Computed here from §4.2.2, independently of the server's code.
fn expected_accept(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    BASE64.encode(sha.finalize())
}

/// A valid request for `path` on the shared server, with `extra` header
/// lines (each ending in CRLF).
fn good(path: &str, extra: &str) -> String {
    handshake_request(shared_addr(), path, extra)
}

fn send(request: &str) -> Result<HttpResponse, String> {
    send_to(shared_addr(), request.as_bytes())
}

fn send_to(addr: SocketAddr, request: &[u8]) -> Result<HttpResponse, String> {
    http_request(addr, request, usize::MAX, Duration::ZERO)
}

/// Checks a rejection: the status, the headers every error carries, and
/// the body its Content-Length announces.
fn rejected(response: &HttpResponse, status: u16) -> crate::Outcome {
    ensure(response.status == status, || {
        format!(
            "expected {status}, got {:?} ({:?})",
            response.status_line,
            response.body.trim_end()
        )
    })?;
    ensure(response.header("Connection")? == Some("close"), || {
        "an error response must say Connection: close".into()
    })?;
    let length = response.header("Content-Length")?.unwrap_or("none");
    ensure(length == response.body.len().to_string(), || {
        format!(
            "Content-Length {length} but a body of {} bytes",
            response.body.len()
        )
    })?;
    ensure(response.header("Sec-WebSocket-Accept")?.is_none(), || {
        "a rejection must not carry Sec-WebSocket-Accept".into()
    })
}

/// Checks a 101: status line, Upgrade, Connection, the accept value for
/// `key`, the subprotocol (exactly `protocol`), and no extension.
fn switched(response: &HttpResponse, key: &str, protocol: Option<&str>) -> crate::Outcome {
    ensure(
        response.status_line == "HTTP/1.1 101 Switching Protocols",
        || format!("expected 101, got {:?}", response.status_line),
    )?;
    let upgrade = response.header("Upgrade")?;
    ensure(
        upgrade.is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        || format!("Upgrade: {upgrade:?}"),
    )?;
    let connection = response.header("Connection")?;
    ensure(
        connection.is_some_and(|v| v.eq_ignore_ascii_case("upgrade")),
        || format!("Connection: {connection:?}"),
    )?;
    let accept = response.header("Sec-WebSocket-Accept")?;
    let want = expected_accept(key);
    ensure(accept == Some(want.as_str()), || {
        format!("Sec-WebSocket-Accept {accept:?}, expected {want}")
    })?;
    let got = response.header("Sec-WebSocket-Protocol")?;
    ensure(got == protocol, || {
        format!("Sec-WebSocket-Protocol {got:?}, expected {protocol:?}")
    })?;
    ensure(
        response.header("Sec-WebSocket-Extensions")?.is_none(),
        || "no extension was negotiated, yet Sec-WebSocket-Extensions was sent".into(),
    )
}

fn expect_101(request: &str, protocol: Option<&str>) -> crate::Outcome {
    switched(&send(request)?, RFC_KEY, protocol)
}

fn expect_status(request: &str, status: u16) -> crate::Outcome {
    rejected(&send(request)?, status)
}

/// A server that allows two foreign origins, and one that allows all.
fn friendly_addr() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let handle =
            own_server(|c| c.allow_origins = vec!["https://friend.example".into(), "null".into()]);
        let addr = handle.addr();
        std::mem::forget(handle);
        addr
    })
}

fn open_addr() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let handle = own_server(|c| c.allow_origins = vec!["*".into()]);
        let addr = handle.addr();
        std::mem::forget(handle);
        addr
    })
}

pub fn cases(c: &mut Cases) {
    c.add("empty_host_is_400", || {
        let addr = shared_addr();
        expect_status(
            &good("/echo", "").replace(&format!("Host: {addr}"), "Host:"),
            400,
        )
    });

    c.add("non_utf8_head_is_400", || {
        let mut request = good("/echo", "").into_bytes();
        let at = request.len() - 2;
        request.splice(at..at, b"X-Latin1: caf\xe9\r\n".iter().copied());
        rejected(&send_to(shared_addr(), &request)?, 400)
    });

    c.add("h2c_upgrade_for_the_page_is_ignored_and_served", || {
        // `curl --http2 http://...` asks to upgrade to HTTP/2; a server may
        // ignore Upgrade (RFC 9110 §7.8) and must then just answer.
        let addr = shared_addr();
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        );
        let response = send(&request)?;
        ensure(response.status == 200, || {
            format!("expected the page (200), got {:?}", response.status_line)
        })?;
        ensure(response.body.contains("<html"), || {
            "no page in the body".into()
        })
    });

    c.add("duplicate_origin_is_400", || {
        expect_status(
            &good(
                "/echo",
                "Origin: http://a.example\r\nOrigin: http://b.example\r\n",
            ),
            400,
        )
    });

    // Subprotocols: only on /, only when offered, only wschat.v1.
    for (name, path, offer, want) in [
        (
            "v1_offered_on_chat",
            "/",
            Some("wschat.v1"),
            Some("wschat.v1"),
        ),
        ("not_offered_on_chat", "/", None, None),
        ("others_offered_on_chat", "/", Some("chat, superchat"), None),
        (
            "v1_in_the_middle_of_a_list",
            "/",
            Some("chat, wschat.v1, superchat"),
            Some("wschat.v1"),
        ),
        (
            "v1_last_without_spaces",
            "/",
            Some("chat,superchat,wschat.v1"),
            Some("wschat.v1"),
        ),
        ("v2_is_not_v1", "/", Some("wschat.v2"), None),
        ("v1_offered_on_echo", "/echo", Some("wschat.v1"), None),
        ("others_offered_on_echo", "/echo", Some("chat"), None),
    ] {
        c.add(format!("subprotocol_{name}"), move || {
            let extra = offer
                .map(|o| format!("Sec-WebSocket-Protocol: {o}\r\n"))
                .unwrap_or_default();
            expect_101(&good(path, &extra), want)
        });
    }
    c.add("subprotocol_offered_over_two_lines", || {
        expect_101(
            &good(
                "/",
                "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: wschat.v1\r\n",
            ),
            Some("wschat.v1"),
        )
    });
    c.add("subprotocol_v1_speaks_json_raw_does_not", || {
        let server = own_server(|_| {});
        let mut v1 = Client::try_connect(server.addr(), "/", &["wschat.v1"])?;
        let welcome = v1.next()?;
        ensure(
            matches!(&welcome, Message::Text(t) if t.starts_with("{\"type\":\"welcome\"")),
            || format!("v1 expected a welcome, got {welcome:?}"),
        )?;
        // A raw client gets no events: not even the join of the next one.
        let mut raw = Client::try_connect(server.addr(), "/", &[])?;
        let _other = Client::try_connect(server.addr(), "/", &[])?;
        raw.expect_silence(Duration::from_millis(200))?;
        finish(raw)
    });
    c.add(
        "extension_offered_is_not_accepted_and_rsv1_stays_invalid",
        || {
            // An extension wschat does not speak (permessage-deflate is
            // accepted: tests/compression.rs).
            let request = good(
                "/echo",
                "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n",
            );
            let mut client = Client::try_connect_with(shared_addr(), request.as_bytes())?;
            let response = HttpResponse::parse(&client.response)?;
            switched(&response, RFC_KEY, None)?;
            let _ = client.write(&raw_frame(true, 4, 0x1, b"not compressed"));
            client.expect_close_after(&[], 1002)
        },
    );

    // Origins.
    c.add("origin_same_site_is_101", || {
        expect_101(
            &good("/", &format!("Origin: http://{}\r\n", shared_addr())),
            None,
        )
    });
    c.add("origin_same_site_scheme_in_upper_case_is_101", || {
        expect_101(
            &good("/echo", &format!("Origin: HTTP://{}\r\n", shared_addr())),
            None,
        )
    });
    c.add("origin_absent_is_101", || expect_101(&good("/", ""), None));
    for (name, origin) in [
        ("cross_site", "https://evil.example"),
        ("null", "null"),
        ("same_host_other_port", "http://127.0.0.1:1"),
        ("same_host_https_default_port", "https://127.0.0.1"),
        ("not_a_url", "garbage"),
    ] {
        c.add(format!("origin_{name}_is_403"), move || {
            expect_status(&good("/", &format!("Origin: {origin}\r\n")), 403)
        });
        c.add(format!("origin_{name}_on_echo_is_403"), move || {
            expect_status(&good("/echo", &format!("Origin: {origin}\r\n")), 403)
        });
    }
    for (name, origin, status) in [
        ("listed_origin", "https://friend.example", 101),
        ("listed_null", "null", 101),
        ("unlisted_origin", "https://evil.example", 403),
    ] {
        c.add(format!("allow_origins_{name}_is_{status}"), move || {
            let addr = friendly_addr();
            let request = handshake_request(addr, "/", &format!("Origin: {origin}\r\n"));
            let response = send_to(addr, request.as_bytes())?;
            if status == 101 {
                switched(&response, RFC_KEY, None)
            } else {
                rejected(&response, status)
            }
        });
    }
    for origin in ["https://anyone.example", "null"] {
        c.add(format!("allow_origins_star_allows_{origin}"), move || {
            let addr = open_addr();
            let request = handshake_request(addr, "/", &format!("Origin: {origin}\r\n"));
            switched(&send_to(addr, request.as_bytes())?, RFC_KEY, None)
        });
    }

    // Paths.
    for (name, path, status) in [
        ("nowhere", "/nowhere", 404),
        ("echo_slash", "/echo/", 404),
        ("echo_upper_case", "/ECHO", 404),
        ("echo_with_query", "/echo?x=1", 101),
        ("chat_with_query", "/?room=1", 101),
    ] {
        c.add(format!("path_{name}_is_{status}"), move || {
            if status == 101 {
                expect_101(&good(path, ""), None)
            } else {
                expect_status(&good(path, ""), status)
            }
        });
    }

    // Size limits on the head.
    c.add("head_over_8_kib_is_431", || {
        expect_status(
            &good("/echo", &format!("X-Big: {}\r\n", "a".repeat(9000))),
            431,
        )
    });
    c.add("head_over_8_kib_without_end_is_431", || {
        // No blank line ever comes: refused once 8 KiB have arrived.
        let mut request = good("/echo", "").into_bytes();
        request.truncate(request.len() - 2);
        request.extend(format!("X-Big: {}", "a".repeat(9000)).as_bytes());
        rejected(&send_to(shared_addr(), &request)?, 431)
    });
    c.add("head_of_exactly_8_kib_is_accepted", || {
        let request = padded_to(good("/echo", ""), 8192);
        expect_101(&request, None)
    });
    c.add("head_of_8_kib_plus_1_is_431", || {
        let request = padded_to(good("/echo", ""), 8193);
        expect_status(&request, 431)
    });
    c.add("64_header_lines_are_accepted", || {
        // The request has 5 header lines; 59 more make 64.
        let extra: String = (0..59).map(|i| format!("X-Extra-{i}: {i}\r\n")).collect();
        expect_101(&good("/echo", &extra), None)
    });
    c.add("65_header_lines_are_431", || {
        let extra: String = (0..60).map(|i| format!("X-Extra-{i}: {i}\r\n")).collect();
        expect_status(&good("/echo", &extra), 431)
    });

    c.add("incomplete_head_is_408_after_the_timeout", || {
        let server = own_server(|c| c.handshake_timeout = Duration::from_secs(1));
        let request = handshake_request(server.addr(), "/echo", "");
        let partial = &request.as_bytes()[..request.len() - 2];
        rejected(&send_to(server.addr(), partial)?, 408)
    });
}

/// `request` with an `X-Pad` header that makes it exactly `total` bytes.
fn padded_to(request: String, total: usize) -> String {
    let without = request.len() + "X-Pad: \r\n".len();
    let pad = "p".repeat(total - without);
    let at = request.len() - 2;
    let mut out = request;
    out.insert_str(at, &format!("X-Pad: {pad}\r\n"));
    assert_eq!(out.len(), total);
    out
}
