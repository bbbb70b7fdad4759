//! The write pump: one small thread per client that owns the sending half
//! of its socket while it runs. Everything that goes to a client after the
//! 101 response — chat frames from the broadcaster, pings, pongs and close
//! frames from the reader — is written by whoever holds the writer's role
//! (`Link::running`), one at a time, so frames never interleave.
//!
//! Each wake-up drains everything already queued and hands it to the kernel
//! in one `writev`, so a burst of a hundred small chat frames costs one
//! system call rather than a hundred.
//!
//! The thread exists only while there is a backlog. When no writer runs and
//! nothing is queued, the thread with a frame takes the role and sends it
//! itself without blocking (`Link::write_directly`): no thread to start or
//! wake. What the socket has no room for starts a writer thread, which
//! ends after `WRITER_LINGER` with nothing to do. An idle client therefore
//! costs one thread (its reader), not two: half the memory, and half the
//! kernel's per-thread mappings, which is what limits how many clients a
//! machine can hold (see `threads.rs`).

use crate::metrics::{DropReason, Metrics};
use crate::protocol::frame::encode_close;
use crate::room::ClientId;
use crate::threads::ThreadBudget;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, fence};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Broadcast frames a client may be behind before it counts as too slow to
/// keep up: it is then dropped with 1008 (gorilla/websocket's rule: a full
/// send buffer means the client goes). Frames are shared, so a full queue
/// costs 1024 pointers, not 1024 copies. The queue is a linked list of small
/// blocks that grows with use, so an idle client's queue costs almost
/// nothing (a preallocated ring of 1024 slots would cost 40 KB each).
pub const OUTBOX_CAPACITY: usize = 1024;
/// Replies (pongs, echoes, the close) a client's reader may have queued
/// before it waits for its writer: backpressure on that client alone.
pub const REPLY_BACKLOG: usize = 8;
/// ... or while this many bytes of replies are waiting (echoes can be 16 MiB
/// each; eight of them would be a lot of memory to hold for one client).
pub const REPLY_BACKLOG_BYTES: usize = 1024 * 1024;
/// The frames a writer gathers for one `writev` (Linux's IOV_MAX is 1024;
/// std hands it at most that many slices per call, and the loop goes on).
pub const MAX_BATCH: usize = 256;
/// How long a writer with nothing to write waits before its thread ends
/// (the next push starts a new one).
pub const WRITER_LINGER: Duration = Duration::from_secs(2);
/// How many times an idle writer yields before it parks.
const IDLE_YIELDS: usize = 8;
/// How often a blocked write wakes up to see whether its client was dropped.
const WRITE_POLL: Duration = Duration::from_millis(250);
/// Stack for writer threads: the pump keeps little on the stack, and only
/// touched pages cost memory; the reserve is for a panic's backtrace.
pub const WRITER_STACK: usize = 128 * 1024;

/// Frames the broadcaster had ready at once, in order, each with the raw
/// client that sent it (a raw client does not get its own lines back).
/// Shared by every recipient: one queue item and one wake-up per client
/// for the lot, not one per frame.
#[derive(Debug, Default)]
pub struct FrameBatch {
    pub frames: Vec<(Option<ClientId>, Arc<[u8]>)>,
}

impl FrameBatch {
    /// The frames for a recipient: all but those sent by `skip`.
    pub fn frames_for(&self, skip: Option<ClientId>) -> impl Iterator<Item = &[u8]> {
        self.frames
            .iter()
            .filter(move |(sender, _)| skip.is_none() || *sender != skip)
            .map(|(_, frame)| &frame[..])
    }
}

/// One item in a client's queue.
#[derive(Debug)]
pub enum Outgoing {
    /// A frame encoded once and shared by every recipient (`Arc` clone: no copy).
    Shared(Arc<[u8]>),
    /// Several shared frames, minus those sent by the given client.
    Batch(Arc<FrameBatch>, Option<ClientId>),
    /// Bytes for this client only: a pong, an echo, a welcome.
    Owned(Vec<u8>),
    /// A Close frame: written last, after which the writer half-closes TCP.
    Close(Vec<u8>),
}

impl Outgoing {
    /// The bytes of a single-frame item (a batch has none of its own).
    fn bytes(&self) -> &[u8] {
        match self {
            Outgoing::Shared(b) => b,
            Outgoing::Owned(b) | Outgoing::Close(b) => b,
            Outgoing::Batch(..) => &[],
        }
    }

    /// Calls `each` with every frame this item holds, in order.
    fn for_each_frame<'a>(&'a self, mut each: impl FnMut(&'a [u8])) {
        match self {
            Outgoing::Batch(batch, skip) => batch.frames_for(*skip).for_each(each),
            other => each(other.bytes()),
        }
    }

    /// How many frames this item holds.
    fn frame_count(&self) -> usize {
        let mut count = 0;
        self.for_each_frame(|_| count += 1);
        count
    }

    /// How many broadcast frames this item counts for in the queue's
    /// capacity (a batch counts whole, its sender's own frames included).
    fn broadcast_frames(&self) -> usize {
        match self {
            Outgoing::Shared(_) => 1,
            Outgoing::Batch(batch, _) => batch.frames.len(),
            Outgoing::Owned(_) | Outgoing::Close(_) => 0,
        }
    }

    /// The bytes this item holds for its client alone.
    fn owned_len(&self) -> usize {
        match self {
            Outgoing::Shared(_) | Outgoing::Batch(..) => 0,
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
#[derive(Debug)]
pub struct Link {
    /// Set (to a close code) when the broadcaster drops this client.
    kicked: AtomicU16,
    /// Bytes of per-client items (`Owned`, `Close`) queued and not written.
    owned_bytes: AtomicUsize,
    /// Broadcast frames ever queued (stored by the broadcaster alone) and
    /// written (stored by the writer alone): the difference is how far
    /// behind the client is, in frames, whatever the items hold. Each side
    /// only loads and stores: no read-modify-write per recipient.
    frames_queued: AtomicUsize,
    frames_done: AtomicUsize,
    /// The reader waits here for its writer to catch up.
    reader_waiting: AtomicBool,
    lock: Mutex<()>,
    drained: Condvar,
    /// The running writer thread, to unpark.
    writer: Mutex<Option<Thread>>,
    /// The writer found nothing to do and is parked, or about to park.
    sleeping: AtomicBool,
    /// The reader is done with this client: the writer stops once idle.
    reader_gone: AtomicBool,
    /// A writer thread runs (or is being started, or has stopped for good
    /// after a Close or an error). False only between writer threads.
    running: AtomicBool,
    /// What a writer thread needs, kept here while none runs.
    kit: Mutex<Option<Kit>>,
    /// Fixed at creation: what every writer thread of this client uses.
    spawner: Spawner,
}

/// The socket and the queue's receiving end: handed from one writer thread
/// to the next.
#[derive(Debug)]
struct Kit {
    stream: Arc<TcpStream>,
    rx: Receiver<Outgoing>,
}

/// Everything needed to start a writer thread, other than the kit.
#[derive(Debug)]
pub struct Spawner {
    pub ping_interval: Duration,
    pub metrics: Arc<Metrics>,
    pub threads: Arc<ThreadBudget>,
}

impl Link {
    /// Called after every push: starts a writer thread if none runs, or
    /// unparks it if it sleeps. When it runs and is awake (the common case
    /// under load) this is two loads.
    fn wake_writer(self: &Arc<Self>) {
        // Pairs with the fences in `Pump::wait` and `Pump::retire`: either
        // the writer sees the item, or we see that it sleeps or is gone.
        fence(SeqCst);
        if !self.running.load(SeqCst) {
            if self
                .running
                .compare_exchange(false, true, SeqCst, SeqCst)
                .is_ok()
            {
                self.start_writer();
            }
            return;
        }
        if self.sleeping.load(Relaxed) && self.sleeping.swap(false, SeqCst) {
            self.unpark();
        }
    }

    fn unpark(&self) {
        if let Some(writer) = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            writer.unpark();
        }
    }

    /// Starts a writer thread (`running` is already set). Without a thread
    /// place, or a thread, the client cannot be written to: it is closed.
    fn start_writer(self: &Arc<Self>) {
        let Some(kit) = self.kit.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return; // the previous writer has not handed the kit back yet
        };
        self.spawn_writer(kit, None);
    }

    /// Starts a writer thread with the kit in hand (`running` is set);
    /// `first` is written before anything queued.
    fn spawn_writer(self: &Arc<Self>, kit: Kit, first: Option<Outgoing>) {
        let Some(place) = self.spawner.threads.try_take() else {
            log::error!("Error: no thread place for a writer; closing its client");
            let _ = kit.stream.shutdown(Shutdown::Both);
            return;
        };
        let link = self.clone();
        let shutdown_handle = kit.stream.clone();
        let started = std::thread::Builder::new()
            .name("wschat-writer".into())
            .stack_size(WRITER_STACK)
            .spawn(move || {
                let _place = place; // given back when this thread ends
                *link.writer.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(std::thread::current());
                // A descriptor of its own while it runs: reads and writes
                // on one shared descriptor are measurably slower (64 KiB
                // echoes: 10 k/s against 14 k/s), and an idle client keeps
                // just the one.
                let own = kit.stream.try_clone().map(Arc::new);
                let mut pump = Pump {
                    stall_limit: 2 * link.spawner.ping_interval,
                    metrics: link.spawner.metrics.clone(),
                    stream: own.unwrap_or_else(|_| kit.stream.clone()),
                    shared: kit.stream,
                    link,
                };
                pump.run(kit.rx, first);
            });
        if let Err(e) = started {
            log::error!("Error: cannot start a writer thread: {e}; closing its client");
            let _ = shutdown_handle.shutdown(Shutdown::Both);
        }
    }

    /// Writes `item` from the calling thread, without ever blocking, when
    /// no writer thread runs and nothing is queued: the common case for a
    /// client that is not busy, and the cheapest one (no thread to wake,
    /// no context switch). The caller takes the writer's role for the
    /// moment, so frames still never interleave. What the socket has no
    /// room for goes to a new writer thread, ahead of anything queued.
    ///
    /// Gives the item back when the role is taken (a writer runs, or
    /// another thread writes directly) or something is queued: then it
    /// must be queued behind the rest.
    fn write_directly(
        self: &Arc<Self>,
        tx: &Sender<Outgoing>,
        item: Outgoing,
    ) -> Result<(), Outgoing> {
        // A Close ends the writer's work for good; the writer thread does
        // that. A batch is many frames: a writer's `writev` is for those.
        if item.is_close()
            || matches!(item, Outgoing::Batch(..))
            || self.running.load(Relaxed)
            || self.kicked.load(Relaxed) != 0
            || !tx.is_empty()
        {
            return Err(item);
        }
        if self
            .running
            .compare_exchange(false, true, SeqCst, SeqCst)
            .is_err()
        {
            return Err(item);
        }
        let kit = self.kit.lock().unwrap_or_else(|e| e.into_inner()).take();
        let kit = match kit {
            // Pushed while we took the role: that goes first.
            Some(kit) if !kit.rx.is_empty() => {
                self.hand_back(kit, tx);
                return Err(item);
            }
            Some(kit) => kit,
            None => {
                self.running.store(false, SeqCst);
                return Err(item);
            }
        };
        let bytes = item.bytes();
        let mut written = 0;
        let error = loop {
            match send_without_blocking(&kit.stream, &bytes[written..]) {
                Ok(n) if n > 0 => {
                    written += n;
                    if written == bytes.len() {
                        break None;
                    }
                }
                Ok(_) => break None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                Err(e) => break Some(e),
            }
        };
        if error.is_some() {
            // The connection is broken, as a writer would find it: the kit
            // goes (later pushes see `Gone`) and the reader sees the end.
            let _ = kit.stream.shutdown(Shutdown::Both);
            return Ok(());
        }
        if written == bytes.len() {
            self.spawner.metrics.messages_out.fetch_add(1, Relaxed);
            let total = bytes.len() as u64;
            self.spawner.metrics.bytes_out.fetch_add(total, Relaxed);
            self.hand_back(kit, tx);
            return Ok(());
        }
        // The socket is full: the rest must follow before anything else.
        let rest = match item {
            _ if written == 0 => item,
            Outgoing::Owned(mut v) => {
                v.drain(..written);
                Outgoing::Owned(v)
            }
            other => Outgoing::Owned(other.bytes()[written..].to_vec()),
        };
        self.owned_bytes.fetch_add(rest.owned_len(), Relaxed);
        self.spawn_writer(kit, Some(rest));
        Ok(())
    }

    /// Gives the writer's role back after a direct write; whatever was
    /// pushed meanwhile (its pusher saw the role taken) needs a writer.
    fn hand_back(self: &Arc<Self>, kit: Kit, tx: &Sender<Outgoing>) {
        *self.kit.lock().unwrap_or_else(|e| e.into_inner()) = Some(kit);
        self.running.store(false, SeqCst);
        fence(SeqCst);
        if !tx.is_empty() {
            self.wake_writer();
        }
    }
}

/// One `send` that never blocks, whatever the socket's mode. Toggling the
/// socket to non-blocking instead would not do: the flag belongs to the
/// open file, which the reader shares, and a reader that found it set
/// would take the `WouldBlock` for a silent ping interval.
#[cfg(target_os = "linux")]
fn send_without_blocking(stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    const MSG_DONTWAIT: i32 = 0x40;
    const MSG_NOSIGNAL: i32 = 0x4000;
    unsafe extern "C" {
        fn send(fd: i32, buf: *const u8, len: usize, flags: i32) -> isize;
    }
    // SAFETY: `buf` is valid for `len` bytes; the descriptor is owned by
    // `stream`, which outlives the call.
    let n = unsafe {
        send(
            stream.as_raw_fd(),
            buf.as_ptr(),
            buf.len(),
            MSG_DONTWAIT | MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Elsewhere, no direct writes: everything goes through a writer thread.
#[cfg(not(target_os = "linux"))]
fn send_without_blocking(_: &TcpStream, _: &[u8]) -> io::Result<usize> {
    Err(io::ErrorKind::WouldBlock.into())
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
    /// can ever stall it. Returns how many broadcast frames the client is
    /// behind, this one included. Only the broadcaster may call it (it
    /// alone stores `frames_queued`).
    pub fn try_push(&self, item: Outgoing) -> Result<usize, PushError> {
        let link = &self.link;
        let frames = item.broadcast_frames();
        let queued = link.frames_queued.load(Relaxed);
        let behind = queued.wrapping_sub(link.frames_done.load(Relaxed)) + frames;
        if behind > OUTBOX_CAPACITY || self.tx.len() >= OUTBOX_CAPACITY {
            return Err(PushError::Full);
        }
        let bytes = item.owned_len();
        if bytes > 0 {
            link.owned_bytes.fetch_add(bytes, Relaxed);
        }
        // Counted before the writer can see the item: `frames_done` never
        // passes `frames_queued`.
        if frames > 0 {
            link.frames_queued.store(queued + frames, Relaxed);
        }
        match self.tx.send(item) {
            Ok(()) => {
                link.wake_writer();
                Ok(behind)
            }
            Err(_) => Err(PushError::Gone),
        }
    }

    /// Writes `item` at once from the calling thread if this client's
    /// writer is idle and its socket has room (see `Link::write_directly`);
    /// otherwise queues it like `try_push`. For the broadcaster when it has
    /// no backlog: waking a thousand writer threads for one message costs
    /// more than a thousand non-blocking `send`s.
    pub fn write_or_push(&self, item: Outgoing) -> Result<usize, PushError> {
        match self.link.write_directly(&self.tx, item) {
            Ok(()) => Ok(0),
            Err(item) => self.try_push(item),
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

    /// Writes `first` (the 101 response) from the calling thread before
    /// anything else can be written: the writer's role is held while
    /// `meanwhile` runs (the chat's Join) and while writing, so whatever is
    /// queued in the meantime (a welcome) follows it.
    pub fn send_first(&self, first: &[u8], meanwhile: impl FnOnce()) -> io::Result<()> {
        let link = &self.link;
        if link
            .running
            .compare_exchange(false, true, SeqCst, SeqCst)
            .is_err()
        {
            return Err(io::Error::other("a writer already runs"));
        }
        meanwhile();
        let kit = link.kit.lock().unwrap_or_else(|e| e.into_inner()).take();
        let result = match &kit {
            Some(kit) => (&*kit.stream).write_all(first),
            None => Err(io::Error::other("no socket")),
        };
        *link.kit.lock().unwrap_or_else(|e| e.into_inner()) = kit;
        link.running.store(false, SeqCst);
        if !self.tx.is_empty() {
            link.wake_writer();
        }
        result
    }

    fn backlogged(&self) -> bool {
        let len = self.tx.len();
        len > REPLY_BACKLOG
            || (len > 1 && self.link.owned_bytes.load(Relaxed) > REPLY_BACKLOG_BYTES)
    }

    /// Queues, then waits while this client's queue is long: an echo or a
    /// pong may wait for this client's socket, and no one else's.
    /// An idle writer's work is done directly (`Link::write_directly`).
    pub fn push(&self, item: Outgoing) -> Result<(), PushError> {
        let item = match self.link.write_directly(&self.tx, item) {
            Ok(()) => return Ok(()),
            Err(item) => item,
        };
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
        self.link.unpark();
    }
}

/// Creates a client's queue: the broadcaster's end and the reader's end.
/// The socket (`stream`, shared with the reader: one descriptor per
/// client) is written directly while the client is idle; a writer thread
/// starts for a backlog.
pub fn queues(stream: Arc<TcpStream>, spawner: Spawner) -> (Outbox, Replies) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let link = Arc::new(Link {
        kicked: AtomicU16::new(0),
        owned_bytes: AtomicUsize::new(0),
        frames_queued: AtomicUsize::new(0),
        frames_done: AtomicUsize::new(0),
        reader_waiting: AtomicBool::new(false),
        lock: Mutex::new(()),
        drained: Condvar::new(),
        writer: Mutex::new(None),
        sleeping: AtomicBool::new(false),
        reader_gone: AtomicBool::new(false),
        running: AtomicBool::new(false),
        kit: Mutex::new(Some(Kit { stream, rx })),
        spawner,
    });
    (
        Outbox {
            tx: tx.clone(),
            link: link.clone(),
        },
        Replies { tx, link },
    )
}

struct Pump {
    /// The socket this writer writes on (its own descriptor if it could
    /// get one).
    stream: Arc<TcpStream>,
    /// The client's shared handle, handed back when this writer retires.
    shared: Arc<TcpStream>,
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
    fn run(&mut self, mut rx: Receiver<Outgoing>, first: Option<Outgoing>) {
        let _ = self.stream.set_write_timeout(Some(WRITE_POLL));
        let mut batch: Vec<Outgoing> = first.into_iter().collect();
        loop {
            if batch.is_empty() {
                if batch.capacity() > MAX_BATCH / 4 {
                    batch.shrink_to(4); // give memory back after a burst
                }
                match self.wait(&rx) {
                    Some(item) => batch.push(item),
                    None if self.link.reader_gone.load(SeqCst) && rx.is_empty() => break,
                    None if self.kicked().is_some() => break,
                    None => match self.retire(rx) {
                        // Something arrived as we stopped: carry on.
                        Some(kept) => {
                            rx = kept;
                            continue;
                        }
                        None => return,
                    },
                }
            }
            // Take whatever else is already waiting, up to a Close.
            let mut frames: usize = batch.iter().map(Outgoing::frame_count).sum();
            while frames < MAX_BATCH && !batch.last().is_some_and(Outgoing::is_close) {
                match rx.try_recv() {
                    Ok(item) => {
                        frames += item.frame_count();
                        batch.push(item);
                    }
                    Err(_) => break,
                }
            }
            let result = self.write_batch(&batch);
            let owned: usize = batch.iter().map(Outgoing::owned_len).sum();
            self.link.owned_bytes.fetch_sub(owned, Relaxed);
            let frames: usize = batch.iter().map(Outgoing::broadcast_frames).sum();
            if frames > 0 {
                // This thread holds the writer's role: no one else stores here.
                let done = self.link.frames_done.load(Relaxed);
                self.link.frames_done.store(done + frames, Relaxed);
            }
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
            let _ = (&*self.stream).write(&frame);
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Waits for the next item, for `WRITER_LINGER` at most.
    ///
    /// Not a channel's blocking receive: that spins, then yields, before
    /// it parks, and a thousand writers woken once per message spend their
    /// time in it. Here a writer yields a few times (`IDLE_YIELDS`), so that
    /// under load the broadcaster gets the CPU and queues more before we
    /// park (a writer that parks at once must be woken for every frame, and
    /// each wake-up preempts the broadcaster: docs/09-performance.md has
    /// the figures), then parks; `Link::wake_writer` unparks it.
    fn wait(&self, rx: &Receiver<Outgoing>) -> Option<Outgoing> {
        for _ in 0..IDLE_YIELDS {
            std::thread::yield_now();
            if let Ok(item) = rx.try_recv() {
                return Some(item);
            }
        }
        let deadline = Instant::now() + WRITER_LINGER;
        loop {
            self.link.sleeping.store(true, SeqCst);
            fence(SeqCst);
            let item = match rx.try_recv() {
                Ok(item) => Some(item),
                Err(TryRecvError::Disconnected) => None,
                Err(TryRecvError::Empty) => {
                    if !self.link.reader_gone.load(SeqCst) && self.kicked().is_none() {
                        std::thread::park_timeout(
                            deadline.saturating_duration_since(Instant::now()),
                        );
                    }
                    rx.try_recv().ok()
                }
            };
            self.link.sleeping.store(false, SeqCst);
            // A spurious wake-up, before the linger is over: wait on.
            if item.is_none()
                && Instant::now() < deadline
                && !self.link.reader_gone.load(SeqCst)
                && self.kicked().is_none()
            {
                continue;
            }
            return item;
        }
    }

    /// Ends this writer thread after a quiet spell: hands the socket and
    /// the queue back to the link, so that the next push starts a new
    /// thread. If a push slipped in meanwhile, and no new writer took over,
    /// returns the queue to carry on with.
    fn retire(&mut self, rx: Receiver<Outgoing>) -> Option<Receiver<Outgoing>> {
        let stream = self.shared.clone();
        *self.link.writer.lock().unwrap_or_else(|e| e.into_inner()) = None;
        *self.link.kit.lock().unwrap_or_else(|e| e.into_inner()) = Some(Kit { stream, rx });
        self.link.running.store(false, SeqCst);
        fence(SeqCst);
        // Pairs with the fence in `Link::wake_writer`: a push that came
        // before our `running = false` was not seen by its pusher as
        // needing a writer, so we must take it.
        let pending = self
            .link
            .kit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|kit| !kit.rx.is_empty());
        if pending
            && self
                .link
                .running
                .compare_exchange(false, true, SeqCst, SeqCst)
                .is_ok()
        {
            let kit = self
                .link
                .kit
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()?;
            *self.link.writer.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(std::thread::current());
            return Some(kit.rx);
        }
        None
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
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(batch.len());
        let mut total = 0;
        for item in batch {
            item.for_each_frame(|frame| {
                total += frame.len();
                slices.push(IoSlice::new(frame));
            });
        }
        let frames = slices.len();
        let mut remaining = &mut slices[..];
        let mut progress = Instant::now();
        while !remaining.is_empty() {
            match (&*self.stream).write_vectored(remaining) {
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
        self.metrics.messages_out.fetch_add(frames as u64, Relaxed);
        self.metrics.bytes_out.fetch_add(total as u64, Relaxed);
        if batch.last().is_some_and(Outgoing::is_close) {
            Ok(Written::Closed)
        } else {
            Ok(Written::All)
        }
    }
}
