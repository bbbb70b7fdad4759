//! The broadcaster: one thread that owns the room. Readers send it events
//! over one channel; it alone decides who is in the room, what their names
//! are, and in which order messages happen. It encodes each outgoing frame
//! once and hands every recipient's writer a pointer to the same bytes with
//! a non-blocking `try_push` (or, to an idle client in a quiet room, sends
//! it with a non-blocking `send`). With a backlog of events it gathers
//! frames and hands each recipient one batch of them. A client whose queue
//! is full is dropped on the spot, so no client can slow it down.

use crate::history_file::HistoryLog;
use crate::metrics::{DropReason, Metrics};
use crate::protocol::close::CloseCode;
use crate::protocol::frame::{OpCode, encode_close, encode_frame};
use crate::room::{self, ClientId, History, Input, Mode};
use crate::writer::{FrameBatch, Outbox, Outgoing, PushError};
use crossbeam_channel::{Receiver, Sender};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Events from the client threads.
#[derive(Debug)]
pub enum Event {
    Join {
        id: ClientId,
        peer: SocketAddr,
        mode: Mode,
        outbox: Outbox,
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
    /// Close every client with 1001 and stop.
    Shutdown,
}

/// Broadcasts gathered into one delivery while events are waiting: every
/// recipient then gets one queue item (and its writer one wake-up) for
/// all of them, rather than one each.
pub const MAX_PENDING_FRAMES: usize = 64;
/// ... or this many bytes of frames, whichever comes first: a queue item
/// holds at most this much, so a full queue stays bounded in bytes.
pub const MAX_PENDING_BYTES: usize = 64 * 1024;

/// Events waiting for the broadcaster. Bounded: if it ever falls behind,
/// readers wait (and so their clients do) instead of memory growing.
pub const EVENT_QUEUE: usize = 16 * 1024;

struct Member {
    nick: String,
    mode: Mode,
    outbox: Outbox,
}

pub struct Broadcaster {
    members: BTreeMap<ClientId, Member>,
    history: History,
    next_seq: u64,
    log: Option<HistoryLog>,
    metrics: Arc<Metrics>,
    /// Clients found too slow during a fan-out, removed right after it.
    too_slow: Vec<ClientId>,
    /// No events are waiting: frames are written directly to idle clients
    /// (see `Outbox::write_or_push`). With a backlog they are queued, and
    /// the writer threads batch them, a few `writev`s for many frames.
    direct: bool,
    /// Broadcasts not yet handed to the recipients (see `deliver`).
    pending: Pending,
}

/// Broadcasts waiting to be delivered together.
#[derive(Default)]
struct Pending {
    /// Frames for raw clients, each with its raw sender (who skips it).
    raw: FrameBatch,
    /// Frames for v1 clients: everyone gets every one.
    v1: FrameBatch,
    broadcasts: usize,
    bytes: usize,
}

/// One delivery's frames for one mode, ready to hand out.
enum Delivery {
    Nothing,
    /// A single frame: queued (or written directly) as it is.
    One(Option<ClientId>, Arc<[u8]>),
    /// Several: one shared batch; `only_sender` set if all are from one
    /// raw client (who then gets nothing).
    Many(Arc<FrameBatch>, Option<ClientId>),
}

impl Delivery {
    fn new(mut batch: FrameBatch) -> Self {
        match batch.frames.len() {
            0 => Delivery::Nothing,
            1 => {
                let (sender, frame) = batch.frames.pop().expect("one frame");
                Delivery::One(sender, frame)
            }
            _ => {
                let first = batch.frames[0].0;
                let same = batch.frames.iter().all(|(sender, _)| *sender == first);
                Delivery::Many(Arc::new(batch), if same { first } else { None })
            }
        }
    }

    /// The item for recipient `id`: a pointer to the shared frames.
    fn for_recipient(&self, id: ClientId) -> Option<Outgoing> {
        match self {
            Delivery::Nothing => None,
            Delivery::One(sender, _) | Delivery::Many(_, sender) if *sender == Some(id) => None,
            Delivery::One(_, frame) => Some(Outgoing::Shared(frame.clone())),
            Delivery::Many(batch, _) => Some(Outgoing::Batch(batch.clone(), Some(id))),
        }
    }
}

/// A frame encoded once, to be shared by every recipient.
fn shared(opcode: OpCode, payload: &[u8]) -> Arc<[u8]> {
    Arc::from(encode_frame(opcode, payload, None))
}

impl Broadcaster {
    pub fn new(
        history: History,
        next_seq: u64,
        log: Option<HistoryLog>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Broadcaster {
            members: BTreeMap::new(),
            history,
            next_seq,
            log,
            metrics,
            too_slow: Vec::new(),
            direct: false,
            pending: Pending::default(),
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
        while let Ok(event) = rx.recv() {
            self.direct = rx.is_empty();
            match event {
                Event::Join {
                    id,
                    peer,
                    mode,
                    outbox,
                } => self.join(id, peer, mode, outbox),
                Event::Text { id, text } => self.text(id, &text),
                Event::Binary { id, data } => self.binary(id, &data),
                Event::Leave { id } => self.leave(id),
                Event::Shutdown => {
                    self.flush();
                    let close = encode_close(CloseCode::Away, "server shutting down", None);
                    for member in self.members.values() {
                        let _ = member.outbox.try_push(Outgoing::Close(close.clone()));
                    }
                    if let Some(log) = self.log.take() {
                        log.close(); // every accepted message is on disk
                    }
                    return;
                }
            }
            // With events waiting, broadcasts gather (up to a limit) and go
            // out together; the last one before a quiet spell goes at once.
            if rx.is_empty() || !self.too_slow.is_empty() {
                self.direct = rx.is_empty();
                self.flush();
            }
        }
    }

    fn users(&self) -> impl Iterator<Item = (ClientId, &str)> {
        self.members.iter().map(|(id, m)| (*id, m.nick.as_str()))
    }

    fn join(&mut self, id: ClientId, peer: SocketAddr, mode: Mode, outbox: Outbox) {
        let nick = room::guest_nick(id);
        log::debug!("({id}) joined the room from {peer} as {nick} ({mode:?})");
        if mode == Mode::V1 {
            let me = std::iter::once((id, nick.as_str()));
            let welcome = room::welcome_event(id, &nick, self.users().chain(me), &self.history);
            self.send_to(
                id,
                &outbox,
                Outgoing::Owned(encode_frame(OpCode::Text, welcome.as_bytes(), None)),
            );
        }
        let event = room::presence_event("join", id, &nick, room::now_ms());
        self.fan_out(None, Some(&shared(OpCode::Text, event.as_bytes())), None);
        // What is pending is in the history the welcome carried: deliver
        // it before the newcomer is a recipient.
        self.flush();
        self.members.insert(id, Member { nick, mode, outbox });
    }

    fn leave(&mut self, id: ClientId) {
        if let Some(member) = self.members.remove(&id) {
            let event = room::presence_event("leave", id, &member.nick, room::now_ms());
            self.fan_out(None, Some(&shared(OpCode::Text, event.as_bytes())), None);
        }
    }

    fn text(&mut self, id: ClientId, text: &str) {
        let Some(member) = self.members.get(&id) else {
            return; // dropped while its message was in flight
        };
        match member.mode {
            // The seed's behaviour: verbatim to every other raw client.
            Mode::Raw => {
                let nick = member.nick.clone();
                self.say(
                    id,
                    &nick,
                    text,
                    false,
                    Some(shared(OpCode::Text, text.as_bytes())),
                );
            }
            Mode::V1 => match room::parse_input(text) {
                Input::Say(line) => self.say_v1(id, line, false),
                Input::Action(line) => self.say_v1(id, line, true),
                Input::Nick(nick) => self.rename(id, nick),
                Input::Who => {
                    let users = room::users_event(self.users());
                    self.reply(id, &users);
                }
                Input::Unknown(command) => self.reply(
                    id,
                    &room::error_event(&format!("unknown command /{command}")),
                ),
                Input::Usage(usage) => self.reply(id, &room::error_event(usage)),
                Input::Empty => self.reply(id, &room::error_event("empty message")),
            },
        }
    }

    fn say_v1(&mut self, id: ClientId, line: &str, action: bool) {
        let nick = self.members[&id].nick.clone();
        let raw = room::raw_line(&nick, line, action);
        self.say(
            id,
            &nick,
            line,
            action,
            Some(shared(OpCode::Text, raw.as_bytes())),
        );
    }

    /// One chat line: numbered, kept in the history, logged to the history
    /// file, and fanned out (the JSON to every v1 client, sender included,
    /// so all see one order; `raw` to every other raw client).
    fn say(&mut self, id: ClientId, nick: &str, text: &str, action: bool, raw: Option<Arc<[u8]>>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let event: Arc<str> =
            room::message_event(seq, id, nick, text, room::now_ms(), action).into();
        let v1 = shared(OpCode::Text, event.as_bytes());
        self.fan_out(raw.as_ref(), Some(&v1), Some(id));
        if let Some(log) = &self.log {
            log.append(event.clone());
        }
        self.history.push(event);
    }

    fn binary(&mut self, id: ClientId, data: &[u8]) {
        match self.members.get(&id).map(|m| m.mode) {
            Some(Mode::Raw) => self.fan_out(Some(&shared(OpCode::Binary, data)), None, Some(id)),
            Some(Mode::V1) => {
                self.reply(id, &room::error_event("wschat.v1 takes text messages only"))
            }
            None => {}
        }
    }

    fn rename(&mut self, id: ClientId, wanted: &str) {
        if let Err(reason) = room::validate_nick(wanted) {
            return self.reply(id, &room::error_event(reason));
        }
        let taken = self
            .members
            .iter()
            .any(|(other, m)| *other != id && room::nick_key(&m.nick) == room::nick_key(wanted));
        if taken {
            return self.reply(
                id,
                &room::error_event(&format!("nickname {wanted} is already taken")),
            );
        }
        let member = self.members.get_mut(&id).expect("renaming a member");
        if member.nick == wanted {
            // Nothing changes, but the asker still gets an answer.
            let answer = room::error_event(&format!("you are already {wanted}"));
            return self.reply(id, &answer);
        }
        let old = std::mem::replace(&mut member.nick, wanted.to_string());
        log::info!("({id}) is now known as {wanted} (was {old})");
        let event = room::nick_event(id, wanted, &old, room::now_ms());
        self.fan_out(None, Some(&shared(OpCode::Text, event.as_bytes())), None);
    }

    /// An event for one v1 client only.
    fn reply(&mut self, id: ClientId, event: &str) {
        if let Some(member) = self.members.get(&id) {
            let outbox = member.outbox.clone();
            self.send_to(
                id,
                &outbox,
                Outgoing::Owned(encode_frame(OpCode::Text, event.as_bytes(), None)),
            );
        }
    }

    /// Adds a broadcast: `raw` for every raw client but `raw_sender`, `v1`
    /// for every v1 client. It goes out with the next delivery.
    fn fan_out(
        &mut self,
        raw: Option<&Arc<[u8]>>,
        v1: Option<&Arc<[u8]>>,
        raw_sender: Option<ClientId>,
    ) {
        let pending = &mut self.pending;
        if let Some(frame) = raw {
            pending.bytes += frame.len();
            pending.raw.frames.push((raw_sender, frame.clone()));
        }
        if let Some(frame) = v1 {
            pending.bytes += frame.len();
            pending.v1.frames.push((None, frame.clone()));
        }
        pending.broadcasts += 1;
        if pending.broadcasts >= MAX_PENDING_FRAMES || pending.bytes >= MAX_PENDING_BYTES {
            self.deliver();
        }
    }

    /// The hot path: hands what is pending to every member, one item each,
    /// with no allocation or copy per recipient (an `Arc` clone is a
    /// counter increment).
    fn deliver(&mut self) {
        if self.pending.broadcasts == 0 {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let raw = Delivery::new(pending.raw);
        let v1 = Delivery::new(pending.v1);
        // The deepest queue is noted once per delivery, not per recipient:
        // an atomic read-modify-write per recipient is measurable here.
        let mut deepest = 0;
        for (id, member) in &self.members {
            let delivery = match member.mode {
                Mode::Raw => &raw,
                Mode::V1 => &v1,
            };
            let Some(item) = delivery.for_recipient(*id) else {
                continue;
            };
            let pushed = if self.direct {
                member.outbox.write_or_push(item)
            } else {
                member.outbox.try_push(item)
            };
            match pushed {
                Ok(depth) => deepest = deepest.max(depth),
                Err(PushError::Full) => self.too_slow.push(*id),
                // The reader will send Leave; nothing to do until then.
                Err(PushError::Gone) => {}
            }
        }
        self.metrics.queue_depth(deepest);
    }

    /// Delivers what is pending, then drops the clients found too slow
    /// (whose leave notices are broadcasts too, hence the loop).
    fn flush(&mut self) {
        loop {
            self.deliver();
            if self.too_slow.is_empty() {
                return;
            }
            self.drop_slow_clients();
        }
    }

    fn send_to(&mut self, id: ClientId, outbox: &Outbox, item: Outgoing) {
        // In order: what was broadcast before this goes first.
        self.flush();
        let pushed = if self.direct {
            outbox.write_or_push(item)
        } else {
            outbox.try_push(item)
        };
        if pushed == Err(PushError::Full) {
            self.too_slow.push(id);
        }
    }

    /// Drops the clients whose queue was full. Their leave notices may in
    /// turn find others full, hence the loop.
    fn drop_slow_clients(&mut self) {
        while let Some(id) = self.too_slow.pop() {
            if let Some(member) = self.members.get(&id) {
                log::warn!(
                    "Dropping slow consumer: ({id}) {} queued frames, closing with 1008",
                    member.outbox.len()
                );
                self.metrics.client_dropped(DropReason::SlowConsumer);
                member.outbox.kick(CloseCode::Policy.into());
                self.leave(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str) -> Arc<[u8]> {
        shared(OpCode::Text, text.as_bytes())
    }

    fn frames_of(item: Option<Outgoing>) -> Vec<Vec<u8>> {
        match item {
            None => vec![],
            Some(Outgoing::Shared(f)) => vec![f.to_vec()],
            Some(Outgoing::Batch(batch, skip)) => {
                batch.frames_for(skip).map(<[u8]>::to_vec).collect()
            }
            Some(other) => panic!("not a broadcast: {other:?}"),
        }
    }

    fn batch(frames: &[(Option<ClientId>, &Arc<[u8]>)]) -> FrameBatch {
        FrameBatch {
            frames: frames.iter().map(|(s, f)| (*s, (*f).clone())).collect(),
        }
    }

    #[test]
    fn a_raw_sender_gets_none_of_its_own_frames_from_a_delivery() {
        let (a1, b1, a2) = (frame("a1"), frame("b1"), frame("a2"));
        let mixed = Delivery::new(batch(&[(Some(1), &a1), (Some(2), &b1), (Some(1), &a2)]));
        assert_eq!(frames_of(mixed.for_recipient(1)), vec![b1.to_vec()]);
        assert_eq!(
            frames_of(mixed.for_recipient(2)),
            vec![a1.to_vec(), a2.to_vec()]
        );
        assert_eq!(
            frames_of(mixed.for_recipient(3)),
            vec![a1.to_vec(), b1.to_vec(), a2.to_vec()]
        );
        // All from one sender: that sender gets no item at all.
        let one_sender = Delivery::new(batch(&[(Some(1), &a1), (Some(1), &a2)]));
        assert!(one_sender.for_recipient(1).is_none());
        assert_eq!(frames_of(one_sender.for_recipient(2)).len(), 2);
    }

    #[test]
    fn a_single_frame_is_delivered_as_it_is_and_v1_frames_go_to_everyone() {
        let a1 = frame("a1");
        let single = Delivery::new(batch(&[(Some(1), &a1)]));
        assert!(single.for_recipient(1).is_none());
        assert!(
            matches!(single.for_recipient(2), Some(Outgoing::Shared(f)) if Arc::ptr_eq(&f, &a1))
        );
        let v1 = Delivery::new(batch(&[(None, &a1), (None, &a1)]));
        assert_eq!(frames_of(v1.for_recipient(1)).len(), 2);
        assert!(
            Delivery::new(FrameBatch::default())
                .for_recipient(1)
                .is_none()
        );
    }
}
