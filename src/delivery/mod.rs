//! Delivery: getting bytes onto clients' sockets without letting any client
//! slow down the broadcaster or anyone else.
//!
//! A fixed set of delivery threads (one per core by default) each own a
//! share of the clients. Every thread gets the same ordered stream of
//! broadcast batches from the broadcaster, split by *variant* (which
//! clients want a frame); each thread keeps one log per variant, each part
//! once, and a client is only a position in its variant's log plus its own
//! few private items (the 101, a welcome, an error, a pong, a Close). A
//! turn of a delivery thread takes every command waiting, then gives each
//! client with something to send one vectored, non-blocking `sendmsg` of
//! all of it. A client whose socket is full waits in poll(2), holding no
//! thread:
//!
//! ```text
//!  broadcaster's Outbox ──Broadcast(parts)──▶ delivery thread 1: raw log [b7 b9]  v1 log [b7 b8 b9]
//!                       └──────────────────▶ delivery thread 2: raw log [b7 b9]  v1 log [b7 b8 b9]
//!  broadcaster's Outbox (welcome, error, /who) ─┐
//!  reader (pong, echo, Close) ──────────────────┴─Send─▶ its client's delivery thread
//!
//!  delivery thread, one turn:  take commands ─▶ for each client with bytes
//!                              due: one sendmsg(MSG_DONTWAIT) of them all
//!                              ─▶ poll(bell + full sockets)
//! ```
//!
//! Only a client's delivery thread ever writes to its socket after the
//! handshake's request is read, the 101 included, and it ends the socket
//! too: there is no hand-over. Delivery knows bytes: a frame's variant,
//! its *origin* (a client that must not get it back) and its *group*
//! (which clients it is for), never chat.
//!
//! Groups: every client starts in the `LOBBY`, whose frames are the logs
//! above. A frame for another group is queued to that group's members on
//! each thread, its bytes shared (one `Arc`, a queue slot per member), at
//! its point among the log's frames; a turn that logged nothing writes
//! only to the clients with something queued. A client that leaves the
//! lobby reads the log up to where it left, and again from where it
//! joins.
//!
//! A client is dropped (1008) when it is far behind (`--max-lag-bytes`,
//! counting only what it would receive: its variant's frames but its own,
//! and its private items) or has had bytes waiting with no progress for
//! the stall limit; a client that stalls for a moment keeps every message.
//! The first rule bounds the memory each log holds for its slowest client.
//! A dropped client gets the rest of the frame in flight and a Close 1008
//! within `CLOSE_WRITE_DEADLINE`, then TCP ends. Private items are charged
//! what they cost in memory, and past `PRIVATE_BACKLOG_BYTES` the client's
//! reader stops reading its input until they drain.

mod doorbell;
mod shard;
pub(crate) mod sys;

use crate::metrics::Metrics;
use crate::room::Mode;
use doorbell::Doorbell;
use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

/// A client's number, as delivery sees it: an opaque tag.
pub type Tag = u64;

/// A set of clients a broadcast frame may be for, as delivery sees it:
/// an opaque number (a chat room, to the broadcaster). A client may be in
/// several at once.
pub type Group = u32;

/// The group most clients are in, and every client starts in: its frames
/// go through the per-variant logs (one copy per delivery thread, each
/// client a position), so one room of everybody costs nothing per
/// client. A frame for any other group is queued to its members only.
pub const LOBBY: Group = 0;

/// Which broadcast frames a client receives: those of its chat mode,
/// plain or compressed for a client that negotiated permessage-deflate
/// (RFC 7692). Delivery only keeps a log per variant; the broadcaster
/// decides which frames go in which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub mode: Mode,
    pub compressed: bool,
}

impl Variant {
    pub const fn new(mode: Mode, compressed: bool) -> Variant {
        Variant { mode, compressed }
    }

    /// Its place in the per-variant arrays (`0..VARIANTS`).
    fn index(self) -> usize {
        let mode = match self.mode {
            Mode::Raw => 0,
            Mode::V1 => 1,
        };
        2 * mode + usize::from(self.compressed)
    }
}

/// Commands waiting for a delivery thread. A full queue makes the sender
/// wait for the thread's CPU time, never for a client.
pub const COMMAND_QUEUE: usize = 16 * 1024;
/// The broadcast streams there are (two modes, plain or compressed); each delivery
/// thread keeps one log per variant, so that a client is charged, and
/// holds memory, only for the frames it receives.
pub const VARIANTS: usize = 4;
/// What a client's private items (errors, `/who` answers, pongs, echoes,
/// its Close) may cost before its reader stops reading its input until
/// they drain: backpressure on that client alone. Its welcome is not
/// counted here (it is bounded by the history, and counted in its lag).
pub const PRIVATE_BACKLOG_BYTES: usize = 1024 * 1024;
/// What one private item costs beyond its bytes: its place in the client's
/// queue (counted twice: a growing queue is up to half empty) and the
/// allocator's header and rounding for its bytes.
pub const PRIVATE_ITEM_OVERHEAD: usize = 2 * std::mem::size_of::<shard::Private>() + 32;
/// How long delivery keeps writing a client's last bytes once it has ended
/// it (a slow consumer: the rest of the frame in flight, then Close 1008)
/// or its reader has gone with a Close still queued; then the socket is
/// shut whatever is left.
pub const CLOSE_WRITE_DEADLINE: Duration = Duration::from_secs(2);
/// How long shutting down waits for Close frames to be written.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);
/// Stack for delivery threads (nothing large lives on it).
const DELIVERY_STACK: usize = 256 * 1024;

/// What a private item of `len` bytes costs.
pub fn private_cost(len: usize) -> usize {
    len + PRIVATE_ITEM_OVERHEAD
}

/// One frame of a batch.
#[derive(Debug)]
pub struct Frame {
    /// Not sent to this client (a raw chat line's sender).
    pub origin: Option<Tag>,
    pub bytes: Box<[u8]>,
}

/// The frames of one variant from one batch, in order: what a delivery
/// thread logs, shared by every thread and read by every client of that
/// variant (no copy per recipient).
#[derive(Debug, Default)]
pub struct Part {
    frames: Vec<Frame>,
    bytes: usize,
}

/// The lobby's part of a batch as the delivery threads get it: one part
/// per variant that has frames.
type Parts = [Option<Arc<Part>>; VARIANTS];

/// Who a frame outside the lobby's log is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    /// The members of a group other than the lobby.
    Group(Group),
    /// Every client outside the lobby (the lobby has the frame in its log).
    OutsideLobby,
}

/// A frame for some clients only: queued to each of them, sharing the one
/// encoding.
#[derive(Debug)]
struct GroupFrame {
    audience: Audience,
    variant: Variant,
    /// Its place in the batch: before the lobby frame of its variant with
    /// this index (after all of them if there are no more), so that a
    /// client in both gets them in the broadcaster's order.
    before: usize,
    /// Not sent to this client (a raw chat line's sender).
    origin: Option<Tag>,
    bytes: Arc<[u8]>,
}

/// A batch as the delivery threads get it: the lobby's frames by variant,
/// and the frames for other audiences.
#[derive(Debug)]
struct Broadcast {
    parts: Parts,
    groups: Vec<GroupFrame>,
}

/// Frames the broadcaster had ready at once, in order within each variant.
#[derive(Debug, Default)]
pub struct Batch {
    parts: [Part; VARIANTS],
    groups: Vec<GroupFrame>,
    frames: usize,
    bytes: usize,
}

impl Batch {
    /// Adds a frame for the clients of `variant` in `group` (but `origin`).
    pub fn push(&mut self, variant: Variant, origin: Option<Tag>, group: Group, bytes: Box<[u8]>) {
        self.bytes += bytes.len();
        self.frames += 1;
        if group == LOBBY {
            let part = &mut self.parts[variant.index()];
            part.bytes += bytes.len();
            part.frames.push(Frame { origin, bytes });
        } else {
            self.groups.push(GroupFrame {
                audience: Audience::Group(group),
                variant,
                before: self.parts[variant.index()].frames.len(),
                origin,
                bytes: bytes.into(),
            });
        }
    }

    /// Adds a frame for every client of `variant` (but `origin`), whatever
    /// its groups: the lobby reads it in its log, and each client outside
    /// the lobby has it queued.
    pub fn push_to_everyone(&mut self, variant: Variant, origin: Option<Tag>, bytes: Box<[u8]>) {
        self.groups.push(GroupFrame {
            audience: Audience::OutsideLobby,
            variant,
            before: self.parts[variant.index()].frames.len(),
            origin,
            bytes: Arc::from(&bytes[..]),
        });
        // Counted once, by `push`: it is one frame of the broadcaster's.
        self.push(variant, origin, LOBBY, bytes);
    }

    pub fn len(&self) -> usize {
        self.frames
    }

    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What the delivery threads get: the lobby's parts that have frames,
    /// and the frames for other audiences.
    fn into_broadcast(self) -> Broadcast {
        Broadcast {
            parts: self
                .parts
                .map(|part| (!part.frames.is_empty()).then(|| Arc::new(part))),
            groups: self.groups,
        }
    }

    /// The lobby's frames for a client of `variant` and `tag`.
    pub fn frames_for(&self, variant: Variant, tag: Tag) -> impl Iterator<Item = &[u8]> {
        self.parts[variant.index()]
            .frames
            .iter()
            .filter(move |f| f.origin != Some(tag))
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
    /// The cost of the private items counted against
    /// `PRIVATE_BACKLOG_BYTES` and not yet written.
    private_cost: AtomicUsize,
    /// Nothing more will be written: the Close is out, or the client was
    /// dropped or failed. A reader waiting on its replies stops waiting.
    closed: AtomicBool,
    /// Why, once `closed` is set (the first reason given).
    ending: Mutex<Option<Ending>>,
    reader: Thread,
}

/// Why delivery stopped writing to a client: what went out on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Its Close went out, with this code (the room's, or the shutdown's).
    Closed(u16),
    /// It fell too far behind or stopped reading: the rest of the frame
    /// in flight, then Close 1008 `slow_consumer`.
    SlowConsumer,
    /// Its socket failed: nothing more could be written, not even a Close.
    WriteFailed,
    /// Delivery stopped (or never took the client): nothing was written.
    Stopped,
}

impl Link {
    /// Marks the client ended (the first reason given stays) and wakes
    /// its reader.
    fn end(&self, ending: Ending) {
        let mut first = self.ending.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(ending);
        drop(first);
        self.closed.store(true, Relaxed);
        self.reader.unpark();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// Why delivery ended the client, once it has.
    pub fn ending(&self) -> Option<Ending> {
        if !self.is_closed() {
            return None;
        }
        *self.ending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes back the cost of written (or dropped) private items, waking
    /// the reader if that brings the backlog under the cap.
    fn release(&self, cost: usize) {
        let before = self.private_cost.fetch_sub(cost, Relaxed);
        if before > PRIVATE_BACKLOG_BYTES && before - cost <= PRIVATE_BACKLOG_BYTES {
            self.reader.unpark();
        }
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

/// What a private item is, for its accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// From the reader (an echo, a ping), counted in the link when queued.
    Reply,
    /// From the reader: a pong. Behind a full socket, only the latest
    /// waiting one is sent (RFC 6455 §5.5.3 allows answering only the most
    /// recent Ping).
    Pong,
    /// From the room (an error, a `/who` answer): counted when applied.
    Room,
    /// A welcome, or the 101: counted in the lag only.
    Welcome,
    /// A broadcast frame for a group it is in (other than the lobby), its
    /// bytes shared with the other members: counted in the lag only (it
    /// is the room's traffic, not replies the client caused).
    Group,
    /// The reader's Close: the last thing this client is sent.
    Close,
    /// A Close from the room (cluster mode's 1012 `rejoin`): the last
    /// thing this client is sent, counted when applied like `Room`.
    RoomClose,
}

impl Kind {
    /// Whether it is a Close: the last thing the client is sent.
    fn is_close(self) -> bool {
        matches!(self, Kind::Close | Kind::RoomClose)
    }

    /// Whether it counts against `PRIVATE_BACKLOG_BYTES`.
    fn capped(self) -> bool {
        !matches!(self, Kind::Welcome | Kind::Group)
    }
}

enum Command {
    Add(Box<Endpoint>),
    Broadcast(Arc<Broadcast>),
    /// The client joins a group (the lobby: its log again, from its head).
    Join {
        tag: Tag,
        group: Group,
    },
    /// The client leaves a group once it has the frames sent before.
    Leave {
        tag: Tag,
        group: Group,
    },
    Send {
        tag: Tag,
        bytes: Bytes,
        kind: Kind,
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

/// The handle to the delivery threads. Dropping the last handle without
/// [`Delivery::stop`] ends the threads too (without Close frames).
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
            Command::Join { .. } => "Join",
            Command::Leave { .. } => "Leave",
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
                private_cost: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                ending: Mutex::new(None),
                reader: std::thread::current(),
            }),
            first,
        }
    }

    /// Hands a client to its delivery thread, which writes its first bytes
    /// and from then on everything it is sent, in order. It starts in the
    /// lobby and in no other group. Returns the reader's handle for its
    /// own frames.
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
            outlet.link.end(Ending::Stopped);
        }
        outlet
    }

    /// Sends `batch`: each client gets the frames of its variant for the
    /// groups it is in, but those it originated. One command per delivery
    /// thread, whatever the number of clients.
    pub fn broadcast(&self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let broadcast = Arc::new(batch.into_broadcast());
        for shard in &self.shards {
            let _ = shard.send(Command::Broadcast(broadcast.clone()));
        }
    }

    /// Puts a client in `group`: it gets the group's frames broadcast from
    /// now on, in order with everything else it is sent (a batch not yet
    /// handed to [`Delivery::broadcast`] counts as not sent: hand it
    /// first). Joining the lobby again, it
    /// reads the log from its head; joining a group it is in does nothing.
    pub fn join_group(&self, tag: Tag, group: Group) {
        let _ = self.shard(tag).send(Command::Join { tag, group });
    }

    /// Takes a client out of `group`: it still gets the group's frames
    /// broadcast before this (hand a pending batch first), and none after.
    pub fn leave_group(&self, tag: Tag, group: Group) {
        let _ = self.shard(tag).send(Command::Leave { tag, group });
    }

    /// Sends bytes to one client, after every broadcast already sent,
    /// counted against its `PRIVATE_BACKLOG_BYTES` (an error, a `/who`
    /// answer).
    pub fn send(&self, tag: Tag, bytes: Bytes) {
        self.send_kind(tag, bytes, Kind::Room);
    }

    /// Sends a newcomer its welcome: like [`Delivery::send`], but counted
    /// in its lag only, not against `PRIVATE_BACKLOG_BYTES`.
    pub fn send_welcome(&self, tag: Tag, bytes: Bytes) {
        self.send_kind(tag, bytes, Kind::Welcome);
    }

    fn send_kind(&self, tag: Tag, bytes: Bytes, kind: Kind) {
        let _ = self.shard(tag).send(Command::Send { tag, bytes, kind });
    }

    /// Sends a Close frame to one client, after every broadcast already
    /// sent: the last thing it is sent (its reader then ends as for any
    /// close the server starts).
    pub fn close(&self, tag: Tag, frame: Vec<u8>) {
        self.send_kind(tag, Bytes::Owned(frame), Kind::RoomClose);
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
/// the Close. Dropping it forgets the client; a Close still queued is
/// written first (within `CLOSE_WRITE_DEADLINE`).
#[derive(Debug)]
pub struct Outlet {
    tag: Tag,
    link: Arc<Link>,
    delivery: Arc<Delivery>,
}

impl Outlet {
    /// Queues a frame for this client (an echo, a ping), then waits while
    /// its private backlog is over `PRIVATE_BACKLOG_BYTES`: a reader that
    /// echoes to a client that does not read waits for that client alone.
    pub fn reply(&self, frame: Vec<u8>) {
        self.queue(frame, Kind::Reply);
        self.wait_for_room();
    }

    /// Queues a Pong. If an earlier one is still waiting for a full
    /// socket, this one takes its place (§5.5.3): pings from a client that
    /// does not read cost one pong, not one each.
    pub fn pong(&self, frame: Vec<u8>) {
        self.queue(frame, Kind::Pong);
        self.wait_for_room();
    }

    /// Queues a Close frame: the last thing this client is sent.
    pub fn close(&self, frame: Vec<u8>) {
        self.queue(frame, Kind::Close);
    }

    /// Waits while this client's private backlog is over
    /// `PRIVATE_BACKLOG_BYTES` (replies from the room count too), or until
    /// delivery has ended the client. The reader calls it before reading
    /// more input: backpressure on this client alone.
    pub fn wait_for_room(&self) {
        while self.link.private_cost.load(Relaxed) > PRIVATE_BACKLOG_BYTES && !self.is_closed() {
            // The delivery thread unparks us as it writes; the timeout is
            // only a safety net.
            std::thread::park_timeout(Duration::from_millis(100));
        }
    }

    fn queue(&self, frame: Vec<u8>, kind: Kind) {
        if self.link.is_closed() {
            return;
        }
        // Counted now, before the delivery thread sees it, so that a fast
        // reader cannot run ahead of the count.
        self.link
            .private_cost
            .fetch_add(private_cost(frame.len()), Relaxed);
        let sent = self.delivery.shard(self.tag).send(Command::Send {
            tag: self.tag,
            bytes: Bytes::Owned(frame),
            kind,
        });
        if sent.is_err() {
            self.link.end(Ending::Stopped);
        }
    }

    /// Whether delivery has stopped writing to this client.
    pub fn is_closed(&self) -> bool {
        self.link.is_closed()
    }

    /// Why delivery stopped writing to this client, once it has.
    pub fn ending(&self) -> Option<Ending> {
        self.link.ending()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Instant;

    /// A frame for everyone is one frame of the broadcaster's, first in a
    /// batch or not (counting it once must not count it below nothing).
    #[test]
    fn a_frame_for_everyone_counts_once_in_its_batch() {
        let v1 = Variant::new(Mode::V1, false);
        let mut batch = Batch::default();
        batch.push_to_everyone(v1, None, Box::new([1, 2, 3]));
        assert_eq!((batch.len(), batch.bytes()), (1, 3));
        batch.push(v1, None, 5, Box::new([4]));
        batch.push_to_everyone(v1, Some(9), Box::new([5, 6]));
        assert_eq!((batch.len(), batch.bytes()), (3, 6));
    }

    /// An embedder (or a test) that drops every handle without `stop`:
    /// the threads must end, not poll a hung-up bell forever at full CPU.
    #[test]
    fn dropping_every_handle_without_stop_ends_the_delivery_threads() {
        let delivery = Delivery::start(Settings {
            threads: 2,
            stall_limit: Duration::from_secs(60),
            max_behind_bytes: 1 << 20,
            metrics: Arc::default(),
        })
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let outlet = delivery.add(Delivery::endpoint(
            1,
            Some(Variant::new(Mode::Raw, false)),
            Arc::new(server),
            vec![],
        ));
        let threads = std::mem::take(&mut *delivery.threads.lock().unwrap());
        drop(outlet);
        drop(delivery);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !threads.iter().all(JoinHandle::is_finished) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            threads.iter().all(JoinHandle::is_finished),
            "delivery threads still running 5 s after their handles were dropped"
        );
    }
}
