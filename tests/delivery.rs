//! Delivery driven directly over loopback sockets: what each client
//! receives, in which order, and what happens when a socket is full.
//! (The end-to-end consequences are in `hostile.rs` and `server.rs`.)

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};
use wschat::delivery::{
    Batch, Bytes, COMMAND_QUEUE, Delivery, Ending, LOBBY, PRIVATE_BACKLOG_BYTES,
    PRIVATE_ITEM_OVERHEAD, Settings, Variant,
};
use wschat::metrics::Metrics;
use wschat::protocol::OpCode;
use wschat::protocol::close::CloseCode;
use wschat::protocol::frame::{encode_close, encode_frame};
use wschat::protocol::message::{Message, MessageReader, ReadError, Role};
use wschat::room::Mode;

const TIMEOUT: Duration = Duration::from_secs(10);
/// The two plain broadcast streams.
const RAW: Variant = Variant::new(Mode::Raw, false);
const V1: Variant = Variant::new(Mode::V1, false);

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

fn batch(frames: &[(Variant, Option<u64>, &[u8])]) -> Batch {
    let mut batch = Batch::default();
    for (variant, origin, bytes) in frames {
        batch.push(*variant, *origin, LOBBY, (*bytes).into());
    }
    batch
}

#[test]
fn each_client_gets_its_variant_minus_its_own_frames_after_its_first_bytes() {
    let (delivery, _) = start(1 << 20);
    let (a_server, mut a) = pair();
    let (b_server, mut b) = pair();
    let (e_server, mut e) = pair();
    let _a = delivery.add(Delivery::endpoint(
        1,
        Some(RAW),
        a_server,
        b"A101|".to_vec(),
    ));
    let _b = delivery.add(Delivery::endpoint(2, Some(V1), b_server, b"B101|".to_vec()));
    let _e = delivery.add(Delivery::endpoint(3, None, e_server, b"E101|".to_vec()));
    delivery.broadcast(batch(&[
        (RAW, Some(1), b"raw-from-1|"),
        (V1, None, b"v1-all|"),
        (RAW, Some(2), b"raw-from-2|"),
    ]));
    delivery.send(2, Bytes::Owned(b"b-private|".to_vec()));
    delivery.broadcast(batch(&[(RAW, None, b"raw-last|"), (V1, None, b"v1-last|")]));
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
    let outlet = delivery.add(Delivery::endpoint(1, Some(RAW), server, b"101|".to_vec()));
    // 8 MiB of broadcasts, private bytes and replies, interleaved, while
    // nobody reads: more than the kernel buffers on both sides.
    let chunk = vec![b'x'; 64 * 1024];
    let mut expected = b"101|".to_vec();
    for i in 0u8..128 {
        let mut frame = chunk.clone();
        frame[0] = i;
        match i % 3 {
            0 => delivery.broadcast(batch(&[(RAW, None, &frame)])),
            1 => delivery.send(1, Bytes::Owned(frame.clone())),
            // A reply waits while a MiB of replies is unwritten: only a few.
            _ if i < 12 => outlet.reply(frame.clone()),
            _ => delivery.broadcast(batch(&[(RAW, None, &frame)])),
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
    let outlet = delivery.add(Delivery::endpoint(1, Some(RAW), server, b"101|".to_vec()));
    delivery.broadcast(batch(&[(RAW, None, b"before|")]));
    outlet.close(b"CLOSE".to_vec());
    delivery.broadcast(batch(&[(RAW, None, b"after|")]));
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
    let s = delivery.add(Delivery::endpoint(1, Some(RAW), sleeper_server, vec![]));
    let _r = delivery.add(Delivery::endpoint(2, Some(RAW), reader_server, vec![]));
    // More than the sleeper's kernel buffers absorb (see FILLER) plus its lag.
    const FRAMES: usize = 800;
    const SIZE: usize = 16 * 1024;
    // Broadcasts run at most this many frames (512 KiB, half the lag limit)
    // ahead of the reading client, so that it is never too far behind
    // however busy the machine is: only the sleeper may be cut.
    const AHEAD: usize = 32;
    let read = Arc::new(AtomicUsize::new(0));
    let reading = thread::spawn({
        let read = read.clone();
        move || {
            let mut reader = reader;
            let mut buf = vec![0u8; SIZE];
            for got in 0..FRAMES {
                reader.read_exact(&mut buf).unwrap();
                assert!(buf.iter().all(|&b| b == (got % 251) as u8), "frame {got}");
                read.store(got + 1, Relaxed);
            }
        }
    });
    for i in 0..FRAMES {
        let deadline = Instant::now() + TIMEOUT;
        while i >= read.load(Relaxed) + AHEAD && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        delivery.broadcast(batch(&[(RAW, None, &vec![(i % 251) as u8; SIZE])]));
    }
    reading.join().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while metrics.drops_slow_consumer.load(Relaxed) == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(metrics.drops_slow_consumer.load(Relaxed), 1);
    assert_eq!(
        s.ending(),
        Some(Ending::SlowConsumer),
        "its reader is told why"
    );
    // The sleeper's connection ends; it never got all 12.8 MB.
    let got = read_to_end(&mut sleeper);
    assert!(got.len() < FRAMES * SIZE, "{} bytes", got.len());
}

#[test]
fn stopping_sends_every_client_the_close() {
    let (delivery, _) = start(1 << 20);
    let (a_server, mut a) = pair();
    let (b_server, mut b) = pair();
    let _a = delivery.add(Delivery::endpoint(1, Some(RAW), a_server, b"a|".to_vec()));
    let _b = delivery.add(Delivery::endpoint(2, None, b_server, b"b|".to_vec()));
    delivery.stop(b"BYE");
    assert_eq!(read_to_end(&mut a), b"a|BYE");
    assert_eq!(read_to_end(&mut b), b"b|BYE");
}

/// Bytes more than the kernel's buffers on both sides hold for a client
/// that does not read: behind them, what is queued waits in delivery.
const FILLER: usize = 8 << 20;

/// The messages in `bytes` (a server's frames), and how they end: `None`
/// if the last frame is cut short.
fn messages(bytes: &[u8]) -> (Vec<Message>, Option<()>) {
    let mut reader = MessageReader::new(bytes, Role::Client, 1 << 24);
    let mut out = Vec::new();
    loop {
        match reader.read_message() {
            Ok(message) => out.push(message),
            Err(ReadError::Eof) => return (out, Some(())),
            Err(_) => return (out, None),
        }
    }
}

#[test]
fn clients_are_charged_only_for_the_frames_they_receive() {
    const LAG: usize = 16 << 20;
    let (delivery, metrics) = start(LAG);
    // An echo client (no broadcasts), a v1 client, and a raw client whose
    // own lines are most of the raw stream: none of them reads, and each
    // has private bytes waiting (more than the kernel takes), so none can
    // simply skip ahead.
    let (e_server, mut e) = pair();
    let (v_server, mut v) = pair();
    let (s_server, mut s) = pair();
    let (r_server, reader) = pair();
    let _e = delivery.add(Delivery::endpoint(1, None, e_server, vec![]));
    let _v = delivery.add(Delivery::endpoint(2, Some(V1), v_server, vec![]));
    let _s = delivery.add(Delivery::endpoint(3, Some(RAW), s_server, vec![]));
    let _r = delivery.add(Delivery::endpoint(4, Some(RAW), r_server, vec![]));
    let private = vec![b'p'; FILLER];
    for tag in 1..=3 {
        delivery.send(tag, Bytes::Owned(private.clone()));
    }
    // 24 MiB of raw frames (three in four from the raw client 3), and as
    // many compressed copies, while the raw reader keeps up.
    const FRAMES: usize = 384;
    const SIZE: usize = 64 * 1024;
    let reading = thread::spawn(move || {
        let mut reader = reader;
        let mut buf = vec![0u8; SIZE];
        for _ in 0..FRAMES {
            reader.read_exact(&mut buf).unwrap();
        }
    });
    for i in 0..FRAMES {
        let origin = (i % 4 != 0).then_some(3);
        delivery.broadcast(batch(&[
            (RAW, origin, &vec![i as u8; SIZE]),
            (Variant::new(Mode::Raw, true), origin, &vec![i as u8; SIZE]),
        ]));
        if i % 16 == 0 {
            thread::sleep(Duration::from_millis(5));
        }
    }
    reading.join().unwrap();
    thread::sleep(Duration::from_millis(300)); // a sweep or two
    assert_eq!(
        metrics.drops_slow_consumer.load(Relaxed),
        0,
        "a client was dropped for frames it never receives"
    );
    // Each still gets its private bytes, and the raw client the frames
    // not its own.
    assert!(read_exactly(&mut e, private.len()) == private);
    assert!(read_exactly(&mut v, private.len()) == private);
    assert!(read_exactly(&mut s, private.len()) == private);
    for i in (0..FRAMES).step_by(4) {
        assert!(
            read_exactly(&mut s, SIZE) == vec![i as u8; SIZE],
            "frame {i}"
        );
    }
}

#[test]
fn pongs_waiting_for_a_client_are_replaced_by_the_latest() {
    let (delivery, _) = start(64 << 20);
    let (server, mut client) = pair();
    let outlet = delivery.add(Delivery::endpoint(1, None, server, vec![]));
    delivery.send_welcome(1, Bytes::Owned(vec![b'w'; FILLER]));
    // Pongs collapse behind a full socket only: let the filler fill it.
    thread::sleep(Duration::from_millis(300));
    for i in 0..10_000u32 {
        outlet.pong(encode_frame(OpCode::Pong, &i.to_be_bytes(), None));
    }
    outlet.reply(encode_frame(OpCode::Text, b"after the pings", None));
    thread::sleep(Duration::from_millis(100));
    assert_eq!(read_exactly(&mut client, FILLER), vec![b'w'; FILLER]);
    // §5.5.3: only the most recent Ping is answered.
    let last = encode_frame(OpCode::Pong, &9_999u32.to_be_bytes(), None);
    let text = encode_frame(OpCode::Text, b"after the pings", None);
    let mut expected = last.clone();
    expected.extend_from_slice(&text);
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let got = read_to_end(&mut client);
    assert!(
        got == expected,
        "{} pongs came",
        got.len() / last.len().max(1)
    );
}

/// Starts a thread that, as a client's reader, queues `frame` `count` times
/// with `queue`; returns how many it has queued so far, and the client.
fn replying(
    delivery: &Arc<Delivery>,
    count: usize,
    queue: fn(&wschat::delivery::Outlet, &Arc<Delivery>),
) -> (Arc<AtomicUsize>, TcpStream, thread::JoinHandle<()>) {
    let (server, client) = pair();
    let queued = Arc::new(AtomicUsize::new(0));
    let (delivery, progress) = (delivery.clone(), queued.clone());
    let thread = thread::spawn(move || {
        // Made here: this thread is the one that waits for the backlog.
        let outlet = delivery.add(Delivery::endpoint(1, None, server, vec![]));
        delivery.send_welcome(1, Bytes::Owned(vec![b'w'; FILLER]));
        for _ in 0..count {
            queue(&outlet, &delivery);
            progress.fetch_add(1, Relaxed);
        }
        outlet.close(b"CLOSE".to_vec());
    });
    (queued, client, thread)
}

/// Waits until `queued` stops moving; returns where it stopped.
fn settles(queued: &AtomicUsize) -> usize {
    let mut last = usize::MAX;
    loop {
        thread::sleep(Duration::from_millis(300));
        let now = queued.load(Relaxed);
        if now == last {
            return now;
        }
        last = now;
    }
}

#[test]
fn a_reply_backlog_is_charged_what_each_item_costs_not_its_bytes() {
    let (delivery, _) = start(64 << 20);
    // One-byte echoes: three bytes each on the wire, far more in memory.
    const COUNT: usize = 100_000;
    let (queued, mut client, thread) = replying(&delivery, COUNT, |outlet, _| {
        outlet.reply(encode_frame(OpCode::Binary, b"x", None))
    });
    let stopped_at = settles(&queued);
    let expected = PRIVATE_BACKLOG_BYTES / (3 + PRIVATE_ITEM_OVERHEAD);
    assert!(
        stopped_at <= expected + 2,
        "the reader queued {stopped_at} echoes of 3 bytes before it waited \\
         (their cost allows {expected})"
    );
    assert!(stopped_at + 2 >= expected, "waited early: {stopped_at}");
    // Once the client reads, everything comes, in order.
    assert_eq!(read_exactly(&mut client, FILLER), vec![b'w'; FILLER]);
    let echo = encode_frame(OpCode::Binary, b"x", None);
    let got = read_to_end(&mut client);
    thread.join().unwrap();
    assert_eq!(got.len(), COUNT * echo.len() + 5);
    assert!(got.ends_with(b"CLOSE"));
}

#[test]
fn room_replies_count_against_the_private_cap_and_a_welcome_does_not() {
    let (delivery, _) = start(64 << 20);
    // The room's replies (errors, /who answers) are sent by another
    // thread; the reader waits for them to drain before it reads more.
    const COUNT: usize = 40_000;
    let (queued, mut client, thread) = replying(&delivery, COUNT, |outlet, delivery| {
        delivery.send(1, Bytes::Owned(b"error".to_vec()));
        outlet.wait_for_room();
    });
    let stopped_at = settles(&queued);
    let expected = PRIVATE_BACKLOG_BYTES / (5 + PRIVATE_ITEM_OVERHEAD);
    // They are counted as the delivery thread takes them: the replies
    // still in its command queue come on top (here, where nothing else
    // paces the sender, up to a queue's worth on a busy machine).
    assert!(
        stopped_at <= expected + COMMAND_QUEUE,
        "the reader went on after {stopped_at} room replies (their cost allows {expected})"
    );
    // The 8 MiB welcome in front of them counted for nothing here.
    assert!(stopped_at >= expected, "waited early: {stopped_at}");
    assert_eq!(read_exactly(&mut client, FILLER), vec![b'w'; FILLER]);
    let got = read_to_end(&mut client);
    thread.join().unwrap();
    assert_eq!(got.len(), COUNT * 5 + 5);
}

/// A client whose receive buffer is `size` bytes (4 KiB: a slow phone).
fn pair_with_small_buffer(size: usize) -> (Arc<TcpStream>, TcpStream) {
    use socket2::{Domain, Socket, Type};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(size).unwrap();
    socket
        .connect(&listener.local_addr().unwrap().into())
        .unwrap();
    let client: TcpStream = socket.into();
    let (server, _) = listener.accept().unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    (Arc::new(server), client)
}

/// What the reader is told when delivery ends a client is what went out
/// on the wire: the room's Close and its code, or, for a socket that
/// failed, that nothing could be sent (not a slow consumer's 1008).
#[test]
fn delivery_tells_the_reader_how_it_ended_a_client() {
    let (delivery, metrics) = start(1 << 20);
    let (rejoin_server, mut rejoin) = pair();
    let told = delivery.add(Delivery::endpoint(1, Some(RAW), rejoin_server, vec![]));
    delivery.close(1, encode_close(CloseCode::Restart, "rejoin", None));
    assert!(!read_to_end(&mut rejoin).is_empty());
    assert_eq!(told.ending(), Some(Ending::Closed(1012)));

    let (reset_server, reset) = pair();
    let failed = delivery.add(Delivery::endpoint(2, Some(RAW), reset_server, vec![]));
    // The client resets its connection (SO_LINGER 0): the next writes fail.
    socket2::SockRef::from(&reset)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(reset);
    let deadline = Instant::now() + TIMEOUT;
    while !failed.is_closed() && Instant::now() < deadline {
        delivery.broadcast(batch(&[(RAW, None, &[0u8; 4096])]));
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(failed.ending(), Some(Ending::WriteFailed));
    assert_eq!(metrics.drops_slow_consumer.load(Relaxed), 0);
}

#[test]
fn a_slow_consumer_gets_the_rest_of_its_frame_and_a_whole_1008() {
    for run in 0..3 {
        let (delivery, metrics) = start(1 << 20);
        let (server, client) = pair_with_small_buffer(4096);
        let _outlet = delivery.add(Delivery::endpoint(1, Some(RAW), server, vec![]));
        // It reads, but slowly (4 KiB a millisecond).
        let reading = thread::spawn(move || {
            let mut client = client;
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match client.read(&mut buf) {
                    Ok(0) | Err(_) => return got,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                thread::sleep(Duration::from_millis(1));
            }
        });
        // 4 MiB of 60 KiB frames at once: it falls 1 MiB behind at once.
        for i in 0..70u8 {
            let frame = encode_frame(OpCode::Binary, &vec![i; 60 * 1024], None);
            delivery.broadcast(batch(&[(RAW, None, &frame)]));
        }
        let got = reading.join().unwrap();
        assert_eq!(metrics.drops_slow_consumer.load(Relaxed), 1);
        let (received, whole) = messages(&got);
        assert!(whole.is_some(), "run {run}: a frame was cut short");
        match received.last() {
            Some(Message::Close(Some(close))) => {
                assert_eq!(u16::from(close.code), 1008, "run {run}");
                assert_eq!(close.reason, "slow_consumer");
            }
            other => panic!(
                "run {run}: {} messages, no Close at the end ({})",
                received.len(),
                match other {
                    Some(Message::Binary(data)) => format!("a binary of {} bytes", data.len()),
                    other => format!("{other:?}"),
                }
            ),
        }
        for (i, message) in received[..received.len() - 1].iter().enumerate() {
            assert_eq!(message, &Message::Binary(vec![i as u8; 60 * 1024]));
        }
    }
}

#[test]
fn a_close_queued_as_the_reader_leaves_is_written_with_what_came_before() {
    for _ in 0..20 {
        let (delivery, _) = start(1 << 20);
        let (server, mut client) = pair();
        let outlet = delivery.add(Delivery::endpoint(1, Some(RAW), server, b"101|".to_vec()));
        outlet.reply(b"last words|".to_vec());
        outlet.close(b"CLOSE".to_vec());
        drop(outlet); // the reader is gone at once
        assert_eq!(read_to_end(&mut client), b"101|last words|CLOSE");
    }
}
