//! The outbox: everything between the room's outputs and delivery, the
//! same whoever orders the events (this process's own queue, or, in
//! cluster mode, the room's stream read back). The room's outputs for an
//! event are encoded once each; broadcast frames wait in one pending
//! batch, handed to delivery when the queue goes quiet or the batch is
//! full; a private frame (a welcome, a reply, a Close) first flushes what
//! was broadcast before it, so every client sees the room's order. A room
//! is a delivery group (its `RoomId`; `#main` is the lobby), joined and
//! left as the chat's `Enter` and `Exit` say, in order with the frames.

use super::{MAX_PENDING_BYTES, MAX_PENDING_FRAMES, compressed_frame};
use crate::delivery::{Batch, Bytes, Delivery, Endpoint, Group, LOBBY, Outlet, Variant};
use crate::metrics::Metrics;
use crate::protocol::close::CloseCode;
use crate::protocol::frame::{
    MAX_HEADER_LEN, OpCode, encode_close, encode_frame, encode_frame_into,
};
use crate::room::{ClientId, ErrorCode, MAIN, Mode, Output, Payload, RoomId};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

pub(super) struct Outbox {
    delivery: Arc<Delivery>,
    metrics: Arc<Metrics>,
    /// Frames not yet handed to delivery.
    pending: Batch,
    /// The room's outputs for the current event (reused).
    out: Vec<Output>,
    /// The last welcome tail and its frame.
    tail: Option<(Arc<str>, Arc<[u8]>)>,
    /// Clients that negotiated permessage-deflate: their welcome and
    /// replies are compressed too.
    compressing: HashSet<ClientId>,
    /// Chat clients connected: a client that left needs no `leave_group`.
    connected: HashSet<ClientId>,
    /// A client just handed to delivery (so in the lobby, `#main`'s group)
    /// whose first event has not said yet whether it is in `#main`.
    fresh: Option<ClientId>,
}

impl Outbox {
    /// The outbox of the chat: the chat says who is in which room
    /// (`Enter`, `Exit`), and a room is a delivery group.
    pub(super) fn new(delivery: Arc<Delivery>, metrics: Arc<Metrics>) -> Outbox {
        Outbox {
            delivery,
            metrics,
            pending: Batch::default(),
            out: Vec::new(),
            tail: None,
            compressing: HashSet::new(),
            connected: HashSet::new(),
            fresh: None,
        }
    }

    /// Where the room puts its outputs for one event, for [`Outbox::emit`].
    pub(super) fn outputs(&mut self) -> &mut Vec<Output> {
        &mut self.out
    }

    /// Hands a newcomer to delivery (which writes its 101 first). What is
    /// pending goes out before: it is in the history the welcome carries.
    pub(super) fn add_client(&mut self, endpoint: Endpoint) -> Outlet {
        self.flush();
        if endpoint.variant.is_some_and(|v| v.compressed) {
            self.compressing.insert(endpoint.tag);
        }
        self.connected.insert(endpoint.tag);
        self.fresh = Some(endpoint.tag);
        self.delivery.add(endpoint)
    }

    /// A client that left (or never got in).
    pub(super) fn remove_client(&mut self, id: ClientId) {
        self.compressing.remove(&id);
        self.connected.remove(&id);
    }

    /// The chat's `Enter` and `Exit`: a room is a delivery group (`#main`
    /// is the lobby), and delivery changes a membership between exactly
    /// the frames it should, once what is pending is handed over.
    fn membership(&mut self, id: ClientId, room: RoomId, member: bool) {
        if member && room == MAIN && self.fresh == Some(id) {
            self.fresh = None; // in the lobby already
            return;
        }
        if !self.connected.contains(&id) {
            return; // gone: delivery has forgotten it
        }
        self.flush();
        if member {
            self.delivery.join_group(id, room);
        } else {
            self.delivery.leave_group(id, room);
        }
    }

    /// One frame for the clients of `mode` in `group` (or, for
    /// `everyone`, in any), but `except`, into the pending batch: plain,
    /// and compressed if anyone needs it.
    fn broadcast_frame(
        &mut self,
        (mode, group, everyone): (Mode, Group, bool),
        except: Option<ClientId>,
        opcode: OpCode,
        bytes: &[u8],
    ) {
        let push = |pending: &mut Batch, compressed, frame: Vec<u8>| {
            let variant = Variant::new(mode, compressed);
            let frame = frame.into_boxed_slice();
            if everyone {
                pending.push_to_everyone(variant, except, frame);
            } else {
                pending.push(variant, except, group, frame);
            }
        };
        push(&mut self.pending, false, encode_frame(opcode, bytes, None));
        // One compression per broadcast, whatever the number of
        // recipients: with server_no_context_takeover the compressed
        // bytes depend on the message alone (RFC 7692 §7.1.1.1). A client
        // that joins later counted itself before its Join was sent, so
        // none is missed.
        let compressing = self.metrics.deflate_clients_of(mode);
        if compressing.load(Relaxed) > 0 {
            let frame = compressed_frame(opcode, bytes, &self.metrics);
            push(&mut self.pending, true, frame);
        }
    }

    /// Closes one client with `close`, after what was broadcast before.
    pub(super) fn close(&mut self, id: ClientId, close: Vec<u8>) {
        self.flush();
        self.delivery.close(id, close);
    }

    /// Stopping: what is pending goes out, then every client gets 1001.
    pub(super) fn shut_down(&mut self) {
        self.flush();
        let close = encode_close(CloseCode::Away, "shutting_down", None);
        self.delivery.stop(&close);
    }

    /// Encodes the room's outputs, each once. A chat line kept in the
    /// history (`Output::Said`) goes to `said`.
    pub(super) fn emit(&mut self, mut said: impl FnMut(Arc<str>)) {
        let mut out = std::mem::take(&mut self.out);
        for output in out.drain(..) {
            match output {
                Output::Broadcast {
                    mode,
                    payload,
                    except,
                } => {
                    let (opcode, bytes) = payload_frame(&payload);
                    // Everyone whatever their rooms (a change of nickname).
                    let audience = (mode, LOBBY, true);
                    self.broadcast_frame(audience, except, opcode, bytes);
                }
                Output::ToRoom {
                    room,
                    mode,
                    payload,
                    except,
                } => {
                    let (opcode, bytes) = payload_frame(&payload);
                    self.broadcast_frame((mode, room, false), except, opcode, bytes);
                }
                Output::Enter { id, room } => self.membership(id, room, true),
                Output::Exit { id, room } => self.membership(id, room, false),
                Output::Record(line) => said(line),
                Output::Refused { to, code } => {
                    log::info!("({to}) closed: its room cannot take it ({})", code.as_str());
                    // A raw client has no error events: the Close says why.
                    let close = match code {
                        ErrorCode::RoomFull => {
                            encode_close(CloseCode::TryAgainLater, "room_full", None)
                        }
                        ErrorCode::NotAllowed => {
                            encode_close(CloseCode::Policy, "not_allowed", None)
                        }
                        _ => encode_close(CloseCode::TryAgainLater, "room_limit", None),
                    };
                    self.close(to, close);
                }
                Output::Removed { to, banned } => {
                    // After what was sent before it (the moderation event).
                    let close = if banned {
                        encode_close(CloseCode::Policy, "banned", None)
                    } else {
                        encode_close(CloseCode::Policy, "kicked", None)
                    };
                    self.close(to, close);
                }
                Output::Moderated { action } => self.metrics.moderated(action),
                Output::Reply { to, event } => {
                    // In order: what was broadcast before this goes first.
                    self.flush();
                    let frame = if self.compressing.contains(&to) {
                        compressed_frame(OpCode::Text, event.as_bytes(), &self.metrics)
                    } else {
                        encode_frame(OpCode::Text, event.as_bytes(), None)
                    };
                    self.delivery.send(to, Bytes::Owned(frame));
                }
                Output::Welcome { to, head, tail } if self.compressing.contains(&to) => {
                    // Compressed, the welcome is one message of its own (a
                    // tenth of the size, history being repetitive JSON).
                    self.flush();
                    let text = head + &tail;
                    let frame = compressed_frame(OpCode::Text, text.as_bytes(), &self.metrics);
                    self.delivery.send_welcome(to, Bytes::Owned(frame));
                }
                Output::Welcome { to, head, tail } => {
                    self.flush();
                    // Two frames of one text message (§5.4): the head, not
                    // final, then the shared tail as its continuation.
                    let mut first = Vec::with_capacity(head.len() + MAX_HEADER_LEN);
                    encode_frame_into(&mut first, false, OpCode::Text, head.as_bytes(), None);
                    self.delivery.send_welcome(to, Bytes::Owned(first));
                    let rest = self.welcome_tail(&tail);
                    self.delivery.send_welcome(to, Bytes::Shared(rest));
                }
                Output::Said(event) => said(event),
            }
        }
        self.out = out;
        if let Some(id) = self.fresh.take() {
            // Its first event did not put it in `#main`.
            self.flush();
            self.delivery.leave_group(id, LOBBY);
        }
    }
}

/// A payload's opcode and bytes.
fn payload_frame(payload: &Payload) -> (OpCode, &[u8]) {
    match payload {
        Payload::Text(text) => (OpCode::Text, text.as_bytes()),
        Payload::Binary(data) => (OpCode::Binary, &data[..]),
    }
}

impl Outbox {
    /// The continuation frame that ends a welcome: encoded once per history
    /// change, shared by every newcomer until then.
    fn welcome_tail(&mut self, tail: &Arc<str>) -> Arc<[u8]> {
        match &self.tail {
            Some((text, frame)) if Arc::ptr_eq(text, tail) => frame.clone(),
            _ => {
                let mut frame = Vec::with_capacity(tail.len() + MAX_HEADER_LEN);
                encode_frame_into(
                    &mut frame,
                    true,
                    OpCode::Continuation,
                    tail.as_bytes(),
                    None,
                );
                let frame: Arc<[u8]> = frame.into();
                self.tail = Some((tail.clone(), frame.clone()));
                frame
            }
        }
    }

    /// After an event: the pending frames go to delivery if no event is
    /// waiting (the last before a quiet spell goes out at once) or the
    /// batch is full. True if they went.
    pub(super) fn flush_if_due(&mut self, queue_empty: bool) -> bool {
        let due = queue_empty
            || self.pending.len() >= MAX_PENDING_FRAMES
            || self.pending.bytes() >= MAX_PENDING_BYTES;
        if due {
            self.flush();
        }
        due
    }

    /// Hands the pending frames to delivery as one batch.
    pub(super) fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.delivery.broadcast(std::mem::take(&mut self.pending));
        }
    }
}
