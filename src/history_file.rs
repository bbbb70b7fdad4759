//! `--history-file`: every chat message appended as one JSON line, and the
//! last `--history` of them loaded again on start, so a restart does not
//! wipe the room's memory. Writing happens on a thread of its own: the
//! broadcaster never waits for a disk.

use crate::room::History;
use crossbeam_channel::Sender;
use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Arc;

/// The sending end of the history writer thread.
#[derive(Debug)]
pub struct HistoryLog {
    tx: Sender<Arc<str>>,
    writer: std::thread::JoinHandle<()>,
}

impl HistoryLog {
    /// Opens (creating if needed) `path` for appending and starts the writer.
    pub fn open(path: &Path) -> io::Result<HistoryLog> {
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = crossbeam_channel::unbounded::<Arc<str>>();
        let name = path.display().to_string();
        let writer = std::thread::Builder::new()
            .name("wschat-history".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                for event in rx {
                    // One write per line, flushed at once: a crash loses at
                    // most the line being written, and a torn line is
                    // skipped on the next start.
                    let mut line = Vec::with_capacity(event.len() + 1);
                    line.extend_from_slice(event.as_bytes());
                    line.push(b'\n');
                    if let Err(e) = file.write_all(&line).and_then(|_| file.flush()) {
                        log::error!("Error: writing history file {name}: {e}");
                    }
                }
            })?;
        Ok(HistoryLog { tx, writer })
    }

    /// Writes out everything appended so far, then stops the writer.
    pub fn close(self) {
        drop(self.tx);
        let _ = self.writer.join();
    }

    pub fn append(&self, event: Arc<str>) {
        let _ = self.tx.send(event);
    }
}

/// Loads the last `limit` message events from `path` (a missing file is an
/// empty history) and returns them with the next free sequence number.
/// Lines that are not whole message events — a line torn by a crash — are
/// skipped with a warning.
pub fn load(path: &Path, limit: usize) -> io::Result<(History, u64)> {
    let mut history = History::new(limit);
    let mut next_seq = 1;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((history, next_seq)),
        Err(e) => return Err(e),
    };
    for (number, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line?;
        match std::str::from_utf8(&line).ok().and_then(message_seq) {
            Some(seq) => {
                next_seq = next_seq.max(seq + 1);
                history.push(String::from_utf8_lossy(&line).into());
            }
            None if line.is_empty() => {}
            None => log::warn!(
                "history file {}: skipping damaged line {}",
                path.display(),
                number + 1
            ),
        }
    }
    Ok((history, next_seq))
}

/// The sequence number of a line this server wrote, if it is whole: it must
/// start as every message event starts and end with its closing brace.
fn message_seq(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("{\"type\":\"message\",\"id\":")?;
    if !line.ends_with('}') || !line.contains(",\"ts\":") {
        return None;
    }
    let digits = rest.split(',').next()?;
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::message_event;

    #[test]
    fn torn_lines_are_skipped_and_numbering_continues() {
        let dir = std::env::temp_dir().join(format!("wschat-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.jsonl");
        let mut text = String::new();
        for seq in 1..=5 {
            text.push_str(&message_event(
                seq,
                1,
                "ann",
                &format!("line {seq}"),
                0,
                false,
            ));
            text.push('\n');
        }
        text.push_str("{\"type\":\"message\",\"id\":6,\"from\":{\"id\":1,\"ni");
        std::fs::write(&path, text).unwrap();
        let (history, next) = load(&path, 3).unwrap();
        assert_eq!(next, 6);
        let texts: Vec<_> = history.iter().collect();
        assert_eq!(texts.len(), 3);
        assert!(texts[0].contains("line 3") && texts[2].contains("line 5"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
