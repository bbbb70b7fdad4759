//! Client-to-server masking (RFC 6455 §5.3).
//!
//! Every byte `i` of a masked payload is XORed with `key[i % 4]`. Doing that
//! one byte at a time is the textbook loop and the slow one; here the key is
//! widened to a 64-bit word and the payload is processed eight bytes per step,
//! which the compiler further turns into SIMD. [`apply_mask_bytewise`] is the
//! textbook loop, kept as the reference the fast version is tested against.

/// XORs `buf` with the masking `key`, where `buf` starts `offset` bytes into
/// the payload (so a payload that arrives in pieces can be unmasked piece by
/// piece: pass the number of payload bytes already unmasked).
///
/// Masking is its own inverse: applying it twice restores the input.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // Rotate the key so that byte 0 of `buf` lines up with key[offset % 4].
    let key = rotate_key(key, offset);

    // Bytes before the first 8-byte aligned address, then whole words, then
    // the tail.
    let (head, words, tail) = split_for_words(buf);
    let head_len = head.len();
    apply_mask_bytewise(head, key, 0);

    let key = rotate_key(key, head_len);
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    for chunk in words.chunks_exact_mut(8) {
        let value = u64::from_ne_bytes(chunk.try_into().expect("chunk of 8")) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    // `words` is a whole number of 8-byte chunks, so the key phase is
    // unchanged for the tail.
    apply_mask_bytewise(tail, key, 0);
}

/// The reference implementation: one byte at a time, exactly as §5.3 writes it.
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(offset + i) % 4];
    }
}

fn rotate_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    let mut key = key;
    key.rotate_left(offset % 4);
    key
}

/// Splits `buf` into (unaligned head, a multiple of 8 bytes, short tail)
/// without `unsafe`: the head is at most 7 bytes, chosen so that the middle
/// starts on an 8-byte boundary (aligned loads are cheaper on some CPUs).
fn split_for_words(buf: &mut [u8]) -> (&mut [u8], &mut [u8], &mut [u8]) {
    let misalignment = buf.as_ptr() as usize % 8;
    let head_len = if misalignment == 0 {
        0
    } else {
        (8 - misalignment).min(buf.len())
    };
    let (head, rest) = buf.split_at_mut(head_len);
    let words_len = rest.len() / 8 * 8;
    let (words, tail) = rest.split_at_mut(words_len);
    (head, words, tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_example_masked_hello() {
        // §5.7: "Hello" masked with 37 fa 21 3d.
        let mut payload = *b"Hello";
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn word_at_a_time_matches_byte_loop_for_every_length_offset_and_alignment() {
        let key = [0x12, 0x34, 0x56, 0x78];
        let source: Vec<u8> = (0..300u32).map(|i| (i * 31 + 7) as u8).collect();
        for start in 0..8 {
            for len in 0..(300 - start).min(80) {
                for offset in 0..4 {
                    let mut fast = source.clone();
                    let mut slow = source.clone();
                    apply_mask(&mut fast[start..start + len], key, offset);
                    apply_mask_bytewise(&mut slow[start..start + len], key, offset);
                    assert_eq!(fast, slow, "start {start} len {len} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn masking_in_pieces_equals_masking_at_once() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        let original: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut whole = original.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = original.clone();
        let mut done = 0;
        for size in [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233].iter().cycle() {
            if done == pieces.len() {
                break;
            }
            let end = (done + size).min(pieces.len());
            apply_mask(&mut pieces[done..end], key, done);
            done = end;
        }
        assert_eq!(whole, pieces);
        apply_mask(&mut whole, key, 0);
        assert_eq!(whole, original, "masking twice restores the input");
    }
}
