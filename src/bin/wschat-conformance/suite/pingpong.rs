//! Ping and Pong (RFC 6455 §5.5.2, §5.5.3; Autobahn section 2).

use super::Cases;
use super::steps::*;
use std::time::Duration;

pub fn cases(c: &mut Cases) {
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("text_hello", b"Hello, world!".to_vec()),
        ("utf8_text", "κόσμε €𝄞".as_bytes().to_vec()),
        ("binary_0_to_124", (0..125u8).collect()),
        ("binary_ff_x125", vec![0xff; 125]),
        ("binary_zero_x1", vec![0]),
        (
            "binary_invalid_utf8",
            vec![0xc0, 0x80, 0xed, 0xa0, 0x80, 0xfe],
        ),
        ("len_125", pattern_bytes(125)),
    ];
    for (name, payload) in payloads {
        let p = payload.clone();
        c.add(format!("ping_{name}_gets_pong"), move || {
            echo_case(frame(true, PING, &p), &[pong(&p)])
        });
        if name == "len_125" {
            c.add("ping_len_125_byte_by_byte_gets_pong", move || {
                let mut client = echo()?;
                client.write_chopped(&frame(true, PING, &payload), 1)?;
                client.expect(&pong(&payload))?;
                finish(client)
            });
        }
    }
    c.add("ping_len_126_is_1002", || {
        fail_case(&raw_frame(true, 0, PING, &[b'x'; 126]), &[], 1002)
    });
    c.add("ping_len_126_header_only_is_1002", || {
        fail_fast_case(
            &header_only(true, PING, 126),
            1002,
            "waits for the payload of a control frame over 125 bytes",
        )
    });
    c.add("ping_64bit_length_form_is_1002", || {
        fail_fast_case(
            &header_only(true, PING, 1 << 20),
            1002,
            "waits for the payload of a control frame over 125 bytes",
        )
    });
    c.add("ping_fragmented_is_1002", || {
        let bytes = cat(&[
            &raw_frame(false, 0, PING, b"frag"),
            &raw_frame(true, 0, 0x0, b"ment"),
        ]);
        fail_case(&bytes, &[], 1002)
    });
    c.add("ping_after_message_then_fragmented_ping_is_1002", || {
        let bytes = cat(&[&text_frame("before"), &raw_frame(false, 0, PING, b"")]);
        fail_case(&bytes, &[text("before")], 1002)
    });
    c.add("ping_between_fragments_answered_first", || {
        let bytes = cat(&[
            &frame(false, TEXT, b"Hello, "),
            &frame(true, PING, b"in between"),
            &frame(true, CONTINUATION, b"world"),
        ]);
        echo_case(bytes, &[pong(b"in between"), text("Hello, world")])
    });
    c.add("ping_between_fragments_in_separate_writes", || {
        let mut client = echo()?;
        client.write(&frame(false, BINARY, b"one"))?;
        std::thread::sleep(PAUSE);
        client.write(&frame(true, PING, b"p"))?;
        client.expect(&pong(b"p"))?; // answered before the message completes
        client.write(&frame(true, CONTINUATION, b"two"))?;
        client.expect(&binary(b"onetwo"))?;
        finish(client)
    });
    c.add("ten_pings_in_a_row_answered_in_order", || {
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        for i in 0..10 {
            let p = format!("ping #{i}");
            bytes.extend(frame(true, PING, p.as_bytes()));
            want.push(pong(p.as_bytes()));
        }
        echo_case(bytes, &want)
    });
    c.add("ten_pings_in_separate_writes_answered_in_order", || {
        let mut client = echo()?;
        for i in 0..10 {
            client.write(&frame(true, PING, &[i; 10]))?;
        }
        for i in 0..10 {
            client.expect(&pong(&[i; 10]))?;
        }
        finish(client)
    });
    c.add("thousand_pings_in_one_write_all_answered_in_order", || {
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        for i in 0..1000u32 {
            bytes.extend(frame(true, PING, &i.to_be_bytes()));
            want.push(pong(&i.to_be_bytes()));
        }
        echo_case(bytes, &want)
    });
    c.add("pings_between_messages_keep_their_place", || {
        let bytes = cat(&[
            &text_frame("a"),
            &frame(true, PING, b"1"),
            &frame(true, BINARY, b"b"),
            &frame(true, PING, b"2"),
            &text_frame("c"),
        ]);
        echo_case(
            bytes,
            &[text("a"), pong(b"1"), binary(b"b"), pong(b"2"), text("c")],
        )
    });
    for (name, payload) in [
        ("empty", vec![]),
        ("text", b"unsolicited".to_vec()),
        ("len_125", pattern_bytes(125)),
    ] {
        c.add(format!("unsolicited_pong_{name}_ignored"), move || {
            let bytes = cat(&[&frame(true, PONG, &payload), &text_frame("after the pong")]);
            echo_case(bytes, &[text("after the pong")])
        });
    }
    c.add("unsolicited_pong_then_ping_gets_only_the_pong", || {
        let bytes = cat(&[
            &frame(true, PONG, b"not an answer"),
            &frame(true, PING, b"question"),
        ]);
        echo_case(bytes, &[pong(b"question")])
    });
    c.add("pong_between_fragments_ignored", || {
        let bytes = cat(&[
            &frame(false, TEXT, b"frag"),
            &frame(true, PONG, b"x"),
            &frame(true, CONTINUATION, b"ment"),
        ]);
        echo_case(bytes, &[text("fragment")])
    });
    c.add("pong_len_126_is_1002", || {
        fail_case(&raw_frame(true, 0, PONG, &[0; 126]), &[], 1002)
    });
    c.add("pong_fragmented_is_1002", || {
        let bytes = cat(&[
            &raw_frame(false, 0, PONG, b"a"),
            &raw_frame(true, 0, 0x0, b"b"),
        ]);
        fail_case(&bytes, &[], 1002)
    });
    c.add("ping_then_close_pong_comes_first", || {
        let bytes = cat(&[&frame(true, PING, b"last words"), &close_frame(1000, b"")]);
        fail_case(&bytes, &[pong(b"last words")], 1000)
    });
    c.add("ping_after_close_is_not_answered", || {
        let bytes = cat(&[&close_frame(1000, b""), &frame(true, PING, b"too late")]);
        fail_case(&bytes, &[], 1000)
    });
    c.add("ping_payload_split_across_writes", || {
        let mut client = echo()?;
        let bytes = frame(true, PING, b"split payload");
        client.write_paced(&bytes, 5, Duration::from_millis(1))?;
        client.expect(&pong(b"split payload"))?;
        finish(client)
    });
}
