//! Fragmentation (RFC 6455 §5.4; Autobahn section 5): messages in any
//! number of fragments, empty fragments, control frames in between, and
//! the two sequencing errors (a continuation with nothing to continue, a
//! new message inside an open one).

use super::Cases;

use super::client::Message;
use super::steps::*;

pub fn cases(c: &mut Cases) {
    for pieces in [1usize, 2, 3, 5, 16, 100, 1000] {
        c.add(format!("text_in_{pieces}_fragments"), move || {
            let t = pattern_text(3000);
            echo_case(fragmented(TEXT, t.as_bytes(), pieces), &[text(&t)])
        });
        c.add(format!("binary_in_{pieces}_fragments"), move || {
            let b = pattern_bytes(3000);
            echo_case(fragmented(BINARY, &b, pieces), &[binary(&b)])
        });
    }
    c.add("text_in_3_fragments_separate_writes", || {
        let mut client = echo()?;
        for part in [
            frame(false, TEXT, b"one "),
            frame(false, CONTINUATION, b"two "),
            frame(true, CONTINUATION, b"three"),
        ] {
            client.write(&part)?;
            std::thread::sleep(PAUSE);
        }
        client.expect(&text("one two three"))?;
        finish(client)
    });
    c.add("binary_fragments_byte_by_byte", || {
        let b = pattern_bytes(40);
        let mut client = echo()?;
        client.write_chopped(&fragmented(BINARY, &b, 4), 1)?;
        client.expect(&binary(&b))?;
        finish(client)
    });
    c.add("two_fragmented_messages_back_to_back", || {
        let bytes = cat(&[
            &fragments_of(TEXT, &[b"first ", b"message"]),
            &fragments_of(BINARY, &[b"second", b" ", b"message"]),
            &fragments_of(TEXT, &[b"third"]),
        ]);
        echo_case(
            bytes,
            &[
                text("first message"),
                binary(b"second message"),
                text("third"),
            ],
        )
    });

    // Empty fragments are fragments like any other.
    let empties: [(&str, u8, &[&[u8]], Message); 7] = [
        (
            "empty_first_fragment",
            TEXT,
            &[b"", b"abc", b"def"],
            text("abcdef"),
        ),
        (
            "empty_middle_fragment",
            TEXT,
            &[b"abc", b"", b"def"],
            text("abcdef"),
        ),
        (
            "empty_last_fragment",
            TEXT,
            &[b"abc", b"def", b""],
            text("abcdef"),
        ),
        ("all_fragments_empty_text", TEXT, &[b"", b"", b""], text("")),
        (
            "all_fragments_empty_binary",
            BINARY,
            &[b"", b"", b"", b""],
            binary(b""),
        ),
        (
            "empty_fragments_binary_mixed",
            BINARY,
            &[b"", b"\x00", b"", b"\xff", b""],
            binary(b"\x00\xff"),
        ),
        ("single_empty_text_frame", TEXT, &[b""], text("")),
    ];
    for (name, op, chunks, want) in empties {
        c.add(name, move || echo_case(fragments_of(op, chunks), &[want]));
    }

    // A continuation with nothing to continue.
    c.add("continuation_without_start_fin_is_1002", || {
        fail_case(&frame(true, CONTINUATION, b"orphan"), &[], 1002)
    });
    c.add("continuation_without_start_no_fin_is_1002", || {
        fail_case(&frame(false, CONTINUATION, b"orphan"), &[], 1002)
    });
    c.add("empty_continuation_without_start_is_1002", || {
        fail_case(&frame(true, CONTINUATION, b""), &[], 1002)
    });
    c.add("continuation_after_a_complete_message_is_1002", || {
        let bytes = cat(&[
            &text_frame("complete"),
            &frame(true, CONTINUATION, b"orphan"),
        ]);
        fail_case(&bytes, &[text("complete")], 1002)
    });
    c.add(
        "continuation_after_a_complete_fragmented_message_is_1002",
        || {
            let bytes = cat(&[
                &fragments_of(BINARY, &[b"a", b"b"]),
                &frame(true, CONTINUATION, b"c"),
            ]);
            fail_case(&bytes, &[binary(b"ab")], 1002)
        },
    );
    c.add("continuation_then_text_sent_byte_by_byte_is_1002", || {
        let bytes = cat(&[&frame(false, CONTINUATION, b"orphan"), &text_frame("never")]);
        fail_case_chopped(&bytes, 1, &[], 1002)
    });

    // A new data message inside an open one.
    for (first, second, fin) in [
        (TEXT, TEXT, true),
        (TEXT, TEXT, false),
        (TEXT, BINARY, true),
        (BINARY, TEXT, true),
        (BINARY, BINARY, false),
    ] {
        let name = format!(
            "{}_inside_open_{}{}_is_1002",
            opname(second),
            opname(first),
            if fin { "" } else { "_no_fin" }
        );
        c.add(name, move || {
            let bytes = cat(&[
                &frame(false, first, b"open "),
                &frame(fin, second, b"intruder"),
                &frame(true, CONTINUATION, b"end"),
            ]);
            fail_case(&bytes, &[], 1002)
        });
    }
    c.add(
        "new_message_inside_open_one_after_a_valid_message_is_1002",
        || {
            let bytes = cat(&[
                &text_frame("fine"),
                &frame(false, TEXT, b"open"),
                &text_frame("intruder"),
            ]);
            fail_case(&bytes, &[text("fine")], 1002)
        },
    );

    // Control frames between fragments.
    c.add("ping_between_every_fragment", || {
        let t = pattern_text(100);
        let parts: Vec<&[u8]> = t.as_bytes().chunks(10).collect();
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let op = if i == 0 { TEXT } else { CONTINUATION };
            bytes.extend(frame(i + 1 == parts.len(), op, part));
            if i + 1 < parts.len() {
                let p = format!("p{i}");
                bytes.extend(frame(true, PING, p.as_bytes()));
                want.push(pong(p.as_bytes()));
            }
        }
        want.push(text(&t));
        echo_case(bytes, &want)
    });
    c.add("pings_and_pongs_between_fragments", || {
        let bytes = cat(&[
            &frame(false, BINARY, b"1"),
            &frame(true, PONG, b"ignored"),
            &frame(true, PING, b"a"),
            &frame(false, CONTINUATION, b"2"),
            &frame(true, PING, b"b"),
            &frame(true, PONG, b""),
            &frame(true, CONTINUATION, b"3"),
        ]);
        echo_case(bytes, &[pong(b"a"), pong(b"b"), binary(b"123")])
    });
    c.add("ping_before_first_fragment_and_after_last", || {
        let bytes = cat(&[
            &frame(true, PING, b"before"),
            &frame(false, TEXT, b"x"),
            &frame(true, CONTINUATION, b"y"),
            &frame(true, PING, b"after"),
        ]);
        echo_case(bytes, &[pong(b"before"), text("xy"), pong(b"after")])
    });
    c.add("close_between_fragments_ends_without_the_message", || {
        let bytes = cat(&[
            &frame(false, TEXT, b"never "),
            &close_frame(1000, b""),
            &frame(true, CONTINUATION, b"finished"),
        ]);
        fail_case(&bytes, &[], 1000)
    });
    c.add("fragments_and_pings_with_pauses", || {
        let mut client = echo()?;
        let parts: [&[u8]; 4] = [b"slow", b"ly ", b"but ", b"surely"];
        for (i, part) in parts.iter().enumerate() {
            let op = if i == 0 { TEXT } else { CONTINUATION };
            client.write(&frame(i == 3, op, part))?;
            std::thread::sleep(std::time::Duration::from_millis(20));
            if i < 3 {
                client.write(&frame(true, PING, &[i as u8]))?;
                client.expect(&pong(&[i as u8]))?;
            }
        }
        client.expect(&text("slowly but surely"))?;
        finish(client)
    });

    // Multi-byte characters cut by fragment boundaries.
    const MULTI: &str = "κόσμε € 𝄞 \u{10ffff} \u{800}\u{7ff}";
    c.add("text_split_in_two_at_every_byte", || {
        let bytes = MULTI.as_bytes();
        let mut client = echo()?;
        for cut in 0..=bytes.len() {
            client.write(&fragments_of(TEXT, &[&bytes[..cut], &bytes[cut..]]))?;
            client
                .expect(&text(MULTI))
                .map_err(|e| e.prefixed(&format!("cut at {cut}: ")))?;
        }
        finish(client)
    });
    c.add("text_one_fragment_per_byte", || {
        let chunks: Vec<&[u8]> = MULTI.as_bytes().chunks(1).collect();
        echo_case(fragments_of(TEXT, &chunks), &[text(MULTI)])
    });
    c.add("four_byte_character_split_in_three_fragments", || {
        let b = "𝄞".as_bytes();
        let bytes = fragments_of(TEXT, &[&b[..1], &b[1..3], &b[3..]]);
        echo_case(bytes, &[text("𝄞")])
    });
    c.add("three_byte_character_split_with_ping_between", || {
        let b = "€".as_bytes();
        let bytes = cat(&[
            &frame(false, TEXT, &b[..2]),
            &frame(true, PING, b""),
            &frame(true, CONTINUATION, &b[2..]),
        ]);
        echo_case(bytes, &[pong(b""), text("€")])
    });
    for seed in 1..=6u64 {
        c.add(
            format!("random_text_random_fragments_seed_{seed}"),
            move || {
                let mut rng = Rng::new(100 + seed);
                let mut bytes = Vec::new();
                let mut want = Vec::new();
                for _ in 0..40 {
                    let len = rng.below(3000);
                    let t = rng.text(len);
                    let sizes = rng.split(len, 20);
                    let mut chunks: Vec<&[u8]> = Vec::new();
                    let mut at = 0;
                    for s in sizes {
                        chunks.push(&t.as_bytes()[at..at + s]);
                        at += s;
                    }
                    bytes.extend(fragments_of(TEXT, &chunks));
                    want.push(text(&t));
                }
                echo_case(bytes, &want)
            },
        );
    }
}

fn opname(op: u8) -> &'static str {
    match op {
        TEXT => "text",
        BINARY => "binary",
        _ => "control",
    }
}
