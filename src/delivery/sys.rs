//! The two system calls delivery needs that std does not offer: a
//! vectored send that never blocks, and poll(2), declared here, once.
//! Every `unsafe` of the library is in this file, except the one call of
//! [`send_vectored`] in `shard.rs` (whose pieces point into buffers the
//! caller must keep alive: the safety argument is at the call), and the
//! `madvise` that gives back an idle reader's stack pages
//! (`idle_stack.rs`). The binary's signal handler (`main.rs`) and the
//! benchmark's epoll calls (`bin/wschat-bench.rs`) have their own.
//!
//! Why not std: the socket is shared with the client's reader thread,
//! which blocks in `read` with a timeout. `set_nonblocking` sets
//! `O_NONBLOCK` on the open file, which both threads share, and the reader
//! would then see `WouldBlock` at once instead of waiting. `MSG_DONTWAIT`
//! makes one call non-blocking and leaves the socket's mode alone.

use std::io;
use std::os::fd::RawFd;

#[cfg(not(target_os = "linux"))]
compile_error!("wschat's delivery uses Linux's sendmsg(2) flags and poll(2)");

/// `sendmsg` flags (Linux): don't block this call; no SIGPIPE on a closed
/// peer (std ignores SIGPIPE already; this keeps it so for embedders).
const MSG_DONTWAIT: i32 = 0x40;
const MSG_NOSIGNAL: i32 = 0x4000;

pub const POLLIN: i16 = 0x1;
pub const POLLOUT: i16 = 0x4;

/// `struct iovec`: one piece of a vectored write. Raw pointers, so that a
/// list of them can be reused from one client to the next.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IoVec {
    pub base: *const u8,
    pub len: usize,
}

/// `struct msghdr` as glibc lays it out on Linux.
#[repr(C)]
struct MsgHdr {
    name: *mut u8,
    name_len: u32,
    iov: *const IoVec,
    iov_len: usize,
    control: *mut u8,
    control_len: usize,
    flags: i32,
}

/// `nfds_t`: `unsigned long` on Linux, 32 bits on 32-bit targets.
type NfdsT = std::ffi::c_ulong;

/// `struct pollfd`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PollFd {
    pub fd: RawFd,
    pub events: i16,
    pub revents: i16,
}

unsafe extern "C" {
    fn sendmsg(fd: RawFd, msg: *const MsgHdr, flags: i32) -> isize;
    fn poll(fds: *mut PollFd, nfds: NfdsT, timeout: i32) -> i32;
}

/// Writes as much of `pieces` as the socket takes now; `WouldBlock` if it
/// takes nothing.
///
/// # Safety
/// Every piece must point to `len` readable bytes for the whole call.
pub unsafe fn send_vectored(fd: RawFd, pieces: &[IoVec]) -> io::Result<usize> {
    let msg = MsgHdr {
        name: std::ptr::null_mut(),
        name_len: 0,
        iov: pieces.as_ptr(),
        iov_len: pieces.len(),
        control: std::ptr::null_mut(),
        control_len: 0,
        flags: 0,
    };
    // SAFETY: `msg` and the pieces it points to are valid for the call
    // (the caller's promise); the kernel only reads them.
    let n = unsafe { sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Waits until one of `fds` is ready or `timeout_ms` passes (-1: no limit).
pub fn wait(fds: &mut [PollFd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a valid, exclusively borrowed array of `len` pollfds.
    let n = unsafe { poll(fds.as_mut_ptr(), fds.len() as NfdsT, timeout_ms) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
