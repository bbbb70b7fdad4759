//! zlib's verdict on one permessage-deflate payload: the oracle that the
//! inflater is compared with, in `tests/deflate.rs` and in the fuzz target
//! `inflate`. flate2 runs here on its `zlib-rs` backend, a port of zlib
//! (its default backend, miniz_oxide, is another implementation, with
//! other verdicts).
//!
//! zlib inflates whatever it is given and waits for more, so "zlib
//! accepts" is defined as a receiver of RFC 7692 needs it:
//!
//! - the payload with `00 00 ff ff` appended (§7.2.2) inflates without an
//!   error to at most `limit` bytes, and
//! - either zlib reaches the end of a final block, after which the payload
//!   holds nothing, or one `00` octet (§7.2.3.4's flush after a final
//!   block: the one place where the RFC's rule, not zlib's, decides), or
//!   zlib has read every bit and stands between two blocks. That last
//!   state is not visible through flate2, so it is tested: a final empty
//!   block appended then must end the stream exactly, with no more output,
//!   for two different such blocks (fixed `03 00`, stored
//!   `01 00 00 ff ff`).
//! - An empty payload is an empty message (nothing to inflate).

use flate2::{Decompress, FlushDecompress, Status};

/// What RFC 7692 §7.2.2 appends before inflating.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Two final empty blocks: fixed Huffman (BFINAL 1, BTYPE 01, end of
/// block), and stored (BFINAL 1, BTYPE 00, LEN 0, NLEN ffff).
const FINAL_EMPTY_BLOCKS: [&[u8]; 2] = [&[0x03, 0x00], &[0x01, 0x00, 0x00, 0xff, 0xff]];

/// How a run of zlib over some input ended.
enum Run {
    /// An error (zlib's message), or more than `limit` bytes out.
    Refused,
    /// The end of a final block, after `used` bytes of input.
    StreamEnd { out: Vec<u8>, used: usize },
    /// Every byte read, no final block yet.
    NeedsMore { out: Vec<u8> },
}

fn run(input: &[u8], limit: usize) -> Run {
    let mut zlib = Decompress::new(false);
    // One byte over the limit tells that the limit was passed.
    let mut out = Vec::with_capacity(limit + 1);
    loop {
        let (consumed, produced) = (zlib.total_in() as usize, out.len());
        let status = match zlib.decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
        {
            Ok(status) => status,
            Err(_) => return Run::Refused,
        };
        if out.len() > limit {
            return Run::Refused;
        }
        let used = zlib.total_in() as usize;
        match status {
            Status::StreamEnd => return Run::StreamEnd { out, used },
            _ if used == input.len() => return Run::NeedsMore { out },
            // zlib stops early only when its output is full, which is
            // past the limit; anything else would loop forever.
            _ if used == consumed && out.len() == produced => {
                panic!("zlib made no progress at input byte {used}")
            }
            _ => {}
        }
    }
}

/// zlib's verdict on a payload: its message, or `None` if refused.
pub fn inflate(payload: &[u8], limit: usize) -> Option<Vec<u8>> {
    if payload.is_empty() {
        return Some(Vec::new());
    }
    let input = [payload, &TAIL[..]].concat();
    match run(&input, limit) {
        Run::Refused => None,
        Run::StreamEnd { out, used } => {
            let after = &payload[used.min(payload.len())..];
            (after.is_empty() || after == [0x00]).then_some(out)
        }
        Run::NeedsMore { out } => {
            for block in FINAL_EMPTY_BLOCKS {
                let ended_here = matches!(
                    run(&[&input[..], block].concat(), limit),
                    Run::StreamEnd { out: ref ended, used }
                        if used == input.len() + block.len() && *ended == out
                );
                if !ended_here {
                    return None;
                }
            }
            Some(out)
        }
    }
}
