//! The opening handshake (RFC 6455 §4.1, §4.2; RFC 9110/9112 for the HTTP
//! around it), over raw TCP: what every server must accept, what it must
//! refuse, and the answer's headers. Policies a server chooses for itself
//! (origins, paths, head size limits, subprotocols) are not tested here.

use super::Cases;
use super::client::{Client, read_response_head, tcp_connect};
use super::steps::*;
use super::transcript;
use super::verdict::{Check, Finding};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};
use std::io::{Read, Write};
use std::time::Duration;

const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Computed here from §4.2.2, independently of any server's code.
fn expected_accept(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    BASE64.encode(sha.finalize())
}

/// A parsed HTTP response head (and the body its Content-Length names).
struct Response {
    status: u16,
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn header(&self, name: &str) -> Result<Option<&str>, Finding> {
        match self.values(name)[..] {
            [] => Ok(None),
            [v] => Ok(Some(v)),
            _ => Err(Finding::fail(format!("header {name} sent more than once"))),
        }
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Sends `request` in `pieces` and reads the answer: the head, then the
/// body its Content-Length announces (none for HEAD or a 101).
fn exchange(request: &[u8], cuts: &[usize]) -> Result<Response, Finding> {
    let target = target();
    let (mut stream, _permit) = tcp_connect(&target)?;
    transcript::sent_request(request);
    let mut at = 0;
    for &cut in cuts.iter().chain(std::iter::once(&request.len())) {
        if at > 0 {
            std::thread::sleep(PAUSE);
        }
        stream
            .write_all(&request[at..cut])
            .map_err(|e| format!("write failed: {e}"))?;
        at = cut;
    }
    let head = read_response_head(&mut stream);
    if !head.ends_with("\r\n\r\n") {
        return Err(Finding::fail(if head.is_empty() {
            "no HTTP response: the server closed or kept silent (§4.2.1: it MUST answer with an HTTP status)".to_string()
        } else {
            format!("incomplete response head {:?}", &head[..head.len().min(60)])
        }));
    }
    let mut lines = head.trim_end().split("\r\n");
    let status_line = lines.next().unwrap_or("").to_string();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Finding::fail(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines {
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| Finding::fail(format!("bad header line {line:?}")))?;
        headers.push((n.to_string(), v.trim().to_string()));
    }
    let mut response = Response {
        status,
        status_line,
        headers,
        body: Vec::new(),
    };
    transcript::got_event(format!("{status}"));
    let is_head = request.starts_with(b"HEAD ");
    if status != 101 && !is_head {
        if let Some(len) = response.header("Content-Length")? {
            let len: usize = len
                .parse()
                .map_err(|_| Finding::fail(format!("Content-Length {len:?}")))?;
            let mut body = vec![0u8; len.min(1 << 20)];
            stream.read_exact(&mut body).map_err(|e| {
                Finding::fail(format!(
                    "Content-Length {len}, but the body ended early: {e} (RFC 9112 §6.3)"
                ))
            })?;
            response.body = body;
        }
        if response.has_token("Connection", "close") {
            // RFC 9112 §9.6: having said close, the server MUST close.
            let mut more = [0u8; 64];
            match stream.read(&mut more) {
                Ok(0) => {}
                Ok(n) => {
                    return Err(Finding::fail(format!(
                        "{n} bytes after the response's announced body"
                    )));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Finding::fail(
                        "said Connection: close but left the connection open (RFC 9112 §9.6)",
                    ));
                }
                Err(_) => {} // a reset: closed all the same
            }
        }
    }
    Ok(response)
}

fn send(request: &str) -> Result<Response, Finding> {
    exchange(request.as_bytes(), &[])
}

/// A valid request with `extra` header lines.
fn good(extra: &str) -> String {
    handshake_request(extra)
}

/// Checks a 101: status, Upgrade, Connection, the accept value for `key`,
/// and no subprotocol or extension (none was offered).
fn switched(response: &Response, key: &str) -> Check {
    ensure(response.status == 101, || {
        format!("expected 101, got {:?}", response.status_line)
    })?;
    let upgrade = response.header("Upgrade")?;
    ensure(
        upgrade.is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        || format!("101 with Upgrade: {upgrade:?} (§4.2.2: MUST be websocket)"),
    )?;
    ensure(response.has_token("Connection", "upgrade"), || {
        "101 without Connection: Upgrade (§4.2.2)".into()
    })?;
    let accept = response.header("Sec-WebSocket-Accept")?;
    let want = expected_accept(key);
    ensure(accept == Some(want.as_str()), || {
        format!("Sec-WebSocket-Accept {accept:?}, expected {want} (§4.2.2)")
    })?;
    let protocol = response.header("Sec-WebSocket-Protocol")?;
    ensure(protocol.is_none(), || {
        format!("no subprotocol was offered, yet the 101 names {protocol:?} (§4.1)")
    })?;
    let extensions = response.header("Sec-WebSocket-Extensions")?;
    ensure(extensions.is_none(), || {
        format!("no extension was offered, yet the 101 names {extensions:?} (§9.1)")
    })
}

fn expect_101(request: &str) -> Check {
    switched(&send(request)?, RFC_KEY)
}

/// A request the server must refuse: a status in `strict` passes, another
/// refusal is non-strict, a 101 fails (so does silence: §4.2.1 MUST answer
/// with an HTTP status).
fn refused(response: &Response, strict: &[u16], why: &str) -> Check {
    ensure(
        response.header("Sec-WebSocket-Accept")?.is_none() || response.status == 101,
        || "a refusal must not carry Sec-WebSocket-Accept".into(),
    )?;
    if response.status == 101 {
        return Err(Finding::fail(format!("accepted (101) {why}")));
    }
    if strict.contains(&response.status) {
        return Ok(());
    }
    Err(Finding::non_strict(format!(
        "refused {why} with {}; the usual status is {}",
        response.status,
        strict
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    )))
}

fn expect_refusal(request: &str, strict: &[u16], why: &str) -> Check {
    refused(&send(request)?, strict, why)
}

/// A version the server does not speak: §4.4 MUST refuse and name the
/// versions it speaks in Sec-WebSocket-Version.
fn expect_426(request: &str, why: &str) -> Check {
    let response = send(request)?;
    if response.status != 101 {
        let versions = response.values("Sec-WebSocket-Version").join(", ");
        ensure(versions.split(',').any(|v| v.trim() == "13"), || {
            format!(
                "refused {why} with {} but no Sec-WebSocket-Version: 13 (§4.4 MUST)",
                response.status
            )
        })?;
    }
    refused(&response, &[426], why)
}

pub fn cases(c: &mut Cases) {
    c.rfc("RFC 6455 §1.3, §4.2.2");
    c.add("rfc_example_key_gets_the_rfc_accept", || {
        let response = send(&good(""))?;
        switched(&response, RFC_KEY)?;
        ensure(
            response.header("Sec-WebSocket-Accept")? == Some(RFC_ACCEPT),
            || "not the RFC's accept".into(),
        )
    });
    for seed in 1..=8u64 {
        c.add(
            format!("accept_is_correct_for_random_key_{seed}"),
            move || {
                let key = BASE64.encode(Rng::new(seed).bytes(16));
                let request = good("").replace(RFC_KEY, &key);
                switched(&send(&request)?, &key)
            },
        );
    }

    c.rfc("RFC 6455 §4.2.1, RFC 9112 §3.2");
    for (name, header) in [
        ("host", "Host"),
        ("upgrade", "Upgrade"),
        ("connection", "Connection"),
        ("key", "Sec-WebSocket-Key"),
    ] {
        c.add(format!("missing_{name}_is_400"), move || {
            let request: String = good("")
                .split_inclusive("\r\n")
                .filter(|l| !l.starts_with(&format!("{header}:")))
                .collect();
            expect_refusal(&request, &[400], &format!("a handshake without {header}"))
        });
    }
    c.rfc("RFC 6455 §4.2.1, §4.4");
    c.add("missing_version_is_426", || {
        let request = good("").replace("Sec-WebSocket-Version: 13\r\n", "");
        expect_refusal(
            &request,
            &[426, 400],
            "a handshake without Sec-WebSocket-Version",
        )
    });

    c.rfc("RFC 6455 §4.2.1, RFC 9110 §15.5.6");
    for method in ["POST", "PUT", "DELETE", "HEAD", "OPTIONS"] {
        c.add(format!("method_{method}_is_405"), move || {
            let response = send(&good("").replacen("GET", method, 1))?;
            refused(&response, &[405], &format!("a {method} handshake"))?;
            let allow = response.header("Allow")?.unwrap_or("");
            ensure(allow.contains("GET"), || {
                format!("405 with Allow: {allow:?} (RFC 9110 §15.5.6 MUST list GET)")
            })
        });
    }
    c.rfc("RFC 6455 §4.2.1, RFC 9112 §2.3");
    c.add("http_1_0_is_400", || {
        expect_refusal(
            &good("").replace("HTTP/1.1", "HTTP/1.0"),
            &[400],
            "an HTTP/1.0 handshake",
        )
    });
    c.add("http_2_0_is_505", || {
        expect_refusal(
            &good("").replace("HTTP/1.1", "HTTP/2.0"),
            &[505],
            "a request claiming HTTP/2.0",
        )
    });
    c.rfc("RFC 9112 §3, §5.1");
    c.add("malformed_request_line_is_400", || {
        let request = good("").replacen(" HTTP/1.1", "", 1);
        expect_refusal(&request, &[400], "a request line without a version")
    });
    c.add("header_line_without_colon_is_400", || {
        expect_refusal(
            &good("X-Broken\r\n"),
            &[400],
            "a header line without a colon",
        )
    });
    c.add("header_name_with_space_is_400", || {
        expect_refusal(
            &good("X-Bad Name: x\r\n"),
            &[400],
            "a header name with a space",
        )
    });

    c.rfc("RFC 6455 §4.2.1 (5), §11.3.1");
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
            let request = good("").replace(
                &format!("Sec-WebSocket-Key: {RFC_KEY}"),
                &format!("Sec-WebSocket-Key: {key}"),
            );
            expect_refusal(
                &request,
                &[400],
                &format!("key {key:?} (not base64 of 16 bytes)"),
            )
        });
    }

    c.rfc("RFC 6455 §4.2.2, §4.4");
    for version in ["8", "12", "14", "0", "13.0", "thirteen"] {
        c.add(format!("version_{version}_is_426"), move || {
            expect_426(
                &good("").replace(
                    "Sec-WebSocket-Version: 13",
                    &format!("Sec-WebSocket-Version: {version}"),
                ),
                &format!("version {version:?}"),
            )
        });
    }

    // What must be accepted: case, whitespace, token lists.
    c.rfc("RFC 6455 §4.2.1, RFC 9110 §5.1, §5.6.1");
    c.add("header_names_in_lower_case", || {
        let t = target();
        expect_101(&format!(
            "GET {} HTTP/1.1\r\nhost: {}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
             sec-websocket-key: {RFC_KEY}\r\nsec-websocket-version: 13\r\n\r\n",
            t.path, t.host
        ))
    });
    c.add("header_names_in_upper_case", || {
        let t = target();
        expect_101(&format!(
            "GET {} HTTP/1.1\r\nHOST: {}\r\nUPGRADE: websocket\r\nCONNECTION: Upgrade\r\n\
             SEC-WEBSOCKET-KEY: {RFC_KEY}\r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n",
            t.path, t.host
        ))
    });
    c.add("header_names_in_odd_case", || {
        let t = target();
        expect_101(&format!(
            "GET {} HTTP/1.1\r\nhOsT: {}\r\nuPgRaDe: websocket\r\ncOnNeCtIoN: Upgrade\r\n\
             sEc-WeBsOcKeT-kEy: {RFC_KEY}\r\nSeC-wEbSoCkEt-VeRsIoN: 13\r\n\r\n",
            t.path, t.host
        ))
    });
    c.add("token_values_in_odd_case", || {
        expect_101(
            &good("")
                .replace("Upgrade: websocket", "Upgrade: WebSocket")
                .replace("Connection: Upgrade", "Connection: uPGRADE"),
        )
    });
    c.add("header_values_with_extra_whitespace", || {
        expect_101(
            &good("")
                .replace("Upgrade: websocket", "Upgrade:    websocket  \t")
                .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version:13"),
        )
    });
    for (name, value) in [
        ("keep_alive_then_upgrade", "keep-alive, Upgrade"),
        ("upgrade_then_keep_alive", "Upgrade, keep-alive"),
        ("no_spaces", "keep-alive,Upgrade"),
        ("extra_commas", ", keep-alive,, Upgrade ,"),
    ] {
        c.add(format!("connection_list_{name}"), move || {
            expect_101(&good("").replace("Connection: Upgrade", &format!("Connection: {value}")))
        });
    }
    c.add("connection_over_two_lines", || {
        expect_101(&good("").replace(
            "Connection: Upgrade",
            "Connection: keep-alive\r\nConnection: Upgrade",
        ))
    });
    c.add("upgrade_list_with_websocket", || {
        expect_101(&good("").replace("Upgrade: websocket", "Upgrade: h2c, websocket"))
    });
    c.rfc("RFC 6455 §4.2.1");
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
            expect_refusal(&good("").replace(from, to), &[400], &format!("{to:?}"))
        });
    }

    // Folded lines: RFC 9112 §5.2 lets a server refuse them (400) or read
    // them as spaces.
    c.rfc("RFC 9112 §5.2");
    c.add("folded_header_is_400", || {
        match expect_refusal(
            &good("X-Folded: first\r\n second\r\n"),
            &[400],
            "a folded header",
        ) {
            Err(f) if f.reason.starts_with("accepted (101)") => Err(Finding::non_strict(
                "read the folded header as spaces (RFC 9112 §5.2 allows it; 400 is stricter)",
            )),
            other => other,
        }
    });
    c.add("folded_key_is_400", || {
        let request = good("").replace(
            &format!("Sec-WebSocket-Key: {RFC_KEY}"),
            "Sec-WebSocket-Key:\r\n dGhlIHNhbXBsZSBub25jZQ==",
        );
        match expect_refusal(&request, &[400], "a folded key") {
            Err(f) if f.reason.starts_with("accepted (101)") => Err(Finding::non_strict(
                "read the folded key as spaces (RFC 9112 §5.2 allows it; 400 is stricter)",
            )),
            other => other,
        }
    });
    c.rfc("RFC 9112 §3.2, RFC 6455 §11.3.1, §11.3.5");
    for (name, line) in [
        ("host", "Host: other.example\r\n"),
        ("key", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
        ("version", "Sec-WebSocket-Version: 13\r\n"),
    ] {
        c.add(format!("duplicate_{name}_is_400"), move || {
            expect_refusal(
                &good(line),
                &[400],
                &format!("a second {}", line.trim_end()),
            )
        });
    }
    c.rfc("RFC 6455 §4.2.2");
    c.add("subprotocol_offered_on_echo_is_not_required", || {
        let response = send(&good("Sec-WebSocket-Protocol: chat\r\n"))?;
        let chosen = response
            .header("Sec-WebSocket-Protocol")?
            .map(str::to_string);
        match chosen.as_deref() {
            None => Ok(()),
            Some("chat") => Err(Finding::informational(
                "chose the offered subprotocol \"chat\"",
            )),
            Some(other) => Err(Finding::fail(format!(
                "offered \"chat\", the server chose {other:?} (§4.1)"
            ))),
        }
    });

    // How the head arrives.
    c.rfc("RFC 6455 §4.2.1, RFC 9112 §2");
    c.add("head_one_byte_per_write_then_echo", || {
        let request = good("");
        let pieces: Vec<&[u8]> = request.as_bytes().chunks(1).collect();
        let mut client = Client::connect_pieces(&target(), &pieces, Duration::from_micros(200))
            .map_err(|f| Finding::non_strict(format!(
                "refused a head sent one byte per write (a defence against slow heads; HTTP sets no such limit): {}",
                f.reason
            )))?;
        client.write(&text_frame("after a slow head"))?;
        client.expect(&text("after a slow head"))?;
        finish(client)
    });
    c.add("head_split_inside_the_final_crlf", || {
        let request = good("");
        let n = request.len();
        let mut client = echo_split(&request, &[n - 3, n - 1])?;
        client.write(&text_frame("ok"))?;
        client.expect(&text("ok"))?;
        finish(client)
    });
    for seed in 1..=3u64 {
        c.add(format!("head_in_random_pieces_seed_{seed}"), move || {
            let request = good("");
            let mut rng = Rng::new(seed);
            let mut cuts: Vec<usize> = (0..10).map(|_| rng.range(1, request.len() - 1)).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut client = echo_split(&request, &cuts)?;
            client.write(&frame(true, BINARY, &[seed as u8; 3]))?;
            client.expect(&binary(&[seed as u8; 3]))?;
            finish(client)
        });
    }
    c.rfc("RFC 9112 §2.2");
    c.add("bare_lf_line_endings_are_accepted", || {
        match expect_101(&good("").replace("\r\n", "\n")) {
            Err(f)
                if f.verdict == super::verdict::Verdict::Fail && !f.reason.contains("Accept") =>
            {
                Err(Finding::non_strict(format!(
                    "refused bare LF line endings (RFC 9112 §2.2: MAY accept): {}",
                    f.reason
                )))
            }
            other => other,
        }
    });
    c.rfc("RFC 6455 §4.2.1, §5.2");
    c.add("first_frame_in_the_same_write_as_the_head", || {
        let mut bytes = good("").into_bytes();
        bytes.extend(text_frame("early bird"));
        let mut client = early(&bytes)?;
        client.expect(&text("early bird"))?;
        finish(client)
    });
    c.add(
        "many_frames_and_close_in_the_same_write_as_the_head",
        || {
            let mut bytes = good("").into_bytes();
            bytes.extend(text_frame("one"));
            bytes.extend(frame(true, PING, b"two"));
            bytes.extend(fragments_of(BINARY, &[b"th", b"ree"]));
            bytes.extend(close_frame(1000, b""));
            let mut client = early(&bytes)?;
            expect_close(
                &mut client,
                &[text("one"), pong(b"two"), binary(b"three")],
                1000,
            )
        },
    );
    c.add("large_first_frame_in_the_same_write_as_the_head", || {
        let payload = pattern_bytes(100_000);
        let mut bytes = good("").into_bytes();
        bytes.extend(frame(true, BINARY, &payload));
        let mut client = early(&bytes)?;
        client.expect(&binary(&payload))?;
        finish(client)
    });
    c.add("bad_frame_in_the_same_write_as_the_head_is_1002", || {
        let mut bytes = good("").into_bytes();
        bytes.extend(raw_frame(true, 0, 0x3, b""));
        let mut client = early(&bytes)?;
        expect_close(&mut client, &[], 1002)
    });
}

/// Connects, writing the request in pieces cut at `cuts` with a pause
/// after each.
fn echo_split(request: &str, cuts: &[usize]) -> Result<Client, Finding> {
    let bytes = request.as_bytes();
    let mut pieces = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        pieces.push(&bytes[at..cut]);
        at = cut;
    }
    Client::connect_pieces(&target(), &pieces, PAUSE)
}

/// Connects with frames in the same write as the head. A client MUST wait
/// for the 101 before sending frames (§4.1), so a server may refuse this:
/// informational.
fn early(bytes: &[u8]) -> Result<Client, Finding> {
    Client::connect_pieces(&target(), &[bytes], Duration::ZERO).map_err(|_| {
        Finding::informational(
            "refused frames sent before its 101 (§4.1: a client MUST wait for it)",
        )
    })
}
