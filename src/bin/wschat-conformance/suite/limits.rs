//! Limits (RFC 6455 §5.2, §7.4.1 1009, §10.4): how large a message the
//! server takes is its choice, so the cases over 16 MiB are
//! informational (the reason says what the server did); deciding from a
//! header alone, a 64-bit length with the top bit set, and unmasked client
//! frames (§5.1, a MUST) are not.

use super::Cases;
use super::client::{Client, Message};
use super::steps::*;
use super::verdict::{Check, Finding};

const MIB16: usize = 16 << 20;

/// The outcome of sending more than a server may choose to take: the
/// message back (no limit that low), or a Close (1009 is the code §7.4.1
/// names). Informational either way; a wrong echo, a code no endpoint may
/// send, or silence fails.
fn over_limit(client: &mut Client, want: Option<&Message>, what: &str) -> Check {
    match client.next_message(client.wait) {
        Ok(Message::Close(code, _)) => {
            let code_text = code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "empty".into());
            if let Some(c) = code
                && forbidden_code(c)
            {
                return Err(Finding::fail(format!(
                    "closed with code {c}, which no endpoint may send (§7.4.1)"
                )));
            }
            let _ = client.write(&close_frame(1000, b""));
            Err(Finding::informational(format!("{what}: Close {code_text}")))
        }
        Ok(m) => match want {
            Some(w) if &m == w => {
                finish_quietly(client);
                Err(Finding::informational(format!(
                    "{what}: echoed whole (no limit that low)"
                )))
            }
            _ => Err(Finding::fail(format!(
                "{what}: got {}",
                super::client::describe(&m)
            ))),
        },
        Err(super::client::ReadEnd::Closed) => Err(Finding::informational(format!(
            "{what}: TCP closed with no Close frame"
        ))),
        Err(super::client::ReadEnd::Timeout) => Err(Finding::informational(format!(
            "{what}: no answer within the wait (waits for the payload)"
        ))),
        Err(e) => Err(Finding::fail(e.describe(client.wait))),
    }
}

fn finish_quietly(client: &mut Client) {
    let _ = client.write(&close_frame(1000, b""));
    let _ = client.next_message(client.wait);
}

/// Sends only a header announcing a payload that never comes.
fn header_case(bytes: &[u8], what: &str) -> Check {
    let mut client = echo()?;
    client.write(bytes)?;
    over_limit(&mut client, None, what)
}

pub fn cases(c: &mut Cases) {
    c.rfc("RFC 6455 §5.2, §10.4");
    c.add("echo_16mib_text_in_256_frames", || {
        let t = pattern_text(MIB16);
        let mut client = echo()?;
        let writer = write_in_background(&client, fragmented(TEXT, t.as_bytes(), 256))?;
        let r = over_limit(&mut client, Some(&text(&t)), "16 MiB of text in 256 frames");
        let _ = join_writer(writer);
        r
    });
    c.add("echo_16mib_binary_in_4096_frames", || {
        let b = pattern_bytes(MIB16);
        let mut client = echo()?;
        let writer = write_in_background(&client, fragmented(BINARY, &b, 4096))?;
        let r = over_limit(
            &mut client,
            Some(&binary(&b)),
            "16 MiB of binary in 4096 frames",
        );
        let _ = join_writer(writer);
        r
    });
    c.add("echo_16mib_plus_1_in_two_fragments", || {
        let mut b = pattern_bytes(MIB16 + 1);
        b[MIB16] = 0xee;
        let mut client = echo()?;
        let bytes = cat(&[
            &frame(false, BINARY, &b[..MIB16]),
            &frame(true, CONTINUATION, &b[MIB16..]),
        ]);
        let writer = write_in_background(&client, bytes)?;
        let r = over_limit(
            &mut client,
            Some(&binary(&b)),
            "16 MiB + 1 byte in two fragments",
        );
        let _ = join_writer(writer);
        r
    });
    c.add("echo_16mib_plus_1_header_only", || {
        header_case(
            &header_only(true, BINARY, MIB16 as u64 + 1),
            "a header announcing 16 MiB + 1",
        )
    });
    c.add("echo_length_2_63_minus_1_header_only", || {
        header_case(
            &header_only(true, BINARY, (1 << 63) - 1),
            "a header announcing 2^63 - 1 bytes",
        )
    });
    c.add("echo_length_2_40_header_only", || {
        header_case(
            &header_only(true, TEXT, 1 << 40),
            "a header announcing 2^40 bytes",
        )
    });
    c.add("echo_continuation_claiming_2_40", || {
        let mut bytes = frame(false, TEXT, b"start");
        bytes.extend(header_only(true, CONTINUATION, 1 << 40));
        header_case(&bytes, "a continuation announcing 2^40 bytes")
    });

    // The top bit of a 64-bit length MUST be 0 (§5.2).
    c.rfc("RFC 6455 §5.2");
    for (name, len) in [
        ("8000000000000000", 1u64 << 63),
        ("ffffffffffffffff", u64::MAX),
    ] {
        c.add(format!("length_top_bit_set_{name}_is_1002"), move || {
            let mut client = echo()?;
            client.write(&header_only(true, BINARY, len))?;
            expect_close(&mut client, &[], 1002)
        });
    }

    // Unmasked client frames (§5.1): the server MUST close the connection;
    // it MAY send Close 1002.
    c.rfc("RFC 6455 §5.1");
    for (name, opcode, payload) in [
        ("text", TEXT, &b"unmasked"[..]),
        ("binary", BINARY, &b"\x00\x01"[..]),
        ("empty_text", TEXT, &b""[..]),
        ("ping", PING, &b"p"[..]),
        ("pong", PONG, &b"p"[..]),
        ("close", CLOSE, &b"\x03\xe8"[..]),
    ] {
        c.add(format!("unmasked_{name}_is_1002"), move || {
            fail_case(&any_frame(true, 0, opcode, payload, false), &[], 1002)
        });
    }
    c.add("unmasked_frame_after_a_valid_message_is_1002", || {
        let bytes = cat(&[
            &text_frame("masked"),
            &any_frame(true, 0, TEXT, b"unmasked", false),
        ]);
        fail_case(&bytes, &[text("masked")], 1002)
    });
    c.add("unmasked_continuation_is_1002", || {
        let bytes = cat(&[
            &frame(false, TEXT, b"masked "),
            &any_frame(true, 0, CONTINUATION, b"unmasked", false),
        ]);
        fail_case(&bytes, &[], 1002)
    });
    c.add("unmasked_huge_header_is_1002", || {
        let mut bytes = header_only(true, BINARY, 1 << 40);
        bytes[1] &= 0x7f; // clear MASK
        bytes.truncate(10);
        fail_case(&bytes, &[], 1002)
    });
}
