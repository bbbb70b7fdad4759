//! One inspected connection's shared state: the reports waiting for its
//! feed (bounded and rate-limited), and the writer every server→client
//! frame goes through, so that each is recorded as it is written.

use super::{MAX_BACKLOG, MAX_FRAME_SHOWN, MAX_FRAMES_PER_SECOND, hex};
use crate::json::push_string;
use crate::metrics::Metrics;
use crate::protocol::deflate::Agreement;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which way a frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client to server, as the reader received it.
    In,
    /// Server to client, as the writer wrote it.
    Out,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Dir::In => "in",
            Dir::Out => "out",
        }
    }
}

/// A message (or control frame) complete: how to describe it.
pub struct MessageReport<'a> {
    pub dir: Dir,
    /// The frames it was made of, by number; `None` for a frame skipped.
    pub frames: &'a [Option<u64>],
    /// text, binary, close, ping or pong.
    pub kind: &'static str,
    /// The payload as carried (compressed bytes, if `compressed`).
    pub wire: &'a [u8],
    pub compressed: bool,
    /// The message itself: inflated if compressed.
    pub data: &'a [u8],
}

pub struct Session {
    pub id: u64,
    /// The permessage-deflate agreement its handshake made, if any.
    pub deflate: Option<Agreement>,
    key: String,
    feed_taken: AtomicBool,
    started: Instant,
    reports: Mutex<Reports>,
    writer: Mutex<Writer>,
    metrics: Arc<Metrics>,
}

struct Reports {
    queue: VecDeque<String>,
    window_start: Instant,
    in_window: u32,
    /// Frames not reported since the last `skipped` report.
    skipped: u64,
    next_frame: u64,
    ended: bool,
}

struct Writer {
    stream: TcpStream,
    close_sent: bool,
}

impl Session {
    pub fn new(
        id: u64,
        key: String,
        deflate: Option<Agreement>,
        stream: TcpStream,
        metrics: Arc<Metrics>,
    ) -> Session {
        // A page that stops reading must not hold the feed's thread (which
        // writes the server frames it asks for) for long.
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let now = Instant::now();
        Session {
            id,
            deflate,
            key,
            feed_taken: AtomicBool::new(false),
            started: now,
            reports: Mutex::new(Reports {
                queue: VecDeque::new(),
                window_start: now,
                in_window: 0,
                skipped: 0,
                next_frame: 1,
                ended: false,
            }),
            writer: Mutex::new(Writer {
                stream,
                close_sent: false,
            }),
            metrics,
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Takes the feed, once, for whoever presents the key. Compared
    /// without an early exit, so the time taken tells nothing of the key.
    pub fn take_feed(&self, key: &str) -> bool {
        let same = key.len() == self.key.len()
            && key
                .bytes()
                .zip(self.key.bytes())
                .fold(0, |acc, (a, b)| acc | (a ^ b))
                == 0;
        same && !self.feed_taken.swap(true, Relaxed)
    }

    /// Queues a report that is not a frame (handshake, message, end,
    /// a refused request). Never dropped: the queue's bound comes from the
    /// frames (at most [`MAX_BACKLOG`]), since a message is reported only
    /// when all its frames were, and the rest are a few per connection or
    /// one per request, which the feed itself drains.
    pub fn report(&self, json: String) {
        self.reports.lock().expect("reports").queue.push_back(json);
    }

    /// Reports one frame exactly as it crossed the wire: `raw` is the
    /// whole frame, `header_len` its header. Returns its number, or
    /// `None` if it was over the rate or the backlog and skipped.
    pub fn frame(&self, dir: Dir, raw: &[u8], header_len: usize) -> Option<u64> {
        let mut reports = self.reports.lock().expect("reports");
        let n = reports.next_frame;
        reports.next_frame += 1;
        reports.roll_window(Instant::now());
        if reports.in_window >= MAX_FRAMES_PER_SECOND || reports.queue.len() >= MAX_BACKLOG {
            reports.skipped += 1;
            self.metrics.inspect_frames_skipped.fetch_add(1, Relaxed);
            return None;
        }
        reports.in_window += 1;
        self.metrics.inspect_frames_reported.fetch_add(1, Relaxed);
        let payload = &raw[header_len..];
        let shown = payload.len().min(MAX_FRAME_SHOWN);
        let ms = self.started.elapsed().as_millis();
        reports.queue.push_back(format!(
            "{{\"type\":\"frame\",\"n\":{n},\"dir\":\"{}\",\"ms\":{ms},\"header\":\"{}\",\
             \"payload\":\"{}\",\"payload_len\":{}}}",
            dir.name(),
            hex(&raw[..header_len]),
            hex(&payload[..shown]),
            payload.len()
        ));
        Some(n)
    }

    /// Reports how frames made a message, and what the message says.
    /// Left out when one of its frames was skipped.
    pub fn message(&self, m: &MessageReport<'_>) {
        if m.frames.iter().any(Option::is_none) {
            return;
        }
        let frames: Vec<String> = m.frames.iter().flatten().map(u64::to_string).collect();
        let mut json = format!(
            "{{\"type\":\"message\",\"dir\":\"{}\",\"kind\":\"{}\",\"frames\":[{}],\"compressed\":{},\"len\":{}",
            m.dir.name(),
            m.kind,
            frames.join(","),
            m.compressed,
            m.data.len()
        );
        if m.compressed {
            let shown = m.wire.len().min(MAX_FRAME_SHOWN);
            json.push_str(&format!(
                ",\"wire\":\"{}\",\"wire_len\":{},\"tail\":\"{}\"",
                hex(&m.wire[..shown]),
                m.wire.len(),
                hex(&crate::protocol::deflate::SYNC_FLUSH_TAIL)
            ));
        }
        let shown = &m.data[..m.data.len().min(MAX_FRAME_SHOWN)];
        if m.kind == "close" && m.data.len() >= 2 {
            let code = u16::from_be_bytes([m.data[0], m.data[1]]);
            json.push_str(&format!(",\"code\":{code},\"reason\":"));
            push_string(&mut json, &String::from_utf8_lossy(&m.data[2..]));
        } else if m.kind == "binary" {
            json.push_str(&format!(",\"data\":\"{}\"", hex(shown)));
        } else {
            json.push_str(",\"text\":");
            push_string(&mut json, &String::from_utf8_lossy(shown));
        }
        json.push('}');
        self.report(json);
    }

    /// Writes frames to the inspected connection (one message, or a
    /// control frame) and reports each, under one lock so that reports
    /// come in the order the bytes go out. After a Close nothing more
    /// is written (RFC 6455 §5.5.1).
    pub fn send(&self, frames: &[OutFrame], kind: &'static str, data: &[u8]) -> io::Result<()> {
        let mut writer = self.writer.lock().expect("writer");
        if writer.close_sent {
            return Err(io::Error::other("the connection is closing"));
        }
        // Reported before they are written: a reply to them (the
        // browser's Pong to a Ping) must not be reported first.
        let numbers: Vec<Option<u64>> = frames
            .iter()
            .map(|f| self.frame(Dir::Out, &f.bytes, f.header_len))
            .collect();
        let wire: Vec<u8> = frames
            .iter()
            .flat_map(|f| f.bytes[f.header_len..].iter().copied())
            .collect();
        let compressed = frames.first().is_some_and(|f| f.bytes[0] & 0x40 != 0);
        self.message(&MessageReport {
            dir: Dir::Out,
            frames: &numbers,
            kind,
            wire: &wire,
            compressed,
            data,
        });
        if kind == "close" {
            writer.close_sent = true;
        }
        let bytes: Vec<u8> = frames
            .iter()
            .flat_map(|f| f.bytes.iter().copied())
            .collect();
        writer.stream.write_all(&bytes)
    }

    pub fn close_sent(&self) -> bool {
        self.writer.lock().expect("writer").close_sent
    }

    /// The inspected connection is over: the feed sends what is left,
    /// then closes.
    pub fn end(&self) {
        let mut reports = self.reports.lock().expect("reports");
        reports.ended = true;
    }

    /// Reports ready for the feed, and whether the connection has ended.
    pub fn take_reports(&self) -> (Vec<String>, bool) {
        let mut reports = self.reports.lock().expect("reports");
        reports.roll_window(Instant::now());
        if reports.ended && reports.skipped > 0 {
            reports.flush_skipped();
        }
        let taken = reports.queue.drain(..).collect();
        (taken, reports.ended)
    }
}

impl Reports {
    /// Starts a new one-second window when the last is over, saying first
    /// how many frames the last one skipped.
    fn roll_window(&mut self, now: Instant) {
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.in_window = 0;
            if self.skipped > 0 {
                self.flush_skipped();
            }
        }
    }

    fn flush_skipped(&mut self) {
        self.queue.push_back(format!(
            "{{\"type\":\"skipped\",\"frames\":{},\"limit\":{MAX_FRAMES_PER_SECOND}}}",
            self.skipped
        ));
        self.skipped = 0;
    }
}

/// One frame ready to write: its bytes and where its header ends.
pub struct OutFrame {
    pub bytes: Vec<u8>,
    pub header_len: usize,
}

impl OutFrame {
    /// An unmasked server frame; `rsv1` marks a compressed message's first.
    pub fn new(fin: bool, rsv1: bool, opcode: crate::protocol::OpCode, payload: &[u8]) -> OutFrame {
        use crate::protocol::frame::{FrameHeader, MAX_HEADER_LEN, RSV1};
        let header = FrameHeader {
            fin,
            rsv: if rsv1 { RSV1 } else { 0 },
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let header_len = header.format(&mut head);
        let mut bytes = Vec::with_capacity(header_len + payload.len());
        bytes.extend_from_slice(&head[..header_len]);
        bytes.extend_from_slice(payload);
        OutFrame { bytes, header_len }
    }
}
