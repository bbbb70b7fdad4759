//! What the fault tests drive: a redis-server that can be killed,
//! restarted on its port and directory, or stopped; wschat nodes (the
//! real binary) that can be stopped with SIGSTOP and continued; and chat
//! clients that read on a thread of their own, so that a test can send
//! while every event, Close and its time are recorded.
//!
//! Every process is started on a free loopback port and killed by PID on
//! drop.
#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use wschat::json::{self, Value as Json};
use wschat::protocol::frame::OpCode;
use wschat::protocol::message::{Message, MessageReader, Role};

/// How long a process may take to start answering.
pub const STARTUP: Duration = Duration::from_secs(15);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "wschat-cluster-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `signal` (`STOP`, `CONT`) to a process we started.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {}", child.id());
}

pub fn redis_server_binary() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("redis-server"))
        .chain([PathBuf::from("/usr/bin/redis-server")])
        .find(|path| path.is_file())
        .expect("redis-server not found: run tests/cluster/run.sh, which installs it")
}

/// One redis-server; SIGKILLed on drop.
pub struct Redis {
    pub child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    args: Vec<String>,
}

impl Redis {
    pub fn start(dir: &TempDir, args: &[&str]) -> Redis {
        let mut redis = Redis {
            child: None,
            port: free_port(),
            dir: dir.0.clone(),
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        redis.spawn();
        redis
    }

    /// Starts (again) on the same port and directory, and waits for PING.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))
            .unwrap();
        let child = Command::new(redis_server_binary())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&self.dir)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                stream
                    .set_read_timeout(Some(Duration::from_secs(1)))
                    .unwrap();
                let mut reply = [0u8; 64];
                if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok()
                    && std::io::Read::read(&mut stream, &mut reply).is_ok_and(|n| n > 0)
                    && reply.starts_with(b"+PONG")
                {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, like a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The wschat binary: `WSCHAT_BIN` if set (to test another build, such
/// as the one on main), else the one cargo built with this test.
pub fn wschat_binary() -> PathBuf {
    std::env::var_os("WSCHAT_BIN")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_wschat")))
}

/// One `wschat --redis` node, its log in a file; SIGKILLed on drop.
pub struct Node {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub log: PathBuf,
    pub name: String,
}

impl Node {
    pub fn start(redis: &Redis, dir: &TempDir, name: &str, extra: &[&str]) -> Node {
        let log = dir.0.join(format!(
            "{name}-{}.log",
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let child = Command::new(wschat_binary())
            .args(["--addr", "127.0.0.1:0", "--redis", &redis.url()])
            .args(["--node-name", name, "--rate-limit", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn wschat");
        let mut node = Node {
            child: Some(child),
            addr: "127.0.0.1:0".parse().unwrap(),
            log,
            name: name.to_string(),
        };
        let deadline = Instant::now() + STARTUP;
        loop {
            let text = node.log_text();
            if let Some(rest) = text.split("Listening on http://").nth(1) {
                node.addr = rest.split('/').next().unwrap().parse().unwrap();
                return node;
            }
            if let Some(status) = node.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("wschat {name} exited ({status}):\n{text}");
            }
            assert!(Instant::now() < deadline, "wschat {name} did not start");
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, name: &str) {
        signal(self.child.as_ref().unwrap(), name);
    }

    /// Connects a v1 client, retrying while the node answers 503.
    pub fn client(&self, wait: Duration) -> Chat {
        let deadline = Instant::now() + wait;
        loop {
            match Chat::try_connect(self.addr, "/") {
                Ok(chat) => return chat,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "{}: never joined: {e}",
                    self.name
                ),
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = signal_quietly(&child, "CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal_quietly(child: &Child, signal: &str) -> std::io::Result<()> {
    Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .stderr(Stdio::null())
        .status()
        .map(|_| ())
}

/// What a chat client got, in order, with when.
#[derive(Debug, Clone)]
pub enum Got {
    Event(Instant, Json),
    /// A Close frame: code and reason.
    Closed(Instant, u16, String),
    /// The connection ended without a Close (or a read failed).
    Ended(Instant, String),
}

/// A `wschat.v1` client whose frames are read by a thread of its own.
pub struct Chat {
    writer: TcpStream,
    pub got: Arc<Mutex<Vec<Got>>>,
    pub id: u64,
}

impl Chat {
    /// Connects to `path`, waits for the welcome.
    pub fn try_connect(addr: SocketAddr, path: &str) -> Result<Chat, String> {
        let client = super::common::Client::try_connect(addr, path, &["wschat.v1"])?;
        let writer = client.stream.try_clone().map_err(|e| e.to_string())?;
        writer.set_write_timeout(None).unwrap();
        writer.set_read_timeout(None).unwrap();
        let reader_stream = client.stream.try_clone().map_err(|e| e.to_string())?;
        drop(client);
        let got = Arc::new(Mutex::new(Vec::new()));
        {
            let got = got.clone();
            let mut pong = writer.try_clone().unwrap();
            thread::spawn(move || {
                let mut reader = MessageReader::new(reader_stream, Role::Client, 128 << 20);
                loop {
                    let item = match reader.read_message() {
                        Ok(Message::Text(text)) => match json::parse(&text) {
                            Some(event) => Got::Event(Instant::now(), shorten(event)),
                            None => Got::Ended(Instant::now(), "not JSON".into()),
                        },
                        Ok(Message::Ping(payload)) => {
                            let frame = super::common::masked(true, OpCode::Pong, &payload);
                            let _ = pong.write_all(&frame);
                            continue;
                        }
                        Ok(Message::Close(close)) => {
                            let (code, reason) = close
                                .map(|c| (u16::from(c.code), c.reason))
                                .unwrap_or((1005, String::new()));
                            Got::Closed(Instant::now(), code, reason)
                        }
                        Ok(_) => continue,
                        Err(e) => Got::Ended(Instant::now(), e.to_string()),
                    };
                    let last = !matches!(item, Got::Event(..));
                    got.lock().unwrap().push(item);
                    if last {
                        return;
                    }
                }
            });
        }
        let mut chat = Chat { writer, got, id: 0 };
        let welcome = chat
            .wait_for(Duration::from_secs(10), |e| kind(e) == "welcome")
            .ok_or("no welcome")?;
        chat.id = welcome
            .get("you")
            .and_then(|you| you.get("id"))
            .and_then(Json::as_u64)
            .ok_or("welcome without an id")?;
        Ok(chat)
    }

    /// Sends one text message (errors ignored: a closed client is
    /// judged by what it received).
    pub fn send(&mut self, text: &str) {
        let frame = super::common::masked(true, OpCode::Text, text.as_bytes());
        let _ = self.writer.write_all(&frame);
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Json> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter_map(|g| match g {
                Got::Event(_, e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    /// The Close the server sent, if any.
    pub fn closed(&self) -> Option<(u16, String)> {
        self.got.lock().unwrap().iter().find_map(|g| match g {
            Got::Closed(_, code, reason) => Some((*code, reason.clone())),
            _ => None,
        })
    }

    /// True once the connection has ended, with or without a Close.
    pub fn ended(&self) -> bool {
        self.got
            .lock()
            .unwrap()
            .iter()
            .any(|g| !matches!(g, Got::Event(..)))
    }

    /// Waits for an event that `want` accepts (searching all received so
    /// far); `None` after `wait`.
    pub fn wait_for(&self, wait: Duration, want: impl Fn(&Json) -> bool) -> Option<Json> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(found) = self.events().into_iter().find(|e| want(e)) {
                return Some(found);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The texts of the `message` events received, with their ids.
    pub fn messages(&self) -> Vec<(u64, String)> {
        self.events()
            .iter()
            .filter(|e| kind(e) == "message")
            .map(message)
            .collect()
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        let _ = self.writer.shutdown(std::net::Shutdown::Both);
    }
}

/// Texts longer than this are kept as their start and their length
/// (`SHORT_TEXT` bytes, then `…(N bytes)`), so that megabytes of chat are
/// not kept and copied by every look at the events.
pub const SHORT_TEXT: usize = 64;

fn shorten(event: Json) -> Json {
    let Json::Object(members) = event else {
        return event;
    };
    Json::Object(
        members
            .into_iter()
            .map(|(key, value)| match value {
                Json::String(text) if key == "text" && text.len() > 4 * SHORT_TEXT => {
                    let mut end = SHORT_TEXT;
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    let short = format!("{}…({} bytes)", &text[..end], text.len());
                    (key, Json::String(short))
                }
                other => (key, other),
            })
            .collect(),
    )
}

/// An event's `type`.
pub fn kind(event: &Json) -> &str {
    event.get("type").and_then(Json::as_str).unwrap_or("")
}

/// `(id, text)` of a `message` event.
pub fn message(event: &Json) -> (u64, String) {
    (
        event.get("id").and_then(Json::as_u64).unwrap_or(0),
        event
            .get("text")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string(),
    )
}

/// The user ids of a `leave` event, or none.
pub fn left(event: &Json) -> Option<u64> {
    (kind(event) == "leave")
        .then(|| {
            event
                .get("user")
                .and_then(|u| u.get("id"))
                .and_then(Json::as_u64)
        })
        .flatten()
}

/// Waits until `check` holds, polling; false after `wait`.
pub fn eventually(wait: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The median of some durations (sorted in place).
pub fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}
