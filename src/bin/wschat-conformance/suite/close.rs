//! The closing handshake (RFC 6455 §5.5.1, §7.4; Autobahn section 7):
//! valid codes are echoed, codes that may not be sent are a protocol
//! error, the reason must fit and be UTF-8, nothing is processed after a
//! Close, and the server then closes TCP.

use super::Cases;
use super::steps::*;

const VALID: [u16; 16] = [
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999,
];
/// Codes no endpoint may send (§7.4.1, §7.4.2).
const INVALID: [u16; 10] = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999];
/// Codes above the ranges §7.4.2 defines: the RFC says nothing of them.
const UNDEFINED: [u16; 2] = [5000, 65535];

pub fn cases(c: &mut Cases) {
    c.add("empty_payload_is_answered_with_1000", || {
        fail_case(&frame(true, CLOSE, b""), &[], 1000)
    });
    for code in VALID {
        c.add(format!("code_{code}_is_echoed"), move || {
            fail_case(&close_frame(code, b""), &[], code)
        });
        c.add(format!("code_{code}_with_reason_is_echoed"), move || {
            fail_case(&close_frame(code, b"a reason"), &[], code)
        });
    }
    for code in INVALID {
        c.add(format!("code_{code}_is_1002"), move || {
            fail_case(&close_frame(code, b""), &[], 1002)
        });
    }
    for code in UNDEFINED {
        c.add(format!("code_{code}"), move || {
            let mut client = echo()?;
            client.write(&close_frame(code, b""))?;
            let answer = match client.next_message(client.wait) {
                Ok(m) => super::client::describe(&m),
                Err(e) => e.describe(client.wait),
            };
            Err(super::verdict::Finding::informational(format!(
                "close code {code} (outside the ranges of §7.4.2) answered with {answer}"
            )))
        });
    }
    for byte in [0x03u8, 0x00, 0xff] {
        c.add(format!("one_byte_payload_{byte:02x}_is_1002"), move || {
            fail_case(&frame(true, CLOSE, &[byte]), &[], 1002)
        });
    }
    c.add("reason_of_123_bytes_is_accepted", || {
        fail_case(&close_frame(1000, &[b'r'; 123]), &[], 1000)
    });
    c.add("reason_of_123_bytes_multibyte_is_accepted", || {
        // 41 three-byte characters: 123 bytes.
        let reason = "€".repeat(41);
        fail_case(&close_frame(4000, reason.as_bytes()), &[], 4000)
    });
    c.add("reason_of_124_bytes_is_1002", || {
        // Payload 126 bytes: over the control frame limit.
        fail_case(&close_frame(1000, &[b'r'; 124]), &[], 1002)
    });
    c.add("reason_valid_utf8_is_accepted", || {
        fail_case(&close_frame(1000, "κόσμε 𝄞".as_bytes()), &[], 1000)
    });
    for (name, reason) in [
        ("byte_ff", &[0xff][..]),
        ("overlong_c0_80", &[0xc0, 0x80]),
        ("surrogate_ed_a0_80", &[0xed, 0xa0, 0x80]),
        ("above_max_f4_90_80_80", &[0xf4, 0x90, 0x80, 0x80]),
        ("truncated_e2_82", &[0x61, 0xe2, 0x82]),
    ] {
        c.add(format!("reason_invalid_utf8_{name}_is_1002"), move || {
            fail_case(&close_frame(1000, reason), &[], 1002)
        });
    }
    c.add("data_after_close_is_ignored", || {
        let bytes = cat(&[
            &close_frame(1000, b""),
            &text_frame("after close"),
            &frame(true, BINARY, b"after close"),
            &frame(true, PING, b"after close"),
        ]);
        fail_case(&bytes, &[], 1000)
    });
    c.add("invalid_frame_after_close_is_ignored", || {
        let bytes = cat(&[
            &close_frame(1001, b""),
            &raw_frame(true, 7, 0x3, b"garbage"),
            b"\xff\xff\xff\xff",
        ]);
        fail_case(&bytes, &[], 1001)
    });
    c.add("data_after_close_in_a_later_write_is_ignored", || {
        let mut client = echo()?;
        client.write(&close_frame(1000, b""))?;
        std::thread::sleep(PAUSE);
        let _ = client.write(&text_frame("too late"));
        expect_close(&mut client, &[], 1000)
    });
    c.add("message_then_close", || {
        let bytes = cat(&[&text_frame("last message"), &close_frame(1000, b"bye")]);
        fail_case(&bytes, &[text("last message")], 1000)
    });
    c.add("close_sent_byte_by_byte", || {
        fail_case_chopped(&close_frame(3000, b"slowly"), 1, &[], 3000)
    });
    c.add("close_mid_fragmented_message", || {
        let bytes = cat(&[
            &frame(false, BINARY, b"unfinished"),
            &close_frame(1000, b""),
        ]);
        fail_case(&bytes, &[], 1000)
    });
    c.add("close_fragmented_is_1002", || {
        let bytes = cat(&[
            &raw_frame(false, 0, 0x8, &close_payload(1000, b"")),
            &frame(true, CONTINUATION, b""),
        ]);
        fail_case(&bytes, &[], 1002)
    });
    c.add("close_len_126_header_is_1002", || {
        fail_fast_case(
            &header_only(true, 0x8, 126),
            1002,
            "waits for the payload of a Close over 125 bytes",
        )
    });
    c.add("close_after_ping_pong_comes_first", || {
        let bytes = cat(&[&frame(true, PING, b"p"), &close_frame(1000, b"")]);
        fail_case(&bytes, &[pong(b"p")], 1000)
    });
}
