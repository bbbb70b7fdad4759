//! The room's memory: the last N chat lines, as their JSON text, bounded
//! in count (`--history`) and in bytes (`MAX_HISTORY_BYTES`).

use std::collections::VecDeque;
use std::sync::Arc;

/// The most bytes of history kept (and so sent in one welcome): a few
/// large messages, or a hundred ordinary ones many times over. Without
/// it, a hundred 64 KiB messages would make every welcome 6 MiB or more.
pub const MAX_HISTORY_BYTES: usize = 512 * 1024;

/// The last N `message` events, as their JSON text, oldest first.
#[derive(Debug, Default)]
pub struct History {
    limit: usize,
    bytes: usize,
    events: VecDeque<Arc<str>>,
}

impl History {
    pub fn new(limit: usize) -> Self {
        History {
            limit,
            bytes: 0,
            events: VecDeque::with_capacity(limit.min(1024)),
        }
    }

    /// Keeps `event`, forgetting the oldest past the count or byte limit
    /// (the newest is always kept, however large).
    pub fn push(&mut self, event: Arc<str>) {
        if self.limit == 0 {
            return;
        }
        self.bytes += event.len();
        self.events.push_back(event);
        while self.events.len() > self.limit
            || (self.bytes > MAX_HISTORY_BYTES && self.events.len() > 1)
        {
            let oldest = self.events.pop_front().expect("not empty");
            self.bytes -= oldest.len();
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

    /// Bytes of JSON kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
