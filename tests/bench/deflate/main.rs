//! DEFLATE speed against zlib: wschat's compressor and inflater, and zlib
//! (flate2 on its `zlib-rs` backend, a port of zlib) at level 6, on a
//! seeded input set. Run by hand (see tests/bench/README.md):
//!
//! ```text
//! cargo bench --bench deflate_speed
//! ```
//!
//! Every input is one permessage-deflate message (RFC 7692 §7.2.1:
//! sync-flushed, `00 00 ff ff` removed), except "chat events", which is
//! many small messages, each compressed and inflated on its own as the
//! server does. Both inflaters decode zlib's output. Each figure is the
//! median of three rounds taken in the same run; in a round, wschat and
//! zlib take turns (20 ms slices) for at least `--ms` milliseconds of CPU
//! time together (default 600). Speeds are per second of CPU time (the
//! thread's, from /proc/thread-self/schedstat), so that a busy machine
//! slows both sides' figures less; `--only TEXT` runs the inputs whose name contains TEXT.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};
use wschat::protocol::deflate::{Inflater, SYNC_FLUSH_TAIL, compress_message};

/// The generator's seed: the same inputs on every run.
const SEED: u64 = 0x2545_f491_4f6c_dd1d;
/// Bytes in each generated input (chat events and the welcome excepted).
const INPUT_LEN: usize = 256 * 1024;
const ROUNDS: usize = 3;

/// xorshift64: deterministic, and enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() >> 32) as usize % n
    }
    /// Zipf-like: small indices much more often than large ones.
    fn skewed(&mut self, n: usize) -> usize {
        let a = self.below(n);
        self.below(a + 1)
    }
}

const WORDS: [&str; 96] = [
    "the", "of", "and", "to", "a", "in", "is", "it", "you", "that", "he", "was", "for", "on",
    "are", "with", "as", "his", "they", "be", "at", "one", "have", "this", "from", "or", "had",
    "by", "hot", "word", "but", "what", "some", "we", "can", "out", "other", "were", "all",
    "there", "when", "up", "use", "your", "how", "said", "an", "each", "she", "which", "do",
    "their", "time", "if", "will", "way", "about", "many", "then", "them", "write", "would",
    "like", "so", "these", "her", "long", "make", "thing", "see", "him", "two", "has", "look",
    "more", "day", "could", "go", "come", "did", "number", "sound", "no", "most", "people", "my",
    "over", "know", "water", "than", "call", "first", "who", "may", "down", "side",
];
const NICKS: [&str; 12] = [
    "ada", "grace", "linus", "barbara", "ken", "dennis", "margaret", "alan", "edsger", "frances",
    "donald", "radia",
];

fn sentence(rng: &mut Rng, out: &mut String) {
    let n = 4 + rng.below(14);
    for i in 0..n {
        let word = WORDS[rng.skewed(WORDS.len())];
        if i == 0 {
            let mut chars = word.chars();
            let first = chars.next().unwrap().to_ascii_uppercase();
            out.push(first);
            out.push_str(chars.as_str());
        } else {
            out.push_str(word);
        }
        out.push(if i + 1 == n {
            '.'
        } else if rng.below(9) == 0 {
            ','
        } else {
            ' '
        });
        if i + 1 < n && out.ends_with(',') {
            out.push(' ');
        }
    }
}

fn english(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut text = String::new();
    while text.len() < len {
        sentence(rng, &mut text);
        text.push(if rng.below(6) == 0 { '\n' } else { ' ' });
    }
    text.truncate(len);
    text.into_bytes()
}

fn chat_event(rng: &mut Rng, id: usize) -> String {
    let mut text = String::new();
    sentence(rng, &mut text);
    format!(
        r#"{{"type":"message","id":{id},"room":"lobby","from":"{}","text":"{}","ts":{}}}"#,
        NICKS[rng.below(NICKS.len())],
        text,
        1_780_000_000_000u64 + id as u64 * 1375 + rng.below(1000) as u64,
    )
}

fn welcome(rng: &mut Rng) -> Vec<u8> {
    let users: Vec<String> = (0..200)
        .map(|i| format!(r#""{}{}""#, NICKS[i % NICKS.len()], i))
        .collect();
    let history: Vec<String> = (0..50).map(|id| chat_event(rng, id)).collect();
    format!(
        r#"{{"type":"welcome","you":"guest4711","room":"lobby","users":[{}],"history":[{}]}}"#,
        users.join(","),
        history.join(",")
    )
    .into_bytes()
}

/// Records like a program's data: little-endian counters and timestamps,
/// a few enum bytes, zero padding, small numbers, and a string table.
fn binary(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut ts = 1_780_000_000_000_000u64;
    let mut id = 0u32;
    while out.len() < len {
        if rng.below(64) == 0 {
            for _ in 0..8 {
                out.extend_from_slice(WORDS[rng.below(WORDS.len())].as_bytes());
                out.push(0);
            }
            continue;
        }
        id += 1;
        ts += rng.below(5000) as u64;
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&ts.to_le_bytes());
        out.push(rng.below(8) as u8);
        out.push(1 << rng.below(8));
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(rng.below(1000) as u32).to_le_bytes());
        out.extend_from_slice(&(rng.next() as u32).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn random_from(rng: &mut Rng, alphabet: &[u8], len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| alphabet[rng.below(alphabet.len())])
        .collect()
}

/// The docs, concatenated in file-name order (the committed walkthrough).
fn docs() -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    paths.sort();
    paths
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// The input set: a name and its messages.
fn inputs() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let mut rng = Rng(SEED);
    let chat: Vec<Vec<u8>> = (0..2000)
        .map(|id| chat_event(&mut rng, id).into_bytes())
        .collect();
    let all_bytes: Vec<u8> = (0..=255).collect();
    vec![
        ("chat events", chat),
        ("JSON welcome", vec![welcome(&mut rng)]),
        ("English text", vec![english(&mut rng, INPUT_LEN)]),
        ("docs/*.md", vec![docs()]),
        ("binary records", vec![binary(&mut rng, INPUT_LEN)]),
        ("random", vec![random_from(&mut rng, &all_bytes, INPUT_LEN)]),
        ("zeros", vec![vec![0; INPUT_LEN]]),
        (
            "random ACGT",
            vec![random_from(&mut rng, b"ACGT", INPUT_LEN)],
        ),
        (
            "random hex digits",
            vec![random_from(&mut rng, b"0123456789abcdef", INPUT_LEN)],
        ),
    ]
}

/// zlib level 6, raw deflate, sync-flushed, tail removed (RFC 7692 §7.2.1).
fn zlib_compress(zlib: &mut Compress, payload: &[u8], out: &mut Vec<u8>) {
    zlib.reset();
    out.clear();
    out.reserve(payload.len() + payload.len() / 8 + 64);
    loop {
        let consumed = zlib.total_in() as usize;
        zlib.compress_vec(&payload[consumed..], out, FlushCompress::Sync)
            .unwrap();
        if zlib.total_in() as usize == payload.len() && out.ends_with(&SYNC_FLUSH_TAIL) {
            break;
        }
        out.reserve(out.capacity());
    }
    out.truncate(out.len() - SYNC_FLUSH_TAIL.len());
}

/// zlib's inflate of one payload, the tail appended (RFC 7692 §7.2.2) by
/// a second call rather than a copy.
fn zlib_inflate(zlib: &mut Decompress, payload: &[u8], out: &mut Vec<u8>, len: usize) {
    zlib.reset(false);
    out.clear();
    out.reserve(len + 1);
    for piece in [payload, &SYNC_FLUSH_TAIL[..]] {
        let start = zlib.total_in();
        let status = zlib
            .decompress_vec(piece, out, FlushDecompress::Sync)
            .unwrap();
        assert!(matches!(status, Status::Ok | Status::BufError));
        assert_eq!((zlib.total_in() - start) as usize, piece.len());
    }
}

/// Nanoseconds this thread has run on a CPU (Linux's schedstat): time
/// spent waiting for a CPU, on a busy machine, is not counted.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("/proc/thread-self/schedstat (Linux)");
    let ns = stat.split_whitespace().next().and_then(|n| n.parse().ok());
    Duration::from_nanos(ns.expect("schedstat starts with nanoseconds on CPU"))
}

/// MB/s (10^6 bytes of message per CPU second) of `ours` and `theirs`,
/// each doing `bytes`, over one round of at least `min`: the two take
/// turns in slices of about 20 ms, so that what else the machine is doing
/// weighs on both alike.
fn speeds(
    bytes: usize,
    min: Duration,
    mut ours: impl FnMut(),
    mut theirs: impl FnMut(),
) -> (f64, f64) {
    let slice = Duration::from_millis(20).min(min);
    let mut time = [Duration::ZERO; 2];
    let mut runs = [0u64; 2];
    while time[0] + time[1] < min || runs.contains(&0) {
        for (side, work) in [&mut ours as &mut dyn FnMut(), &mut theirs]
            .into_iter()
            .enumerate()
        {
            let (start, cpu_start) = (Instant::now(), cpu_time());
            loop {
                work();
                runs[side] += 1;
                if start.elapsed() >= slice {
                    break;
                }
            }
            time[side] += cpu_time() - cpu_start;
        }
    }
    let speed = |side: usize| (bytes as u64 * runs[side]) as f64 / time[side].as_secs_f64() / 1e6;
    (speed(0), speed(1))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let ms = std::env::args()
        .skip_while(|a| a != "--ms")
        .nth(1)
        .map_or(600, |v| v.parse().expect("--ms takes milliseconds"));
    let min = Duration::from_millis(ms);
    // `--only TEXT`: the inputs whose name contains TEXT.
    let only = std::env::args().skip_while(|a| a != "--only").nth(1);
    let mut zc = Compress::new(Compression::new(6), false);
    let mut zd = Decompress::new(false);
    let inflater = Inflater::new();
    let mut scratch = Vec::new();
    let mut inflated = Vec::new();

    println!(
        "| input | bytes | compress: wschat MB/s | zlib -6 MB/s | wschat ÷ zlib | size: wschat | zlib -6 | wschat ÷ zlib | inflate: wschat MB/s | zlib MB/s | wschat ÷ zlib |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, messages) in inputs() {
        if only
            .as_ref()
            .is_some_and(|only| !name.contains(only.as_str()))
        {
            continue;
        }
        let bytes: usize = messages.iter().map(Vec::len).sum();
        // What each side makes of the input, checked once, untimed.
        let ours: Vec<Vec<u8>> = messages.iter().map(|m| compress_message(m)).collect();
        let zlib: Vec<Vec<u8>> = messages
            .iter()
            .map(|m| {
                let mut out = Vec::new();
                zlib_compress(&mut zc, m, &mut out);
                out
            })
            .collect();
        for ((m, o), z) in messages.iter().zip(&ours).zip(&zlib) {
            assert_eq!(&inflater.inflate_message(o, m.len()).unwrap(), m);
            assert_eq!(&inflater.inflate_message(z, m.len()).unwrap(), m);
            zlib_inflate(&mut zd, o, &mut scratch, m.len());
            assert_eq!(&scratch, m);
        }
        let ours_size: usize = ours.iter().map(Vec::len).sum();
        let zlib_size: usize = zlib.iter().map(Vec::len).sum();

        let mut figures = [const { Vec::new() }; 4];
        for _ in 0..ROUNDS {
            let (ours, zlib_speed) = speeds(
                bytes,
                min,
                || {
                    for m in &messages {
                        black_box(compress_message(black_box(m)));
                    }
                },
                || {
                    for m in &messages {
                        zlib_compress(&mut zc, black_box(m), &mut scratch);
                    }
                },
            );
            figures[0].push(ours);
            figures[1].push(zlib_speed);
            let (ours, zlib_speed) = speeds(
                bytes,
                min,
                || {
                    for (m, z) in messages.iter().zip(&zlib) {
                        black_box(inflater.inflate_message(black_box(z), m.len()).unwrap());
                    }
                },
                || {
                    for (m, z) in messages.iter().zip(&zlib) {
                        zlib_inflate(&mut zd, black_box(z), &mut inflated, m.len());
                    }
                },
            );
            figures[2].push(ours);
            figures[3].push(zlib_speed);
        }
        let [oc, zc_, oi, zi] = figures.map(median);
        println!(
            "| {name} | {bytes} | {oc:.1} | {zc_:.1} | {:.2} | {ours_size} | {zlib_size} | {:.4} | {oi:.0} | {zi:.0} | {:.2} |",
            oc / zc_,
            ours_size as f64 / zlib_size as f64,
            oi / zi,
        );
    }
}
