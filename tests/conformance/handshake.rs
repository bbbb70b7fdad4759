//! The opening handshake (RFC 6455 §4.1, §4.2; RFC 9110/9112 for the
//! HTTP around it), over raw TCP: the status of every kind of bad request,
//! the headers of every response, and the odd-but-valid requests that
//! must still be accepted.

use crate::Cases;
use crate::common::{Client, HttpResponse, Rng, handshake_request, http_request};
use crate::support::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;
use wschat::protocol::frame::OpCode;
use wschat::protocol::message::Message;

const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

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

fn expect_426(request: &str) -> crate::Outcome {
    let response = send(request)?;
    rejected(&response, 426)?;
    let version = response.header("Sec-WebSocket-Version")?;
    ensure(version == Some("13"), || {
        format!("426 must name version 13, got {version:?}")
    })
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
    c.add("rfc_example_key_gets_the_rfc_accept", || {
        let response = send(&good("/echo", ""))?;
        switched(&response, RFC_KEY, None)?;
        let accept = response.header("Sec-WebSocket-Accept")?;
        ensure(accept == Some(RFC_ACCEPT), || format!("{accept:?}"))
    });
    for seed in 1..=8u64 {
        c.add(
            format!("accept_is_correct_for_random_key_{seed}"),
            move || {
                let key = BASE64.encode(Rng::new(seed).bytes(16));
                let request = good("/echo", "").replace(RFC_KEY, &key);
                switched(&send(&request)?, &key, None)
            },
        );
    }

    // Every required header missing in turn.
    for (name, line) in [
        ("host", "Host: "),
        ("upgrade", "Upgrade: websocket\r\n"),
        ("connection", "Connection: Upgrade\r\n"),
        ("key", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
    ] {
        c.add(format!("missing_{name}_is_400"), move || {
            let line = match line {
                "Host: " => format!("Host: {}\r\n", shared_addr()),
                other => other.to_string(),
            };
            let request = good("/echo", "").replace(&line, "");
            ensure(request.len() < good("/echo", "").len(), || {
                "nothing removed".into()
            })?;
            expect_status(&request, 400)
        });
    }
    c.add("missing_version_is_426", || {
        expect_426(&good("/echo", "").replace("Sec-WebSocket-Version: 13\r\n", ""))
    });
    c.add("empty_host_is_400", || {
        let addr = shared_addr();
        expect_status(
            &good("/echo", "").replace(&format!("Host: {addr}"), "Host:"),
            400,
        )
    });

    // Method and version.
    for method in ["POST", "PUT", "DELETE", "HEAD", "OPTIONS"] {
        c.add(format!("method_{method}_is_405"), move || {
            let response = send(&good("/echo", "").replacen("GET", method, 1))?;
            rejected(&response, 405)?;
            let allow = response.header("Allow")?.unwrap_or("");
            ensure(allow.contains("GET"), || format!("Allow: {allow:?}"))
        });
    }
    c.add("http_1_0_is_400", || {
        expect_status(&good("/echo", "").replace("HTTP/1.1", "HTTP/1.0"), 400)
    });
    c.add("http_2_0_is_505", || {
        expect_status(&good("/echo", "").replace("HTTP/1.1", "HTTP/2.0"), 505)
    });
    c.add("malformed_request_line_is_400", || {
        expect_status(
            &good("/echo", "").replace("GET /echo HTTP/1.1", "GET /echo"),
            400,
        )
    });
    c.add("header_line_without_colon_is_400", || {
        expect_status(&good("/echo", "X-Broken\r\n"), 400)
    });
    c.add("header_name_with_space_is_400", || {
        expect_status(&good("/echo", "X-Bad Name: x\r\n"), 400)
    });
    c.add("non_utf8_head_is_400", || {
        let mut request = good("/echo", "").into_bytes();
        let at = request.len() - 2;
        request.splice(at..at, b"X-Latin1: caf\xe9\r\n".iter().copied());
        rejected(&send_to(shared_addr(), &request)?, 400)
    });

    // Keys.
    for (name, key) in [
        ("empty", ""),
        ("one_char", "A"),
        ("16_raw_chars", "0123456789abcdef"),
        ("base64_of_15_bytes", "AAECAwQFBgcICQoLDA0O"),
        ("base64_of_17_bytes", "AAECAwQFBgcICQoLDA0ODxA="),
        ("base64_of_20_bytes", "AAECAwQFBgcICQoLDA0ODxAREhM="),
        ("unpadded_22_chars", "dGhlIHNhbXBsZSBub25jZQ"),
        ("24_chars_not_base64", "!!!!!!!!!!!!!!!!!!!!!!!!"),
        ("24_chars_with_space", "dGhlIHNhbXBs ZSBub25jZQ="),
        ("25_chars", "dGhlIHNhbXBsZSBub25jZQ==A"),
    ] {
        c.add(format!("key_{name}_is_400"), move || {
            let request = good("/echo", "").replace(
                &format!("Sec-WebSocket-Key: {RFC_KEY}"),
                &format!("Sec-WebSocket-Key: {key}"),
            );
            expect_status(&request, 400)
        });
    }

    // Versions.
    for version in ["8", "12", "14", "0", "13.0", "thirteen"] {
        c.add(format!("version_{version}_is_426"), move || {
            expect_426(&good("/echo", "").replace(
                "Sec-WebSocket-Version: 13",
                &format!("Sec-WebSocket-Version: {version}"),
            ))
        });
    }

    // Case and token lists.
    c.add("header_names_in_lower_case", || {
        let addr = shared_addr();
        expect_101(
            &format!(
                "GET /echo HTTP/1.1\r\nhost: {addr}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
                 sec-websocket-key: {RFC_KEY}\r\nsec-websocket-version: 13\r\n\r\n"
            ),
            None,
        )
    });
    c.add("header_names_in_upper_case", || {
        let addr = shared_addr();
        expect_101(
            &format!(
                "GET /echo HTTP/1.1\r\nHOST: {addr}\r\nUPGRADE: websocket\r\nCONNECTION: Upgrade\r\n\
                 SEC-WEBSOCKET-KEY: {RFC_KEY}\r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n"
            ),
            None,
        )
    });
    c.add("header_names_in_odd_case", || {
        let addr = shared_addr();
        expect_101(
            &format!(
                "GET /echo HTTP/1.1\r\nhOsT: {addr}\r\nuPgRaDe: websocket\r\ncOnNeCtIoN: Upgrade\r\n\
                 sEc-WeBsOcKeT-kEy: {RFC_KEY}\r\nSeC-wEbSoCkEt-VeRsIoN: 13\r\n\r\n"
            ),
            None,
        )
    });
    c.add("token_values_in_odd_case", || {
        expect_101(
            &good("/echo", "")
                .replace("Upgrade: websocket", "Upgrade: WebSocket")
                .replace("Connection: Upgrade", "Connection: uPGRADE"),
            None,
        )
    });
    c.add("header_values_with_extra_whitespace", || {
        expect_101(
            &good("/echo", "")
                .replace("Upgrade: websocket", "Upgrade:    websocket  \t")
                .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version:13"),
            None,
        )
    });
    for (name, value) in [
        ("keep_alive_then_upgrade", "keep-alive, Upgrade"),
        ("upgrade_then_keep_alive", "Upgrade, keep-alive"),
        ("no_spaces", "keep-alive,Upgrade"),
        ("extra_commas", ", keep-alive,, Upgrade ,"),
    ] {
        c.add(format!("connection_list_{name}"), move || {
            expect_101(
                &good("/echo", "").replace("Connection: Upgrade", &format!("Connection: {value}")),
                None,
            )
        });
    }
    c.add("connection_over_two_lines", || {
        expect_101(
            &good("/echo", "").replace(
                "Connection: Upgrade",
                "Connection: keep-alive\r\nConnection: Upgrade",
            ),
            None,
        )
    });
    c.add("upgrade_list_with_websocket", || {
        expect_101(
            &good("/echo", "").replace("Upgrade: websocket", "Upgrade: h2c, websocket"),
            None,
        )
    });
    for (name, from, to) in [
        (
            "connection_keep_alive_only",
            "Connection: Upgrade",
            "Connection: keep-alive",
        ),
        (
            "connection_upgraded",
            "Connection: Upgrade",
            "Connection: Upgraded",
        ),
        ("upgrade_h2c", "Upgrade: websocket", "Upgrade: h2c"),
        (
            "upgrade_websockets",
            "Upgrade: websocket",
            "Upgrade: websockets",
        ),
    ] {
        c.add(format!("{name}_is_400"), move || {
            expect_status(&good("/echo", "").replace(from, to), 400)
        });
    }

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

    // Folded and duplicated headers.
    c.add("folded_header_is_400", || {
        expect_status(&good("/echo", "X-Folded: first\r\n second\r\n"), 400)
    });
    c.add("folded_key_is_400", || {
        expect_status(
            &good("/echo", "").replace(
                &format!("Sec-WebSocket-Key: {RFC_KEY}"),
                "Sec-WebSocket-Key:\r\n dGhlIHNhbXBsZSBub25jZQ==",
            ),
            400,
        )
    });
    for (name, line) in [
        ("host", "Host: other.example\r\n".to_string()),
        ("key", format!("Sec-WebSocket-Key: {RFC_KEY}\r\n")),
        ("version", "Sec-WebSocket-Version: 13\r\n".to_string()),
        (
            "origin",
            "Origin: http://a.example\r\nOrigin: http://b.example\r\n".to_string(),
        ),
    ] {
        c.add(format!("duplicate_{name}_is_400"), move || {
            expect_status(&good("/echo", &line), 400)
        });
    }

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

    // How the head arrives.
    c.add("head_one_byte_per_write_then_echo", || {
        let request = good("/echo", "");
        let mut client = Client::try_connect_chopped(
            shared_addr(),
            request.as_bytes(),
            1,
            Duration::from_micros(200),
        )?;
        switched(&HttpResponse::parse(&client.response)?, RFC_KEY, None)?;
        client.write(&text_frame("after a slow head"))?;
        client.expect(&text("after a slow head"))?;
        finish(client)
    });
    c.add("head_split_inside_the_final_crlf", || {
        let request = good("/echo", "");
        let mut client = echo_split(&request, &[request.len() - 3, request.len() - 1])?;
        client.write(&text_frame("ok"))?;
        client.expect(&text("ok"))?;
        finish(client)
    });
    for seed in 1..=3u64 {
        c.add(format!("head_in_random_pieces_seed_{seed}"), move || {
            let request = good("/echo", "");
            let mut rng = Rng::new(seed);
            let mut cuts: Vec<usize> = (0..10).map(|_| rng.range(1, request.len() - 1)).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut client = echo_split(&request, &cuts)?;
            client.write(&frame(true, OpCode::Binary, &[seed as u8; 3]))?;
            client.expect(&binary(&[seed as u8; 3]))?;
            finish(client)
        });
    }
    c.add("bare_lf_line_endings_are_accepted", || {
        expect_101(&good("/echo", "").replace("\r\n", "\n"), None)
    });
    c.add("first_frame_in_the_same_write_as_the_head", || {
        let mut bytes = good("/echo", "").into_bytes();
        bytes.extend(text_frame("early bird"));
        let mut client = Client::try_connect_with(shared_addr(), &bytes)?;
        client.expect(&text("early bird"))?;
        finish(client)
    });
    c.add(
        "many_frames_and_close_in_the_same_write_as_the_head",
        || {
            let mut bytes = good("/echo", "").into_bytes();
            bytes.extend(text_frame("one"));
            bytes.extend(frame(true, OpCode::Ping, b"two"));
            bytes.extend(fragments_of(OpCode::Binary, &[b"th", b"ree"]));
            bytes.extend(close_frame(1000, b""));
            let mut client = Client::try_connect_with(shared_addr(), &bytes)?;
            client.expect_close_after(&[text("one"), pong(b"two"), binary(b"three")], 1000)
        },
    );
    c.add("large_first_frame_in_the_same_write_as_the_head", || {
        let payload = pattern_bytes(100_000);
        let mut bytes = good("/echo", "").into_bytes();
        bytes.extend(frame(true, OpCode::Binary, &payload));
        let mut client = Client::try_connect_with(shared_addr(), &bytes)?;
        client.expect(&binary(&payload))?;
        finish(client)
    });
    c.add("bad_frame_in_the_same_write_as_the_head_is_1002", || {
        let mut bytes = good("/echo", "").into_bytes();
        bytes.extend(raw_frame(true, 0, 0x3, b""));
        let mut client = Client::try_connect_with(shared_addr(), &bytes)?;
        client.expect_close_after(&[], 1002)
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

/// Connects to the shared `/echo`, writing the request in pieces cut at
/// `cuts`, with a pause after each.
fn echo_split(request: &str, cuts: &[usize]) -> Result<Client, String> {
    let bytes = request.as_bytes();
    let mut pieces = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        pieces.push(&bytes[at..cut]);
        at = cut;
    }
    Client::try_connect_pieces(shared_addr(), &pieces, PAUSE)
}
