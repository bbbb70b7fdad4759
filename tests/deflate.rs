//! permessage-deflate (RFC 7692) and DEFLATE (RFC 1951) from the outside:
//! the RFC's examples, round trips of many sizes, cross-checks against
//! zlib (flate2 on its `zlib-rs` backend, a port of zlib), the same
//! verdicts as zlib on valid, damaged and random streams, arbitrary bytes,
//! and decompression bombs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use wschat::protocol::deflate::{
    COMPRESSED_SLACK, InflateError, Inflater, SYNC_FLUSH_TAIL, compress_message,
    compress_message_with_window, max_compressed_len,
};
use wschat::protocol::frame::{FrameHeader, MAX_HEADER_LEN, OpCode};
use wschat::protocol::mask::apply_mask;
use wschat::protocol::message::{Message, MessageDecoder, Role};
use wschat::protocol::{CloseCode, ProtocolError};

/// Counts, per thread, the largest single allocation made, so a test can
/// prove that inflating a bomb never asked for more than the limit.
struct TrackingAllocator;

thread_local! {
    static LARGEST_ALLOCATION: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST_ALLOCATION.try_with(|largest| largest.set(largest.get().max(size)));
}

unsafe impl GlobalAlloc for TrackingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: TrackingAllocator = TrackingAllocator;

/// The largest allocation `f` makes on this thread.
fn largest_allocation_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST_ALLOCATION.with(|largest| largest.set(0));
    let result = f();
    (result, LARGEST_ALLOCATION.with(Cell::get))
}

/// xorshift64*: a small seeded generator, so every failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Three kinds of payload: random bytes (incompressible), text from a
/// small alphabet (Huffman helps), and repeated phrases (LZ77 helps).
fn payload(rng: &mut Rng, kind: usize, len: usize) -> Vec<u8> {
    match kind {
        0 => rng.bytes(len),
        1 => (0..len).map(|_| b"etaoin shrdlu"[rng.below(13)]).collect(),
        _ => {
            let words: [&[u8]; 6] = [b"hello ", b"chat ", b"{\"type\":", b"world ", b"42,", b"\n"];
            let mut out = Vec::with_capacity(len + 8);
            while out.len() < len {
                out.extend_from_slice(words[rng.below(words.len())]);
            }
            out.truncate(len);
            out
        }
    }
}

fn inflate(compressed: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    Inflater::new().inflate_message(compressed, limit)
}

/// flate2's raw inflate of one permessage-deflate payload (tail appended).
fn flate2_inflate(compressed: &[u8]) -> Vec<u8> {
    let mut input = compressed.to_vec();
    input.extend_from_slice(&SYNC_FLUSH_TAIL);
    let mut inflater = flate2::Decompress::new(false);
    let mut out = Vec::with_capacity(1024);
    loop {
        let consumed = inflater.total_in() as usize;
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity());
        }
        let before = out.len();
        inflater
            .decompress_vec(&input[consumed..], &mut out, flate2::FlushDecompress::Sync)
            .expect("flate2 accepts our output");
        if inflater.total_in() as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
        assert!(
            out.len() > before || inflater.total_in() as usize > consumed,
            "stuck"
        );
    }
}

/// flate2's raw deflate, sync-flushed, tail removed (RFC 7692 §7.2.1).
fn flate2_compress(payload: &[u8], level: u32) -> Vec<u8> {
    let mut deflater = flate2::Compress::new(flate2::Compression::new(level), false);
    let mut out = Vec::with_capacity(payload.len() + 1024);
    loop {
        let consumed = deflater.total_in() as usize;
        deflater
            .compress_vec(&payload[consumed..], &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        if deflater.total_in() as usize == payload.len() && out.ends_with(&SYNC_FLUSH_TAIL) {
            break;
        }
        out.reserve(out.capacity());
    }
    out.truncate(out.len() - SYNC_FLUSH_TAIL.len());
    out
}

const SIZES: [usize; 22] = [
    0,
    1,
    2,
    3,
    4,
    5,
    7,
    16,
    60,
    64,
    255,
    256,
    258,
    259,
    1000,
    4096,
    32767,
    32768,
    32769,
    65535,
    65536,
    1 << 20,
];

#[test]
fn rfc_7692_7_2_3_examples() {
    // §7.2.3.1: "Hello" compressed, without context takeover.
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(compress_message(b"Hello"), hello);
    assert_eq!(inflate(&hello, 100).unwrap(), b"Hello");
    // §7.2.3.2: the same message again *with* context takeover is the five
    // bytes f2 00 11 00 00 (a match into the previous message). We take no
    // context, so our compressor sends the first form again, and a payload
    // that refers back into an earlier message is refused.
    assert_eq!(compress_message(b"Hello"), hello);
    assert!(matches!(
        inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], 100),
        Err(InflateError::Corrupt(_))
    ));
    // §7.2.3.3: a stored (uncompressed) block.
    let stored = [
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    assert_eq!(inflate(&stored, 100).unwrap(), b"Hello");
    // §7.2.3.4: a block with BFINAL set, then the 0x00 the RFC's example
    // ends with (and without it).
    assert_eq!(
        inflate(&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00], 100).unwrap(),
        b"Hello"
    );
    assert_eq!(
        inflate(&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100).unwrap(),
        b"Hello"
    );
    // §7.2.3.5: two blocks in one message.
    let two = [
        0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
    ];
    assert_eq!(inflate(&two, 100).unwrap(), b"Hello");
    // §7.2.3.6: a flush with no data is the single byte 00, which is what
    // an empty message compresses to.
    assert_eq!(compress_message(b""), [0x00]);
    assert_eq!(inflate(&[0x00], 100).unwrap(), b"");
}

#[test]
fn rfc_7692_7_2_3_1_through_the_message_decoder() {
    // The frame the RFC shows: c1 07 f2 48 cd c9 c9 07 00, masked by us
    // since a server decodes client frames.
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let mut frame = client_frame(true, true, OpCode::Text, &hello);
    assert_eq!(frame[0], 0xc1);
    let mut decoder = MessageDecoder::new(Role::Server, 1024);
    decoder.enable_deflate();
    assert_eq!(
        decoder.decode(&mut frame).unwrap().1,
        Some(Message::Text("Hello".into()))
    );
}

#[test]
fn round_trips_of_every_kind_and_size() {
    let mut rng = Rng(0x5eed_0001);
    for &len in &SIZES {
        for kind in 0..3 {
            let data = payload(&mut rng, kind, len);
            let compressed = compress_message(&data);
            assert_eq!(
                inflate(&compressed, len).unwrap(),
                data,
                "kind {kind} len {len}"
            );
            // Deterministic: the same bytes every time.
            assert_eq!(compress_message(&data), compressed);
        }
    }
}

#[test]
fn our_output_inflates_with_flate2() {
    let mut rng = Rng(0x5eed_0002);
    for &len in &SIZES {
        for kind in 0..3 {
            let data = payload(&mut rng, kind, len);
            assert_eq!(
                flate2_inflate(&compress_message(&data)),
                data,
                "kind {kind} len {len}"
            );
        }
    }
    for bits in 8..=15 {
        let data = payload(&mut rng, 2, 70_000);
        let compressed = compress_message_with_window(&data, bits);
        assert_eq!(flate2_inflate(&compressed), data, "window bits {bits}");
        let strict = Inflater::with_window_bits(bits);
        assert_eq!(
            strict.inflate_message(&compressed, data.len()).unwrap(),
            data
        );
    }
}

#[test]
fn flate2_output_inflates_with_ours() {
    let mut rng = Rng(0x5eed_0003);
    for &len in &SIZES {
        for kind in 0..3 {
            for level in [0, 1, 6, 9] {
                let data = payload(&mut rng, kind, len);
                let compressed = flate2_compress(&data, level);
                assert_eq!(
                    inflate(&compressed, len).unwrap(),
                    data,
                    "kind {kind} len {len} level {level}"
                );
            }
        }
    }
}

/// Matches at every distance the inflater copies differently (one byte,
/// patterns shorter than a copy chunk, whole chunks) and at lengths from
/// 3 to 258, as zlib codes them, inflate exactly; at the limit they are
/// accepted, and one byte under it refused.
#[test]
fn matches_of_every_short_distance_and_length_inflate_at_the_limit() {
    let mut rng = Rng(0x5eed_0006);
    for distance in 1..=40 {
        let mut data = Vec::new();
        for length in [3, 4, 7, 8, 9, 15, 16, 17, 31, 33, 100, 257, 258, 259, 600] {
            let pattern = rng.bytes(distance);
            data.extend(pattern.iter().cycle().take(distance + length));
            data.extend(rng.bytes(3));
        }
        let compressed = flate2_compress(&data, 9);
        assert_eq!(
            inflate(&compressed, data.len()).unwrap(),
            data,
            "distance {distance}"
        );
        assert_eq!(
            inflate(&compressed, data.len() - 1),
            Err(InflateError::TooBig {
                limit: data.len() - 1
            })
        );
    }
}

#[test]
fn arbitrary_bytes_never_panic_nor_exceed_the_limit() {
    let mut rng = Rng(0x5eed_0004);
    let inflater = Inflater::new();
    let valid: Vec<Vec<u8>> = (0..3)
        .map(|kind| compress_message(&payload(&mut rng, kind, 3000)))
        .collect();
    let mut decoded = 0;
    for case in 0..20_000 {
        let limit = rng.below(4096);
        let input = if case % 2 == 0 {
            // Pure noise, with a bias towards each block type's header.
            let len = rng.below(64);
            let mut bytes = rng.bytes(len);
            if let Some(first) = bytes.first_mut() {
                *first = (*first & !0b110) | ((case as u8 / 2 % 3) << 1);
            }
            bytes
        } else {
            // A valid stream with a few bytes changed or cut short: this
            // reaches deep into the Huffman decoding.
            let mut bytes = valid[case % 3].clone();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
            bytes.truncate(rng.below(bytes.len() + 1));
            bytes
        };
        match inflater.inflate_message(&input, limit) {
            Ok(out) => {
                assert!(out.len() <= limit, "case {case}");
                decoded += 1;
            }
            Err(InflateError::TooBig { limit: l }) => assert_eq!(l, limit),
            Err(InflateError::Corrupt(_)) => {}
        }
    }
    // The cases are not all refused at the first byte.
    assert!(decoded > 100, "{decoded}");
}

#[path = "fuzz/zlib_oracle.rs"]
mod zlib_oracle;

/// The inflater and zlib give the same verdict on `input`: both refuse, or
/// both accept with the same message. Returns whether they accepted.
fn same_verdict_as_zlib(input: &[u8], limit: usize, case: &str) -> bool {
    let ours = inflate(input, limit).ok();
    let zlib = zlib_oracle::inflate(input, limit);
    assert!(
        ours == zlib,
        "{case}: ours {}, zlib {}; input {:02x?}",
        ours.as_ref()
            .map_or("refuses".into(), |m| format!("{} bytes", m.len())),
        zlib.as_ref()
            .map_or("refuses".into(), |m| format!("{} bytes", m.len())),
        &input[..input.len().min(64)]
    );
    ours.is_some()
}

#[test]
fn verdicts_match_zlib_on_valid_damaged_and_random_streams() {
    let mut rng = Rng(0x5eed_0005);
    let limit = 1 << 16;
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..16_000 {
        let kind = rng.below(3);
        let len = rng.below(600);
        let data = payload(&mut rng, kind, len);
        let valid = match case % 4 {
            0 => compress_message(&data),
            1 => {
                let bits = 8 + rng.below(8) as u8;
                compress_message_with_window(&data, bits)
            }
            _ => flate2_compress(&data, rng.below(10) as u32),
        };
        let mut input = valid.clone();
        let damage = rng.below(6);
        match damage {
            0 => {}
            1 => {
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(input.len());
                    input[at] ^= 1 << rng.below(8);
                }
            }
            2 => input.truncate(rng.below(input.len() + 1)),
            3 => {
                let len = 1 + rng.below(4);
                input.extend(rng.bytes(len));
            }
            4 => {
                let at = rng.below(input.len() + 1);
                input.insert(at, rng.next() as u8);
            }
            _ => {
                let len = rng.below(40);
                input = rng.bytes(len);
            }
        }
        if damage == 0 {
            // zlib reads our output, and we read zlib's.
            assert_eq!(zlib_oracle::inflate(&input, limit).as_ref(), Some(&data));
        }
        if same_verdict_as_zlib(&input, limit, &format!("case {case}, damage {damage}")) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    // Both verdicts are well represented.
    assert!(
        accepted > 1000 && refused > 1000,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn the_rfc_7692_7_2_3_examples_and_the_flush_after_a_final_block_match_zlib() {
    let hello_final = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    for (input, accepted) in [
        (&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00][..], true),
        (&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00], true),
        (&hello_final, true),
        (&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x01], false),
        (
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00, 0x00],
            false,
        ),
        (&[0x00], true),
        (
            &[
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ],
            true,
        ),
        // Block type 3; a stored block whose length check fails.
        (&[0x06], false),
        (&[0x00, 0x05, 0x00, 0x00, 0x00], false),
    ] {
        assert_eq!(
            same_verdict_as_zlib(input, 100, &format!("{input:02x?}")),
            accepted
        );
    }
}

/// Writes bits least-significant first, as DEFLATE packs them.
struct Bits {
    out: Vec<u8>,
    used: u32,
}

impl Bits {
    fn put(&mut self, value: u32, n: u32) {
        for i in 0..n {
            if self.used.is_multiple_of(8) {
                self.out.push(0);
            }
            *self.out.last_mut().unwrap() |= (((value >> i) & 1) as u8) << (self.used % 8);
            self.used += 1;
        }
    }
    /// A Huffman code: most significant bit first.
    fn code(&mut self, code: u32, len: u32) {
        for i in (0..len).rev() {
            self.put((code >> i) & 1, 1);
        }
    }
}

/// The densest DEFLATE stream there is: a dynamic block whose codes give
/// the literal 'a' 1 bit and length 258 (symbol 285) 2 bits, then `copies`
/// matches of 258 bytes at distance 1, 3 bits each: 1032 bytes out per
/// byte in, DEFLATE's highest ratio.
fn bomb(copies: usize) -> Vec<u8> {
    let mut b = Bits {
        out: Vec::new(),
        used: 0,
    };
    b.put(0, 1); // not final
    b.put(2, 2); // dynamic
    b.put(286 - 257, 5); // HLIT: 286 length codes
    b.put(0, 5); // HDIST: 1 distance code
    b.put(19 - 4, 4); // HCLEN: all 19 code-length codes
    // Code-length code: symbols 1, 2 and 18 in 2 bits, 0 in 2 bits.
    let order = [
        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
    ];
    for symbol in order {
        b.put(
            if matches!(symbol, 0 | 1 | 2 | 18) {
                2
            } else {
                0
            },
            3,
        );
    }
    // Canonical codes for lengths {0:2, 1:2, 2:2, 18:2}: 00, 01, 10, 11.
    let (zero, one, two, run) = ((0, 2), (1, 2), (2, 2), (3, 2));
    let lit_lengths = {
        let mut l = [0u8; 286];
        l[b'a' as usize] = 1;
        l[256] = 2;
        l[285] = 2;
        l
    };
    let mut i = 0;
    while i < 286 {
        let zeros = lit_lengths[i..]
            .iter()
            .take_while(|&&l| l == 0)
            .count()
            .min(138);
        if zeros >= 11 {
            b.code(run.0, run.1);
            b.put(zeros as u32 - 11, 7);
            i += zeros;
            continue;
        }
        let c = match lit_lengths[i] {
            0 => zero,
            1 => one,
            _ => two,
        };
        b.code(c.0, c.1);
        i += 1;
    }
    b.code(one.0, one.1); // the one distance code, 1 bit
    // Literal/length code from lengths a:1, 256:2, 285:2 → a=0, 256=10, 285=11.
    b.code(0, 1); // 'a'
    for _ in 0..copies {
        b.code(0b11, 2); // length 258
        b.code(0, 1); // distance code 0: distance 1
    }
    b.code(0b10, 2); // end of block
    b.put(0, 3); // the sync flush's empty stored block header
    b.out
}

#[test]
fn the_bomb_generator_is_right() {
    // A small one inflates to exactly what it claims.
    let small = bomb(10);
    assert_eq!(inflate(&small, 1 << 20).unwrap(), vec![b'a'; 1 + 10 * 258]);
    assert_eq!(flate2_inflate(&small), vec![b'a'; 1 + 10 * 258]);
}

#[test]
fn a_bomb_is_refused_at_the_limit_and_nothing_larger_is_allocated() {
    // 4.2 million copies: about 1.5 MiB that would inflate to over 1 GiB.
    let copies = (1 << 30) / 258 + 1;
    let payload = bomb(copies);
    assert!(payload.len() < 2 << 20, "{}", payload.len());
    let limit = 1 << 20;
    let (result, largest) = largest_allocation_during(|| inflate(&payload, limit));
    assert_eq!(result, Err(InflateError::TooBig { limit }));
    assert!(largest <= limit, "largest allocation {largest}");

    // A few hundred bytes inflate to at most about 300 KB (DEFLATE cannot
    // do better than 1032:1); refused the same way by a 64 KiB limit.
    let small = bomb(1000);
    assert!(small.len() < 400, "{}", small.len());
    let (result, largest) = largest_allocation_during(|| inflate(&small, 65536));
    assert_eq!(result, Err(InflateError::TooBig { limit: 65536 }));
    assert!(largest <= 65536, "largest allocation {largest}");
}

/// A masked client frame, with RSV1 when `compressed`.
fn client_frame(fin: bool, compressed: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let key = [0x12, 0x34, 0x56, 0x78];
    let header = FrameHeader {
        fin,
        rsv: if compressed { 0b100 } else { 0 },
        opcode,
        mask: Some(key),
        payload_len: payload.len() as u64,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = header.format(&mut head);
    let mut out = head[..n].to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key, 0);
    out
}

#[test]
fn a_bomb_in_a_frame_is_closed_with_1009() {
    let mut frame = client_frame(true, true, OpCode::Binary, &bomb(100_000));
    let mut decoder = MessageDecoder::new(Role::Server, 65536);
    decoder.enable_deflate();
    let err = decoder.decode(&mut frame).unwrap_err();
    assert_eq!(err, ProtocolError::MessageTooBig { limit: 65536 });
    assert_eq!(err.close_code(), CloseCode::TooBig);
}

/// 65,536 bytes that do not compress, as the two shapes of real encoders'
/// worst output: one fixed-Huffman block of literals 144–255, 9 bits each
/// (RFC 1951 §3.2.6), and stored blocks of 128 bytes (zlib at memory
/// level 1, 68,117 bytes for this size; Python `websockets`' default,
/// memory level 5, sends 65,697).
fn worst_case_encodings(message: &[u8]) -> [(&'static str, Vec<u8>); 2] {
    let mut fixed = Bits {
        out: Vec::new(),
        used: 0,
    };
    fixed.put(0b010, 3); // BFINAL 0, BTYPE 01
    for &byte in message {
        assert!(byte >= 144);
        fixed.code(0b1_1001_0000 + (byte as u32 - 144), 9);
    }
    fixed.code(0, 7); // end of block
    fixed.put(0, 3); // the sync flush's empty stored block
    let mut stored = Vec::new();
    for chunk in message.chunks(128) {
        stored.push(0x00);
        stored.extend((chunk.len() as u16).to_le_bytes());
        stored.extend((!(chunk.len() as u16)).to_le_bytes());
        stored.extend_from_slice(chunk);
    }
    stored.push(0x00);
    [
        ("fixed Huffman", fixed.out),
        ("stored, 128-byte blocks", stored),
    ]
}

#[test]
fn the_worst_real_encodings_of_a_message_at_the_limit_are_accepted() {
    let limit = 65_536;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let message: Vec<u8> = (0..limit).map(|_| 144 + rng.below(112) as u8).collect();
    for (shape, compressed) in worst_case_encodings(&message) {
        assert!(
            compressed.len() > limit + limit / 32,
            "{shape}: {}",
            compressed.len()
        );
        assert!(compressed.len() <= max_compressed_len(limit), "{shape}");
        assert_eq!(inflate(&compressed, limit).unwrap(), message, "{shape}");
        let mut frame = client_frame(true, true, OpCode::Binary, &compressed);
        let mut decoder = MessageDecoder::new(Role::Server, limit);
        decoder.enable_deflate();
        assert_eq!(
            decoder.decode(&mut frame).unwrap().1,
            Some(Message::Binary(message.clone())),
            "{shape}"
        );
        // One byte less than the message limit: the same bytes are
        // refused, by the inflater, with 1009.
        let mut frame = client_frame(true, true, OpCode::Binary, &compressed);
        let mut decoder = MessageDecoder::new(Role::Server, limit - 1);
        decoder.enable_deflate();
        assert_eq!(
            decoder.decode(&mut frame),
            Err(ProtocolError::MessageTooBig { limit: limit - 1 }),
            "{shape}"
        );
    }
}

#[test]
fn a_compressed_frame_is_held_to_nine_eighths_of_the_limit_and_a_little() {
    let limit = 65_536;
    assert_eq!(max_compressed_len(limit), 73_728 + COMPRESSED_SLACK);
    for (len, refused) in [
        (max_compressed_len(limit), false),
        (max_compressed_len(limit) + 1, true),
    ] {
        let frame = client_frame(true, true, OpCode::Binary, &vec![0; len]);
        let mut header = frame[..MAX_HEADER_LEN].to_vec();
        let mut decoder = MessageDecoder::new(Role::Server, limit);
        decoder.enable_deflate();
        let verdict = decoder.decode(&mut header);
        assert_eq!(
            verdict.is_err(),
            refused,
            "{len} compressed bytes: {verdict:?}"
        );
        if refused {
            assert_eq!(verdict, Err(ProtocolError::MessageTooBig { limit }));
        }
    }
}

#[test]
fn a_fragmented_compressed_message_decodes_in_any_chunking() {
    let text = "hello, hello, hello from the compressed side ".repeat(20);
    let compressed = compress_message(text.as_bytes());
    let mut bytes = Vec::new();
    let pieces: Vec<&[u8]> = compressed.chunks(7).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Text
        } else {
            OpCode::Continuation
        };
        bytes.extend(client_frame(i + 1 == pieces.len(), i == 0, opcode, piece));
    }
    // A ping in between (§5.4) changes nothing.
    let mut ping = client_frame(true, false, OpCode::Ping, b"p");
    let at = client_frame(false, true, OpCode::Text, pieces[0]).len();
    bytes.splice(at..at, ping.drain(..));
    for chunk in [1, 3, 64, bytes.len()] {
        let mut decoder = MessageDecoder::new(Role::Server, 1 << 16);
        decoder.enable_deflate();
        let mut pending = Vec::new();
        let mut messages = Vec::new();
        for piece in bytes.chunks(chunk) {
            pending.extend_from_slice(piece);
            loop {
                let (used, message) = decoder.decode(&mut pending).unwrap();
                pending.drain(..used);
                match message {
                    Some(m) => messages.push(m),
                    None => break,
                }
            }
        }
        assert_eq!(
            messages,
            vec![Message::Ping(b"p".to_vec()), Message::Text(text.clone())],
            "chunk {chunk}"
        );
    }
}

#[test]
fn a_decoder_with_deflate_never_panics_on_arbitrary_frames() {
    // Streams of frames (compressed or not, fragmented or not, some with a
    // byte flipped or RSV bits set at random), fed in random pieces: every
    // outcome is a message or a protocol error, and messages stay within
    // the limit.
    let mut rng = Rng(0x5eed_0005);
    let samples: Vec<Vec<u8>> = (0..3).map(|kind| payload(&mut rng, kind, 600)).collect();
    let limit = 1024;
    for case in 0..3000 {
        let mut bytes = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let data = &samples[rng.below(3)][..rng.below(600)];
            let compressed = rng.below(4) != 0;
            let body = if compressed {
                compress_message(data)
            } else {
                data.to_vec()
            };
            let opcode = if rng.below(2) == 0 {
                OpCode::Text
            } else {
                OpCode::Binary
            };
            let pieces = 1 + rng.below(3);
            let step = body.len().div_ceil(pieces).max(1);
            let chunks: Vec<&[u8]> = if body.is_empty() {
                vec![&[]]
            } else {
                body.chunks(step).collect()
            };
            for (i, chunk) in chunks.iter().enumerate() {
                let op = if i == 0 { opcode } else { OpCode::Continuation };
                let mut frame =
                    client_frame(i + 1 == chunks.len(), compressed && i == 0, op, chunk);
                if rng.below(8) == 0 {
                    frame[0] ^= 0x70 & (rng.next() as u8); // random RSV bits
                }
                bytes.extend(frame);
            }
            if rng.below(4) == 0 {
                bytes.extend(client_frame(true, rng.below(2) == 0, OpCode::Ping, b"hi"));
            }
        }
        if rng.below(3) == 0 {
            let at = rng.below(bytes.len());
            bytes[at] ^= 1 << rng.below(8);
        }
        let mut decoder = MessageDecoder::new(Role::Server, limit);
        decoder.enable_deflate();
        let mut pending = Vec::new();
        'feed: for piece in bytes.chunks(1 + rng.below(64)) {
            pending.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut pending) {
                    Ok((used, message)) => {
                        pending.drain(..used);
                        match message {
                            Some(Message::Text(t)) => assert!(t.len() <= limit, "case {case}"),
                            Some(Message::Binary(b)) => assert!(b.len() <= limit, "case {case}"),
                            Some(_) => {}
                            None => break,
                        }
                    }
                    Err(_) => break 'feed,
                }
            }
        }
    }
}

/// A chat line, one `wschat.v1` JSON event, and a welcome with 100 similar
/// messages of history: what a chat server actually sends.
#[test]
fn negotiating_allocates_nothing() {
    // A connection thread keeps the blocks it frees in its allocator's
    // cache for the life of the connection: the handshake's negotiation
    // must not allocate, or every idle compressing client costs more.
    for offers in [
        &["permessage-deflate; client_max_window_bits"][..],
        &[
            "x-custom; a=\"b,c\"",
            "permessage-deflate; server_max_window_bits=\"10\"",
        ],
        &["permessage-deflate; mystery, permessage-deflate ;client_no_context_takeover"],
        &["foo, bar; baz=2", ""],
    ] {
        let (agreement, largest) = largest_allocation_during(|| {
            wschat::protocol::deflate::negotiate(offers.iter().copied())
        });
        assert_eq!(largest, 0, "{offers:?} allocated (agreed: {agreement:?})");
    }
    // Nor does the answer to what browsers offer.
    let (answer, largest) = largest_allocation_during(|| {
        wschat::protocol::deflate::negotiate(["permessage-deflate; client_max_window_bits"])
            .map(|agreement| agreement.response_header())
    });
    assert_eq!(largest, 0, "{answer:?}");
}

fn chat_samples() -> [(&'static str, Vec<u8>); 3] {
    let line = b"hey everyone, is the build on main green again after the fix?".to_vec();
    let event = |i: usize| {
        format!(
            r#"{{"type":"message","id":{},"from":"user{}","text":"message number {} about the release, see you at standup","ts":{}}}"#,
            1000 + i,
            i % 7,
            i,
            1_700_000_000_000u64 + 7919 * i as u64
        )
    };
    let history: Vec<String> = (0..100).map(event).collect();
    let welcome = format!(
        r#"{{"type":"welcome","you":"ada","users":["ada","bob","cy"],"history":[{}]}}"#,
        history.join(",")
    );
    [
        ("chat line", line),
        ("JSON chat event", event(1).into_bytes()),
        ("100-message welcome", welcome.into_bytes()),
    ]
}

#[test]
fn chat_traffic_compresses() {
    for (name, data) in chat_samples() {
        let ours = compress_message(&data);
        let theirs = flate2_compress(&data, 6);
        println!(
            "{name}: {} -> {} bytes ({:.0}%); flate2 level 6: {} bytes",
            data.len(),
            ours.len(),
            100.0 * ours.len() as f64 / data.len() as f64,
            theirs.len()
        );
        assert_eq!(inflate(&ours, data.len()).unwrap(), data);
        // Smaller than the input, and within 10% (plus a few bytes) of a
        // mature implementation.
        assert!(ours.len() < data.len(), "{name}");
        assert!(
            ours.len() <= theirs.len() * 11 / 10 + 4,
            "{name}: {} vs {}",
            ours.len(),
            theirs.len()
        );
    }
    let welcome = &chat_samples()[2].1;
    assert!(
        (10_000..=20_000).contains(&welcome.len()),
        "{}",
        welcome.len()
    );
    assert!(compress_message(welcome).len() < welcome.len() / 4);
}
