//! wschat's own limits (RFC 6455 §7.4.1 1009, §10.4): `/echo` takes 16
//! MiB and refuses more from the header alone; the chat refuses messages
//! over `--max-message-bytes` with 1009. (What any server must do with
//! lengths and masks is in the conformance tool.)

use crate::Cases;
use crate::common::Client;
use crate::support::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use wschat::protocol::frame::OpCode;
use wschat::protocol::message::Message;

const ECHO_LIMIT: usize = 16 << 20;
const CHAT_LIMIT: usize = 65536;

pub fn cases(c: &mut Cases) {
    c.add("echo_16mib_binary_in_one_frame_byte_exact", || {
        let mut b = pattern_bytes(ECHO_LIMIT);
        b[ECHO_LIMIT - 1] = 0xee;
        echo_case(frame(true, OpCode::Binary, &b), &[Message::Binary(b)])
    });
    // Decided from the header alone, quickly (the tool reports only the
    // code: its cases run against servers that may decide later).
    for (name, len) in [
        ("16mib_plus_1", ECHO_LIMIT as u64 + 1),
        ("2_63_minus_1", (1 << 63) - 1),
        ("2_40", 1 << 40),
    ] {
        c.add(format!("echo_length_{name}_is_1009_at_once"), move || {
            timed_fail(&header_only(true, 0x2, len), 1009)
        });
    }

    // The chat's --max-message-bytes (65536 by default).
    for (name, op) in [("text", OpCode::Text), ("binary", OpCode::Binary)] {
        c.add(format!("chat_{name}_at_limit_is_delivered"), move || {
            let server = own_server(|_| {});
            let (mut sender, mut receiver) = chat_pair(server.addr())?;
            let payload = payload_of(op, CHAT_LIMIT);
            sender.write(&frame(true, op, &payload))?;
            receiver.expect(&message_of(op, payload))?;
            finish(sender)
        });
        c.add(format!("chat_{name}_one_over_limit_is_1009"), move || {
            let server = own_server(|_| {});
            let (mut sender, mut receiver) = chat_pair(server.addr())?;
            let _ = sender.write(&frame(true, op, &payload_of(op, CHAT_LIMIT + 1)));
            sender.expect_close_after(&[], 1009)?;
            receiver.expect_silence(Duration::from_millis(100))
        });
        c.add(
            format!("chat_{name}_over_limit_in_fragments_is_1009"),
            move || {
                let server = own_server(|_| {});
                let mut sender = Client::try_connect(server.addr(), "/", &[])?;
                let payload = payload_of(op, CHAT_LIMIT + 1);
                let (a, b) = payload.split_at(40_000);
                let bytes = cat(&[&frame(false, op, a), &frame(true, OpCode::Continuation, b)]);
                let _ = sender.write(&bytes);
                sender.expect_close_after(&[], 1009)
            },
        );
    }
    c.add("chat_header_announcing_2_40_is_1009_at_once", || {
        let server = own_server(|_| {});
        timed_fail_at(server.addr(), "/", &header_only(true, 0x1, 1 << 40), 1009)
    });
    c.add(
        "chat_header_announcing_2_63_minus_1_is_1009_at_once",
        || {
            let server = own_server(|_| {});
            timed_fail_at(
                server.addr(),
                "/",
                &header_only(true, 0x2, (1 << 63) - 1),
                1009,
            )
        },
    );
    c.add(
        "chat_header_announcing_limit_plus_1_is_1009_at_once",
        || {
            let server = own_server(|_| {});
            timed_fail_at(
                server.addr(),
                "/",
                &header_only(true, 0x1, CHAT_LIMIT as u64 + 1),
                1009,
            )
        },
    );
    c.add("chat_top_bit_length_is_1002", || {
        let server = own_server(|_| {});
        timed_fail_at(server.addr(), "/", &header_only(true, 0x1, 1 << 63), 1002)
    });
    c.add("chat_max_1000_at_limit_delivered_and_1001_is_1009", || {
        let server = own_server(|c| c.max_message_bytes = 1000);
        let (mut sender, mut receiver) = chat_pair(server.addr())?;
        let t = pattern_text(1000);
        sender.write(&text_frame(&t))?;
        receiver.expect(&text(&t))?;
        let _ = sender.write(&text_frame(&pattern_text(1001)));
        sender.expect_close_after(&[], 1009)
    });
    c.add("chat_v1_over_limit_is_1009", || {
        let server = own_server(|c| c.max_message_bytes = 100);
        let mut client = Client::try_connect(server.addr(), "/", &["wschat.v1"])?;
        let welcome = client.next()?;
        ensure(
            matches!(&welcome, Message::Text(t) if t.starts_with("{\"type\":\"welcome\"")),
            || format!("expected the welcome event, got {welcome:?}"),
        )?;
        let _ = client.write(&text_frame(&"x".repeat(101)));
        client.expect_close_after(&[], 1009)
    });
    c.add("echo_is_not_limited_by_max_message_bytes", || {
        let server = own_server(|c| c.max_message_bytes = 1000);
        let mut client = Client::try_echo(server.addr())?;
        let b = pattern_bytes(100_000);
        let writer = write_in_background(&client, frame(true, OpCode::Binary, &b))?;
        client.expect(&binary(&b))?;
        join_writer(writer)?;
        finish(client)
    });
}

fn payload_of(op: OpCode, len: usize) -> Vec<u8> {
    match op {
        OpCode::Text => pattern_text(len).into_bytes(),
        _ => pattern_bytes(len),
    }
}

fn message_of(op: OpCode, payload: Vec<u8>) -> Message {
    match op {
        OpCode::Text => Message::Text(String::from_utf8(payload).expect("text")),
        _ => Message::Binary(payload),
    }
}

/// Sends only `bytes` (a header that announces a payload that never
/// comes) and expects the close at once, i.e. well before any payload
/// could have arrived.
fn timed_fail(bytes: &[u8], code: u16) -> crate::Outcome {
    timed_fail_at(shared_addr(), "/echo", bytes, code)
}

fn timed_fail_at(addr: SocketAddr, path: &str, bytes: &[u8], code: u16) -> crate::Outcome {
    let mut client = Client::try_connect(addr, path, &[])?;
    let started = Instant::now();
    client.write(bytes)?;
    client.expect_close_after(&[], code)?;
    let took = started.elapsed();
    ensure(took < Duration::from_secs(2), || {
        format!("the close took {took:?}: not decided from the header")
    })
}

/// Two raw chat clients on a server of their own, both surely in the room
/// (a message from the sender has reached the receiver).
fn chat_pair(addr: SocketAddr) -> Result<(Client, Client), String> {
    let mut receiver = Client::try_connect(addr, "/", &[])?;
    let mut sender = Client::try_connect(addr, "/", &[])?;
    // The receiver's join may, in principle, reach the room after the
    // sender's first message: repeat until one arrives, then drain the
    // rest of them.
    for i in 0..50 {
        sender.write(&text_frame(&format!("ready {i}")))?;
        if let Some(m) = receiver.next_within(Duration::from_millis(100))? {
            ensure(
                matches!(&m, Message::Text(t) if t.starts_with("ready ")),
                || format!("unexpected {m:?}"),
            )?;
            while let Some(m) = receiver.next_within(Duration::from_millis(100))? {
                ensure(
                    matches!(&m, Message::Text(t) if t.starts_with("ready ")),
                    || format!("unexpected {m:?}"),
                )?;
            }
            return Ok((sender, receiver));
        }
    }
    Err("the receiver never joined the room".into())
}
