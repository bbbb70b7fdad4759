//! Command-line flags, their defaults, and `--help`. Parsed by hand: the
//! design allows no argument-parsing crate, and there are only a few flags.

use crate::cluster::{NodeId, RedisUrl};
use crate::forwarded::AddrBlock;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Everything the server can be told at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    /// Serve the page from this directory instead of the embedded copy.
    pub www: Option<PathBuf>,
    pub log_level: log::LevelFilter,
    /// Origins allowed besides the server's own; `*` allows any.
    pub allow_origins: Vec<String>,
    /// Host names accepted besides the loopback names (see `access.rs`):
    /// `name`, `.domain` (the domain and its subdomains) or `*` (any).
    pub allow_hosts: Vec<String>,
    /// The largest chat message accepted (1009 above it).
    pub max_message_bytes: usize,
    /// The largest message `/echo` accepts (1009 above it).
    pub echo_max_message_bytes: usize,
    /// How many chat messages new `wschat.v1` clients are sent on joining.
    pub history: usize,
    /// Append every chat message to this file and reload history from it.
    pub history_file: Option<PathBuf>,
    /// WebSocket connections held at once; more are answered 503.
    pub max_clients: usize,
    /// WebSocket connections from one client address; more are answered 429.
    pub max_clients_per_ip: PerAddressLimit,
    /// Connections from one address still sending their request head;
    /// more are answered 429 by the accept loop. Trusted proxies are exempt.
    pub max_pending_per_ip: PerAddressLimit,
    /// Reverse proxies whose `X-Forwarded-For` names the client (see
    /// `forwarded.rs`); from anyone else the header is ignored.
    pub trusted_proxies: Vec<AddrBlock>,
    pub ping_interval: Duration,
    pub handshake_timeout: Duration,
    /// Chat messages per second per client (burst twice that); 0 is off.
    pub rate_limit: u32,
    /// Bytes a client may be behind before it is dropped as too slow.
    pub max_lag_bytes: usize,
    /// Cluster mode: share the chat with other nodes through this Redis.
    pub redis: Option<RedisUrl>,
    /// This node's name in the cluster (default: host name and port).
    pub node_name: Option<NodeId>,
    /// Accept permessage-deflate (RFC 7692) when a client offers it.
    pub deflate: bool,
    /// Rooms one client may be in at once.
    pub max_rooms_per_client: usize,
    /// Rooms that may exist, `#main` included.
    pub max_rooms: usize,
    /// Members one room may have; `None`: `max_clients`.
    pub max_room_members: Option<usize>,
    /// Bytes of history kept for all rooms together.
    pub room_history_bytes: usize,
    /// Serve the frame inspector (`/inspect` and its endpoints).
    pub inspect: bool,
    /// Sign-in by signed token (`--auth`).
    pub auth: AuthMode,
    /// The HS256 keys tokens are verified with, read from
    /// `--auth-secret-file` at start-up; `None` with `--auth off`.
    pub auth_keys: Option<crate::auth::KeySet>,
    /// `--auth-secret-file`, as given.
    pub auth_secret_file: Option<PathBuf>,
    /// Tests only (feature `test-hooks`): a text message that makes the
    /// receiving connection thread panic, to prove that a panic stays
    /// within its connection.
    #[cfg(feature = "test-hooks")]
    pub panic_trigger: Option<String>,
    /// Tests only (feature `test-hooks`): a thread budget smaller than the
    /// kernel's limits allow.
    #[cfg(feature = "test-hooks")]
    pub thread_limit: Option<usize>,
    /// Tests only (feature `test-hooks`): a chat text that makes the
    /// broadcaster thread panic, to prove that the server says so.
    #[cfg(feature = "test-hooks")]
    pub broadcaster_panic_trigger: Option<String>,
}

pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
pub const DEFAULT_HISTORY: usize = 100;
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;
/// A household or an office behind one NAT address, each with a few tabs.
pub const DEFAULT_MAX_CLIENTS_PER_IP: usize = 64;
/// A request head takes one round trip: even 16 at once from one address
/// is a burst of reconnections. 64 addresses are needed to fill the
/// server-wide `MAX_PENDING_HANDSHAKES`.
pub const DEFAULT_MAX_PENDING_PER_IP: usize = 16;
pub const DEFAULT_PING_INTERVAL_SECS: u64 = 30;
pub const DEFAULT_HANDSHAKE_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_RATE_LIMIT: u32 = 50;
/// Several seconds of the busiest fan-out benchmark: a client that stalls
/// for a moment keeps every message.
pub const DEFAULT_MAX_LAG_BYTES: usize = 64 * 1024 * 1024;
pub const DEFAULT_MAX_ROOMS_PER_CLIENT: usize = 32;
pub const DEFAULT_MAX_ROOMS: usize = 10_000;
/// Room histories together: 64 MiB, about 300,000 ordinary messages.
pub const DEFAULT_ROOM_HISTORY_BYTES: usize = 64 * 1024 * 1024;
/// `--room-history-bytes` with `--redis`: the snapshot a starting node
/// reads holds every room's history, and must fit one Redis reply
/// (`MAX_REPLY_BYTES`, 130 MiB) with its room and client lines.
pub const MAX_CLUSTER_ROOM_HISTORY_BYTES: usize = 96 * 1024 * 1024;
/// Conformance suites send `/echo` messages of up to 16 MiB.
pub const DEFAULT_ECHO_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// The accepted range of each numeric flag, checked at start-up. The
/// upper bounds are far above what a deployment needs, and low enough
/// that nothing computed from a value (a deadline, a buffer size, a
/// token count) can overflow.
pub mod range {
    use std::ops::RangeInclusive;
    /// 64 MiB: a single message is held in memory whole.
    pub const MAX_MESSAGE_BYTES: RangeInclusive<u64> = 1..=64 * 1024 * 1024;
    pub const ECHO_MAX_MESSAGE_BYTES: RangeInclusive<u64> = 1..=64 * 1024 * 1024;
    /// Each kept message is held in memory and sent to every newcomer.
    pub const HISTORY: RangeInclusive<u64> = 0..=100_000;
    pub const MAX_CLIENTS: RangeInclusive<u64> = 1..=1_000_000;
    pub const MAX_CLIENTS_PER_IP: RangeInclusive<u64> = 1..=1_000_000;
    /// Up to the server-wide cap, `MAX_PENDING_HANDSHAKES`.
    pub const MAX_PENDING_PER_IP: RangeInclusive<u64> = 1..=1024;
    /// One hour: a ping interval longer than that no longer keeps
    /// proxies and NAT tables from dropping an idle connection.
    pub const PING_INTERVAL_SECS: RangeInclusive<u64> = 1..=3600;
    pub const HANDSHAKE_TIMEOUT_SECS: RangeInclusive<u64> = 1..=300;
    pub const RATE_LIMIT: RangeInclusive<u64> = 0..=100_000;
    /// From one large message to what a machine can hold for a client.
    pub const MAX_LAG_BYTES: RangeInclusive<u64> = 64 * 1024..=4 * 1024 * 1024 * 1024;
    /// Each room a client is in is a `joined` event in its welcome.
    pub const MAX_ROOMS_PER_CLIENT: RangeInclusive<u64> = 1..=1024;
    /// `#main` counts, so 1 is the one-room chat.
    pub const MAX_ROOMS: RangeInclusive<u64> = 1..=1_000_000;
    pub const MAX_ROOM_MEMBERS: RangeInclusive<u64> = 1..=1_000_000;
    /// 0 keeps no history at all; 16 GiB is more than a chat needs.
    pub const ROOM_HISTORY_BYTES: RangeInclusive<u64> = 0..=16 * 1024 * 1024 * 1024;
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: DEFAULT_ADDR.parse().expect("valid default address"),
            www: None,
            log_level: log::LevelFilter::Info,
            allow_origins: Vec::new(),
            allow_hosts: Vec::new(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            echo_max_message_bytes: DEFAULT_ECHO_MAX_MESSAGE_BYTES,
            history: DEFAULT_HISTORY,
            history_file: None,
            max_clients: DEFAULT_MAX_CLIENTS,
            max_clients_per_ip: PerAddressLimit::by_default(DEFAULT_MAX_CLIENTS_PER_IP),
            max_pending_per_ip: PerAddressLimit::by_default(DEFAULT_MAX_PENDING_PER_IP),
            trusted_proxies: Vec::new(),
            ping_interval: Duration::from_secs(DEFAULT_PING_INTERVAL_SECS),
            handshake_timeout: Duration::from_secs(DEFAULT_HANDSHAKE_TIMEOUT_SECS),
            rate_limit: DEFAULT_RATE_LIMIT,
            max_lag_bytes: DEFAULT_MAX_LAG_BYTES,
            redis: None,
            node_name: None,
            deflate: true,
            max_rooms_per_client: DEFAULT_MAX_ROOMS_PER_CLIENT,
            max_rooms: DEFAULT_MAX_ROOMS,
            max_room_members: None,
            room_history_bytes: DEFAULT_ROOM_HISTORY_BYTES,
            inspect: true,
            auth: AuthMode::Off,
            auth_keys: None,
            auth_secret_file: None,
            #[cfg(feature = "test-hooks")]
            panic_trigger: None,
            #[cfg(feature = "test-hooks")]
            thread_limit: None,
            #[cfg(feature = "test-hooks")]
            broadcaster_panic_trigger: None,
        }
    }
}

/// Whether clients sign in with a signed token (`--auth`).
pub use crate::auth::transport::AuthMode;

/// The largest `--auth-secret-file` read: two keys of a few hundred bytes
/// fit many times; anything larger is not a key file.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// A limit per client address. A default limit leaves loopback addresses
/// alone (local tools, tests and benchmarks open thousands of connections
/// from 127.0.0.1, and behind a proxy with no `--trusted-proxy` every
/// client comes from there); a limit given on the command line applies to
/// every address, loopback included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerAddressLimit {
    pub max: usize,
    /// Loopback addresses are counted too: the limit was asked for.
    pub loopback_too: bool,
}

impl PerAddressLimit {
    /// A default: not applied to loopback addresses.
    pub const fn by_default(max: usize) -> Self {
        PerAddressLimit {
            max,
            loopback_too: false,
        }
    }

    /// Given explicitly: applied to every address.
    pub const fn everywhere(max: usize) -> Self {
        PerAddressLimit {
            max,
            loopback_too: true,
        }
    }

    /// Does this limit count connections from `ip`?
    pub fn applies_to(&self, ip: IpAddr) -> bool {
        self.loopback_too || !ip.to_canonical().is_loopback()
    }
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

pub fn help_text() -> String {
    use range::*;
    let r = |r: std::ops::RangeInclusive<u64>| format!("[range: {}-{}]", r.start(), r.end());
    format!(
        "wschat {version}: a WebSocket chat server (RFC 6455 by hand, plain threads)

Usage: wschat [OPTIONS]

Options:
  --addr HOST:PORT            address to listen on [default: {DEFAULT_ADDR}]
  --www DIR                   serve the page from DIR instead of the embedded copy
  --log-level LEVEL           off, error, warn, info, debug or trace [default: info]
  --allow-origin ORIGIN       also accept pages from ORIGIN (repeatable; * = any)
  --allow-host NAME           also accept requests for host NAME (repeatable; .example.com =
                              that domain and its subdomains; * = any) [default: loopback
                              names when bound to loopback, any host otherwise]
  --max-message-bytes N       largest chat message, in bytes {max_message_bytes} [default: {DEFAULT_MAX_MESSAGE_BYTES}]
  --echo-max-message-bytes N  largest /echo message, in bytes {echo_max} [default: {DEFAULT_ECHO_MAX_MESSAGE_BYTES}]
  --history N                 chat messages kept per room for newcomers {history} [default: {DEFAULT_HISTORY}]
  --history-file PATH         append messages to PATH and reload them on start
  --max-clients N             chat and /echo WebSocket connections at once {max_clients} [default: {DEFAULT_MAX_CLIENTS}]
  --max-clients-per-ip N      WebSocket connections from one client address {per_ip}
                              [default: {DEFAULT_MAX_CLIENTS_PER_IP}; loopback addresses exempt unless given]
  --max-pending-per-ip N      connections from one address still sending their head {pending}
                              [default: {DEFAULT_MAX_PENDING_PER_IP}; loopback addresses exempt unless given]
  --trusted-proxy ADDR[/LEN]  a reverse proxy (or a block, 10.0.0.0/8) whose X-Forwarded-For
                              names the client; ignored from anyone else (repeatable)
  --ping-interval SECS        ping a client silent this long; drop it after two {ping} [default: {DEFAULT_PING_INTERVAL_SECS}]
  --handshake-timeout SECS    time allowed for the HTTP request head {handshake} [default: {DEFAULT_HANDSHAKE_TIMEOUT_SECS}]
  --rate-limit MSGS_PER_SEC   chat messages per client per second, burst 2x (0 = off) {rate} [default: {DEFAULT_RATE_LIMIT}]
  --max-lag-bytes N           drop a client this many bytes behind {lag} [default: {DEFAULT_MAX_LAG_BYTES}]
  --max-rooms-per-client N    rooms one client may be in at once {per_client} [default: {DEFAULT_MAX_ROOMS_PER_CLIENT}]
  --max-rooms N               rooms that may exist, #main included {rooms} [default: {DEFAULT_MAX_ROOMS}]
  --max-room-members N        members one room may have {members} [default: --max-clients]
  --room-history-bytes BYTES  history kept for all rooms together; past it the empty room unused
                              longest is evicted first {room_bytes}, with --redis at most
                              {MAX_CLUSTER_ROOM_HISTORY_BYTES} [default: {DEFAULT_ROOM_HISTORY_BYTES}]
  --redis URL                 cluster mode: share the chat with other wschat processes through
                              the Redis at redis://[:PASSWORD@]HOST:PORT[/DB]
  --node-name NAME            this process's name in the cluster (A-Z a-z 0-9 _ . -, up to 64)
                              [default: host name and port]
  --deflate on|off            accept permessage-deflate compression when offered [default: on]
  --inspect on|off            serve the frame inspector at /inspect [default: on]
  --auth off|optional|required  sign-in by HS256 token (JWT): off = guests only; optional =
                              guests and signed-in users; required = no token, no entry (401)
                              [default: off]
  --auth-secret-file PATH     the HS256 keys tokens are signed with, one per line (two while a
                              key is rotated), each at least 32 bytes; needed unless --auth off
  -h, --help                  print this help
  -V, --version               print the version

Endpoints: / (chat page, and the chat socket), /echo (echo socket),
/healthz, /metrics (Prometheus text format), /inspect (frame inspector).

SIGTERM or SIGINT (Ctrl-C) stops the server: every client gets a Close
with 1001, the history file is flushed, and the exit status is 0.
",
        version = env!("CARGO_PKG_VERSION"),
        max_message_bytes = r(MAX_MESSAGE_BYTES),
        echo_max = r(ECHO_MAX_MESSAGE_BYTES),
        history = r(HISTORY),
        max_clients = r(MAX_CLIENTS),
        per_ip = r(MAX_CLIENTS_PER_IP),
        pending = r(MAX_PENDING_PER_IP),
        ping = r(PING_INTERVAL_SECS),
        handshake = r(HANDSHAKE_TIMEOUT_SECS),
        rate = r(RATE_LIMIT),
        lag = r(MAX_LAG_BYTES),
        per_client = r(MAX_ROOMS_PER_CLIENT),
        rooms = r(MAX_ROOMS),
        members = r(MAX_ROOM_MEMBERS),
        room_bytes = r(ROOM_HISTORY_BYTES),
    )
}

impl Command {
    /// Parses the arguments after the program name. Errors are one line.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
        let mut config = Config::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            // Accept both `--flag value` and `--flag=value`.
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let mut value = || -> Result<String, String> {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{flag} needs a value (see --help)"))
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(Command::Help),
                "-V" | "--version" => return Ok(Command::Version),
                _ => {}
            }
            if !config.set_limit(&flag, &mut value)? && !config.set_option(&flag, &mut value)? {
                return Err(format!("unknown option '{flag}' (see --help)"));
            }
        }
        config.check_together()?;
        config.load_auth_keys()?;
        Ok(Command::Run(Box::new(config)))
    }
}

/// Where a flag's value comes from: the `=value` part, or the next
/// argument.
type FlagValue<'a> = &'a mut dyn FnMut() -> Result<String, String>;

impl Config {
    /// Sets a numeric limit if `flag` is one; false if it is not.
    fn set_limit(&mut self, flag: &str, value: FlagValue) -> Result<bool, String> {
        match flag {
            "--max-message-bytes" => {
                self.max_message_bytes = number(&value()?, flag, range::MAX_MESSAGE_BYTES)?
            }
            "--echo-max-message-bytes" => {
                self.echo_max_message_bytes =
                    number(&value()?, flag, range::ECHO_MAX_MESSAGE_BYTES)?
            }
            "--history" => self.history = number(&value()?, flag, range::HISTORY)?,
            "--max-clients" => self.max_clients = number(&value()?, flag, range::MAX_CLIENTS)?,
            "--max-clients-per-ip" => {
                self.max_clients_per_ip =
                    PerAddressLimit::everywhere(number(&value()?, flag, range::MAX_CLIENTS_PER_IP)?)
            }
            "--max-pending-per-ip" => {
                self.max_pending_per_ip =
                    PerAddressLimit::everywhere(number(&value()?, flag, range::MAX_PENDING_PER_IP)?)
            }
            "--ping-interval" => {
                self.ping_interval =
                    Duration::from_secs(number(&value()?, flag, range::PING_INTERVAL_SECS)?)
            }
            "--handshake-timeout" => {
                self.handshake_timeout =
                    Duration::from_secs(number(&value()?, flag, range::HANDSHAKE_TIMEOUT_SECS)?)
            }
            "--rate-limit" => self.rate_limit = number(&value()?, flag, range::RATE_LIMIT)?,
            "--max-lag-bytes" => {
                self.max_lag_bytes = number(&value()?, flag, range::MAX_LAG_BYTES)?
            }
            _ => return self.set_room_limit(flag, value),
        }
        Ok(true)
    }

    /// Sets a limit of rooms if `flag` is one; false if it is not.
    fn set_room_limit(&mut self, flag: &str, value: FlagValue) -> Result<bool, String> {
        match flag {
            "--max-rooms-per-client" => {
                self.max_rooms_per_client = number(&value()?, flag, range::MAX_ROOMS_PER_CLIENT)?
            }
            "--max-rooms" => self.max_rooms = number(&value()?, flag, range::MAX_ROOMS)?,
            "--max-room-members" => {
                self.max_room_members = Some(number(&value()?, flag, range::MAX_ROOM_MEMBERS)?)
            }
            "--room-history-bytes" => {
                self.room_history_bytes = number(&value()?, flag, range::ROOM_HISTORY_BYTES)?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The limits of the chat with rooms.
    pub fn room_limits(&self) -> crate::room::Limits {
        crate::room::Limits {
            history: self.history,
            max_rooms_per_client: self.max_rooms_per_client,
            max_rooms: self.max_rooms,
            max_room_members: self.max_room_members.unwrap_or(self.max_clients),
            room_history_bytes: self.room_history_bytes,
        }
    }

    /// Sets any other option if `flag` is one; false if it is not.
    fn set_option(&mut self, flag: &str, value: FlagValue) -> Result<bool, String> {
        match flag {
            "--addr" => {
                let v = value()?;
                self.addr = v
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| format!("--addr: '{v}' is not HOST:PORT"))?;
            }
            "--www" => self.www = Some(PathBuf::from(value()?)),
            "--log-level" => {
                let v = value()?;
                self.log_level = v.parse().map_err(|_| {
                    format!("--log-level: '{v}' is not one of off, error, warn, info, debug, trace")
                })?;
            }
            "--allow-origin" => self.allow_origins.push(value()?),
            "--allow-host" => {
                let v = value()?;
                if !crate::access::is_host_pattern(&v) {
                    return Err(format!(
                        "--allow-host: '{v}' is not a host name, .domain or *"
                    ));
                }
                self.allow_hosts.push(v)
            }
            "--history-file" => self.history_file = Some(PathBuf::from(value()?)),
            "--trusted-proxy" => {
                let v = value()?;
                let block = AddrBlock::parse(&v).map_err(|e| format!("--trusted-proxy: {e}"))?;
                self.trusted_proxies.push(block);
            }
            "--redis" => {
                let v = value()?;
                self.redis = Some(RedisUrl::parse(&v).map_err(|e| format!("--redis: {e}"))?);
            }
            "--node-name" => {
                let v = value()?;
                self.node_name = Some(NodeId::new(&v).map_err(|e| format!("--node-name: {e}"))?);
            }
            "--deflate" => {
                self.deflate = match value()?.as_str() {
                    "on" => true,
                    "off" => false,
                    v => return Err(format!("--deflate: '{v}' is not on or off")),
                }
            }
            "--inspect" => {
                self.inspect = match value()?.as_str() {
                    "on" => true,
                    "off" => false,
                    v => return Err(format!("--inspect: '{v}' is not on or off")),
                }
            }
            "--auth" => {
                self.auth = match value()?.as_str() {
                    "off" => AuthMode::Off,
                    "optional" => AuthMode::Optional,
                    "required" => AuthMode::Required,
                    v => return Err(format!("--auth: '{v}' is not off, optional or required")),
                }
            }
            "--auth-secret-file" => self.auth_secret_file = Some(PathBuf::from(value()?)),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Reads `--auth-secret-file` when `--auth` is not `off`. The error is
    /// one line and never quotes the file's contents.
    fn load_auth_keys(&mut self) -> Result<(), String> {
        let path = match (self.auth, &self.auth_secret_file) {
            (AuthMode::Off, _) => return Ok(()),
            (_, None) => return Err("--auth optional|required needs --auth-secret-file".into()),
            (_, Some(path)) => path,
        };
        let shown = path.display();
        let size = std::fs::metadata(path)
            .map_err(|e| format!("--auth-secret-file: cannot read {shown}: {e}"))?
            .len();
        if size > MAX_SECRET_FILE_BYTES {
            return Err(format!(
                "--auth-secret-file: {shown} is over {MAX_SECRET_FILE_BYTES} bytes: not a key file"
            ));
        }
        let contents = std::fs::read(path)
            .map_err(|e| format!("--auth-secret-file: cannot read {shown}: {e}"))?;
        let keys = crate::auth::KeySet::from_secret_file(&contents)
            .map_err(|e| format!("--auth-secret-file: {shown}: {e}"))?;
        self.auth_keys = Some(keys);
        Ok(())
    }

    /// Flags that each parse but do not go together.
    fn check_together(&self) -> Result<(), String> {
        if self.redis.is_some() && self.history_file.is_some() {
            return Err("--history-file and --redis cannot be used together: in cluster mode the history lives in Redis".into());
        }
        if self.auth == AuthMode::Off && self.auth_secret_file.is_some() {
            return Err("--auth-secret-file needs --auth optional or --auth required".into());
        }
        if self.redis.is_some() && self.room_history_bytes > MAX_CLUSTER_ROOM_HISTORY_BYTES {
            return Err(format!(
                "--room-history-bytes with --redis is at most {MAX_CLUSTER_ROOM_HISTORY_BYTES} (96 MiB): a starting node reads every room's history in one Redis reply"
            ));
        }
        if self.redis.is_none() && self.node_name.is_some() {
            return Err("--node-name needs --redis".into());
        }
        Ok(())
    }
}

/// Parses a whole number within `range` (every range fits in `T`).
fn number<T: TryFrom<u64>>(
    v: &str,
    flag: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<T, String> {
    v.parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| {
            format!(
                "{flag}: '{v}' is not a whole number from {} to {}",
                range.start(),
                range.end()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        Command::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_and_flags() {
        let Command::Run(c) = parse(&[]).unwrap() else {
            panic!()
        };
        assert_eq!(c.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(
            (c.max_message_bytes, c.history, c.max_clients, c.rate_limit),
            (65536, 100, 10000, 50)
        );
        assert!(c.deflate);
        assert_eq!(c.max_clients_per_ip, PerAddressLimit::by_default(64));
        assert_eq!(c.max_pending_per_ip, PerAddressLimit::by_default(16));
        assert!(c.trusted_proxies.is_empty());
        let Command::Run(c) = parse(&[
            "--addr",
            "127.0.0.1:0",
            "--history=5",
            "--allow-origin",
            "*",
            "--allow-origin",
            "null",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!((c.addr.port(), c.history), (0, 5));
        assert_eq!(c.allow_origins, ["*", "null"]);
        assert!(c.redis.is_none());
        let Command::Run(c) =
            parse(&["--redis", "redis://:pw@10.0.0.5:6380/2", "--node-name=n-1"]).unwrap()
        else {
            panic!()
        };
        let url = c.redis.unwrap();
        assert_eq!((url.host.as_str(), url.port, url.db), ("10.0.0.5", 6380, 2));
        assert_eq!(c.node_name.unwrap().as_str(), "n-1");
        // The largest room history a cluster snapshot can carry.
        let cluster = ["--redis", "redis://h", "--room-history-bytes", "100663296"];
        let Command::Run(c) = parse(&cluster).unwrap() else {
            panic!()
        };
        assert_eq!(c.room_history_bytes, MAX_CLUSTER_ROOM_HISTORY_BYTES);
        let Command::Run(c) = parse(&["--deflate", "off"]).unwrap() else {
            panic!()
        };
        assert!(!c.deflate);
        let Command::Run(c) = parse(&["--deflate=on"]).unwrap() else {
            panic!()
        };
        assert!(c.deflate);
        assert!(c.inspect, "the inspector is on by default");
        let Command::Run(c) = parse(&["--inspect", "off"]).unwrap() else {
            panic!()
        };
        assert!(!c.inspect);
    }

    #[test]
    fn ranges_are_inclusive_and_hosts_repeat() {
        let Command::Run(c) = parse(&[
            "--ping-interval",
            "3600",
            "--handshake-timeout=300",
            "--history",
            "0",
            "--echo-max-message-bytes",
            "67108864",
            "--allow-host",
            "chat.example.com",
            "--allow-host",
            ".example.org",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(c.ping_interval, Duration::from_secs(3600));
        assert_eq!(c.handshake_timeout, Duration::from_secs(300));
        assert_eq!((c.history, c.echo_max_message_bytes), (0, 64 << 20));
        assert_eq!(c.allow_hosts, ["chat.example.com", ".example.org"]);
        let Command::Run(c) = parse(&[
            "--max-clients-per-ip",
            "1",
            "--max-pending-per-ip=1024",
            "--trusted-proxy",
            "127.0.0.1",
            "--trusted-proxy=10.0.0.0/8",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(c.max_clients_per_ip, PerAddressLimit::everywhere(1));
        assert_eq!(c.max_pending_per_ip, PerAddressLimit::everywhere(1024));
        let proxies: Vec<String> = c.trusted_proxies.iter().map(|b| b.to_string()).collect();
        assert_eq!(proxies, ["127.0.0.1/32", "10.0.0.0/8"]);
        let e = parse(&["--ping-interval", "3601"]).unwrap_err();
        assert_eq!(
            e,
            "--ping-interval: '3601' is not a whole number from 1 to 3600"
        );
    }

    #[test]
    fn room_limits_have_defaults_and_inclusive_ranges() {
        let Command::Run(c) = parse(&["--max-clients", "500"]).unwrap() else {
            panic!()
        };
        let limits = c.room_limits();
        assert_eq!(
            (
                limits.max_rooms_per_client,
                limits.max_rooms,
                limits.max_room_members,
                limits.room_history_bytes
            ),
            (32, 10_000, 500, 64 << 20)
        );
        for bounds in [
            ["1", "1", "1", "0"],
            ["1024", "1000000", "1000000", "17179869184"],
        ] {
            let Command::Run(c) = parse(&[
                "--max-rooms-per-client",
                bounds[0],
                "--max-rooms",
                bounds[1],
                "--max-room-members",
                bounds[2],
                "--room-history-bytes",
                bounds[3],
            ])
            .unwrap() else {
                panic!()
            };
            let limits = c.room_limits();
            let got = [
                limits.max_rooms_per_client,
                limits.max_rooms,
                limits.max_room_members,
                limits.room_history_bytes,
            ];
            assert_eq!(got.map(|n| n.to_string()), bounds.map(String::from));
        }
        for (flag, outside) in [
            ("--max-rooms-per-client", "0"),
            ("--max-rooms-per-client", "1025"),
            ("--max-rooms", "0"),
            ("--max-rooms", "1000001"),
            ("--max-room-members", "0"),
            ("--max-room-members", "1000001"),
            ("--room-history-bytes", "17179869185"),
            ("--room-history-bytes", "-1"),
        ] {
            let e = parse(&[flag, outside]).unwrap_err();
            assert!(
                e.starts_with(&format!("{flag}: '{outside}' is not a whole number")),
                "{e}"
            );
        }
        let help = help_text();
        for flag in [
            "--max-rooms-per-client N",
            "--max-rooms N",
            "--max-room-members N",
            "--room-history-bytes BYTES",
        ] {
            assert!(help.contains(flag), "{flag}");
        }
    }

    /// A secret file in the temporary directory, removed when dropped.
    struct SecretFile(PathBuf);

    impl SecretFile {
        fn new(name: &str, contents: &[u8]) -> SecretFile {
            let path = std::env::temp_dir().join(format!("wschat-{}-{name}", std::process::id()));
            std::fs::write(&path, contents).unwrap();
            SecretFile(path)
        }
        fn arg(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for SecretFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn auth_is_off_by_default_and_reads_its_keys_at_start_up() {
        let Command::Run(c) = parse(&[]).unwrap() else {
            panic!()
        };
        assert_eq!((c.auth, c.auth_keys.is_none()), (AuthMode::Off, true));
        // The bounds: a key of exactly MIN_KEY_LEN bytes, and two keys.
        let one = SecretFile::new("one", &[b'k'; 32]);
        let two = SecretFile::new(
            "two",
            b"first-key-of-at-least-32-bytes!!\nsecond-key-of-at-least-32-bytes!\n",
        );
        for (mode, file, keys) in [("optional", &one, 1), ("required", &two, 2)] {
            let Command::Run(c) =
                parse(&["--auth", mode, "--auth-secret-file", file.arg()]).unwrap()
            else {
                panic!()
            };
            assert_eq!(c.auth_keys.map(|k| k.count()), Some(keys), "{mode}");
        }
        let short = SecretFile::new("short", &[b'k'; 31]);
        let three = SecretFile::new("three", &[[b'k'; 32].as_slice(), b"\n"].concat().repeat(3));
        let big = SecretFile::new("big", &vec![b'k'; MAX_SECRET_FILE_BYTES as usize + 1]);
        for (file, expected) in [
            (&short, "shorter than 32 bytes"),
            (&three, "more than 2 HS256 keys"),
            (&big, "not a key file"),
        ] {
            let e = parse(&["--auth", "required", "--auth-secret-file", file.arg()]).unwrap_err();
            assert!(e.contains(expected) && !e.contains('\n'), "{e}");
            assert!(!e.contains("kkkk"), "a key's bytes in an error: {e}");
        }
        let help = help_text();
        assert!(
            help.contains("--auth off|optional|required")
                && help.contains("--auth-secret-file PATH")
        );
    }

    #[test]
    fn a_default_limit_leaves_loopback_alone() {
        let loopback: [IpAddr; 3] = [
            "127.0.0.1".parse().unwrap(),
            "::1".parse().unwrap(),
            "::ffff:127.0.0.2".parse().unwrap(),
        ];
        let other: IpAddr = "192.0.2.1".parse().unwrap();
        let default = PerAddressLimit::by_default(64);
        let given = PerAddressLimit::everywhere(64);
        for ip in loopback {
            assert!(!default.applies_to(ip) && given.applies_to(ip), "{ip}");
        }
        assert!(default.applies_to(other) && given.applies_to(other));
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        for args in [
            &["--history", "x"][..],
            &["--max-clients", "0"],
            &["--max-clients", "1000001"],
            &["--ping-interval", "18446744073709551615"],
            &["--handshake-timeout", "301"],
            &["--history", "-1"],
            &["--allow-host", "a b"],
            &["--addr", "nowhere"],
            &["--bogus"],
            &["--deflate", "yes"],
            &["--deflate"],
            &["--inspect", "no"],
            &["--history"],
            &["--redis", "http://x"],
            &["--redis", "redis://h", "--history-file", "f"],
            &["--redis", "redis://h", "--node-name", "a b"],
            &["--redis", "redis://h", "--room-history-bytes", "100663297"],
            &["--node-name", "n1"],
            &["--max-clients-per-ip", "0"],
            &["--max-pending-per-ip", "1025"],
            &["--trusted-proxy", "proxy.example"],
            &["--trusted-proxy", "10.0.0.1/8"],
            &["--trusted-proxy"],
            &["--auth", "on"],
            &["--auth", "required"],
            &["--auth-secret-file", "/nonexistent"],
            &[
                "--auth",
                "optional",
                "--auth-secret-file",
                "/nonexistent/wschat-keys",
            ],
        ] {
            let e = parse(args).unwrap_err();
            assert!(!e.contains('\n') && !e.is_empty(), "{e}");
        }
    }
}
