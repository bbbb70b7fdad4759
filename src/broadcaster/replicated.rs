//! The broadcaster in cluster mode (`--redis`): the same loop around the
//! same `Room`, but the room changes only by entries read back from the
//! room's Redis stream, in stream order — this node's own actions
//! included. Local actions go to the cluster writer thread to be appended;
//! what comes back is applied, and the outputs go to this node's clients
//! (delivery knows no others: a broadcast reaches the local ones, a reply
//! to another node's client is dropped).
//!
//! So every node applies one sequence of actions to one piece of code,
//! and all replicas agree (state-machine replication); no lock is needed
//! for the order of messages, for presence, or for a `/nick` race.

use super::{Broadcaster, Event, JoinReply, MAX_PENDING_BYTES, MAX_PENDING_FRAMES};
use crate::cluster::node::{self, Job, Link, Notice, SNAPSHOT_INTERVAL, Settings, Startup};
use crate::cluster::replica::{Applied, Op, Record, Replica, node_number};
use crate::cluster::stream::Entry;
use crate::delivery::{Delivery, Endpoint};
use crate::metrics::Metrics;
use crate::protocol::close::CloseCode;
use crate::protocol::frame::encode_close;
use crate::room::{ClientId, ErrorCode, History, Mode, Output, Resume, error_event, now_ms};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
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
    /// Its `room` is unused: the replica's room is the one that counts.
    inner: Broadcaster,
    replica: Replica,
    link: Link,
    metrics: Arc<Metrics>,
    pending_joins: HashMap<ClientId, PendingJoin>,
    /// This node's clients that are connected and in the room: the ones
    /// to repair if the order says they left (see `apply`).
    connected: HashSet<ClientId>,
    /// Applied entries since the last snapshot was stored.
    changed: bool,
    last_snapshot: Instant,
}

impl Broadcaster {
    /// Starts the broadcaster for cluster mode, and the Redis threads that
    /// feed it. Returns the sender the readers use, the thread, and the
    /// flag that is false while Redis cannot be reached.
    pub fn spawn_cluster(
        settings: &Settings,
        startup: Startup,
        delivery: Arc<Delivery>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Sender<Event>, std::thread::JoinHandle<()>, Arc<AtomicBool>)> {
        let (tx, rx) = crossbeam_channel::bounded(super::EVENT_QUEUE);
        let up = Arc::new(AtomicBool::new(false));
        let Startup {
            store,
            number,
            replica,
        } = startup;
        let link = Link::spawn(
            settings,
            store,
            number,
            &replica,
            tx.clone(),
            up.clone(),
            metrics.clone(),
        )?;
        let state = Replicated {
            inner: Broadcaster::new(
                History::new(0),
                1,
                replica.room.epoch().clone(),
                None,
                delivery,
                metrics.clone(),
            ),
            replica,
            link,
            metrics,
            pending_joins: HashMap::new(),
            connected: HashSet::new(),
            changed: false,
            last_snapshot: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("wschat-broadcaster".into())
            .spawn(move || state.run(rx))?;
        Ok((tx, thread, up))
    }
}

impl Replicated {
    fn run(mut self, rx: Receiver<Event>) {
        let mut watch = super::Watch(self.metrics.clone(), false);
        loop {
            let event = match rx.recv_timeout(SNAPSHOT_INTERVAL) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => {
                    self.snapshot_if_due();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            match event {
                Event::Join {
                    id,
                    peer,
                    mode,
                    endpoint,
                    joined,
                    resume,
                } => {
                    let pending = PendingJoin {
                        peer,
                        endpoint,
                        joined,
                        resume,
                    };
                    let node = self.link.node.to_string();
                    let record = record(Op::Join { id, mode, node });
                    // Refused (Redis away, or the writer's queue full):
                    // the pending join is dropped, and the reader answers
                    // 503.
                    if self.link.is_up() && self.link.try_send(Job::Append(record)) {
                        self.pending_joins.insert(id, pending);
                    }
                }
                Event::Text { id, text } => self.append_or_refuse(id, Op::Text { id, text }),
                Event::Binary { id, data } => self.append_or_refuse(id, Op::Binary { id, data }),
                Event::Leave { id } => {
                    self.pending_joins.remove(&id);
                    self.connected.remove(&id);
                    self.inner.compressing.remove(&id);
                    // Waits if the queue is full: a lost leave would leave
                    // a ghost member in every replica.
                    self.link.send(Job::Append(record(Op::Leave { id })));
                }
                Event::Cluster(Notice::Entries(entries)) => {
                    for entry in entries {
                        self.apply(entry);
                    }
                }
                Event::Cluster(Notice::Refused(record)) => match record.op {
                    Op::Join { id, .. } => {
                        if let Some(pending) = self.pending_joins.remove(&id) {
                            log::warn!("({id}) {} could not join: redis unavailable", pending.peer);
                        }
                    }
                    Op::Text { id, .. } | Op::Binary { id, .. } => self.refuse(id),
                    Op::Leave { .. } => {}
                },
                Event::Cluster(Notice::Epoch(epoch)) => {
                    log::warn!(
                        "cluster: the history of epoch {} is lost; epoch {epoch} starts",
                        self.replica.room.epoch()
                    );
                    self.replica.start_epoch(epoch);
                    self.changed = true;
                }
                Event::Cluster(Notice::NodeDead(node)) => {
                    let leaves: Vec<Record> = self
                        .replica
                        .members_of(node.as_str())
                        .into_iter()
                        .map(|id| record(Op::Leave { id }))
                        .collect();
                    log::info!("cluster: {} members of node {node} leave", leaves.len());
                    self.link.send(Job::Cleanup { node, leaves });
                }
                Event::Shutdown => {
                    watch.1 = true;
                    return self.shutdown();
                }
            }
            let inner = &mut self.inner;
            if rx.is_empty()
                || inner.pending.len() >= MAX_PENDING_FRAMES
                || inner.pending.bytes() >= MAX_PENDING_BYTES
            {
                inner.flush();
                self.snapshot_if_due();
            }
        }
    }

    /// The writer refuses it if Redis is away (and tries to reconnect).
    fn append_or_refuse(&mut self, id: ClientId, op: Op) {
        if !self.link.try_send(Job::Append(record(op))) {
            self.refuse(id);
        }
    }

    /// Tells a local client its message was not sent (`wschat.v1` clients
    /// get an `unavailable` error; a raw client has no way to be told).
    fn refuse(&mut self, id: ClientId) {
        let v1 = self
            .replica
            .room
            .members()
            .any(|(member, mode, _)| member == id && mode == Mode::V1);
        log::warn!("({id}) message not sent: redis unavailable");
        if v1 {
            let event = error_event(ErrorCode::Unavailable, UNAVAILABLE_TEXT);
            self.inner.out.push(Output::Reply { to: id, event });
            self.inner.emit();
        }
    }

    /// Applies one entry read from the stream, at its place in the order.
    fn apply(&mut self, entry: Entry) {
        let (Some(seq), Ok(record)) = (entry.seq(), Record::decode(&entry)) else {
            log::warn!("cluster: skipping malformed entry {}", entry.id);
            return;
        };
        if self.replica.place(entry.id, seq) == Applied::Duplicate {
            return;
        }
        let mut resume = None;
        if let Op::Join { id, .. } = &record.op {
            let id = *id;
            if let Some(pending) = self.pending_joins.remove(&id) {
                // Its place in the order: what came before goes out first,
                // then it becomes a recipient (its 101 first).
                self.inner.flush();
                let inner = &mut self.inner;
                if pending
                    .joined
                    .accept(|| inner.add_client(*pending.endpoint))
                {
                    log::debug!("({id}) joined the room from {}", pending.peer);
                    self.connected.insert(id);
                } else {
                    // Its reader gave up waiting (and answered 503); its
                    // leave follows, from the reader, as for any client
                    // that goes.
                    log::warn!("({id}) {} gave up waiting to join", pending.peer);
                }
                resume = pending.resume;
                if resume.as_ref().is_some_and(|r| self.replica.room.is_gap(r)) {
                    self.metrics.resume_gaps.fetch_add(1, Relaxed);
                }
            } else if node_number(id) == self.link.number && !self.replica.room.contains(id) {
                // This node's client that is gone (it left before its join
                // came back, or the join was refused yet reached Redis):
                // make sure every replica lets it go.
                self.link.send(Job::Append(record_leave(id)));
            }
        }
        if let Op::Leave { id } = &record.op
            && self.connected.remove(id)
        {
            // This node's client, still connected, has left in the order:
            // another node announced it gone while this one was cut off
            // from Redis (or stalled) for longer than a heartbeat lasts.
            // Kept, it would be a member nowhere: everything it sent
            // would be refused. It is told to reconnect, and resumes
            // with `since` what it missed.
            log::warn!(
                "({id}) was announced as gone while this node was cut off; closing it with 1012 rejoin"
            );
            // The reason is a stable token (docs/06): the client
            // reconnects at once and resumes.
            let close = encode_close(CloseCode::Restart, "rejoin", None);
            self.inner.flush();
            self.inner.delivery.close(*id, close);
            self.metrics.cluster_rejoins.fetch_add(1, Relaxed);
        }
        self.metrics.cluster_entries_in.fetch_add(1, Relaxed);
        if let Applied::Done { missed } =
            self.replica
                .apply(entry.id, seq, record, resume, &mut self.inner.out)
        {
            node::count_missed(&self.metrics, missed);
        }
        self.inner.emit();
        self.changed = true;
    }

    fn snapshot_if_due(&mut self) {
        if self.changed && self.last_snapshot.elapsed() >= SNAPSHOT_INTERVAL {
            let body = self.replica.snapshot();
            let after = self.replica.last_id;
            if self.link.try_send(Job::Snapshot { after, body }) {
                self.changed = false;
                self.last_snapshot = Instant::now();
            }
        }
    }

    /// Stopping: this node's members leave for everyone, every client gets
    /// 1001, and the writer finishes what is queued.
    fn shutdown(mut self) {
        self.inner.flush();
        let number = self.link.number;
        let local: Vec<ClientId> = self
            .replica
            .room
            .members()
            .map(|(id, _, _)| id)
            .filter(|id| node_number(*id) == number)
            .chain(self.pending_joins.keys().copied())
            .collect();
        for id in local {
            self.link.send(Job::Append(record_leave(id)));
        }
        self.link.send(Job::Goodbye);
        let close = encode_close(CloseCode::Away, "shutting_down", None);
        self.inner.delivery.stop(&close);
        self.link.finish();
    }
}

fn record(op: Op) -> Record {
    Record { op, ts: now_ms() }
}

fn record_leave(id: ClientId) -> Record {
    record(Op::Leave { id })
}
