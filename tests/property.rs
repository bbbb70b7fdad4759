//! Property tests of the protocol module, with a fixed-seed generator
//! (the tests have no `rand` or `proptest`): thousands of generated cases,
//! each run in well under a second.
//!
//! - The frame decoder and the handshake parser, fed arbitrary bytes in
//!   arbitrary pieces, never panic, and every refusal is a typed error.
//! - The decoder agrees with a small reference decoder written here from
//!   RFC 6455 (messages, and the first error, in stream order), however the
//!   input is cut.
//! - encode → decode round-trips random messages under random
//!   fragmentation, interleaved control frames and chunking.
//! - The decoder refuses an oversized frame from its header alone, and
//!   never holds more memory than its limit (a counting allocator checks).

mod common;

use common::Rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use wschat::protocol::close::{CloseCode, CloseFrame, parse_close_payload};
use wschat::protocol::error::ProtocolError;
use wschat::protocol::frame::{FrameHeader, MAX_HEADER_LEN, OpCode, encode_frame_into};
use wschat::protocol::handshake::{Request, find_head_end};
use wschat::protocol::mask::{apply_mask, apply_mask_bytewise};
use wschat::protocol::message::{Message, MessageDecoder, Role};
use wschat::protocol::utf8::Utf8Validator;

// ---------------------------------------------------------------------------
// A counting allocator: how many bytes the current thread holds, and its
// peak, so a test can measure what one piece of code allocates.
// ---------------------------------------------------------------------------

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// wrapper only counts sizes in thread-local cells (which allocate nothing).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        track(-(layout.size() as isize));
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result and the most bytes it held at once
/// (beyond what the thread held before).
fn peak_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(|l| l.get());
    PEAK.with(|p| p.set(base));
    let result = f();
    let peak = PEAK.with(|p| p.get());
    (result, (peak - base).max(0) as usize)
}

// ---------------------------------------------------------------------------
// Feeding a decoder.
// ---------------------------------------------------------------------------

/// What a decoder made of a stream: the messages, then the first error
/// (`None`: the input ran out, possibly in the middle of a frame).
#[derive(Debug, PartialEq)]
struct Outcome {
    messages: Vec<Message>,
    error: Option<ProtocolError>,
}

/// Feeds `bytes` to a fresh decoder in the pieces `cuts` gives, the way
/// `MessageReader` does: unconsumed bytes are passed again with more after
/// them. Checks the decoder's contract on the way.
fn decode_stream(
    role: Role,
    limit: usize,
    bytes: &[u8],
    rng: &mut Rng,
    max_piece: usize,
) -> Outcome {
    let mut decoder = MessageDecoder::new(role, limit);
    let mut pending: Vec<u8> = Vec::new();
    let mut messages = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let n = rng.range(1, max_piece).min(bytes.len() - at);
        pending.extend_from_slice(&bytes[at..at + n]);
        at += n;
        loop {
            match decoder.decode(&mut pending) {
                Ok((used, message)) => {
                    assert!(used <= pending.len(), "consumed more than given");
                    pending.drain(..used);
                    match message {
                        Some(m) => messages.push(m),
                        None => {
                            // Everything but a partial header is consumed.
                            assert!(
                                pending.len() < MAX_HEADER_LEN,
                                "{} bytes left unconsumed",
                                pending.len()
                            );
                            break;
                        }
                    }
                }
                Err(e) => {
                    check_typed(e);
                    return Outcome {
                        messages,
                        error: Some(e),
                    };
                }
            }
        }
    }
    Outcome {
        messages,
        error: None,
    }
}

/// Every error maps to one of the three close codes a decoder may answer
/// with, and says what went wrong in one line.
fn check_typed(e: ProtocolError) {
    let code = u16::from(e.close_code());
    assert!(matches!(code, 1002 | 1007 | 1009), "{e:?} -> {code}");
    let text = e.to_string();
    assert!(!text.is_empty() && !text.contains('\n'), "{e:?}: {text:?}");
    assert!(
        text.len() <= 123,
        "the reason must fit a close frame: {text:?}"
    );
}

// ---------------------------------------------------------------------------
// The reference decoder: the whole stream at once, straight from the RFC,
// checks in the order the wire presents them.
// ---------------------------------------------------------------------------

fn reference_decode(role: Role, limit: usize, bytes: &[u8]) -> Outcome {
    let mut messages = Vec::new();
    let fail = |messages: Vec<Message>, e| Outcome {
        messages,
        error: Some(e),
    };
    let mut at = 0;
    // The open data message: opcode and the payload so far.
    let mut open: Option<(u8, Vec<u8>)> = None;
    loop {
        let rest = &bytes[at..];
        if rest.len() < 2 {
            break;
        }
        let (b0, b1) = (rest[0], rest[1]);
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 7;
        let op = b0 & 0xf;
        if rsv != 0 {
            return fail(messages, ProtocolError::ReservedBits(rsv));
        }
        if !matches!(op, 0 | 1 | 2 | 8 | 9 | 10) {
            return fail(messages, ProtocolError::ReservedOpcode(op));
        }
        let control = op >= 8;
        let len7 = (b1 & 0x7f) as usize;
        if control && !fin {
            return fail(messages, ProtocolError::FragmentedControlFrame);
        }
        if control && len7 > 125 {
            return fail(messages, ProtocolError::ControlFrameTooLong);
        }
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        if rest.len() < 2 + ext {
            break;
        }
        let len: u64 = match ext {
            2 => u16::from_be_bytes([rest[2], rest[3]]) as u64,
            8 => u64::from_be_bytes(rest[2..10].try_into().unwrap()),
            _ => len7 as u64,
        };
        if len >> 63 != 0 {
            return fail(messages, ProtocolError::LengthOverflow);
        }
        let masked = b1 & 0x80 != 0;
        let head = 2 + ext + if masked { 4 } else { 0 };
        if rest.len() < head {
            break;
        }
        match (role, masked) {
            (Role::Server, false) => return fail(messages, ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return fail(messages, ProtocolError::MaskedFrame),
            _ => {}
        }
        match (op, &open) {
            (0, None) => return fail(messages, ProtocolError::UnexpectedContinuation),
            (1 | 2, Some(_)) => return fail(messages, ProtocolError::ExpectedContinuation),
            (1 | 2, None) => open = Some((op, Vec::new())),
            _ => {}
        }
        if !control {
            let so_far = open.as_ref().map_or(0, |(_, d)| d.len()) as u64;
            if so_far + len > limit as u64 {
                return fail(messages, ProtocolError::MessageTooBig { limit });
            }
        }
        let available = (rest.len() - head).min(len as usize);
        let mut payload = rest[head..head + available].to_vec();
        if masked {
            let key = [
                rest[head - 4],
                rest[head - 3],
                rest[head - 2],
                rest[head - 1],
            ];
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
        }
        let complete = available as u64 == len;
        if control {
            if !complete {
                break;
            }
            messages.push(match op {
                9 => Message::Ping(payload),
                10 => Message::Pong(payload),
                _ => match reference_close(&payload) {
                    Ok(m) => m,
                    Err(e) => return fail(messages, e),
                },
            });
        } else {
            let (kind, data) = open.as_mut().expect("open message");
            data.extend_from_slice(&payload);
            // Fail fast: invalid as soon as no continuation could fix it.
            if *kind == 1
                && let Err(e) = std::str::from_utf8(data)
                && e.error_len().is_some()
            {
                return fail(messages, ProtocolError::InvalidUtf8);
            }
            if !complete {
                break;
            }
            if fin {
                let (kind, data) = open.take().expect("open message");
                messages.push(if kind == 1 {
                    match String::from_utf8(data) {
                        Ok(t) => Message::Text(t),
                        Err(_) => return fail(messages, ProtocolError::InvalidUtf8),
                    }
                } else {
                    Message::Binary(data)
                });
            }
        }
        at += head + len as usize;
    }
    Outcome {
        messages,
        error: None,
    }
}

/// §5.5.1 and §7.4: empty, or a code allowed on the wire and a UTF-8 reason.
fn reference_close(payload: &[u8]) -> Result<Message, ProtocolError> {
    match payload.len() {
        0 => Ok(Message::Close(None)),
        1 => Err(ProtocolError::InvalidClosePayload),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !allowed {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            let reason = std::str::from_utf8(&payload[2..])
                .map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok(Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: reason.to_string(),
            })))
        }
    }
}

// ---------------------------------------------------------------------------
// Generators.
// ---------------------------------------------------------------------------

/// A stream of frames that is mostly valid (a data message open or not,
/// fragments in order, control frames between them) with a fault now and
/// then, of each kind the RFC names.
fn random_stream(rng: &mut Rng, role: Role, frames: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut open = false;
    for _ in 0..frames {
        let fault = rng.chance(1, 15);
        let op = if fault && rng.chance(1, 2) {
            [0, 1, 2, 3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf][rng.below(13)]
        } else {
            match (open, rng.below(10)) {
                (_, 0) => 9,
                (_, 1) => 10,
                (_, 2) if rng.chance(1, 4) => 8,
                (true, _) => 0,
                (false, n) => 1 + (n % 2) as u8,
            }
        };
        let control = op >= 8;
        let fin = if control {
            !(fault && rng.chance(1, 3))
        } else {
            rng.chance(1, 2)
        };
        if matches!(op, 0..=2) {
            open = !fin;
        }
        let rsv = if fault && rng.chance(1, 4) {
            rng.range(1, 7) as u8
        } else {
            0
        };
        let len = match rng.below(12) {
            0 => rng.range(126, 400),
            1 => rng.range(120, 130),
            _ => rng.below(40),
        };
        let mut payload = match rng.below(4) {
            0 if op != 1 && op != 0 => rng.bytes(len),
            _ => rng.text(len).into_bytes(),
        };
        if fault && !payload.is_empty() && rng.chance(1, 3) {
            let bad = BAD_UTF8[rng.below(BAD_UTF8.len())];
            let at = rng.below(payload.len());
            payload.splice(at..at, bad.iter().copied());
        }
        if op == 8 && payload.len() >= 2 {
            let code: u16 = if fault {
                [
                    0,
                    999,
                    1004,
                    1005,
                    1006,
                    1015,
                    1016,
                    2999,
                    5000,
                    rng.next_u64() as u16,
                ][rng.below(10)]
            } else {
                [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4000, 4999][rng.below(10)]
            };
            payload[..2].copy_from_slice(&code.to_be_bytes());
        }
        let masked = match role {
            Role::Server => !(fault && rng.chance(1, 5)),
            Role::Client => fault && rng.chance(1, 5),
        };
        out.push((if fin { 0x80 } else { 0 }) | rsv << 4 | op);
        let mask_bit = if masked { 0x80 } else { 0 };
        let n = payload.len();
        match rng.below(20) {
            // Now and then a non-minimal length form (accepted), or, as a
            // fault, a length with the top bit set (refused).
            0 => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            1 => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
            2 if fault => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&((n as u64) | 1 << 63).to_be_bytes());
            }
            _ if n <= 125 => out.push(mask_bit | n as u8),
            _ => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        if masked {
            let key = (rng.next_u64() as u32).to_be_bytes();
            out.extend_from_slice(&key);
            apply_mask_bytewise(&mut payload, key, 0);
        }
        out.extend_from_slice(&payload);
    }
    out
}

/// Invalid UTF-8 pieces to splice into text.
const BAD_UTF8: [&[u8]; 8] = [
    &[0xc0, 0x80],
    &[0xed, 0xa0, 0x80],
    &[0xf4, 0x90, 0x80, 0x80],
    &[0xff],
    &[0x80],
    &[0xe2, 0x82],
    &[0xf0, 0x9f],
    &[0xc2],
];

// ---------------------------------------------------------------------------
// The properties.
// ---------------------------------------------------------------------------

#[test]
fn decoder_never_panics_on_random_bytes() {
    let mut rng = Rng::new(1);
    for case in 0..4000 {
        let len = rng.below(300);
        let mut bytes = rng.bytes(len);
        // Bias the first byte towards valid opcodes, so frames get parsed
        // further than their first byte more often.
        if !bytes.is_empty() && rng.chance(1, 2) {
            bytes[0] = (bytes[0] & 0x80) | [0, 1, 2, 8, 9, 10][rng.below(6)];
        }
        for role in [Role::Server, Role::Client] {
            let limit = rng.range(0, 500);
            let got = decode_stream(role, limit, &bytes, &mut rng, 64);
            let want = reference_decode(role, limit, &bytes);
            assert_eq!(got, want, "case {case}: {bytes:02x?}");
        }
    }
}

#[test]
fn decoder_agrees_with_the_reference_on_frame_streams() {
    let mut rng = Rng::new(2);
    let mut messages = 0;
    let mut errors: Vec<String> = Vec::new();
    for case in 0..3000 {
        let role = if rng.chance(1, 4) {
            Role::Client
        } else {
            Role::Server
        };
        let frames = rng.range(1, 16);
        let mut bytes = random_stream(&mut rng, role, frames);
        // Cut the stream short now and then.
        if rng.chance(1, 5) {
            let keep = rng.below(bytes.len() + 1);
            bytes.truncate(keep);
        }
        let limit = [0, 10, 100, 300, 1 << 20][rng.below(5)];
        let want = reference_decode(role, limit, &bytes);
        for max_piece in [bytes.len().max(1), 1, 7] {
            let got = decode_stream(role, limit, &bytes, &mut rng, max_piece);
            assert_eq!(
                got, want,
                "case {case}, pieces up to {max_piece}: {bytes:02x?}"
            );
        }
        messages += want.messages.len();
        if let Some(e) = want.error {
            let name = format!("{e:?}");
            let name = name
                .split(['(', ' '])
                .next()
                .unwrap_or_default()
                .to_string();
            if !errors.contains(&name) {
                errors.push(name);
            }
        }
    }
    // The generator reaches deep enough: plenty of messages, every error.
    errors.sort();
    assert!(messages > 3000, "only {messages} messages decoded");
    assert_eq!(errors.len(), 14, "errors seen: {errors:?}");
}

#[test]
fn messages_round_trip_under_random_fragmentation_and_chunking() {
    let mut rng = Rng::new(3);
    for case in 0..1500 {
        let role = if rng.chance(1, 3) {
            Role::Client
        } else {
            Role::Server
        };
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        for _ in 0..rng.range(1, 8) {
            let len = match rng.below(10) {
                0 => rng.range(126, 70_000),
                _ => rng.below(200),
            };
            let (opcode, payload, message) = if rng.chance(1, 2) {
                let t = rng.text(len);
                (OpCode::Text, t.clone().into_bytes(), Message::Text(t))
            } else {
                let b = rng.bytes(len);
                (OpCode::Binary, b.clone(), Message::Binary(b))
            };
            let sizes = rng.split(payload.len(), 6);
            let mut at = 0;
            for (i, size) in sizes.iter().enumerate() {
                let op = if i == 0 { opcode } else { OpCode::Continuation };
                let fin = i + 1 == sizes.len();
                let mask = (role == Role::Server).then(|| (rng.next_u64() as u32).to_le_bytes());
                encode_frame_into(&mut bytes, fin, op, &payload[at..at + size], mask);
                at += size;
                if fin {
                    want.push(message.clone());
                }
                // Control frames may come between fragments (and messages).
                if rng.chance(1, 4) {
                    let p = {
                        let n = rng.below(126);
                        rng.bytes(n)
                    };
                    let (op, m) = if rng.chance(1, 2) {
                        (OpCode::Ping, Message::Ping(p.clone()))
                    } else {
                        (OpCode::Pong, Message::Pong(p.clone()))
                    };
                    let mask =
                        (role == Role::Server).then(|| (rng.next_u64() as u32).to_le_bytes());
                    encode_frame_into(&mut bytes, true, op, &p, mask);
                    want.push(m);
                }
            }
        }
        let code = [1000u16, 1001, 1003, 3000, 4999][rng.below(5)];
        let reason = {
            let n = rng.below(100);
            rng.text(n)
        };
        let mut close = code.to_be_bytes().to_vec();
        close.extend_from_slice(reason.as_bytes());
        let mask = (role == Role::Server).then_some([9, 8, 7, 6]);
        encode_frame_into(&mut bytes, true, OpCode::Close, &close, mask);
        want.push(Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason,
        })));
        let max_piece = [1, 5, 100, 5000, bytes.len()][rng.below(5)];
        let got = decode_stream(role, 1 << 20, &bytes, &mut rng, max_piece);
        assert_eq!(got.error, None, "case {case}");
        assert!(got.messages == want, "case {case}: messages differ");
    }
}

#[test]
fn invalid_utf8_is_found_in_any_fragment_as_soon_as_it_arrives() {
    let mut rng = Rng::new(4);
    for case in 0..2000 {
        let mut text = {
            let n = rng.below(60);
            rng.text(n)
        }
        .into_bytes();
        let bad = BAD_UTF8[rng.below(BAD_UTF8.len())];
        let at = rng.below(text.len() + 1);
        // Splice at a character boundary so the bad bytes are the fault.
        let at = (at..=text.len())
            .find(|&i| std::str::from_utf8(&text[..i]).is_ok())
            .unwrap_or(text.len());
        text.splice(at..at, bad.iter().copied());
        let sizes = rng.split(text.len(), 5);
        let mut bytes = Vec::new();
        let mut from = 0;
        for (i, size) in sizes.iter().enumerate() {
            let op = if i == 0 {
                OpCode::Text
            } else {
                OpCode::Continuation
            };
            encode_frame_into(
                &mut bytes,
                i + 1 == sizes.len(),
                op,
                &text[from..from + size],
                Some([1, 2, 3, 4]),
            );
            from += size;
        }
        let want = reference_decode(Role::Server, 1 << 20, &bytes);
        assert_eq!(want.error, Some(ProtocolError::InvalidUtf8), "case {case}");
        let got = decode_stream(Role::Server, 1 << 20, &bytes, &mut rng, 3);
        assert_eq!(got, want, "case {case}");
        // Fail fast: without its last fragment the message fails all the
        // same, unless the fault is a character cut short at the very end.
        let last_header = bytes.len() - sizes.last().unwrap() - 6;
        let truncated_at_end = std::str::from_utf8(&text)
            .err()
            .is_some_and(|e| e.error_len().is_none());
        if !truncated_at_end && sizes.len() > 1 {
            let head = &bytes[..last_header];
            let prefix = &text[..text.len() - sizes.last().unwrap()];
            let invalid_so_far =
                std::str::from_utf8(prefix).is_err_and(|e| e.error_len().is_some());
            let got = decode_stream(Role::Server, 1 << 20, head, &mut rng, 4);
            let want_error = invalid_so_far.then_some(ProtocolError::InvalidUtf8);
            assert_eq!(got.error, want_error, "case {case}: fail fast");
        }
    }
}

#[test]
fn utf8_validator_matches_std_and_fails_at_the_first_impossible_byte() {
    let mut rng = Rng::new(5);
    for case in 0..5000 {
        let mut bytes = {
            let n = rng.below(40);
            rng.text(n)
        }
        .into_bytes();
        for _ in 0..rng.below(3) {
            if bytes.is_empty() {
                break;
            }
            let i = rng.below(bytes.len());
            bytes[i] = rng.next_u64() as u8;
        }
        // Fed in pieces, it must fail exactly at the first piece after
        // which the bytes seen so far cannot be the start of UTF-8 (std's
        // `error_len() == Some(_)`), and not before.
        let mut v = Utf8Validator::new();
        let mut seen = 0;
        let mut failed = false;
        for size in rng.split(bytes.len(), 8) {
            seen += size;
            let impossible =
                std::str::from_utf8(&bytes[..seen]).is_err_and(|e| e.error_len().is_some());
            let result = v.feed(&bytes[seen - size..seen]);
            assert_eq!(
                result.is_err(),
                impossible,
                "case {case}: {bytes:02x?} after {seen} bytes"
            );
            if impossible {
                failed = true;
                break;
            }
        }
        if !failed {
            let whole_ok = std::str::from_utf8(&bytes).is_ok();
            assert_eq!(v.finish().is_ok(), whole_ok, "case {case}: {bytes:02x?}");
        }
    }
}

#[test]
fn an_oversized_frame_is_refused_from_its_header_without_allocating() {
    let mut rng = Rng::new(6);
    for case in 0..2000 {
        let limit = rng.range(0, 1 << 20);
        let claim: u64 = match rng.below(4) {
            0 => limit as u64 + 1,
            1 => (1 << 63) - 1,
            2 => 1 << 40,
            _ => rng.range(limit + 1, limit + 1_000_000) as u64,
        };
        let header = FrameHeader {
            fin: rng.chance(1, 2),
            rsv: 0,
            opcode: if rng.chance(1, 2) {
                OpCode::Text
            } else {
                OpCode::Binary
            },
            mask: Some([1, 2, 3, 4]),
            payload_len: claim,
        };
        let mut buf = [0u8; MAX_HEADER_LEN];
        let n = header.format(&mut buf);
        let mut decoder = MessageDecoder::new(Role::Server, limit);
        let (result, peak) = peak_allocation(|| decoder.decode(&mut buf[..n]));
        assert_eq!(
            result,
            Err(ProtocolError::MessageTooBig { limit }),
            "case {case}"
        );
        assert!(
            peak <= 256,
            "case {case}: {peak} bytes allocated for a header"
        );
    }
}

#[test]
fn the_decoder_never_holds_more_than_its_limit() {
    let mut rng = Rng::new(7);
    for case in 0..40 {
        let limit = rng.range(1, 3 << 20);
        let len = if rng.chance(1, 2) {
            limit
        } else {
            rng.range(0, limit)
        };
        let payload = rng.bytes(len);
        let pieces = rng.range(1, 64);
        let mut bytes = Vec::new();
        let size = len.div_ceil(pieces).max(1);
        let chunks: Vec<&[u8]> = if len == 0 {
            vec![&[]]
        } else {
            payload.chunks(size).collect()
        };
        for (i, chunk) in chunks.iter().enumerate() {
            let op = if i == 0 {
                OpCode::Binary
            } else {
                OpCode::Continuation
            };
            encode_frame_into(
                &mut bytes,
                i + 1 == chunks.len(),
                op,
                chunk,
                Some([5, 6, 7, 8]),
            );
        }
        // Feed it the way MessageReader does, from a fixed 64 KiB buffer.
        let read_size = [2048, 65536][rng.below(2)];
        let mut decoder = MessageDecoder::new(Role::Server, limit);
        let mut buffer = vec![0u8; read_size + MAX_HEADER_LEN];
        let (message, peak) = peak_allocation(|| {
            let mut filled = 0;
            let mut at = 0;
            loop {
                let n = (read_size).min(bytes.len() - at);
                buffer[filled..filled + n].copy_from_slice(&bytes[at..at + n]);
                at += n;
                filled += n;
                let (used, message) = decoder.decode(&mut buffer[..filled]).expect("valid");
                if let Some(m) = message {
                    return m;
                }
                buffer.copy_within(used..filled, 0);
                filled -= used;
                assert!(at < bytes.len(), "input ran out");
            }
        });
        assert!(message == Message::Binary(payload), "case {case}");
        // The message itself (`limit` at most) and a little bookkeeping;
        // a buffer that doubles past the limit would show here.
        assert!(
            peak <= limit + 1024,
            "case {case}: a {len}-byte message (limit {limit}) made the decoder hold {peak} bytes"
        );
    }
}

#[test]
fn handshake_parsing_never_panics_and_refuses_with_a_status() {
    const GOOD: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";
    let mut rng = Rng::new(8);
    for case in 0..6000 {
        let mut bytes = GOOD.as_bytes().to_vec();
        match rng.below(4) {
            0 => {
                bytes = {
                    let n = rng.below(200);
                    rng.bytes(n)
                }
            }
            _ => {
                for _ in 0..rng.range(1, 6) {
                    let i = rng.below(bytes.len());
                    match rng.below(4) {
                        0 => bytes[i] = rng.next_u64() as u8,
                        1 => {
                            bytes.remove(i);
                        }
                        2 => bytes.insert(i, b"\r\n :,\t\x00\xff"[rng.below(8)]),
                        _ => bytes.truncate(i),
                    }
                    if bytes.is_empty() {
                        break;
                    }
                }
            }
        }
        // The head end, found in one go and incrementally in random pieces.
        let whole = find_head_end(&bytes, 0);
        let mut scanned = 0;
        let mut incremental = None;
        for size in rng.split(bytes.len(), 10) {
            let end = scanned + size;
            if let Some(found) = find_head_end(&bytes[..end], scanned) {
                incremental = Some(found);
                break;
            }
            scanned = end;
        }
        assert_eq!(
            incremental,
            whole,
            "case {case}: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        if let Some(end) = whole {
            assert!(end <= bytes.len(), "case {case}");
            assert!(bytes[..end].ends_with(b"\n"), "case {case}");
        }
        let head = &bytes[..whole.unwrap_or(bytes.len())];
        match Request::parse(head) {
            Ok(request) => {
                let _ = request.path();
                let _ = request.is_websocket_attempt();
                let _ = request.offers_protocol("chat");
                match request.validate_upgrade() {
                    Ok(upgrade) => {
                        assert!(!upgrade.host.is_empty() && upgrade.key.len() == 24);
                    }
                    Err(r) => {
                        assert!(matches!(r.status, 400 | 405 | 426), "case {case}: {r}");
                        assert!(r.response().starts_with(b"HTTP/1.1 "));
                    }
                }
            }
            Err(r) => {
                assert!(matches!(r.status, 400 | 431 | 505), "case {case}: {r}");
                assert!(r.response().starts_with(b"HTTP/1.1 "));
            }
        }
    }
}

#[test]
fn masking_in_pieces_matches_the_textbook_loop() {
    let mut rng = Rng::new(9);
    for _ in 0..3000 {
        let data = {
            let n = rng.below(100);
            rng.bytes(n)
        };
        let key = (rng.next_u64() as u32).to_le_bytes();
        let mut fast = data.clone();
        let mut at = 0;
        for size in rng.split(data.len(), 6) {
            apply_mask(&mut fast[at..at + size], key, at);
            at += size;
        }
        let mut slow = data.clone();
        apply_mask_bytewise(&mut slow, key, 0);
        assert_eq!(fast, slow);
    }
}

#[test]
fn close_payloads_are_judged_like_the_reference() {
    let mut rng = Rng::new(10);
    for case in 0..5000 {
        let mut payload = {
            let n = rng.below(8);
            rng.bytes(n)
        };
        if payload.len() >= 2 && rng.chance(1, 2) {
            let code: u16 = [1000, 1004, 1005, 1012, 1015, 2999, 3000, 4999, 5000][rng.below(9)];
            payload[..2].copy_from_slice(&code.to_be_bytes());
            if rng.chance(1, 2) {
                payload.truncate(2);
                payload.extend_from_slice(
                    {
                        let n = rng.below(20);
                        rng.text(n)
                    }
                    .as_bytes(),
                );
            }
        }
        let got = parse_close_payload(&payload).map(Message::Close);
        assert_eq!(
            got,
            reference_close(&payload),
            "case {case}: {payload:02x?}"
        );
        if let Err(e) = got {
            check_typed(e);
        }
    }
}
