//! UTF-8 in text messages (RFC 6455 §5.6, §8.1; Autobahn section 6):
//! valid sequences of every length are echoed, in one frame or one byte
//! per fragment; invalid ones (overlongs, surrogates, code points above
//! U+10FFFF, stray bytes, truncations) fail the connection with 1007, and
//! as soon as the bytes cannot be UTF-8 any more: before the final
//! fragment, even before the end of the frame.

use super::Cases;
use super::steps::*;
use std::time::Duration;

/// (name, text) that must be echoed unchanged.
const VALID: [(&str, &str); 20] = [
    ("ascii", "Hello-µ@ßöäüàá-UTF-8!!"),
    ("u0000", "\u{0}"),
    ("u007f", "\u{7f}"),
    ("u0080", "\u{80}"),
    ("u07ff", "\u{7ff}"),
    ("u0800", "\u{800}"),
    ("ud7ff", "\u{d7ff}"),
    ("ue000", "\u{e000}"),
    ("ufeff_bom", "\u{feff}"),
    ("ufffd", "\u{fffd}"),
    ("ufffe_noncharacter", "\u{fffe}"),
    ("uffff", "\u{ffff}"),
    ("u10000", "\u{10000}"),
    ("u1fffe", "\u{1fffe}"),
    ("u10fffe", "\u{10fffe}"),
    ("u10ffff", "\u{10ffff}"),
    ("kosme", "κόσμε"),
    (
        "every_length",
        "a\u{a2}\u{20ac}\u{10348}\u{7f}\u{7ff}\u{ffff}\u{10ffff}",
    ),
    ("cjk", "你好，世界"),
    ("emoji_sequence", "😀👍🏽👨‍👩‍👧"),
];

/// (name, bytes) that are not UTF-8. `fail_fast`: the bytes cannot begin
/// any valid text, so the server can (and must) fail before the message
/// ends; the truncated ones are valid prefixes and fail only at the end.
const INVALID: [(&str, &[u8], bool); 41] = [
    // Overlong encodings.
    ("overlong_nul_c0_80", &[0xc0, 0x80], true),
    ("overlong_c1_bf", &[0xc1, 0xbf], true),
    ("overlong_slash_c0_af", &[0xc0, 0xaf], true),
    ("overlong_slash_e0_80_af", &[0xe0, 0x80, 0xaf], true),
    (
        "overlong_slash_f0_80_80_af",
        &[0xf0, 0x80, 0x80, 0xaf],
        true,
    ),
    (
        "overlong_slash_f8_80_80_80_af",
        &[0xf8, 0x80, 0x80, 0x80, 0xaf],
        true,
    ),
    (
        "overlong_slash_fc_80_80_80_80_af",
        &[0xfc, 0x80, 0x80, 0x80, 0x80, 0xaf],
        true,
    ),
    ("overlong_max_e0_9f_bf", &[0xe0, 0x9f, 0xbf], true),
    ("overlong_max_f0_8f_bf_bf", &[0xf0, 0x8f, 0xbf, 0xbf], true),
    ("overlong_nul_e0_80_80", &[0xe0, 0x80, 0x80], true),
    ("overlong_nul_f0_80_80_80", &[0xf0, 0x80, 0x80, 0x80], true),
    // UTF-16 surrogates, single and paired.
    ("surrogate_d800", &[0xed, 0xa0, 0x80], true),
    ("surrogate_db7f", &[0xed, 0xad, 0xbf], true),
    ("surrogate_db80", &[0xed, 0xae, 0x80], true),
    ("surrogate_dbff", &[0xed, 0xaf, 0xbf], true),
    ("surrogate_dc00", &[0xed, 0xb0, 0x80], true),
    ("surrogate_df80", &[0xed, 0xbe, 0x80], true),
    ("surrogate_dfff", &[0xed, 0xbf, 0xbf], true),
    (
        "surrogate_pair_d800_dc00",
        &[0xed, 0xa0, 0x80, 0xed, 0xb0, 0x80],
        true,
    ),
    (
        "surrogate_pair_dbff_dfff",
        &[0xed, 0xaf, 0xbf, 0xed, 0xbf, 0xbf],
        true,
    ),
    // Beyond U+10FFFF.
    ("above_max_110000", &[0xf4, 0x90, 0x80, 0x80], true),
    ("above_max_f5", &[0xf5, 0x80, 0x80, 0x80], true),
    ("above_max_1fffff", &[0xf7, 0xbf, 0xbf, 0xbf], true),
    ("five_byte_f8", &[0xf8, 0x88, 0x80, 0x80, 0x80], true),
    ("six_byte_fc", &[0xfc, 0x84, 0x80, 0x80, 0x80, 0x80], true),
    // Bytes that never occur in UTF-8, and stray continuation bytes.
    ("byte_fe", &[0xfe], true),
    ("byte_ff", &[0xff], true),
    ("bytes_fe_fe_ff_ff", &[0xfe, 0xfe, 0xff, 0xff], true),
    ("lone_continuation_80", &[0x80], true),
    ("lone_continuation_bf", &[0xbf], true),
    ("continuations_80_bf_80_bf", &[0x80, 0xbf, 0x80, 0xbf], true),
    ("lonely_start_c2_space", &[0xc2, 0x20], true),
    ("lonely_start_e1_space", &[0xe1, 0x20], true),
    ("lonely_start_f1_space", &[0xf1, 0x20], true),
    (
        "three_byte_missing_last_then_ascii",
        &[0xe2, 0x82, 0x41],
        true,
    ),
    (
        "kosme_then_surrogate",
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
        true,
    ),
    // Truncated at the very end: only the end of the message shows it.
    ("truncated_2_byte_c2", &[0xc2], false),
    ("truncated_3_byte_e2_82", &[0xe2, 0x82], false),
    ("truncated_4_byte_f0_9f_98", &[0xf0, 0x9f, 0x98], false),
    ("truncated_kosme_e1_bd", &[0xce, 0xba, 0xe1, 0xbd], false),
    ("truncated_max_f4_8f_bf", &[0x61, 0xf4, 0x8f, 0xbf], false),
];

pub fn cases(c: &mut Cases) {
    for (name, t) in VALID {
        c.add(format!("valid_{name}_one_frame"), move || {
            echo_case(text_frame(t), &[text(t)])
        });
        c.add(format!("valid_{name}_one_byte_per_fragment"), move || {
            let chunks: Vec<&[u8]> = t.as_bytes().chunks(1).collect();
            echo_case(fragments_of(TEXT, &chunks), &[text(t)])
        });
        c.add(format!("valid_{name}_one_byte_per_write"), move || {
            let mut client = echo()?;
            client.write_paced(&text_frame(t), 1, Duration::ZERO)?;
            client.expect(&text(t))?;
            finish(client)
        });
    }
    c.add("valid_every_code_point_boundary_in_one_message", || {
        let mut t = String::new();
        for cp in (0..=0x10ffffu32).step_by(0x3ff) {
            if let Some(ch) = char::from_u32(cp) {
                t.push(ch);
            }
        }
        t.push('\u{10ffff}');
        echo_case(text_frame(&t), &[text(&t)])
    });
    c.add("binary_with_invalid_utf8_is_echoed", || {
        let b = [
            0xc0, 0x80, 0xed, 0xa0, 0x80, 0xf4, 0x90, 0x80, 0x80, 0xff, 0xfe, 0xc2,
        ];
        echo_case(frame(true, BINARY, &b), &[binary(&b)])
    });

    for (name, bad, fail_fast) in INVALID {
        c.add(format!("invalid_{name}_one_frame_is_1007"), move || {
            fail_case(&frame(true, TEXT, bad), &[], 1007)
        });
        c.add(
            format!("invalid_{name}_one_byte_per_fragment_is_1007"),
            move || {
                let mut payload = b"ok ".to_vec();
                payload.extend_from_slice(bad);
                let chunks: Vec<&[u8]> = payload.chunks(1).collect();
                fail_case(&fragments_of(TEXT, &chunks), &[], 1007)
            },
        );
        c.add(
            format!("invalid_{name}_after_a_valid_message_is_1007"),
            move || {
                let bytes = cat(&[&text_frame("fine"), &frame(true, TEXT, bad)]);
                fail_case(&bytes, &[text("fine")], 1007)
            },
        );
        if fail_fast {
            c.add(
                format!("invalid_{name}_fails_before_the_final_fragment"),
                move || {
                    // κόσμε, then the bad bytes in a fragment without FIN; the
                    // final fragment is never sent.
                    let bytes = cat(&[
                        &frame(false, TEXT, "κόσμε".as_bytes()),
                        &frame(false, CONTINUATION, bad),
                    ]);
                    fail_fast_case(&bytes, 1007, "waits for the final fragment to check UTF-8")
                },
            );
            c.add(
                format!("invalid_{name}_fails_before_the_frame_ends"),
                move || {
                    // A frame announcing 100 more bytes than are sent.
                    let mut payload = b"valid start ".to_vec();
                    payload.extend_from_slice(bad);
                    let mut bytes = header_only(true, 0x1, payload.len() as u64 + 100);
                    let at = bytes.len();
                    bytes.extend_from_slice(&payload);
                    for (i, b) in bytes[at..].iter_mut().enumerate() {
                        *b ^= MASK[i % 4];
                    }
                    fail_fast_case(
                        &bytes,
                        1007,
                        "waits for the end of the frame to check UTF-8",
                    )
                },
            );
        }
    }

    c.add("fail_fast_sequence_split_across_fragments", || {
        // F4 90 is above U+10FFFF: fails at the 0x90, with FIN never sent.
        let bytes = cat(&[
            &frame(
                false,
                TEXT,
                b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4",
            ),
            &frame(false, CONTINUATION, b"\x90"),
        ]);
        fail_fast_case(&bytes, 1007, "waits for the final fragment to check UTF-8")
    });
    c.add("fail_fast_with_pauses_between_fragments", || {
        let mut client = echo()?;
        client.write(&frame(false, TEXT, "κόσμε".as_bytes()))?;
        std::thread::sleep(PAUSE);
        client.write(&frame(false, CONTINUATION, b"\xed"))?;
        std::thread::sleep(PAUSE);
        client.write(&frame(false, CONTINUATION, b"\xa0"))?;
        expect_close(&mut client, &[], 1007)
    });
    c.add("truncated_character_before_a_new_message_is_1007", || {
        // The first message ends inside a character: invalid even though
        // the next message would "complete" it.
        let bytes = cat(&[
            &frame(true, TEXT, &[0xe2, 0x82]),
            &frame(true, TEXT, &[0xac]),
        ]);
        fail_case(&bytes, &[], 1007)
    });
    c.add("valid_text_after_binary_with_invalid_utf8", || {
        let bytes = cat(&[&frame(true, BINARY, &[0xff, 0xc0]), &text_frame("€")]);
        echo_case(bytes, &[binary(&[0xff, 0xc0]), text("€")])
    });
}
