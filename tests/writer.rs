//! The writer's role, driven directly over a loopback socket pair: direct
//! writes to an idle client, and what happens when its socket is full.
//! (The end-to-end consequences are in `hostile.rs` and `server.rs`.)

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;
use wschat::metrics::Metrics;
use wschat::threads::ThreadBudget;
use wschat::writer::{Outbox, Outgoing, Replies, Spawner, queues};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The server's end of a connection, wrapped in queues with a thread
/// budget of their own (so the test can count this client's writer
/// threads), and the client's end.
fn pair() -> (Outbox, Replies, Arc<ThreadBudget>, Arc<Metrics>, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let threads = Arc::new(ThreadBudget::new(4));
    let metrics = Arc::new(Metrics::default());
    let spawner = Spawner {
        ping_interval: Duration::from_secs(30),
        metrics: metrics.clone(),
        threads: threads.clone(),
    };
    let (outbox, replies) = queues(Arc::new(server), spawner);
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    (outbox, replies, threads, metrics, client)
}

/// Runs `f` on another thread and fails if it does not return in time:
/// a call that must never block, proven not to.
fn without_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = mpsc::channel();
    thread::spawn(move || done.send(f()).unwrap());
    result
        .recv_timeout(TIMEOUT)
        .expect("the call blocked: nobody reads the socket")
}

fn read_exactly(client: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    client.read_exact(&mut bytes).unwrap();
    bytes
}

#[test]
fn an_idle_client_is_written_directly_without_a_writer_thread() {
    let (outbox, replies, threads, metrics, mut client) = pair();
    let frame: Arc<[u8]> = Arc::from(&b"\x81\x05hello"[..]);
    assert_eq!(outbox.write_or_push(Outgoing::Shared(frame.clone())), Ok(0));
    assert_eq!(read_exactly(&mut client, 7), &*frame);
    replies.push(Outgoing::Owned(b"\x8a\x00".to_vec())).unwrap();
    assert_eq!(read_exactly(&mut client, 2), b"\x8a\x00");
    assert_eq!(threads.used(), 0, "no writer thread was started");
    assert!(outbox.is_empty(), "nothing was queued");
    assert_eq!(
        metrics
            .messages_out
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[test]
fn what_a_full_socket_cannot_take_goes_out_before_anything_queued_after_it() {
    let (outbox, replies, threads, _metrics, mut client) = pair();
    // Far more than the kernel buffers on both sides hold while nobody reads.
    let big: Arc<[u8]> = (0..64 << 20).map(|i: u32| (i % 251) as u8).collect();
    let small: Arc<[u8]> = Arc::from(&b"\x81\x01!"[..]);
    let (outbox, big_sent, small_sent) = without_blocking({
        let (big, small) = (big.clone(), small.clone());
        move || {
            let big_sent = outbox.write_or_push(Outgoing::Shared(big));
            // The writer started for the rest holds the role: this queues.
            let small_sent = outbox.write_or_push(Outgoing::Shared(small));
            (outbox, big_sent, small_sent)
        }
    });
    assert_eq!(big_sent, Ok(0), "the big frame was taken, not queued");
    assert_eq!(small_sent, Ok(1), "the small one was queued behind it");
    assert_eq!(threads.used(), 1, "a writer thread finishes the big frame");
    // A reply from the client's reader queues behind both as well.
    replies
        .push_now(Outgoing::Owned(b"\x8a\x00".to_vec()))
        .unwrap();
    let mut got = read_exactly(&mut client, big.len());
    assert!(
        got == *big,
        "the big frame arrives whole, nothing inside it"
    );
    got = read_exactly(&mut client, small.len() + 2);
    assert_eq!(got, b"\x81\x01!\x8a\x00", "then the rest, in order");
    drop(outbox);
}
