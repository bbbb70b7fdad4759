//! One delivery thread and the clients it owns.

use super::doorbell::{Inbox, Step, TURN};
use super::sys::{self, IoVec, POLLIN, POLLOUT, PollFd};
use super::{Batch, Bytes, Command, Endpoint, Link, Settings, Tag, Variant};
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
/// How often the stall rule is checked for clients that wait in poll.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// The broadcast batches not yet written to every client, numbered.
struct Log {
    /// Number of `batches[0]`.
    first: u64,
    batches: VecDeque<Arc<Batch>>,
    /// Bytes ever logged before `batches[i]`, and in all (for how far
    /// behind a client is: `total - before[its batch]`).
    before: VecDeque<u64>,
    total: u64,
}

impl Log {
    fn head(&self) -> u64 {
        self.first + self.batches.len() as u64
    }

    fn get(&self, number: u64) -> Option<&Batch> {
        let index = number.checked_sub(self.first)?;
        self.batches.get(index as usize).map(|b| &**b)
    }

    fn bytes_from(&self, number: u64) -> u64 {
        match number.checked_sub(self.first) {
            Some(i) if (i as usize) < self.before.len() => self.total - self.before[i as usize],
            _ => 0,
        }
    }

    fn push(&mut self, batch: Arc<Batch>) {
        self.before.push_back(self.total);
        self.total += batch.bytes() as u64;
        self.batches.push_back(batch);
    }

    /// Forgets batches every client is past.
    fn trim(&mut self, oldest_needed: u64) {
        while self.first < oldest_needed && !self.batches.is_empty() {
            self.batches.pop_front();
            self.before.pop_front();
            self.first += 1;
        }
    }
}

/// Bytes for one client at a point in the broadcast stream.
struct Private {
    /// Written once the client is at batch `at`: after every broadcast
    /// logged before it was queued.
    at: u64,
    bytes: Bytes,
    reply: bool,
    close: bool,
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
    variant: Option<Variant>,
    stream: Arc<TcpStream>,
    link: Arc<Link>,
    /// Position in the log: batch `next`, from its frame `frame` on.
    next: u64,
    frame: usize,
    /// Bytes of the current piece already written.
    offset: usize,
    private: VecDeque<Private>,
    private_bytes: usize,
    state: State,
    last_progress: Instant,
    /// Its reader is gone: forget it once its queued Close is written.
    orphan: bool,
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
    /// The private item at this index of `private`; it comes at batch
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
    fn step<'a>(&'a self, walk: &mut Walk, log: &'a Log) -> Option<Piece<'a>> {
        if walk.ended {
            return None;
        }
        loop {
            if let Some(p) = self.private.get(walk.private)
                && p.at <= walk.next
            {
                let index = walk.private;
                walk.private += 1;
                walk.ended = p.close;
                return Some(Piece {
                    bytes: &p.bytes,
                    kind: PieceKind::Private {
                        index,
                        next: walk.next,
                    },
                });
            }
            let batch = log.get(walk.next)?;
            let found = self.variant.and_then(|variant| {
                batch.frames[walk.frame.min(batch.frames.len())..]
                    .iter()
                    .position(|f| f.variant == variant && f.origin != Some(self.tag))
            });
            match found {
                Some(i) => {
                    let index = walk.frame + i;
                    walk.frame = index + 1;
                    return Some(Piece {
                        bytes: &batch.frames[index].bytes,
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

    /// Whether anything is due.
    fn has_due(&self, log: &Log) -> bool {
        self.step(&mut self.walk(), log).is_some()
    }

    /// Bytes waiting for this client (broadcasts counted whole).
    fn behind(&self, log: &Log) -> u64 {
        log.bytes_from(self.next) + self.private_bytes as u64
    }

    /// Moves past the end of the broadcasts that are not for this client,
    /// so that an idle client never holds the log back.
    fn skip_to_head(&mut self, log: &Log) {
        if self.private.is_empty() && self.offset == 0 && !self.has_due(log) {
            self.next = log.head();
            self.frame = 0;
        }
    }
}

pub(super) struct Shard {
    inbox: Inbox<Command>,
    settings: Settings,
    log: Log,
    clients: Vec<Client>,
    index: HashMap<Tag, usize>,
    pieces: Vec<IoVec>,
    last_sweep: Instant,
    stopping: Option<Instant>,
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
            log: Log {
                first: 0,
                batches: VecDeque::new(),
                before: VecDeque::new(),
                total: 0,
            },
            clients: Vec::new(),
            index: HashMap::new(),
            pieces: Vec::with_capacity(MAX_PIECES),
            last_sweep: Instant::now(),
            stopping: None,
        }
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
            // The deepest backlog: what the log holds before this turn's writes.
            self.settings
                .metrics
                .queue_depth(self.log.bytes_from(self.log.first) as usize);
            let more_to_write = self.write_all();
            // The log holds only what some client still needs: past the
            // limit, someone is too far behind; check now, not at the next
            // sweep, so that memory stays bounded however fast the room.
            let urgent =
                self.log.bytes_from(self.log.first) > self.settings.max_behind_bytes as u64;
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
            for (i, client) in self.clients.iter().enumerate() {
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
            } else if polled.is_empty() && self.stopping.is_none() {
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
            let Some(command) = self.inbox.try_take() else {
                return false;
            };
            self.apply(command);
        }
        !self.inbox.is_empty()
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Add(endpoint) => self.add(*endpoint),
            Command::Broadcast(batch) => self.log.push(batch),
            Command::Send {
                tag,
                bytes,
                reply,
                close,
            } => {
                let at = self.log.head();
                match self.index.get(&tag) {
                    Some(&i) => {
                        let client = &mut self.clients[i];
                        client.private_bytes += bytes.len();
                        client.private.push_back(Private {
                            at,
                            bytes,
                            reply,
                            close,
                        });
                    }
                    None if reply => {
                        // Gone: nobody waits on these bytes any more.
                        let _ = bytes;
                    }
                    None => {}
                }
            }
            Command::Remove(tag) => {
                if let Some(i) = self.index.get(&tag).copied() {
                    let client = &mut self.clients[i];
                    if client.state != State::Closed && client.private.iter().any(|p| p.close) {
                        // Its last words (a reader that panicked sends
                        // 1011 as it unwinds) still go out.
                        client.orphan = true;
                        return;
                    }
                    if client.state != State::Closed && client.behind(&self.log) > 0 {
                        // Its reader gave up waiting for the close (the
                        // client read nothing): say what did not go out.
                        log::info!(
                            "({tag}) closed with {} bytes it never took",
                            client.behind(&self.log)
                        );
                    }
                    self.forget(i);
                }
            }
            Command::Stop(close) => {
                let at = self.log.head();
                for client in &mut self.clients {
                    if !client.private.iter().any(|p| p.close) {
                        client.private_bytes += close.len();
                        client.private.push_back(Private {
                            at,
                            bytes: Bytes::Shared(close.clone()),
                            reply: false,
                            close: true,
                        });
                    }
                }
                self.stopping = Some(Instant::now());
            }
        }
    }

    fn add(&mut self, endpoint: Endpoint) {
        let at = self.log.head();
        let mut private = VecDeque::new();
        let first_len = endpoint.first.len();
        private.push_back(Private {
            at,
            bytes: Bytes::Owned(endpoint.first),
            reply: false,
            close: false,
        });
        self.index.insert(endpoint.tag, self.clients.len());
        self.clients.push(Client {
            tag: endpoint.tag,
            variant: endpoint.variant,
            stream: endpoint.stream,
            link: endpoint.link,
            next: at,
            frame: 0,
            offset: 0,
            private,
            private_bytes: first_len,
            state: State::Open,
            last_progress: Instant::now(),
            orphan: false,
        });
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
        let mut oldest_needed = self.log.head();
        let mut i = 0;
        while i < self.clients.len() {
            if self.clients[i].state == State::Open {
                match self.write(i, now) {
                    Sent::All | Sent::Blocked => {}
                    Sent::More => more = true,
                    Sent::Closed => {
                        let client = &mut self.clients[i];
                        client.state = State::Closed;
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
                        self.cut(i);
                        continue;
                    }
                }
            }
            let client = &mut self.clients[i];
            if client.state != State::Closed {
                client.skip_to_head(&self.log);
                oldest_needed = oldest_needed.min(client.next);
            }
            i += 1;
        }
        self.log.trim(oldest_needed);
        more
    }

    /// One non-blocking vectored write of what is due for client `i`.
    fn write(&mut self, i: usize, now: Instant) -> Sent {
        let client = &self.clients[i];
        self.pieces.clear();
        let mut walk = client.walk();
        let mut total = 0;
        let mut ends_in_close = false;
        while self.pieces.len() < MAX_PIECES && total < MAX_SEND_BYTES {
            let Some(piece) = client.step(&mut walk, &self.log) else {
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
        let complete = client.step(&mut walk, &self.log).is_none();
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
        let log = &self.log;
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
            client.private_bytes -= p.bytes.len();
            if p.reply {
                let before = client.link.reply_bytes.fetch_sub(p.bytes.len(), Relaxed);
                if before > super::REPLY_BACKLOG_BYTES {
                    client.link.reader.unpark();
                }
            }
        }
        if popped > 0 && client.private.is_empty() {
            // An idle client keeps no buffer: it may have ten thousand twins.
            client.private = VecDeque::new();
        }
        metrics.messages_out.fetch_add(frames, Relaxed);
    }

    /// Drops clients that are too far behind, or have stopped reading.
    fn sweep(&mut self, urgent: bool) {
        let now = Instant::now();
        if !urgent && now.duration_since(self.last_sweep) < SWEEP_EVERY {
            return;
        }
        self.last_sweep = now;
        let mut i = 0;
        while i < self.clients.len() {
            let client = &self.clients[i];
            let behind = client.behind(&self.log);
            let stalled = client.state == State::Blocked
                && now.duration_since(client.last_progress) >= self.settings.stall_limit;
            let reason = if client.state == State::Closed {
                None
            } else if behind > self.settings.max_behind_bytes as u64 {
                Some(format!("{behind} bytes behind"))
            } else if stalled {
                Some(format!(
                    "nothing written for {:?}",
                    self.settings.stall_limit
                ))
            } else {
                None
            };
            match reason {
                Some(reason) => {
                    log::warn!(
                        "Dropping slow consumer: ({}) {reason}, closing with 1008",
                        client.tag
                    );
                    self.settings
                        .metrics
                        .client_dropped(DropReason::SlowConsumer);
                    self.cut(i);
                }
                None => i += 1,
            }
        }
    }

    /// Ends client `i` now: a Close 1008 if its socket has room and no
    /// frame is half written, then the socket is shut, which also ends its
    /// reader's wait. The reader sends the room its Leave.
    fn cut(&mut self, i: usize) {
        let client = &self.clients[i];
        if client.offset == 0 {
            let frame = encode_close(CloseCode::Policy, "slow_consumer", None);
            let piece = [IoVec {
                base: frame.as_ptr(),
                len: frame.len(),
            }];
            // SAFETY: `frame` lives until the call returns.
            let _ = unsafe { sys::send_vectored(client.stream.as_raw_fd(), &piece) };
        }
        // Marked closed before the socket is, so that whoever sees the
        // socket end also sees the flag.
        client.link.done();
        let _ = client.stream.shutdown(Shutdown::Both);
        self.forget(i);
    }
}
