//! A node's Redis threads, so that the node's loop (whatever applies the
//! room's order: it sends [`Job`]s, and takes [`Notice`]s from the
//! channel [`NodeThreads::spawn`] returns) never waits on Redis:
//!
//! - the **writer** takes this node's chat actions and appends them to
//!   the room's stream, pipelining whatever is waiting (one round trip
//!   for the lot);
//! - the **reader** waits in `XREAD BLOCK` after the last entry it has
//!   seen and hands new entries on, in stream order; when Redis goes away
//!   it reconnects with backoff and goes on from that same id, so no
//!   entry is missed or read twice;
//! - the **keeper** renews this node's heartbeat and, when another node's
//!   heartbeat expires and this node wins the claim, says so, for that
//!   node's members to be announced leaving.
//!
//! [`start_up`] runs before any of them, on the starting thread: it loads
//! the room's snapshot and catches up with the stream.

use super::client::{Backoff, RedisConnection, RedisError};
use super::nodes::NodeId;
use super::replica::{Applied, ROOM, Record, Replica, node_number};
use super::stream::{AppendKey, Appended, Entry, Store, StreamId};
use super::url::RedisUrl;
use crate::metrics::Metrics;
use crate::room::{Action, Epoch, Limits, Output};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a node renews its heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a heartbeat lasts: three missed beats and the node counts as
/// dead, so its members are announced as gone within about four seconds.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(3);
/// How long a claim to clean up a dead node lasts: if the claimer dies
/// before it is done, another node takes over after this.
pub const CLEANUP_CLAIM_TTL: Duration = Duration::from_secs(10);
/// How long one `XREAD BLOCK` waits before asking again (and the longest
/// a stopping reader takes to notice).
pub const READ_BLOCK_MS: u64 = 1000;
/// Entries asked for per read, at most (see [`ReadSize`]).
pub const READ_COUNT: usize = 1000;
/// The bytes of entries one read aims at: `XREAD` can only be told how
/// many entries to give, so the count is fitted to the size of the
/// entries lately read (see [`ReadSize`]).
pub const READ_BYTES: usize = 16 * 1024 * 1024;
/// Actions appended in one pipeline, at most...
pub const WRITE_BATCH: usize = 256;
/// ... and the most bytes of messages in one pipeline (at least one
/// action goes, whatever its size): a burst of large messages is written
/// in several round trips rather than one of hundreds of MiB.
pub const WRITE_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Actions waiting for the writer; when full, a message is refused with
/// `unavailable` rather than the node's loop waiting on Redis.
pub const JOB_QUEUE: usize = 16 * 1024;
/// Actions kept for retrying while Redis is away: every leave (a leave
/// must not be lost, or the member would stay in every replica), and
/// every action whose append may have been stored (its reply was lost);
/// beyond this, dropped and logged.
pub const MAX_RETRIED: usize = 100_000;
/// Reconnection delays: from this...
pub const RECONNECT_BASE: Duration = Duration::from_millis(50);
/// ... doubling up to this (with jitter, see `Backoff`): a Redis that
/// restarts in a second is found again within about a second.
pub const RECONNECT_MAX: Duration = Duration::from_secs(1);
/// How often the writer tries leaves again while Redis is away.
const RETRY_WAIT: Duration = Duration::from_millis(200);
/// How long a message whose append may have been stored (its reply was
/// lost) is retried before its sender is told `unavailable`: a Redis
/// that is only restarting is back well within it, and the retry, safe
/// thanks to its key, settles whether it was stored. Past it the sender
/// is told, though Redis, if it kept the message, shows it when back.
pub const IN_FLIGHT_RETRY: Duration = Duration::from_secs(5);
/// How often a node stores a snapshot of its replica, if anything changed.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(2);

/// What cluster mode is told on the command line.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub url: RedisUrl,
    pub node: NodeId,
    /// Entries the stream keeps, about (`MAXLEN ~`).
    pub stream_maxlen: usize,
    /// The chat's limits (every node must be given the same: each
    /// replica applies them to the same entries).
    pub limits: Limits,
}

/// Work for the writer thread, done in order.
#[derive(Debug)]
pub enum Job {
    Append(Record),
    /// Announce a dead node's members as gone, then forget the node.
    Cleanup {
        node: NodeId,
        leaves: Vec<Record>,
    },
    Snapshot {
        after: StreamId,
        body: String,
    },
    /// Stopping cleanly: drop the heartbeat and leave the set of nodes.
    Goodbye,
}

/// What the Redis threads tell the node's loop, on their own channel.
#[derive(Debug)]
pub enum Notice {
    /// New stream entries, oldest first.
    Entries(Vec<Entry>),
    /// This node's action could not be appended (Redis unreachable).
    Refused(Record),
    /// This node claimed the cleanup of a dead node.
    NodeDead(NodeId),
    /// Redis lost the stream's history: the entries that follow belong to
    /// this new epoch (sent before any of them).
    Epoch(Epoch),
}

/// A node ready to run: its Redis connection, its number, and its replica
/// caught up with the stream.
#[derive(Debug)]
pub struct Startup {
    pub store: Store,
    pub number: u64,
    pub replica: Replica,
}

/// Connects, takes a node number, checks that the cluster runs with this
/// node's room limits, loads the snapshot, applies the stream
/// after it, announces as gone the members an earlier run of this node
/// left behind, and sends the first heartbeat. Errors are one line.
pub fn start_up(settings: &NodeSettings, metrics: &Metrics) -> Result<Startup, String> {
    let fail = |e: RedisError| format!("redis at {}: {e}", settings.url.address());
    let redis = RedisConnection::connect(&settings.url).map_err(fail)?;
    let mut store = Store::new(redis, settings.stream_maxlen);
    let mut number = store.next_node_number().map_err(fail)?;
    let epoch = store.epoch(ROOM, &Epoch::fresh()).map_err(fail)?;
    // Every replica applies the room limits to the same entries: copies
    // with other limits would disagree on who is in which room.
    let limits = limit_flags(&settings.limits);
    let shared = store
        .share_limits(ROOM, &limits, HEARTBEAT_TTL)
        .map_err(fail)?;
    if shared != limits {
        return Err(format!(
            "the cluster runs with {shared}, this node was started with {limits}: every node needs the same room limits"
        ));
    }
    let stored = match store.load_snapshot(ROOM) {
        // Larger than a reply may be (a history of the largest messages,
        // JSON-escaped): the stream alone is read instead.
        Err(e @ (RedisError::ReplyTooLarge | RedisError::Protocol(_))) => {
            log::warn!("cluster: ignoring the stored snapshot: {e}");
            store.redis().reconnect().map_err(fail)?;
            None
        }
        other => other.map_err(fail)?,
    };
    let mut replica = match stored {
        Some(text) => Replica::restore(&text, settings.limits, &epoch).unwrap_or_else(|e| {
            log::warn!("cluster: ignoring the stored snapshot: {e}");
            Replica::new(settings.limits, epoch.clone())
        }),
        None => Replica::new(settings.limits, epoch.clone()),
    };
    let loaded = replica.last_id;
    let mut applied = 0;
    let mut discard = Vec::new();
    let mut size = ReadSize::default();
    loop {
        let entries = match store.read_after(ROOM, replica.last_id, 0, size.count) {
            Err(RedisError::ReplyTooLarge) if size.count > 1 => {
                size.too_large();
                store.redis().reconnect().map_err(fail)?;
                continue;
            }
            other => other.map_err(fail)?,
        };
        if entries.is_empty() {
            break;
        }
        size.after(&entries);
        for entry in entries {
            apply_quietly(&mut replica, &entry, metrics, &mut discard);
            applied += 1;
        }
    }
    // A counter Redis lost (and running nodes have not raised again yet)
    // may have given a number whose clients are still here.
    let in_use = replica.chat.client_ids().map(node_number).max();
    if let Some(highest) = in_use.filter(|highest| number <= *highest) {
        log::warn!(
            "cluster: node number {number} is still in use (redis lost its data); taking another"
        );
        store.keep_node_number(highest).map_err(fail)?;
        number = store.next_node_number().map_err(fail)?;
    }
    log::info!(
        "cluster: node {} (number {number}) loaded the chat at {loaded}, applied {applied} entries after it; {} clients, {} rooms, {} bytes of history, epoch {epoch}",
        settings.node,
        replica.chat.len(),
        replica.chat.room_count(),
        replica.chat.history_bytes()
    );
    // Members of an earlier run of this node: nobody is connected to them.
    let left_behind = replica.members_of(settings.node.as_str());
    if !left_behind.is_empty() {
        log::info!(
            "cluster: announcing {} members of an earlier run of {} as gone",
            left_behind.len(),
            settings.node
        );
        let leaves: Vec<_> = left_behind
            .into_iter()
            .map(|id| Record::leave(id, &settings.node).fields())
            .collect();
        for result in store.append_many(ROOM, &leaves).map_err(fail)? {
            result.map_err(fail)?;
        }
    }
    store
        .heartbeat(&settings.node, HEARTBEAT_TTL)
        .map_err(fail)?;
    Ok(Startup {
        store,
        number,
        replica,
    })
}

/// The room limits as the flags that set them, the form the cluster
/// shares them in (and an error shows them in).
pub fn limit_flags(limits: &Limits) -> String {
    format!(
        "--history {} --max-rooms {} --max-rooms-per-client {} --max-room-members {} --room-history-bytes {}",
        limits.history,
        limits.max_rooms,
        limits.max_rooms_per_client,
        limits.max_room_members,
        limits.room_history_bytes
    )
}

/// Applies an entry with no local clients to tell (start-up).
fn apply_quietly(
    replica: &mut Replica,
    entry: &Entry,
    metrics: &Metrics,
    discard: &mut Vec<Output>,
) {
    let (Some(seq), Ok(record)) = (entry.seq(), Record::decode(entry)) else {
        log::warn!("cluster: skipping malformed entry {}", entry.id);
        return;
    };
    if let Applied::Done { missed } = replica.apply(entry.id, seq, record, discard) {
        count_missed(metrics, missed);
    }
    discard.clear();
}

/// Logs and counts entries trimmed before this node read them.
pub fn count_missed(metrics: &Metrics, missed: u64) {
    if missed > 0 {
        metrics.cluster_gaps.fetch_add(missed, Relaxed);
        log::warn!("cluster: {missed} stream entries were trimmed before this node read them");
    }
}

/// How many entries the next read asks for. `XREAD` bounds a reply only
/// by its number of entries, and entries range from a few bytes to the
/// largest message the flags allow: after a read, the count is fitted so
/// that entries as large as the largest just read make about
/// [`READ_BYTES`] (down to 1 after a huge entry), and it grows back by
/// doubling while entries are small. A reply still too large for the
/// client (larger entries than any before) makes it 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadSize {
    pub count: usize,
}

impl Default for ReadSize {
    fn default() -> ReadSize {
        ReadSize { count: READ_COUNT }
    }
}

impl ReadSize {
    /// Fits the count to the entries just read.
    pub fn after(&mut self, entries: &[Entry]) {
        if entries.is_empty() {
            return; // a wait that timed out says nothing about sizes
        }
        let largest = entries
            .iter()
            .map(|entry| {
                entry
                    .fields
                    .iter()
                    .map(|(name, value)| name.len() + value.len())
                    .sum::<usize>()
            })
            .max()
            .unwrap_or(0)
            .max(1);
        let fits = (READ_BYTES / largest).clamp(1, READ_COUNT);
        self.count = fits.min(self.count.saturating_mul(2)).max(1);
    }

    /// The last reply was over the client's limit.
    pub fn too_large(&mut self) {
        self.count = 1;
    }
}

/// Notices waiting for the node's loop (entries read, refusals, dead
/// nodes). Bounded: a reader that gets ahead waits for the loop.
pub const NOTICE_QUEUE: usize = 16 * 1024;

/// The running Redis threads of a node: the writer's queue of [`Job`]s
/// in, and (returned by [`NodeThreads::spawn`]) their [`Notice`]s out.
pub struct NodeThreads {
    jobs: Option<Sender<Job>>,
    /// False while Redis cannot be reached.
    pub up: Arc<AtomicBool>,
    pub node: NodeId,
    pub number: u64,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
}

impl NodeThreads {
    /// Starts the writer, reader and keeper threads; the reader reads
    /// after `replica`'s last entry, in its epoch. Returns the threads and
    /// the channel of their notices, in the order they happened.
    pub fn spawn(
        settings: &NodeSettings,
        store: Store,
        number: u64,
        replica: &Replica,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(NodeThreads, Receiver<Notice>)> {
        let connect = || {
            RedisConnection::connect(&settings.url)
                .map(|redis| Store::new(redis, settings.stream_maxlen))
                .map_err(|e| std::io::Error::other(format!("redis: {e}")))
        };
        let (reader_store, keeper_store) = (connect()?, connect()?);
        let up = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (jobs, queue) = crossbeam_channel::bounded(JOB_QUEUE);
        let (notices, notices_out) = crossbeam_channel::bounded(NOTICE_QUEUE);
        let writer = {
            let writer = Writer::new(
                store,
                &settings.node,
                number,
                notices.clone(),
                up.clone(),
                metrics.clone(),
            );
            std::thread::Builder::new()
                .name("wschat-cluster-writer".into())
                .spawn(move || writer.run(queue))?
        };
        {
            let (notices, up, metrics, stop) =
                (notices.clone(), up.clone(), metrics.clone(), stop.clone());
            let position = ReadPosition {
                after: replica.last_id,
                seq: replica.last_seq,
                epoch: replica.chat.epoch().clone(),
            };
            std::thread::Builder::new()
                .name("wschat-cluster-reader".into())
                .spawn(move || {
                    read_loop(reader_store, number, position, notices, up, metrics, stop)
                })?;
        }
        {
            let (node, stop) = (settings.node.clone(), stop.clone());
            let limits = limit_flags(&settings.limits);
            std::thread::Builder::new()
                .name("wschat-cluster-keeper".into())
                .spawn(move || keep_loop(keeper_store, node, limits, notices, stop))?;
        }
        up.store(true, Relaxed);
        let threads = NodeThreads {
            jobs: Some(jobs),
            up,
            node: settings.node.clone(),
            number,
            stop,
            writer: Some(writer),
        };
        Ok((threads, notices_out))
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    /// Queues a job without waiting; false if the queue is full.
    pub fn try_send(&self, job: Job) -> bool {
        self.jobs
            .as_ref()
            .is_some_and(|jobs| jobs.try_send(job).is_ok())
    }

    /// Queues a job, waiting for room (for leaves, which must not be lost).
    pub fn send(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }

    /// Stops the threads after the writer has done what is queued (at
    /// most its Redis timeouts).
    pub fn finish(&mut self) {
        self.stop.store(true, Relaxed);
        self.jobs = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// An action on its way to the stream, with its idempotency key.
struct Outgoing {
    record: Record,
    /// This writer's counter for it (see `Store::append_keyed`).
    counter: u64,
    /// When it was first sent without an answer: it may be stored, so
    /// it is sent again (the key makes that safe) rather than refused,
    /// for up to `IN_FLIGHT_RETRY`.
    maybe_stored: Option<Instant>,
}

/// One turn's jobs, sorted: the appends in order, and what follows them.
#[derive(Default)]
struct Turn {
    outgoing: Vec<Outgoing>,
    forget: Vec<NodeId>,
    snapshot: Option<(StreamId, String)>,
    goodbye: bool,
}

/// The writer thread: appends this node's actions, pipelined, each with a
/// key that makes a retry safe.
struct Writer {
    store: Store,
    node: NodeId,
    /// This run's name for its keys: node numbers are never given twice,
    /// so its keys are its own.
    key_prefix: String,
    counter: u64,
    retry: VecDeque<Outgoing>,
    backoff: Backoff,
    next_attempt: Instant,
    notices: Sender<Notice>,
    up: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl Writer {
    fn new(
        store: Store,
        node: &NodeId,
        number: u64,
        notices: Sender<Notice>,
        up: Arc<AtomicBool>,
        metrics: Arc<Metrics>,
    ) -> Writer {
        Writer {
            store,
            node: node.clone(),
            key_prefix: format!("{node}#{number}"),
            counter: 0,
            retry: VecDeque::new(),
            backoff: Backoff::new(RECONNECT_BASE, RECONNECT_MAX),
            next_attempt: Instant::now(),
            notices,
            up,
            metrics,
        }
    }

    /// Until the queue closes: take what is waiting, reconnect if due,
    /// append, then do what follows the appends.
    fn run(mut self, queue: Receiver<Job>) {
        while let Some(batch) = self.next_batch(&queue) {
            self.reconnect_if_due();
            let turn = self.sort(batch);
            if !self.store.redis().is_connected() {
                self.up.store(false, Relaxed);
                refuse(turn.outgoing, &mut self.retry, &self.notices);
                continue;
            }
            if !self.append(turn.outgoing) {
                continue;
            }
            self.after_appends(turn.forget, turn.snapshot, turn.goodbye);
        }
    }

    /// The jobs waiting, up to [`WRITE_BATCH`] or [`WRITE_BATCH_BYTES`];
    /// empty after [`RETRY_WAIT`] when there is something to retry; None
    /// once the queue is closed.
    fn next_batch(&self, queue: &Receiver<Job>) -> Option<Vec<Job>> {
        let first = if self.retry.is_empty() {
            Some(queue.recv().ok()?)
        } else {
            match queue.recv_timeout(RETRY_WAIT) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        };
        let mut batch: Vec<Job> = first.into_iter().collect();
        let mut batch_bytes = batch.iter().map(job_bytes).sum::<usize>();
        while batch.len() < WRITE_BATCH && batch_bytes < WRITE_BATCH_BYTES {
            match queue.try_recv() {
                Ok(job) => {
                    batch_bytes += job_bytes(&job);
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        Some(batch)
    }

    fn reconnect_if_due(&mut self) {
        if self.store.redis().is_connected() || Instant::now() < self.next_attempt {
            return;
        }
        match self.store.redis().reconnect() {
            Ok(()) => {
                self.metrics.redis_reconnects.fetch_add(1, Relaxed);
                log::info!("cluster: writer reconnected to redis");
                self.backoff.reset();
            }
            Err(e) => {
                log::warn!("cluster: writer cannot reach redis: {e}");
                self.next_attempt = Instant::now() + self.backoff.next().unwrap_or(RETRY_WAIT);
            }
        }
    }

    /// What is retried goes first, in its order (keys must grow in the
    /// order they are sent), then the batch's appends, each numbered.
    fn sort(&mut self, batch: Vec<Job>) -> Turn {
        let mut turn = Turn {
            outgoing: self.retry.drain(..).collect(),
            ..Turn::default()
        };
        let mut add = |record: Record, outgoing: &mut Vec<Outgoing>| {
            self.counter += 1;
            outgoing.push(Outgoing {
                record,
                counter: self.counter,
                maybe_stored: None,
            });
        };
        for job in batch {
            match job {
                Job::Append(record) => add(record, &mut turn.outgoing),
                Job::Cleanup { node, leaves } => {
                    for leave in leaves {
                        add(leave, &mut turn.outgoing);
                    }
                    turn.forget.push(node);
                }
                Job::Snapshot { after, body } => turn.snapshot = Some((after, body)),
                Job::Goodbye => turn.goodbye = true,
            }
        }
        turn
    }

    /// Appends in one pipeline. False if the reply was lost: then every
    /// action waits to be sent again with the same key.
    fn append(&mut self, outgoing: Vec<Outgoing>) -> bool {
        let fields: Vec<_> = outgoing
            .iter()
            .map(|o| {
                let key = AppendKey {
                    writer: &self.key_prefix,
                    counter: o.counter,
                };
                (key, o.record.fields())
            })
            .collect();
        let started = Instant::now();
        let results = match self.store.append_keyed(ROOM, &fields) {
            Ok(results) => results,
            Err(e) => {
                // The reply was lost: some of these may have been stored.
                // They are sent again with the same keys, which stores
                // each exactly once (see docs/14-cluster.md).
                log::warn!("cluster: appending failed: {e}; retrying with the same keys");
                self.up.store(false, Relaxed);
                for mut sent in outgoing {
                    sent.maybe_stored.get_or_insert_with(Instant::now);
                    keep_for_retry(sent, &mut self.retry);
                }
                self.next_attempt = Instant::now();
                return false;
            }
        };
        self.up.store(true, Relaxed);
        if !outgoing.is_empty() {
            self.metrics.redis_round_trips.fetch_add(1, Relaxed);
            let micros = started.elapsed().as_micros() as u64;
            self.metrics
                .redis_round_trip_micros
                .fetch_add(micros, Relaxed);
        }
        let mut refused = Vec::new();
        for (mut sent, result) in outgoing.into_iter().zip(results) {
            match result {
                Ok(Appended::New(..)) => {
                    self.metrics.cluster_entries_out.fetch_add(1, Relaxed);
                }
                Ok(Appended::Duplicate) => {
                    log::info!("cluster: an append retried after a lost reply was stored already");
                }
                Err(e) => {
                    log::error!("Error: cluster: redis refused an entry: {e}");
                    // Refused outright: not stored.
                    sent.maybe_stored = None;
                    refused.push(sent);
                }
            }
        }
        refuse(refused, &mut self.retry, &self.notices);
        true
    }

    /// Forgets dead nodes, stores a snapshot, leaves the set of nodes: in
    /// that order, after the appends they follow.
    fn after_appends(
        &mut self,
        forget: Vec<NodeId>,
        snapshot: Option<(StreamId, String)>,
        goodbye: bool,
    ) {
        for node in forget {
            match self.store.forget_node(&node) {
                Ok(()) => log::info!("cluster: cleaned up after node {node}"),
                Err(e) => log::warn!("cluster: forgetting node {node}: {e}"),
            }
        }
        if let Some((after, body)) = snapshot
            && let Err(e) = self.store.save_snapshot(ROOM, after, &body)
        {
            log::warn!("cluster: storing the snapshot: {e}");
        }
        if goodbye && let Err(e) = self.store.leave_cluster(&self.node) {
            log::warn!("cluster: leaving the set of nodes: {e}");
        }
    }
}

/// The bytes of messages a job carries (for `WRITE_BATCH_BYTES`).
fn job_bytes(job: &Job) -> usize {
    match job {
        Job::Append(Record {
            action: Action::Text { text, .. },
            ..
        }) => text.len(),
        Job::Append(Record {
            action: Action::Binary { data, .. },
            ..
        }) => data.len(),
        _ => 0,
    }
}

fn keep_for_retry(sent: Outgoing, retry: &mut VecDeque<Outgoing>) {
    if retry.len() < MAX_RETRIED {
        retry.push_back(sent);
    } else {
        log::error!(
            "Error: cluster: too many actions waiting for redis; ({}) dropped",
            sent.record.client()
        );
    }
}

/// Actions that could not be appended: leaves, and for a while actions
/// that may have been stored, wait to be retried; the others go back to
/// the node's loop to be answered.
fn refuse(outgoing: Vec<Outgoing>, retry: &mut VecDeque<Outgoing>, notices: &Sender<Notice>) {
    for sent in outgoing {
        let in_flight = sent
            .maybe_stored
            .is_some_and(|since| since.elapsed() < IN_FLIGHT_RETRY);
        if in_flight || matches!(sent.record.action, Action::Leave { .. }) {
            keep_for_retry(sent, retry);
        } else if notices.try_send(Notice::Refused(sent.record)).is_err() {
            // Never wait here: the node's loop may itself be waiting for
            // room in this thread's queue.
            log::warn!(
                "cluster: a refused message could not be reported (the node's loop is busy)"
            );
        }
    }
}

/// Where the reader is: after this entry, with this sequence number, in
/// this epoch.
struct ReadPosition {
    after: StreamId,
    seq: u64,
    epoch: Epoch,
}

/// Reads the stream in order and hands the entries on, as notices.
///
/// It also watches for Redis losing the stream's history: after every
/// reconnection (a Redis restart drops every connection), and whenever the
/// sequence numbers go back (data lost with no disconnection seen), it
/// asks for the epoch ([`Store::epoch`], which stores a fresh one if the
/// key went with the data). A changed epoch is told
/// before any entry read after it, so every node starts the new epoch at
/// the same place in the order; and the node counter, lost with it, is
/// raised back to this node's `number` ([`Store::keep_node_number`]).
fn read_loop(
    mut store: Store,
    number: u64,
    mut at: ReadPosition,
    notices: Sender<Notice>,
    up: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) {
    let mut backoff = Backoff::new(RECONNECT_BASE, RECONNECT_MAX);
    let mut size = ReadSize::default();
    let mut check_epoch = false;
    // The epoch was checked right before this read: numbers going back
    // are then taken as they are (the counter alone was reset).
    let mut checked = false;
    while !stop.load(Relaxed) {
        let read = if check_epoch {
            store.epoch(ROOM, &Epoch::fresh()).and_then(|epoch| {
                if epoch == at.epoch {
                    (check_epoch, checked) = (false, true);
                    return Ok(None);
                }
                // The node counter went with the data: a node started
                // from now on must not be given this one's number.
                store.keep_node_number(number)?;
                (check_epoch, checked) = (false, true);
                log::warn!(
                    "cluster: redis lost the stream's history (epoch {} is now {epoch}); ids start again",
                    at.epoch
                );
                at.epoch = epoch.clone();
                at.seq = 0;
                Ok(Some(epoch))
            })
        } else {
            Ok(None)
        };
        let read = read.and_then(|epoch| {
            if let Some(epoch) = epoch
                && notices.send(Notice::Epoch(epoch)).is_err()
            {
                return Ok(None);
            }
            store
                .read_after(ROOM, at.after, READ_BLOCK_MS, size.count)
                .map(Some)
        });
        match read {
            Ok(None) => return, // the node's loop is gone
            Ok(Some(entries)) => {
                up.store(true, Relaxed);
                backoff.reset();
                let first_seq = entries.iter().find_map(Entry::seq);
                let just_checked = std::mem::take(&mut checked);
                if !just_checked && at.seq > 0 && first_seq.is_some_and(|seq| seq <= at.seq) {
                    check_epoch = true;
                    continue; // read them again once the epoch is known
                }
                size.after(&entries);
                if let Some(last) = entries.last() {
                    at.after = last.id;
                    at.seq = entries.iter().rev().find_map(Entry::seq).unwrap_or(at.seq);
                    if notices.send(Notice::Entries(entries)).is_err() {
                        return;
                    }
                }
            }
            Err(RedisError::ReplyTooLarge) if size.count > 1 => {
                // Entries larger than any before: ask for one at a time,
                // at once (nothing is wrong with Redis).
                log::info!(
                    "cluster: {} entries made a reply too large; reading one at a time",
                    size.count
                );
                size.too_large();
                match store.redis().reconnect() {
                    Ok(()) => check_epoch = true,
                    Err(e) => log::warn!("cluster: reader cannot reach redis: {e}"),
                }
            }
            Err(e) => {
                up.store(false, Relaxed);
                log::warn!("cluster: reading the stream failed: {e}; reconnecting");
                if !reconnect_reader(&mut store, &mut backoff, &stop) {
                    return;
                }
                up.store(true, Relaxed);
                metrics.redis_reconnects.fetch_add(1, Relaxed);
                log::info!("cluster: reader reconnected; reading after {}", at.after);
                check_epoch = true;
            }
        }
    }
}

/// Reconnects with backoff until it works (true) or the node stops.
fn reconnect_reader(store: &mut Store, backoff: &mut Backoff, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Relaxed) {
            return false;
        }
        std::thread::sleep(backoff.next().unwrap_or(RETRY_WAIT));
        match store.redis().reconnect() {
            Ok(()) => return true,
            Err(e) => log::warn!("cluster: reader cannot reach redis: {e}"),
        }
    }
}

/// The keeper: a heartbeat every `HEARTBEAT_INTERVAL`, then, once this
/// node has been beating without a break for a whole `HEARTBEAT_TTL`
/// (never right after Redis or this node was away: everyone's keys may
/// have expired meanwhile), a look for dead nodes. Whether a node is dead
/// is decided by Redis, in one clock, on positive evidence
/// (`Store::claim_cleanup`).
fn keep_loop(
    mut store: Store,
    node: NodeId,
    limits: String,
    notices: Sender<Notice>,
    stop: Arc<AtomicBool>,
) {
    let tick = Duration::from_millis(50);
    let mut other_limits_seen = false;
    let mut next = Instant::now() + HEARTBEAT_INTERVAL;
    while !stop.load(Relaxed) {
        if Instant::now() < next {
            std::thread::sleep(tick);
            continue;
        }
        next = Instant::now() + HEARTBEAT_INTERVAL;
        if !store.redis().is_connected() && store.redis().reconnect().is_err() {
            continue;
        }
        let run = match store.heartbeat(&node, HEARTBEAT_TTL) {
            Ok(run) => run,
            Err(e) => {
                log::warn!("cluster: heartbeat failed: {e}");
                continue;
            }
        };
        // Renewed with the heartbeat, so they last while a node runs.
        match store.share_limits(ROOM, &limits, HEARTBEAT_TTL) {
            Ok(shared) if shared != limits && !other_limits_seen => {
                // Only a node started while Redis was away or empty can
                // have stored them: its replica and this one may disagree.
                log::error!(
                    "cluster: a node stored the room limits {shared}, this node runs with {limits}; restart the nodes with the same ones"
                );
                other_limits_seen = true;
            }
            Ok(_) => {}
            Err(e) => log::warn!("cluster: renewing the room limits failed: {e}"),
        }
        if run < HEARTBEAT_TTL {
            continue; // the grace after a break: see above
        }
        let dead = match store.dead_nodes() {
            Ok(dead) => dead,
            Err(e) => {
                log::warn!("cluster: listing nodes failed: {e}");
                continue;
            }
        };
        for gone in dead.into_iter().filter(|gone| *gone != node) {
            match store.claim_cleanup(&gone, &node, CLEANUP_CLAIM_TTL, HEARTBEAT_TTL) {
                Ok(true) => {
                    log::info!(
                        "cluster: node {gone} stopped sending heartbeats; announcing its members as gone"
                    );
                    if notices.send(Notice::NodeDead(gone)).is_err() {
                        return;
                    }
                }
                Ok(false) => {}
                Err(e) => log::warn!("cluster: claiming the cleanup of {gone}: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry_of(bytes: usize) -> Entry {
        Entry {
            id: StreamId::ZERO,
            fields: vec![("text".into(), vec![b'x'; bytes])],
        }
    }

    #[test]
    fn the_read_count_fits_the_entries_lately_read() {
        let mut size = ReadSize::default();
        assert_eq!(size.count, READ_COUNT);
        // Small entries: the most entries a read may ask for.
        size.after(&[entry_of(100)]);
        assert_eq!(size.count, READ_COUNT);
        // 4 MiB entries: four make READ_BYTES.
        size.after(&[entry_of(100), entry_of(4 << 20)]);
        assert_eq!(size.count, READ_BYTES / ((4 << 20) + 4));
        // One larger than READ_BYTES: one at a time.
        size.after(&[entry_of(READ_BYTES + 1)]);
        assert_eq!(size.count, 1);
        // Back to small ones: the count doubles back up to READ_COUNT.
        let mut counts = Vec::new();
        while size.count < READ_COUNT {
            size.after(&[entry_of(10)]);
            counts.push(size.count);
        }
        assert_eq!(&counts[..4], &[2, 4, 8, 16]);
        // Nothing read: no change.
        size.after(&[]);
        assert_eq!(size.count, READ_COUNT);
        size.too_large();
        assert_eq!(size.count, 1);
    }
}
