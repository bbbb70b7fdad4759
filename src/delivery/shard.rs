//! One delivery thread and the clients it owns.

use super::doorbell::{Inbox, Step, TURN};
use super::sys::{self, IoVec, POLLIN, POLLOUT, PollFd};
use super::{
    Bytes, CLOSE_WRITE_DEADLINE, Command, Endpoint, Kind, Link, Part, Parts, Settings, Tag,
    VARIANTS, Variant, private_cost,
};
use crate::metrics::DropReason;
use crate::protocol::close::CloseCode;
use crate::protocol::frame::encode_close;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Pieces gathered for one `sendmsg` (Linux's IOV_MAX is 1024).
const MAX_PIECES: usize = 1024;
/// ... or this many bytes, whichever comes first: more would not fit a
/// socket's send buffer anyway.
const MAX_SEND_BYTES: usize = 1024 * 1024;
/// Commands taken per turn, so that writing is not put off for long while
/// commands keep coming.
const MAX_COMMANDS_PER_TURN: usize = 4096;
/// How often the stall rule and the close deadlines are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// A client whose position holds more than this many times
/// `--max-lag-bytes` of its log is dropped even if most of it is its own
/// lines (which it never receives, so they are not in its lag): the log's
/// memory stays bounded.
const MAX_HELD_FACTOR: u64 = 2;

/// The broadcast frames of one variant not yet written to every client of
/// it, numbered.
#[derive(Default)]
struct Log {
    /// Number of `parts[0]`.
    first: u64,
    parts: VecDeque<Arc<Part>>,
    /// Bytes ever logged before `parts[i]`, and in all (for how far behind
    /// a client is: `total - before[its part]`).
    before: VecDeque<u64>,
    total: u64,
}

impl Log {
    fn head(&self) -> u64 {
        self.first + self.parts.len() as u64
    }

    fn get(&self, number: u64) -> Option<&Part> {
        let index = number.checked_sub(self.first)?;
        self.parts.get(index as usize).map(|b| &**b)
    }

    fn bytes_from(&self, number: u64) -> u64 {
        match number.checked_sub(self.first) {
            Some(i) if (i as usize) < self.before.len() => self.total - self.before[i as usize],
            _ => 0,
        }
    }

    /// Everything it holds.
    fn bytes(&self) -> u64 {
        self.bytes_from(self.first)
    }

    fn push(&mut self, part: Arc<Part>) {
        self.before.push_back(self.total);
        self.total += part.bytes as u64;
        self.parts.push_back(part);
    }

    /// Forgets parts every client is past.
    fn trim(&mut self, oldest_needed: u64) {
        while self.first < oldest_needed && !self.parts.is_empty() {
            self.parts.pop_front();
            self.before.pop_front();
            self.first += 1;
        }
    }
}

/// The log a client of `variant` reads (none for an echo client).
fn log_of(logs: &[Log; VARIANTS], variant: Option<Variant>) -> Option<&Log> {
    variant.map(|v| &logs[v as usize])
}

/// Bytes for one client at a point in its broadcast stream.
pub(crate) struct Private {
    /// Written once the client is at part `at` of its log: after every
    /// broadcast logged before it was queued.
    at: u64,
    bytes: Bytes,
    kind: Kind,
    /// What it costs ([`private_cost`]), counted while it waits.
    cost: usize,
    /// Counted in its link against `PRIVATE_BACKLOG_BYTES`.
    counted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// Waits for its socket to have room (in poll).
    Blocked,
    /// Its Close is written: nothing more is.
    Closed,
}

struct Client {
    tag: Tag,
    /// Its log; `None` for an echo client, and for one being ended.
    variant: Option<Variant>,
    stream: Arc<TcpStream>,
    link: Arc<Link>,
    /// Position in its log: part `next`, from its frame `frame` on.
    next: u64,
    frame: usize,
    /// Bytes of the current piece already written.
    offset: usize,
    private: VecDeque<Private>,
    /// The cost of everything in `private`.
    private_cost: usize,
    /// Private items ever written: `private[0]`'s number.
    popped: u64,
    /// The number of the pong waiting in `private`, if one is.
    pong: Option<u64>,
    /// Its own frames (a raw client's lines) in its log from part `.0`
    /// on: in the log, but not sent to it, so not in its lag.
    own: VecDeque<(u64, u64)>,
    own_bytes: u64,
    state: State,
    last_progress: Instant,
    /// Its reader is gone: forget it once its queued Close is written.
    orphan: bool,
    /// Set when delivery is finishing this client (its last bytes, then
    /// the Close): past it, the socket is shut whatever is left.
    deadline: Option<Instant>,
}

/// One piece of a client's stream.
struct Piece<'a> {
    bytes: &'a [u8],
    kind: PieceKind,
}

#[derive(Clone, Copy)]
enum PieceKind {
    /// A broadcast frame; the position after it.
    Frame { next: u64, frame: usize },
    /// The private item at this index of `private`; it comes at part
    /// `next`, before any of its frames.
    Private { index: usize, next: u64 },
}

/// A walk over a client's pieces from its position, without moving it.
struct Walk {
    next: u64,
    frame: usize,
    private: usize,
    ended: bool,
}

impl Client {
    fn walk(&self) -> Walk {
        Walk {
            next: self.next,
            frame: self.frame,
            private: 0,
            ended: false,
        }
    }

    /// The next piece of the walk: a private item whose time has come, or
    /// the next broadcast frame for this client. Nothing after a Close.
    fn step<'a>(&'a self, walk: &mut Walk, log: Option<&'a Log>) -> Option<Piece<'a>> {
        if walk.ended {
            return None;
        }
        loop {
            if let Some(p) = self.private.get(walk.private)
                && p.at <= walk.next
            {
                let index = walk.private;
                walk.private += 1;
                walk.ended = p.kind.is_close();
                return Some(Piece {
                    bytes: &p.bytes,
                    kind: PieceKind::Private {
                        index,
                        next: walk.next,
                    },
                });
            }
            let part = log?.get(walk.next)?;
            let found = part.frames[walk.frame.min(part.frames.len())..]
                .iter()
                .position(|f| f.origin != Some(self.tag));
            match found {
                Some(i) => {
                    let index = walk.frame + i;
                    walk.frame = index + 1;
                    return Some(Piece {
                        bytes: &part.frames[index].bytes,
                        kind: PieceKind::Frame {
                            next: walk.next,
                            frame: index + 1,
                        },
                    });
                }
                None => {
                    walk.next += 1;
                    walk.frame = 0;
                }
            }
        }
    }

    /// Bytes waiting for this client: the frames of its log it will
    /// receive (parts counted whole) and its private items.
    fn behind(&self, log: Option<&Log>) -> u64 {
        self.held(log) - self.own_bytes.min(self.held(log)) + self.private_cost as u64
    }

    /// Bytes of its log its position holds in memory.
    fn held(&self, log: Option<&Log>) -> u64 {
        log.map_or(0, |log| log.bytes_from(self.next))
    }

    /// Moves past the end of its log if no frame there is for it (none
    /// are, for an echo client), so that an idle client never holds the
    /// log back; private items waiting keep their order, since no frame
    /// for it comes before them.
    fn skip_to_head(&mut self, log: Option<&Log>) {
        let Some(log) = log else {
            self.next = 0;
            return;
        };
        let mut frames_only = Walk {
            next: self.next,
            frame: self.frame,
            private: usize::MAX,
            ended: false,
        };
        if self.offset == 0 && self.step(&mut frames_only, Some(log)).is_none() {
            self.next = log.head();
            self.frame = 0;
        }
        while let Some(&(at, bytes)) = self.own.front()
            && at < self.next
        {
            self.own.pop_front();
            self.own_bytes -= bytes;
        }
    }

    /// Queues a private item at the end of its stream.
    fn push_private(&mut self, at: u64, bytes: Bytes, kind: Kind, counted: bool) {
        let cost = private_cost(bytes.len());
        self.private_cost += cost;
        self.private.push_back(Private {
            at,
            bytes,
            kind,
            cost,
            counted,
        });
    }
}

pub(super) struct Shard {
    inbox: Inbox<Command>,
    settings: Settings,
    logs: [Log; VARIANTS],
    clients: Vec<Client>,
    index: HashMap<Tag, usize>,
    pieces: Vec<IoVec>,
    last_sweep: Instant,
    stopping: Option<Instant>,
    /// Every `Delivery` handle is gone: no command will ever come.
    hung_up: bool,
}

/// How one attempt to write to a client ended.
enum Sent {
    /// Everything due is written.
    All,
    /// More is due (the gather limit was reached).
    More,
    /// The socket is full.
    Blocked,
    /// The Close is out.
    Closed,
    Failed(io::Error),
}

impl Shard {
    pub(super) fn new(inbox: Inbox<Command>, settings: Settings) -> Shard {
        Shard {
            inbox,
            settings,
            logs: Default::default(),
            clients: Vec::new(),
            index: HashMap::new(),
            pieces: Vec::with_capacity(MAX_PIECES),
            last_sweep: Instant::now(),
            stopping: None,
            hung_up: false,
        }
    }

    /// What the logs hold, all variants together.
    fn logged_bytes(&self) -> u64 {
        self.logs.iter().map(Log::bytes).sum()
    }

    pub(super) fn run(mut self) {
        let mut fds: Vec<PollFd> = Vec::new();
        let mut polled: Vec<usize> = Vec::new();
        loop {
            let mut more_commands = false;
            for step in TURN {
                match step {
                    Step::Hush => self.inbox.hush(),
                    Step::Take => more_commands = self.take_commands(),
                }
            }
            if self.hung_up {
                // Nobody can send a command or a Close any more (the
                // handles are gone, and with them every reader's outlet):
                // end rather than poll a hung-up bell forever.
                return;
            }
            // The deepest backlog: what the logs hold before this turn's writes.
            self.settings
                .metrics
                .queue_depth(self.logged_bytes() as usize);
            let more_to_write = self.write_all();
            // A log holds only what some client still needs: past the
            // limit, someone is too far behind; check now, not at the next
            // sweep, so that memory stays bounded however fast the room.
            let limit = self.settings.max_behind_bytes as u64;
            let urgent = self.logs.iter().any(|log| log.bytes() > limit);
            self.sweep(urgent);
            // Stopping: done once every Close is out (or cannot be).
            if let Some(since) = self.stopping
                && (self.clients.iter().all(|c| c.state == State::Closed)
                    || since.elapsed() >= super::SHUTDOWN_DRAIN)
            {
                return;
            }
            // Wait for a ring, or for a full socket to have room.
            fds.clear();
            polled.clear();
            fds.push(PollFd {
                fd: self.inbox.fd(),
                events: POLLIN,
                revents: 0,
            });
            let mut deadlines = false;
            for (i, client) in self.clients.iter().enumerate() {
                deadlines |= client.deadline.is_some();
                if client.state == State::Blocked {
                    fds.push(PollFd {
                        fd: client.stream.as_raw_fd(),
                        events: POLLOUT,
                        revents: 0,
                    });
                    polled.push(i);
                }
            }
            let timeout = if more_commands || more_to_write {
                0
            } else if polled.is_empty() && !deadlines && self.stopping.is_none() {
                -1
            } else {
                SWEEP_EVERY.as_millis() as i32
            };
            if sys::wait(&mut fds, timeout).is_err() {
                continue; // EINTR
            }
            for (fd, &i) in fds[1..].iter().zip(&polled) {
                if fd.revents != 0 {
                    // Room, or an error the next write will report.
                    self.clients[i].state = State::Open;
                }
            }
        }
    }

    /// Applies waiting commands; true if more are left for the next turn.
    fn take_commands(&mut self) -> bool {
        for _ in 0..MAX_COMMANDS_PER_TURN {
            match self.inbox.try_take() {
                Ok(Some(command)) => self.apply(command),
                Ok(None) => return false,
                Err(_) => {
                    self.hung_up = true;
                    return false;
                }
            }
        }
        !self.inbox.is_empty()
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Add(endpoint) => self.add(*endpoint),
            Command::Broadcast(parts) => self.log(&parts),
            Command::Send { tag, bytes, kind } => {
                let Some(&i) = self.index.get(&tag) else {
                    return; // gone: nobody waits on these bytes any more
                };
                let client = &mut self.clients[i];
                let at = log_of(&self.logs, client.variant).map_or(0, Log::head);
                if matches!(kind, Kind::Room | Kind::RoomClose) {
                    // The reader counted its own items as it queued them.
                    client
                        .link
                        .private_cost
                        .fetch_add(private_cost(bytes.len()), Relaxed);
                }
                // Pongs pile up only behind a full socket: there, a pong
                // still waiting is replaced by this one (§5.5.3 allows
                // answering the most recent Ping only). A client that reads
                // gets every pong, in order.
                if kind == Kind::Pong
                    && client.state == State::Blocked
                    && let Some(number) = client.pong
                {
                    let index = (number - client.popped) as usize;
                    // Not the piece being written (it may be half out).
                    if index > 0 || client.offset == 0 {
                        let old = &mut client.private[index];
                        let new_cost = private_cost(bytes.len());
                        client.link.release(old.cost);
                        client.private_cost = client.private_cost - old.cost + new_cost;
                        old.cost = new_cost;
                        old.bytes = bytes;
                        return;
                    }
                }
                if kind == Kind::Pong {
                    client.pong = Some(client.popped + client.private.len() as u64);
                }
                client.push_private(at, bytes, kind, kind.capped());
            }
            Command::Remove(tag) => {
                if let Some(i) = self.index.get(&tag).copied() {
                    let log = log_of(&self.logs, self.clients[i].variant);
                    let client = &mut self.clients[i];
                    if client.state != State::Closed
                        && client.private.iter().any(|p| p.kind.is_close())
                    {
                        // Its last words (a Close answering the client's,
                        // or 1011 from a reader that panicked) still go
                        // out, within a deadline: §5.5.1.
                        client.orphan = true;
                        let deadline = Instant::now() + CLOSE_WRITE_DEADLINE;
                        client.deadline =
                            Some(client.deadline.map_or(deadline, |d| d.min(deadline)));
                        return;
                    }
                    if client.state != State::Closed && client.behind(log) > 0 {
                        // Its reader gave up waiting for the close (the
                        // client read nothing): say what did not go out.
                        log::info!(
                            "({tag}) closed with {} bytes it never took",
                            client.behind(log)
                        );
                    }
                    self.forget(i);
                }
            }
            Command::Stop(close) => {
                for client in &mut self.clients {
                    if !client.private.iter().any(|p| p.kind.is_close()) {
                        let at = log_of(&self.logs, client.variant).map_or(0, Log::head);
                        client.push_private(at, Bytes::Shared(close.clone()), Kind::Close, false);
                    }
                }
                self.stopping = Some(Instant::now());
            }
        }
    }

    /// Logs a batch: each part in its variant's log, its senders' own
    /// frames noted so that they are not counted in their lag.
    fn log(&mut self, parts: &Parts) {
        for (variant, part) in parts.iter().enumerate() {
            let Some(part) = part else { continue };
            let number = self.logs[variant].head();
            for frame in &part.frames {
                if let Some(origin) = frame.origin
                    && let Some(&i) = self.index.get(&origin)
                {
                    let client = &mut self.clients[i];
                    if client.variant == Some(variant as Variant) && client.state != State::Closed {
                        client.own.push_back((number, frame.bytes.len() as u64));
                        client.own_bytes += frame.bytes.len() as u64;
                    }
                }
            }
            self.logs[variant].push(part.clone());
        }
    }

    fn add(&mut self, endpoint: Endpoint) {
        let at = log_of(&self.logs, endpoint.variant).map_or(0, Log::head);
        let mut client = Client {
            tag: endpoint.tag,
            variant: endpoint.variant,
            stream: endpoint.stream,
            link: endpoint.link,
            next: at,
            frame: 0,
            offset: 0,
            private: VecDeque::new(),
            private_cost: 0,
            popped: 0,
            pong: None,
            own: VecDeque::new(),
            own_bytes: 0,
            state: State::Open,
            last_progress: Instant::now(),
            orphan: false,
            deadline: None,
        };
        client.push_private(at, Bytes::Owned(endpoint.first), Kind::Welcome, false);
        self.index.insert(client.tag, self.clients.len());
        self.clients.push(client);
    }

    /// Removes client `i` (swapped with the last one).
    fn forget(&mut self, i: usize) {
        let client = self.clients.swap_remove(i);
        self.index.remove(&client.tag);
        if let Some(moved) = self.clients.get(i) {
            self.index.insert(moved.tag, i);
        }
        client.link.done();
    }

    /// Gives every client with something due one write; returns whether
    /// some client still has more to write at once.
    fn write_all(&mut self) -> bool {
        let now = Instant::now();
        let mut more = false;
        let mut oldest_needed: [u64; VARIANTS] = std::array::from_fn(|v| self.logs[v].head());
        let mut i = 0;
        while i < self.clients.len() {
            if self.clients[i].state == State::Open {
                match self.write(i, now) {
                    Sent::All | Sent::Blocked => {}
                    Sent::More => more = true,
                    Sent::Closed => {
                        let client = &mut self.clients[i];
                        client.state = State::Closed;
                        client.deadline = None;
                        // §7.1.1: having sent its Close, the server closes
                        // TCP after the client's Close (the reader waits
                        // for it); our half ends now.
                        client.link.done();
                        let _ = client.stream.shutdown(Shutdown::Write);
                        if client.orphan {
                            self.forget(i);
                            continue;
                        }
                    }
                    Sent::Failed(e) => {
                        log::debug!("({}) write failed: {e}", self.clients[i].tag);
                        self.fail(i);
                        continue;
                    }
                }
            }
            let log = log_of(&self.logs, self.clients[i].variant);
            let client = &mut self.clients[i];
            if client.state != State::Closed {
                client.skip_to_head(log);
                if let Some(v) = client.variant {
                    let oldest = &mut oldest_needed[v as usize];
                    *oldest = (*oldest).min(client.next);
                }
            }
            i += 1;
        }
        for (log, oldest) in self.logs.iter_mut().zip(oldest_needed) {
            log.trim(oldest);
        }
        more
    }

    /// One non-blocking vectored write of what is due for client `i`.
    fn write(&mut self, i: usize, now: Instant) -> Sent {
        let client = &self.clients[i];
        let log = log_of(&self.logs, client.variant);
        self.pieces.clear();
        let mut walk = client.walk();
        let mut total = 0;
        let mut ends_in_close = false;
        while self.pieces.len() < MAX_PIECES && total < MAX_SEND_BYTES {
            let Some(piece) = client.step(&mut walk, log) else {
                break;
            };
            let skip = if self.pieces.is_empty() {
                client.offset
            } else {
                0
            };
            let bytes = &piece.bytes[skip..];
            total += bytes.len();
            self.pieces.push(IoVec {
                base: bytes.as_ptr(),
                len: bytes.len(),
            });
            ends_in_close = walk.ended;
        }
        if self.pieces.is_empty() {
            // Nothing due: the stall clock starts again from here.
            self.clients[i].last_progress = now;
            return Sent::All;
        }
        let complete = client.step(&mut walk, log).is_none();
        // SAFETY: every piece points into the log or the client's private
        // items, neither of which changes until the call returns.
        let result = unsafe { sys::send_vectored(client.stream.as_raw_fd(), &self.pieces) };
        let written = match result {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.clients[i].state = State::Blocked;
                return Sent::Blocked;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Sent::More,
            Err(e) => return Sent::Failed(e),
        };
        self.advance(i, written, now);
        if written < total {
            // The socket took part: it is full for now.
            self.clients[i].state = State::Blocked;
            return Sent::Blocked;
        }
        if ends_in_close && complete {
            return Sent::Closed;
        }
        if complete { Sent::All } else { Sent::More }
    }

    /// Moves client `i` past `written` bytes.
    fn advance(&mut self, i: usize, mut written: usize, now: Instant) {
        let metrics = &self.settings.metrics;
        metrics.bytes_out.fetch_add(written as u64, Relaxed);
        let log = log_of(&self.logs, self.clients[i].variant);
        let client = &mut self.clients[i];
        client.last_progress = now;
        let mut frames = 0;
        let mut walk = client.walk();
        let mut popped = 0;
        while written > 0 {
            // The walk's private indexes count from before the pops.
            let Some((len, kind)) = client
                .step(&mut walk, log)
                .map(|piece| (piece.bytes.len(), piece.kind))
            else {
                break;
            };
            let left = len - client.offset;
            if written < left {
                client.offset += written;
                break;
            }
            written -= left;
            client.offset = 0;
            frames += 1;
            match kind {
                PieceKind::Frame { next, frame } => {
                    client.next = next;
                    client.frame = frame;
                }
                PieceKind::Private { index, next } => {
                    debug_assert_eq!(index, popped);
                    popped += 1;
                    client.next = next;
                    client.frame = 0;
                }
            }
        }
        for p in client.private.drain(..popped) {
            client.private_cost -= p.cost;
            if p.counted {
                client.link.release(p.cost);
            }
        }
        client.popped += popped as u64;
        if client.pong.is_some_and(|n| n < client.popped) {
            client.pong = None;
        }
        if popped > 0 && client.private.is_empty() {
            // An idle client keeps no buffer: it may have ten thousand twins.
            client.private = VecDeque::new();
        }
        metrics.messages_out.fetch_add(frames, Relaxed);
    }

    /// Drops clients that are too far behind, or have stopped reading;
    /// gives up on the last bytes of those past their deadline.
    fn sweep(&mut self, urgent: bool) {
        let now = Instant::now();
        if !urgent && now.duration_since(self.last_sweep) < SWEEP_EVERY {
            return;
        }
        self.last_sweep = now;
        let limit = self.settings.max_behind_bytes as u64;
        let mut i = 0;
        while i < self.clients.len() {
            let client = &self.clients[i];
            if let Some(deadline) = client.deadline {
                if now >= deadline {
                    log::debug!(
                        "({}) its last bytes were not taken within {CLOSE_WRITE_DEADLINE:?}",
                        client.tag
                    );
                    let _ = client.stream.shutdown(Shutdown::Both);
                    self.forget(i);
                } else {
                    i += 1;
                }
                continue;
            }
            let log = log_of(&self.logs, client.variant);
            let behind = client.behind(log);
            let held = client.held(log);
            let stalled = client.state == State::Blocked
                && now.duration_since(client.last_progress) >= self.settings.stall_limit;
            let reason = if client.state == State::Closed {
                None
            } else if behind > limit {
                Some(format!("{behind} bytes behind"))
            } else if held > MAX_HELD_FACTOR * limit {
                Some(format!("{held} bytes of the log held"))
            } else if stalled {
                Some(format!(
                    "nothing written for {:?}",
                    self.settings.stall_limit
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                log::warn!(
                    "Dropping slow consumer: ({}) {reason}, closing with 1008",
                    client.tag
                );
                self.settings
                    .metrics
                    .client_dropped(DropReason::SlowConsumer);
                self.cut(i, now);
            }
            i += 1;
        }
    }

    /// Ends client `i`, a slow consumer: it keeps only the rest of the
    /// frame in flight and a Close 1008, written as its socket takes them
    /// within `CLOSE_WRITE_DEADLINE` (§7.1.2: a Close, then TCP ends). It
    /// no longer holds the log, and its reader is told to stop.
    fn cut(&mut self, i: usize, now: Instant) {
        let log = log_of(&self.logs, self.clients[i].variant);
        let client = &self.clients[i];
        let mut last = Vec::new();
        if client.offset > 0
            && let Some(piece) = client.step(&mut client.walk(), log)
        {
            last.extend_from_slice(&piece.bytes[client.offset..]);
        }
        last.extend_from_slice(&encode_close(CloseCode::Policy, "slow_consumer", None));
        let client = &mut self.clients[i];
        for p in client.private.drain(..) {
            if p.counted {
                client.link.release(p.cost);
            }
        }
        client.private_cost = 0;
        client.popped = 0;
        client.pong = None;
        client.own.clear();
        client.own_bytes = 0;
        client.variant = None;
        client.next = 0;
        client.frame = 0;
        client.offset = 0;
        client.push_private(0, Bytes::Owned(last), Kind::Close, false);
        client.state = State::Open;
        client.deadline = Some(now + CLOSE_WRITE_DEADLINE);
        // Marked closed before the socket is, so that whoever sees the
        // socket end also sees the flag. Shutting the reading half wakes
        // the reader (it reads the end of the input), which sends the room
        // its Leave; the writing half stays open for the Close.
        client.link.done();
        let _ = client.stream.shutdown(Shutdown::Read);
    }

    /// Ends client `i`, whose socket failed: nothing more can be sent.
    fn fail(&mut self, i: usize) {
        let client = &self.clients[i];
        client.link.done();
        let _ = client.stream.shutdown(Shutdown::Both);
        self.forget(i);
    }
}
