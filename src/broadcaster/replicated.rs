//! The broadcaster in cluster mode (`--redis`): the same loop around the
//! same `Chat`, but the chat changes only by entries read back from the
//! cluster's Redis stream, in stream order — this node's own actions
//! included. Local actions go to the cluster writer thread to be appended;
//! what comes back is applied, and the outputs go to this node's clients
//! (delivery knows no others: a broadcast reaches the local ones, a reply
//! to another node's client is dropped).
//!
//! So every node applies one sequence of actions to one piece of code,
//! and all replicas agree (state-machine replication); no lock is needed
//! for the order of messages, for presence, or for a `/nick` race.

use super::outbox::Outbox;
use super::{Broadcaster, EVENT_QUEUE, Event, JoinReply, Watch};
use crate::cluster::node::{
    self, Job, NodeSettings, NodeThreads, Notice, SNAPSHOT_INTERVAL, Startup,
};
use crate::cluster::replica::{Applied, Record, Replica, node_number};
use crate::cluster::stream::Entry;
use crate::delivery::{Delivery, Endpoint};
use crate::metrics::Metrics;
use crate::protocol::close::CloseCode;
use crate::protocol::frame::encode_close;
use crate::room::{
    Action, ClientId, ErrorCode, Mode, Output, Resume, RoomName, Visitor, error_event, now_ms,
};
use crossbeam_channel::{Receiver, Sender, select};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Instant;

/// What `--redis` shows a client whose message could not be sent.
const UNAVAILABLE_TEXT: &str = "the chat cannot reach its Redis right now; message not sent";

/// A local client waiting for its join entry to come back from the stream.
struct PendingJoin {
    peer: SocketAddr,
    endpoint: Box<Endpoint>,
    joined: JoinReply,
    resume: Option<Resume>,
}

struct Replicated {
    replica: Replica,
    threads: NodeThreads,
    outbox: Outbox,
    metrics: Arc<Metrics>,
    pending_joins: HashMap<ClientId, PendingJoin>,
    /// This node's clients that are connected and in the room: the ones
    /// to repair if the order says they left (see `apply`).
    connected: HashSet<ClientId>,
    /// Applied entries since the last snapshot was stored.
    changed: bool,
    last_snapshot: Instant,
}

/// Whether the loop goes on after an event.
enum Next {
    Go,
    Stop,
}

impl Broadcaster {
    /// Starts the broadcaster for cluster mode, and the Redis threads that
    /// feed it. Returns the sender the readers use, the thread, and the
    /// flag that is false while Redis cannot be reached.
    pub fn spawn_cluster(
        settings: &NodeSettings,
        startup: Startup,
        delivery: Arc<Delivery>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Sender<Event>, std::thread::JoinHandle<()>, Arc<AtomicBool>)> {
        let (tx, rx) = crossbeam_channel::bounded(EVENT_QUEUE);
        let Startup {
            store,
            number,
            replica,
        } = startup;
        let (threads, notices) =
            NodeThreads::spawn(settings, store, number, &replica, metrics.clone())?;
        let up = threads.up.clone();
        let state = Replicated {
            replica,
            threads,
            outbox: Outbox::new(delivery, metrics.clone()),
            metrics,
            pending_joins: HashMap::new(),
            connected: HashSet::new(),
            changed: false,
            last_snapshot: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("wschat-broadcaster".into())
            .spawn(move || state.run(rx, notices))?;
        Ok((tx, thread, up))
    }
}

impl Replicated {
    /// Readers' events and the Redis threads' notices, as they come; a
    /// snapshot when one is due.
    fn run(mut self, events: Receiver<Event>, notices: Receiver<Notice>) {
        let mut watch = Watch::new(self.metrics.clone());
        loop {
            select! {
                recv(events) -> event => match event.map(|event| self.on_event(event)) {
                    Ok(Next::Go) => {}
                    Ok(Next::Stop) => {
                        watch.clean_shutdown();
                        return self.shutdown();
                    }
                    Err(_) => return,
                },
                recv(notices) -> notice => match notice {
                    Ok(notice) => self.on_notice(notice),
                    Err(_) => {
                        log::error!("Error: cluster: the redis threads stopped");
                        return;
                    }
                },
                default(SNAPSHOT_INTERVAL) => {
                    self.snapshot_if_due();
                    continue;
                }
            }
            if self
                .outbox
                .flush_if_due(events.is_empty() && notices.is_empty())
            {
                self.snapshot_if_due();
            }
        }
    }

    /// A local client's event: its action goes to the stream, to be
    /// applied when read back.
    fn on_event(&mut self, event: Event) -> Next {
        match event {
            Event::Join {
                id,
                peer,
                mode,
                endpoint,
                joined,
                resume,
                rooms,
                visitor,
            } => {
                let pending = PendingJoin {
                    peer,
                    endpoint,
                    joined,
                    resume,
                };
                // This node's replica knows every ban made on any node
                // (a ban is an entry like any other): a banned visitor is
                // turned away here, 403, before it costs an entry.
                if let Err(reason) = self.replica.chat.admission(&visitor, now_ms()) {
                    log::info!("({id}) {peer} turned away: {reason}");
                    pending.joined.ban(reason);
                    return Next::Go;
                }
                let join = Record::join(id, mode, rooms, *visitor, &self.threads.node);
                // Refused (Redis away, or the writer's queue full): the
                // pending join is dropped, and the reader answers 503.
                if self.threads.is_up() && self.threads.try_send(Job::Append(join)) {
                    self.pending_joins.insert(id, pending);
                }
            }
            Event::Text { id, text } => self.append_or_refuse(Action::Text { id, text }),
            Event::Binary { id, data } => self.append_or_refuse(Action::Binary { id, data }),
            Event::Refresh { id, identity } => {
                self.append_or_refuse(Action::Refresh { id, identity })
            }
            Event::Leave { id } => {
                self.pending_joins.remove(&id);
                self.connected.remove(&id);
                self.outbox.remove_client(id);
                // Waits if the queue is full: a lost leave would leave a
                // ghost member in every replica.
                self.announce_leave(id);
            }
            Event::Shutdown => return Next::Stop,
        }
        Next::Go
    }

    /// What the Redis threads found.
    fn on_notice(&mut self, notice: Notice) {
        match notice {
            Notice::Entries(entries) => {
                for entry in entries {
                    self.apply(entry);
                }
            }
            Notice::Refused(record) => match record.action {
                Action::Join { id, .. } => {
                    if let Some(pending) = self.pending_joins.remove(&id) {
                        log::warn!("({id}) {} could not join: redis unavailable", pending.peer);
                    }
                }
                Action::Text { id, .. }
                | Action::Binary { id, .. }
                | Action::Refresh { id, .. } => self.refuse(id),
                Action::Leave { .. } => {}
            },
            Notice::Epoch(epoch) => {
                log::warn!(
                    "cluster: the history of epoch {} is lost; epoch {epoch} starts",
                    self.replica.chat.epoch()
                );
                self.replica.start_epoch(epoch);
                self.changed = true;
            }
            Notice::NodeDead(node) => {
                let leaves: Vec<Record> = self
                    .replica
                    .members_of(node.as_str())
                    .into_iter()
                    .map(|id| Record::leave(id, &self.threads.node))
                    .collect();
                log::info!("cluster: {} members of node {node} leave", leaves.len());
                self.threads.send(Job::Cleanup { node, leaves });
            }
        }
    }

    /// `action`, by this node, now.
    fn record(&self, action: Action) -> Record {
        Record::now(action, &self.threads.node)
    }

    /// Appends `id`'s leave, waiting for room in the writer's queue.
    fn announce_leave(&self, id: ClientId) {
        self.threads
            .send(Job::Append(Record::leave(id, &self.threads.node)));
    }

    /// The writer refuses it if Redis is away (and tries to reconnect).
    fn append_or_refuse(&mut self, action: Action) {
        let id = crate::cluster::replica::client_of(&action);
        if !self.threads.try_send(Job::Append(self.record(action))) {
            self.refuse(id);
        }
    }

    /// Tells a local client its message was not sent (`wschat.v1` clients
    /// get an `unavailable` error; a raw client has no way to be told).
    fn refuse(&mut self, id: ClientId) {
        let v1 = self.replica.chat.mode(id) == Some(Mode::V1);
        log::warn!("({id}) message not sent: redis unavailable");
        if v1 {
            let event = error_event(ErrorCode::Unavailable, UNAVAILABLE_TEXT);
            self.outbox.outputs().push(Output::Reply { to: id, event });
            self.outbox.emit(|_| {});
        }
    }

    /// Applies one entry read from the stream, at its place in the order.
    fn apply(&mut self, entry: Entry) {
        let (Some(seq), Ok(mut record)) = (entry.seq(), Record::decode(&entry)) else {
            log::warn!("cluster: skipping malformed entry {}", entry.id);
            return;
        };
        if self.replica.place(entry.id, seq) == Applied::Duplicate {
            return;
        }
        match &mut record.action {
            Action::Join { id, resume, .. } => {
                *resume = self.take_in(*id, &record.rooms, &record.visitor, record.ts)
            }
            Action::Leave { id } => self.left_in_the_order(*id),
            Action::Text { .. } | Action::Binary { .. } | Action::Refresh { .. } => {}
        }
        self.metrics.cluster_entries_in.fetch_add(1, Relaxed);
        if let Applied::Done { missed } =
            self.replica
                .apply(entry.id, seq, record, self.outbox.outputs())
        {
            node::count_missed(&self.metrics, missed);
        }
        self.outbox.emit(|_| {});
        self.changed = true;
    }

    /// A join read back: if it is this node's client that waits, it is
    /// taken in now, at its place in the order (what came before goes
    /// out first, then it becomes a recipient, its 101 first). Returns
    /// where it resumes from. A ban ordered before its join (made on
    /// another node while the join was on its way) turns it away with a
    /// 403 here, and every replica leaves it out (see `Chat::connect_as`).
    fn take_in(
        &mut self,
        id: ClientId,
        rooms: &[RoomName],
        visitor: &Visitor,
        ts: u64,
    ) -> Option<Resume> {
        if let Err(reason) = self.replica.chat.admission(visitor, ts)
            && let Some(pending) = self.pending_joins.remove(&id)
        {
            log::info!("({id}) {} turned away: {reason}", pending.peer);
            pending.joined.ban(reason);
            return None;
        }
        let Some(pending) = self.pending_joins.remove(&id) else {
            if node_number(id) == self.threads.number && !self.replica.chat.contains(id) {
                // This node's client that is gone (it left before its join
                // came back, or the join was refused yet reached Redis):
                // make sure every replica lets it go.
                self.announce_leave(id);
            }
            return None;
        };
        let outbox = &mut self.outbox;
        if pending
            .joined
            .accept(|| outbox.add_client(*pending.endpoint))
        {
            log::debug!("({id}) joined the chat from {}", pending.peer);
            self.connected.insert(id);
        } else {
            // Its reader gave up waiting (and answered 503); its leave
            // follows, from the reader, as for any client that goes.
            log::warn!("({id}) {} gave up waiting to join", pending.peer);
        }
        if pending
            .resume
            .as_ref()
            .is_some_and(|r| self.replica.chat.is_gap(r, rooms))
        {
            self.metrics.resume_gaps.fetch_add(1, Relaxed);
        }
        pending.resume
    }

    /// A leave read back: if it is this node's client, still connected,
    /// another node announced it gone while this one was cut off from
    /// Redis (or stalled) for longer than a heartbeat lasts. Kept, it
    /// would be a member nowhere: everything it sent would be refused. It
    /// is told to reconnect, and resumes with `since` what it missed.
    fn left_in_the_order(&mut self, id: ClientId) {
        if !self.connected.remove(&id) {
            return;
        }
        log::warn!(
            "({id}) was announced as gone while this node was cut off; closing it with 1012 rejoin"
        );
        // The reason is a stable token (docs/06): the client reconnects at
        // once and resumes.
        self.outbox
            .close(id, encode_close(CloseCode::Restart, "rejoin", None));
        self.metrics.cluster_rejoins.fetch_add(1, Relaxed);
    }

    fn snapshot_if_due(&mut self) {
        if self.changed && self.last_snapshot.elapsed() >= SNAPSHOT_INTERVAL {
            let body = self.replica.snapshot();
            let after = self.replica.last_id;
            if self.threads.try_send(Job::Snapshot { after, body }) {
                self.changed = false;
                self.last_snapshot = Instant::now();
            }
        }
    }

    /// Stopping: this node's members leave for everyone, every client gets
    /// 1001, and the writer finishes what is queued.
    fn shutdown(mut self) {
        self.outbox.flush();
        let number = self.threads.number;
        let local: Vec<ClientId> = self
            .replica
            .chat
            .client_ids()
            .filter(|id| node_number(*id) == number)
            .chain(self.pending_joins.keys().copied())
            .collect();
        for id in local {
            self.announce_leave(id);
        }
        self.threads.send(Job::Goodbye);
        self.outbox.shut_down();
        self.threads.finish();
    }
}
