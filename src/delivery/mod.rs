//! Delivery: getting bytes onto clients' sockets without letting any client
//! slow down the broadcaster or anyone else.
//!
//! A fixed set of delivery threads (one per core by default) each own a
//! share of the clients. Every thread gets the same ordered stream of
//! broadcast batches from the broadcaster; each batch is kept once per
//! thread in a log, and a client is only a position in that log plus its
//! own few private items (the 101, a welcome, a pong, a Close). A turn of
//! a delivery thread takes every command waiting, then gives each client
//! with something to send one vectored, non-blocking `sendmsg` of all of
//! it. A client whose socket is full waits in poll(2), holding no thread:
//!
//! ```text
//!  broadcaster ──Broadcast(Arc<Batch>)──▶ delivery thread 1: log [b7 b8 b9]
//!              └─────────────────────────▶ delivery thread 2: log [b7 b8 b9]
//!  reader (pong, echo, Close) ──Send──▶ its client's delivery thread
//!
//!  delivery thread, one turn:  take commands ─▶ for each client with bytes
//!                              due: one sendmsg(MSG_DONTWAIT) of them all
//!                              ─▶ poll(bell + full sockets)
//! ```
//!
//! Only a client's delivery thread ever writes to its socket after the
//! handshake's request is read, the 101 included: there is no hand-over.
//! Delivery knows bytes: a frame's *variant* (which clients want it) and
//! *origin* (a client that must not get it back), never chat.
//!
//! A client is dropped (1008) when it is far behind (`--max-lag-bytes`) or
//! has had bytes waiting with no progress for the stall limit; a client
//! that stalls for a moment keeps every message. The first rule bounds the
//! memory a delivery thread's log holds for its slowest client.

mod doorbell;
mod shard;
pub(crate) mod sys;

use crate::metrics::Metrics;
use doorbell::Doorbell;
use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

/// A client's number, as delivery sees it: an opaque tag.
pub type Tag = u64;

/// Which broadcast frames a client receives (the broadcaster decides what
/// each number means).
pub type Variant = u8;

/// Commands waiting for a delivery thread. A full queue makes the sender
/// wait for the thread's CPU time, never for a client.
pub const COMMAND_QUEUE: usize = 16 * 1024;
/// Bytes of replies (pongs, echoes) a reader may have waiting before it
/// waits itself: backpressure on that client alone.
pub const REPLY_BACKLOG_BYTES: usize = 1024 * 1024;
/// How long shutting down waits for Close frames to be written.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);
/// Stack for delivery threads (nothing large lives on it).
const DELIVERY_STACK: usize = 256 * 1024;

/// One frame of a batch.
#[derive(Debug)]
pub struct Frame {
    pub variant: Variant,
    /// Not sent to this client (a raw chat line's sender).
    pub origin: Option<Tag>,
    pub bytes: Box<[u8]>,
}

/// Frames the broadcaster had ready at once, in order; shared by every
/// delivery thread and read by every client (no copy per recipient).
#[derive(Debug, Default)]
pub struct Batch {
    frames: Vec<Frame>,
    bytes: usize,
}

impl Batch {
    pub fn push(&mut self, variant: Variant, origin: Option<Tag>, bytes: Box<[u8]>) {
        self.bytes += bytes.len();
        self.frames.push(Frame {
            variant,
            origin,
            bytes,
        });
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The frames for a client of `variant` and `tag`.
    pub fn frames_for(&self, variant: Variant, tag: Tag) -> impl Iterator<Item = &[u8]> {
        self.frames
            .iter()
            .filter(move |f| f.variant == variant && f.origin != Some(tag))
            .map(|f| &*f.bytes)
    }
}

/// Bytes for one client: its own, or shared with others (a welcome).
#[derive(Debug, Clone)]
pub enum Bytes {
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Shared(a) => a,
        }
    }
}

/// What a client's reader and its delivery thread share.
#[derive(Debug)]
pub struct Link {
    /// Reply bytes queued by the reader and not yet written.
    reply_bytes: AtomicUsize,
    /// Nothing more will be written: the Close is out, or the client was
    /// dropped or failed. A reader waiting on its replies stops waiting.
    closed: AtomicBool,
    reader: Thread,
}

impl Link {
    fn done(&self) {
        self.closed.store(true, Relaxed);
        self.reader.unpark();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }
}

/// A client, handed to its delivery thread.
#[derive(Debug)]
pub struct Endpoint {
    pub tag: Tag,
    /// The broadcasts it receives; `None` for none (an echo client).
    pub variant: Option<Variant>,
    pub stream: Arc<TcpStream>,
    link: Arc<Link>,
    /// Written before anything else (the 101 response).
    first: Vec<u8>,
}

enum Command {
    Add(Box<Endpoint>),
    Broadcast(Arc<Batch>),
    Send {
        tag: Tag,
        bytes: Bytes,
        /// Counted in the client's `reply_bytes`.
        reply: bool,
        /// A Close frame: the last thing this client is sent.
        close: bool,
    },
    Remove(Tag),
    /// Queue `frame` (a Close) for every client, write what can be written
    /// within `SHUTDOWN_DRAIN`, and end the thread.
    Stop(Arc<[u8]>),
}

/// What the delivery threads need to know.
#[derive(Debug, Clone)]
pub struct Settings {
    pub threads: usize,
    /// A client with bytes waiting and no progress for this long has
    /// stopped reading: it is dropped.
    pub stall_limit: Duration,
    pub max_behind_bytes: usize,
    pub metrics: Arc<Metrics>,
}

/// The handle to the delivery threads.
#[derive(Debug)]
pub struct Delivery {
    shards: Vec<Doorbell<Command>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Add(_) => "Add",
            Command::Broadcast(_) => "Broadcast",
            Command::Send { .. } => "Send",
            Command::Remove(_) => "Remove",
            Command::Stop(_) => "Stop",
        })
    }
}

impl Delivery {
    /// Starts `settings.threads` delivery threads.
    pub fn start(settings: Settings) -> io::Result<Arc<Delivery>> {
        let mut shards = Vec::new();
        let mut threads = Vec::new();
        for i in 0..settings.threads.max(1) {
            let (bell, inbox) = doorbell::doorbell(COMMAND_QUEUE)?;
            let settings = settings.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("wschat-delivery-{i}"))
                    .stack_size(DELIVERY_STACK)
                    .spawn(move || shard::Shard::new(inbox, settings).run())?,
            );
            shards.push(bell);
        }
        Ok(Arc::new(Delivery {
            shards,
            threads: Mutex::new(threads),
        }))
    }

    /// How many delivery threads there are.
    pub fn threads(&self) -> usize {
        self.shards.len()
    }

    fn shard(&self, tag: Tag) -> &Doorbell<Command> {
        &self.shards[(tag % self.shards.len() as u64) as usize]
    }

    /// A client's endpoint, made on its reader's thread (which is the one
    /// woken when its replies drain). `first` is written before anything.
    pub fn endpoint(
        tag: Tag,
        variant: Option<Variant>,
        stream: Arc<TcpStream>,
        first: Vec<u8>,
    ) -> Endpoint {
        Endpoint {
            tag,
            variant,
            stream,
            link: Arc::new(Link {
                reply_bytes: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                reader: std::thread::current(),
            }),
            first,
        }
    }

    /// Hands a client to its delivery thread, which writes its first bytes
    /// and from then on everything it is sent, in order. Returns the
    /// reader's handle for its own frames.
    pub fn add(self: &Arc<Self>, endpoint: Endpoint) -> Outlet {
        let outlet = Outlet {
            tag: endpoint.tag,
            link: endpoint.link.clone(),
            delivery: self.clone(),
        };
        if self
            .shard(endpoint.tag)
            .send(Command::Add(Box::new(endpoint)))
            .is_err()
        {
            outlet.link.done();
        }
        outlet
    }

    /// Sends `batch` to every client, each getting the frames of its
    /// variant that it did not originate. One command per delivery
    /// thread, whatever the number of clients.
    pub fn broadcast(&self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let batch = Arc::new(batch);
        for shard in &self.shards {
            let _ = shard.send(Command::Broadcast(batch.clone()));
        }
    }

    /// Sends bytes to one client, after every broadcast already sent.
    pub fn send(&self, tag: Tag, bytes: Bytes) {
        let _ = self.shard(tag).send(Command::Send {
            tag,
            bytes,
            reply: false,
            close: false,
        });
    }

    /// Sends a Close frame to one client, after every broadcast already
    /// sent: the last thing it is sent (its reader then ends as for any
    /// close the server starts).
    pub fn close(&self, tag: Tag, frame: Vec<u8>) {
        let _ = self.shard(tag).send(Command::Send {
            tag,
            bytes: Bytes::Owned(frame),
            reply: false,
            close: true,
        });
    }

    /// Queues `close` for every client, gives them `SHUTDOWN_DRAIN` to
    /// take what is queued, and stops the delivery threads.
    pub fn stop(&self, close: &[u8]) {
        let close: Arc<[u8]> = close.into();
        for shard in &self.shards {
            let _ = shard.send(Command::Stop(close.clone()));
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// A reader's handle to its client's delivery: pongs, pings, echoes and
/// the Close. Dropping it forgets the client.
#[derive(Debug)]
pub struct Outlet {
    tag: Tag,
    link: Arc<Link>,
    delivery: Arc<Delivery>,
}

impl Outlet {
    /// Queues a frame for this client, then waits while more than
    /// `REPLY_BACKLOG_BYTES` of its replies are unwritten: a reader that
    /// echoes to a client that does not read waits for that client alone.
    pub fn reply(&self, frame: Vec<u8>) {
        self.queue(frame, false);
        while self.link.reply_bytes.load(Relaxed) > REPLY_BACKLOG_BYTES && !self.link.is_closed() {
            // The delivery thread unparks us as it writes; the timeout is
            // only a safety net.
            std::thread::park_timeout(Duration::from_millis(100));
        }
    }

    /// Queues a Close frame: the last thing this client is sent.
    pub fn close(&self, frame: Vec<u8>) {
        self.queue(frame, true);
    }

    fn queue(&self, frame: Vec<u8>, close: bool) {
        if self.link.is_closed() {
            return;
        }
        self.link.reply_bytes.fetch_add(frame.len(), Relaxed);
        let sent = self.delivery.shard(self.tag).send(Command::Send {
            tag: self.tag,
            bytes: Bytes::Owned(frame),
            reply: true,
            close,
        });
        if sent.is_err() {
            self.link.done();
        }
    }

    /// Whether delivery has stopped writing to this client.
    pub fn is_closed(&self) -> bool {
        self.link.is_closed()
    }
}

impl Drop for Outlet {
    fn drop(&mut self) {
        let _ = self
            .delivery
            .shard(self.tag)
            .send(Command::Remove(self.tag));
    }
}
