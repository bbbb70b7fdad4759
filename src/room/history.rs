//! The room's memory: the last N chat lines, as their JSON text.

use std::collections::VecDeque;
use std::sync::Arc;

/// The last N `message` events, as their JSON text, oldest first.
#[derive(Debug, Default)]
pub struct History {
    limit: usize,
    events: VecDeque<Arc<str>>,
}

impl History {
    pub fn new(limit: usize) -> Self {
        History {
            limit,
            events: VecDeque::with_capacity(limit.min(1024)),
        }
    }

    pub fn push(&mut self, event: Arc<str>) {
        if self.limit == 0 {
            return;
        }
        if self.events.len() == self.limit {
            self.events.pop_front();
        }
        self.events.push_back(event);
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
}
