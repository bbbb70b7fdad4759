//! The write pump: one small thread per client that owns the sending half
//! of its socket. Everything that goes to a client — the 101 response, chat
//! frames from the broadcaster, pongs and close frames from the reader,
//! pings on a timer — passes through its queue, so frames never interleave.
//!
//! Each wake-up drains everything already queued and hands it to the kernel
//! in one `writev`, so a burst of a hundred small chat frames costs one
//! system call rather than a hundred.

use crate::metrics::Metrics;
use crate::protocol::frame::{OpCode, encode_frame};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Frames a client may have queued before it counts as too slow to keep
/// up: it is then dropped with 1008 (gorilla/websocket's rule: a full send
/// buffer means the client goes). Frames are shared, so a full queue costs
/// 1024 pointers, not 1024 copies.
pub const OUTBOX_CAPACITY: usize = 1024;
/// The most frames handed to one `writev` (Linux's IOV_MAX is 1024).
pub const MAX_BATCH: usize = 64;
/// How often a blocked write wakes up to see whether its client was dropped.
const WRITE_POLL: Duration = Duration::from_millis(250);
/// Stack for writer threads: the pump keeps nothing large on the stack.
pub const WRITER_STACK: usize = 32 * 1024;

/// One item in a client's queue.
#[derive(Debug)]
pub enum Outgoing {
    /// A frame encoded once and shared by every recipient (`Arc` clone: no copy).
    Shared(Arc<[u8]>),
    /// Bytes for this client only: the 101 response, a pong, an echo.
    Owned(Vec<u8>),
    /// A Close frame: written last, after which the writer half-closes TCP.
    Close(Vec<u8>),
}

impl Outgoing {
    fn bytes(&self) -> &[u8] {
        match self {
            Outgoing::Shared(b) => b,
            Outgoing::Owned(b) | Outgoing::Close(b) => b,
        }
    }
}

/// What the broadcaster and the reader hold to reach a client's writer.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: Sender<Outgoing>,
    link: Arc<Link>,
}

/// State shared between a client's threads and the broadcaster.
#[derive(Debug, Default)]
pub struct Link {
    /// Set (to a close code) when the broadcaster drops this client.
    kicked: AtomicU16,
}

/// Why a `try_push` failed.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    /// The queue is full: the client does not keep up.
    Full,
    /// The writer has stopped: the client is gone.
    Gone,
}

impl Outbox {
    /// Queues without waiting: what the broadcaster uses, so that no client
    /// can ever stall it.
    pub fn try_push(&self, item: Outgoing) -> Result<usize, PushError> {
        match self.tx.try_send(item) {
            Ok(()) => Ok(self.tx.len()),
            Err(TrySendError::Full(_)) => Err(PushError::Full),
            Err(TrySendError::Disconnected(_)) => Err(PushError::Gone),
        }
    }

    /// Queues, waiting for room: what a client's own reader uses (an echo
    /// or a pong may wait for that client's socket, and no one else's).
    pub fn push(&self, item: Outgoing) -> Result<(), PushError> {
        self.tx.send(item).map_err(|_| PushError::Gone)
    }

    /// Marks the client as dropped by the server with `code`; the writer
    /// stops at its next chance and sends that close code if it can.
    pub fn kick(&self, code: u16) {
        self.link.kicked.store(code, Relaxed);
    }

    pub fn len(&self) -> usize {
        self.tx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }
}

/// Creates a client's queue; the receiver goes to [`spawn_writer`].
pub fn outbox() -> (Outbox, Receiver<Outgoing>) {
    let (tx, rx) = crossbeam_channel::bounded(OUTBOX_CAPACITY);
    (
        Outbox {
            tx,
            link: Arc::new(Link::default()),
        },
        rx,
    )
}

/// Starts the write pump for `stream`.
pub fn spawn_writer(
    stream: TcpStream,
    rx: Receiver<Outgoing>,
    outbox: &Outbox,
    ping_interval: Duration,
    metrics: Arc<Metrics>,
) -> io::Result<()> {
    let link = outbox.link.clone();
    std::thread::Builder::new()
        .name("wschat-writer".into())
        .stack_size(WRITER_STACK)
        .spawn(move || {
            let mut pump = Pump {
                stream,
                link,
                metrics,
            };
            pump.run(rx, ping_interval);
        })
        .map(|_| ())
}

struct Pump {
    stream: TcpStream,
    link: Arc<Link>,
    metrics: Arc<Metrics>,
}

/// How a batch write ended.
enum Written {
    /// Everything was written; keep going.
    All,
    /// A Close frame was written: nothing may follow it (§5.5.1).
    Closed,
    /// The client was dropped while we waited on its socket.
    Kicked,
}

impl Pump {
    fn run(&mut self, rx: Receiver<Outgoing>, ping_interval: Duration) {
        let _ = self.stream.set_write_timeout(Some(WRITE_POLL));
        let mut batch: Vec<Outgoing> = Vec::new();
        let mut next_ping = Instant::now() + ping_interval;
        loop {
            // Pings go out on a fixed schedule, busy or not: the reader
            // drops clients that stay silent, so they must be asked.
            let first = match rx.recv_deadline(next_ping) {
                Ok(item) => Some(item),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let now = Instant::now();
            if now >= next_ping {
                batch.push(Outgoing::Owned(encode_frame(OpCode::Ping, b"", None)));
                next_ping = now + ping_interval;
            }
            batch.extend(first);
            // Take whatever else is already waiting, up to a Close.
            while batch.len() < MAX_BATCH && !matches!(batch.last(), Some(Outgoing::Close(_))) {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            let result = self.write_batch(&batch);
            batch.clear();
            if batch.capacity() > MAX_BATCH {
                batch.shrink_to(MAX_BATCH);
            }
            match result {
                Ok(Written::All) => {}
                Ok(Written::Closed) => {
                    // Our Close is out: half-close, and let the reader wait
                    // for the client's side (§7.1.1: the server closes TCP).
                    let _ = self.stream.shutdown(Shutdown::Write);
                    return;
                }
                Ok(Written::Kicked) => {
                    // Stopped mid-frame: a Close now would corrupt the stream.
                    let _ = self.stream.shutdown(Shutdown::Both);
                    return;
                }
                Err(_) => break,
            }
            if self.kicked().is_some() {
                break;
            }
        }
        if let Some(code) = self.kicked() {
            // Best effort: tell a dropped client why, if its socket has room.
            let frame = crate::protocol::frame::encode_close(code.into(), "slow consumer", None);
            let _ = self.stream.set_nonblocking(true);
            let _ = self.stream.write(&frame);
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn kicked(&self) -> Option<u16> {
        match self.link.kicked.load(Relaxed) {
            0 => None,
            code => Some(code),
        }
    }

    /// Writes the batch with as few `writev` calls as the kernel allows.
    fn write_batch(&mut self, batch: &[Outgoing]) -> io::Result<Written> {
        let end = batch
            .iter()
            .position(|item| matches!(item, Outgoing::Close(_)))
            .map_or(batch.len(), |i| i + 1);
        let batch = &batch[..end];
        let mut slices = [IoSlice::new(&[]); MAX_BATCH];
        let mut total = 0;
        for (slot, item) in slices.iter_mut().zip(batch) {
            *slot = IoSlice::new(item.bytes());
            total += item.bytes().len();
        }
        let mut remaining = &mut slices[..batch.len()];
        while !remaining.is_empty() {
            match self.stream.write_vectored(remaining) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut remaining, n),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if self.kicked().is_some() {
                        return Ok(Written::Kicked);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.metrics
            .messages_out
            .fetch_add(batch.len() as u64, Relaxed);
        self.metrics.bytes_out.fetch_add(total as u64, Relaxed);
        if matches!(batch.last(), Some(Outgoing::Close(_))) {
            Ok(Written::Closed)
        } else {
            Ok(Written::All)
        }
    }
}
