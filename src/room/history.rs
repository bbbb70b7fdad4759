//! The room's memory: the last N chat lines, as their JSON text, bounded
//! in count (`--history`) and in bytes (`MAX_HISTORY_BYTES`).

use super::events::message_id;
use std::collections::VecDeque;
use std::sync::Arc;

/// The most bytes of history kept (and so sent in one welcome): a few
/// large messages, or a hundred ordinary ones many times over. Without
/// it, a hundred 64 KiB messages would make every welcome 6 MiB or more.
pub const MAX_HISTORY_BYTES: usize = 512 * 1024;

/// The last N `message` events, as their JSON text, oldest first.
#[derive(Debug, Default, Clone)]
pub struct History {
    limit: usize,
    bytes: usize,
    events: VecDeque<Arc<str>>,
    /// The id of the newest message that no longer fits (0: none yet): a
    /// client resuming from an older id has missed something.
    dropped_through: u64,
}

impl History {
    pub fn new(limit: usize) -> Self {
        History {
            limit,
            bytes: 0,
            events: VecDeque::with_capacity(limit.min(1024)),
            dropped_through: 0,
        }
    }

    /// Keeps `event`, forgetting the oldest past the count or byte limit
    /// (the newest is always kept, however large).
    pub fn push(&mut self, event: Arc<str>) {
        if self.limit == 0 {
            self.dropped(&event);
            return;
        }
        self.bytes += event.len();
        self.events.push_back(event);
        while self.events.len() > self.limit
            || (self.bytes > MAX_HISTORY_BYTES && self.events.len() > 1)
        {
            let oldest = self.events.pop_front().expect("not empty");
            self.bytes -= oldest.len();
            self.dropped(&oldest);
        }
    }

    /// Lets go of the oldest kept message (to stay within a budget that
    /// several histories share), returning it.
    pub fn pop_oldest(&mut self) -> Option<Arc<str>> {
        let oldest = self.events.pop_front()?;
        self.bytes -= oldest.len();
        self.dropped(&oldest);
        Some(oldest)
    }

    /// The id of the newest message kept or let go of (0 if none).
    pub fn newest_id(&self) -> u64 {
        let kept = self.events.back().and_then(|e| message_id(e)).unwrap_or(0);
        kept.max(self.dropped_through)
    }

    fn dropped(&mut self, event: &str) {
        if let Some(id) = message_id(event) {
            self.dropped_through = self.dropped_through.max(id);
        }
    }

    /// The most messages kept (`--history`).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The kept events themselves, shared (for the history file's
    /// compaction: no copy of the text).
    pub fn events(&self) -> impl Iterator<Item = &Arc<str>> {
        self.events.iter()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.events.iter().map(|e| &**e)
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Bytes of JSON kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The newest message id the history has let go of (0 if none).
    pub fn dropped_through(&self) -> u64 {
        self.dropped_through
    }

    /// Restores [`History::dropped_through`] (from a cluster snapshot).
    pub fn set_dropped_through(&mut self, id: u64) {
        self.dropped_through = id;
    }

    /// The messages after id `since`, oldest first, and whether some
    /// messages after `since` are no longer kept (a gap the client cannot
    /// fill): then the whole history is given.
    pub fn after(&self, since: u64) -> (Vec<&str>, bool) {
        if since < self.dropped_through {
            return (self.iter().collect(), true);
        }
        let kept = self
            .iter()
            .filter(|event| message_id(event).is_some_and(|id| id > since))
            .collect();
        (kept, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::events::message_event;

    fn history(limit: usize, ids: &[u64]) -> History {
        let mut history = History::new(limit);
        for &id in ids {
            history.push(message_event(id, 1, "ann", "hi", 0, false).into());
        }
        history
    }

    fn ids(events: &[&str]) -> Vec<u64> {
        events.iter().filter_map(|e| message_id(e)).collect()
    }

    #[test]
    fn after_gives_exactly_the_newer_messages() {
        let history = history(3, &[2, 5, 9, 12]);
        assert_eq!(history.dropped_through(), 2);
        let (kept, gap) = history.after(5);
        assert_eq!((ids(&kept), gap), (vec![9, 12], false));
        let (kept, gap) = history.after(2);
        assert_eq!((ids(&kept), gap), (vec![5, 9, 12], false));
        let (kept, gap) = history.after(12);
        assert_eq!((ids(&kept), gap), (vec![], false));
    }

    #[test]
    fn an_id_older_than_the_history_is_a_gap() {
        let kept_three = history(3, &[2, 5, 9, 12]);
        let (kept, gap) = kept_three.after(1);
        assert_eq!((ids(&kept), gap), (vec![5, 9, 12], true));
        // Nothing kept at all: everything after the newest is a gap.
        let none = history(0, &[4]);
        assert!(none.after(3).1);
        assert!(!none.after(4).1);
    }

    #[test]
    fn history_is_bounded_in_count_and_in_bytes() {
        let mut history = History::new(3);
        for i in 0..5 {
            history.push(format!("{i}").into());
        }
        assert_eq!(history.iter().collect::<Vec<_>>(), ["2", "3", "4"]);
        let mut history = History::new(1000);
        let big: Arc<str> = "x".repeat(MAX_HISTORY_BYTES / 4).into();
        for _ in 0..10 {
            history.push(big.clone());
        }
        assert_eq!(history.len(), 4);
        assert!(history.bytes() <= MAX_HISTORY_BYTES);
        // One message larger than the bound is still kept, alone.
        history.push("y".repeat(MAX_HISTORY_BYTES + 1).into());
        assert_eq!(history.len(), 1);
    }

    #[test]
    fn popping_the_oldest_counts_it_as_dropped() {
        let mut kept = history(5, &[3, 4, 8]);
        assert_eq!(kept.newest_id(), 8);
        let oldest = kept.pop_oldest().unwrap();
        assert_eq!(message_id(&oldest), Some(3));
        assert_eq!((kept.len(), kept.dropped_through()), (2, 3));
        assert!(kept.after(2).1 && !kept.after(3).1);
        kept.pop_oldest();
        kept.pop_oldest();
        assert!(kept.pop_oldest().is_none());
        assert_eq!((kept.bytes(), kept.newest_id()), (0, 8));
    }
}
