//! The thread budget: how many connection threads may exist at
//! once, derived from the kernel's limits, so that the server refuses a
//! client (503) long before the kernel refuses it a thread.
//!
//! Why this matters: each thread costs four memory mappings (its stack, the
//! stack's guard page, and the alternate signal stack Rust's runtime gives
//! every thread to report stack overflows, with its own guard page), and
//! Linux caps a process's mappings at `vm.max_map_count` (65,530 by
//! default). A thread started past that limit fails *inside* the runtime's
//! thread start-up, where a failure cannot be caught and aborts the whole
//! process. Counting threads ourselves keeps every client well inside it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Mappings per thread: stack, stack guard, signal stack, its guard.
pub const MAPPINGS_PER_THREAD: usize = 4;
/// Mappings left for everything else: the binary and its libraries, the
/// allocator's arenas, the heap's large blocks.
pub const MAPPINGS_RESERVED: usize = 4096;
/// Thread places kept for plain HTTP requests and handshakes in progress:
/// WebSocket clients never take the last of them.
pub const HTTP_RESERVE: usize = 64;
/// Process IDs left for the rest of the system (`kernel.pid_max` is shared
/// by every process, and every thread takes one).
pub const PIDS_RESERVED: usize = 4096;

/// Counts the threads the server has started for clients.
#[derive(Debug)]
pub struct ThreadBudget {
    limit: usize,
    used: AtomicUsize,
}

impl ThreadBudget {
    pub fn new(limit: usize) -> Self {
        ThreadBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// The budget this machine allows, from `/proc/sys` (with Linux's
    /// defaults where a value cannot be read).
    ///
    /// ```
    /// let budget = wschat::threads::ThreadBudget::from_kernel_limits();
    /// assert!(budget.limit() > 1000);
    /// ```
    pub fn from_kernel_limits() -> Self {
        let read = |path: &str, default: usize| {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(default)
        };
        let maps = read("/proc/sys/vm/max_map_count", 65_530);
        let pids = read("/proc/sys/kernel/pid_max", 32_768)
            .min(read("/proc/sys/kernel/threads-max", usize::MAX));
        let by_maps = maps.saturating_sub(MAPPINGS_RESERVED) / MAPPINGS_PER_THREAD;
        let by_pids = pids.saturating_sub(PIDS_RESERVED);
        ThreadBudget::new(by_maps.min(by_pids).max(64))
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    /// Takes one thread's place, or says there is none left. The place
    /// is given back when it is dropped: move it into the thread.
    pub fn try_take(self: &Arc<Self>) -> Option<ThreadPlace> {
        let previous = self.used.fetch_add(1, Relaxed);
        if previous >= self.limit {
            self.used.fetch_sub(1, Relaxed);
            return None;
        }
        Some(ThreadPlace {
            budget: self.clone(),
        })
    }

    /// How many WebSocket clients may hold a thread at once: the budget
    /// less `HTTP_RESERVE`, so that plain requests (`/healthz`,
    /// `/metrics`, the page) are still answered when the room is full.
    pub fn websocket_limit(&self) -> usize {
        self.limit.saturating_sub(HTTP_RESERVE)
    }
}

/// One thread's place in the budget, given back when dropped (when the
/// thread that owns it ends, however it ends).
#[derive(Debug)]
pub struct ThreadPlace {
    budget: Arc<ThreadBudget>,
}

impl Drop for ThreadPlace {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_and_given_back() {
        let budget = Arc::new(ThreadBudget::new(2));
        let a = budget.try_take().unwrap();
        let b = budget.try_take().unwrap();
        assert!(budget.try_take().is_none());
        assert_eq!(budget.used(), 2);
        drop(a);
        drop(b);
        assert_eq!(budget.used(), 0);
        let budget = ThreadBudget::new(HTTP_RESERVE + 10);
        assert_eq!(budget.websocket_limit(), 10);
    }

    #[test]
    fn this_machine_allows_thousands() {
        assert!(ThreadBudget::from_kernel_limits().limit() >= 1000);
    }
}
