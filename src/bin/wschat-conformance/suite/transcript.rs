//! What a case sent and what came back, kept per case thread, so that
//! every verdict's reason can say both in one line.

use super::client::{Message, describe};
use std::cell::RefCell;

#[derive(Default)]
struct Transcript {
    /// Frames (or requests) sent, summarised.
    sent: Vec<String>,
    /// Messages and events received, summarised.
    got: Vec<String>,
    /// Bytes of a frame that a chopped write left incomplete.
    pending: Vec<u8>,
}

thread_local! {
    static TRANSCRIPT: RefCell<Transcript> = RefCell::new(Transcript::default());
}

pub fn reset() {
    TRANSCRIPT.with(|t| *t.borrow_mut() = Transcript::default());
}

/// Records an HTTP request (by its first line).
pub fn sent_request(request: &[u8]) {
    let line = request.split(|&b| b == b'\n').next().unwrap_or(b"");
    let line = String::from_utf8_lossy(line).trim_end().to_string();
    TRANSCRIPT.with(|t| {
        t.borrow_mut()
            .sent
            .push(format!("request {line:?} ({} bytes)", request.len()))
    });
}

/// Records the frames in `bytes` (client frames, masked or not); a frame
/// cut short waits for the rest in a later call.
pub fn sent_frames(bytes: &[u8]) {
    TRANSCRIPT.with(|t| {
        let mut t = t.borrow_mut();
        t.pending.extend_from_slice(bytes);
        while let Some((summary, total)) = next_frame(&t.pending) {
            if (t.pending.len() as u64) < total {
                break;
            }
            t.sent.push(summary);
            t.pending.drain(..total as usize);
        }
    });
}

/// The summary and total size of the frame at the start of `p`, once its
/// header is complete.
fn next_frame(p: &[u8]) -> Option<(String, u64)> {
    if p.len() < 2 {
        return None;
    }
    let masked = p[1] & 0x80 != 0;
    let (head, len) = match p[1] & 0x7f {
        126 if p.len() >= 4 => (4, u16::from_be_bytes([p[2], p[3]]) as u64),
        127 if p.len() >= 10 => {
            let mut l = [0u8; 8];
            l.copy_from_slice(&p[2..10]);
            (10, u64::from_be_bytes(l))
        }
        126 | 127 => return None,
        n => (2, n as u64),
    };
    let (head, mask) = if masked {
        (head + 4, p.get(head..head + 4))
    } else {
        (head, None)
    };
    if p.len() < head {
        return None;
    }
    let summary = frame_summary(p[0], len, &p[head..], mask);
    Some((summary, (head as u64).saturating_add(len)))
}

fn frame_summary(b0: u8, len: u64, payload: &[u8], mask: Option<&[u8]>) -> String {
    let masked = mask.is_some();
    let kind = match b0 & 0x0f {
        0 => "cont".to_string(),
        1 => "text".into(),
        2 => "binary".into(),
        8 => "close".into(),
        9 => "ping".into(),
        0xA => "pong".into(),
        op => format!("opcode {op:x}"),
    };
    let mut s = kind;
    if b0 & 0x80 == 0 {
        s.push_str(" no-FIN");
    }
    let rsv = (b0 >> 4) & 7;
    if rsv != 0 {
        s.push_str(&format!(" RSV={rsv:03b}"));
    }
    if !masked {
        s.push_str(" unmasked");
    }
    if b0 & 0x0f == 8 && len >= 2 && payload.len() >= 2 {
        let m = mask
            .filter(|_| masked)
            .map(|m| [m[0], m[1]])
            .unwrap_or([0, 0]);
        let code = u16::from_be_bytes([payload[0] ^ m[0], payload[1] ^ m[1]]);
        s.push_str(&format!(" {code}"));
        if len > 2 {
            s.push_str(&format!("+{}B", len - 2));
        }
    } else {
        s.push_str(&format!(" {len}B"));
    }
    s
}

pub fn got(message: &Message) {
    TRANSCRIPT.with(|t| t.borrow_mut().got.push(describe(message)));
}

/// Records an event other than a message ("TCP closed", "101", ...).
pub fn got_event(event: impl Into<String>) {
    TRANSCRIPT.with(|t| t.borrow_mut().got.push(event.into()));
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "nothing".into();
    }
    // Runs of the same summary are counted, so 1000 pings make one entry.
    let mut runs: Vec<(String, usize)> = Vec::new();
    for item in items {
        match runs.last_mut() {
            Some((last, n)) if last == item => *n += 1,
            _ => runs.push((item.clone(), 1)),
        }
    }
    let shown: Vec<String> = runs
        .iter()
        .take(5)
        .map(|(s, n)| {
            if *n > 1 {
                format!("{n}x {s}")
            } else {
                s.clone()
            }
        })
        .collect();
    let more = if runs.len() > 5 {
        let rest: usize = runs[5..].iter().map(|(_, n)| n).sum();
        format!(", +{rest} more")
    } else {
        String::new()
    };
    format!("{}{more}", shown.join(", "))
}

/// "sent ...; got ..." for this case so far.
pub fn summary() -> String {
    TRANSCRIPT.with(|t| {
        let t = t.borrow();
        let mut sent = t.sent.clone();
        if let Some((summary, total)) = next_frame(&t.pending) {
            let have = t.pending.len();
            sent.push(format!("{summary} (only {have} of {total} bytes)"));
        }
        format!("sent {}; got {}", list(&sent), list(&t.got))
    })
}
