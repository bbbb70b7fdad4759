//! Reserved bits (RFC 6455 §5.2: RSV1–3 must be 0 unless an extension
//! defines them, and none is negotiated): each combination on each kind of
//! frame fails the connection with 1002, after echoing what preceded it
//! and without echoing what follows (Autobahn section 3).

use super::Cases;
use super::steps::*;

pub fn cases(c: &mut Cases) {
    let kinds: [(&str, u8); 6] = [
        ("text", 0x1),
        ("binary", 0x2),
        ("continuation", 0x0),
        ("ping", 0x9),
        ("pong", 0xA),
        ("close", 0x8),
    ];
    for (kind, opcode) in kinds {
        for rsv in 1..=7u8 {
            c.add(format!("rsv_{rsv}_on_{kind}_is_1002"), move || {
                let mut bytes = text_frame("before");
                let payload: Vec<u8> = match kind {
                    "close" => close_payload(1000, b""),
                    _ => b"payload".to_vec(),
                };
                if kind == "continuation" {
                    // A continuation needs an open message to continue.
                    bytes.extend(frame(false, TEXT, b"open "));
                }
                bytes.extend(raw_frame(true, rsv, opcode, &payload));
                bytes.extend(text_frame("after"));
                fail_case(&bytes, &[text("before")], 1002)
            });
        }
    }
    c.add("rsv_1_on_first_fragment_is_1002", || {
        let bytes = cat(&[
            &raw_frame(false, 4, 0x1, b"frag"),
            &frame(true, CONTINUATION, b"ment"),
        ]);
        fail_case(&bytes, &[], 1002)
    });
    c.add("rsv_on_empty_text_frame_is_1002", || {
        fail_case(&raw_frame(true, 2, 0x1, b""), &[], 1002)
    });
    c.add("rsv_on_text_sent_byte_by_byte_is_1002", || {
        let bytes = cat(&[
            &text_frame("before"),
            &raw_frame(true, 1, 0x1, b"bad"),
            &text_frame("after"),
        ]);
        fail_case_chopped(&bytes, 1, &[text("before")], 1002)
    });
    c.add("rsv_on_ping_after_ping_answers_only_the_first", || {
        let bytes = cat(&[
            &frame(true, PING, b"good"),
            &raw_frame(true, 7, 0x9, b"bad"),
        ]);
        fail_case(&bytes, &[pong(b"good")], 1002)
    });
}
