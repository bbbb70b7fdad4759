//! A blocking Redis client over one `TcpStream`: connect (with `AUTH` and
//! `SELECT` from the URL), send commands, read their replies, and
//! reconnect with backoff when the connection breaks.
//!
//! Every call has a deadline: a write or read that takes longer than the
//! client's I/O timeout fails with [`RedisError::Timeout`] instead of
//! hanging the thread, and [`RedisConnection::command_blocking`] gives commands that
//! wait on purpose (`XREAD BLOCK`) their own, longer one.
//!
//! After any I/O, timeout or protocol error the connection is dropped: a
//! reply that arrives late, or the rest of a malformed one, would otherwise
//! be taken as the answer to the next command. Later calls fail with
//! [`RedisError::NotConnected`] until [`RedisConnection::reconnect`] succeeds.

use super::resp::{Decoder, RespError, Value, encode_command};
use super::url::RedisUrl;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long connecting may take, per address the host name resolves to.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one write, or the wait for one reply, may take. A Redis on the
/// same network answers in well under a millisecond; seconds mean it is
/// gone or stuck.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The most bytes one reply may take before the client gives up on it
/// (the decoder's limit): bounds memory even when every element of a
/// reply is within the parser's own limits, and holds one stream entry
/// of the largest message `--max-message-bytes` allows.
pub use super::resp::MAX_REPLY_BYTES;
/// How much is read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// The client's deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// For `connect`, per resolved address. Must be non-zero.
    pub connect: Duration,
    /// For each write and each reply. Must be non-zero.
    pub io: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: DEFAULT_CONNECT_TIMEOUT,
            io: DEFAULT_IO_TIMEOUT,
        }
    }
}

/// Why a call failed.
#[derive(Debug)]
pub enum RedisError {
    /// Connecting, reading or writing failed (refused, reset, ...).
    Io(io::Error),
    /// No reply (or no room to write) within the timeout.
    Timeout,
    /// Redis closed the connection.
    Closed,
    /// The reply is not valid RESP, or is over [`MAX_REPLY_BYTES`].
    Protocol(RespError),
    /// A reply too large for [`MAX_REPLY_BYTES`].
    ReplyTooLarge,
    /// Redis answered with an error reply, such as `NOAUTH
    /// Authentication required.` or `WRONGTYPE ...`: its text.
    Server(String),
    /// A well-formed reply of an unexpected shape for the command that
    /// asked (e.g. an integer where an array was due).
    UnexpectedReply(String),
    /// An earlier error dropped the connection; call `reconnect`.
    NotConnected,
}

impl RedisError {
    /// True for the errors after which the connection is gone (and a
    /// `reconnect` is the way on); false for an error reply or an
    /// unexpected shape, after which the connection is still in step.
    pub fn is_connection_error(&self) -> bool {
        !matches!(self, RedisError::Server(_) | RedisError::UnexpectedReply(_))
    }
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisError::Io(e) => write!(f, "redis: {e}"),
            RedisError::Timeout => f.write_str("redis: timed out"),
            RedisError::Closed => f.write_str("redis: connection closed by the server"),
            RedisError::Protocol(e) => write!(f, "redis: {e}"),
            RedisError::ReplyTooLarge => {
                write!(f, "redis: reply over {MAX_REPLY_BYTES} bytes")
            }
            RedisError::Server(text) => write!(f, "redis: {text}"),
            RedisError::UnexpectedReply(what) => write!(f, "redis: unexpected reply: {what}"),
            RedisError::NotConnected => f.write_str("redis: not connected"),
        }
    }
}

impl std::error::Error for RedisError {}

impl From<io::Error> for RedisError {
    fn from(e: io::Error) -> RedisError {
        match e.kind() {
            // A socket timeout shows as WouldBlock on Unix, TimedOut elsewhere.
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => RedisError::Timeout,
            _ => RedisError::Io(e),
        }
    }
}

impl From<RespError> for RedisError {
    fn from(e: RespError) -> RedisError {
        RedisError::Protocol(e)
    }
}

/// One connection to Redis. Not shared between threads: a thread that
/// blocks in `XREAD BLOCK` needs a connection of its own anyway, since
/// Redis answers a connection's commands strictly in order.
pub struct RedisConnection {
    url: RedisUrl,
    timeouts: Timeouts,
    /// `None` after an error broke the connection.
    stream: Option<TcpStream>,
    /// Replies being read: every byte read goes through it once.
    decoder: Decoder,
    /// Where each read lands before it is fed to the decoder (reused).
    chunk: Vec<u8>,
}

impl RedisConnection {
    /// Connects with the default timeouts: TCP, then `AUTH` and `SELECT` as
    /// the URL says.
    pub fn connect(url: &RedisUrl) -> Result<RedisConnection, RedisError> {
        RedisConnection::connect_with(url, Timeouts::default())
    }

    /// Connects with the given timeouts.
    pub fn connect_with(url: &RedisUrl, timeouts: Timeouts) -> Result<RedisConnection, RedisError> {
        let mut client = RedisConnection {
            url: url.clone(),
            timeouts,
            stream: None,
            decoder: Decoder::new(),
            chunk: Vec::new(),
        };
        client.reconnect()?;
        Ok(client)
    }

    /// The URL this client connects to.
    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    /// False after an error broke the connection.
    pub fn is_connected(&self) -> bool {
        self.stream.is_some()
    }

    /// One attempt at a fresh connection: TCP connect, then `AUTH` and
    /// `SELECT` again (a new connection starts unauthenticated, in db 0).
    /// The old connection, if any, is dropped first.
    pub fn reconnect(&mut self) -> Result<(), RedisError> {
        self.stream = None;
        self.decoder = Decoder::new();
        let stream = open(&self.url, self.timeouts)?;
        self.stream = Some(stream);
        let mut setup: Vec<Vec<Vec<u8>>> = Vec::with_capacity(3);
        if let Some(password) = &self.url.password {
            let mut auth = vec![b"AUTH".to_vec()];
            if let Some(user) = &self.url.username {
                auth.push(user.as_bytes().to_vec());
            }
            auth.push(password.as_bytes().to_vec());
            setup.push(auth);
        }
        if self.url.db != 0 {
            setup.push(vec![
                b"SELECT".to_vec(),
                self.url.db.to_string().into_bytes(),
            ]);
        }
        // PING last: a connection counts as made once Redis has answered.
        setup.push(vec![b"PING".to_vec()]);
        // Pipelined: one round trip for all of them.
        let replies = self.pipeline(&setup)?;
        if let Some(Value::Error(text)) = replies.into_iter().find(|r| matches!(r, Value::Error(_)))
        {
            // Wrong password or db: this connection is of no use.
            self.stream = None;
            return Err(RedisError::Server(text));
        }
        Ok(())
    }

    /// Tries [`RedisConnection::reconnect`] once per delay of `backoff`, sleeping
    /// that delay before each attempt, until one succeeds. Returns the last
    /// error when the backoff runs out of attempts.
    pub fn reconnect_with(&mut self, backoff: &mut Backoff) -> Result<(), RedisError> {
        let mut last = RedisError::NotConnected;
        for delay in backoff.by_ref() {
            std::thread::sleep(delay);
            match self.reconnect() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    log::warn!("{}: reconnect failed: {e}", self.url);
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Sends one command and returns its reply. An error reply comes back
    /// as [`RedisError::Server`] with Redis's text.
    ///
    /// ```no_run
    /// use wschat::cluster::{client::RedisConnection, resp::Value, url::RedisUrl};
    ///
    /// let mut redis = RedisConnection::connect(&RedisUrl::parse("redis://127.0.0.1").unwrap()).unwrap();
    /// assert_eq!(redis.command(&[b"PING"]).unwrap(), Value::Simple("PONG".into()));
    /// ```
    pub fn command<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Value, RedisError> {
        let timeout = self.timeouts.io;
        self.command_within(args, timeout)
    }

    /// Like [`RedisConnection::command`], for a command that waits on purpose before
    /// answering (`XREAD BLOCK ms`, `BLPOP`): the reply may take up to
    /// `wait` plus the usual I/O timeout.
    pub fn command_blocking<A: AsRef<[u8]>>(
        &mut self,
        args: &[A],
        wait: Duration,
    ) -> Result<Value, RedisError> {
        let timeout = wait.saturating_add(self.timeouts.io);
        self.command_within(args, timeout)
    }

    fn command_within<A: AsRef<[u8]>>(
        &mut self,
        args: &[A],
        timeout: Duration,
    ) -> Result<Value, RedisError> {
        let mut out = Vec::new();
        encode_command(args, &mut out);
        self.send(&out)?;
        match self.read_reply(timeout)? {
            Value::Error(text) => Err(RedisError::Server(text)),
            value => Ok(value),
        }
    }

    /// Sends several commands in one write and reads all their replies:
    /// one round trip instead of `commands.len()`. Redis answers in order,
    /// so reply `i` is for command `i`. Error replies stay in the result as
    /// [`Value::Error`]: one failed command does not hide the others'.
    pub fn pipeline<C: AsRef<[u8]>>(
        &mut self,
        commands: &[Vec<C>],
    ) -> Result<Vec<Value>, RedisError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for command in commands {
            encode_command(command, &mut out);
        }
        self.send(&out)?;
        let mut replies = Vec::with_capacity(commands.len());
        for _ in commands {
            replies.push(self.read_reply(self.timeouts.io)?);
        }
        Ok(replies)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), RedisError> {
        let stream = self.stream.as_mut().ok_or(RedisError::NotConnected)?;
        let result = stream
            .set_write_timeout(Some(self.timeouts.io))
            .and_then(|()| stream.write_all(bytes));
        result.map_err(|e| self.broken(e.into()))
    }

    /// Reads until the decoder has one whole reply, and takes it out. Each
    /// read is fed to the decoder once; `timeout` bounds each wait for
    /// bytes. A read interrupted by a signal (EINTR: a process stopped
    /// and continued gets one from a read with a timeout, see signal(7))
    /// is tried again within what is left of its wait.
    fn read_reply(&mut self, timeout: Duration) -> Result<Value, RedisError> {
        loop {
            if let Some(value) = self.decoder.next_value() {
                return Ok(value);
            }
            let stream = self.stream.as_mut().ok_or(RedisError::NotConnected)?;
            if self.chunk.len() != READ_CHUNK {
                self.chunk = vec![0; READ_CHUNK];
            }
            let deadline = Instant::now() + timeout;
            let result = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break Err(io::Error::from(io::ErrorKind::TimedOut));
                }
                match stream
                    .set_read_timeout(Some(left))
                    .and_then(|()| stream.read(&mut self.chunk))
                {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            match result {
                Ok(0) => return Err(self.broken(RedisError::Closed)),
                Ok(n) => {
                    if let Err(e) = self.decoder.feed(&self.chunk[..n]) {
                        let error = match e {
                            RespError::ReplyTooLong => RedisError::ReplyTooLarge,
                            e => RedisError::Protocol(e),
                        };
                        return Err(self.broken(error));
                    }
                }
                Err(e) => return Err(self.broken(e.into())),
            }
        }
    }

    /// Drops the connection after an error that leaves it out of step.
    fn broken(&mut self, error: RedisError) -> RedisError {
        log::warn!("{}: connection dropped: {error}", self.url);
        self.stream = None;
        self.decoder = Decoder::new();
        error
    }
}

/// Shows the URL (password masked) and whether the client is connected.
impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnection")
            .field("url", &self.url)
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// TCP to the first address of the URL's host that answers.
fn open(url: &RedisUrl, timeouts: Timeouts) -> Result<TcpStream, RedisError> {
    let mut last = None;
    for addr in (url.host.as_str(), url.port).to_socket_addrs()? {
        let mut attempt = TcpStream::connect_timeout(&addr, timeouts.connect);
        if attempt
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::Interrupted)
        {
            // A signal (the process stopped and continued): once more.
            attempt = TcpStream::connect_timeout(&addr, timeouts.connect);
        }
        match attempt {
            Ok(stream) => {
                // Commands are small and each waits for its reply: Nagle's
                // algorithm would only delay them.
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => e.into(),
        None => RedisError::Io(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} resolves to no address", url.host),
        )),
    })
}

/// The delays between reconnection attempts: exponential backoff with
/// jitter.
///
/// Attempt `n` (from 0) waits a delay drawn uniformly from
/// `[cap / 2, cap]`, where `cap = min(max, base × 2^n)`. Doubling keeps a
/// dead Redis from being hammered; the random half spreads the attempts of
/// many wschat nodes that lost Redis at the same instant, so that they do
/// not all reconnect in the same millisecond when it comes back.
///
/// ```
/// use std::time::Duration;
/// use wschat::cluster::client::Backoff;
///
/// let ms = Duration::from_millis;
/// let delays: Vec<Duration> = Backoff::new(ms(100), ms(1000)).with_seed(7).take(6).collect();
/// for (n, delay) in delays.iter().enumerate() {
///     let cap = ms(100 * (1 << n)).min(ms(1000));
///     assert!(*delay >= cap / 2 && *delay <= cap);
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    /// `None`: retry forever.
    max_attempts: Option<u32>,
    /// The state of a splitmix64 generator: jitter needs no better
    /// randomness than this, and std has no random number generator.
    rng: u64,
}

/// The first delay's upper bound in [`Backoff::default`].
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(100);
/// The longest delay in [`Backoff::default`].
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(5);

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new(DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX)
    }
}

impl Backoff {
    /// Delays from `base` doubling up to `max`, without end, seeded from
    /// the clock so that nodes started together still draw different
    /// delays.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()).rotate_left(32);
        Backoff {
            base,
            max: max.max(base),
            attempt: 0,
            max_attempts: None,
            rng: seed,
        }
    }

    /// A fixed seed: the same delays every time (for tests).
    pub fn with_seed(mut self, seed: u64) -> Backoff {
        self.rng = seed;
        self
    }

    /// Stops after `attempts` delays.
    pub fn with_max_attempts(mut self, attempts: u32) -> Backoff {
        self.max_attempts = Some(attempts);
        self
    }

    /// Starts again from `base`, e.g. once a connection has worked again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.max_attempts.is_some_and(|max| self.attempt >= max) {
            return None;
        }
        // 2^attempt, saturating: past 2^31 the cap is `max` anyway.
        let factor = 1u32.checked_shl(self.attempt).unwrap_or(u32::MAX);
        let cap = self.base.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = cap / 2;
        let spread = (cap - half).as_nanos() as u64;
        let jitter = if spread == 0 {
            0
        } else {
            self.next_random() % (spread + 1)
        };
        Some(half + Duration::from_nanos(jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_max_with_jitter_in_the_upper_half() {
        let ms = Duration::from_millis;
        let delays: Vec<Duration> = Backoff::new(ms(10), ms(300))
            .with_seed(1)
            .take(12)
            .collect();
        for (n, delay) in delays.iter().enumerate() {
            let cap = ms(10 * (1u64 << n)).min(ms(300));
            assert!(
                *delay >= cap / 2 && *delay <= cap,
                "attempt {n}: {delay:?} vs cap {cap:?}"
            );
        }
        // From attempt 5 on (10 ms × 32 = 320 ms), the cap is the max.
        assert!(delays[5..].iter().all(|d| *d >= ms(150)));
        // The jitter is not constant: not every capped delay is the same.
        assert!(delays[5..].windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn backoff_seeds_give_different_jitter_and_the_same_seed_the_same() {
        let ms = Duration::from_millis;
        let a: Vec<_> = Backoff::new(ms(100), ms(100))
            .with_seed(1)
            .take(8)
            .collect();
        let b: Vec<_> = Backoff::new(ms(100), ms(100))
            .with_seed(2)
            .take(8)
            .collect();
        let a_again: Vec<_> = Backoff::new(ms(100), ms(100))
            .with_seed(1)
            .take(8)
            .collect();
        assert_ne!(a, b);
        assert_eq!(a, a_again);
    }

    #[test]
    fn backoff_stops_after_its_attempts_and_reset_starts_over() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(8), ms(1000))
            .with_max_attempts(3)
            .with_seed(3);
        assert_eq!(backoff.by_ref().count(), 3);
        assert_eq!(backoff.next(), None);
        backoff.reset();
        let first = backoff.next().unwrap();
        assert!(first >= ms(4) && first <= ms(8));
    }

    #[test]
    fn backoff_never_overflows() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::MAX).with_seed(4);
        for _ in 0..100 {
            assert!(backoff.next().is_some());
        }
        // A zero base gives zero delays, not a panic.
        assert_eq!(
            Backoff::new(Duration::ZERO, Duration::ZERO).next(),
            Some(Duration::ZERO)
        );
    }
}
