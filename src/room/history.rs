//! The room's memory: the last N chat lines, as their JSON text.

use super::events::message_id;
use std::collections::VecDeque;
use std::sync::Arc;

/// The last N `message` events, as their JSON text, oldest first.
#[derive(Debug, Default)]
pub struct History {
    limit: usize,
    events: VecDeque<Arc<str>>,
    /// The id of the newest message that no longer fits (0: none yet): a
    /// client resuming from an older id has missed something.
    dropped_through: u64,
}

impl History {
    pub fn new(limit: usize) -> Self {
        History {
            limit,
            events: VecDeque::with_capacity(limit.min(1024)),
            dropped_through: 0,
        }
    }

    pub fn push(&mut self, event: Arc<str>) {
        if self.limit == 0 {
            self.dropped(&event);
            return;
        }
        if self.events.len() == self.limit
            && let Some(old) = self.events.pop_front()
        {
            self.dropped(&old);
        }
        self.events.push_back(event);
    }

    fn dropped(&mut self, event: &str) {
        if let Some(id) = message_id(event) {
            self.dropped_through = self.dropped_through.max(id);
        }
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
}
