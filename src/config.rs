//! Command-line flags, their defaults, and `--help`. Parsed by hand: the
//! design allows no argument-parsing crate, and there are only a few flags.

use std::net::{SocketAddr, ToSocketAddrs};
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
    /// The largest chat message accepted (1009 above it).
    pub max_message_bytes: usize,
    /// How many chat messages new `wschat.v1` clients are sent on joining.
    pub history: usize,
    /// Append every chat message to this file and reload history from it.
    pub history_file: Option<PathBuf>,
    /// WebSocket connections held at once; more are answered 503.
    pub max_clients: usize,
    pub ping_interval: Duration,
    pub handshake_timeout: Duration,
    /// Chat messages per second per client (burst twice that); 0 is off.
    pub rate_limit: u32,
    /// Bytes a client may be behind before it is dropped as too slow.
    pub max_lag_bytes: usize,
    /// Tests only (feature `test-hooks`): a text message that makes the
    /// receiving connection thread panic, to prove that a panic stays
    /// within its connection.
    #[cfg(feature = "test-hooks")]
    pub panic_trigger: Option<String>,
    /// Tests only (feature `test-hooks`): a thread budget smaller than the
    /// kernel's limits allow.
    #[cfg(feature = "test-hooks")]
    pub thread_limit: Option<usize>,
}

pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
pub const DEFAULT_HISTORY: usize = 100;
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;
pub const DEFAULT_PING_INTERVAL_SECS: u64 = 30;
pub const DEFAULT_HANDSHAKE_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_RATE_LIMIT: u32 = 50;
/// Several seconds of the busiest fan-out benchmark: a client that stalls
/// for a moment keeps every message.
pub const DEFAULT_MAX_LAG_BYTES: usize = 64 * 1024 * 1024;

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: DEFAULT_ADDR.parse().expect("valid default address"),
            www: None,
            log_level: log::LevelFilter::Info,
            allow_origins: Vec::new(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            history: DEFAULT_HISTORY,
            history_file: None,
            max_clients: DEFAULT_MAX_CLIENTS,
            ping_interval: Duration::from_secs(DEFAULT_PING_INTERVAL_SECS),
            handshake_timeout: Duration::from_secs(DEFAULT_HANDSHAKE_TIMEOUT_SECS),
            rate_limit: DEFAULT_RATE_LIMIT,
            max_lag_bytes: DEFAULT_MAX_LAG_BYTES,
            #[cfg(feature = "test-hooks")]
            panic_trigger: None,
            #[cfg(feature = "test-hooks")]
            thread_limit: None,
        }
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
    format!(
        "wschat {version}: a WebSocket chat server (RFC 6455 by hand, plain threads)

Usage: wschat [OPTIONS]

Options:
  --addr HOST:PORT            address to listen on [default: {DEFAULT_ADDR}]
  --www DIR                   serve the page from DIR instead of the embedded copy
  --log-level LEVEL           error, warn, info, debug or trace [default: info]
  --allow-origin ORIGIN       also accept pages from ORIGIN (repeatable; * = any)
  --max-message-bytes N       largest chat message, in bytes [default: {DEFAULT_MAX_MESSAGE_BYTES}]
  --history N                 chat messages kept for newcomers [default: {DEFAULT_HISTORY}]
  --history-file PATH         append messages to PATH and reload them on start
  --max-clients N             WebSocket connections at once [default: {DEFAULT_MAX_CLIENTS}]
  --ping-interval SECS        ping a client silent this long; drop it after two [default: {DEFAULT_PING_INTERVAL_SECS}]
  --handshake-timeout SECS    time allowed for the HTTP request head [default: {DEFAULT_HANDSHAKE_TIMEOUT_SECS}]
  --rate-limit MSGS_PER_SEC   chat messages per client per second, burst 2x (0 = off) [default: {DEFAULT_RATE_LIMIT}]
  --max-lag-bytes N           drop a client this many bytes behind [default: {DEFAULT_MAX_LAG_BYTES}]
  -h, --help                  print this help
  -V, --version               print the version

Endpoints: / (chat page, and the chat socket), /echo (echo socket),
/healthz, /metrics (Prometheus text format).
",
        version = env!("CARGO_PKG_VERSION")
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
            let mut value = |name: &str| -> Result<String, String> {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{name} needs a value (see --help)"))
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(Command::Help),
                "-V" | "--version" => return Ok(Command::Version),
                "--addr" => {
                    let v = value("--addr")?;
                    config.addr = v
                        .to_socket_addrs()
                        .ok()
                        .and_then(|mut a| a.next())
                        .ok_or_else(|| format!("--addr: '{v}' is not HOST:PORT"))?;
                }
                "--www" => config.www = Some(PathBuf::from(value("--www")?)),
                "--log-level" => {
                    let v = value("--log-level")?;
                    config.log_level = v.parse().map_err(|_| {
                        format!(
                            "--log-level: '{v}' is not one of off, error, warn, info, debug, trace"
                        )
                    })?;
                }
                "--allow-origin" => config.allow_origins.push(value("--allow-origin")?),
                "--max-message-bytes" => {
                    config.max_message_bytes =
                        number(&value("--max-message-bytes")?, "--max-message-bytes", 1)?
                }
                "--history" => config.history = number(&value("--history")?, "--history", 0)?,
                "--history-file" => {
                    config.history_file = Some(PathBuf::from(value("--history-file")?))
                }
                "--max-clients" => {
                    config.max_clients = number(&value("--max-clients")?, "--max-clients", 1)?
                }
                "--ping-interval" => {
                    config.ping_interval = Duration::from_secs(number(
                        &value("--ping-interval")?,
                        "--ping-interval",
                        1,
                    )?)
                }
                "--handshake-timeout" => {
                    config.handshake_timeout = Duration::from_secs(number(
                        &value("--handshake-timeout")?,
                        "--handshake-timeout",
                        1,
                    )?)
                }
                "--rate-limit" => {
                    config.rate_limit = number(&value("--rate-limit")?, "--rate-limit", 0)?
                }
                "--max-lag-bytes" => {
                    config.max_lag_bytes = number(&value("--max-lag-bytes")?, "--max-lag-bytes", 1)?
                }
                other => return Err(format!("unknown option '{other}' (see --help)")),
            }
        }
        Ok(Command::Run(Box::new(config)))
    }
}

/// Parses a whole number of at least `min`.
fn number<T: std::str::FromStr + PartialOrd + From<u8> + std::fmt::Display>(
    v: &str,
    flag: &str,
    min: u8,
) -> Result<T, String> {
    match v.parse::<T>() {
        Ok(n) if n >= T::from(min) => Ok(n),
        _ => Err(format!(
            "{flag}: '{v}' is not a whole number of at least {min}"
        )),
    }
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
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        for args in [
            &["--history", "x"][..],
            &["--max-clients", "0"],
            &["--addr", "nowhere"],
            &["--bogus"],
            &["--history"],
        ] {
            let e = parse(args).unwrap_err();
            assert!(!e.contains('\n') && !e.is_empty(), "{e}");
        }
    }
}
