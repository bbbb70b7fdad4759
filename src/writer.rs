//! The write pump: one small thread per client that owns the sending half
//! of its socket. Everything that goes to a client — the 101 response, chat
//! frames from the broadcaster, pongs and close frames from the reader,
//! pings on a timer — passes through its queue, so frames never interleave.
//!
//! Each wake-up drains everything already queued and hands it to the kernel
//! in one `writev`, so a burst of a hundred small chat frames costs one
//! system call rather than a hundred.

use crate::metrics::{DropReason, Metrics};
use crate::protocol::frame::{OpCode, encode_close, encode_frame};
use crate::threads::ThreadPlace;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, fence};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Frames a client may have queued before it counts as too slow to keep
/// up: it is then dropped with 1008 (gorilla/websocket's rule: a full send
/// buffer means the client goes). Frames are shared, so a full queue costs
/// 1024 pointers, not 1024 copies. The queue is a linked list of small
/// blocks that grows with use, so an idle client's queue costs almost
/// nothing (a preallocated ring of 1024 slots would cost 40 KB each).
pub const OUTBOX_CAPACITY: usize = 1024;
/// Replies (pongs, echoes, the close) a client's reader may have queued
/// before it waits for its writer: backpressure on that client alone.
pub const REPLY_BACKLOG: usize = 8;
/// ... or while this many bytes of replies are waiting (echoes can be 16 MiB
/// each; eight of them would be a lot of memory to hold for one client).
pub const REPLY_BACKLOG_BYTES: usize = 1024 * 1024;
/// The most frames handed to one `writev` (Linux's IOV_MAX is 1024).
pub const MAX_BATCH: usize = 256;
/// How many times an idle writer yields before it parks.
const IDLE_YIELDS: usize = 8;
/// How often a blocked write wakes up to see whether its client was dropped.
const WRITE_POLL: Duration = Duration::from_millis(250);
/// Stack for writer threads: the pump keeps little on the stack, and only
/// touched pages cost memory; the reserve is for a panic's backtrace.
pub const WRITER_STACK: usize = 128 * 1024;

/// One item in a client's queue.
#[derive(Debug)]
pub enum Outgoing {
    /// A frame encoded once and shared by every recipient (`Arc` clone: no copy).
    Shared(Arc<[u8]>),
    /// Bytes for this client only: a pong, an echo, a welcome.
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

    /// The bytes this item holds for its client alone.
    fn owned_len(&self) -> usize {
        match self {
            Outgoing::Shared(_) => 0,
            Outgoing::Owned(b) | Outgoing::Close(b) => b.len(),
        }
    }

    fn is_close(&self) -> bool {
        matches!(self, Outgoing::Close(_))
    }
}

/// What the broadcaster holds to reach a client's writer.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: Sender<Outgoing>,
    link: Arc<Link>,
}

/// What a client's reader holds to reach its writer: the same queue, used
/// with backpressure instead of a capacity check.
#[derive(Debug)]
pub struct Replies {
    tx: Sender<Outgoing>,
    link: Arc<Link>,
}

/// State shared between a client's threads and the broadcaster.
#[derive(Debug, Default)]
pub struct Link {
    /// Set (to a close code) when the broadcaster drops this client.
    kicked: AtomicU16,
    /// Bytes of per-client items (`Owned`, `Close`) queued and not written.
    owned_bytes: AtomicUsize,
    /// The reader waits here for its writer to catch up.
    reader_waiting: AtomicBool,
    lock: Mutex<()>,
    drained: Condvar,
    /// The writer thread, to unpark; set when it starts.
    writer: OnceLock<Thread>,
    /// The writer found nothing to do and is parked, or about to park.
    sleeping: AtomicBool,
    /// The reader is done with this client: the writer stops once idle.
    reader_gone: AtomicBool,
}

impl Link {
    /// Called after every push: unparks the writer if it sleeps. When it
    /// does not (the common case under load) this is one load.
    fn wake_writer(&self) {
        // Pairs with the fence in `Pump::wait`: either the writer sees the
        // item, or we see that it sleeps.
        fence(SeqCst);
        if self.sleeping.load(Relaxed)
            && self.sleeping.swap(false, SeqCst)
            && let Some(writer) = self.writer.get()
        {
            writer.unpark();
        }
    }
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
    /// can ever stall it. Returns the queue's depth.
    pub fn try_push(&self, item: Outgoing) -> Result<usize, PushError> {
        let depth = self.tx.len();
        if depth >= OUTBOX_CAPACITY {
            return Err(PushError::Full);
        }
        let bytes = item.owned_len();
        if bytes > 0 {
            self.link.owned_bytes.fetch_add(bytes, Relaxed);
        }
        match self.tx.send(item) {
            Ok(()) => {
                self.link.wake_writer();
                Ok(depth + 1)
            }
            Err(_) => Err(PushError::Gone),
        }
    }

    /// Marks the client as dropped for being too slow; the writer stops at
    /// its next chance and sends a Close with `code` if its socket has room.
    pub fn kick(&self, code: u16) {
        self.link.kicked.store(code, SeqCst);
        self.link.wake_writer();
    }

    pub fn len(&self) -> usize {
        self.tx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }
}

impl Replies {
    /// Queues without waiting (for the last words of a failing thread).
    pub fn push_now(&self, item: Outgoing) -> Result<(), PushError> {
        let bytes = item.owned_len();
        self.link.owned_bytes.fetch_add(bytes, Relaxed);
        self.tx.send(item).map_err(|_| {
            self.link.owned_bytes.fetch_sub(bytes, Relaxed);
            PushError::Gone
        })?;
        self.link.wake_writer();
        Ok(())
    }

    fn backlogged(&self) -> bool {
        let len = self.tx.len();
        len > REPLY_BACKLOG
            || (len > 1 && self.link.owned_bytes.load(Relaxed) > REPLY_BACKLOG_BYTES)
    }

    /// Queues, then waits while this client's queue is long: an echo or a
    /// pong may wait for this client's socket, and no one else's.
    pub fn push(&self, item: Outgoing) -> Result<(), PushError> {
        self.push_now(item)?;
        while self.backlogged() && self.link.kicked.load(Relaxed) == 0 {
            let guard = self.link.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.link.reader_waiting.store(true, Relaxed);
            if !self.backlogged() {
                break;
            }
            // The timeout is a safety net; the writer wakes us when it drains.
            let _ = self
                .link
                .drained
                .wait_timeout(guard, Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        self.link.reader_gone.store(true, SeqCst);
        fence(SeqCst);
        if let Some(writer) = self.link.writer.get() {
            writer.unpark();
        }
    }
}

/// Creates a client's queue: the broadcaster's end, the reader's end, and
/// the writer's.
pub fn queues() -> (Outbox, Replies, Queue) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let link = Arc::new(Link::default());
    (
        Outbox {
            tx: tx.clone(),
            link: link.clone(),
        },
        Replies {
            tx,
            link: link.clone(),
        },
        Queue { rx, link },
    )
}

/// The writer's end of a client's queue.
#[derive(Debug)]
pub struct Queue {
    rx: Receiver<Outgoing>,
    link: Arc<Link>,
}

/// Starts the write pump for `stream`; `first` (the 101 response) is
/// written before anything else.
pub fn spawn_writer(
    stream: TcpStream,
    first: Vec<u8>,
    queue: Queue,
    ping_interval: Duration,
    metrics: Arc<Metrics>,
    place: ThreadPlace,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("wschat-writer".into())
        .stack_size(WRITER_STACK)
        .spawn(move || {
            let _place = place; // given back when this thread ends
            let mut pump = Pump {
                stream,
                link: queue.link,
                metrics,
                stall_limit: 2 * ping_interval,
            };
            let _ = pump.link.writer.set(std::thread::current());
            pump.run(first, queue.rx, ping_interval);
        })
        .map(|_| ())
}

struct Pump {
    stream: TcpStream,
    link: Arc<Link>,
    metrics: Arc<Metrics>,
    /// A client whose socket accepts nothing for this long has stopped
    /// reading: it is dropped, whether or not the broadcaster noticed (an
    /// echo client has no broadcaster to notice it).
    stall_limit: Duration,
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
    fn run(&mut self, first: Vec<u8>, rx: Receiver<Outgoing>, ping_interval: Duration) {
        let _ = self.stream.set_write_timeout(Some(WRITE_POLL));
        let mut batch: Vec<Outgoing> = vec![Outgoing::Owned(first)];
        let mut next_ping = Instant::now() + ping_interval;
        loop {
            if batch.is_empty() {
                if batch.capacity() > MAX_BATCH / 4 {
                    batch.shrink_to(4); // give memory back after a burst
                }
                match self.wait(&rx, next_ping) {
                    Some(item) => batch.push(item),
                    None if self.link.reader_gone.load(SeqCst) && rx.is_empty() => break,
                    None => {}
                }
            }
            // Take whatever else is already waiting, up to a Close.
            while batch.len() < MAX_BATCH && !batch.last().is_some_and(Outgoing::is_close) {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            // Pings go out on a fixed schedule, busy or not: the reader
            // drops clients that stay silent, so they must be asked.
            let now = Instant::now();
            if now >= next_ping {
                batch.insert(0, Outgoing::Owned(encode_frame(OpCode::Ping, b"", None)));
                next_ping = now + ping_interval;
            }
            if batch.is_empty() {
                continue;
            }
            let result = self.write_batch(&batch);
            let owned: usize = batch.iter().map(Outgoing::owned_len).sum();
            self.link.owned_bytes.fetch_sub(owned, Relaxed);
            batch.clear();
            if self.link.reader_waiting.load(Relaxed) {
                let _guard = self.link.lock.lock().unwrap_or_else(|e| e.into_inner());
                self.link.reader_waiting.store(false, Relaxed);
                self.link.drained.notify_all();
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
            let frame = encode_close(code.into(), "slow consumer", None);
            let _ = self.stream.set_nonblocking(true);
            let _ = self.stream.write(&frame);
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Waits for the next item, until `deadline` (the next ping) at most.
    ///
    /// Not a channel's blocking receive: that spins, then yields, before
    /// it parks, and a thousand writers woken once per message spend their
    /// time in it. Here a writer yields a few times (`IDLE_YIELDS`), so that
    /// under load the broadcaster gets the CPU and queues more before we
    /// park (a writer that parks at once must be woken for every frame, and
    /// each wake-up preempts the broadcaster: docs/09-performance.md has
    /// the figures), then parks; `Link::wake_writer` unparks it.
    fn wait(&self, rx: &Receiver<Outgoing>, deadline: Instant) -> Option<Outgoing> {
        for _ in 0..IDLE_YIELDS {
            std::thread::yield_now();
            if let Ok(item) = rx.try_recv() {
                return Some(item);
            }
        }
        self.link.sleeping.store(true, SeqCst);
        fence(SeqCst);
        let item = match rx.try_recv() {
            Ok(item) => Some(item),
            Err(TryRecvError::Disconnected) => None,
            Err(TryRecvError::Empty) => {
                if !self.link.reader_gone.load(SeqCst) && self.kicked().is_none() {
                    std::thread::park_timeout(deadline.saturating_duration_since(Instant::now()));
                }
                rx.try_recv().ok()
            }
        };
        self.link.sleeping.store(false, SeqCst);
        item
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
            .position(Outgoing::is_close)
            .map_or(batch.len(), |i| i + 1);
        let batch = &batch[..end];
        // On the heap: a writer's stack stays at its idle size.
        let mut slices: Vec<IoSlice<'_>> = batch
            .iter()
            .map(|item| IoSlice::new(item.bytes()))
            .collect();
        let total: usize = batch.iter().map(|item| item.bytes().len()).sum();
        let mut remaining = &mut slices[..];
        let mut progress = Instant::now();
        while !remaining.is_empty() {
            match self.stream.write_vectored(remaining) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    IoSlice::advance_slices(&mut remaining, n);
                    progress = Instant::now();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if self.kicked().is_some() {
                        return Ok(Written::Kicked);
                    }
                    if progress.elapsed() >= self.stall_limit {
                        log::warn!(
                            "Dropping a client that stopped reading: nothing written for {:?}",
                            self.stall_limit
                        );
                        self.metrics.client_dropped(DropReason::SlowConsumer);
                        return Err(io::ErrorKind::TimedOut.into());
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
        if batch.last().is_some_and(Outgoing::is_close) {
            Ok(Written::Closed)
        } else {
            Ok(Written::All)
        }
    }
}
