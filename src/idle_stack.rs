//! Gives back the stack pages a connection thread used once and no longer
//! needs. A thread's stack costs memory for every page it ever touched,
//! and the kernel never takes a page back on its own: the handshake (the
//! SHA-1 of the accept key, the wait to join the room, a log line) reaches
//! a page or two deeper than the read loop ever goes again, and with
//! thousands of idle clients those pages are a third of the server's
//! memory. Before an idle reader waits for input, [`IdleStack::release`]
//! tells the kernel (`madvise(MADV_DONTNEED)`) that the pages below its
//! frame hold nothing: they are freed, and come back zeroed if the stack
//! grows into them again. Measured at 5,000 idle chat clients: 12 KiB of
//! stack per client before, 8 KiB after.
//!
//! The one `unsafe` here is that call. Its range must lie inside this
//! thread's stack and below every live frame; see [`IdleStack::release`].

use std::marker::PhantomData;

/// `madvise(2)` advice: the pages' contents are not needed; private
/// anonymous pages are freed and read back as zeros.
const MADV_DONTNEED: i32 = 4;
const PAGE: usize = 4096;
/// How far below the recorded top the stack may really begin: the stack
/// mapping also holds the thread's control block and static thread-local
/// storage above its first frame (about 4 KiB with glibc), and the
/// runtime's start-up frames come before the recording one. The
/// `the_recorded_top_is_near_the_stack_top` test checks it.
const TOP_RESERVE: usize = 16 * 1024;
/// Kept below the caller's frame: this function's own frame and the
/// `madvise` stub's return address are there (the x86-64 red zone is
/// 128 bytes).
const FRAME_MARGIN: usize = 1024;

unsafe extern "C" {
    fn madvise(addr: *mut u8, len: usize, advice: i32) -> i32;
}

/// Where a thread's stack began, recorded by the thread itself first
/// thing, with the size it was spawned with. Not `Send`: it describes the
/// stack of the thread that made it, and only that thread may release.
pub struct IdleStack {
    top: usize,
    size: usize,
    _this_thread: PhantomData<*const ()>,
}

impl IdleStack {
    /// Records the current thread's stack. Call it first thing in a
    /// thread spawned with `stack_size(size)`, where `size` is over
    /// [`TOP_RESERVE`].
    #[inline(always)]
    pub fn here(size: usize) -> IdleStack {
        let marker = 0u8;
        IdleStack {
            top: std::hint::black_box(&marker) as *const u8 as usize,
            size,
            _this_thread: PhantomData,
        }
    }

    /// Frees the pages of this thread's stack below the caller's frame:
    /// from `top - size + TOP_RESERVE` (inside the stack, however much
    /// the control block above `top` takes, up to the reserve) up to the
    /// page under this call's own frame, less [`FRAME_MARGIN`]. Nothing
    /// live is below the caller's frame, and nothing holds a pointer
    /// there: a dead frame's locals are out of every borrow. Returns
    /// whether the kernel agreed (it only refuses a bad range).
    #[inline(never)]
    pub fn release(&self) -> bool {
        let marker = 0u8;
        let here = std::hint::black_box(&marker) as *const u8 as usize;
        let low = (self.top - self.size + TOP_RESERVE).next_multiple_of(PAGE);
        let high = (here - FRAME_MARGIN) & !(PAGE - 1);
        if high <= low {
            return true; // the frame is deeper than the range: nothing to give
        }
        // SAFETY: [low, high) is inside this thread's stack (`IdleStack`
        // is not `Send`, so `self` is this thread's): `high` is below the
        // current frame, and `low` is above the stack's start since the
        // mapping's top is less than `TOP_RESERVE` above `top` (checked
        // by a test). Every byte in the range is below the stack pointer,
        // so no frame, and no reference, points into it; MADV_DONTNEED
        // only makes those pages read as zeros next time.
        unsafe { madvise(low as *mut u8, high - low, MADV_DONTNEED) == 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection thread's stack size (`READER_STACK`).
    const STACK: usize = 64 * 1024;
    /// How deep the release test goes: well into the released range,
    /// which starts `TOP_RESERVE` above the stack's bottom.
    const DEPTH: usize = STACK - 2 * TOP_RESERVE;

    /// The mapping of this process (start, end) that holds `address`,
    /// and its resident KiB, from /proc/self/smaps.
    fn mapping_of(address: usize) -> (usize, usize, u64) {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut holder = None;
        for line in smaps.lines() {
            let range = line
                .split_once(' ')
                .and_then(|(range, _)| range.split_once('-'));
            if let Some((a, b)) = range
                && let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                holder = (a..b).contains(&address).then_some((a, b));
            } else if let Some(rss) = line.strip_prefix("Rss:")
                && let Some((a, b)) = holder
            {
                return (
                    a,
                    b,
                    rss.trim().trim_end_matches("kB").trim().parse().unwrap(),
                );
            }
        }
        panic!("no mapping holds {address:#x}");
    }

    /// Touches `depth` bytes of stack below the caller, then returns.
    #[inline(never)]
    fn go_deep(depth: usize) -> u8 {
        let mut chunk = [0u8; 4096];
        chunk[0] = 1;
        let chunk = std::hint::black_box(&mut chunk);
        let below = if depth > 4096 {
            go_deep(depth - 4096)
        } else {
            0
        };
        chunk[4095].wrapping_add(below).wrapping_add(chunk[0])
    }

    #[test]
    fn the_recorded_top_is_near_the_stack_top() {
        let checked = std::thread::Builder::new()
            .stack_size(STACK)
            .spawn(|| {
                let stack = IdleStack::here(STACK);
                let (start, end, _) = mapping_of(stack.top);
                (end - stack.top, stack.top - STACK + TOP_RESERVE >= start)
            })
            .unwrap()
            .join()
            .unwrap();
        let (above, inside) = checked;
        assert!(
            above < TOP_RESERVE,
            "{above} bytes of the stack are above the first frame"
        );
        assert!(inside, "the released range would start below the stack");
    }

    #[test]
    fn release_frees_the_pages_below_and_keeps_the_frames_above() {
        let (before, after, kept) = std::thread::Builder::new()
            .stack_size(STACK)
            .spawn(|| {
                let stack = IdleStack::here(STACK);
                let mut live = [7u8; 2048];
                std::hint::black_box(&mut live);
                std::hint::black_box(go_deep(DEPTH));
                let (_, _, before) = mapping_of(stack.top);
                assert!(stack.release());
                let (_, _, after) = mapping_of(stack.top);
                (
                    before,
                    after,
                    std::hint::black_box(&live).iter().all(|&b| b == 7),
                )
            })
            .unwrap()
            .join()
            .unwrap();
        let depth_kib = DEPTH as u64 / 1024;
        assert!(
            before >= depth_kib,
            "the deep call touched only {before} KiB"
        );
        assert!(
            after + depth_kib - 8 <= before,
            "{before} KiB resident before, {after} KiB after"
        );
        assert!(
            kept,
            "a live frame above the released pages lost its contents"
        );
    }
}
