//! The broadcaster: one thread, the loop around the `Chat`. Readers send it
//! events over one channel, and one orderer decides in which order the
//! room takes them: here, the order of this queue ([`Broadcaster`]); in
//! cluster mode, the order of a log every node shares (`replicated.rs`).
//! Whoever orders, for each action the room says what to send, and the
//! [`outbox`](outbox::Outbox) encodes each frame once and hands the bytes
//! to delivery.
//!
//! While events are waiting the outbox gathers the frames of several
//! into one batch (`MAX_PENDING_FRAMES`, `MAX_PENDING_BYTES`): one
//! command per delivery thread for the lot, and one write per client for
//! many frames. The last event before a quiet spell goes out at once.

use crate::delivery::{Delivery, Endpoint, Outlet};
use crate::history_file::{HistoryLog, Snapshot};
use crate::metrics::Metrics;
use crate::protocol::deflate::compress_message;
use crate::protocol::frame::{OpCode, encode_compressed_frame};
use crate::room::{Action, Chat, ClientId, Identity, Mode, Resume, RoomName, Visitor, now_ms};
use crossbeam_channel::{Receiver, Sender};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Events from the client threads.
#[derive(Debug)]
pub enum Event {
    /// A client finished its handshake: add it to the room and to delivery
    /// (which writes its 101 first), and send its reader the `Outlet`.
    Join {
        id: ClientId,
        peer: SocketAddr,
        mode: Mode,
        endpoint: Box<Endpoint>,
        joined: JoinReply,
        /// Where a resuming client stands (`/?since=ID&epoch=E`).
        resume: Option<Resume>,
        /// The rooms it asked to be in (`/?rooms=`), in order.
        rooms: Vec<RoomName>,
        /// Who it is: signed in (its token was verified at the handshake)
        /// or a guest, and its address (what a guest's ban names).
        visitor: Box<Visitor>,
    },
    Text {
        id: ClientId,
        text: String,
    },
    Binary {
        id: ClientId,
        data: Vec<u8>,
    },
    Leave {
        id: ClientId,
    },
    /// `/auth TOKEN` accepted by the reader: what the new token says.
    Refresh {
        id: ClientId,
        identity: Box<Identity>,
    },
    /// Close every client with 1001 and stop.
    Shutdown,
}

mod outbox;
mod replicated;

use outbox::Outbox;

/// How long a new chat connection waits for the room to take it in
/// (single process: the broadcaster's queue; cluster mode: its join
/// appended to Redis and read back by the node's reader). Normally
/// milliseconds; past this, something is stuck (a reader that cannot
/// read the stream, say), and the client is answered 503
/// [`JOIN_TIMED_OUT`] rather than left waiting.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The reason of that 503.
pub const JOIN_TIMED_OUT: &str = "the chat did not take the connection in time; try again";

/// A join's two ends: the broadcaster's [`JoinReply`] and the reader's
/// [`JoinWait`]. They agree, once, on whether the newcomer is taken in
/// (then delivery writes its 101) or given up by its reader (then the
/// reader answers 503): never both. One small shared slot rather than a
/// channel: the reader allocates it and is the last to drop it, and glibc
/// keeps a freed block of that size in the (idle) reader thread's cache
/// for as long as the thread lives (a bounded channel is about 700 bytes).
pub fn join_channel() -> (JoinReply, JoinWait) {
    let slot = Arc::new(JoinSlot {
        state: Mutex::new(JoinState::Waiting),
        answered: Condvar::new(),
    });
    (JoinReply { slot: slot.clone() }, JoinWait { slot })
}

#[derive(Debug)]
struct JoinSlot {
    state: Mutex<JoinState>,
    /// Signalled when the state leaves `Waiting`.
    answered: Condvar,
}

#[derive(Debug)]
enum JoinState {
    Waiting,
    TakenIn(Outlet),
    /// A server-wide ban holds the newcomer: the 403's reason.
    Banned(String),
    /// The broadcaster dropped its end without taking the newcomer in.
    Refused,
    /// The reader stopped waiting, or has its answer.
    Closed,
}

impl JoinSlot {
    fn lock(&self) -> MutexGuard<'_, JoinState> {
        // A panic while holding it leaves the state consistent: each
        // change is one assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The broadcaster's end of a join.
#[derive(Debug)]
pub struct JoinReply {
    slot: Arc<JoinSlot>,
}

impl JoinReply {
    /// Takes the newcomer in if its reader still waits: runs `add` (which
    /// hands it to delivery) and gives the reader its outlet. False, and
    /// `add` not run, if the reader gave up.
    pub fn accept(self, add: impl FnOnce() -> Outlet) -> bool {
        let mut state = self.slot.lock();
        if !matches!(*state, JoinState::Waiting) {
            return false;
        }
        *state = JoinState::TakenIn(add());
        self.slot.answered.notify_one();
        true
    }

    /// Turns the newcomer away: a server-wide ban holds it. Its reader
    /// answers 403 with `reason` (`banned`, or `banned until TS`).
    pub fn ban(self, reason: String) {
        let mut state = self.slot.lock();
        if matches!(*state, JoinState::Waiting) {
            *state = JoinState::Banned(reason);
            self.slot.answered.notify_one();
        }
    }
}

impl Drop for JoinReply {
    fn drop(&mut self) {
        let mut state = self.slot.lock();
        if matches!(*state, JoinState::Waiting) {
            *state = JoinState::Refused;
            self.slot.answered.notify_one();
        }
    }
}

/// The reader's end of a join.
#[derive(Debug)]
pub struct JoinWait {
    slot: Arc<JoinSlot>,
}

/// Why a join did not come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinFailed {
    /// A server-wide ban holds the newcomer: the 403's reason.
    Banned(String),
    /// The broadcaster dropped it (cluster mode: Redis refused it), or
    /// has stopped.
    Refused,
    /// Not taken in within the wait; the broadcaster will not take it in
    /// later.
    TimedOut,
}

impl JoinWait {
    /// Waits up to `timeout` for the newcomer's outlet.
    pub fn wait(self, timeout: Duration) -> Result<Outlet, JoinFailed> {
        let state = self.slot.lock();
        let (mut state, _) = self
            .slot
            .answered
            .wait_timeout_while(state, timeout, |s| matches!(s, JoinState::Waiting))
            .unwrap_or_else(PoisonError::into_inner);
        // Still waiting at the deadline: closing the slot under the lock
        // means the broadcaster will not take it in afterwards.
        match std::mem::replace(&mut *state, JoinState::Closed) {
            JoinState::TakenIn(outlet) => Ok(outlet),
            JoinState::Banned(reason) => Err(JoinFailed::Banned(reason)),
            JoinState::Waiting => Err(JoinFailed::TimedOut),
            JoinState::Refused | JoinState::Closed => Err(JoinFailed::Refused),
        }
    }
}

/// However a broadcaster thread ends, other than by `Event::Shutdown` (a
/// bug that panics, say), the chat has stopped: this says so when dropped,
/// so that `/healthz` fails and a supervisor restarts the process, unless
/// [`Watch::clean_shutdown`] was called first.
pub(crate) struct Watch {
    metrics: Arc<Metrics>,
    clean: bool,
}

impl Watch {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Watch {
        Watch {
            metrics,
            clean: false,
        }
    }

    /// The thread is ending because it was told to: nothing to report.
    pub(crate) fn clean_shutdown(&mut self) {
        self.clean = true;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.clean {
            self.metrics.broadcaster_down.store(true, Relaxed);
            log::error!("Error: the broadcaster stopped; the chat is down");
        }
    }
}

/// Frames gathered into one batch while events are waiting...
pub const MAX_PENDING_FRAMES: usize = 64;
/// ... or this many bytes of them, whichever comes first.
pub const MAX_PENDING_BYTES: usize = 64 * 1024;

/// Events waiting for the broadcaster. Bounded: if it ever falls behind,
/// readers wait (and so their clients do) instead of memory growing.
pub const EVENT_QUEUE: usize = 16 * 1024;

/// A data frame compressed for a client that negotiated permessage-deflate
/// (payload compressed once, RSV1 set), counted in the `deflate_*`
/// metrics. Broadcasts are compressed with it once for all such clients;
/// a private frame (a welcome: about ten times smaller compressed, an
/// error reply) to such a client may be too. Never for control frames.
pub fn compressed_frame(opcode: OpCode, payload: &[u8], metrics: &Metrics) -> Vec<u8> {
    let compressed = compress_message(payload);
    metrics.compressed(payload.len(), compressed.len());
    encode_compressed_frame(opcode, &compressed)
}

/// The single-process broadcaster: the chat, its history file, and the
/// outbox, in the order of its own queue.
pub struct Broadcaster {
    chat: Chat,
    /// Tests only: a chat text that makes this thread panic.
    #[cfg(feature = "test-hooks")]
    pub(crate) panic_trigger: Option<String>,
    log: Option<HistoryLog>,
    outbox: Outbox,
    metrics: Arc<Metrics>,
}

impl Broadcaster {
    pub fn new(
        chat: Chat,
        log: Option<HistoryLog>,
        delivery: Arc<Delivery>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Broadcaster {
            chat,
            #[cfg(feature = "test-hooks")]
            panic_trigger: None,
            log,
            outbox: Outbox::new(delivery, metrics.clone()),
            metrics,
        }
    }

    /// Starts the broadcaster thread; returns the sender the readers use,
    /// and the thread (which ends after [`Event::Shutdown`]).
    pub fn spawn(self) -> std::io::Result<(Sender<Event>, std::thread::JoinHandle<()>)> {
        let (tx, rx) = crossbeam_channel::bounded(EVENT_QUEUE);
        let thread = std::thread::Builder::new()
            .name("wschat-broadcaster".into())
            .spawn(move || self.run(rx))?;
        Ok((tx, thread))
    }

    fn run(mut self, rx: Receiver<Event>) {
        let mut watch = Watch::new(self.metrics.clone());
        while let Ok(event) = rx.recv() {
            let action = match event {
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
                    let now = now_ms();
                    let visitor = *visitor;
                    if let Err(reason) = self.chat.admission(&visitor, now) {
                        log::info!("({id}) {peer} turned away: {reason}");
                        joined.ban(reason);
                        self.outbox.flush_if_due(rx.is_empty());
                        continue;
                    }
                    log::debug!("({id}) joined the chat from {peer} ({mode:?})");
                    if resume.as_ref().is_some_and(|r| self.chat.is_gap(r, &rooms)) {
                        self.metrics.resume_gaps.fetch_add(1, Relaxed);
                    }
                    if !joined.accept(|| self.outbox.add_client(*endpoint)) {
                        log::warn!("({id}) {peer} gave up waiting to join");
                        self.outbox.flush_if_due(rx.is_empty());
                        continue;
                    }
                    let out = self.outbox.outputs();
                    self.chat
                        .connect_as(now, id, mode, resume, &rooms, visitor, out);
                    self.emit();
                    self.outbox.flush_if_due(rx.is_empty());
                    continue;
                }
                Event::Text { id, text } => {
                    #[cfg(feature = "test-hooks")]
                    if self.panic_trigger.as_deref() == Some(text.as_str()) {
                        panic!("broadcaster panic trigger received (a test of supervision)");
                    }
                    Action::Text { id, text }
                }
                Event::Binary { id, data } => Action::Binary { id, data },
                Event::Refresh { id, identity } => Action::Refresh { id, identity },
                Event::Leave { id } => {
                    self.outbox.remove_client(id);
                    Action::Leave { id }
                }
                Event::Shutdown => {
                    self.outbox.shut_down();
                    if let Some(log) = self.log.take() {
                        log.close(); // every accepted message is on disk
                    }
                    watch.clean_shutdown();
                    return;
                }
            };
            self.chat.handle(now_ms(), action, self.outbox.outputs());
            self.emit();
            self.outbox.flush_if_due(rx.is_empty());
        }
    }

    /// Sends the chat's outputs; its records go to the history file.
    fn emit(&mut self) {
        let (chat, log) = (&self.chat, &self.log);
        self.outbox.emit(|record| {
            if let Some(log) = log {
                log.append(record, || Snapshot {
                    rooms: chat.kept(),
                    next_seq: chat.next_seq(),
                    identity: chat.kept_identity(now_ms()),
                });
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that gave up waiting is never taken in afterwards (its
    /// 503 and a 101 would both reach the socket), and a join dropped by
    /// the broadcaster is a refusal, not a wait to its end.
    #[test]
    fn a_join_is_taken_in_or_given_up_never_both() {
        let (reply, wait) = join_channel();
        assert_eq!(
            wait.wait(Duration::from_millis(10)).err(),
            Some(JoinFailed::TimedOut)
        );
        assert!(!reply.accept(|| unreachable!("added after its reader gave up")));

        let (reply, wait) = join_channel();
        drop(reply);
        assert_eq!(
            wait.wait(Duration::from_secs(10)).err(),
            Some(JoinFailed::Refused)
        );
    }
}
