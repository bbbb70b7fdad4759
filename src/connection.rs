//! One thread per connection, in five steps (`handle`): read the HTTP
//! request head under a deadline; admit it (answer plain HTTP, or refuse a
//! bad handshake with a status); register the client with delivery (and,
//! for the chat, the room); run its read loop: frames in, events to the
//! broadcaster (chat) or replies written on the spot (echo); finish.

use crate::access::{self, HOST_NOT_ALLOWED};
use crate::address_limits::{AddressLimits, AddressPlace, Hold};
use crate::auth::transport::{self, AuthMode, RefreshError, SignedIn};
use crate::broadcaster::{self, Event, JOIN_TIMED_OUT, JOIN_TIMEOUT, JoinFailed};
use crate::config::Config;
use crate::delivery::{Delivery, Ending, Endpoint, Outlet, Variant};
use crate::echo::{EchoClients, EchoHandle, EchoSocket};
use crate::forwarded::{self, FORWARDED_FOR};
use crate::http::{self, StaticFiles};
use crate::idle_stack::IdleStack;
use crate::inspect::{self, Inspectors};
use crate::log_text::Untrusted;
use crate::metrics::{DropReason, Metrics, Refusal};
use crate::protocol::close::CloseCode;
use crate::protocol::deflate::{Agreement, Compressor, MAX_WINDOW_BITS, negotiate_where};
use crate::protocol::frame::{OpCode, encode_close, encode_compressed_frame, encode_frame};
use crate::protocol::handshake::{self, MAX_HEAD_BYTES, Rejection, Request, find_head_end};
use crate::protocol::message::{Message, MessageReader, ReadError, Role};
use crate::rate_limit::RateLimiter;
use crate::room::{ClientId, Identity, Mode, Resume, RoomName, SUBPROTOCOL, Visitor, now_ms};
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
/// are on the heap, and so are the inflater's decoding tables), so an
/// idle connection uses two pages of it. The size is reserve for the
/// rare deep paths: a signed-in handshake, or a compressed message with
/// dynamic Huffman codes (at most 28 KiB of stack touched in a debug
/// build, where frames are largest, over the sign-in, compression and
/// server tests), or a panic with RUST_BACKTRACE=full, which symbolises
/// the backtrace on this stack. The reservation is not free: the page
/// tables cover all of it, one 4 KiB table per 2 MiB of stacks, about
/// 0.17 KiB per client at this size (0.5 KiB at 256 KiB).
pub const READER_STACK: usize = 64 * 1024;
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
    /// The echo clients, which their readers write to.
    pub echoes: Arc<EchoClients>,
    /// Cluster mode: false while Redis cannot be reached (new chat
    /// connections are then answered 503).
    pub cluster_up: Option<Arc<AtomicBool>>,
    /// The frame inspector's connections (`None` with `--inspect off`).
    pub inspect: Option<Arc<Inspectors>>,
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

/// Which WebSocket service a client asked for: by path, and on `/` by
/// subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Chat(Mode),
    Echo,
}

/// A request head as read from the socket: `bytes[..len]` is the head, the
/// rest what the client sent right behind it (a first frame, §4.1).
struct Head {
    bytes: Vec<u8>,
    len: usize,
}

/// A WebSocket handshake found valid and within every limit: what the
/// later steps need from the request.
struct Admitted<'a> {
    remote: Remote,
    service: Service,
    resume: Option<Resume>,
    /// The rooms a chat client asked to be in (`?rooms=`; `#main` if none).
    rooms: Vec<RoomName>,
    /// A chat client's verified token (`--auth`), or `None`: a guest.
    claims: Option<crate::auth::Claims>,
    /// `Sec-WebSocket-Key`, for the 101's accept key (§4.2.2).
    key: String,
    /// The permessage-deflate agreement, if the handshake made one.
    deflate: Option<Agreement>,
    /// Bytes the client sent behind the head, for the frame reader.
    buffered: Vec<u8>,
    registration: Registration<'a>,
}

/// Serves one accepted TCP connection from start to end, in the steps
/// chapter 01 follows: read the request, admit it, register the client,
/// run its read loop, finish. `address_place` is its address's pending
/// place, taken by the accept loop. A step that refuses the connection has
/// answered it already.
///
/// An idle client waits for its next byte here, in a frame next to the
/// thread's first, rather than below the read loop's calls: every deeper
/// page of the stack is then given back (see idle_stack.rs), and an idle
/// thread keeps two pages of stack, the fewest it can (glibc's thread
/// control block and static TLS take the top one and spill onto the
/// next). The read loop's state lives in this frame too, on the second
/// page, which is resident anyway: on the heap it would cost more.
pub fn handle(
    stream: TcpStream,
    peer: SocketAddr,
    address_place: Option<AddressPlace>,
    ctx: Arc<Context>,
    stack: &IdleStack,
) {
    let stream = Arc::new(stream);
    // Bound in this order so that, if the read loop panics, the reader
    // (which then sends 1011) is dropped before the registration leaves.
    let Some((registration, read_loop)) = open(&stream, peer, address_place, &ctx) else {
        return;
    };
    let mut read_loop = ReadLoop::start(read_loop, &stream);
    let (code, reason) = loop {
        if let Err(outcome) = read_loop.until_idle() {
            break outcome;
        }
        let waited = wait_for_input(&stream, stack);
        if let Some(outcome) = read_loop.after_wait(waited) {
            break outcome;
        }
    };
    finish(&stream, read_loop, registration, code, &reason);
}

/// Steps 1 to 3. Not inlined: the handshake's locals (the request, its
/// headers, the response) then live in this call's frame, which is gone
/// by the time the read loop waits, and so is the stack they took.
#[inline(never)]
fn open<'a>(
    stream: &Arc<TcpStream>,
    peer: SocketAddr,
    address_place: Option<AddressPlace>,
    ctx: &'a Arc<Context>,
) -> Option<(Registration<'a>, (Reader, Vec<u8>))> {
    let _ = stream.set_nodelay(true);
    let head = read_request(stream, peer, address_place, ctx)?;
    let admitted = admit(stream, peer, head, ctx)?;
    register(stream, admitted, ctx)
}

/// Step 1: reads the request head within `--handshake-timeout`, then gives
/// back the places the accept loop took for a connection still sending
/// its head. A head too slow or too large is answered (408, 431).
fn read_request(
    stream: &TcpStream,
    peer: SocketAddr,
    address_place: Option<AddressPlace>,
    ctx: &Context,
) -> Option<Head> {
    // The accept loop took these places for us (`server::start_connection`).
    let pending = PendingHandshake(&ctx.pending_handshakes);
    let mut bytes = Vec::new();
    let head_read = read_head(stream, &mut bytes, ctx.config.handshake_timeout);
    drop((pending, address_place));
    match head_read {
        Ok(len) => Some(Head { bytes, len }),
        Err(Some(rejection)) => refuse(stream, Remote::direct(peer), rejection, ctx),
        Err(None) => None,
    }
}

/// Step 2: parses the request and decides what it gets. Plain HTTP is
/// answered here. A WebSocket handshake is checked (§4.2.1: `accept`),
/// and so are its host, origin, path and resume point; it then takes its
/// places under `--max-clients-per-ip` and `--max-clients`. Whatever is
/// refused is answered with a status.
fn admit<'a>(
    stream: &TcpStream,
    peer: SocketAddr,
    head: Head,
    ctx: &'a Context,
) -> Option<Admitted<'a>> {
    let request = match Request::parse(&head.bytes[..head.len]) {
        Ok(request) => request,
        Err(rejection) => return refuse(stream, Remote::direct(peer), rejection, ctx),
    };
    let remote = client_remote(peer, &request, ctx);
    if let Err(rejection) = check_host(&request, remote, ctx) {
        return refuse(stream, remote, rejection, ctx);
    }
    if !request.is_websocket_attempt() {
        answer_http(stream, remote, &request, ctx);
        return None;
    }
    if let Some(inspectors) = &ctx.inspect
        && inspect::is_endpoint(request.path())
    {
        // The inspector serves its own connections, off the chat's books,
        // but each holds a place of its address, as a chat or echo client
        // does: one address cannot take every inspector place. A refusal
        // is counted as theirs are, by limit and by status.
        let (head, buffered) = head.bytes.split_at(head.len);
        let take_place = || {
            take_address_place(remote, ctx)
                .inspect_err(|rejection| ctx.metrics.rejection(rejection.status))
        };
        if let Err(rejection) = inspect::serve(
            stream,
            &request,
            head,
            buffered,
            inspectors,
            &ctx.config,
            take_place,
        ) {
            log::warn!("Rejected inspector handshake from {remote}: {rejection}");
            finish_http(stream, &rejection.response());
        }
        return None;
    }
    let (service, resume, rooms) = match check_upgrade(&request, ctx) {
        Ok(checked) => checked,
        Err(rejection) => return refuse(stream, remote, rejection, ctx),
    };
    let claims = match sign_in(&request, service, ctx) {
        Ok(claims) => claims,
        Err(rejection) => return refuse(stream, remote, rejection, ctx),
    };
    let deflate = negotiate_deflate(&request, service, &ctx.config);
    let registration = match take_places(remote, service, deflate.is_some(), ctx) {
        Ok(registration) => registration,
        Err(rejection) => return refuse(stream, remote, rejection, ctx),
    };
    Some(Admitted {
        remote,
        service,
        resume,
        rooms,
        claims,
        key: request
            .header("Sec-WebSocket-Key")
            .unwrap_or_default()
            .to_string(),
        deflate,
        buffered: head.bytes[head.len..].to_vec(),
        registration,
    })
}

/// Who the request is from: from here on, limits and log lines are about
/// the client, which a trusted proxy names in `X-Forwarded-For` (read from
/// the right).
fn client_remote(peer: SocketAddr, request: &Request<'_>, ctx: &Context) -> Remote {
    let forwarded_for = request
        .headers()
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(FORWARDED_FOR))
        .map(|h| h.value);
    Remote {
        peer,
        client: forwarded::client_address(peer.ip(), forwarded_for, &ctx.config.trusted_proxies),
    }
}

/// Every request, page and upgrade alike, must name this server (DNS
/// rebinding, see access.rs). An empty Host is left to the handshake's
/// own check; HTTP/1.0 requests may have none.
fn check_host(request: &Request<'_>, remote: Remote, ctx: &Context) -> Result<(), Rejection> {
    let mut hosts = request.header_values("Host");
    let (host, duplicate) = (hosts.next(), hosts.next().is_some());
    if duplicate {
        // RFC 9112 §3.2: more than one Host is a 400, whatever they say.
        return Err(Rejection::new(400, "duplicate Host header"));
    }
    let bound_to_loopback = ctx.config.addr.ip().is_loopback();
    if let Some(host) = host.filter(|host| {
        !host.is_empty() && !access::host_allowed(host, bound_to_loopback, &ctx.config.allow_hosts)
    }) {
        log::warn!(
            "Rejected request from {remote} for host {}",
            Untrusted(host)
        );
        return Err(Rejection::new(403, HOST_NOT_ALLOWED));
    }
    Ok(())
}

/// Answers a request that is not a WebSocket handshake (the page,
/// `/healthz`, `/metrics`), then closes.
fn answer_http(stream: &TcpStream, remote: Remote, request: &Request<'_>, ctx: &Context) {
    let inspector = inspect::answer_http(request, &ctx.files, ctx.inspect.is_some());
    let (status, response) =
        inspector.unwrap_or_else(|| http::respond(request, &ctx.files, &ctx.metrics));
    ctx.metrics.http_requests_total.fetch_add(1, Relaxed);
    log::debug!(
        "{remote} {} {} -> {status}",
        request.method,
        Untrusted(request.target)
    );
    finish_http(stream, &response);
}

/// The handshake (§4.2.1), origin and path (`accept`), the resume point,
/// the rooms, and whether the chat can take anyone now (cluster mode
/// needs Redis).
fn check_upgrade(
    request: &Request<'_>,
    ctx: &Context,
) -> Result<(Service, Option<Resume>, Vec<RoomName>), Rejection> {
    let service = accept(request, ctx)?;
    let resume =
        crate::room::resume_param(request.target).map_err(|reason| Rejection::new(400, reason))?;
    let rooms = chat_rooms(request.target, service, ctx)?;
    let cluster_down = ctx.cluster_up.as_ref().is_some_and(|up| !up.load(Relaxed));
    if cluster_down && matches!(service, Service::Chat(_)) {
        return Err(Rejection::new(503, CLUSTER_UNAVAILABLE));
    }
    Ok((service, resume, rooms))
}

/// Who a chat client is (`--auth`): the claims of the token it offered as
/// a subprotocol (`wschat.auth.TOKEN`), verified now, or `None` for a
/// guest. Refused with 401 and the stable reason (`auth_required`,
/// `token_expired`, ...): never any byte of the token, here or in the log
/// line `reject` writes. `/echo` carries no identity, so no token is
/// asked of it.
fn sign_in(
    request: &Request<'_>,
    service: Service,
    ctx: &Context,
) -> Result<Option<crate::auth::Claims>, Rejection> {
    if service == Service::Echo || ctx.config.auth == AuthMode::Off {
        return Ok(None);
    }
    let token = transport::offered_token(request.header_tokens("Sec-WebSocket-Protocol"));
    let now = now_ms() / 1000;
    transport::sign_in(ctx.config.auth, ctx.config.auth_keys.as_ref(), token, now).map_err(
        |reason| {
            ctx.metrics.auth_refused(reason);
            Rejection::new(401, reason)
        },
    )
}

/// The rooms a chat client asks for in its target's query (`rooms=`):
/// `#main` if it names none; a raw client names exactly one, a
/// `wschat.v1` client at most `--max-rooms-per-client`.
fn chat_rooms(target: &str, service: Service, ctx: &Context) -> Result<Vec<RoomName>, Rejection> {
    if service == Service::Echo {
        return Ok(Vec::new()); // `/echo` has no rooms: its query means nothing
    }
    let listed = crate::room::rooms_param(target).map_err(|reason| Rejection::new(400, reason))?;
    let Some(rooms) = listed else {
        return Ok(vec![RoomName::main()]);
    };
    match service {
        Service::Chat(Mode::Raw) if rooms.len() != 1 => Err(Rejection::new(
            400,
            "a raw client is in exactly one room: rooms=NAME",
        )),
        Service::Chat(Mode::V1) if rooms.len() > ctx.config.max_rooms_per_client => {
            Err(Rejection::new(
                400,
                "rooms: more rooms than one client may be in (--max-rooms-per-client)",
            ))
        }
        _ => Ok(rooms),
    }
}

/// Holds a place of the client's address under `--max-clients-per-ip`
/// for one WebSocket connection (chat, echo or the inspector's), or 429.
fn take_address_place(remote: Remote, ctx: &Context) -> Result<Option<AddressPlace>, Rejection> {
    ctx.address_limits
        .take(Hold::Client, remote.client)
        .map_err(|_| {
            ctx.metrics.refused(Refusal::ClientsPerAddress);
            Rejection::new(429, CLIENTS_PER_ADDRESS)
        })
}

/// Holds a place under `--max-clients-per-ip`, then under `--max-clients`
/// (and the thread budget), and numbers the client. The [`Registration`]
/// gives the places back however the connection ends.
fn take_places(
    remote: Remote,
    service: Service,
    compressed: bool,
    ctx: &Context,
) -> Result<Registration<'_>, Rejection> {
    let address_place = take_address_place(remote, ctx)?;
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
        return Err(Rejection::new(503, reason));
    }
    ctx.metrics.connections_total.fetch_add(1, Relaxed);
    let id = ctx.next_id.fetch_add(1, Relaxed);
    let compressing = match service {
        Service::Chat(mode) if compressed => Some(mode),
        _ => None,
    };
    if let Some(mode) = compressing {
        // Counted before the Join is sent, so that the broadcaster
        // compresses every broadcast this client can receive.
        ctx.metrics.deflate_clients_of(mode).fetch_add(1, Relaxed);
    }
    // Leaves the room and frees the places however this connection ends,
    // a panic included (drop runs while unwinding).
    Ok(Registration {
        id,
        service,
        ctx,
        registered: true,
        compressing,
        address_place,
    })
}

/// Step 3: hands a chat client to delivery: from here on only the
/// client's delivery thread writes to the socket, the 101 first. An echo
/// client's reader writes its 101 and everything after it. A chat client is
/// added to the room and to delivery in one step by the broadcaster, so
/// that it is in the room by the time it reads its 101: a message sent
/// right after its handshake reaches it.
fn register<'a>(
    stream: &Arc<TcpStream>,
    admitted: Admitted<'a>,
    ctx: &Arc<Context>,
) -> Option<(Registration<'a>, (Reader, Vec<u8>))> {
    let Admitted {
        remote,
        service,
        resume,
        rooms,
        claims,
        key,
        deflate,
        buffered,
        mut registration,
    } = admitted;
    let id = registration.id;
    let protocol = (service == Service::Chat(Mode::V1)).then_some(SUBPROTOCOL);
    let extensions = deflate.map(|agreement| agreement.response_header());
    let response = handshake::response_101_with_extensions(&key, protocol, extensions.as_deref());
    let variant = match service {
        Service::Chat(mode) => Some(Variant::new(mode, deflate.is_some())),
        Service::Echo => None,
    };
    let signed_in = claims.as_ref().map(SignedIn::new);
    let visitor = Visitor {
        identity: claims.as_ref().map(Identity::from_claims),
        address: Some(remote.client),
    };
    let replies = match service {
        Service::Chat(mode) => {
            let endpoint = Delivery::endpoint(id, variant, stream.clone(), response);
            match join_room(id, remote, mode, endpoint, (resume, rooms, visitor), ctx) {
                Ok(outlet) => Replies::Delivery(outlet),
                Err(answer) => {
                    registration.leave();
                    match answer {
                        Some(Refused::Rejection(rejection)) => {
                            reject(stream, remote, rejection, &ctx.metrics)
                        }
                        Some(Refused::Banned(reason)) => {
                            log::warn!("Rejected handshake from {remote}: 403 {reason}");
                            ctx.metrics.rejection(403);
                            finish_http(stream, &http::error_response(403, &reason, &[]));
                        }
                        None => {}
                    }
                    return None;
                }
            }
        }
        Service::Echo => {
            // It takes no broadcasts: nothing but its reader has anything
            // to write to it (see echo.rs).
            let stall_limit = ctx.config.ping_interval.saturating_mul(2);
            let socket = EchoSocket::new(id, stream.clone(), stall_limit, ctx.metrics.clone());
            socket.send(&response);
            if socket.ending().is_some() {
                return None; // it went away before its 101
            }
            Replies::Direct(ctx.echoes.add(socket))
        }
    };
    let compression = if deflate.is_some() {
        ", permessage-deflate"
    } else {
        ""
    };
    let signed = if signed_in.is_some() {
        ", signed in"
    } else {
        ""
    };
    log::info!(
        "New connection: ({id}) {remote} {}{compression}{signed}",
        describe(service)
    );
    let reader = Reader {
        id,
        remote,
        service,
        deflate,
        replies,
        ctx: ctx.clone(),
        tokens: RateLimiter::new(ctx.config.rate_limit),
        signed_in,
    };
    Some((registration, (reader, buffered)))
}

/// What a chat client that was not taken in is owed.
enum Refused {
    Rejection(Rejection),
    /// 403 with the ban's reason (`banned`, `banned until TS`).
    Banned(String),
}

/// Sends the broadcaster a chat client's Join and waits, up to
/// `JOIN_TIMEOUT`, for it to be taken in. The error is the answer the
/// client is owed, if any: nothing was written to its socket yet.
fn join_room(
    id: ClientId,
    remote: Remote,
    mode: Mode,
    endpoint: Endpoint,
    (resume, rooms, visitor): (Option<Resume>, Vec<RoomName>, Visitor),
    ctx: &Context,
) -> Result<Outlet, Option<Refused>> {
    let (joined, wait) = broadcaster::join_channel();
    let join = Event::Join {
        id,
        peer: remote.peer,
        mode,
        endpoint: Box::new(endpoint),
        joined,
        resume,
        rooms,
        visitor: Box::new(visitor),
    };
    let waited = match ctx.events.send_timeout(join, JOIN_TIMEOUT) {
        Ok(()) => wait.wait(JOIN_TIMEOUT),
        Err(SendTimeoutError::Timeout(_)) => Err(JoinFailed::TimedOut),
        Err(SendTimeoutError::Disconnected(_)) => Err(JoinFailed::Refused),
    };
    match waited {
        Ok(outlet) => Ok(outlet),
        Err(JoinFailed::Banned(reason)) => Err(Some(Refused::Banned(reason))),
        Err(JoinFailed::TimedOut) => {
            log::warn!("({id}) {remote} was not taken into the room within {JOIN_TIMEOUT:?}");
            Err(Some(Refused::Rejection(Rejection::new(
                503,
                JOIN_TIMED_OUT,
            ))))
        }
        // Its join could not reach Redis.
        Err(JoinFailed::Refused) if ctx.cluster_up.is_some() => Err(Some(Refused::Rejection(
            Rejection::new(503, CLUSTER_UNAVAILABLE),
        ))),
        Err(JoinFailed::Refused) => {
            log::error!("Error: ({id}) {remote} could not join: the room has stopped");
            Err(None)
        }
    }
}

/// Step 5: ends a connection whose read loop is over. Not inlined: its
/// scratch buffer stays out of `handle`'s frame.
#[inline(never)]
fn finish(
    stream: &TcpStream,
    read_loop: ReadLoop,
    mut registration: Registration,
    code: u16,
    reason: &str,
) {
    let id = registration.id;
    // Announce the leave now: the tail of the close handshake below can
    // take a while, and the room should not wait for it.
    registration.leave();
    // Wait (briefly) for the client's side of the close, and read off what
    // it still sends, so that TCP ends with a FIN rather than a reset.
    drain(stream, CLOSE_TIMEOUT);
    // Delivery forgets the client. The socket is its to end: a Close still
    // queued (the answer to a client that sent Close and then shut its
    // half, §5.5.1) and what was queued before it are written first,
    // within CLOSE_WRITE_DEADLINE, and then TCP is closed.
    drop(read_loop);
    // The reason may carry a client's close reason.
    log::info!("Connection closed: ({id}) {code} {}", Untrusted(reason));
}

/// A connection's places under the limits and, for a chat client, in the
/// room: given back once, by `leave` or when dropped.
struct Registration<'a> {
    id: ClientId,
    service: Service,
    ctx: &'a Context,
    registered: bool,
    /// Where it is counted in `Metrics::deflate_clients_of`, if it is a chat
    /// client that negotiated permessage-deflate.
    compressing: Option<Mode>,
    /// Its place under `--max-clients-per-ip`, if that counts its address.
    address_place: Option<AddressPlace>,
}

impl Registration<'_> {
    fn leave(&mut self) {
        if std::mem::take(&mut self.registered) {
            if let Service::Chat(_) = self.service {
                let _ = self.ctx.events.send(Event::Leave { id: self.id });
            }
            self.ctx.metrics.connections_current.fetch_sub(1, Relaxed);
            self.address_place = None;
            if let Some(mode) = self.compressing {
                self.ctx
                    .metrics
                    .deflate_clients_of(mode)
                    .fetch_sub(1, Relaxed);
            }
        }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.leave();
    }
}

/// Answers a refused connection and gives nothing to the next step.
fn refuse<T>(stream: &TcpStream, remote: Remote, rejection: Rejection, ctx: &Context) -> Option<T> {
    reject(stream, remote, rejection, &ctx.metrics);
    None
}

fn describe(service: Service) -> &'static str {
    match service {
        Service::Chat(Mode::Raw) => "chat (raw)",
        Service::Chat(Mode::V1) => "chat (wschat.v1)",
        Service::Echo => "echo",
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
    service: Service,
    config: &Config,
) -> Option<Agreement> {
    if !config.deflate {
        return None;
    }
    let offers = request.header_values("Sec-WebSocket-Extensions");
    match service {
        Service::Chat(_) => negotiate_where(offers, |agreement| {
            agreement.compress_window_bits() == MAX_WINDOW_BITS
        }),
        Service::Echo => negotiate_where(offers, |_| true),
    }
}

/// Checks the handshake, the origin and the path.
fn accept(request: &Request<'_>, ctx: &Context) -> Result<Service, Rejection> {
    let upgrade = request.validate_upgrade()?;
    if !access::origin_allowed(upgrade.origin, upgrade.host, &ctx.config.allow_origins) {
        return Err(Rejection::new(
            403,
            "origin not allowed (see --allow-origin)",
        ));
    }
    match request.path() {
        "/" if request.offers_protocol(SUBPROTOCOL) => Ok(Service::Chat(Mode::V1)),
        "/" => Ok(Service::Chat(Mode::Raw)),
        "/echo" => Ok(Service::Echo),
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

/// A client's read loop (step 4): frames in, events to the broadcaster
/// (chat) or replies to delivery (echo).
struct Reader {
    id: ClientId,
    /// For the log.
    remote: Remote,
    service: Service,
    /// The permessage-deflate agreement, if the handshake made one.
    deflate: Option<Agreement>,
    replies: Replies,
    ctx: Arc<Context>,
    tokens: RateLimiter,
    /// A signed-in chat client's sign-in: its `sub` and when it runs out
    /// (moved on by `/auth NEWTOKEN`).
    signed_in: Option<SignedIn>,
}

/// Where a reader's own frames (pongs, pings, echoes, its Close) go: to
/// the client's delivery thread (chat), or straight onto the socket, which
/// the reader alone writes (echo).
enum Replies {
    Delivery(Outlet),
    Direct(EchoHandle),
}

impl Replies {
    fn reply(&self, frame: Vec<u8>) {
        match self {
            Replies::Delivery(outlet) => outlet.reply(frame),
            Replies::Direct(socket) => socket.send(&frame),
        }
    }

    /// A data message, compressed (RSV1, RFC 7692 §6) or not.
    fn message(&self, opcode: OpCode, compressed: bool, payload: &[u8]) {
        match self {
            Replies::Delivery(outlet) if compressed => {
                outlet.reply(encode_compressed_frame(opcode, payload));
            }
            Replies::Delivery(outlet) => outlet.reply(encode_frame(opcode, payload, None)),
            Replies::Direct(socket) => socket.send_message(opcode, compressed, payload),
        }
    }

    fn pong(&self, frame: Vec<u8>) {
        match self {
            Replies::Delivery(outlet) => outlet.pong(frame),
            Replies::Direct(socket) => socket.send(&frame),
        }
    }

    fn close(&self, frame: Vec<u8>) {
        match self {
            Replies::Delivery(outlet) => outlet.close(frame),
            Replies::Direct(socket) => socket.close(&frame),
        }
    }

    /// Backpressure: returns once this client's backlog of replies is
    /// under its cap (a direct writer has none: its writes wait).
    fn wait_for_room(&self) {
        if let Replies::Delivery(outlet) = self {
            outlet.wait_for_room();
        }
    }

    fn ending(&self) -> Option<Ending> {
        match self {
            Replies::Delivery(outlet) => outlet.ending(),
            Replies::Direct(socket) => socket.ending(),
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // A bug in this connection's code: tell the client (1011) rather
        // than leave it to guess from a dropped connection.
        if std::thread::panicking() {
            let frame = encode_close(CloseCode::InternalError, "internal_error", None);
            self.replies.close(frame);
        }
    }
}

/// How a connection ended, for the log: the close code and reason.
type Outcome = (u16, String);

/// Step 4, the read loop, as the state it keeps between messages: a
/// client's reader, its frame reader, and how many ping intervals in a
/// row it has been silent. Its calls return to `handle` whenever the
/// client has gone idle, and `handle` waits for the next byte.
struct ReadLoop<'s> {
    reader: Reader,
    messages: MessageReader<&'s TcpStream>,
    silent_intervals: u32,
    /// Whether the read timeout was cut short to the sign-in's end, so
    /// that a timeout then is not a silent interval.
    shortened: bool,
}

impl<'s> ReadLoop<'s> {
    /// Starts reading frames: `buffered` is what the client sent right
    /// behind its handshake.
    #[inline(never)]
    fn start((reader, buffered): (Reader, Vec<u8>), stream: &'s TcpStream) -> ReadLoop<'s> {
        let max = match reader.service {
            Service::Echo => reader.ctx.config.echo_max_message_bytes,
            Service::Chat(_) => reader.ctx.config.max_message_bytes,
        };
        let _ = stream.set_read_timeout(Some(reader.ctx.config.ping_interval));
        let mut messages = MessageReader::with_buffered(stream, Role::Server, max, &buffered);
        if reader.deflate.is_some() {
            // RSV1 now marks a compressed message; `max` bounds its
            // inflated size, checked while inflating (RFC 7692 §8).
            messages.enable_deflate();
        }
        ReadLoop {
            reader,
            messages,
            silent_intervals: 0,
            shortened: false,
        }
    }

    /// Reads and acts on messages until the client must be waited for
    /// with nothing buffered (`Ok`: the caller waits, then calls
    /// [`ReadLoop::after_wait`]), or the connection ends (`Err`, with the
    /// close code and reason for the log).
    #[inline(never)]
    fn until_idle(&mut self) -> Result<(), Outcome> {
        loop {
            self.before_wait()?;
            if !self.messages.holds_buffer() {
                return Ok(());
            }
            if let Some(outcome) = self.after_wait(Ok(())) {
                return Err(outcome);
            }
        }
    }

    /// What comes before each read: backpressure, then the read timeout.
    fn before_wait(&mut self) -> Result<(), Outcome> {
        let reader = &self.reader;
        // Backpressure: while this client's private backlog is over
        // its cap, read nothing more from it.
        reader.replies.wait_for_room();
        if let Some(ending) = reader.replies.ending() {
            return Err(ended_by_delivery(ending));
        }
        // A signed-in client's read waits no longer than its sign-in
        // lasts: then it is closed, unless `/auth` moved the end on.
        let stream = self.messages.get_ref();
        let ping_interval = reader.ctx.config.ping_interval;
        self.shortened = match reader.sign_in_left() {
            Some(left) if left.is_zero() => return Err(reader.sign_in_expired()),
            Some(left) if left < ping_interval => {
                let _ = stream.set_read_timeout(Some(left));
                true
            }
            // Back to the ping interval, if it was cut short: it stays
            // set between reads, so no system call per message.
            Some(_) => {
                if self.shortened {
                    let _ = stream.set_read_timeout(Some(ping_interval));
                }
                false
            }
            None => false,
        };
        Ok(())
    }

    /// Reads the next message once input has come (`waited` is how the
    /// wait for it ended) and acts on it; `Some` when the connection ends.
    #[inline(never)]
    fn after_wait(&mut self, waited: Result<(), ReadError>) -> Option<Outcome> {
        match waited.and_then(|()| self.messages.read_message()) {
            Ok(message) => {
                self.silent_intervals = 0;
                // An idle client's only message, the answer to the
                // ping sent after a silent interval: give the buffer
                // back now rather than at the end of the next one.
                let quiet = matches!(message, Message::Pong(_));
                let outcome = self.reader.on_message(message);
                if outcome.is_none() && quiet {
                    self.messages.release_if_drained();
                }
                outcome
            }
            Err(ReadError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if self.shortened {
                    return None; // the sign-in's end, not a silent interval
                }
                self.silent_intervals += 1;
                self.reader.on_silence(self.silent_intervals)
            }
            Err(error) => Some(self.reader.on_read_error(error)),
        }
    }
}

impl Reader {
    /// How long the sign-in lasts from now, if the client signed in.
    fn sign_in_left(&self) -> Option<Duration> {
        let signed_in = self.signed_in.as_ref()?;
        let end_ms = u64::try_from(signed_in.expires_at)
            .unwrap_or(0)
            .saturating_mul(1000);
        Some(Duration::from_millis(end_ms.saturating_sub(now_ms())))
    }

    /// The sign-in ran out (its token's `exp`, plus the leeway) and no
    /// `/auth` moved it on: Close 1008 `token_expired`.
    fn sign_in_expired(&self) -> Outcome {
        log::info!(
            "({}) {}: sign-in expired, closing with 1008",
            self.id,
            self.remote
        );
        self.ctx.metrics.client_dropped(DropReason::SignInExpired);
        // transport::TOKEN_EXPIRED, the reason the page acts on.
        self.close(CloseCode::Policy, "token_expired")
    }

    /// `/auth TOKEN` on a chat connection: a fresh token for the same
    /// user moves the sign-in's end on (`{"type":"auth","exp":..}`); any
    /// other answer is an `error` event, and the sign-in keeps its end.
    /// The token is never logged, nor sent on to the chat.
    fn refresh(&mut self, token: &str) {
        let id = self.id;
        log::debug!("New message: ({id}) /auth (token withheld)");
        let now = now_ms() / 1000;
        let answer = match (&mut self.signed_in, &self.ctx.config.auth_keys) {
            (_, _) if token.is_empty() => Err(("usage", "usage: /auth TOKEN".to_string())),
            (Some(signed_in), Some(keys)) => match signed_in.refresh(token, keys, now) {
                Ok(claims) => {
                    let exp = claims.exp;
                    log::info!("({id}) sign-in refreshed, until {exp}");
                    // The chat (every node's, in cluster mode) takes the
                    // new end, role and rooms; never the token.
                    let identity = Box::new(Identity::from_claims(&claims));
                    let _ = self.ctx.events.send(Event::Refresh { id, identity });
                    Ok(format!("{{\"type\":\"auth\",\"exp\":{exp}}}"))
                }
                Err(error) => {
                    log::info!("({id}) refresh refused: {}", error.code());
                    let text = match error {
                        RefreshError::Mismatch => {
                            "that token signs in another user: this connection stays who it is"
                        }
                        RefreshError::Token(_) => {
                            "that token was refused: this connection's sign-in keeps its end"
                        }
                    };
                    Err((error.code(), text.to_string()))
                }
            },
            (None, Some(_)) => Err((
                "not_allowed",
                "a guest connection cannot sign in with /auth: connect again with the token"
                    .to_string(),
            )),
            (_, None) => Err(("not_allowed", "sign-in is off on this server".to_string())),
        };
        if self.service != Service::Chat(Mode::V1) {
            return; // a raw client has no events
        }
        let event = match answer {
            Ok(event) => event,
            Err((code, text)) => {
                let mut event = format!("{{\"type\":\"error\",\"code\":\"{code}\",\"text\":");
                crate::json::push_string(&mut event, &text);
                event.push('}');
                event
            }
        };
        self.send(encode_frame(OpCode::Text, event.as_bytes(), None));
    }

    /// Nothing for a whole ping interval: ask (§5.5.2); a live client
    /// answers within the next interval, so a second silent one ends it.
    fn on_silence(&self, silent_intervals: u32) -> Option<Outcome> {
        if silent_intervals >= 2 {
            self.ctx.metrics.client_dropped(DropReason::PingTimeout);
            return Some(self.close(CloseCode::Away, "ping_timeout"));
        }
        // Queued for the client's delivery thread like any reply; with
        // nothing else queued, it goes out on that thread's next turn.
        self.send(encode_frame(OpCode::Ping, b"", None));
        None
    }

    /// A read that failed for another reason than silence.
    fn on_read_error(&self, error: ReadError) -> Outcome {
        match error {
            ReadError::Protocol(e) => {
                let code = e.close_code();
                self.ctx.metrics.protocol_error(code.into());
                log::warn!(
                    "Error: ({}) protocol error: {e}, closing with {code}",
                    self.id
                );
                self.close(code, &e.to_string())
            }
            // Delivery ended this client and shut its reading half.
            _ if let Some(ending) = self.replies.ending() => ended_by_delivery(ending),
            ReadError::Eof => (1006, "connection closed without a close frame".into()),
            ReadError::Io(e) => (1006, format!("read error: {e}")),
        }
    }

    /// Acts on one message; `Some` when it ends the connection.
    fn on_message(&mut self, message: Message) -> Option<Outcome> {
        match message {
            Message::Text(text) => {
                #[cfg(feature = "test-hooks")]
                if self.ctx.config.panic_trigger.as_deref() == Some(text.as_str()) {
                    panic!("panic trigger received (a test of panic containment)");
                }
                if let Some(outcome) = self.count_and_rate_limit(text.len()) {
                    return Some(outcome);
                }
                match self.service {
                    Service::Echo => self.echo(OpCode::Text, text.as_bytes()),
                    Service::Chat(_) => {
                        let refresh = transport::refresh_argument(&text);
                        match refresh {
                            Some(token) if self.ctx.config.auth != AuthMode::Off => {
                                self.refresh(token);
                                return None;
                            }
                            // Sign-in is off: the chat answers as it always
                            // did, but a token is still kept out of the log.
                            Some(_) => {
                                log::debug!("New message: ({}) /auth (token withheld)", self.id)
                            }
                            None => log::debug!("New message: ({}) {}", self.id, Untrusted(&text)),
                        }
                        let _ = self.ctx.events.send(Event::Text { id: self.id, text });
                    }
                }
            }
            Message::Binary(data) => {
                if let Some(outcome) = self.count_and_rate_limit(data.len()) {
                    return Some(outcome);
                }
                match self.service {
                    Service::Echo => self.echo(OpCode::Binary, &data),
                    Service::Chat(_) => {
                        let _ = self.ctx.events.send(Event::Binary { id: self.id, data });
                    }
                }
            }
            // §5.5.2: a Pong with the same payload, as soon as practical.
            // Pongs waiting to be written are replaced by this one
            // (§5.5.3), so pings cost one pong however many come.
            Message::Ping(payload) => self
                .replies
                .pong(encode_frame(OpCode::Pong, &payload, None)),
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
                self.replies.close(encode_close(reply, "", None));
                let reason = format!("closed by client {reason}").trim_end().to_string();
                return Some((logged, reason));
            }
        }
        None
    }

    /// Counts an incoming data message, then applies the rate limit (chat
    /// only): `Some` when the client is over it and closed.
    fn count_and_rate_limit(&mut self, len: usize) -> Option<Outcome> {
        self.ctx.metrics.messages_in.fetch_add(1, Relaxed);
        self.ctx.metrics.bytes_in.fetch_add(len as u64, Relaxed);
        if matches!(self.service, Service::Chat(_)) && !self.tokens.allow() {
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
        self.replies.reply(frame);
    }

    /// Sends a message back, compressed if the client negotiated
    /// permessage-deflate, written from where it lies (no frame is built
    /// around it). The compressor's tables (about 320 KiB) are made for
    /// the message and freed after it: an idle connection keeps no
    /// compression state.
    fn echo(&self, opcode: OpCode, payload: &[u8]) {
        let Some(agreement) = self.deflate else {
            return self.replies.message(opcode, false, payload);
        };
        let mut compressed = Vec::new();
        Compressor::new().compress(payload, agreement.compress_window_bits(), &mut compressed);
        self.ctx.metrics.compressed(payload.len(), compressed.len());
        self.replies.message(opcode, true, &compressed);
    }

    /// Starts a server-side close (§7.1.2): queue the Close frame; nothing
    /// is sent after it.
    fn close(&self, code: CloseCode, reason: &str) -> Outcome {
        self.replies.close(encode_close(code, reason, None));
        (code.into(), reason.to_string())
    }
}

/// Waits for an idle client's next byte. An idle client holds no read
/// buffer (thousands may be idle): `peek` needs none. Nor does it keep
/// the stack pages that the handshake, or the last burst of messages,
/// went down into (see idle_stack.rs): called from `handle`, near the
/// top of the thread's stack, this frees all but the top pages.
fn wait_for_input(stream: &TcpStream, stack: &IdleStack) -> Result<(), ReadError> {
    let released = stack.release();
    debug_assert!(released, "madvise refused a stack range");
    loop {
        match stream.peek(&mut [0u8; 1]) {
            Ok(_) => return Ok(()), // a byte, or the end: read_message tells which
            // A signal is not input: wait on, still holding no buffer.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// What the log says when delivery ended the client: what went out on
/// the wire, if anything.
fn ended_by_delivery(ending: Ending) -> Outcome {
    match ending {
        Ending::Closed(code) => (code, "closed by the server".into()),
        Ending::SlowConsumer => (1008, "slow_consumer".into()),
        // Nothing could be sent: no Close, so 1006 (§7.1.5).
        Ending::WriteFailed => (1006, "write failed".into()),
        Ending::Stopped => (1006, "delivery stopped".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::process::{Command, Stdio};

    const CHILD: &str = "WSCHAT_TEST_INTERRUPTED_PEEK_CHILD";
    const NAME: &str = "connection::tests::an_interrupted_wait_for_input_waits_on";
    /// What the child prints (after the harness's "test NAME ... ") as it
    /// starts to wait.
    const WAITING: &str = "child waiting for input";

    /// Linux interrupts a socket read that has a timeout (SO_RCVTIMEO)
    /// with EINTR when the process is stopped and continued, even with no
    /// signal handler (signal(7)). The test runs itself again as a child
    /// process, which waits for input on an idle socket; this process
    /// stops and continues it a few times. The wait must end only with
    /// its timeout, not return early as if a byte had come.
    #[test]
    fn an_interrupted_wait_for_input_waits_on() {
        if std::env::var_os(CHILD).is_some() {
            return wait_idle_in_child();
        }
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let started = stdout
            .by_ref()
            .lines()
            .any(|line| line.unwrap().ends_with(WAITING));
        assert!(started, "the child ended before it waited");
        let pid = child.id().to_string();
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(100));
            for signal in ["-STOP", "-CONT"] {
                let status = Command::new("kill").args([signal, &pid]).status().unwrap();
                assert!(status.success(), "kill {signal} {pid}");
            }
        }
        // Read on to the end: a closed pipe would fail the child's output.
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "the child: {status}: {rest}");
    }

    fn wait_idle_in_child() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let result = std::thread::Builder::new()
            .stack_size(READER_STACK)
            .spawn(move || {
                let stack = IdleStack::here(READER_STACK);
                println!("{WAITING}");
                match wait_for_input(&server, &stack) {
                    Ok(()) => "returned as if input had come".to_string(),
                    Err(ReadError::Io(e)) => format!("{:?}", e.kind()),
                    Err(e) => e.to_string(),
                }
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(
            result == "WouldBlock" || result == "TimedOut",
            "the idle wait ended with: {result}"
        );
    }
}
