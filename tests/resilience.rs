//! Resilience: what the server does with a damaged history file, with a
//! stop signal, with a Host header from a rebinding attack, with lookalike
//! nicknames, with out-of-range flags, with control characters meant for
//! its log, and with `/echo`'s size limit. Tests that need the whole
//! process (signals, flags, stderr) run the real binary; the others start
//! a server in this process. Every wait is bounded.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use wschat::protocol::message::Message;

// ---------------------------------------------------------------------------
// Helpers

/// A fresh, empty directory for one test's files.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wschat-resilience-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A strict JSON checker, independent of the server's own: true if `s` is
/// exactly one JSON value (RFC 8259), with nothing after it.
fn is_json(s: &str) -> bool {
    fn ws(b: &[u8], mut i: usize) -> usize {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        i
    }
    fn string(b: &[u8], mut i: usize) -> Option<usize> {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        i += 1;
        loop {
            match *b.get(i)? {
                b'"' => return Some(i + 1),
                b'\\' => match *b.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        let hex = b.get(i + 2..i + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        i += 6;
                    }
                    _ => return None,
                },
                c if c < 0x20 => return None,
                _ => i += 1,
            }
        }
    }
    fn value(b: &[u8], i: usize, depth: usize) -> Option<usize> {
        if depth > 64 {
            return None;
        }
        let i = ws(b, i);
        match *b.get(i)? {
            b'"' => string(b, i),
            b'{' | b'[' => {
                let (close, object) = if b[i] == b'{' {
                    (b'}', true)
                } else {
                    (b']', false)
                };
                let mut j = ws(b, i + 1);
                if b.get(j) == Some(&close) {
                    return Some(j + 1);
                }
                loop {
                    if object {
                        j = ws(b, string(b, ws(b, j))?);
                        if b.get(j) != Some(&b':') {
                            return None;
                        }
                        j += 1;
                    }
                    j = ws(b, value(b, j, depth + 1)?);
                    match *b.get(j)? {
                        b',' => j += 1,
                        c if c == close => return Some(j + 1),
                        _ => return None,
                    }
                }
            }
            b't' => b[i..].starts_with(b"true").then_some(i + 4),
            b'f' => b[i..].starts_with(b"false").then_some(i + 5),
            b'n' => b[i..].starts_with(b"null").then_some(i + 4),
            b'-' | b'0'..=b'9' => {
                let mut j = i + usize::from(b[i] == b'-');
                let digits = b[j..].iter().take_while(|c| c.is_ascii_digit()).count();
                if digits == 0 || (digits > 1 && b[j] == b'0') {
                    return None;
                }
                j += digits;
                if b.get(j) == Some(&b'.') {
                    let frac = b[j + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                    if frac == 0 {
                        return None;
                    }
                    j += 1 + frac;
                }
                Some(j)
            }
            _ => None,
        }
    }
    let b = s.as_bytes();
    value(b, 0, 0).is_some_and(|end| ws(b, end) == b.len())
}

/// The ids of the `message` events in a welcome's `history` array, in
/// order (the welcome's text is checked to be valid JSON first).
fn history_ids(welcome: &str) -> Vec<u64> {
    assert!(is_json(welcome), "welcome is not valid JSON: {welcome}");
    let history = welcome
        .split_once("\"history\":")
        .unwrap_or_else(|| panic!("no history in {welcome}"))
        .1;
    history
        .match_indices("{\"type\":\"message\",\"id\":")
        .map(|(at, key)| {
            let digits: String = history[at + key.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().unwrap()
        })
        .collect()
}

/// The `id` of a `message` event.
fn message_id(event: &str) -> u64 {
    let rest = event
        .strip_prefix("{\"type\":\"message\",\"id\":")
        .unwrap_or_else(|| panic!("not a message event: {event}"));
    rest.split(',').next().unwrap().parse().unwrap()
}

/// The real `wschat` binary, started on an ephemeral loopback port, its
/// stderr read line by line on a thread of its own.
struct Wschat {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    /// Every stderr line read so far.
    seen: Vec<String>,
}

impl Wschat {
    fn start(args: &[&str]) -> Wschat {
        Self::try_start(args).unwrap_or_else(|(status, stderr)| {
            panic!("wschat {args:?} did not start ({status:?}): {stderr}")
        })
    }

    /// Starts the binary and waits for its "Listening on" line; if it
    /// exits (or stays silent for the timeout) instead, returns its exit
    /// status (if any) and what it printed.
    fn try_start(args: &[&str]) -> Result<Wschat, (Option<ExitStatus>, String)> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wschat"))
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wschat");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).split(b'\n') {
                let Ok(line) = line else { break };
                if tx
                    .send(String::from_utf8_lossy(&line).into_owned())
                    .is_err()
                {
                    break;
                }
            }
        });
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line
                        .split_once("Listening on http://")
                        .map(|(_, rest)| rest.trim_end_matches('/').parse().unwrap());
                    seen.push(line);
                    if let Some(addr) = found {
                        return Ok(Wschat {
                            child,
                            addr,
                            lines,
                            seen,
                        });
                    }
                }
                Err(_) => {
                    let status = wait_for_exit(&mut child, Duration::from_secs(1));
                    if status.is_none() {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                    return Err((status, seen.join("\n")));
                }
            }
        }
    }

    /// Sends `signal` (a name for kill(1): TERM, INT) to the process.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Stops the server the way a service manager does (SIGTERM) and
    /// waits for it to exit.
    fn stop(mut self) {
        self.signal("TERM");
        let status = wait_for_exit(&mut self.child, TIMEOUT);
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{:?}", self.seen);
    }

    /// Waits up to `limit` for stderr lines until one contains `needle`.
    fn wait_for_line(&mut self, needle: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return Some(line.clone());
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            self.seen.push(line.clone());
            if line.contains(needle) {
                return Some(line);
            }
        }
    }
}

impl Drop for Wschat {
    fn drop(&mut self) {
        // Stopped by its PID, whatever the test did.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `child` until it exits or `limit` passes.
fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the binary with `args`, expecting it to refuse them: exit status 2
/// and a one-line error on stderr, within the timeout.
fn refused(args: &[&str]) -> Result<String, String> {
    match Wschat::try_start(args) {
        Ok(_) => Err(format!("{args:?} was accepted")),
        Err((Some(status), stderr)) if status.code() == Some(2) => {
            let lines: Vec<_> = stderr.lines().filter(|l| !l.is_empty()).collect();
            if lines.len() == 1 {
                Ok(lines[0].to_string())
            } else {
                Err(format!("{args:?}: not one line of error: {stderr:?}"))
            }
        }
        Err((status, stderr)) => Err(format!("{args:?}: exit {status:?}, {stderr:?}")),
    }
}

/// Connects a v1 client and returns it with its welcome text.
fn v1_welcome(addr: SocketAddr) -> (Client, String) {
    let mut client = Client::connect(addr, "/", &["wschat.v1"]);
    let welcome = client.recv_text();
    assert!(welcome.starts_with("{\"type\":\"welcome\""), "{welcome}");
    (client, welcome)
}

// ---------------------------------------------------------------------------
// 1. A torn history file

/// Three whole message lines, then a fourth that is the line torn at
/// `tear` bytes (of `full`, the fourth line without its newline).
fn torn_history(path: &Path, tear: usize) -> String {
    let lines: Vec<String> = (1..=4)
        .map(|seq| {
            wschat::room::message_event(seq, 1, "ann", &format!("line \"{seq}\""), 1_000, false)
        })
        .collect();
    let mut text = String::new();
    for line in &lines[..3] {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&lines[3][..tear]);
    std::fs::write(path, &text).unwrap();
    lines[3].clone()
}

#[test]
fn a_history_file_torn_at_any_byte_gives_valid_history_and_fresh_ids() {
    let dir = temp_dir("torn");
    let path = dir.join("history.jsonl");
    let full_len = torn_history(&path, 0).len();
    // Every tear of the last line: none of it, part of it, all of it but
    // the newline.
    for tear in 0..=full_len {
        let fourth = torn_history(&path, tear);
        // The torn line's id is readable once `"id":4,` is all there.
        let torn_id_readable = tear > fourth.find(",\"from\"").unwrap();
        let first = start_with(|c| c.history_file = Some(path.clone()));
        let (mut client, welcome) = v1_welcome(first.addr());
        let ids = history_ids(&welcome);
        let whole = tear == full_len;
        let expected: Vec<u64> = if whole {
            vec![1, 2, 3, 4]
        } else {
            vec![1, 2, 3]
        };
        assert_eq!(ids, expected, "tear at {tear}: {welcome}");
        client.text("fresh");
        let event = recv_until(&mut client, "fresh");
        let fresh = message_id(&event);
        let floor = if whole || torn_id_readable { 5 } else { 4 };
        assert!(
            fresh >= floor,
            "tear at {tear}: new id {fresh}, expected >= {floor}"
        );
        drop(client);
        first.shutdown();

        // Restart on the same file: valid JSON, increasing ids, the new
        // message last.
        let second = start_with(|c| c.history_file = Some(path.clone()));
        let (_client, welcome) = v1_welcome(second.addr());
        let ids = history_ids(&welcome);
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "tear at {tear}: ids {ids:?}"
        );
        assert_eq!(ids.last(), Some(&fresh), "tear at {tear}: {welcome}");
        assert!(welcome.contains("\"text\":\"fresh\""), "{welcome}");
        // Every line of the file is now whole.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n'), "tear at {tear}: {text:?}");
        for line in text.lines() {
            assert!(is_json(line), "tear at {tear}: damaged line kept: {line:?}");
        }
        second.shutdown();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_restart_over_real_sockets_keeps_history_after_a_tear() {
    let dir = temp_dir("restart");
    let path = dir.join("history.jsonl");
    let path_arg = path.to_str().unwrap();
    {
        let server = Wschat::start(&["--history-file", path_arg]);
        let (mut client, _) = v1_welcome(server.addr);
        for text in ["one", "two"] {
            client.text(text);
            recv_until(&mut client, text);
        }
        server.stop();
    }
    // A crash mid-write: half a line at the end.
    let mut text = std::fs::read_to_string(&path).unwrap();
    let last = text.lines().last().unwrap().to_string();
    text.push_str(&last.replacen("\"id\":2", "\"id\":3", 1)[..last.len() / 2]);
    std::fs::write(&path, &text).unwrap();
    {
        let server = Wschat::start(&["--history-file", path_arg]);
        let (mut client, welcome) = v1_welcome(server.addr);
        assert_eq!(history_ids(&welcome), [1, 2]);
        client.text("three");
        let id = message_id(&recv_until(&mut client, "three"));
        assert!(id > 3, "id {id} was issued before");
        server.stop();
    }
    {
        let server = Wschat::start(&["--history-file", path_arg]);
        let (_client, welcome) = v1_welcome(server.addr);
        let ids = history_ids(&welcome);
        assert_eq!(ids.len(), 3, "{welcome}");
        assert!(welcome.contains("three"), "{welcome}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Sends `count` raw messages of `size` control characters (each shown to
/// v1 clients as U+FFFD, so its line in the file is several times larger)
/// and waits until `observer` has seen the last; returns the last id.
fn flood_raw(addr: SocketAddr, observer: &mut Client, count: usize, size: usize) -> u64 {
    let mut raw = Client::connect(addr, "/", &[]);
    let text = "\u{1}".repeat(size);
    let mut last = 0;
    for _ in 0..count {
        raw.text(&text);
        last = loop {
            let event = observer.recv_text();
            if event.starts_with("{\"type\":\"message\"") {
                break message_id(&event);
            }
        };
    }
    last
}

fn file_size(path: &Path) -> usize {
    std::fs::metadata(path).map_or(0, |m| m.len() as usize)
}

/// The file stays within its bound however much is said (it is compacted
/// to the kept history), and numbering goes on after a restart.
#[test]
fn the_history_file_is_compacted_and_numbering_survives_it() {
    let dir = temp_dir("compact");
    let path = dir.join("history.jsonl");
    // The kept history (at most 512 KiB here), what may be appended before
    // compacting (1 MiB), the header and a line of slack.
    let bound = (512 + 1024 + 256) * 1024;
    for (history, restarted_history) in [(5, 5), (0, 0)] {
        let _ = std::fs::remove_file(&path);
        let server = start_with(|c| {
            c.history = history;
            c.history_file = Some(path.clone());
        });
        let (mut observer, _) = v1_welcome(server.addr());
        let mut largest = 0;
        let mut last = 0;
        for _ in 0..10 {
            last = flood_raw(server.addr(), &mut observer, 4, 60_000);
            largest = largest.max(file_size(&path));
        }
        drop(observer);
        server.shutdown();
        assert_eq!(last, 40);
        let written = 40 * 60_000 * 3;
        assert!(
            largest <= bound && file_size(&path) <= bound,
            "--history {history}: the file reached {largest} bytes for {written} bytes of messages"
        );
        let second = start_with(|c| {
            c.history = restarted_history;
            c.history_file = Some(path.clone());
        });
        let (mut client, welcome) = v1_welcome(second.addr());
        let kept = history_ids(&welcome);
        if history == 0 {
            assert!(kept.is_empty(), "{kept:?}");
        } else {
            assert_eq!(kept.last(), Some(&40), "{kept:?}");
        }
        client.text("next");
        let id = message_id(&recv_until(&mut client, "next"));
        assert_eq!(id, 41, "--history {history}: numbering goes on");
        second.shutdown();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file written before the format had a header (bare message lines) is
/// loaded, and rewritten with a header that names the welcome's epoch.
#[test]
fn an_old_history_file_without_a_header_is_loaded_and_migrated() {
    let dir = temp_dir("old-format");
    let path = dir.join("history.jsonl");
    let old: String = (1..=3)
        .map(|seq| {
            let line =
                wschat::room::message_event(seq, 1, "ann", &format!("old {seq}"), 1_000, false);
            format!("{line}\n")
        })
        .collect();
    std::fs::write(&path, &old).unwrap();
    let server = start_with(|c| c.history_file = Some(path.clone()));
    let (mut client, welcome) = v1_welcome(server.addr());
    assert_eq!(history_ids(&welcome), [1, 2, 3]);
    let epoch = welcome
        .split("\"epoch\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no epoch: {welcome}"))
        .to_string();
    let text = std::fs::read_to_string(&path).unwrap();
    let header = text.lines().next().unwrap();
    assert_eq!(
        header,
        format!("{{\"wschat_history\":3,\"epoch\":\"{epoch}\",\"next_seq\":4}}")
    );
    assert!(text.ends_with(&old), "the old lines are kept as they were");
    client.text("new");
    assert_eq!(message_id(&recv_until(&mut client, "new")), 4);
    server.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------
// 2. Stopping on SIGTERM and SIGINT

fn stops_gracefully_on(signal: &str) {
    let dir = temp_dir(&format!("stop-{signal}"));
    let path = dir.join("history.jsonl");
    let mut server = Wschat::start(&["--history-file", path.to_str().unwrap()]);
    let mut raw = Client::connect(server.addr, "/", &[]);
    let (mut v1, _) = v1_welcome(server.addr);
    let mut echo = Client::echo(server.addr);
    echo.text("ping?");
    assert!(matches!(echo.recv_data(), Message::Text(t) if t == "ping?"));
    v1.text("before the stop");
    recv_until(&mut v1, "before the stop");
    assert!(matches!(raw.recv_data(), Message::Text(t) if t.contains("before the stop")));

    server.signal(signal);
    for (name, client) in [("raw", &mut raw), ("v1", &mut v1), ("echo", &mut echo)] {
        client
            .check_close(1001)
            .unwrap_or_else(|e| panic!("{signal}: {name} client: {e}"));
    }
    let status = wait_for_exit(&mut server.child, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{signal}: still running 5 s later"));
    assert_eq!(status.code(), Some(0), "{signal}: {status:?}");
    assert!(
        server
            .wait_for_line("shutting down", Duration::from_secs(1))
            .is_some(),
        "{signal}: no log line: {:?}",
        server.seen
    );
    let history = std::fs::read_to_string(&path).unwrap();
    assert!(history.contains("before the stop"), "{history:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigterm_closes_every_client_with_1001_and_exits_0() {
    stops_gracefully_on("TERM");
}

#[test]
fn sigint_closes_every_client_with_1001_and_exits_0() {
    stops_gracefully_on("INT");
}

// ---------------------------------------------------------------------------
// 3. The Host check (DNS rebinding)

#[test]
fn a_loopback_server_refuses_foreign_host_names() {
    let server = start();
    let addr = server.addr();
    let port = addr.port();
    // A page on a name that resolves to 127.0.0.1 sends its own name as
    // Host and as Origin: same-origin, but not this server's name.
    let rebinding = format!(
        "GET / HTTP/1.1\r\nHost: evil.example:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nOrigin: http://evil.example:{port}\r\n\r\n"
    );
    let response = http_exchange(addr, rebinding.as_bytes());
    assert_eq!(status_of(&response), 403, "{response}");
    assert!(
        response.contains("host not allowed (see --allow-host)"),
        "{response}"
    );
    for target in ["/", "/metrics", "/healthz", "/app.js"] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: evil.example:{port}\r\n\r\n");
        let response = http_exchange(addr, request.as_bytes());
        assert_eq!(status_of(&response), 403, "{target}: {response}");
    }
    // Loopback names, with and without the port, are this server's.
    for host in [
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("LocalHost:{port}"),
        format!("chat.localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("127.1.2.3:{port}"),
        format!("[::1]:{port}"),
        "[::1]".to_string(),
    ] {
        let request = handshake_request(addr, "/", "")
            .replace(&format!("Host: {addr}"), &format!("Host: {host}"));
        let head = response_head(addr, request.as_bytes());
        assert_eq!(status_of(&head), 101, "{host}: {head}");
        let page = http_exchange(
            addr,
            format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
        );
        assert_eq!(status_of(&page), 200, "{host}");
    }
    // Names that only look loopback.
    for host in [
        "localhost.evil.example",
        "127.0.0.1.evil.example",
        "[::2]",
        "localhostx",
    ] {
        let page = http_exchange(
            addr,
            format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
        );
        assert_eq!(status_of(&page), 403, "{host}");
    }
}

#[test]
fn allow_host_adds_names_and_domains() {
    let server = start_with(|c| {
        c.allow_hosts = vec!["chat.example".into(), ".example.org".into()];
    });
    let addr = server.addr();
    for (host, status) in [
        ("chat.example", 200),
        ("chat.example:8443", 200),
        ("CHAT.example", 200),
        ("other.example", 403),
        ("example.org", 200),
        ("a.b.example.org", 200),
        ("badexample.org", 403),
        ("localhost", 200),
    ] {
        let page = http_exchange(
            addr,
            format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
        );
        assert_eq!(status_of(&page), status, "{host}");
    }
    let any = start_with(|c| c.allow_hosts = vec!["*".into()]);
    let page = http_exchange(
        any.addr(),
        b"GET / HTTP/1.1\r\nHost: anything.example\r\n\r\n",
    );
    assert_eq!(status_of(&page), 200);
}

// ---------------------------------------------------------------------------
// 4. Lookalike nicknames

#[test]
fn invisible_and_fullwidth_lookalike_nicknames_are_refused() {
    let server = start();
    let (mut ann, _) = v1_welcome(server.addr());
    ann.text("/nick ann");
    recv_until(&mut ann, "\"type\":\"nick\"");
    let (mut other, _) = v1_welcome(server.addr());
    for (wanted, needle) in [
        ("ann\u{200B}", "invisible"),
        ("a\u{202E}nn", "invisible"),
        ("\u{FEFF}ann", "invisible"),
        ("an\u{AD}n", "invisible"),
        ("ａｎｎ", "already taken"),
        ("ＡＮＮ", "already taken"),
    ] {
        other.text(&format!("/nick {wanted}"));
        let answer = recv_until(&mut other, "\"type\":\"error\"");
        assert!(answer.contains(needle), "{wanted:?}: {answer}");
    }
}

// ---------------------------------------------------------------------------
// 5. Flag ranges

/// Every numeric flag, its smallest and its largest accepted value.
const RANGES: &[(&str, u64, u64)] = &[
    ("--max-message-bytes", 1, 64 * 1024 * 1024),
    ("--echo-max-message-bytes", 1, 64 * 1024 * 1024),
    ("--history", 0, 100_000),
    ("--max-clients", 1, 1_000_000),
    ("--max-clients-per-ip", 1, 1_000_000),
    ("--max-pending-per-ip", 1, 1024),
    ("--ping-interval", 1, 3600),
    ("--handshake-timeout", 1, 300),
    ("--rate-limit", 0, 100_000),
];

#[test]
fn every_numeric_flag_accepts_its_bounds_and_refuses_one_past() {
    for upper in [false, true] {
        let values: Vec<String> = RANGES
            .iter()
            .map(|&(_, lo, hi)| if upper { hi } else { lo }.to_string())
            .collect();
        let mut args = Vec::new();
        for ((flag, _, _), value) in RANGES.iter().zip(&values) {
            args.push(*flag);
            args.push(value);
        }
        let server = Wschat::start(&args);
        let page = http_exchange(
            server.addr,
            b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
        );
        assert_eq!(status_of(&page), 200, "{args:?}");
    }
    let mut failures = Vec::new();
    for &(flag, lo, hi) in RANGES {
        let mut past = vec![hi + 1];
        if lo > 0 {
            past.push(lo - 1);
        }
        past.push(u64::MAX);
        for value in past {
            match refused(&[flag, &value.to_string()]) {
                Ok(line) => assert!(line.contains(flag), "{line}"),
                Err(e) => failures.push(e),
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn help_states_every_range() {
    let output = Command::new(env!("CARGO_BIN_EXE_wschat"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for &(flag, lo, hi) in RANGES {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("{flag} missing from --help"));
        let shown = |n: u64| {
            let plain = n.to_string();
            line.contains(&plain) || (n == 64 * 1024 * 1024 && line.contains("64 MiB"))
        };
        assert!(shown(lo) && shown(hi), "{flag}: range not in {line:?}");
    }
}

// ---------------------------------------------------------------------------
// 6. Client text in the log

#[test]
fn client_text_reaches_the_log_escaped_on_one_line() {
    let mut server = Wschat::start(&["--log-level", "debug"]);
    let (mut client, _) = v1_welcome(server.addr);
    client.text("first\nINJECTED \u{1b}[31mred\u{7}");
    // The room refuses control characters in v1 text (an error event), but
    // the reader has logged the message by then.
    recv_until(&mut client, "\"code\":\"bad_text\"");
    let line = server
        .wait_for_line("first", TIMEOUT)
        .expect("the message is logged at debug level");
    assert!(
        line.contains("first\\nINJECTED \\x1b[31mred\\x07"),
        "{line:?}"
    );
    // A request target with an escape sequence in it is refused with 400
    // (RFC 9112 §3: no control character in a request line), and only
    // the rejection's own words are logged.
    let response = http_exchange(
        server.addr,
        b"GET /\x1b[2Jpage HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 400"), "{response:?}");
    let rejected = server
        .wait_for_line("control character in the request head", TIMEOUT)
        .expect("the rejection is logged");
    assert!(!rejected.contains("page"), "{rejected:?}");
    // A long close reason is cut short.
    let reason = "z".repeat(120);
    client.send(
        wschat::protocol::OpCode::Close,
        &close_payload(1000, reason.as_bytes()),
    );
    let closed = server
        .wait_for_line("Connection closed", TIMEOUT)
        .expect("the close is logged");
    assert!(
        closed.contains('…') && !closed.contains(&reason),
        "{closed:?}"
    );
    drop(client);
    let _ = server.child.kill();
    let _ = server.child.wait();
    // Read what is left, then check that no line holds a raw control
    // character and none starts with the injected text.
    while let Ok(line) = server.lines.recv_timeout(Duration::from_secs(1)) {
        server.seen.push(line);
    }
    for line in &server.seen {
        assert!(!line.starts_with("INJECTED"), "{line:?}");
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
    }
}

// ---------------------------------------------------------------------------
// 7. `/echo`'s limit

#[test]
fn echo_max_message_bytes_limits_echo_messages() {
    let server = Wschat::start(&["--echo-max-message-bytes", "1000"]);
    let mut echo = Client::echo(server.addr);
    echo.send(wschat::protocol::OpCode::Binary, &[7u8; 1000]);
    assert!(matches!(echo.recv_data(), Message::Binary(b) if b.len() == 1000));
    echo.send(wschat::protocol::OpCode::Binary, &[7u8; 1001]);
    echo.expect_close(1009);
    // The chat limit is its own.
    let server = Wschat::start(&[
        "--echo-max-message-bytes",
        "100000",
        "--max-message-bytes",
        "10",
    ]);
    let mut echo = Client::echo(server.addr);
    echo.send(wschat::protocol::OpCode::Binary, &[7u8; 50_000]);
    assert!(matches!(echo.recv_data(), Message::Binary(b) if b.len() == 50_000));
}

#[test]
fn a_dead_broadcaster_makes_the_process_exit_non_zero() {
    // The test-only hook (feature `test-hooks`, on for the tests' build of
    // the binary) makes the broadcaster panic on this chat line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_wschat"))
        .args(["--addr", "127.0.0.1:0", "--log-level", "warn"])
        .env("WSCHAT_TEST_BROADCASTER_PANIC", "stop the room")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wschat");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr: SocketAddr = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no Listening line"
        );
        if let Some((_, rest)) = line.split_once("Listening on http://") {
            break rest.trim().trim_end_matches('/').parse().unwrap();
        }
    };
    thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let mut client = Client::connect(addr, "/", &[]);
    client.text("stop the room");
    let status = wait_for_exit(&mut child, TIMEOUT).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the process went on without its broadcaster")
    });
    assert!(!status.success(), "{status:?}");
}
