//! The outbox: everything between the room's outputs and delivery, the
//! same whoever orders the events (this process's own queue, or, in
//! cluster mode, the room's stream read back). The room's outputs for an
//! event are encoded once each; broadcast frames wait in one pending
//! batch, handed to delivery when the queue goes quiet or the batch is
//! full; a private frame (a welcome, a reply, a Close) first flushes what
//! was broadcast before it, so every client sees the room's order.

use super::{MAX_PENDING_BYTES, MAX_PENDING_FRAMES, compressed_frame};
use crate::delivery::{Batch, Bytes, Delivery, Endpoint, LOBBY, Outlet, Variant};
use crate::metrics::Metrics;
use crate::protocol::close::CloseCode;
use crate::protocol::frame::{
    MAX_HEADER_LEN, OpCode, encode_close, encode_frame, encode_frame_into,
};
use crate::room::{ClientId, Output, Payload};
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
}

impl Outbox {
    pub(super) fn new(delivery: Arc<Delivery>, metrics: Arc<Metrics>) -> Outbox {
        Outbox {
            delivery,
            metrics,
            pending: Batch::default(),
            out: Vec::new(),
            tail: None,
            compressing: HashSet::new(),
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
        self.delivery.add(endpoint)
    }

    /// A client that left (or never got in).
    pub(super) fn remove_client(&mut self, id: ClientId) {
        self.compressing.remove(&id);
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
                    let (opcode, bytes) = match &payload {
                        Payload::Text(text) => (OpCode::Text, text.as_bytes()),
                        Payload::Binary(data) => (OpCode::Binary, &data[..]),
                    };
                    let frame = encode_frame(opcode, bytes, None);
                    self.pending.push(
                        Variant::new(mode, false),
                        except,
                        LOBBY,
                        frame.into_boxed_slice(),
                    );
                    // One compression per broadcast, whatever the number of
                    // recipients: with server_no_context_takeover the
                    // compressed bytes depend on the message alone (RFC
                    // 7692 §7.1.1.1). A client that joins later counted
                    // itself before its Join was sent, so none is missed.
                    let compressing = self.metrics.deflate_clients_of(mode);
                    if compressing.load(Relaxed) > 0 {
                        let frame = compressed_frame(opcode, bytes, &self.metrics);
                        self.pending.push(
                            Variant::new(mode, true),
                            except,
                            LOBBY,
                            frame.into_boxed_slice(),
                        );
                    }
                }
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
    }

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
