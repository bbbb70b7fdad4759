//! The listener: binds, starts the broadcaster, and runs the accept loop.
//! The accept loop does nothing but accept and start a thread: the
//! handshake, with its deadline, happens on the new thread, so a slow or
//! silent client can never hold up the next one.

use crate::address_limits::{AddressLimits, Hold};
use crate::broadcaster::{Broadcaster, Event};
use crate::cluster::{self, NodeId, replica::NODE_ID_BLOCK, stream::DEFAULT_STREAM_MAXLEN};
use crate::config::Config;
use crate::connection::{self, Context, MAX_PENDING_HANDSHAKES, READER_STACK};
use crate::delivery::{self, Delivery};
use crate::echo::EchoClients;
use crate::forwarded;
use crate::history_file::{self, HistoryLog, Snapshot};
use crate::http::StaticFiles;
use crate::idle_stack::IdleStack;
use crate::inspect::Inspectors;
use crate::metrics::{Metrics, Refusal};
use crate::protocol::handshake::Rejection;
use crate::room::{Chat, Epoch};
use crate::threads::ThreadBudget;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::Duration;

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    ctx: Arc<Context>,
    stopping: Arc<AtomicBool>,
    broadcaster: JoinHandle<()>,
}

impl Server {
    /// Binds the address, loads the history and starts the broadcaster.
    pub fn bind(config: Config) -> io::Result<Server> {
        let listener = TcpListener::bind(config.addr)?;
        let metrics = Arc::new(Metrics::default());
        let (chat, log) = load_chat(&config)?;
        let delivery = Delivery::start(delivery::Settings {
            threads: delivery_threads(),
            // A client that takes nothing for two ping intervals has
            // stopped reading (a live one answers pings within one).
            stall_limit: config.ping_interval.saturating_mul(2),
            max_behind_bytes: config.max_lag_bytes,
            metrics: metrics.clone(),
        })?;
        let mut first_id = 1;
        let (events, broadcaster, cluster_up) = match &config.redis {
            None => {
                #[allow(unused_mut)]
                let mut room = Broadcaster::new(chat, log, delivery.clone(), metrics.clone());
                #[cfg(feature = "test-hooks")]
                {
                    room.panic_trigger = config.broadcaster_panic_trigger.clone();
                }
                let (events, broadcaster) = room.spawn()?;
                (events, broadcaster, None)
            }
            Some(url) => {
                let port = listener.local_addr()?.port();
                let settings = cluster::node::NodeSettings {
                    url: url.clone(),
                    node: config
                        .node_name
                        .clone()
                        .unwrap_or_else(|| default_node_name(port)),
                    stream_maxlen: DEFAULT_STREAM_MAXLEN,
                    limits: config.room_limits(),
                };
                let startup =
                    cluster::node::start_up(&settings, &metrics).map_err(io::Error::other)?;
                // Client ids unique across the cluster (see NODE_ID_BLOCK).
                first_id = startup.number.saturating_mul(NODE_ID_BLOCK) + 1;
                let (events, broadcaster, up) = Broadcaster::spawn_cluster(
                    &settings,
                    startup,
                    delivery.clone(),
                    metrics.clone(),
                )?;
                log::info!(
                    "Cluster mode: node {} on redis {}",
                    settings.node,
                    url.address()
                );
                (events, broadcaster, Some(up))
            }
        };
        let files = StaticFiles::new(config.www.as_deref())?;
        let threads = thread_budget(&config);
        let address_limits =
            AddressLimits::new(config.max_clients_per_ip, config.max_pending_per_ip);
        let inspect = config
            .inspect
            .then(|| Arc::new(Inspectors::new(metrics.clone())));
        let ctx = Arc::new(Context {
            inspect,
            address_limits,
            config,
            metrics,
            events,
            files,
            next_id: AtomicU64::new(first_id),
            pending_handshakes: AtomicUsize::new(0),
            threads: threads.clone(),
            echoes: Arc::default(),
            cluster_up,
        });
        Ok(Server {
            listener,
            ctx,
            stopping: Arc::new(AtomicBool::new(false)),
            broadcaster,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.ctx.metrics.clone()
    }

    /// Runs the accept loop on this thread, for good.
    pub fn run(self) -> io::Result<()> {
        accept_loop(&self.listener, &self.ctx, &self.stopping);
        Ok(())
    }

    /// Runs the server on a background thread (for tests and embedding).
    pub fn spawn(self) -> io::Result<ServerHandle> {
        let addr = self.local_addr();
        let stopping = self.stopping.clone();
        let events = self.ctx.events.clone();
        let metrics = self.ctx.metrics.clone();
        let inspect = self.ctx.inspect.clone();
        let echoes = self.ctx.echoes.clone();
        let (listener, ctx, flag) = (self.listener, self.ctx, self.stopping);
        let broadcaster = self.broadcaster;
        let thread = std::thread::Builder::new()
            .name("wschat-listener".into())
            .spawn(move || accept_loop(&listener, &ctx, &flag))?;
        Ok(ServerHandle {
            addr,
            stopping,
            events,
            metrics,
            inspect,
            echoes,
            thread: Some(thread),
            broadcaster: Some(broadcaster),
        })
    }
}

/// `--node-name`'s default: the host name and the port, as far as they
/// fit a node name (`A-Z a-z 0-9 _ . -`).
fn default_node_name(port: u16) -> NodeId {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let host = if host.is_empty() {
        "wschat".into()
    } else {
        host
    };
    NodeId::new(&format!("{host}-{port}")).expect("sanitised to a valid node name")
}

/// The chat, with the rooms kept from an earlier run (`--history-file`)
/// or none, and the file to append to.
fn load_chat(config: &Config) -> io::Result<(Chat, Option<HistoryLog>)> {
    let limits = config.room_limits();
    let Some(path) = &config.history_file else {
        // Nothing kept from an earlier run: ids start again at 1, in a
        // history of their own.
        return Ok((Chat::new(limits, 1, Epoch::fresh(), Vec::new()), None));
    };
    let loaded = history_file::load(path, config.history)?;
    let epoch = history_file::epoch_of(path, &loaded);
    let messages: usize = loaded.rooms.iter().map(|r| r.history.len()).sum();
    let rooms = loaded.rooms.len();
    // Within today's limits (fewer rooms or bytes than the file holds:
    // the empty rooms unused longest go first); the file is rewritten
    // from what the chat kept.
    let sanctions = loaded.identity.sanctions.len();
    let mut chat = Chat::new(limits, loaded.next_seq, epoch.clone(), loaded.rooms);
    chat.restore_identity(loaded.identity);
    let snapshot = Snapshot {
        rooms: chat.kept(),
        next_seq: chat.next_seq(),
        identity: chat.kept_identity(crate::room::now_ms()),
    };
    let log = HistoryLog::start(path, epoch.clone(), config.history, snapshot)?;
    log::info!(
        "Loaded {messages} messages in {rooms} rooms from {} (epoch {epoch}, next id {}); {} rooms kept; {sanctions} bans and mutes in force",
        path.display(),
        chat.next_seq(),
        chat.room_count()
    );
    Ok((chat, Some(log)))
}

/// The threads this process may start, from the kernel's limits (or a
/// test's), and a log line if `--max-clients` asks for more.
fn thread_budget(config: &Config) -> Arc<ThreadBudget> {
    #[cfg(feature = "test-hooks")]
    let limit = config.thread_limit;
    #[cfg(not(feature = "test-hooks"))]
    let limit = None;
    let threads = Arc::new(match limit {
        Some(limit) => ThreadBudget::new(limit),
        None => ThreadBudget::from_kernel_limits(),
    });
    // A thread per client, and a few kept for plain HTTP.
    if config.max_clients > threads.websocket_limit() {
        log::info!(
            "--max-clients {} is more than this machine's thread limits allow: \
             {} threads (vm.max_map_count, kernel.pid_max), so {} clients; \
             more are answered 503",
            config.max_clients,
            threads.limit(),
            threads.websocket_limit()
        );
    }
    threads
}

/// Delivery threads: one per core (at most 16; a core is enough for
/// thousands of clients, and each thread is a log and a poll set).
fn delivery_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(16))
}

/// Accepts until `stopping` is set, starting a thread per connection.
fn accept_loop(listener: &TcpListener, ctx: &Arc<Context>, stopping: &AtomicBool) {
    // Logged at warn level when info is off, so that `--log-level warn`
    // still tells scripts which port `--addr HOST:0` picked.
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    if log::log_enabled!(log::Level::Info) {
        log::info!("Listening on http://{addr}/");
    } else {
        log::warn!("Listening on http://{addr}/");
    }
    for stream in listener.incoming() {
        if stopping.load(Relaxed) {
            break;
        }
        match stream {
            Ok(stream) => start_connection(ctx, stream),
            Err(e) => {
                // Out of file descriptors, usually: wait a moment rather
                // than spin, and keep serving.
                log::error!("Error: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// The answer to an address with `--max-pending-per-ip` heads pending.
pub const PENDING_PER_ADDRESS: &str = "too many pending handshakes from this address";

fn start_connection(ctx: &Arc<Context>, stream: TcpStream) {
    let Ok(peer) = stream.peer_addr() else { return };
    let metrics = ctx.metrics.clone();
    // Its own share of the pending places first, so that one address
    // cannot fill them all. Not for a trusted proxy: all of its clients
    // share its address (their own is in a header not read yet).
    let address_place = if forwarded::is_trusted(peer.ip(), &ctx.config.trusted_proxies) {
        None
    } else {
        match ctx.address_limits.take(Hold::Pending, peer.ip()) {
            Ok(place) => place,
            Err(max) => {
                log::warn!(
                    "Rejected {peer}: {max} handshakes from its address already pending \
                     (--max-pending-per-ip), answering 429"
                );
                metrics.rejection(429);
                metrics.refused(Refusal::PendingPerAddress);
                answer_now(&stream, Rejection::new(429, PENDING_PER_ADDRESS));
                return;
            }
        }
    };
    let Some(place) = ctx.threads.try_take() else {
        log::warn!(
            "Rejected {peer}: all {} thread places taken, answering 503",
            ctx.threads.limit()
        );
        metrics.rejection(503);
        metrics.refused(Refusal::ThreadLimit);
        answer_now(&stream, Rejection::new(503, "server at its thread limit"));
        return;
    };
    if ctx.pending_handshakes.fetch_add(1, Relaxed) >= MAX_PENDING_HANDSHAKES {
        ctx.pending_handshakes.fetch_sub(1, Relaxed);
        log::warn!(
            "Rejected {peer}: {MAX_PENDING_HANDSHAKES} handshakes already pending, answering 503"
        );
        metrics.rejection(503);
        metrics.refused(Refusal::PendingHandshakes);
        answer_now(&stream, Rejection::new(503, "too many pending handshakes"));
        return;
    }
    let thread_ctx = ctx.clone();
    // If the thread cannot be started, `spawn` hands the closure (and the
    // socket in it) back only as an error; keep a second handle to answer.
    let spare = stream.try_clone().ok();
    let spawned = std::thread::Builder::new()
        .name("wschat-conn".into())
        .stack_size(READER_STACK)
        .spawn(move || {
            let stack = IdleStack::here(READER_STACK);
            let _place = place; // given back when this thread ends
            let metrics = thread_ctx.metrics.clone();
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                connection::handle(stream, peer, address_place, thread_ctx, &stack)
            }));
            if outcome.is_err() {
                // The panic message was printed by the panic hook; the
                // socket was closed as the stack unwound.
                metrics.panics.fetch_add(1, Relaxed);
                log::error!("Error: connection thread for {peer} panicked; the server carries on");
            }
        });
    if let Err(e) = spawned {
        ctx.pending_handshakes.fetch_sub(1, Relaxed);
        log::error!("Error: cannot start a thread for {peer}: {e}; answering 503");
        metrics.rejection(503);
        metrics.refused(Refusal::ThreadLimit);
        if let Some(spare) = spare {
            answer_now(&spare, Rejection::new(503, "server out of threads"));
        }
    }
}

/// Answers from the accept loop, which must never block on a client: one
/// non-blocking write of the response, then the socket is closed.
fn answer_now(mut stream: &TcpStream, rejection: Rejection) {
    let _ = stream.set_nonblocking(true);
    let _ = stream.write(&rejection.response());
}

/// A server running in the background. Dropping it shuts the server down.
pub struct ServerHandle {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    events: crossbeam_channel::Sender<Event>,
    metrics: Arc<Metrics>,
    inspect: Option<Arc<Inspectors>>,
    echoes: Arc<EchoClients>,
    thread: Option<JoinHandle<()>>,
    broadcaster: Option<JoinHandle<()>>,
}

impl ServerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Stops accepting, sends every client (chat, echo, inspector) a Close with
    /// 1001 (going away) and waits, up to `SHUTDOWN_DRAIN`, for those to be
    /// written; flushes the history file; waits for the accept loop and the
    /// broadcaster to end. Connections finish their close on their own
    /// threads: `metrics().connections_current` falls to 0 as they do.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stopping.store(true, Relaxed);
            let _ = self.events.send(Event::Shutdown);
            if let Some(inspectors) = &self.inspect {
                inspectors.close_all();
            }
            self.echoes.close_all();
            // Wake the accept loop so it sees the flag.
            let _ = TcpStream::connect(self.addr);
            let _ = thread.join();
        }
        if let Some(broadcaster) = self.broadcaster.take() {
            let _ = broadcaster.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
