//! Reserved opcodes (RFC 6455 §5.2: 3–7 are reserved data frames, 0xB–0xF
//! reserved control frames): 1002 on a fresh connection, after a valid
//! message (which is echoed first), and in the middle of a fragmented
//! message (Autobahn section 4).

use super::Cases;
use super::steps::*;

const RESERVED: [u8; 10] = [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF];

pub fn cases(c: &mut Cases) {
    for op in RESERVED {
        c.add(format!("opcode_{op:x}_alone_is_1002"), move || {
            fail_case(&raw_frame(true, 0, op, b""), &[], 1002)
        });
        c.add(
            format!("opcode_{op:x}_with_payload_after_a_message_is_1002"),
            move || {
                let bytes = cat(&[
                    &text_frame("valid first"),
                    &raw_frame(true, 0, op, b"reserved payload"),
                    &frame(true, PING, b"never answered"),
                ]);
                fail_case(&bytes, &[text("valid first")], 1002)
            },
        );
        c.add(
            format!("opcode_{op:x}_mid_fragmentation_is_1002"),
            move || {
                let bytes = cat(&[
                    &frame(false, TEXT, b"half a "),
                    &raw_frame(true, 0, op, b""),
                    &frame(true, CONTINUATION, b"message"),
                ]);
                fail_case(&bytes, &[], 1002)
            },
        );
        c.add(format!("opcode_{op:x}_without_fin_is_1002"), move || {
            fail_case(&raw_frame(false, 0, op, b"x"), &[], 1002)
        });
    }
    c.add("reserved_opcode_after_ping_answers_the_ping_first", || {
        let bytes = cat(&[&frame(true, PING, b"p"), &raw_frame(true, 0, 0xB, b"")]);
        fail_case(&bytes, &[pong(b"p")], 1002)
    });
}
