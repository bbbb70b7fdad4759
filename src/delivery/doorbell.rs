//! How a delivery thread hears that there is work: a command channel, and
//! a one-byte ring on a Unix socket pair after every command, so that the
//! thread can wait for commands and for its clients' sockets in one
//! poll(2).
//!
//! The rule that keeps a command from being stranded (queued while the
//! thread sleeps): the thread *first* reads away the rings it has heard
//! (`Inbox::hush`), *then* takes the commands (`TURN`). A command whose
//! ring came before the hush was pushed before it too, so the take finds
//! it; a ring after the hush stays unread, so the next poll returns at
//! once. A ring that finds the socket's buffer full is dropped: the unread
//! rings already there wake the poll just as well.
//!
//! ```text
//!   sender:  push(command) ──▶ ring (1 byte; dropped if the buffer is full)
//!
//!   thread:  ┌─▶ hush (read every ring) ─▶ take (every command) ─▶ write ─┐
//!            │                                                          │
//!            └──── poll(bell, full sockets) ◀───────────────────────────┘
//!                  returns at once while a ring is unread
//! ```
//!
//! `tests` checks every interleaving of one sender's two steps with one
//! turn of the thread; swapping the order in `TURN` makes it fail.

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

/// Every sender is gone: no command will come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HungUp;

/// The sending side: any thread may hold a clone.
#[derive(Debug)]
pub struct Doorbell<T> {
    tx: Sender<T>,
    bell: Arc<UnixStream>,
}

impl<T> Clone for Doorbell<T> {
    fn clone(&self) -> Self {
        Doorbell {
            tx: self.tx.clone(),
            bell: self.bell.clone(),
        }
    }
}

/// The receiving side, owned by one delivery thread.
#[derive(Debug)]
pub struct Inbox<T> {
    rx: Receiver<T>,
    bell: UnixStream,
}

/// The two steps that start each turn of the delivery thread, in the only
/// order that cannot strand a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Hush,
    Take,
}
pub const TURN: [Step; 2] = [Step::Hush, Step::Take];

/// A channel of `capacity` commands with its bell.
pub fn doorbell<T>(capacity: usize) -> io::Result<(Doorbell<T>, Inbox<T>)> {
    let (ring, hear) = UnixStream::pair()?;
    ring.set_nonblocking(true)?;
    hear.set_nonblocking(true)?;
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    Ok((
        Doorbell {
            tx,
            bell: Arc::new(ring),
        },
        Inbox { rx, bell: hear },
    ))
}

impl<T> Doorbell<T> {
    /// Queues `command` (waiting if the queue is full: the delivery thread
    /// never waits on anyone, so this wait is for CPU time, not for a
    /// client) and rings. Gives the command back if the thread has ended.
    pub fn send(&self, command: T) -> Result<(), T> {
        self.push(command)?;
        self.ring();
        Ok(())
    }

    fn push(&self, command: T) -> Result<(), T> {
        self.tx.send(command).map_err(|e| e.0)
    }

    fn ring(&self) {
        // WouldBlock: the buffer is full of unread rings, which wake the
        // thread as well as this one would.
        let _ = (&*self.bell).write(&[1]);
    }
}

impl<T> Inbox<T> {
    /// Reads away every ring heard so far.
    pub fn hush(&self) {
        let mut scratch = [0u8; 256];
        while matches!((&self.bell).read(&mut scratch), Ok(n) if n > 0) {}
    }

    /// The next command, if one is queued; `Err` once every sender is
    /// gone and the queue is empty (the bell then reads as hung up, and
    /// would wake every poll at once: the thread must end).
    pub fn try_take(&self) -> Result<Option<T>, HungUp> {
        match self.rx.try_recv() {
            Ok(command) => Ok(Some(command)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(HungUp),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Polled for `POLLIN`: readable while a ring is unread.
    pub fn fd(&self) -> RawFd {
        self.bell.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::sys::{POLLIN, PollFd, wait};

    /// Would a poll on the bell return at once?
    fn rung(inbox: &Inbox<u32>) -> bool {
        let mut fds = [PollFd {
            fd: inbox.fd(),
            events: POLLIN,
            revents: 0,
        }];
        wait(&mut fds, 0).unwrap() == 1
    }

    /// Every interleaving of a sender's push and ring with one turn of the
    /// thread (its `TURN` steps, then the decision to sleep): whenever the
    /// turn ends with the command still queued, the poll must not block.
    #[test]
    fn no_interleaving_strands_a_command() {
        const SENDER: usize = 2; // push, ring
        let steps = SENDER + TURN.len();
        for sender_slots in 0u32..(1 << steps) {
            if sender_slots.count_ones() as usize != SENDER {
                continue;
            }
            let (bell, inbox) = doorbell::<u32>(4).unwrap();
            let (mut sent, mut turn, mut taken) = (0, 0, 0);
            for slot in 0..steps {
                if sender_slots & (1 << slot) != 0 {
                    match sent {
                        0 => bell.push(7).unwrap(),
                        _ => bell.ring(),
                    }
                    sent += 1;
                } else {
                    match TURN[turn] {
                        Step::Hush => inbox.hush(),
                        Step::Take => {
                            while let Ok(Some(_)) = inbox.try_take() {
                                taken += 1;
                            }
                        }
                    }
                    turn += 1;
                }
            }
            if taken == 0 {
                assert!(
                    rung(&inbox),
                    "command stranded: sender in slots {sender_slots:#b} of {TURN:?}"
                );
            }
        }
    }

    #[test]
    fn a_full_bell_still_wakes_and_no_command_is_lost() {
        let (bell, inbox) = doorbell::<u32>(1 << 20).unwrap();
        for i in 0..200_000 {
            bell.send(i).unwrap();
        }
        assert!(rung(&inbox));
        inbox.hush();
        let mut n = 0;
        while let Ok(Some(_)) = inbox.try_take() {
            n += 1;
        }
        assert_eq!(n, 200_000);
    }
}
