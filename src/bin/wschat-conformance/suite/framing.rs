//! Framing (RFC 6455 §5.2): every payload length form, text and binary,
//! delivered whole, a byte at a time, split at every header boundary, and
//! many frames in one write (Autobahn sections 1 and 9 in spirit).

use super::Cases;

use super::client::Message;
use super::steps::*;
use std::time::Duration;

const LENGTHS: [usize; 8] = [0, 1, 125, 126, 127, 128, 65535, 65536];
const MIB: [usize; 5] = [1, 2, 4, 8, 16];

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Binary,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Binary => "binary",
        }
    }

    fn message(self, len: usize) -> (u8, Vec<u8>, Message) {
        match self {
            Kind::Text => {
                let t = pattern_text(len);
                (TEXT, t.clone().into_bytes(), Message::Text(t.into_bytes()))
            }
            Kind::Binary => {
                let b = pattern_bytes(len);
                (BINARY, b.clone(), Message::Binary(b))
            }
        }
    }
}

/// Where the header of a frame with `len` payload bytes ends (masked).
fn header_len(len: usize) -> usize {
    2 + match len {
        0..=125 => 0,
        126..=65535 => 2,
        _ => 8,
    } + 4
}

pub fn cases(c: &mut Cases) {
    for kind in [Kind::Text, Kind::Binary] {
        let k = kind.name();
        for len in LENGTHS {
            c.add(format!("{k}_len_{len}_whole"), move || {
                let (op, payload, want) = kind.message(len);
                echo_case(frame(true, op, &payload), &[want])
            });
            if len <= 128 {
                c.add(format!("{k}_len_{len}_byte_by_byte"), move || {
                    let (op, payload, want) = kind.message(len);
                    let mut client = echo()?;
                    client.write_chopped(&frame(true, op, &payload), 1)?;
                    client.expect(&want)?;
                    finish(client)
                });
            } else {
                c.add(format!("{k}_len_{len}_in_1000_byte_writes"), move || {
                    let (op, payload, want) = kind.message(len);
                    let mut client = echo()?;
                    client.write_chopped(&frame(true, op, &payload), 1000)?;
                    client.expect(&want)?;
                    finish(client)
                });
            }
            c.add(
                format!("{k}_len_{len}_split_at_every_header_byte"),
                move || {
                    let (op, payload, want) = kind.message(len);
                    let bytes = frame(true, op, &payload);
                    let mut client = echo()?;
                    // Every cut inside the header and the one right after it:
                    // after the first byte, the length byte, each extended
                    // length byte, each masking key byte.
                    for cut in 1..=header_len(len) {
                        client.write(&bytes[..cut])?;
                        std::thread::sleep(PAUSE);
                        client.write(&bytes[cut..])?;
                        client
                            .expect(&want)
                            .map_err(|e| e.prefixed(&format!("cut at {cut}: ")))?;
                    }
                    finish(client)
                },
            );
        }
        for mib in MIB {
            c.add(format!("{k}_{mib}mib_whole"), move || {
                let (op, payload, want) = kind.message(mib << 20);
                echo_case(frame(true, op, &payload), &[want])
            });
        }
    }

    c.add("many_small_frames_in_one_write", || {
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        for i in 0..300usize {
            let len = i % 131;
            let (op, payload, m) = if i % 2 == 0 {
                Kind::Text.message(len)
            } else {
                Kind::Binary.message(len)
            };
            bytes.extend(frame(true, op, &payload));
            want.push(m);
        }
        echo_case(bytes, &want)
    });
    c.add("every_length_form_in_one_write", || {
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        for (i, len) in LENGTHS
            .into_iter()
            .chain(LENGTHS.into_iter().rev())
            .enumerate()
        {
            let kind = if i % 2 == 0 { Kind::Text } else { Kind::Binary };
            let (op, payload, m) = kind.message(len);
            bytes.extend(frame(true, op, &payload));
            want.push(m);
        }
        echo_case(bytes, &want)
    });
    c.add("frames_and_pings_in_one_write", || {
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        for i in 0..50usize {
            let (op, payload, m) = Kind::Text.message(i * 3);
            bytes.extend(frame(true, op, &payload));
            want.push(m);
            let ping = format!("ping {i}");
            bytes.extend(frame(true, PING, ping.as_bytes()));
            want.push(pong(ping.as_bytes()));
        }
        echo_case(bytes, &want)
    });
    c.add("16mib_of_echoes_to_a_client_that_reads_late", || {
        // 64 messages of 256 KiB written at once by a client that starts
        // reading only later: the server may hold it back (TCP flow
        // control), but must lose, reorder or drop nothing.
        let mut client = echo()?;
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        for i in 0..64u8 {
            let mut b = pattern_bytes(256 << 10);
            b[0] = i;
            bytes.extend(frame(true, BINARY, &b));
            want.push(Message::Binary(b));
        }
        let writer = write_in_background(&client, bytes)?;
        std::thread::sleep(Duration::from_millis(300));
        client.expect_all(&want)?;
        join_writer(writer)?;
        finish(client)
    });
    c.add("empty_text_and_binary_frames_in_one_write", || {
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        for i in 0..100 {
            if i % 2 == 0 {
                bytes.extend(frame(true, TEXT, b""));
                want.push(text(""));
            } else {
                bytes.extend(frame(true, BINARY, b""));
                want.push(binary(b""));
            }
        }
        echo_case(bytes, &want)
    });
    for seed in 1..=4u64 {
        c.add(
            format!("random_messages_random_write_sizes_seed_{seed}"),
            move || {
                let mut rng = Rng::new(seed);
                let mut bytes = Vec::new();
                let mut want = Vec::new();
                for _ in 0..200 {
                    let len = match rng.below(10) {
                        0 => rng.range(126, 70_000),
                        1..=3 => rng.range(120, 130),
                        _ => rng.below(126),
                    };
                    if rng.chance(1, 2) {
                        let t = rng.text(len);
                        bytes.extend(frame(true, TEXT, t.as_bytes()));
                        want.push(Message::Text(t.into_bytes()));
                    } else {
                        let b = rng.bytes(len);
                        bytes.extend(frame(true, BINARY, &b));
                        want.push(Message::Binary(b));
                    }
                }
                let mut client = echo()?;
                let mut stream = client
                    .stream
                    .try_clone()
                    .map_err(|e| format!("clone: {e}"))?;
                let writer = std::thread::spawn(move || -> Result<(), String> {
                    use std::io::Write;
                    let mut at = 0;
                    while at < bytes.len() {
                        let n = rng.range(1, 5000).min(bytes.len() - at);
                        stream
                            .write_all(&bytes[at..at + n])
                            .map_err(|e| format!("write: {e}"))?;
                        at += n;
                        if rng.chance(1, 50) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    Ok(())
                });
                client.expect_all(&want)?;
                join_writer(writer)?;
                finish(client)
            },
        );
    }
}
