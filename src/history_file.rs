//! `--history-file`: every chat message appended as one JSON line, and the
//! last `--history` of them loaded again on start, so a restart does not
//! wipe the room's memory. Writing happens on a thread of its own: the
//! broadcaster never waits for a disk.
//!
//! A crash or a full disk can leave the last line torn. Three rules keep
//! that harmless: a line is loaded only if it is a complete, well-formed
//! `message` event ([`message_seq`]); a torn last line is cut off before
//! anything is appended ([`HistoryLog::open`]), so a new line never joins
//! it; and numbering continues after every id ever written, a torn line's
//! too if its id can still be read, so no id is issued twice.

use crate::json::{self, Value};
use crate::room::History;
use crossbeam_channel::Sender;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

/// The sending end of the history writer thread.
#[derive(Debug)]
pub struct HistoryLog {
    tx: Sender<Arc<str>>,
    writer: std::thread::JoinHandle<()>,
}

impl HistoryLog {
    /// Opens (creating if needed) `path` for appending, repairs a torn
    /// last line (see [`repair_last_line`]), and starts the writer.
    pub fn open(path: &Path) -> io::Result<HistoryLog> {
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        repair_last_line(&mut file, path)?;
        let (tx, rx) = crossbeam_channel::unbounded::<Arc<str>>();
        let name = path.display().to_string();
        let writer = std::thread::Builder::new()
            .name("wschat-history".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                for event in rx {
                    // One write per line, flushed at once: a crash loses at
                    // most the line being written, and a torn line is cut
                    // off on the next start.
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

/// Makes the file end with a whole line before anything is appended. The
/// last line lacks its newline only if a write was cut short: if what is
/// there is still a complete message event, the newline is added; if not,
/// the torn bytes are cut off, with a warning.
fn repair_last_line(file: &mut File, path: &Path) -> io::Result<()> {
    let len = file.seek(SeekFrom::End(0))?;
    let last_line_start = last_line_start(file, len)?;
    if last_line_start == len {
        return Ok(()); // empty, or ends with a newline
    }
    file.seek(SeekFrom::Start(last_line_start))?;
    let mut last = Vec::new();
    file.read_to_end(&mut last)?;
    if std::str::from_utf8(&last)
        .ok()
        .and_then(message_seq)
        .is_some()
    {
        file.write_all(b"\n")?;
    } else {
        log::warn!(
            "history file {}: cutting off a torn last line ({} bytes) before appending",
            path.display(),
            last.len()
        );
        file.set_len(last_line_start)?;
    }
    file.sync_data()
}

/// Where the last line of a file of `len` bytes starts: just after its
/// last newline (`len` if the file ends with one), or 0. Reads backwards
/// in blocks, so a long file is not read whole.
fn last_line_start(file: &mut File, len: u64) -> io::Result<u64> {
    const BLOCK: u64 = 64 * 1024;
    let mut end = len;
    let mut block = vec![0u8; BLOCK as usize];
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let chunk = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(nl) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + nl as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Loads the last `limit` message events from `path` (a missing file is an
/// empty history) and returns them with the next free sequence number:
/// one more than the greatest id in the file, whole lines or torn.
/// Lines that are not whole message events — a line torn by a crash — are
/// skipped with a warning.
pub fn load(path: &Path, limit: usize) -> io::Result<(History, u64)> {
    let mut history = History::new(limit);
    let mut next_seq = 1;
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((history, next_seq)),
        Err(e) => return Err(e),
    };
    for (number, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line?;
        let text = std::str::from_utf8(&line).ok();
        match text.and_then(message_seq) {
            Some(seq) => {
                next_seq = next_seq.max(seq.saturating_add(1));
                history.push(text.unwrap_or_default().into());
            }
            None if line.is_empty() => {}
            None => {
                // Its id may have been issued to clients already.
                if let Some(seq) = torn_seq(&line) {
                    next_seq = next_seq.max(seq.saturating_add(1));
                }
                log::warn!(
                    "history file {}: skipping damaged line {}",
                    path.display(),
                    number + 1
                );
            }
        }
    }
    Ok((history, next_seq))
}

/// The sequence number of a line, if it is a complete, well-formed
/// `message` event as [`crate::room::message_event`] writes it: a JSON
/// object with `type` "message", a whole-number `id`, `from` (an object of
/// a whole-number `id` and a string `nick`), a string `text`, a
/// whole-number `ts`, an optional `action` of `true`, and nothing else.
pub fn message_seq(line: &str) -> Option<u64> {
    let event = json::parse(line)?;
    let Value::Object(members) = &event else {
        return None;
    };
    let from = event.get("from")?;
    let Value::Object(from_members) = from else {
        return None;
    };
    let well_formed = event.get("type")?.as_str() == Some("message")
        && from_members.len() == 2
        && from.get("id")?.as_u64().is_some()
        && from.get("nick")?.as_str().is_some()
        && event.get("text")?.as_str().is_some()
        && event.get("ts")?.as_u64().is_some()
        && match event.get("action") {
            None => members.len() == 5,
            Some(action) => *action == Value::Bool(true) && members.len() == 6,
        };
    if well_formed {
        event.get("id")?.as_u64()
    } else {
        None
    }
}

/// The id of a damaged line, if it still starts as a message event does
/// and its id is whole (followed by the comma after it).
fn torn_seq(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(b"{\"type\":\"message\",\"id\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if rest.get(digits) != Some(&b',') {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
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
        // Id 6 may have reached clients before the crash: never reused.
        assert_eq!(next, 7);
        let texts: Vec<_> = history.iter().collect();
        assert_eq!(texts.len(), 3);
        assert!(texts[0].contains("line 3") && texts[2].contains("line 5"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_whole_message_events_are_accepted() {
        let good = message_event(7, 1, "ann", "hi \"you\" \n </script>", 5, false);
        assert_eq!(message_seq(&good), Some(7));
        let action = message_event(8, 1, "ann", "waves", 5, true);
        assert_eq!(message_seq(&action), Some(8));
        for torn in 0..good.len() {
            assert_eq!(message_seq(&good[..torn]), None, "{}", &good[..torn]);
        }
        for bad in [
            // What an append onto a torn line makes.
            format!("{}{good}", &good[..30]),
            format!("{good}{good}"),
            good.replace("\"message\"", "\"join\""),
            good.replace("\"id\":7", "\"id\":-7"),
            good.replace("\"id\":7", "\"id\":\"7\""),
            good.replace(",\"ts\":5", ""),
            good.replace("}", ",\"extra\":1}"),
            action.replace("true", "false"),
            "[]".into(),
        ] {
            assert_eq!(message_seq(&bad), None, "{bad}");
        }
    }

    #[test]
    fn a_torn_last_line_is_cut_off_or_completed_before_appending() {
        let dir = std::env::temp_dir().join(format!("wschat-repair-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.jsonl");
        let first = message_event(1, 1, "ann", "one", 0, false);
        let second = message_event(2, 1, "ann", "two", 0, false);
        for tear in 0..=second.len() {
            std::fs::write(&path, format!("{first}\n{}", &second[..tear])).unwrap();
            let (_, next) = load(&path, 10).unwrap();
            let readable = tear > second.find(",\"from\"").unwrap();
            assert_eq!(next, if readable { 3 } else { 2 }, "tear {tear}");
            HistoryLog::open(&path).unwrap().close();
            let text = std::fs::read_to_string(&path).unwrap();
            if tear == second.len() {
                assert_eq!(text, format!("{first}\n{second}\n"));
            } else {
                assert_eq!(text, format!("{first}\n"), "tear {tear}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
