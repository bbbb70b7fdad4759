//! `--history-file`: the room's kept history, its next message id and its
//! epoch on disk, so that a restart neither wipes the room's memory nor
//! issues an id twice, and a resuming client can tell the same history
//! from a new one.
//!
//! # The format (version 1)
//!
//! UTF-8 text, one JSON object per line. The first line is the header:
//!
//! ```text
//! {"wschat_history":1,"epoch":"k3x9a2bq","next_seq":42}
//! {"type":"message","id":40,"from":{"id":7,"nick":"ann"},"text":"hi","ts":1764093600000}
//! {"type":"message","id":41,"from":{"id":9,"nick":"bo"},"text":"waves","ts":1764093601000,"action":true}
//! ```
//!
//! - `wschat_history`: the format's version. A file of a newer version
//!   than this server reads is refused at start-up (never overwritten).
//! - `epoch`: the epoch of the ids in this file ([`Epoch`]); a new file
//!   gets a fresh one, and it never changes while the file lives.
//! - `next_seq`: the id the next message gets, at the time the header was
//!   written. Ids of the records after it count too: the next id is one
//!   more than the greatest of all, torn lines' included.
//! - Then one record per line, each an object with a `type`. Version 1 has
//!   one kind, `message`: the `message` event exactly as clients receive
//!   it ([`message_seq`] says which lines are whole). A later kind (rooms,
//!   topics, bans, mutes) is added with a new version number, which reads
//!   every older version.
//!
//! A file without a header (written before the format had one: bare
//! `message` lines) is loaded as a version 1 file with no header: its
//! messages are kept, a fresh epoch is given, and it is rewritten in the
//! current format at once.
//!
//! # Writing, bounded
//!
//! At start-up the file is loaded and rewritten (see [`rewrite`]: a
//! temporary file, fsync, rename, fsync of the directory), which drops
//! torn and damaged lines and what no longer fits the history. Then each
//! new message is appended as one line by a thread of its own, so the
//! broadcaster never waits for a disk. When [`COMPACT_AFTER_BYTES`] have
//! been appended, the writer rewrites the file again from its copy of the
//! kept history: the file holds at most the kept history (at most
//! [`crate::room::MAX_HISTORY_BYTES`], or a single larger message) plus
//! that much, and loading it at start-up reads no more.
//!
//! The writer's queue is bounded too ([`QUEUE_MAX_RECORDS`],
//! [`QUEUE_MAX_BYTES`]). If the disk stalls and the queue fills, the
//! broadcaster does not wait and does not drop lines one by one: it
//! replaces everything waiting by a copy of the room's kept history (a
//! pointer per message; the text is shared) and its next id, logs it
//! once, and the writer rewrites the file from that copy when the disk
//! comes back. The file's promise — the last `--history` messages, the
//! next id and the epoch — is kept whole; only messages that had already
//! left the kept history skip the disk, as compaction would have dropped
//! them. A failed write is handled the same way: logged, then the file is
//! rewritten from memory every [`RETRY_AFTER`] until it works.
//!
//! Lines are written without fsync (a crash of the process loses nothing
//! the kernel has; a power cut may lose the last lines, and then a client
//! resuming from a lost id is told `gap`, as its id is not issued yet).
//! Rewrites are fsynced before the rename, so the file is always either
//! the old one or the new one, whole.

use crate::json::{self, Value};
use crate::room::{Epoch, History, message_id};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The format version this server writes and reads (and every older one).
pub const FORMAT_VERSION: u64 = 1;
/// The header's first key: a line starting with this is a header.
const HEADER_PREFIX: &str = "{\"wschat_history\":";
/// Bytes appended after which the file is compacted (rewritten from the
/// kept history).
pub const COMPACT_AFTER_BYTES: usize = 1024 * 1024;
/// Messages waiting for the writer, at most, before the broadcaster stops
/// queueing them one by one and leaves a copy of the history instead...
pub const QUEUE_MAX_RECORDS: usize = 1024;
/// ... or this many bytes of them (one message larger than this still
/// waits alone).
pub const QUEUE_MAX_BYTES: usize = 1024 * 1024;
/// After a failed write, how long before the file is rewritten again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What a history file holds once loaded.
#[derive(Debug)]
pub struct Loaded {
    /// The last `--history` messages, with what is older marked dropped.
    pub history: History,
    /// The id the next message gets.
    pub next_seq: u64,
    /// The file's epoch; `None` for a new file, one without a header, or
    /// one whose header is damaged (a fresh epoch then starts).
    pub epoch: Option<Epoch>,
}

/// The room's state as the writer rewrites it: the kept history and the
/// next id (the epoch is the file's own).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub history: History,
    pub next_seq: u64,
}

impl Snapshot {
    /// A copy of `history` (pointers to the shared texts) and `next_seq`.
    pub fn of(history: &History, next_seq: u64) -> Snapshot {
        Snapshot {
            history: history.clone(),
            next_seq,
        }
    }
}

/// What waits for the writer.
#[derive(Debug, Default)]
struct Outbox {
    /// If set, the file is to be rewritten from it first (the disk fell
    /// behind, and what waited was replaced by it).
    rewrite: Option<Snapshot>,
    /// Lines to append after it, oldest first.
    appends: VecDeque<Arc<str>>,
    bytes: usize,
    /// Times the queue was full since the writer last caught up.
    overflows: u64,
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    outbox: Mutex<Outbox>,
    wake: Condvar,
    /// Tests only: held, it stalls the writer as a hung disk would.
    #[cfg(test)]
    stall: Mutex<()>,
}

impl Shared {
    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        // The writer never panics holding the lock; if it did, the
        // queue's contents are still whole.
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sending end of the history writer thread.
#[derive(Debug)]
pub struct HistoryLog {
    shared: Arc<Shared>,
    writer: std::thread::JoinHandle<()>,
}

impl HistoryLog {
    /// Loads `path` (a missing file is a new, empty history), rewrites it
    /// in the current format with its last `limit` messages, and starts
    /// the writer. Returns what was loaded, with the epoch to use.
    pub fn open(path: &Path, limit: usize) -> io::Result<(Loaded, Epoch, HistoryLog)> {
        let loaded = load(path, limit)?;
        let epoch = match &loaded.epoch {
            Some(epoch) => epoch.clone(),
            None => {
                let epoch = Epoch::fresh();
                log::info!(
                    "history file {}: new epoch {epoch} (a new file, or one without a header)",
                    path.display()
                );
                epoch
            }
        };
        let mut writer = Writer {
            path: path.to_path_buf(),
            epoch: epoch.clone(),
            kept: loaded.history.clone(),
            next_seq: loaded.next_seq,
            file: None,
            appended: 0,
            retry_at: None,
        };
        writer.file = Some(rewrite(path, &writer.header(), &writer.kept)?);
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("wschat-history".into())
                .stack_size(64 * 1024)
                .spawn(move || writer.run(&shared))?
        };
        Ok((
            loaded,
            epoch,
            HistoryLog {
                shared,
                writer: thread,
            },
        ))
    }

    /// Writes out everything appended so far, then stops the writer.
    pub fn close(self) {
        self.shared.outbox().closed = true;
        self.shared.wake.notify_one();
        let _ = self.writer.join();
    }

    /// Queues a message for the file without waiting. If the queue is
    /// full (the disk is behind), what waits is replaced by `snapshot()`:
    /// the room's kept history and next id, `event` included.
    pub fn append(&self, event: Arc<str>, snapshot: impl FnOnce() -> Snapshot) {
        let mut outbox = self.shared.outbox();
        let fits = outbox.appends.len() < QUEUE_MAX_RECORDS
            && outbox.bytes + event.len() <= QUEUE_MAX_BYTES;
        if fits || outbox.appends.is_empty() {
            outbox.bytes += event.len();
            outbox.appends.push_back(event);
        } else {
            if outbox.overflows == 0 {
                log::warn!(
                    "history file: the disk is {} messages ({} bytes) behind; the file will be \
                     rewritten from the kept history when it catches up",
                    outbox.appends.len(),
                    outbox.bytes
                );
            }
            outbox.overflows += 1;
            outbox.rewrite = Some(snapshot());
            outbox.appends.clear();
            outbox.bytes = 0;
        }
        drop(outbox);
        self.shared.wake.notify_one();
    }

    /// Tests only: messages and bytes waiting, and whether a rewrite does.
    #[cfg(test)]
    fn backlog(&self) -> (usize, usize, bool) {
        let outbox = self.shared.outbox();
        (outbox.appends.len(), outbox.bytes, outbox.rewrite.is_some())
    }
}

/// The writer thread's state: the file, and its own copy of the kept
/// history (pointers shared with the room's) to compact from.
struct Writer {
    path: PathBuf,
    epoch: Epoch,
    kept: History,
    next_seq: u64,
    /// Open for appending; `None` after a failed write, until a rewrite
    /// works.
    file: Option<File>,
    /// Bytes appended since the last rewrite.
    appended: usize,
    /// After a failed write: when to try rewriting again.
    retry_at: Option<Instant>,
}

impl Writer {
    fn header(&self) -> String {
        format!(
            "{HEADER_PREFIX}{FORMAT_VERSION},\"epoch\":\"{}\",\"next_seq\":{}}}",
            self.epoch, self.next_seq
        )
    }

    fn run(mut self, shared: &Shared) {
        loop {
            let (rewrite, appends, overflows, closed) = {
                let mut outbox = shared.outbox();
                while outbox.rewrite.is_none() && outbox.appends.is_empty() && !outbox.closed {
                    let wait = self
                        .retry_at
                        .map(|at| at.saturating_duration_since(Instant::now()));
                    outbox = match wait {
                        None => shared.wake.wait(outbox).unwrap_or_else(|e| e.into_inner()),
                        Some(wait) if wait.is_zero() => break,
                        Some(wait) => {
                            shared
                                .wake
                                .wait_timeout(outbox, wait)
                                .unwrap_or_else(|e| e.into_inner())
                                .0
                        }
                    };
                }
                outbox.bytes = 0;
                (
                    outbox.rewrite.take(),
                    std::mem::take(&mut outbox.appends),
                    std::mem::take(&mut outbox.overflows),
                    outbox.closed,
                )
            };
            #[cfg(test)]
            let _stalled = shared.stall.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(snapshot) = rewrite {
                self.kept = snapshot.history;
                self.next_seq = self.next_seq.max(snapshot.next_seq);
                self.file = None; // rewrite from it
            }
            self.write(appends, closed);
            if overflows > 0 {
                log::info!(
                    "history file {}: caught up after the disk fell behind ({overflows} times \
                     the queue was full)",
                    self.path.display()
                );
            }
            if closed {
                return;
            }
        }
    }

    /// Appends `lines`, or rewrites the whole file when it is due (after
    /// a rewrite from memory was asked for, a failed write, or
    /// [`COMPACT_AFTER_BYTES`]).
    fn write(&mut self, lines: VecDeque<Arc<str>>, closing: bool) {
        let mut buffer = Vec::new();
        for line in &lines {
            if let Some(id) = message_id(line) {
                self.next_seq = self.next_seq.max(id.saturating_add(1));
            }
            self.kept.push(line.clone());
            buffer.extend_from_slice(line.as_bytes());
            buffer.push(b'\n');
        }
        let compact = self.appended + buffer.len() >= COMPACT_AFTER_BYTES;
        if let (Some(file), false) = (&mut self.file, compact) {
            // One write for the lot: a crash tears at most the last line,
            // which the next start cuts off.
            match file.write_all(&buffer) {
                Ok(()) => {
                    self.appended += buffer.len();
                    return;
                }
                Err(e) => {
                    log::error!(
                        "Error: writing history file {}: {e}; rewriting it from memory",
                        self.path.display()
                    );
                    self.file = None;
                }
            }
        }
        if !closing && self.retry_at.is_some_and(|at| Instant::now() < at) {
            return; // the lines are in `kept`; the retry writes them
        }
        match rewrite(&self.path, &self.header(), &self.kept) {
            Ok(file) => {
                if self.retry_at.take().is_some() {
                    log::info!("history file {}: written again", self.path.display());
                }
                self.file = Some(file);
                self.appended = 0;
            }
            Err(e) => {
                log::error!(
                    "Error: rewriting history file {}: {e}; trying again in {} s",
                    self.path.display(),
                    RETRY_AFTER.as_secs()
                );
                self.retry_at = Some(Instant::now() + RETRY_AFTER);
            }
        }
    }
}

/// Replaces the file at `path` by `header` and the kept messages, safely:
/// written to `PATH.tmp`, fsynced, renamed over `path` (atomic), and the
/// directory fsynced so that the rename itself survives a power cut.
/// Returns the new file, open for appending.
fn rewrite(path: &Path, header: &str, kept: &History) -> io::Result<File> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let temporary = path.with_file_name(name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temporary)?;
        let mut text = String::with_capacity(header.len() + kept.bytes() + kept.len() + 1);
        text.push_str(header);
        text.push('\n');
        for event in kept.iter() {
            text.push_str(event);
            text.push('\n');
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        let directory = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        File::open(directory)?.sync_all()?;
        Ok(file)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result.map_err(|e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// The header's fields, if `line` is a whole header.
fn parse_header(line: &str) -> Option<(u64, Option<Epoch>, u64)> {
    let header = json::parse(line)?;
    let version = header.get("wschat_history")?.as_u64()?;
    let epoch = header
        .get("epoch")
        .and_then(Value::as_str)
        .and_then(Epoch::parse);
    let next_seq = header.get("next_seq").and_then(Value::as_u64).unwrap_or(1);
    Some((version, epoch, next_seq))
}

/// Loads the last `limit` messages from `path` (a missing file is an
/// empty history) with the next free id and the epoch. The next id is
/// one more than the greatest id in the file (whole lines or torn) and
/// at least the header's `next_seq`; messages older than the first one
/// kept count as dropped (so a client resuming from before them is told
/// `gap`). Lines that are not whole records — a line torn by a crash —
/// are skipped with a warning. A file of a newer format version is an
/// error (`InvalidData`), to be refused, not overwritten.
pub fn load(path: &Path, limit: usize) -> io::Result<Loaded> {
    let mut history = History::new(limit);
    let mut next_seq = 1;
    let mut epoch = None;
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Loaded {
                history,
                next_seq,
                epoch,
            });
        }
        Err(e) => return Err(e),
    };
    for (number, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line?;
        let text = std::str::from_utf8(&line).ok();
        if let Some(text) = text.filter(|t| number == 0 && t.starts_with(HEADER_PREFIX)) {
            match parse_header(text) {
                Some((version, _, _)) if version > FORMAT_VERSION => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "history file {} is in format version {version}, written by a newer \
                             wschat; this one reads versions up to {FORMAT_VERSION} \
                             (refusing to start rather than overwrite it)",
                            path.display()
                        ),
                    ));
                }
                Some((_, header_epoch, header_next)) => {
                    epoch = header_epoch;
                    next_seq = next_seq.max(header_next);
                    continue;
                }
                None => {} // damaged: skipped below, and a new epoch starts
            }
        }
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
    // Whatever came before the first message kept is no longer kept.
    let first_kept = history
        .iter()
        .next()
        .and_then(message_id)
        .unwrap_or(next_seq);
    let dropped = history.dropped_through().max(first_kept.saturating_sub(1));
    history.set_dropped_through(dropped);
    Ok(Loaded {
        history,
        next_seq,
        epoch,
    })
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
mod tests;
