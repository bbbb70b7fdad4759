//! Delivery driven directly over loopback sockets: what each client
//! receives, in which order, and what happens when a socket is full.
//! (The end-to-end consequences are in `hostile.rs` and `server.rs`.)

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread;
use std::time::{Duration, Instant};
use wschat::delivery::{Batch, Bytes, Delivery, Settings};
use wschat::metrics::Metrics;

const TIMEOUT: Duration = Duration::from_secs(10);

fn start(max_behind_bytes: usize) -> (Arc<Delivery>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let delivery = Delivery::start(Settings {
        threads: 2,
        stall_limit: Duration::from_secs(60),
        max_behind_bytes,
        metrics: metrics.clone(),
    })
    .unwrap();
    (delivery, metrics)
}

/// The server's end of a connection and the client's end.
fn pair() -> (Arc<TcpStream>, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    (Arc::new(server), client)
}

fn read_exactly(client: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    client.read_exact(&mut bytes).unwrap();
    bytes
}

/// Reads until EOF (or an error such as a reset); returns what came.
fn read_to_end(client: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn batch(frames: &[(u8, Option<u64>, &[u8])]) -> Batch {
    let mut batch = Batch::default();
    for (variant, origin, bytes) in frames {
        batch.push(*variant, *origin, (*bytes).into());
    }
    batch
}

#[test]
fn each_client_gets_its_variant_minus_its_own_frames_after_its_first_bytes() {
    let (delivery, _) = start(1 << 20);
    let (a_server, mut a) = pair();
    let (b_server, mut b) = pair();
    let (e_server, mut e) = pair();
    let _a = delivery.add(Delivery::endpoint(1, Some(0), a_server, b"A101|".to_vec()));
    let _b = delivery.add(Delivery::endpoint(2, Some(1), b_server, b"B101|".to_vec()));
    let _e = delivery.add(Delivery::endpoint(3, None, e_server, b"E101|".to_vec()));
    delivery.broadcast(batch(&[
        (0, Some(1), b"raw-from-1|"),
        (1, None, b"v1-all|"),
        (0, Some(2), b"raw-from-2|"),
    ]));
    delivery.send(2, Bytes::Owned(b"b-private|".to_vec()));
    delivery.broadcast(batch(&[(0, None, b"raw-last|"), (1, None, b"v1-last|")]));
    assert_eq!(
        read_exactly(&mut a, "A101|raw-from-2|raw-last|".len()),
        b"A101|raw-from-2|raw-last|"
    );
    assert_eq!(
        read_exactly(&mut b, "B101|v1-all|b-private|v1-last|".len()),
        b"B101|v1-all|b-private|v1-last|"
    );
    // A client of no variant gets only its own bytes.
    assert_eq!(read_exactly(&mut e, 5), b"E101|");
    e.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut more = [0u8; 1];
    assert!(e.read(&mut more).is_err(), "an echo client got a broadcast");
}

#[test]
fn a_full_socket_gets_everything_in_order_once_it_reads() {
    let (delivery, metrics) = start(64 << 20);
    let (server, mut client) = pair();
    let outlet = delivery.add(Delivery::endpoint(1, Some(0), server, b"101|".to_vec()));
    // 8 MiB of broadcasts, private bytes and replies, interleaved, while
    // nobody reads: more than the kernel buffers on both sides.
    let chunk = vec![b'x'; 64 * 1024];
    let mut expected = b"101|".to_vec();
    for i in 0u8..128 {
        let mut frame = chunk.clone();
        frame[0] = i;
        match i % 3 {
            0 => delivery.broadcast(batch(&[(0, None, &frame)])),
            1 => delivery.send(1, Bytes::Owned(frame.clone())),
            // A reply waits while a MiB of replies is unwritten: only a few.
            _ if i < 12 => outlet.reply(frame.clone()),
            _ => delivery.broadcast(batch(&[(0, None, &frame)])),
        }
        expected.extend_from_slice(&frame);
    }
    thread::sleep(Duration::from_millis(200));
    let got = read_exactly(&mut client, expected.len());
    assert!(got == expected, "bytes out of order or lost");
    assert!(metrics.max_queue_depth.load(Relaxed) > 0);
}

#[test]
fn nothing_is_written_after_a_close() {
    let (delivery, _) = start(1 << 20);
    let (server, mut client) = pair();
    let outlet = delivery.add(Delivery::endpoint(1, Some(0), server, b"101|".to_vec()));
    delivery.broadcast(batch(&[(0, None, b"before|")]));
    outlet.close(b"CLOSE".to_vec());
    delivery.broadcast(batch(&[(0, None, b"after|")]));
    outlet.reply(b"late reply".to_vec());
    // The server's half of TCP ends after the Close: EOF.
    assert_eq!(read_to_end(&mut client), b"101|before|CLOSE");
    assert!(outlet.is_closed());
}

#[test]
fn a_client_too_far_behind_is_cut_and_the_others_get_everything() {
    let (delivery, metrics) = start(1 << 20);
    let (sleeper_server, mut sleeper) = pair();
    let (reader_server, reader) = pair();
    let _s = delivery.add(Delivery::endpoint(1, Some(0), sleeper_server, vec![]));
    let _r = delivery.add(Delivery::endpoint(2, Some(0), reader_server, vec![]));
    const FRAMES: usize = 400;
    const SIZE: usize = 16 * 1024;
    let reading = thread::spawn(move || {
        let mut reader = reader;
        let mut got = 0;
        let mut buf = vec![0u8; SIZE];
        while got < FRAMES {
            reader.read_exact(&mut buf).unwrap();
            assert!(buf.iter().all(|&b| b == (got % 251) as u8), "frame {got}");
            got += 1;
        }
    });
    for i in 0..FRAMES {
        delivery.broadcast(batch(&[(0, None, &vec![(i % 251) as u8; SIZE])]));
        if i % 50 == 0 {
            thread::sleep(Duration::from_millis(5));
        }
    }
    reading.join().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while metrics.drops_slow_consumer.load(Relaxed) == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(metrics.drops_slow_consumer.load(Relaxed), 1);
    // The sleeper's connection ends; it never got all 6.4 MB.
    let got = read_to_end(&mut sleeper);
    assert!(got.len() < FRAMES * SIZE, "{} bytes", got.len());
}

#[test]
fn stopping_sends_every_client_the_close() {
    let (delivery, _) = start(1 << 20);
    let (a_server, mut a) = pair();
    let (b_server, mut b) = pair();
    let _a = delivery.add(Delivery::endpoint(1, Some(0), a_server, b"a|".to_vec()));
    let _b = delivery.add(Delivery::endpoint(2, None, b_server, b"b|".to_vec()));
    delivery.stop(b"BYE");
    assert_eq!(read_to_end(&mut a), b"a|BYE");
    assert_eq!(read_to_end(&mut b), b"b|BYE");
}
