//! One delivery thread and the clients it owns.

use super::doorbell::{Inbox, Step, TURN};
use super::sys::{self, IoVec, POLLIN, POLLOUT, PollFd};
use super::{
    Audience, Broadcast, Bytes, CLOSE_WRITE_DEADLINE, Command, Ending, Endpoint, Frame, Group,
    Kind, LOBBY, Link, Part, Settings, Tag, VARIANTS, Variant, private_cost,
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
/// The position of a client whose walk has passed the point where it
/// left the lobby: no part of the log is for it (until it joins again,
/// from the head).
const OUTSIDE_LOG: u64 = u64::MAX;

/// A point in a client's stream: before frame `frame` of part `part` of
/// its log (after all of that part's frames when there are no more).
/// Ordered as the frames are: by part, then by frame.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    part: u64,
    frame: usize,
}

impl Position {
    /// After every frame logged so far, before the next part.
    fn head(log: Option<&Log>) -> Position {
        Position {
            part: log.map_or(0, Log::head),
            frame: 0,
        }
    }
}

/// The members of a group on one delivery thread, by variant.
type Members = [Vec<Tag>; VARIANTS];

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
    variant.map(|v| &logs[v.index()])
}

/// Bytes for one client at a point in its broadcast stream: its own, or
/// a group's frame shared with the group's other members.
pub(crate) struct Private {
    /// Written once the client's walk is here in its log: after every
    /// broadcast frame sent before it.
    at: Position,
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

/// A client as its delivery thread holds it: its socket, and its `Queue`.
struct Recipient {
    tag: Tag,
    /// Its log; `None` for an echo client, and for one being ended.
    variant: Option<Variant>,
    stream: Arc<TcpStream>,
    link: Arc<Link>,
    queue: Queue,
    state: State,
    last_progress: Instant,
    /// Its reader is gone: forget it once its queued Close is written.
    orphan: bool,
    /// Set when delivery is finishing this client (its last bytes, then
    /// the Close): past it, the socket is shut whatever is left.
    deadline: Option<Instant>,
    /// The groups it is in but the lobby (which `queue.in_lobby` says).
    groups: Vec<Group>,
    /// In the shard's `ready` list.
    ready: bool,
}

/// What is due for one client, and how far it has got: its position in
/// its log and its private items. No socket: the order of a client's
/// bytes, and its lag, are decided here (and unit-tested in `tests.rs`).
#[derive(Default)]
struct Queue {
    /// Its tag: frames from this origin are not for it.
    tag: Tag,
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
    /// It reads the log (it is in the lobby) from its position on; else
    /// only up to the start of its last gap.
    in_lobby: bool,
    /// Parts of the log `[.0, .1)` that are not for it: it was outside
    /// the lobby. The last one is open (`.1 == OUTSIDE_LOG`) while it is.
    gaps: VecDeque<(u64, u64)>,
}

/// One piece of a client's stream.
struct Piece<'a> {
    bytes: &'a [u8],
    kind: PieceKind,
}

#[derive(Clone, Copy)]
enum PieceKind {
    /// A broadcast frame of its log; the position after it.
    Frame { next: u64, frame: usize },
    /// The item at this index of `private`; it comes at `next`, `frame`,
    /// before the log's next frame for it.
    Private {
        index: usize,
        next: u64,
        frame: usize,
    },
}

/// A walk over a client's pieces from its position, without moving it.
struct Walk {
    next: u64,
    frame: usize,
    private: usize,
    /// The first of its `gaps` the walk has not passed.
    gap: usize,
    ended: bool,
}

impl Walk {
    fn position(&self) -> Position {
        Position {
            part: self.next,
            frame: self.frame,
        }
    }
}

impl Queue {
    fn walk(&self) -> Walk {
        Walk {
            next: self.next,
            frame: self.frame,
            private: 0,
            gap: 0,
            ended: false,
        }
    }

    /// Moves the walk to the log's next frame for this client and returns
    /// it: past its own frames, and past the parts of its gaps; `None` if
    /// there is none now (the walk is then at the head, or past the log
    /// for good).
    fn seek<'a>(&self, walk: &mut Walk, log: Option<&'a Log>) -> Option<&'a Frame> {
        let log = log?;
        loop {
            if let Some(&(from, to)) = self.gaps.get(walk.gap)
                && walk.next >= from
            {
                if walk.next < to {
                    walk.next = to;
                    walk.frame = 0;
                }
                walk.gap += 1;
                continue;
            }
            let part = log.get(walk.next)?;
            let from = walk.frame.min(part.frames.len());
            match part.frames[from..]
                .iter()
                .position(|f| f.origin != Some(self.tag))
            {
                Some(i) => {
                    walk.frame = from + i;
                    return Some(&part.frames[walk.frame]);
                }
                None => {
                    walk.next += 1;
                    walk.frame = 0;
                }
            }
        }
    }

    /// The next piece of the walk: a private item whose time has come
    /// (none of the log's frames for it comes before its point), or the
    /// log's next frame for it. Nothing after a Close.
    fn step<'a>(&'a self, walk: &mut Walk, log: Option<&'a Log>) -> Option<Piece<'a>> {
        if walk.ended {
            return None;
        }
        let frame = self.seek(walk, log);
        if let Some(p) = self.private.get(walk.private)
            && (frame.is_none() || p.at <= walk.position())
        {
            let index = walk.private;
            walk.private += 1;
            walk.ended = p.kind.is_close();
            return Some(Piece {
                bytes: &p.bytes,
                kind: PieceKind::Private {
                    index,
                    next: walk.next,
                    frame: walk.frame,
                },
            });
        }
        let frame = frame?;
        walk.frame += 1;
        Some(Piece {
            bytes: &frame.bytes,
            kind: PieceKind::Frame {
                next: walk.next,
                frame: walk.frame,
            },
        })
    }

    /// Bytes waiting for this client: the frames of its log it will
    /// receive (parts counted whole), its private items and its groups'
    /// frames.
    fn behind(&self, log: Option<&Log>) -> u64 {
        let held = self.held(log);
        let not_for_it = self.own_bytes + self.gap_bytes(log);
        held - not_for_it.min(held) + self.private_cost as u64
    }

    /// Bytes of its log its position holds in memory.
    fn held(&self, log: Option<&Log>) -> u64 {
        log.map_or(0, |log| log.bytes_from(self.next))
    }

    /// Bytes of its log from its position on in the parts of its gaps.
    fn gap_bytes(&self, log: Option<&Log>) -> u64 {
        let Some(log) = log else { return 0 };
        self.gaps
            .iter()
            .map(|&(from, to)| {
                let from = from.max(self.next);
                if to <= from {
                    0
                } else {
                    log.bytes_from(from) - log.bytes_from(to)
                }
            })
            .sum()
    }

    /// Moves past the end of its log if no frame there is for it (none
    /// are, for an echo client; none from where it left the lobby, for a
    /// client outside it), so that an idle client never holds the log
    /// back; private items waiting keep their order, since no frame for
    /// it comes before them.
    fn skip_to_head(&mut self, log: Option<&Log>) {
        if log.is_none() {
            self.next = 0;
            return;
        }
        let mut walk = self.walk();
        if self.offset == 0 && self.seek(&mut walk, log).is_none() {
            self.next = walk.next;
            self.frame = 0;
        }
        self.forget_passed();
    }

    /// Forgets its own frames and gaps its position has passed.
    fn forget_passed(&mut self) {
        while let Some(&(at, bytes)) = self.own.front()
            && at < self.next
        {
            self.own.pop_front();
            self.own_bytes -= bytes;
        }
        while self.gaps.front().is_some_and(|&(_, to)| to <= self.next) {
            self.gaps.pop_front();
        }
    }

    /// It leaves the lobby: the log's parts from `head` on are not for it.
    fn leave_lobby(&mut self, head: u64) {
        if self.in_lobby {
            self.in_lobby = false;
            self.gaps.push_back((head, OUTSIDE_LOG));
        }
    }

    /// It joins the lobby again: the log's parts from `head` on are for it.
    fn join_lobby(&mut self, head: u64) {
        if self.in_lobby {
            return;
        }
        self.in_lobby = true;
        match self.gaps.back_mut() {
            Some(gap) if gap.1 == OUTSIDE_LOG && gap.0 == head => {
                self.gaps.pop_back();
            }
            Some(gap) if gap.1 == OUTSIDE_LOG => gap.1 = head,
            // Its walk has passed the point where it left: it starts again
            // at the head (its private items are all at or before it).
            _ => {
                self.next = head;
                self.frame = 0;
            }
        }
    }

    /// Queues a private item at the end of its stream.
    fn push_private(&mut self, at: Position, bytes: Bytes, kind: Kind, counted: bool) {
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

    /// Notes one of its own frames (`bytes` long) in part `number` of its
    /// log: in the log, but never sent to it.
    fn note_own(&mut self, number: u64, bytes: u64) {
        self.own.push_back((number, bytes));
        self.own_bytes += bytes;
    }

    /// Moves past `written` bytes of what [`Queue::step`] walks.
    fn advance(&mut self, log: Option<&Log>, mut written: usize) -> Advanced {
        let mut advanced = Advanced::default();
        let mut walk = self.walk();
        let mut popped = 0;
        while written > 0 {
            // The walk's private indexes count from before the pops.
            let Some((len, kind)) = self
                .step(&mut walk, log)
                .map(|piece| (piece.bytes.len(), piece.kind))
            else {
                break;
            };
            let left = len - self.offset;
            if written < left {
                self.offset += written;
                break;
            }
            written -= left;
            self.offset = 0;
            advanced.pieces += 1;
            match kind {
                PieceKind::Frame { next, frame } => {
                    self.next = next;
                    self.frame = frame;
                }
                PieceKind::Private { index, next, frame } => {
                    debug_assert_eq!(index, popped);
                    popped += 1;
                    self.next = next;
                    self.frame = frame;
                }
            }
        }
        for p in self.private.drain(..popped) {
            self.private_cost -= p.cost;
            if p.counted {
                advanced.released += p.cost;
            }
        }
        self.popped += popped as u64;
        if self.pong.is_some_and(|n| n < self.popped) {
            self.pong = None;
        }
        if popped > 0 && self.private.is_empty() {
            // An idle client keeps no buffer: it may have ten thousand twins.
            self.private = VecDeque::new();
        }
        self.forget_passed();
        advanced
    }
}

/// What [`Queue::advance`] got through.
#[derive(Debug, Default, PartialEq, Eq)]
struct Advanced {
    /// Pieces (frames and private items) written whole.
    pieces: u64,
    /// The cost of the counted private items among them, to give back to
    /// the link.
    released: usize,
}

pub(super) struct Shard {
    inbox: Inbox<Command>,
    settings: Settings,
    logs: [Log; VARIANTS],
    clients: Vec<Recipient>,
    index: HashMap<Tag, usize>,
    /// The members of each group but the lobby (a group with none is
    /// not kept).
    groups: HashMap<Group, Members>,
    /// The clients outside the lobby: frames for everyone are queued to
    /// them (the lobby reads them in its log).
    outside: Members,
    /// Clients that may have bytes due that no new log part explains (a
    /// private item or a group's frame queued, a full socket with room,
    /// a gather limit reached): the only ones a turn without a new part
    /// writes to.
    ready: Vec<Tag>,
    /// A part was logged since everyone was last written to: every client
    /// of its variant may have bytes due.
    logged: bool,
    /// Clients whose socket is full (some may no longer be: checked when
    /// polling).
    blocked: Vec<Tag>,
    /// Some client may have a deadline (set with it; counted again at
    /// each sweep).
    deadlines: bool,
    /// Some client's queue has passed the lag limit: sweep at once.
    urgent: bool,
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
    /// The Close is out, with this code.
    Closed(u16),
    Failed(io::Error),
}

/// What one pass of writes did.
#[derive(Debug, Default, PartialEq, Eq)]
struct Pass {
    /// Clients looked at.
    visited: usize,
    /// Some client still has more to write at once.
    more: bool,
}

impl Shard {
    pub(super) fn new(inbox: Inbox<Command>, settings: Settings) -> Shard {
        Shard {
            inbox,
            settings,
            logs: Default::default(),
            clients: Vec::new(),
            index: HashMap::new(),
            groups: HashMap::new(),
            outside: Default::default(),
            ready: Vec::new(),
            logged: false,
            blocked: Vec::new(),
            deadlines: false,
            urgent: false,
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
            let more_to_write = self.write_all().more;
            // A log holds only what some client still needs: past the
            // limit, someone is too far behind; check now, not at the next
            // sweep, so that memory stays bounded however fast the room.
            let limit = self.settings.max_behind_bytes as u64;
            let urgent =
                std::mem::take(&mut self.urgent) || self.logs.iter().any(|log| log.bytes() > limit);
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
            self.forget_unblocked();
            for tag in &self.blocked {
                let i = self.index[tag];
                fds.push(PollFd {
                    fd: self.clients[i].stream.as_raw_fd(),
                    events: POLLOUT,
                    revents: 0,
                });
                polled.push(i);
            }
            let timeout = if more_commands || more_to_write {
                0
            } else if polled.is_empty() && !self.deadlines && self.stopping.is_none() {
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
                    self.mark_ready(i);
                }
            }
            self.forget_unblocked();
        }
    }

    /// Keeps in `blocked` only the clients still there and blocked.
    fn forget_unblocked(&mut self) {
        let (index, clients) = (&self.index, &self.clients);
        self.blocked.retain(|tag| {
            index
                .get(tag)
                .is_some_and(|&i| clients[i].state == State::Blocked)
        });
    }

    /// Puts client `i` in the `ready` list (once).
    fn mark_ready(&mut self, i: usize) {
        let client = &mut self.clients[i];
        if !client.ready {
            client.ready = true;
            self.ready.push(client.tag);
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
            Command::Broadcast(broadcast) => self.log(&broadcast),
            Command::Join { tag, group } => self.join(tag, group),
            Command::Leave { tag, group } => self.leave(tag, group),
            Command::Send { tag, bytes, kind } => self.send(tag, bytes, kind),
            Command::Remove(tag) => self.remove(tag),
            Command::Stop(close) => {
                for client in &mut self.clients {
                    if !client.queue.private.iter().any(|p| p.kind.is_close()) {
                        let at = Position::head(log_of(&self.logs, client.variant));
                        client.queue.push_private(
                            at,
                            Bytes::Shared(close.clone()),
                            Kind::Close,
                            false,
                        );
                    }
                }
                // Everyone has something due.
                self.logged = true;
                self.stopping = Some(Instant::now());
            }
        }
    }

    /// Queues bytes for one client, after every frame broadcast before.
    fn send(&mut self, tag: Tag, bytes: Bytes, kind: Kind) {
        let Some(&i) = self.index.get(&tag) else {
            return; // gone: nobody waits on these bytes any more
        };
        self.mark_ready(i);
        let client = &mut self.clients[i];
        let at = Position::head(log_of(&self.logs, client.variant));
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
            && let Some(number) = client.queue.pong
        {
            let index = (number - client.queue.popped) as usize;
            // Not the piece being written (it may be half out).
            if index > 0 || client.queue.offset == 0 {
                let old = &mut client.queue.private[index];
                let new_cost = private_cost(bytes.len());
                client.link.release(old.cost);
                client.queue.private_cost = client.queue.private_cost - old.cost + new_cost;
                old.cost = new_cost;
                old.bytes = bytes;
                return;
            }
        }
        if kind == Kind::Pong {
            client.queue.pong = Some(client.queue.popped + client.queue.private.len() as u64);
        }
        client.queue.push_private(at, bytes, kind, kind.capped());
    }

    /// Forgets a client whose reader is gone (once its Close is out, if
    /// one is queued).
    fn remove(&mut self, tag: Tag) {
        let Some(i) = self.index.get(&tag).copied() else {
            return;
        };
        let log = log_of(&self.logs, self.clients[i].variant);
        let client = &mut self.clients[i];
        if client.state != State::Closed && client.queue.private.iter().any(|p| p.kind.is_close()) {
            // Its last words (a Close answering the client's,
            // or 1011 from a reader that panicked) still go
            // out, within a deadline: §5.5.1.
            client.orphan = true;
            let deadline = Instant::now() + CLOSE_WRITE_DEADLINE;
            client.deadline = Some(client.deadline.map_or(deadline, |d| d.min(deadline)));
            self.deadlines = true;
            return;
        }
        if client.state != State::Closed && client.queue.behind(log) > 0 {
            // Its reader gave up waiting for the close (the
            // client read nothing): say what did not go out.
            log::info!(
                "({tag}) closed with {} bytes it never took",
                client.queue.behind(log)
            );
        }
        self.forget(i);
    }

    /// Logs a batch: each of the lobby's parts in its variant's log, its
    /// senders' own frames noted so that they are not counted in their
    /// lag; then each other frame queued to the clients it is for, at its
    /// place among the lobby's.
    fn log(&mut self, broadcast: &Broadcast) {
        let heads: [u64; VARIANTS] = std::array::from_fn(|v| self.logs[v].head());
        for (variant, part) in broadcast.parts.iter().enumerate() {
            let Some(part) = part else { continue };
            for frame in &part.frames {
                if let Some(origin) = frame.origin
                    && let Some(&i) = self.index.get(&origin)
                {
                    let client = &mut self.clients[i];
                    if client.variant.map(Variant::index) == Some(variant)
                        && client.state != State::Closed
                        && client.queue.in_lobby
                    {
                        client
                            .queue
                            .note_own(heads[variant], frame.bytes.len() as u64);
                    }
                }
            }
            self.logs[variant].push(part.clone());
            self.logged = true;
        }
        let limit = self.settings.max_behind_bytes;
        for frame in &broadcast.groups {
            let v = frame.variant.index();
            let members = match frame.audience {
                Audience::Group(group) => match self.groups.get(&group) {
                    Some(members) => &members[v],
                    None => continue,
                },
                Audience::OutsideLobby => &self.outside[v],
            };
            let at = Position {
                part: heads[v],
                frame: frame.before,
            };
            for &tag in members {
                if frame.origin == Some(tag) {
                    continue;
                }
                let Some(&i) = self.index.get(&tag) else {
                    continue; // not kept: members are forgotten with their client
                };
                let client = &mut self.clients[i];
                if client.state == State::Closed || client.variant != Some(frame.variant) {
                    continue;
                }
                let bytes = Bytes::Shared(frame.bytes.clone());
                client
                    .queue
                    .push_private(at, bytes, Kind::Group, Kind::Group.capped());
                self.urgent |= client.queue.private_cost > limit;
                if !client.ready {
                    client.ready = true;
                    self.ready.push(tag);
                }
            }
        }
    }

    /// Puts client `tag` in `group`, from the frames broadcast next on.
    fn join(&mut self, tag: Tag, group: Group) {
        let Some(&i) = self.index.get(&tag) else {
            return;
        };
        let client = &mut self.clients[i];
        // An echo client (or one being ended) gets no broadcasts.
        let Some(variant) = client.variant else {
            return;
        };
        let v = variant.index();
        if group == LOBBY {
            if !client.queue.in_lobby {
                client.queue.join_lobby(self.logs[v].head());
                remove_member(&mut self.outside[v], tag);
            }
        } else if !client.groups.contains(&group) {
            client.groups.push(group);
            self.groups.entry(group).or_default()[v].push(tag);
        }
    }

    /// Takes client `tag` out of `group`, after the frames broadcast so far.
    fn leave(&mut self, tag: Tag, group: Group) {
        let Some(&i) = self.index.get(&tag) else {
            return;
        };
        let client = &mut self.clients[i];
        let Some(variant) = client.variant else {
            return;
        };
        let v = variant.index();
        if group == LOBBY {
            if client.queue.in_lobby {
                client.queue.leave_lobby(self.logs[v].head());
                self.outside[v].push(tag);
            }
        } else if let Some(k) = client.groups.iter().position(|&g| g == group) {
            client.groups.swap_remove(k);
            self.leave_members(group, v, tag);
        }
    }

    /// Takes `tag` out of `group`'s members of variant `v`; forgets a
    /// group left with none.
    fn leave_members(&mut self, group: Group, v: usize, tag: Tag) {
        if let Some(members) = self.groups.get_mut(&group) {
            remove_member(&mut members[v], tag);
            if members.iter().all(Vec::is_empty) {
                self.groups.remove(&group);
            }
        }
    }

    /// Takes client `i` out of every group and of the outside list: it
    /// gets no more broadcasts (it is being ended or forgotten).
    fn leave_all(&mut self, i: usize) {
        let client = &mut self.clients[i];
        let Some(variant) = client.variant else {
            return;
        };
        let (tag, v) = (client.tag, variant.index());
        let groups = std::mem::take(&mut client.groups);
        if !client.queue.in_lobby {
            remove_member(&mut self.outside[v], tag);
        }
        for group in groups {
            self.leave_members(group, v, tag);
        }
    }

    fn add(&mut self, endpoint: Endpoint) {
        let at = Position::head(log_of(&self.logs, endpoint.variant));
        let mut client = Recipient {
            tag: endpoint.tag,
            variant: endpoint.variant,
            stream: endpoint.stream,
            link: endpoint.link,
            queue: Queue {
                tag: endpoint.tag,
                next: at.part,
                in_lobby: true,
                ..Queue::default()
            },
            state: State::Open,
            last_progress: Instant::now(),
            orphan: false,
            deadline: None,
            groups: Vec::new(),
            ready: false,
        };
        client
            .queue
            .push_private(at, Bytes::Owned(endpoint.first), Kind::Welcome, false);
        self.index.insert(client.tag, self.clients.len());
        self.clients.push(client);
        self.mark_ready(self.clients.len() - 1);
    }

    /// Removes client `i` (swapped with the last one).
    fn forget(&mut self, i: usize) {
        self.leave_all(i);
        let client = self.clients.swap_remove(i);
        self.index.remove(&client.tag);
        if let Some(moved) = self.clients.get(i) {
            self.index.insert(moved.tag, i);
        }
        client.link.end(Ending::Stopped);
    }

    /// Gives every client with something due one write: all of them if a
    /// part was logged, else only the `ready` ones (a frame for a small
    /// group costs its members, not the thread's every client).
    fn write_all(&mut self) -> Pass {
        if std::mem::take(&mut self.logged) {
            self.write_everyone()
        } else {
            self.write_ready()
        }
    }

    /// A pass over every client; then the logs forget the parts all of
    /// them are past.
    fn write_everyone(&mut self) -> Pass {
        let now = Instant::now();
        for tag in self.ready.drain(..) {
            if let Some(&i) = self.index.get(&tag) {
                self.clients[i].ready = false;
            }
        }
        let mut oldest_needed: [u64; VARIANTS] = std::array::from_fn(|v| self.logs[v].head());
        let mut pass = Pass::default();
        let mut i = 0;
        while i < self.clients.len() {
            pass.visited += 1;
            if !self.write_one(i, now) {
                continue; // forgotten: another client is at `i` now
            }
            let log = log_of(&self.logs, self.clients[i].variant);
            let client = &mut self.clients[i];
            if client.state != State::Closed {
                client.queue.skip_to_head(log);
                if let Some(v) = client.variant {
                    let oldest = &mut oldest_needed[v.index()];
                    *oldest = (*oldest).min(client.queue.next);
                }
            }
            i += 1;
        }
        for (log, oldest) in self.logs.iter_mut().zip(oldest_needed) {
            log.trim(oldest);
        }
        pass.more = !self.ready.is_empty();
        pass
    }

    /// A pass over the `ready` clients only.
    fn write_ready(&mut self) -> Pass {
        let now = Instant::now();
        let mut ready = std::mem::take(&mut self.ready);
        let mut pass = Pass::default();
        for &tag in &ready {
            let Some(&i) = self.index.get(&tag) else {
                continue;
            };
            pass.visited += 1;
            self.clients[i].ready = false;
            if self.write_one(i, now) && self.clients[i].state != State::Closed {
                let log = log_of(&self.logs, self.clients[i].variant);
                self.clients[i].queue.skip_to_head(log);
            }
        }
        // Those with more still due are back in `self.ready`.
        ready.clear();
        ready.append(&mut self.ready);
        self.ready = ready;
        pass.more = !self.ready.is_empty();
        pass
    }

    /// One write to client `i` if it is open. False if it was forgotten
    /// (another client is at `i` now).
    fn write_one(&mut self, i: usize, now: Instant) -> bool {
        if self.clients[i].state != State::Open {
            return true;
        }
        match self.write(i, now) {
            Sent::All => {}
            Sent::Blocked => {
                let tag = self.clients[i].tag;
                self.blocked.push(tag);
            }
            Sent::More => self.mark_ready(i),
            Sent::Closed(code) => {
                let client = &mut self.clients[i];
                client.state = State::Closed;
                client.deadline = None;
                // §7.1.1: having sent its Close, the server closes
                // TCP after the client's Close (the reader waits
                // for it); our half ends now.
                client.link.end(Ending::Closed(code));
                let _ = client.stream.shutdown(Shutdown::Write);
                if client.orphan {
                    self.forget(i);
                    return false;
                }
            }
            Sent::Failed(e) => {
                log::debug!("({}) write failed: {e}", self.clients[i].tag);
                self.fail(i);
                return false;
            }
        }
        true
    }
    /// One non-blocking vectored write of what is due for client `i`.
    fn write(&mut self, i: usize, now: Instant) -> Sent {
        let client = &self.clients[i];
        let log = log_of(&self.logs, client.variant);
        self.pieces.clear();
        let mut walk = client.queue.walk();
        let mut total = 0;
        let mut ends_in_close = None;
        while self.pieces.len() < MAX_PIECES && total < MAX_SEND_BYTES {
            let Some(piece) = client.queue.step(&mut walk, log) else {
                break;
            };
            let skip = if self.pieces.is_empty() {
                client.queue.offset
            } else {
                0
            };
            let bytes = &piece.bytes[skip..];
            total += bytes.len();
            self.pieces.push(IoVec {
                base: bytes.as_ptr(),
                len: bytes.len(),
            });
            if walk.ended {
                ends_in_close = Some(close_code(piece.bytes));
            }
        }
        if self.pieces.is_empty() {
            // Nothing due: the stall clock starts again from here.
            self.clients[i].last_progress = now;
            return Sent::All;
        }
        let complete = client.queue.step(&mut walk, log).is_none();
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
        if let Some(code) = ends_in_close
            && complete
        {
            return Sent::Closed(code);
        }
        if complete { Sent::All } else { Sent::More }
    }

    /// Moves client `i` past `written` bytes.
    fn advance(&mut self, i: usize, written: usize, now: Instant) {
        let metrics = &self.settings.metrics;
        metrics.bytes_out.fetch_add(written as u64, Relaxed);
        let log = log_of(&self.logs, self.clients[i].variant);
        let client = &mut self.clients[i];
        client.last_progress = now;
        let advanced = client.queue.advance(log, written);
        if advanced.released > 0 {
            client.link.release(advanced.released);
        }
        metrics.messages_out.fetch_add(advanced.pieces, Relaxed);
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
        let mut deadlines = false;
        let mut i = 0;
        while i < self.clients.len() {
            let client = &self.clients[i];
            if let Some(deadline) = client.deadline {
                deadlines = true;
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
            let behind = client.queue.behind(log);
            let held = client.queue.held(log);
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
                deadlines = true;
            }
            i += 1;
        }
        self.deadlines = deadlines;
    }

    /// Ends client `i`, a slow consumer: it keeps only the rest of the
    /// frame in flight and a Close 1008, written as its socket takes them
    /// within `CLOSE_WRITE_DEADLINE` (§7.1.2: a Close, then TCP ends). It
    /// no longer holds the log, and its reader is told to stop.
    fn cut(&mut self, i: usize, now: Instant) {
        self.leave_all(i);
        self.mark_ready(i);
        let log = log_of(&self.logs, self.clients[i].variant);
        let client = &self.clients[i];
        let mut last = Vec::new();
        if client.queue.offset > 0
            && let Some(piece) = client.queue.step(&mut client.queue.walk(), log)
        {
            last.extend_from_slice(&piece.bytes[client.queue.offset..]);
        }
        last.extend_from_slice(&encode_close(CloseCode::Policy, "slow_consumer", None));
        let client = &mut self.clients[i];
        for p in client.queue.private.drain(..) {
            if p.counted {
                client.link.release(p.cost);
            }
        }
        client.queue.private_cost = 0;
        client.queue.popped = 0;
        client.queue.pong = None;
        client.queue.own.clear();
        client.queue.own_bytes = 0;
        client.queue.gaps.clear();
        client.variant = None;
        client.queue.next = 0;
        client.queue.frame = 0;
        client.queue.offset = 0;
        client
            .queue
            .push_private(Position::default(), Bytes::Owned(last), Kind::Close, false);
        client.state = State::Open;
        client.deadline = Some(now + CLOSE_WRITE_DEADLINE);
        // Marked closed before the socket is, so that whoever sees the
        // socket end also sees the flag. Shutting the reading half wakes
        // the reader (it reads the end of the input), which sends the room
        // its Leave; the writing half stays open for the Close.
        client.link.end(Ending::SlowConsumer);
        let _ = client.stream.shutdown(Shutdown::Read);
    }

    /// Ends client `i`, whose socket failed: nothing more can be sent.
    fn fail(&mut self, i: usize) {
        let client = &self.clients[i];
        client.link.end(Ending::WriteFailed);
        let _ = client.stream.shutdown(Shutdown::Both);
        self.forget(i);
    }
}

/// Takes `tag` out of a list of members.
fn remove_member(members: &mut Vec<Tag>, tag: Tag) {
    if let Some(k) = members.iter().position(|&t| t == tag) {
        members.swap_remove(k);
    }
}

/// The status code of a Close frame as this server encodes it: unmasked,
/// with a payload under 126 bytes (§5.5), so the code is bytes 2 and 3
/// (§5.5.1); 1005 when it has none (§7.1.5).
fn close_code(frame: &[u8]) -> u16 {
    match frame {
        [_, len, high, low, ..] if *len >= 2 => u16::from_be_bytes([*high, *low]),
        _ => 1005,
    }
}

#[cfg(test)]
mod tests;
