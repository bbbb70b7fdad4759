//! `/echo`'s socket: an echo client receives no broadcasts, only answers
//! to what it sent (its echoes, pongs, pings, its Close), all produced by
//! its reader in the order they are due. So its reader writes them itself,
//! with blocking writes, and no delivery thread ever sees the client: one
//! writer per socket, in order, and the cost of a backlog (a client that
//! sends and does not read) falls on that client's own reader, which stops
//! reading while its write waits. A write that makes no progress for the
//! stall limit ends the client as a slow consumer, as delivery does.
//!
//! The only other thread that writes is the one stopping the server (a
//! Close 1001, §7.4.1), under the same lock; after a Close nothing is
//! written (§5.5.1).

use crate::delivery::Ending;
use crate::metrics::{DropReason, Metrics};
use crate::protocol::frame::{FrameHeader, MAX_HEADER_LEN, OpCode, encode_close};
use crate::room::ClientId;
use std::collections::HashMap;
use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long stopping the server tries to take an echo client's writer (its
/// reader may be in the middle of a write) before it shuts the socket.
pub const STOP_WAIT: Duration = Duration::from_secs(2);

/// An echo client's socket, as its reader (and a server stopping) writes
/// to it.
#[derive(Debug)]
pub struct EchoSocket {
    tag: ClientId,
    stream: Arc<TcpStream>,
    state: Mutex<State>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct State {
    /// Why nothing more is written, once that is so: its Close is out,
    /// or a write failed or stalled.
    ending: Option<Ending>,
}

impl EchoSocket {
    /// A writer for `stream`, whose writes give up after `stall_limit`
    /// without progress.
    pub fn new(
        tag: ClientId,
        stream: Arc<TcpStream>,
        stall_limit: Duration,
        metrics: Arc<Metrics>,
    ) -> EchoSocket {
        let _ = stream.set_write_timeout(Some(stall_limit));
        EchoSocket {
            tag,
            stream,
            state: Mutex::new(State::default()),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes bytes that are not a frame (the 101) or a whole frame.
    pub fn send(&self, bytes: &[u8]) {
        self.write(&mut self.lock(), &[bytes], false);
    }

    /// Writes a final, unmasked data frame whose payload is `payload`,
    /// compressed if `rsv1` (RFC 7692 §6), straight from where it lies:
    /// the header and the payload go out in one vectored write.
    pub fn send_message(&self, opcode: OpCode, rsv1: bool, payload: &[u8]) {
        let mut header = FrameHeader::server(opcode, payload.len());
        if rsv1 {
            header.rsv = 0b100;
        }
        let mut head = [0u8; MAX_HEADER_LEN];
        let head_len = header.format(&mut head);
        self.write(&mut self.lock(), &[&head[..head_len], payload], false);
    }

    /// Writes a Close frame: the last thing this client is sent. Then the
    /// server's half of TCP ends (§7.1.1: the reader waits for the
    /// client's Close, or for it to close TCP).
    pub fn close(&self, frame: &[u8]) {
        self.close_locked(&mut self.lock(), frame);
    }

    fn close_locked(&self, state: &mut State, frame: &[u8]) {
        if self.write(state, &[frame], true) {
            let _ = self.stream.shutdown(Shutdown::Write);
        }
    }

    /// Why nothing more is written to this client, once that is so.
    pub fn ending(&self) -> Option<Ending> {
        self.lock().ending
    }

    /// Writes `pieces` whole unless the client has ended; true if they
    /// went out. A write that fails, or waits the whole stall limit for
    /// room, ends the client: its socket is shut (a reader blocked on it
    /// reads the end), and nothing more is written.
    fn write(&self, state: &mut State, pieces: &[&[u8]], close: bool) -> bool {
        if state.ending.is_some() {
            return false;
        }
        let mut slices: Vec<IoSlice<'_>> = pieces.iter().map(|p| IoSlice::new(p)).collect();
        let mut slices = &mut slices[..];
        let total: usize = pieces.iter().map(|p| p.len()).sum();
        let mut stream = &*self.stream;
        while !slices.is_empty() {
            match stream.write_vectored(slices) {
                Ok(0) => {
                    return self.fail(state, Ending::WriteFailed, "the socket took nothing");
                }
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    log::warn!(
                        "Dropping slow consumer: ({}) nothing written for its stall limit",
                        self.tag
                    );
                    self.metrics.client_dropped(DropReason::SlowConsumer);
                    return self.fail(state, Ending::SlowConsumer, "stalled");
                }
                Err(e) => return self.fail(state, Ending::WriteFailed, &e.to_string()),
            }
        }
        self.metrics.bytes_out.fetch_add(total as u64, Relaxed);
        self.metrics.messages_out.fetch_add(1, Relaxed);
        if close {
            state.ending = Some(Ending::Closed(close_code(pieces[0])));
        }
        true
    }

    fn fail(&self, state: &mut State, ending: Ending, why: &str) -> bool {
        log::debug!("({}) write failed: {why}", self.tag);
        state.ending = Some(ending);
        let _ = self.stream.shutdown(Shutdown::Both);
        false
    }
}

/// The status code of a Close frame as this server encodes it (§5.5.1);
/// 1005 when it has none (§7.1.5).
fn close_code(frame: &[u8]) -> u16 {
    match frame {
        [_, len, high, low, ..] if *len >= 2 => u16::from_be_bytes([*high, *low]),
        _ => 1005,
    }
}

/// The echo clients now open, so that stopping the server can send each
/// its Close.
#[derive(Debug, Default)]
pub struct EchoClients {
    open: Mutex<HashMap<ClientId, Arc<EchoSocket>>>,
}

impl EchoClients {
    /// Notes an echo client; dropping the handle forgets it.
    pub fn add(self: &Arc<Self>, socket: EchoSocket) -> EchoHandle {
        let socket = Arc::new(socket);
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(socket.tag, socket.clone());
        EchoHandle {
            socket,
            clients: self.clone(),
        }
    }

    /// The server is stopping: every echo client gets a Close with 1001
    /// (§7.4.1). A client whose reader is in a write that does not finish
    /// within [`STOP_WAIT`] (it does not read) has its socket shut instead.
    pub fn close_all(&self) {
        let open: Vec<Arc<EchoSocket>> = self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let frame = encode_close(
            crate::protocol::close::CloseCode::Away,
            "shutting_down",
            None,
        );
        let deadline = Instant::now() + STOP_WAIT;
        for socket in open {
            loop {
                match socket.state.try_lock() {
                    Ok(mut state) => break socket.close_locked(&mut state, &frame),
                    Err(std::sync::TryLockError::Poisoned(e)) => {
                        break socket.close_locked(&mut e.into_inner(), &frame);
                    }
                    Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(std::sync::TryLockError::WouldBlock) => {
                        let _ = socket.stream.shutdown(Shutdown::Both);
                        break;
                    }
                }
            }
        }
    }
}

/// A reader's hold on its echo client's socket; dropping it forgets the
/// client.
#[derive(Debug)]
pub struct EchoHandle {
    socket: Arc<EchoSocket>,
    clients: Arc<EchoClients>,
}

impl std::ops::Deref for EchoHandle {
    type Target = EchoSocket;
    fn deref(&self) -> &EchoSocket {
        &self.socket
    }
}

impl Drop for EchoHandle {
    fn drop(&mut self) {
        self.clients
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.socket.tag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::close::CloseCode;
    use crate::protocol::frame::encode_frame;
    use std::io::Read;
    use std::net::TcpListener;

    fn pair() -> (Arc<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (Arc::new(server), client)
    }

    fn read_all(client: &mut TcpStream) -> Vec<u8> {
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        got
    }

    #[test]
    fn frames_go_out_in_order_and_nothing_after_the_close() {
        let (server, mut client) = pair();
        let clients = Arc::new(EchoClients::default());
        let socket = clients.add(EchoSocket::new(
            1,
            server,
            Duration::from_secs(5),
            Arc::default(),
        ));
        socket.send(b"101|");
        let big = vec![7u8; 300_000];
        socket.send_message(OpCode::Binary, false, b"one");
        socket.send_message(OpCode::Binary, false, &big);
        socket.send_message(OpCode::Text, true, b"two");
        let close = encode_close(CloseCode::Normal, "", None);
        socket.close(&close);
        socket.send_message(OpCode::Text, false, b"after the close");
        socket.close(&encode_close(CloseCode::Away, "again", None));
        assert_eq!(socket.ending(), Some(Ending::Closed(1000)));
        let mut expected = b"101|".to_vec();
        expected.extend(encode_frame(OpCode::Binary, b"one", None));
        expected.extend(encode_frame(OpCode::Binary, &big, None));
        let mut compressed = encode_frame(OpCode::Text, b"two", None);
        compressed[0] |= 0x40;
        expected.extend(compressed);
        expected.extend(close);
        // The server's half ended after the Close: the client reads EOF.
        assert!(read_all(&mut client) == expected);
    }

    #[test]
    fn stopping_closes_every_open_echo_client_once() {
        let clients = Arc::new(EchoClients::default());
        let (server_a, mut a) = pair();
        let (server_b, mut b) = pair();
        let socket_a = clients.add(EchoSocket::new(
            1,
            server_a,
            Duration::from_secs(5),
            Arc::default(),
        ));
        let socket_b = clients.add(EchoSocket::new(
            2,
            server_b,
            Duration::from_secs(5),
            Arc::default(),
        ));
        socket_b.close(&encode_close(CloseCode::Normal, "", None));
        drop(socket_b);
        clients.close_all();
        assert_eq!(socket_a.ending(), Some(Ending::Closed(1001)));
        assert_eq!(
            read_all(&mut a),
            encode_close(CloseCode::Away, "shutting_down", None)
        );
        assert_eq!(read_all(&mut b), encode_close(CloseCode::Normal, "", None));
        drop(socket_a);
        assert!(clients.open.lock().unwrap().is_empty());
    }

    #[test]
    fn a_client_that_does_not_read_is_dropped_after_the_stall_limit() {
        let (server, _client) = pair();
        let metrics = Arc::new(Metrics::default());
        let socket = EchoSocket::new(1, server, Duration::from_millis(200), metrics.clone());
        let big = vec![0u8; 1 << 20];
        let started = Instant::now();
        for _ in 0..64 {
            socket.send_message(OpCode::Binary, false, &big);
            if socket.ending().is_some() {
                break;
            }
        }
        assert_eq!(socket.ending(), Some(Ending::SlowConsumer));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(metrics.drops_slow_consumer.load(Relaxed), 1);
    }
}
