//! One thread per connection: read the HTTP request head under a deadline,
//! answer plain HTTP or refuse a bad handshake with a status, or accept the
//! upgrade and become the client's read pump: frames in, events to the
//! broadcaster (chat) or straight back to the writer (echo).

use crate::access::{self, HOST_NOT_ALLOWED};
use crate::address_limits::{AddressLimits, AddressPlace, Hold};
use crate::broadcaster::{self, Event, JOIN_TIMED_OUT, JOIN_TIMEOUT, JoinFailed, variant};
use crate::config::Config;
use crate::delivery::{Delivery, Outlet};
use crate::forwarded::{self, FORWARDED_FOR};
use crate::http::{self, StaticFiles};
use crate::log_text::Untrusted;
use crate::metrics::{DropReason, Metrics, Refusal};
use crate::protocol::close::CloseCode;
use crate::protocol::deflate::{Agreement, Compressor, MAX_WINDOW_BITS, negotiate_where};
use crate::protocol::frame::{OpCode, encode_close, encode_compressed_frame, encode_frame};
use crate::protocol::handshake::{self, MAX_HEAD_BYTES, Rejection, Request, find_head_end};
use crate::protocol::message::{Message, MessageReader, ReadError, Role};
use crate::rate_limit::RateLimiter;
use crate::room::{ClientId, Mode, SUBPROTOCOL};
use crate::threads::ThreadBudget;
use crossbeam_channel::{SendTimeoutError, Sender};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// After the server sends a Close, how long it waits for the client's
/// Close (or for the client to close TCP) before closing TCP itself.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Stack for connection threads. Only touched pages cost memory, and
/// nothing large lives on the stack (the request head and its header list
/// are on the heap), so an idle connection uses two pages of it. The size
/// is reserve for the rare deep path: a panic with RUST_BACKTRACE set
/// symbolises the backtrace on this stack, and must not overflow it.
pub const READER_STACK: usize = 256 * 1024;
/// How much of the request head is read per `read` call. Over 1 KiB on
/// purpose: glibc keeps freed blocks up to 1 KiB in a per-thread cache,
/// where they would stay for the life of the (mostly idle) thread.
const HEAD_READ_CHUNK: usize = 2048;

/// What every connection thread shares.
pub struct Context {
    /// The places each client address holds (`--max-clients-per-ip`,
    /// `--max-pending-per-ip`).
    pub address_limits: Arc<AddressLimits>,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pub events: Sender<Event>,
    pub files: StaticFiles,
    pub next_id: AtomicU64,
    /// Connections still sending their request head (see
    /// [`MAX_PENDING_HANDSHAKES`]).
    pub pending_handshakes: AtomicUsize,
    /// Connection threads, counted against the kernel's limits.
    pub threads: Arc<ThreadBudget>,
    /// The threads that write to clients.
    pub delivery: Arc<Delivery>,
    /// Cluster mode: false while Redis cannot be reached (new chat
    /// connections are then answered 503).
    pub cluster_up: Option<Arc<AtomicBool>>,
}

/// The answer to an address with `--max-clients-per-ip` WebSockets open.
pub const CLIENTS_PER_ADDRESS: &str =
    "too many connections from this address (--max-clients-per-ip)";

/// The answer to a chat upgrade while the cluster's Redis is unreachable.
pub const CLUSTER_UNAVAILABLE: &str = "cluster unavailable";

/// Connections allowed to be still sending their request head at once.
/// Each has a thread until `--handshake-timeout`; past this many, the
/// accept loop answers 503 at once instead of starting another, so a flood
/// of silent connections cannot exhaust threads (`--max-clients` only
/// counts connections that completed the handshake).
pub const MAX_PENDING_HANDSHAKES: usize = 1024;

/// Holds a place among the pending handshakes until dropped.
struct PendingHandshake<'a>(&'a AtomicUsize);

impl Drop for PendingHandshake<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Who is at the other end, for the limits and the log: the TCP peer, and
/// the client's address, which is the peer's unless a trusted proxy named
/// another in `X-Forwarded-For` (see `forwarded.rs`).
#[derive(Debug, Clone, Copy)]
struct Remote {
    peer: SocketAddr,
    client: IpAddr,
}

impl Remote {
    fn direct(peer: SocketAddr) -> Remote {
        Remote {
            peer,
            client: peer.ip().to_canonical(),
        }
    }
}

/// `192.0.2.7:50312`, or `203.0.113.9 via 127.0.0.1:50312` behind a proxy.
impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.client == self.peer.ip().to_canonical() {
            write!(f, "{}", self.peer)
        } else {
            write!(f, "{} via {}", self.client, self.peer)
        }
    }
}

/// Which WebSocket endpoint a client opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Chat(Mode),
    Echo,
}

/// Serves one accepted TCP connection from start to end. `address_place`
/// is its address's pending place, taken by the accept loop.
pub fn handle(
    stream: TcpStream,
    peer: SocketAddr,
    address_place: Option<AddressPlace>,
    ctx: Arc<Context>,
) {
    let _ = stream.set_nodelay(true);
    // The accept loop took these places for us (`server::start_connection`).
    let pending = PendingHandshake(&ctx.pending_handshakes);
    let mut head = Vec::new();
    let head_read = read_head(&stream, &mut head, ctx.config.handshake_timeout);
    drop((pending, address_place));
    let head_len = match head_read {
        Ok(len) => len,
        Err(rejection) => {
            if let Some(rejection) = rejection {
                reject(&stream, Remote::direct(peer), rejection, &ctx.metrics);
            }
            return;
        }
    };
    let request = match Request::parse(&head[..head_len]) {
        Ok(request) => request,
        Err(rejection) => {
            return reject(&stream, Remote::direct(peer), rejection, &ctx.metrics);
        }
    };
    // From here on, limits and log lines are about the client, which a
    // trusted proxy names in X-Forwarded-For (read from the right).
    let forwarded_for = request
        .headers()
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(FORWARDED_FOR))
        .map(|h| h.value);
    let peer = Remote {
        peer,
        client: forwarded::client_address(peer.ip(), forwarded_for, &ctx.config.trusted_proxies),
    };
    // Every request, page and upgrade alike, must name this server (DNS
    // rebinding, see access.rs). An empty Host is left to the handshake's
    // own check; HTTP/1.0 requests may have none.
    let (host, duplicate) = {
        let mut hosts = request.header_values("Host");
        (hosts.next(), hosts.next().is_some())
    };
    if duplicate {
        // RFC 9112 §3.2: more than one Host is a 400, whatever they say.
        let rejection = Rejection::new(400, "duplicate Host header");
        return reject(&stream, peer, rejection, &ctx.metrics);
    }
    let bound_to_loopback = ctx.config.addr.ip().is_loopback();
    if let Some(host) = host.filter(|host| {
        !host.is_empty() && !access::host_allowed(host, bound_to_loopback, &ctx.config.allow_hosts)
    }) {
        log::warn!("Rejected request from {peer} for host {}", Untrusted(host));
        let rejection = Rejection::new(403, HOST_NOT_ALLOWED);
        return reject(&stream, peer, rejection, &ctx.metrics);
    }
    if !request.is_websocket_attempt() {
        let (status, response) = http::respond(&request, &ctx.files, &ctx.metrics);
        ctx.metrics.http_requests_total.fetch_add(1, Relaxed);
        log::debug!(
            "{peer} {} {} -> {status}",
            request.method,
            Untrusted(request.target)
        );
        return finish_http(&stream, &response);
    }
    let endpoint = match accept(&request, &ctx) {
        Ok(endpoint) => endpoint,
        Err(rejection) => return reject(&stream, peer, rejection, &ctx.metrics),
    };
    let resume = match crate::room::resume_param(request.target) {
        Ok(resume) => resume,
        Err(reason) => return reject(&stream, peer, Rejection::new(400, reason), &ctx.metrics),
    };
    let cluster_down = ctx.cluster_up.as_ref().is_some_and(|up| !up.load(Relaxed));
    if cluster_down && matches!(endpoint, Endpoint::Chat(_)) {
        let rejection = Rejection::new(503, CLUSTER_UNAVAILABLE);
        return reject(&stream, peer, rejection, &ctx.metrics);
    }
    let key = request
        .header("Sec-WebSocket-Key")
        .unwrap_or_default()
        .to_string();
    let deflate = negotiate_deflate(&request, endpoint, &ctx.config);
    let buffered = head[head_len..].to_vec();
    drop(head);

    // Hold a place under --max-clients-per-ip, then under --max-clients,
    // before starting anything.
    let address_place = match ctx.address_limits.take(Hold::Client, peer.client) {
        Ok(place) => place,
        Err(_) => {
            ctx.metrics.refused(Refusal::ClientsPerAddress);
            let rejection = Rejection::new(429, CLIENTS_PER_ADDRESS);
            return reject(&stream, peer, rejection, &ctx.metrics);
        }
    };
    let current = ctx.metrics.connections_current.fetch_add(1, Relaxed) as usize;
    let full = if current >= ctx.config.max_clients {
        Some((Refusal::MaxClients, "server full (--max-clients reached)"))
    } else if current >= ctx.threads.websocket_limit() {
        Some((Refusal::ThreadLimit, "server at its thread limit"))
    } else {
        None
    };
    if let Some((limit, reason)) = full {
        ctx.metrics.connections_current.fetch_sub(1, Relaxed);
        ctx.metrics.refused(limit);
        return reject(&stream, peer, Rejection::new(503, reason), &ctx.metrics);
    }
    let protocol = (endpoint == Endpoint::Chat(Mode::V1)).then_some(SUBPROTOCOL);
    let stream = Arc::new(stream);
    ctx.metrics.connections_total.fetch_add(1, Relaxed);
    let id = ctx.next_id.fetch_add(1, Relaxed);
    let compressing = match endpoint {
        Endpoint::Chat(mode) if deflate.is_some() => Some(variant(mode, false) as usize),
        _ => None,
    };
    if let Some(mode) = compressing {
        // Counted before the Join is sent, so that the broadcaster
        // compresses every broadcast this client can receive.
        ctx.metrics.deflate_clients[mode].fetch_add(1, Relaxed);
    }
    // Leaves the room and frees the --max-clients place however this
    // connection ends, a panic included (drop runs while unwinding).
    let mut registration = Registration {
        id,
        endpoint,
        ctx: &ctx,
        registered: true,
        compressing,
        address_place,
    };
    // From here on only the client's delivery thread writes to the socket,
    // the 101 first. A chat client is added to the room and to delivery in
    // one step by the broadcaster, so that it is in the room by the time it
    // reads its 101: a message sent right after its handshake reaches it.
    let extensions = deflate.map(|agreement| agreement.response_header());
    let response = handshake::response_101_with_extensions(&key, protocol, extensions.as_deref());
    let variant = match endpoint {
        Endpoint::Chat(mode) => Some(variant(mode, deflate.is_some())),
        Endpoint::Echo => None,
    };
    let delivery_end = Delivery::endpoint(id, variant, stream.clone(), response);
    let outlet = match endpoint {
        Endpoint::Chat(mode) => {
            let (joined, outlet) = broadcaster::join_channel();
            let join = Event::Join {
                id,
                peer: peer.peer,
                mode,
                endpoint: Box::new(delivery_end),
                joined,
                resume,
            };
            let waited = match ctx.events.send_timeout(join, JOIN_TIMEOUT) {
                Ok(()) => outlet.wait(JOIN_TIMEOUT),
                Err(SendTimeoutError::Timeout(_)) => Err(JoinFailed::TimedOut),
                Err(SendTimeoutError::Disconnected(_)) => Err(JoinFailed::Refused),
            };
            match waited.map_err(|failed| (failed, ctx.cluster_up.is_some())) {
                Ok(outlet) => outlet,
                Err((JoinFailed::TimedOut, _)) => {
                    log::warn!("({id}) {peer} was not taken into the room within {JOIN_TIMEOUT:?}");
                    registration.leave();
                    let rejection = Rejection::new(503, JOIN_TIMED_OUT);
                    return reject(&stream, peer, rejection, &ctx.metrics);
                }
                Err((JoinFailed::Refused, true)) => {
                    // Its join could not reach Redis; nothing was written
                    // to the socket yet.
                    registration.leave();
                    let rejection = Rejection::new(503, CLUSTER_UNAVAILABLE);
                    return reject(&stream, peer, rejection, &ctx.metrics);
                }
                Err((JoinFailed::Refused, false)) => {
                    log::error!("Error: ({id}) {peer} could not join: the room has stopped");
                    return;
                }
            }
        }
        Endpoint::Echo => ctx.delivery.add(delivery_end),
    };
    let compression = if deflate.is_some() {
        ", permessage-deflate"
    } else {
        ""
    };
    log::info!(
        "New connection: ({id}) {peer} {}{compression}",
        describe(endpoint)
    );
    let mut client = Client {
        id,
        remote: peer,
        endpoint,
        deflate,
        outlet,
        ctx: ctx.clone(),
        tokens: RateLimiter::new(ctx.config.rate_limit),
    };
    let (code, reason) = client.run(&stream, &buffered);
    // Announce the leave now: the tail of the close handshake below can
    // take a while, and the room should not wait for it.
    registration.leave();
    // Wait (briefly) for the client's side of the close, and read off what
    // it still sends, so that TCP ends with a FIN rather than a reset.
    drain(&stream, CLOSE_TIMEOUT);
    // Delivery forgets the client. The socket is its to end: a Close still
    // queued (the answer to a client that sent Close and then shut its
    // half, §5.5.1) and what was queued before it are written first,
    // within CLOSE_WRITE_DEADLINE, and then TCP is closed.
    drop(client);
    // The reason may carry a client's close reason.
    log::info!("Connection closed: ({id}) {code} {}", Untrusted(&reason));
}

struct Registration<'a> {
    id: ClientId,
    endpoint: Endpoint,
    ctx: &'a Context,
    registered: bool,
    /// Where it is counted in `Metrics::deflate_clients`, if it is a chat
    /// client that negotiated permessage-deflate.
    compressing: Option<usize>,
    /// Its place under `--max-clients-per-ip`, if that counts its address.
    address_place: Option<AddressPlace>,
}

impl Registration<'_> {
    fn leave(&mut self) {
        if std::mem::take(&mut self.registered) {
            if let Endpoint::Chat(_) = self.endpoint {
                let _ = self.ctx.events.send(Event::Leave { id: self.id });
            }
            self.ctx.metrics.connections_current.fetch_sub(1, Relaxed);
            self.address_place = None;
            if let Some(mode) = self.compressing {
                self.ctx.metrics.deflate_clients[mode].fetch_sub(1, Relaxed);
            }
        }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.leave();
    }
}

fn describe(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Chat(Mode::Raw) => "chat (raw)",
        Endpoint::Chat(Mode::V1) => "chat (wschat.v1)",
        Endpoint::Echo => "echo",
    }
}

/// permessage-deflate (RFC 7692 §5): the first acceptable offer, or `None`
/// (answer without the extension; a bad offer is declined, never an
/// error). The chat compresses each broadcast once, with the full window,
/// for every client that negotiated, so it declines offers that would
/// limit the server's window (§7.1.2.1 lets a server refuse that
/// parameter) and takes a later offer instead; `/echo` compresses each
/// reply for its one client, and honours them.
fn negotiate_deflate(
    request: &Request<'_>,
    endpoint: Endpoint,
    config: &Config,
) -> Option<Agreement> {
    if !config.deflate {
        return None;
    }
    let offers = request.header_values("Sec-WebSocket-Extensions");
    match endpoint {
        Endpoint::Chat(_) => negotiate_where(offers, |agreement| {
            agreement.compress_window_bits() == MAX_WINDOW_BITS
        }),
        Endpoint::Echo => negotiate_where(offers, |_| true),
    }
}

/// Checks the handshake, the origin and the path.
fn accept(request: &Request<'_>, ctx: &Context) -> Result<Endpoint, Rejection> {
    let upgrade = request.validate_upgrade()?;
    if !access::origin_allowed(upgrade.origin, upgrade.host, &ctx.config.allow_origins) {
        return Err(Rejection::new(
            403,
            "origin not allowed (see --allow-origin)",
        ));
    }
    match request.path() {
        "/" if request.offers_protocol(SUBPROTOCOL) => Ok(Endpoint::Chat(Mode::V1)),
        "/" => Ok(Endpoint::Chat(Mode::Raw)),
        "/echo" => Ok(Endpoint::Echo),
        _ => Err(Rejection::new(
            404,
            "no WebSocket endpoint here (try / or /echo)",
        )),
    }
}

/// Reads until the blank line that ends the head. `Err(None)` means the
/// client went away, `Err(Some(..))` deserves an answer.
fn read_head(
    mut stream: &TcpStream,
    head: &mut Vec<u8>,
    timeout: Duration,
) -> Result<usize, Option<Rejection>> {
    let deadline = Instant::now() + timeout;
    loop {
        // The deadline covers the whole head: a client sending one byte
        // every few seconds (slowloris) is cut off all the same.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Some(Rejection::new(
                408,
                "request head not received in time",
            )));
        }
        let _ = stream.set_read_timeout(Some(left));
        // Read straight into the head buffer: no buffer on the stack, so
        // connection threads keep small stacks.
        let scanned = head.len();
        head.resize(scanned + HEAD_READ_CHUNK, 0);
        let result = stream.read(&mut head[scanned..]);
        head.truncate(scanned + *result.as_ref().unwrap_or(&0));
        match result {
            Ok(0) => return Err(None),
            Ok(_) => {
                if let Some(end) = find_head_end(head, scanned) {
                    return if end > MAX_HEAD_BYTES {
                        Err(Some(Rejection::new(431, "request head too large")))
                    } else {
                        Ok(end)
                    };
                }
                if head.len() > MAX_HEAD_BYTES {
                    return Err(Some(Rejection::new(431, "request head too large")));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Some(Rejection::new(
                    408,
                    "request head not received in time",
                )));
            }
            Err(_) => return Err(None),
        }
    }
}

fn reject(stream: &TcpStream, peer: Remote, rejection: Rejection, metrics: &Metrics) {
    log::warn!("Rejected handshake from {peer}: {rejection}");
    metrics.rejection(rejection.status);
    finish_http(stream, &rejection.response());
}

/// Writes a response and closes, reading off what the client still sends
/// so that the close is a FIN and not a reset that could eat the response.
fn finish_http(mut stream: &TcpStream, response: &[u8]) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = stream.write_all(response);
    let _ = stream.shutdown(Shutdown::Write);
    drain(stream, Duration::from_secs(1));
}

/// Reads and discards until EOF, an error, `limit` passes, or 1 MiB.
fn drain(mut stream: &TcpStream, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut scratch = [0u8; 1024];
    let mut total = 0;
    while total < 1 << 20 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut scratch) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

struct Client {
    id: ClientId,
    /// For the log.
    remote: Remote,
    endpoint: Endpoint,
    /// The permessage-deflate agreement, if the handshake made one.
    deflate: Option<Agreement>,
    outlet: Outlet,
    ctx: Arc<Context>,
    tokens: RateLimiter,
}

impl Drop for Client {
    fn drop(&mut self) {
        // A bug in this connection's code: tell the client (1011) rather
        // than leave it to guess from a dropped connection.
        if std::thread::panicking() {
            let frame = encode_close(CloseCode::InternalError, "internal_error", None);
            self.outlet.close(frame);
        }
    }
}

impl Client {
    /// The read pump. Returns the close code and reason for the log.
    fn run(&mut self, stream: &TcpStream, buffered: &[u8]) -> (u16, String) {
        let max = match self.endpoint {
            Endpoint::Echo => self.ctx.config.echo_max_message_bytes,
            Endpoint::Chat(_) => self.ctx.config.max_message_bytes,
        };
        let ping = self.ctx.config.ping_interval;
        let _ = stream.set_read_timeout(Some(ping));
        let mut reader = MessageReader::with_buffered(stream, Role::Server, max, buffered);
        if self.deflate.is_some() {
            // RSV1 now marks a compressed message; `max` bounds its
            // inflated size, checked while inflating (RFC 7692 §8).
            reader.enable_deflate();
        }
        let mut silent_intervals = 0;
        loop {
            // Backpressure: while this client's private backlog is over
            // its cap, read nothing more from it.
            self.outlet.wait_for_room();
            if self.outlet.is_closed() {
                // Delivery ended this client (dropped as a slow consumer,
                // or its socket failed) and has logged why.
                break (1008, "ended by delivery".into());
            }
            let message = match reader.read_message() {
                Ok(message) => message,
                Err(ReadError::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    // Nothing for a whole ping interval: ask (§5.5.2); a
                    // live client answers within the next interval.
                    silent_intervals += 1;
                    if silent_intervals >= 2 {
                        self.ctx.metrics.client_dropped(DropReason::PingTimeout);
                        break self.close(CloseCode::Away, "ping_timeout");
                    }
                    // An idle client's writer is idle too: the ping is
                    // written directly, without starting a thread.
                    self.send(encode_frame(OpCode::Ping, b"", None));
                    continue;
                }
                Err(ReadError::Protocol(e)) => {
                    let code = e.close_code();
                    self.ctx.metrics.protocol_error(code.into());
                    log::warn!(
                        "Error: ({}) protocol error: {e}, closing with {code}",
                        self.id
                    );
                    break self.close(code, &e.to_string());
                }
                Err(_) if self.outlet.is_closed() => {
                    // Delivery ended this client and shut its reading half.
                    break (1008, "ended by delivery".into());
                }
                Err(ReadError::Eof) => {
                    break (1006, "connection closed without a close frame".into());
                }
                Err(ReadError::Io(e)) => break (1006, format!("read error: {e}")),
            };
            silent_intervals = 0;
            match message {
                Message::Text(text) => {
                    #[cfg(feature = "test-hooks")]
                    if self.ctx.config.panic_trigger.as_deref() == Some(text.as_str()) {
                        panic!("panic trigger received (a test of panic containment)");
                    }
                    if let Some(outcome) = self.data(text.len()) {
                        break outcome;
                    }
                    match self.endpoint {
                        Endpoint::Echo => self.echo(OpCode::Text, text.as_bytes()),
                        Endpoint::Chat(_) => {
                            log::debug!("New message: ({}) {}", self.id, Untrusted(&text));
                            let _ = self.ctx.events.send(Event::Text { id: self.id, text });
                        }
                    }
                }
                Message::Binary(data) => {
                    if let Some(outcome) = self.data(data.len()) {
                        break outcome;
                    }
                    match self.endpoint {
                        Endpoint::Echo => self.echo(OpCode::Binary, &data),
                        Endpoint::Chat(_) => {
                            let _ = self.ctx.events.send(Event::Binary { id: self.id, data });
                        }
                    }
                }
                // §5.5.2: a Pong with the same payload, as soon as practical.
                // Pongs waiting to be written are replaced by this one
                // (§5.5.3), so pings cost one pong however many come.
                Message::Ping(payload) => {
                    self.outlet.pong(encode_frame(OpCode::Pong, &payload, None))
                }
                // §5.5.3: an unsolicited Pong needs no answer.
                Message::Pong(_) => {}
                Message::Close(frame) => {
                    // §5.5.1: echo the code (an empty Close is answered with
                    // 1000, since 1005 may not be sent), then close.
                    // The log says 1005 for an empty Close, as §7.1.5 defines
                    // the connection's close code in that case.
                    let (reply, logged, reason) = match frame {
                        Some(f) => (f.code, u16::from(f.code), f.reason),
                        None => (CloseCode::Normal, 1005, String::new()),
                    };
                    self.outlet.close(encode_close(reply, "", None));
                    break (
                        logged,
                        format!("closed by client {reason}").trim_end().to_string(),
                    );
                }
            }
        }
    }

    /// Counts an incoming data message and applies the rate limit.
    fn data(&mut self, len: usize) -> Option<(u16, String)> {
        self.ctx.metrics.messages_in.fetch_add(1, Relaxed);
        self.ctx.metrics.bytes_in.fetch_add(len as u64, Relaxed);
        if matches!(self.endpoint, Endpoint::Chat(_)) && !self.tokens.allow() {
            log::warn!(
                "Dropping ({}) {} for flooding: over {} messages/s, closing with 1008",
                self.id,
                self.remote,
                self.tokens.rate
            );
            self.ctx.metrics.client_dropped(DropReason::RateLimit);
            return Some(self.close(CloseCode::Policy, "rate_limited"));
        }
        None
    }

    fn send(&self, frame: Vec<u8>) {
        self.outlet.reply(frame);
    }

    /// Sends a message back, compressed if the client negotiated
    /// permessage-deflate. The compressor's tables (about 320 KiB) are
    /// made for the message and freed after it: an idle connection keeps
    /// no compression state.
    fn echo(&self, opcode: OpCode, payload: &[u8]) {
        let Some(agreement) = self.deflate else {
            return self.send(encode_frame(opcode, payload, None));
        };
        let mut compressed = Vec::new();
        Compressor::new().compress(payload, agreement.compress_window_bits(), &mut compressed);
        self.ctx.metrics.compressed(payload.len(), compressed.len());
        self.send(encode_compressed_frame(opcode, &compressed));
    }

    /// Starts a server-side close (§7.1.2): queue the Close frame; nothing
    /// is sent after it.
    fn close(&self, code: CloseCode, reason: &str) -> (u16, String) {
        self.outlet.close(encode_close(code, reason, None));
        (code.into(), reason.to_string())
    }
}
