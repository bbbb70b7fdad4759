//! permessage-deflate (RFC 7692) cases, run only when the server accepts
//! the offer. What the tool sends is written here byte by byte (stored
//! blocks, and the RFC's own example bytes); what the server sends back is
//! inflated with wschat's inflater, which tests/deflate.rs checks against
//! an independent implementation.

use super::Cases;
use super::client::Client;
use super::steps::*;
use super::verdict::{Check, Finding};
use std::time::Duration;
use wschat::protocol::deflate::Inflater;

/// RFC 7692 §7.2.3.1: "Hello" compressed with one fixed-Huffman block.
const HELLO_FIXED: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
/// RFC 7692 §7.2.3.3: "Hello" in one stored block (not final).
const HELLO_STORED: [u8; 11] = [
    0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
];
/// RFC 7692 §7.2.3.4: "Hello" in a compressed block marked final
/// (BFINAL), followed by an empty byte.
const HELLO_FINAL: [u8; 8] = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
/// The largest message the tool inflates from a server.
const INFLATE_LIMIT: usize = 64 << 20;

pub fn inflate(data: &[u8]) -> Result<Vec<u8>, String> {
    Inflater::new()
        .inflate_message(data, INFLATE_LIMIT)
        .map_err(|e| e.to_string())
}

/// `payload` as stored (uncompressed) DEFLATE blocks, none final, then
/// the sync flush's empty stored block without its 00 00 ff ff (RFC 7692
/// §7.2.1, the form of §7.2.3.3's example): valid compressed data that any
/// inflater must take, built here without a compressor.
pub fn stored_blocks(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in payload.chunks(65535) {
        let len = chunk.len() as u16;
        out.push(0x00);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    // The empty block's header bits; its LEN/NLEN are the removed tail.
    out.push(0x00);
    out
}

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate\r\n";

/// A client that offered permessage-deflate; `Err(informational)` when the
/// server did not accept it (nothing to test then).
fn deflate_client() -> Result<Client, Finding> {
    let request = handshake_request(OFFER);
    let mut client = Client::connect_pieces(&target(), &[request.as_bytes()], Duration::ZERO)?;
    let agreed: Vec<String> = client
        .response
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case("Sec-WebSocket-Extensions"))
        .map(|(_, v)| v.trim().to_string())
        .collect();
    match agreed.as_slice() {
        [] => Err(Finding::informational(
            "the server does not accept permessage-deflate: nothing to test",
        )),
        [one] if one.split(';').next().map(str::trim) == Some("permessage-deflate") => {
            for param in one.split(';').skip(1).map(str::trim) {
                let name = param.split('=').next().unwrap_or("").trim();
                // §7.1: the parameters a server may answer with; it may not
                // ask for a client window when none was offered (§7.1.2.2).
                if !matches!(
                    name,
                    "server_no_context_takeover"
                        | "client_no_context_takeover"
                        | "server_max_window_bits"
                ) {
                    return Err(Finding::fail(format!(
                        "the server answered permessage-deflate with parameter {param:?} (RFC 7692 §7.1)"
                    )));
                }
            }
            client.deflate = true;
            Ok(client)
        }
        other => Err(Finding::fail(format!(
            "offered only permessage-deflate, the server answered {other:?} (RFC 6455 §9.1)"
        ))),
    }
}

/// Sends `bytes` on a deflate connection and expects `want`, then closes.
fn deflate_echo(bytes: Vec<u8>, want: &[super::client::Message]) -> Check {
    let mut client = deflate_client()?;
    client.write(&bytes)?;
    client.expect_all(want)?;
    finish(client)
}

fn deflate_fail(bytes: Vec<u8>, code: u16) -> Check {
    let mut client = deflate_client()?;
    let _ = client.write(&bytes);
    expect_close(&mut client, &[], code)
}

pub fn cases(c: &mut Cases) {
    c.rfc("RFC 7692 §5, §7");
    c.add("offer_is_accepted_with_valid_parameters", || {
        let client = deflate_client()?;
        finish(client)
    });
    c.rfc("RFC 7692 §7.2.3.1");
    c.add("rfc_example_hello_fixed_huffman", || {
        deflate_echo(raw_frame(true, 4, TEXT, &HELLO_FIXED), &[text("Hello")])
    });
    c.rfc("RFC 7692 §7.2.3.3");
    c.add("rfc_example_hello_stored_block", || {
        deflate_echo(raw_frame(true, 4, TEXT, &HELLO_STORED), &[text("Hello")])
    });
    c.rfc("RFC 7692 §7.2.3.4");
    c.add("rfc_example_hello_bfinal_set", || {
        deflate_echo(raw_frame(true, 4, TEXT, &HELLO_FINAL), &[text("Hello")])
    });
    c.rfc("RFC 7692 §6.1");
    c.add("compressed_binary_64_kib_stored_blocks", || {
        let b = pattern_bytes(65536);
        deflate_echo(
            raw_frame(true, 4, BINARY, &stored_blocks(&b)),
            &[binary(&b)],
        )
    });
    c.add(
        "compressed_text_in_three_fragments_rsv1_on_the_first",
        || {
            let data = stored_blocks("κόσμε, compressed and fragmented".as_bytes());
            let (a, rest) = data.split_at(4);
            let (b, d) = rest.split_at(10);
            let bytes = cat(&[
                &raw_frame(false, 4, TEXT, a),
                &raw_frame(false, 0, CONTINUATION, b),
                &raw_frame(true, 0, CONTINUATION, d),
            ]);
            deflate_echo(bytes, &[text("κόσμε, compressed and fragmented")])
        },
    );
    c.add("uncompressed_message_on_a_deflate_connection", || {
        deflate_echo(text_frame("not compressed"), &[text("not compressed")])
    });
    c.add("empty_compressed_message", || {
        // §7.2.3.6: an empty message compresses to a single 0x00.
        deflate_echo(raw_frame(true, 4, BINARY, &[0x00]), &[binary(b"")])
    });
    c.add("rsv1_on_a_continuation_is_1002", || {
        let bytes = cat(&[
            &raw_frame(false, 4, TEXT, &HELLO_STORED[..7]),
            &raw_frame(true, 4, CONTINUATION, &HELLO_STORED[7..]),
        ]);
        deflate_fail(bytes, 1002)
    });
    c.add("rsv1_on_a_ping_is_1002", || {
        deflate_fail(raw_frame(true, 4, PING, b"x"), 1002)
    });
    c.rfc("RFC 7692 §6, RFC 6455 §5.2");
    c.add("rsv2_still_invalid_with_deflate_is_1002", || {
        deflate_fail(raw_frame(true, 2, TEXT, b"rsv2"), 1002)
    });
    c.rfc("RFC 7692 §8.1, RFC 6455 §7.1.7");
    c.add("corrupt_compressed_data_fails_the_connection", || {
        // Block type 3 is reserved (RFC 1951 §3.2.3): cannot inflate.
        let mut client = deflate_client()?;
        let _ = client.write(&raw_frame(true, 4, BINARY, &[0x07, 0x00]));
        match expect_close(&mut client, &[], 1007) {
            Err(f) if f.reason.starts_with("Close 1002;") => Ok(()),
            other => other,
        }
    });
    c.rfc("RFC 7692 §8.1, RFC 6455 §8.1");
    c.add("compressed_invalid_utf8_text_is_1007", || {
        deflate_fail(
            raw_frame(true, 4, TEXT, &stored_blocks(&[0x61, 0xff, 0x62])),
            1007,
        )
    });
}
