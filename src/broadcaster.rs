//! The broadcaster: one thread, the loop around the `Room`. Readers send it
//! events over one channel, so it alone decides who is in the room and in
//! which order things happen. For each event it asks the room what to
//! send, encodes each frame once, and hands the bytes to delivery.
//!
//! While events are waiting it gathers the frames of several into one
//! batch (`MAX_PENDING_FRAMES`, `MAX_PENDING_BYTES`): one command per
//! delivery thread for the lot, and one write per client for many frames.
//! The last event before a quiet spell goes out at once.

use crate::delivery::{Batch, Bytes, Delivery, Endpoint, Outlet, Variant};
use crate::history_file::HistoryLog;
use crate::metrics::Metrics;
use crate::protocol::close::CloseCode;
use crate::protocol::deflate::compress_message;
use crate::protocol::frame::{OpCode, encode_close, encode_compressed_frame, encode_frame};
use crate::room::{Action, ClientId, History, Mode, Output, Payload, Room, now_ms};
use crossbeam_channel::{Receiver, Sender};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

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
        joined: Sender<Outlet>,
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

/// Frames gathered into one batch while events are waiting...
pub const MAX_PENDING_FRAMES: usize = 64;
/// ... or this many bytes of them, whichever comes first.
pub const MAX_PENDING_BYTES: usize = 64 * 1024;

/// Events waiting for the broadcaster. Bounded: if it ever falls behind,
/// readers wait (and so their clients do) instead of memory growing.
pub const EVENT_QUEUE: usize = 16 * 1024;

/// The broadcast stream a client of `mode` receives: 0 and 1 plain, and
/// 2 and 3 the same frames compressed, for a client that negotiated
/// permessage-deflate (RFC 7692) in its handshake.
pub fn variant(mode: Mode, deflate: bool) -> Variant {
    let plain = match mode {
        Mode::Raw => 0,
        Mode::V1 => 1,
    };
    if deflate { plain + 2 } else { plain }
}

/// Whether clients of `variant` negotiated permessage-deflate: their
/// private frames (a welcome, a reply) may be sent with
/// [`compressed_frame`] too.
pub fn is_compressed(variant: Variant) -> bool {
    variant >= 2
}

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

pub struct Broadcaster {
    room: Room,
    delivery: Arc<Delivery>,
    log: Option<HistoryLog>,
    /// Frames not yet handed to delivery.
    pending: Batch,
    /// The room's outputs for the current event (reused).
    out: Vec<Output>,
    /// Counts compressions, and says whether any chat client of a
    /// protocol negotiated permessage-deflate (`deflate_clients`): only
    /// then are that protocol's broadcasts compressed.
    metrics: Arc<Metrics>,
}

impl Broadcaster {
    pub fn new(
        history: History,
        next_seq: u64,
        log: Option<HistoryLog>,
        delivery: Arc<Delivery>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Broadcaster {
            room: Room::new(history, next_seq),
            delivery,
            log,
            pending: Batch::default(),
            out: Vec::new(),
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
        while let Ok(event) = rx.recv() {
            let action = match event {
                Event::Join {
                    id,
                    peer,
                    mode,
                    endpoint,
                    joined,
                } => {
                    log::debug!("({id}) joined the room from {peer} ({mode:?})");
                    // What is pending is in the history the welcome will
                    // carry: it goes out before the newcomer is a recipient.
                    self.flush();
                    let _ = joined.send(self.delivery.add(*endpoint));
                    Action::Join { id, mode }
                }
                Event::Text { id, text } => Action::Text { id, text },
                Event::Binary { id, data } => Action::Binary { id, data },
                Event::Leave { id } => Action::Leave { id },
                Event::Shutdown => {
                    self.flush();
                    let close = encode_close(CloseCode::Away, "shutting_down", None);
                    self.delivery.stop(&close);
                    if let Some(log) = self.log.take() {
                        log.close(); // every accepted message is on disk
                    }
                    return;
                }
            };
            self.room.handle(now_ms(), action, &mut self.out);
            self.emit();
            if rx.is_empty()
                || self.pending.len() >= MAX_PENDING_FRAMES
                || self.pending.bytes() >= MAX_PENDING_BYTES
            {
                self.flush();
            }
        }
    }

    /// Encodes the room's outputs, each once.
    fn emit(&mut self) {
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
                    self.pending
                        .push(variant(mode, false), except, frame.into_boxed_slice());
                    // One compression per broadcast, whatever the number of
                    // recipients: with server_no_context_takeover the
                    // compressed bytes depend on the message alone (RFC
                    // 7692 §7.1.1.1). A client that joins later counted
                    // itself before its Join was sent, so none is missed.
                    let compressing = &self.metrics.deflate_clients[variant(mode, false) as usize];
                    if compressing.load(Relaxed) > 0 {
                        let frame = compressed_frame(opcode, bytes, &self.metrics);
                        self.pending
                            .push(variant(mode, true), except, frame.into_boxed_slice());
                    }
                }
                Output::Reply { to, event } => {
                    // In order: what was broadcast before this goes first.
                    self.flush();
                    let frame = encode_frame(OpCode::Text, event.as_bytes(), None);
                    self.delivery.send(to, Bytes::Owned(frame));
                }
                Output::Said(event) => {
                    if let Some(log) = &self.log {
                        log.append(event);
                    }
                }
            }
        }
        self.out = out;
    }

    /// Hands the pending frames to delivery as one batch.
    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.delivery.broadcast(std::mem::take(&mut self.pending));
        }
    }
}
