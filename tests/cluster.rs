//! The Redis layer of cluster mode (`wschat::cluster`), end to end.
//!
//! Two kinds of tests:
//!
//! - Against a fake server written here (a `TcpListener` that answers with
//!   chosen bytes, or not at all): what the client does with a silent,
//!   hostile or vanishing peer. These need nothing installed and run with
//!   every `cargo test`.
//! - Against a real `redis-server`, one per test, on a free loopback port,
//!   in its own temporary directory, killed by PID when the test ends.
//!   These are `#[ignore]`d because a fresh machine has no redis-server:
//!   `tests/cluster/run.sh` installs it and runs them all. Run without it,
//!   they fail (they never pass by skipping).
//! - Cluster mode end to end: several `wschat` processes (the real binary)
//!   on ephemeral loopback ports sharing one redis-server, with WebSocket
//!   clients spread across them (also `#[ignore]`d, for the same reason);
//!   and resuming with `/?since=ID` on a single node (no Redis needed).

mod common;
// Temporary directories, free ports and the redis-server binary, shared
// with the fault test.
#[path = "cluster/harness.rs"]
mod harness;

use harness::{TempDir, free_port, redis_server_binary};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};
use wschat::cluster::resp::{Parse, RespError, Value, parse_reply};
use wschat::cluster::{
    Backoff, NodeId, RedisConnection, RedisError, RedisUrl, Store, StreamId, Timeouts,
};

/// How long a test waits for redis-server to start answering.
const STARTUP: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// A real redis-server, started and stopped by the test.
// ---------------------------------------------------------------------------

/// One redis-server process; killed (SIGKILL) and reaped on drop.
struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
}

impl RedisServer {
    /// Starts redis-server with `args` added to the test defaults (no
    /// snapshots, no AOF unless `args` turns it on).
    fn start(dir: &TempDir, args: &[&str]) -> RedisServer {
        // Another process may take the port between free_port and redis
        // binding it: try a few.
        let mut last_log = String::new();
        for _ in 0..5 {
            let mut server = RedisServer {
                child: None,
                port: free_port(),
                dir: dir.0.clone(),
                args: args.iter().map(|a| a.to_string()).collect(),
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(log) => last_log = log,
            }
        }
        panic!("redis-server did not start:\n{last_log}");
    }

    /// Starts (again) on the same port and directory.
    fn spawn(&mut self) -> Result<(), String> {
        let log_path = self.dir.join("redis.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let port = self.port.to_string();
        let mut command = Command::new(redis_server_binary());
        command
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--dir"])
            .arg(&self.dir)
            // Later arguments win: a test's own `--appendonly yes` holds.
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(command.spawn().expect("spawn redis-server"));
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("redis-server exited ({status}):\n{log}"));
            }
            // Any answer (even NOAUTH) means it is listening.
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                stream
                    .set_read_timeout(Some(Duration::from_secs(1)))
                    .unwrap();
                let mut reply = [0u8; 64];
                if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok()
                    && stream.read(&mut reply).is_ok_and(|n| n > 0)
                    && !reply.starts_with(b"-LOADING")
                {
                    return Ok(());
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> RedisUrl {
        RedisUrl::parse(&format!("redis://127.0.0.1:{}", self.port)).unwrap()
    }

    fn url_with(&self, userinfo_and_db: (&str, &str)) -> RedisUrl {
        let (userinfo, db) = userinfo_and_db;
        RedisUrl::parse(&format!("redis://{userinfo}127.0.0.1:{}{db}", self.port)).unwrap()
    }

    /// SIGKILL: no chance to flush anything, like a crash.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn store(server: &RedisServer, maxlen: usize) -> Store {
    Store::new(RedisConnection::connect(&server.url()).unwrap(), maxlen)
}

fn node(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

/// The Redis limits hold the largest message `--max-message-bytes`
/// allows (a test here, not in `cluster::resp`: the Redis layer does not
/// depend on the command line).
#[test]
fn the_limits_carry_the_largest_message_the_flags_allow() {
    use wschat::cluster::resp::{Decoder, MAX_BULK_LEN, MAX_REPLY_BYTES};
    let largest = *wschat::config::range::MAX_MESSAGE_BYTES.end() as usize;
    assert!(MAX_BULK_LEN >= largest);
    // One stream entry of that size (its other fields are short).
    assert!(MAX_REPLY_BYTES >= largest + 64 * 1024);
    // A bulk string of exactly MAX_BULK_LEN is accepted, whole.
    let mut bytes = format!("${MAX_BULK_LEN}\r\n").into_bytes();
    bytes.resize(bytes.len() + MAX_BULK_LEN, b'x');
    bytes.extend_from_slice(b"\r\n");
    let mut decoder = Decoder::new();
    for piece in bytes.chunks(1 << 20) {
        decoder.feed(piece).unwrap();
    }
    assert!(matches!(decoder.next_value(), Some(Value::Bulk(b)) if b.len() == MAX_BULK_LEN));
}

// ---------------------------------------------------------------------------
// The client against a real Redis.
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn commands_pipelines_and_error_replies() {
    let dir = TempDir::new();
    let server = RedisServer::start(&dir, &[]);
    let mut redis = RedisConnection::connect(&server.url()).unwrap();

    assert_eq!(
        redis.command(&["PING"]).unwrap(),
        Value::Simple("PONG".into())
    );
    let binary = b"a\r\nb\0c";
    assert_eq!(
        redis.command(&[&b"SET"[..], b"k", binary]).unwrap(),
        Value::Simple("OK".into())
    );
    assert_eq!(
        redis.command(&["GET", "k"]).unwrap(),
        Value::Bulk(binary.to_vec())
    );
    assert_eq!(redis.command(&["GET", "missing"]).unwrap(), Value::NullBulk);

    // An error reply is an error with Redis's text, and the connection
    // stays usable.
    match redis.command(&["INCR", "k"]) {
        Err(RedisError::Server(text)) => assert!(text.starts_with("ERR"), "{text}"),
        other => panic!("{other:?}"),
    }
    assert!(redis.is_connected());

    // A pipeline: replies in order, an error in the middle kept in place.
    let replies = redis
        .pipeline(&[
            vec!["SET", "n", "1"],
            vec!["INCR", "k"],
            vec!["INCR", "n"],
            vec!["LRANGE", "nolist", "0", "-1"],
        ])
        .unwrap();
    assert_eq!(replies.len(), 4);
    assert_eq!(replies[0], Value::Simple("OK".into()));
    assert!(matches!(&replies[1], Value::Error(text) if text.starts_with("ERR")));
    assert_eq!(replies[2], Value::Integer(2));
    assert_eq!(replies[3], Value::Array(vec![]));
}

#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn auth_and_select_come_from_the_url() {
    let dir = TempDir::new();
    let server = RedisServer::start(&dir, &["--requirepass", "s3cret"]);

    // No password: the PING that ends connecting is refused.
    match RedisConnection::connect(&server.url()) {
        Err(RedisError::Server(text)) => assert!(text.starts_with("NOAUTH"), "{text}"),
        other => panic!("{:?}", other.map(|_| "connected")),
    }
    // A wrong one: refused by AUTH.
    match RedisConnection::connect(&server.url_with((":wrong@", ""))) {
        Err(RedisError::Server(text)) => assert!(text.starts_with("WRONGPASS"), "{text}"),
        other => panic!("{:?}", other.map(|_| "connected")),
    }

    // The right one, in db 3 and in db 0 (as the ACL user "default").
    let mut db3 = RedisConnection::connect(&server.url_with((":s3cret@", "/3"))).unwrap();
    let mut db0 = RedisConnection::connect(&server.url_with(("default:s3cret@", "/0"))).unwrap();
    db3.command(&["SET", "where", "three"]).unwrap();
    assert_eq!(
        db3.command(&["GET", "where"]).unwrap(),
        Value::Bulk(b"three".to_vec())
    );
    assert_eq!(db0.command(&["GET", "where"]).unwrap(), Value::NullBulk);
    db0.command(&["SELECT", "3"]).unwrap();
    assert_eq!(
        db0.command(&["GET", "where"]).unwrap(),
        Value::Bulk(b"three".to_vec())
    );

    // A db the server does not have: refused by SELECT.
    match RedisConnection::connect(&server.url_with((":s3cret@", "/99"))) {
        Err(RedisError::Server(text)) => assert!(text.contains("out of range"), "{text}"),
        other => panic!("{:?}", other.map(|_| "connected")),
    }
}

#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn reconnect_after_a_restart_loses_nothing_acknowledged_with_aof() {
    let dir = TempDir::new();
    let mut server = RedisServer::start(
        &dir,
        &[
            "--requirepass",
            "pw",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ],
    );
    let url = server.url_with((":pw@", "/2"));
    let mut store = Store::new(RedisConnection::connect(&url).unwrap(), 1000);
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let text = format!("message {i}");
        acknowledged.push(store.append("lobby", &[("text", text.as_bytes())]).unwrap());
    }

    // Crash Redis, and bring it back on the same port a little later, while
    // the client is already trying to reconnect.
    server.kill();
    let restarter = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        server.spawn().expect("restart redis-server");
        server
    });

    // The next call finds the connection gone, and the one after knows it.
    let err = store.stream_len("lobby").unwrap_err();
    assert!(err.is_connection_error(), "{err}");
    assert!(!store.redis().is_connected());
    assert!(matches!(
        store.stream_len("lobby"),
        Err(RedisError::NotConnected)
    ));

    let mut backoff =
        Backoff::new(Duration::from_millis(20), Duration::from_millis(200)).with_max_attempts(100);
    store.redis().reconnect_with(&mut backoff).unwrap();
    let _server = restarter.join().unwrap();
    assert!(store.redis().is_connected());

    // AUTH and SELECT were run again: the entries are in db 2, and all of
    // them survived the SIGKILL.
    let entries = store.read_after("lobby", StreamId::ZERO, 0, 100).unwrap();
    let found: Vec<(StreamId, u64)> = entries.iter().map(|e| (e.id, e.seq().unwrap())).collect();
    assert_eq!(found, acknowledged);
    assert_eq!(entries[19].get("text"), Some(&b"message 19"[..]));
    // And the sequence goes on from where it was.
    let (id, seq) = store.append("lobby", &[("text", b"after")]).unwrap();
    assert_eq!(seq, 21);
    assert!(id > acknowledged[19].0);
}

// ---------------------------------------------------------------------------
// The stream operations.
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn append_numbers_events_and_reads_give_them_back_in_order() {
    let dir = TempDir::new();
    let server = RedisServer::start(&dir, &[]);
    let mut store = store(&server, 1000);

    let mut appended = Vec::new();
    for i in 1..=5u64 {
        let text = format!("hello {i}");
        let (id, seq) = store
            .append("lobby", &[("nick", b"ann"), ("text", text.as_bytes())])
            .unwrap();
        assert_eq!(seq, i);
        appended.push(id);
    }
    // Rooms are numbered separately.
    assert_eq!(store.append("other", &[("text", b"x")]).unwrap().1, 1);
    assert!(appended.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(store.stream_len("lobby").unwrap(), 5);

    let all = store.read_after("lobby", StreamId::ZERO, 0, 100).unwrap();
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), appended);
    assert_eq!(all[2].seq(), Some(3));
    assert_eq!(all[2].fields[0].0, "seq");
    assert_eq!(all[2].get("nick"), Some(&b"ann"[..]));
    assert_eq!(all[2].get("text"), Some(&b"hello 3"[..]));

    // After an id: exclusive, and COUNT respected.
    let after = store.read_after("lobby", appended[1], 0, 2).unwrap();
    assert_eq!(
        after.iter().map(|e| e.seq().unwrap()).collect::<Vec<_>>(),
        [3, 4]
    );
    let after = store.range_after("lobby", appended[1], 100).unwrap();
    assert_eq!(
        after.iter().map(|e| e.seq().unwrap()).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    assert!(
        store
            .range_after("lobby", appended[4], 100)
            .unwrap()
            .is_empty()
    );

    // The last entries, oldest first.
    let last = store.last_entries("lobby", 2).unwrap();
    assert_eq!(
        last.iter().map(|e| e.seq().unwrap()).collect::<Vec<_>>(),
        [4, 5]
    );
    assert_eq!(store.last_entries("lobby", 100).unwrap(), all);
    assert!(store.last_entries("empty", 10).unwrap().is_empty());
    assert!(
        store
            .read_after("empty", StreamId::ZERO, 0, 10)
            .unwrap()
            .is_empty()
    );
}

/// An append sent again with the same idempotency key (its reply was
/// lost) is stored once: the retry answers `Duplicate`, and the stream and
/// its numbers are as if it had been sent once. Another writer's counters
/// are its own.
#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn an_append_retried_with_its_key_is_stored_once() {
    use wschat::cluster::stream::{AppendKey, Appended};
    let dir = TempDir::new();
    let server = RedisServer::start(&dir, &[]);
    let mut store = store(&server, 1000);
    let batch = |writer, counters: &[u64]| -> Vec<_> {
        counters
            .iter()
            .map(|&counter| {
                let text = format!("{writer} {counter}").into_bytes();
                (AppendKey { writer, counter }, vec![("text", text)])
            })
            .collect()
    };
    let first = store
        .append_keyed("lobby", &batch("n1#1", &[1, 2, 3]))
        .unwrap();
    assert!(first.iter().all(|r| matches!(r, Ok(Appended::New(..)))));
    // The same three again, and a new one behind them: only it is stored.
    let again = store
        .append_keyed("lobby", &batch("n1#1", &[1, 2, 3, 4]))
        .unwrap();
    let kinds: Vec<bool> = again
        .iter()
        .map(|r| matches!(r, Ok(Appended::Duplicate)))
        .collect();
    assert_eq!(kinds, [true, true, true, false]);
    let Ok(Appended::New(_, seq)) = again[3] else {
        panic!("{again:?}")
    };
    assert_eq!(seq, 4, "numbers as if each was sent once");
    // Another writer's counter 1 is not a duplicate.
    let other = store.append_keyed("lobby", &batch("n2#2", &[1])).unwrap();
    assert!(matches!(other[0], Ok(Appended::New(_, 5))));
    assert_eq!(store.stream_len("lobby").unwrap(), 5);
    // Appends without a key are never taken for duplicates.
    store.append("lobby", &[("text", b"plain")]).unwrap();
    store.append("lobby", &[("text", b"plain")]).unwrap();
    assert_eq!(store.stream_len("lobby").unwrap(), 7);
}

#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn concurrent_appends_get_gapless_numbers_in_stream_order() {
    const THREADS: usize = 4;
    const EACH: usize = 50;
    let dir = TempDir::new();
    let server = RedisServer::start(&dir, &[]);
    let url = server.url();
    let start = Arc::new(Barrier::new(THREADS));
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (url, start) = (url.clone(), start.clone());
            thread::spawn(move || {
                let mut store = Store::new(RedisConnection::connect(&url).unwrap(), 10_000);
                start.wait();
                (0..EACH)
                    .map(|i| {
                        let text = format!("{t}/{i}");
                        let (id, seq) =
                            store.append("lobby", &[("text", text.as_bytes())]).unwrap();
                        (id, seq, text)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut returned: Vec<(StreamId, u64, String)> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();

    let mut store = store(&server, 10_000);
    let entries = store.range_after("lobby", StreamId::ZERO, 1000).unwrap();
    assert_eq!(entries.len(), THREADS * EACH);
    // In stream order, the numbers are exactly 1, 2, 3, ...: no gap, no
    // duplicate, never backwards.
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq().unwrap()).collect();
    assert_eq!(seqs, (1..=(THREADS * EACH) as u64).collect::<Vec<_>>());
    // And each writer was told the id and number its entry really got.
    returned.sort();
    let stored: Vec<(StreamId, u64, String)> = entries
        .iter()
        .map(|e| {
            let text = String::from_utf8(e.get("text").unwrap().to_vec()).unwrap();
            (e.id, e.seq().unwrap(), text)
        })
        .collect();
    assert_eq!(returned, stored);
}

#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn read_after_blocks_until_an_event_arrives_or_the_wait_ends() {
    let dir = TempDir::new();
    let server = RedisServer::start(&dir, &[]);
    let mut writer = store(&server, 1000);
    let (first, _) = writer.append("lobby", &[("text", b"before")]).unwrap();

    // Nothing after `first` yet: a short wait returns empty.
    let mut reader = store(&server, 1000);
    assert!(
        reader
            .read_after("lobby", first, 100, 10)
            .unwrap()
            .is_empty()
    );
    assert!(reader.redis().is_connected());

    // A long wait returns as soon as an event is appended.
    let blocked = thread::spawn(move || {
        let events = reader.read_after("lobby", first, 10_000, 10).unwrap();
        (reader, events)
    });
    thread::sleep(Duration::from_millis(200));
    let (second, seq) = writer.append("lobby", &[("text", b"during")]).unwrap();
    let (_reader, events) = blocked.join().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].id, events[0].seq()), (second, Some(seq)));
    assert_eq!(events[0].get("text"), Some(&b"during"[..]));
}

#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn maxlen_trims_the_oldest_events_approximately() {
    // Redis trims `MAXLEN ~` by whole radix-tree nodes; small nodes make
    // the "approximately" small.
    const NODE: u64 = 10;
    const MAXLEN: u64 = 50;
    let dir = TempDir::new();
    let server = RedisServer::start(&dir, &["--stream-node-max-entries", "10"]);
    let mut store = store(&server, MAXLEN as usize);
    for _ in 0..500 {
        store.append("lobby", &[("text", b"x")]).unwrap();
    }
    let len = store.stream_len("lobby").unwrap();
    assert!((MAXLEN..=MAXLEN + NODE).contains(&len), "XLEN {len}");
    let kept = store.range_after("lobby", StreamId::ZERO, 1000).unwrap();
    // The newest are kept, the oldest are gone, and the numbering went on.
    assert_eq!(kept.last().unwrap().seq(), Some(500));
    assert_eq!(kept[0].seq(), Some(500 - len + 1));
}

// ---------------------------------------------------------------------------
// Nicknames and nodes.
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn a_node_without_heartbeats_expires() {
    let dir = TempDir::new();
    let server = RedisServer::start(&dir, &[]);
    let mut store = store(&server, 1000);
    let (short, long) = (node("short"), node("long"));
    store.heartbeat(&short, Duration::from_millis(300)).unwrap();
    store.heartbeat(&long, Duration::from_secs(60)).unwrap();
    assert!(store.is_alive(&short).unwrap());
    assert_eq!(store.live_nodes().unwrap(), [long.clone(), short.clone()]);
    assert!(store.dead_nodes().unwrap().is_empty());
    assert!(!store.is_alive(&node("never")).unwrap());

    // Wait for the short ttl to pass (Redis expires keys on access).
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.is_alive(&short).unwrap() {
        assert!(Instant::now() < deadline, "the heartbeat never expired");
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(store.live_nodes().unwrap(), std::slice::from_ref(&long));
    assert_eq!(store.dead_nodes().unwrap(), std::slice::from_ref(&short));

    // A new heartbeat brings it back; forgetting takes it off the lists.
    store.heartbeat(&short, Duration::from_secs(60)).unwrap();
    assert_eq!(store.live_nodes().unwrap(), [long.clone(), short.clone()]);
    store.forget_node(&long).unwrap();
    assert_eq!(store.live_nodes().unwrap(), [short]);
}

/// Node numbers are never given twice, even by a Redis that lost the
/// counter, once the running nodes have raised it back to theirs.
#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn node_numbers_are_not_given_again_after_the_counter_is_lost() {
    let dir = TempDir::new();
    let server = RedisServer::start(&dir, &[]);
    let mut store = store(&server, 1000);
    assert_eq!(store.next_node_number().unwrap(), 1);
    assert_eq!(store.next_node_number().unwrap(), 2);
    store.redis().command(&[&b"FLUSHALL"[..]]).unwrap();
    store.keep_node_number(2).unwrap();
    store.keep_node_number(1).unwrap(); // never lowers it
    assert_eq!(store.next_node_number().unwrap(), 3);
}

#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn exactly_one_node_claims_a_dead_nodes_cleanup() {
    const CLAIMERS: usize = 8;
    let beat = Duration::from_millis(300);
    let dir = TempDir::new();
    let server = RedisServer::start(&dir, &[]);
    let mut store = store(&server, 1000);
    let dead = node("dead");
    let claim = Duration::from_millis(500);

    // Alive: nobody may clean up after it.
    store.heartbeat(&dead, Duration::from_secs(60)).unwrap();
    store.heartbeat(&node("c0"), beat).unwrap();
    assert!(
        !store
            .claim_cleanup(&dead, &node("c0"), claim, beat)
            .unwrap()
    );
    store.redis().command(&["DEL", "wschat:node:dead"]).unwrap();
    // Its key is gone, but a claimer that has not been beating for a
    // whole ttl since has no evidence yet.
    assert!(
        !store
            .claim_cleanup(&dead, &node("c0"), claim, beat)
            .unwrap()
    );
    // Nor has one that never beat at all.
    assert!(!store.claim_cleanup(&dead, &node("x"), claim, beat).unwrap());

    let url = server.url();
    let start = Arc::new(Barrier::new(CLAIMERS));
    let claimers: Vec<_> = (0..CLAIMERS)
        .map(|i| {
            let (url, start, dead) = (url.clone(), start.clone(), dead.clone());
            thread::spawn(move || {
                let mut store = Store::new(RedisConnection::connect(&url).unwrap(), 1000);
                let me = node(&format!("c{i}"));
                // Beating for more than a ttl since the dead node's last.
                let began = Instant::now();
                while began.elapsed() < beat + Duration::from_millis(100) {
                    store.heartbeat(&me, beat).unwrap();
                    thread::sleep(Duration::from_millis(50));
                }
                store.heartbeat(&me, beat).unwrap();
                start.wait();
                store.claim_cleanup(&dead, &me, claim, beat).unwrap()
            })
        })
        .collect();
    let wins = claimers
        .into_iter()
        .map(|c| c.join().unwrap())
        .filter(|&won| won)
        .count();
    assert_eq!(wins, 1);

    // The claim expires, so that another node can take over if the
    // claimer died before finishing.
    let deadline = Instant::now() + Duration::from_secs(5);
    let late = node("late");
    loop {
        store.heartbeat(&late, beat).unwrap();
        if store.claim_cleanup(&dead, &late, claim, beat).unwrap() {
            break;
        }
        assert!(Instant::now() < deadline, "the claim never expired");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Redis away (or the nodes cut off) for longer than the heartbeat's ttl:
/// every key expires, for the living too. The first node back must not
/// declare the others dead: it has no evidence until it has itself been
/// beating for a whole ttl, and by then they are back. One that really
/// stays silent for a ttl after that is claimed.
#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn an_outage_everyone_shared_declares_nobody_dead() {
    let ttl = Duration::from_millis(400);
    let claim = Duration::from_secs(10);
    let dir = TempDir::new();
    let server = RedisServer::start(&dir, &[]);
    let mut store = store(&server, 1000);
    let (a, b, c) = (node("a"), node("b"), node("c"));
    for n in [&a, &b, &c] {
        store.heartbeat(n, ttl).unwrap();
    }
    // Nobody beats for twice the ttl: every key expires.
    thread::sleep(ttl * 2);
    assert!(!store.is_alive(&b).unwrap() && !store.is_alive(&c).unwrap());
    // `a` is back first: its run has just begun, so it claims nobody.
    let run = store.heartbeat(&a, ttl).unwrap();
    assert!(
        run < ttl,
        "a gap longer than the ttl starts a new run: {run:?}"
    );
    assert!(store.dead_nodes().unwrap().contains(&b));
    assert!(!store.claim_cleanup(&b, &a, claim, ttl).unwrap());
    assert!(!store.claim_cleanup(&c, &a, claim, ttl).unwrap());
    // `b` comes back within a ttl; `c` never does.
    let began = Instant::now();
    while began.elapsed() < ttl * 2 {
        store.heartbeat(&a, ttl).unwrap();
        if began.elapsed() > ttl / 2 {
            store.heartbeat(&b, ttl).unwrap();
        }
        assert!(
            !store.claim_cleanup(&b, &a, claim, ttl).unwrap(),
            "b is alive"
        );
        thread::sleep(Duration::from_millis(50));
    }
    store.heartbeat(&a, ttl).unwrap();
    assert!(store.heartbeat(&a, ttl).unwrap() >= ttl);
    assert!(
        store.claim_cleanup(&c, &a, claim, ttl).unwrap(),
        "c is gone"
    );
}

// ---------------------------------------------------------------------------
// The client against a fake server: timeouts and hostile replies. These
// need no redis-server.
// ---------------------------------------------------------------------------

/// A one-connection server: for each command received it sends the next
/// reply of `replies` (`None`: say nothing and keep the connection open).
/// Returns its URL.
fn fake_redis(replies: Vec<Option<Vec<u8>>>) -> RedisUrl {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        for reply in replies {
            // Read one whole command (a RESP array, so the same parser works).
            loop {
                if let Ok(Parse::Complete { used, .. }) = parse_reply(&buf) {
                    buf.drain(..used);
                    break;
                }
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            match reply {
                Some(bytes) => {
                    if stream.write_all(&bytes).is_err() {
                        return;
                    }
                }
                None => {
                    // Silent until the client gives up and closes.
                    let _ = stream.read(&mut [0u8; 1]);
                    return;
                }
            }
        }
        // Then close.
    });
    RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap()
}

fn short_timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(2),
        io: Duration::from_millis(300),
    }
}

fn pong() -> Option<Vec<u8>> {
    Some(b"+PONG\r\n".to_vec())
}

#[test]
fn a_silent_server_is_a_timeout_not_a_hang() {
    let url = fake_redis(vec![pong(), None]);
    let mut client = RedisConnection::connect_with(&url, short_timeouts()).unwrap();
    assert!(matches!(
        client.command(&["GET", "k"]),
        Err(RedisError::Timeout)
    ));
    // The late reply could arrive any time now: the connection is dropped.
    assert!(!client.is_connected());
    assert!(matches!(
        client.command(&["GET", "k"]),
        Err(RedisError::NotConnected)
    ));
}

#[test]
fn a_blocking_command_gets_its_wait_plus_the_io_timeout() {
    // The fake answers after 600 ms: over the 300 ms I/O timeout, but within
    // a 1 s wait plus it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf); // PING
        stream.write_all(b"+PONG\r\n").unwrap();
        let _ = stream.read(&mut buf); // XREAD
        thread::sleep(Duration::from_millis(600));
        let _ = stream.write_all(b"*-1\r\n");
        let _ = stream.read(&mut buf); // until the client closes
    });
    let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
    let mut store = Store::new(
        RedisConnection::connect_with(&url, short_timeouts()).unwrap(),
        100,
    );
    assert!(
        store
            .read_after("lobby", StreamId::ZERO, 1000, 10)
            .unwrap()
            .is_empty()
    );
    drop(store);
    server.join().unwrap();
}

#[test]
fn malformed_replies_are_protocol_errors_and_drop_the_connection() {
    let cases: [(&[u8], RespError); 5] = [
        (b"?what\r\n", RespError::UnknownType(b'?')),
        (b"$99999999999\r\n", RespError::BulkTooLong(99999999999)),
        (b"*99999999999\r\n", RespError::ArrayTooLong(99999999999)),
        (b":12x\r\n", RespError::BadInteger),
        (b"$3\r\nabcdef", RespError::MissingCrlf),
    ];
    for (reply, expected) in cases {
        let url = fake_redis(vec![pong(), Some(reply.to_vec())]);
        let mut client = RedisConnection::connect_with(&url, short_timeouts()).unwrap();
        let err = client.command(&["GET", "k"]).unwrap_err();
        assert!(
            matches!(&err, RedisError::Protocol(e) if *e == expected),
            "{:?}: {err:?}",
            String::from_utf8_lossy(reply)
        );
        assert!(!client.is_connected());
    }
}

#[test]
fn a_reply_cut_short_by_a_close_is_closed() {
    let url = fake_redis(vec![pong(), Some(b"$10\r\nhal".to_vec())]);
    let mut client = RedisConnection::connect_with(&url, short_timeouts()).unwrap();
    match client.command(&["GET", "k"]) {
        Err(RedisError::Closed) | Err(RedisError::Io(_)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn replies_of_the_wrong_shape_are_unexpected_and_keep_the_connection() {
    let url = fake_redis(vec![
        pong(),
        Some(b":5\r\n".to_vec()),              // append wants [id, seq]
        Some(b"*1\r\n$3\r\nx-y\r\n".to_vec()), // XRANGE wants entries
        Some(b"+OK\r\n".to_vec()),             // INCR wants an integer
    ]);
    let mut store = Store::new(
        RedisConnection::connect_with(&url, short_timeouts()).unwrap(),
        100,
    );
    let unexpected = |r: Result<(), RedisError>| {
        let e = r.unwrap_err();
        assert!(matches!(e, RedisError::UnexpectedReply(_)), "{e:?}");
        assert!(!e.is_connection_error());
    };
    unexpected(store.append("lobby", &[("text", b"x")]).map(drop));
    unexpected(store.range_after("lobby", StreamId::ZERO, 10).map(drop));
    unexpected(store.next_node_number().map(drop));
    assert!(store.redis().is_connected());
}

#[test]
fn connecting_to_nothing_fails_quickly_with_an_io_error() {
    let url = RedisUrl::parse(&format!("redis://127.0.0.1:{}", free_port())).unwrap();
    match RedisConnection::connect_with(&url, short_timeouts()) {
        Err(RedisError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
        other => panic!("{:?}", other.map(|_| "connected")),
    }
    // And reconnect_with gives up when its backoff runs out.
    let mut backoff =
        Backoff::new(Duration::from_millis(1), Duration::from_millis(4)).with_max_attempts(3);
    let url2 = fake_redis(vec![pong()]);
    let mut client = RedisConnection::connect_with(&url2, short_timeouts()).unwrap();
    // The fake closes after its one reply: the next command sees it.
    assert!(client.command(&["PING"]).unwrap_err().is_connection_error());
    assert!(client.reconnect_with(&mut backoff).is_err());
    assert_eq!(backoff.next(), None, "all attempts used");
}

// ---------------------------------------------------------------------------
// Cluster mode end to end: wschat nodes (the real binary) sharing a Redis.
// ---------------------------------------------------------------------------

use common::Client as WsClient;
use std::net::SocketAddr;
use wschat::json::{self, Value as Json};

const V1: &[&str] = &["wschat.v1"];

/// One `wschat --redis` process, its log in a file; SIGKILLed on drop.
struct Node {
    child: Option<Child>,
    addr: SocketAddr,
    log: PathBuf,
}

impl Node {
    fn start(redis: &RedisServer, dir: &TempDir, name: &str) -> Node {
        Node::start_with(redis, dir, name, &[])
    }

    fn start_with(redis: &RedisServer, dir: &TempDir, name: &str, extra: &[&str]) -> Node {
        let log = dir.0.join(format!(
            "{name}-{}.log",
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&log).unwrap();
        let url = format!("redis://127.0.0.1:{}", redis.port);
        let child = Command::new(env!("CARGO_BIN_EXE_wschat"))
            .args([
                "--addr",
                "127.0.0.1:0",
                "--redis",
                &url,
                "--node-name",
                name,
            ])
            .args(["--rate-limit", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn wschat");
        let mut node = Node {
            child: Some(child),
            addr: "127.0.0.1:0".parse().unwrap(),
            log,
        };
        let deadline = Instant::now() + STARTUP;
        loop {
            let text = node.log_text();
            if let Some(rest) = text.split("Listening on http://").nth(1) {
                let addr = rest.split('/').next().unwrap();
                node.addr = addr.parse().unwrap();
                return node;
            }
            if let Some(status) = node.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("wschat {name} exited ({status}):\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "wschat {name} did not start:\n{text}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// A node started by the test itself: waits for it to listen.
    fn adopt(child: Child, log: PathBuf) -> Node {
        let mut node = Node {
            child: Some(child),
            addr: "127.0.0.1:0".parse().unwrap(),
            log,
        };
        let deadline = Instant::now() + STARTUP;
        loop {
            let text = node.log_text();
            if let Some(rest) = text.split("Listening on http://").nth(1) {
                node.addr = rest.split('/').next().unwrap().parse().unwrap();
                return node;
            }
            assert!(Instant::now() < deadline, "wschat did not start:\n{text}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: the node gets no chance to say goodbye.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn v1(&self) -> WsClient {
        WsClient::connect(self.addr, "/", V1)
    }

    fn raw(&self) -> WsClient {
        WsClient::connect(self.addr, "/", &[])
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A v1 client that has read its welcome; returns it with its id.
fn joined(node: &Node) -> (WsClient, u64, Json) {
    let mut client = node.v1();
    let welcome = json::parse(&client.recv_text()).unwrap();
    assert_eq!(welcome.get("type").unwrap().as_str(), Some("welcome"));
    let id = welcome
        .get("you")
        .unwrap()
        .get("id")
        .unwrap()
        .as_u64()
        .unwrap();
    (client, id, welcome)
}

/// The next v1 event of `kind`, skipping others.
fn next_event(client: &mut WsClient, kind: &str) -> Json {
    let deadline = Instant::now() + common::TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "no {kind} event in time");
        let event = json::parse(&client.recv_text()).unwrap();
        if event.get("type").unwrap().as_str() == Some(kind) {
            return event;
        }
    }
}

/// `(id, text)` of a `message` event.
fn message(event: &Json) -> (u64, String) {
    (
        event.get("id").unwrap().as_u64().unwrap(),
        event.get("text").unwrap().as_str().unwrap().to_string(),
    )
}

fn user_ids(users: &Json) -> Vec<u64> {
    let Json::Array(users) = users else {
        panic!("users is not an array")
    };
    users
        .iter()
        .map(|u| u.get("id").unwrap().as_u64().unwrap())
        .collect()
}

fn history_ids(welcome: &Json) -> Vec<u64> {
    let Json::Array(history) = welcome.get("history").unwrap() else {
        panic!("history is not an array")
    };
    history.iter().map(|m| message(m).0).collect()
}

fn three_nodes(redis: &RedisServer, dir: &TempDir) -> [Node; 3] {
    ["n1", "n2", "n3"].map(|name| Node::start(redis, dir, name))
}

#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn three_nodes_chat_in_one_order() {
    let dir = TempDir::new();
    let redis = RedisServer::start(&dir, &[]);
    let nodes = three_nodes(&redis, &dir);
    // Two clients per node, all joined before anyone speaks.
    let mut clients: Vec<(WsClient, u64)> = Vec::new();
    for node in nodes.iter().chain(nodes.iter()) {
        let (client, id, _) = joined(node);
        clients.push((client, id));
    }
    let ids: Vec<u64> = clients.iter().map(|(_, id)| *id).collect();
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "client ids unique across nodes: {ids:?}"
    );
    const EACH: usize = 15;
    let total = EACH * clients.len();
    let seen: Vec<Vec<(u64, String)>> = thread::scope(|scope| {
        let handles: Vec<_> = clients
            .iter_mut()
            .enumerate()
            .map(|(n, (client, _))| {
                let mut sender = client.stream.try_clone().unwrap();
                scope.spawn(move || {
                    let writer = thread::spawn(move || {
                        for i in 0..EACH {
                            let frame = common::masked(
                                true,
                                wschat::protocol::frame::OpCode::Text,
                                format!("c{n} m{i}").as_bytes(),
                            );
                            sender.write_all(&frame).unwrap();
                        }
                    });
                    let mut got = Vec::new();
                    while got.len() < total {
                        got.push(message(&next_event(client, "message")));
                    }
                    writer.join().unwrap();
                    got
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for got in &seen {
        assert!(
            got.windows(2).all(|w| w[0].0 < w[1].0),
            "ids strictly increasing: {got:?}"
        );
        assert_eq!(got, &seen[0], "every client sees one order");
    }
    // Each sender's own lines stay in the order it sent them.
    for n in 0..clients.len() {
        let mine: Vec<&str> = seen[0]
            .iter()
            .map(|(_, t)| t.as_str())
            .filter(|t| t.starts_with(&format!("c{n} ")))
            .collect();
        let sent: Vec<String> = (0..EACH).map(|i| format!("c{n} m{i}")).collect();
        assert_eq!(mine, sent);
    }
}

#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn raw_clients_reach_everyone_else_on_every_node() {
    let dir = TempDir::new();
    let redis = RedisServer::start(&dir, &[]);
    let nodes = three_nodes(&redis, &dir);
    let (mut watcher, _, _) = joined(&nodes[2]);
    let mut sender = nodes[0].raw();
    let mut same_node = nodes[0].raw();
    let mut other_node = nodes[1].raw();
    // Everyone is in the room once the watcher has seen three joins.
    for _ in 0..3 {
        next_event(&mut watcher, "join");
    }
    sender.text("hello from a raw client");
    assert_eq!(same_node.recv_text(), "hello from a raw client");
    assert_eq!(other_node.recv_text(), "hello from a raw client");
    let (_, text) = message(&next_event(&mut watcher, "message"));
    assert_eq!(text, "hello from a raw client");
    sender.send(wschat::protocol::frame::OpCode::Binary, &[0, 1, 255]);
    match other_node.recv_data() {
        wschat::protocol::message::Message::Binary(data) => assert_eq!(data, [0, 1, 255]),
        other => panic!("expected binary, got {other:?}"),
    }
    // Not back to the sender: the next thing it gets is another's line.
    other_node.text("reply");
    assert_eq!(sender.recv_text(), "reply");
}

#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn presence_and_nicknames_hold_across_nodes() {
    let dir = TempDir::new();
    let redis = RedisServer::start(&dir, &[]);
    let nodes = three_nodes(&redis, &dir);
    let (mut ann, ann_id, _) = joined(&nodes[0]);
    let (mut bo, bo_id, welcome) = joined(&nodes[1]);
    assert_eq!(
        user_ids(welcome.get("users").unwrap()),
        vec![ann_id, bo_id],
        "bo's welcome lists ann, on another node"
    );
    let join = next_event(&mut ann, "join");
    assert_eq!(
        join.get("user").unwrap().get("id").unwrap().as_u64(),
        Some(bo_id)
    );

    ann.text("/nick ann");
    let nick = next_event(&mut bo, "nick");
    assert_eq!(
        nick.get("user").unwrap().get("nick").unwrap().as_str(),
        Some("ann")
    );
    bo.text("/nick ANN");
    let error = next_event(&mut bo, "error");
    assert_eq!(error.get("code").unwrap().as_str(), Some("nick_taken"));

    // A race on two nodes: exactly one wins, and everyone sees the winner.
    let (mut cy, cy_id, _) = joined(&nodes[2]);
    let (mut di, di_id, _) = joined(&nodes[0]);
    cy.text("/nick zed");
    di.text("/nick zed");
    let outcome = |client: &mut WsClient| loop {
        let event = json::parse(&client.recv_text()).unwrap();
        match event.get("type").unwrap().as_str() {
            Some("error") => return None,
            Some("nick") if event.get("old").unwrap().as_str() != Some("ann") => {
                let user = event.get("user").unwrap();
                if user.get("nick").unwrap().as_str() == Some("zed") {
                    return user.get("id").unwrap().as_u64();
                }
            }
            _ => {}
        }
    };
    let (cy_saw, di_saw) = (outcome(&mut cy), outcome(&mut di));
    let winner = cy_saw.or(di_saw).expect("someone became zed");
    assert!([cy_id, di_id].contains(&winner));
    assert!(cy_saw.is_none() || di_saw.is_none() || cy_saw == di_saw);
    // A third node's client sees the winner, once.
    let zed = next_event_where(&mut ann, "nick", |e| {
        e.get("user").unwrap().get("nick").unwrap().as_str() == Some("zed")
    });
    assert_eq!(
        zed.get("user").unwrap().get("id").unwrap().as_u64(),
        Some(winner)
    );
    // /who on any node gives the same list.
    ann.text("/who");
    bo.text("/who");
    let a = user_ids(next_event(&mut ann, "users").get("users").unwrap());
    let b = user_ids(next_event(&mut bo, "users").get("users").unwrap());
    assert_eq!(a, b);
    let mut everyone = vec![ann_id, bo_id, cy_id, di_id];
    everyone.sort();
    assert_eq!(a, everyone, "members are listed by id");
}

fn next_event_where(client: &mut WsClient, kind: &str, want: impl Fn(&Json) -> bool) -> Json {
    let deadline = Instant::now() + common::TIMEOUT;
    loop {
        assert!(
            Instant::now() < deadline,
            "no matching {kind} event in time"
        );
        let event = next_event(client, kind);
        if want(&event) {
            return event;
        }
    }
}

/// Collects v1 events for `wait`; the connection stays usable.
fn events_for(client: &mut WsClient, wait: Duration) -> Vec<Json> {
    let deadline = Instant::now() + wait;
    let mut events = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return events;
        }
        client.stream.set_read_timeout(Some(left)).unwrap();
        match client.try_recv() {
            Ok(wschat::protocol::message::Message::Text(t)) => {
                events.push(json::parse(&t).unwrap())
            }
            Ok(_) => {}
            Err(_) => {
                client
                    .stream
                    .set_read_timeout(Some(common::TIMEOUT))
                    .unwrap();
                return events;
            }
        }
    }
}

#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn a_killed_nodes_users_leave_once_and_it_rejoins_cleanly() {
    let dir = TempDir::new();
    let redis = RedisServer::start(&dir, &[]);
    let [n1, mut n2, n3] = three_nodes(&redis, &dir);
    let (mut ann, ann_id, _) = joined(&n1);
    let (mut cy, _, _) = joined(&n3);
    let (_bo, bo_id, _) = joined(&n2);
    let (_bo2, bo2_id, _) = joined(&n2);
    next_event(&mut ann, "join");
    next_event(&mut ann, "join");
    next_event(&mut ann, "join");
    let killed = Instant::now();
    n2.kill();
    // Heartbeats last 3 s: each of n2's users leaves within a few periods,
    // once, for everyone.
    for client in [&mut ann, &mut cy] {
        let events = events_for(client, Duration::from_secs(9));
        let mut leaves: Vec<u64> = events
            .iter()
            .filter(|e| e.get("type").unwrap().as_str() == Some("leave"))
            .map(|e| e.get("user").unwrap().get("id").unwrap().as_u64().unwrap())
            .collect();
        leaves.sort();
        assert_eq!(leaves, vec![bo_id, bo2_id], "each leaves exactly once");
    }
    assert!(killed.elapsed() < Duration::from_secs(20));
    // Back with the same name: its new users join a room without ghosts.
    let n2 = Node::start(&redis, &dir, "n2");
    let (_new, new_id, welcome) = joined(&n2);
    let users = user_ids(welcome.get("users").unwrap());
    assert!(
        !users.contains(&bo_id) && !users.contains(&bo2_id),
        "{users:?}"
    );
    assert!(users.contains(&ann_id) && users.contains(&new_id));
    assert!(!n2.log_text().contains("panic"));
}

#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn a_node_stopped_with_sigterm_says_its_users_left_at_once() {
    let dir = TempDir::new();
    let redis = RedisServer::start(&dir, &[]);
    let n1 = Node::start(&redis, &dir, "n1");
    let mut n2 = Node::start(&redis, &dir, "n2");
    let (mut ann, _, _) = joined(&n1);
    let (mut bo, bo_id, _) = joined(&n2);
    next_event(&mut ann, "join");
    let pid = n2.child.as_ref().unwrap().id().to_string();
    let stopped = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // bo is told the server is going away...
    bo.expect_close(1001);
    // ... and ann sees bo leave before any heartbeat could expire, once.
    let leave = next_event(&mut ann, "leave");
    assert_eq!(
        leave.get("user").unwrap().get("id").unwrap().as_u64(),
        Some(bo_id)
    );
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "{:?}",
        stopped.elapsed()
    );
    let status = n2.child.as_mut().unwrap().wait().unwrap();
    assert!(status.success(), "{status}");
    let later = events_for(&mut ann, Duration::from_secs(5));
    assert!(
        !later
            .iter()
            .any(|e| e.get("type").unwrap().as_str() == Some("leave")),
        "no second leave from a cleanup: {later:?}"
    );
}

#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn a_restarted_node_cleans_up_after_its_earlier_run() {
    let dir = TempDir::new();
    let redis = RedisServer::start(&dir, &[]);
    let n1 = Node::start(&redis, &dir, "n1");
    let mut n2 = Node::start(&redis, &dir, "n2");
    let (mut ann, _, _) = joined(&n1);
    let (_bo, bo_id, _) = joined(&n2);
    next_event(&mut ann, "join");
    n2.kill();
    // At once, before its heartbeat expires: the new run says its old
    // users left (and the other nodes, finding it alive, do not).
    let n2 = Node::start(&redis, &dir, "n2");
    let leave = next_event(&mut ann, "leave");
    assert_eq!(
        leave.get("user").unwrap().get("id").unwrap().as_u64(),
        Some(bo_id)
    );
    let later = events_for(&mut ann, Duration::from_secs(6));
    assert!(
        !later
            .iter()
            .any(|e| e.get("type").unwrap().as_str() == Some("leave")),
        "one leave only: {later:?}"
    );
    drop(n2);
}

#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn redis_restarting_mid_stream_loses_and_duplicates_nothing() {
    let dir = TempDir::new();
    let mut redis = RedisServer::start(&dir, &["--appendonly", "yes", "--appendfsync", "always"]);
    let nodes = [
        Node::start(&redis, &dir, "n1"),
        Node::start(&redis, &dir, "n2"),
    ];
    let (mut sender, _, welcome) = joined(&nodes[0]);
    let epoch = epoch_of(&welcome);
    let (mut receiver, _, _) = joined(&nodes[1]);
    next_event(&mut sender, "join");
    const COUNT: usize = 150;
    let mut writer = sender.stream.try_clone().unwrap();
    let sending = thread::spawn(move || {
        for i in 0..COUNT {
            let text = format!("line {i}");
            let frame =
                common::masked(true, wschat::protocol::frame::OpCode::Text, text.as_bytes());
            writer.write_all(&frame).unwrap();
            thread::sleep(Duration::from_millis(20));
        }
    });
    thread::sleep(Duration::from_millis(800));
    redis.kill();
    thread::sleep(Duration::from_millis(700));
    redis.spawn().expect("restart redis-server");
    sending.join().unwrap();

    // The sender hears about every line: its message, or an error.
    let mut delivered = Vec::new();
    let mut refused = 0;
    let mut delivered_after_refusal = 0;
    while delivered.len() + refused < COUNT {
        let event = json::parse(&sender.recv_text()).unwrap();
        match event.get("type").unwrap().as_str() {
            Some("message") => {
                delivered.push(message(&event));
                if refused > 0 {
                    delivered_after_refusal += 1;
                }
            }
            Some("error") => {
                assert_eq!(event.get("code").unwrap().as_str(), Some("unavailable"));
                refused += 1;
            }
            _ => {}
        }
    }
    // Lines sent while Redis was down are refused; a line in flight when
    // it went is retried (with its key) and goes through once.
    assert!(
        delivered.len() > refused && (refused == 0 || delivered_after_refusal > 0),
        "lines got through before and after the restart: {} delivered, {refused} refused",
        delivered.len()
    );
    // The other node shows exactly what the sender's node showed.
    let mut received = Vec::new();
    while received.len() < delivered.len() {
        received.push(message(&next_event(&mut receiver, "message")));
    }
    assert_eq!(received, delivered, "nothing lost or duplicated, one order");
    assert!(delivered.windows(2).all(|w| w[0].0 < w[1].0));
    // And the chat goes on.
    sender.text("after the restart");
    let (_, text) = message(&next_event(&mut receiver, "message"));
    assert_eq!(text, "after the restart");
    // With AOF nothing was lost: the same epoch, and resuming is exact.
    let last = delivered.last().unwrap().0;
    let path = format!("/?since={last}&epoch={epoch}");
    let mut late = WsClient::connect(nodes[1].addr, &path, V1);
    let welcome = next_event(&mut late, "welcome");
    assert_eq!(epoch_of(&welcome), epoch);
    assert!(welcome.get("gap").is_none(), "{welcome:?}");
}

#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn while_redis_is_away_messages_get_unavailable_and_upgrades_503() {
    let dir = TempDir::new();
    let mut redis = RedisServer::start(&dir, &[]);
    let node = Node::start(&redis, &dir, "n1");
    let (mut ann, _, _) = joined(&node);
    redis.kill();
    // The reader notices at once (its connection closes). A request that
    // came in just before (on a loaded machine) waits for its join, which
    // the writer retries, and is answered 503 "did not take the
    // connection in time" instead: then the next is asked.
    let deadline = Instant::now() + Duration::from_secs(15);
    let response = loop {
        let request =
            common::handshake_request(node.addr, "/", "Sec-WebSocket-Protocol: wschat.v1\r\n");
        let response = common::http_exchange(node.addr, request.as_bytes());
        let raced = response.contains("did not take the connection in time");
        if (common::status_of(&response) == 503 && !raced) || Instant::now() > deadline {
            break response;
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(common::status_of(&response), 503, "{response}");
    assert!(response.contains("cluster unavailable"), "{response}");
    ann.text("anyone there?");
    let error = next_event(&mut ann, "error");
    assert_eq!(error.get("code").unwrap().as_str(), Some("unavailable"));
    // Plain pages are still served.
    let page = common::http_exchange(
        node.addr,
        format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", node.addr).as_bytes(),
    );
    assert_eq!(common::status_of(&page), 200);
    redis.spawn().expect("restart redis-server");
    // Back: new clients join, and ann's next line goes through.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut bo = loop {
        match WsClient::try_connect(node.addr, "/", V1) {
            Ok(client) => break client,
            Err(e) => assert!(Instant::now() < deadline, "never back: {e}"),
        }
        thread::sleep(Duration::from_millis(100));
    };
    next_event(&mut bo, "welcome");
    ann.text("back");
    assert_eq!(message(&next_event(&mut bo, "message")).1, "back");
}

/// A TCP forwarder in front of Redis that can stop passing Redis's
/// replies on chosen connections (numbered in the order they were
/// opened, from 0): a connection that goes silent without closing.
struct Freezer {
    addr: SocketAddr,
    /// Which connections get no replies: `frozen(n)`.
    frozen: FreezeRule,
    /// A request holding these bytes has its connection cut as its
    /// reply comes back (Redis ran it; the client never hears).
    cut_reply_to: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
}

type FreezeRule = Arc<std::sync::Mutex<Box<dyn Fn(usize) -> bool + Send>>>;

impl Freezer {
    fn start(redis: &RedisServer) -> Freezer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen: FreezeRule = Arc::new(std::sync::Mutex::new(Box::new(|_| false)));
        let cut_reply_to: Arc<std::sync::Mutex<Option<Vec<u8>>>> = Arc::default();
        let (port, rules, cut) = (redis.port, frozen.clone(), cut_reply_to.clone());
        thread::spawn(move || {
            for (n, client) in listener.incoming().enumerate() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                    return;
                };
                let marked = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (cut, mark) = (cut.clone(), marked.clone());
                thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let len = match c_in.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(len) => len,
                        };
                        let mut cut = cut.lock().unwrap();
                        if let Some(marker) = cut.as_ref()
                            && buf[..len].windows(marker.len()).any(|w| w == &marker[..])
                        {
                            mark.store(true, Ordering::SeqCst);
                            *cut = None;
                        }
                        drop(cut);
                        if s_out.write_all(&buf[..len]).is_err() {
                            return;
                        }
                    }
                });
                let (mut s_in, mut c_out, rules) = (server, client, rules.clone());
                thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        while (rules.lock().unwrap())(n) {
                            thread::sleep(Duration::from_millis(20));
                        }
                        match s_in.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if marked.load(Ordering::SeqCst) => {
                                let _ = c_out.shutdown(std::net::Shutdown::Both);
                                let _ = s_in.shutdown(std::net::Shutdown::Both);
                                return;
                            }
                            Ok(len) => {
                                while (rules.lock().unwrap())(n) {
                                    thread::sleep(Duration::from_millis(20));
                                }
                                if c_out.write_all(&buf[..len]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Freezer {
            addr,
            frozen,
            cut_reply_to,
        }
    }

    fn freeze(&self, rule: impl Fn(usize) -> bool + Send + 'static) {
        *self.frozen.lock().unwrap() = Box::new(rule);
    }

    /// Cuts the connection that sends `marker`, as Redis's reply comes.
    fn cut_reply_to(&self, marker: &str) {
        *self.cut_reply_to.lock().unwrap() = Some(marker.as_bytes().to_vec());
    }

    /// A `wschat --redis` node that reaches Redis through this forwarder.
    fn node(&self, dir: &TempDir, name: &str) -> Node {
        let url = format!("redis://{}", self.addr);
        let log = dir.0.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_wschat"))
            .args([
                "--addr",
                "127.0.0.1:0",
                "--redis",
                &url,
                "--node-name",
                name,
            ])
            .args(["--rate-limit", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Node::adopt(child, log)
    }
}

/// Redis runs an append, and the connection breaks before its reply
/// arrives: the node cannot know the message was stored. It must not
/// tell the sender `unavailable` for a message everyone then sees, nor
/// store it twice: it sends the append again with the same idempotency
/// key, and Redis answers that it has it already.
#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn an_append_whose_reply_was_lost_is_delivered_once_and_not_refused() {
    let dir = TempDir::new();
    let redis = RedisServer::start(&dir, &[]);
    let freezer = Freezer::start(&redis);
    let n1 = freezer.node(&dir, "n1");
    let n2 = Node::start(&redis, &dir, "n2");
    let (mut ann, _, _) = joined(&n1);
    let (mut bo, _, _) = joined(&n2);
    next_event(&mut ann, "join");
    freezer.cut_reply_to("its reply was lost");
    ann.text("its reply was lost");
    ann.text("the next line");
    let seen = |client: &mut WsClient| {
        let mut texts = Vec::new();
        let mut errors = Vec::new();
        for event in events_for(client, Duration::from_secs(8)) {
            match event.get("type").unwrap().as_str() {
                Some("message") => texts.push(message(&event).1),
                Some("error") => {
                    errors.push(event.get("code").unwrap().as_str().unwrap().to_string())
                }
                _ => {}
            }
        }
        (texts, errors)
    };
    let (ann_texts, ann_errors) = seen(&mut ann);
    let (bo_texts, _) = seen(&mut bo);
    let log = std::fs::read_to_string(&n1.log).unwrap();
    assert!(
        log.contains("connection dropped"),
        "the reply was cut:\n{log}"
    );
    assert!(ann_errors.is_empty(), "the sender was told {ann_errors:?}");
    for texts in [&ann_texts, &bo_texts] {
        assert_eq!(
            texts,
            &["its reply was lost", "the next line"],
            "each line once, in order"
        );
    }
    assert!(
        log.contains("stored already"),
        "the retry was a duplicate:\n{log}"
    );
}

/// A node whose reader cannot read the stream (its connection, and every
/// one it opens again, goes silent) still appends joins: a new chat
/// connection must not wait for its join to come back forever, but get a
/// 503 with a reason within the join timeout.
#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn a_join_that_never_comes_back_is_answered_503() {
    // broadcaster::JOIN_TIMEOUT and JOIN_TIMED_OUT (a private module).
    const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
    const JOIN_TIMED_OUT: &str = "the chat did not take the connection in time";
    let dir = TempDir::new();
    let redis = RedisServer::start(&dir, &[]);
    let freezer = Freezer::start(&redis);
    let url = format!("redis://{}", freezer.addr);
    let child = Command::new(env!("CARGO_BIN_EXE_wschat"))
        .args([
            "--addr",
            "127.0.0.1:0",
            "--redis",
            &url,
            "--node-name",
            "n1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.0.join("n1.log")).unwrap())
        .spawn()
        .unwrap();
    let node = Node::adopt(child, dir.0.join("n1.log"));
    let (_ann, _, _) = joined(&node);
    // Connections: 0 the writer, 1 the reader, 2 the keeper, then the
    // reader's new ones. The writer and keeper go on working.
    freezer.freeze(|n| n == 1 || n >= 3);
    thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let request =
        common::handshake_request(node.addr, "/", "Sec-WebSocket-Protocol: wschat.v1\r\n");
    let mut stream = TcpStream::connect(node.addr).unwrap();
    stream.set_read_timeout(Some(JOIN_TIMEOUT * 3)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(
        started.elapsed() < JOIN_TIMEOUT * 2,
        "answered after {:?}: {response:?}",
        started.elapsed()
    );
    assert_eq!(common::status_of(&response), 503, "{response}");
    assert!(
        response.contains(JOIN_TIMED_OUT) || response.contains("cluster unavailable"),
        "{response}"
    );
    // Once the reader can read again, the node takes new clients.
    freezer.freeze(|_| false);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut bo = loop {
        match WsClient::try_connect(node.addr, "/", V1) {
            Ok(client) => break client,
            Err(e) => assert!(Instant::now() < deadline, "never back: {e}"),
        }
        thread::sleep(Duration::from_millis(200));
    };
    next_event(&mut bo, "welcome");
}

#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn a_client_resumes_on_another_node_with_since() {
    let dir = TempDir::new();
    let redis = RedisServer::start(&dir, &[]);
    let n1 = Node::start_with(&redis, &dir, "n1", &["--history", "4"]);
    let n2 = Node::start_with(&redis, &dir, "n2", &["--history", "4"]);
    let (mut ann, _, welcome) = joined(&n1);
    let epoch = epoch_of(&welcome);
    let mut ids = Vec::new();
    for i in 0..6 {
        ann.text(&format!("line {i}"));
        ids.push(message(&next_event(&mut ann, "message")).0);
    }
    // Saw up to line 3: gets lines 4 and 5, from the other node.
    let mut bo = WsClient::connect(n2.addr, &format!("/?since={}&epoch={epoch}", ids[3]), V1);
    let welcome = next_event(&mut bo, "welcome");
    assert_eq!(history_ids(&welcome), ids[4..].to_vec());
    assert!(welcome.get("gap").is_none());
    // Saw only line 0: lines 1 is gone from the history of 4.
    let mut cy = WsClient::connect(n2.addr, &format!("/?since={}&epoch={epoch}", ids[0]), V1);
    let welcome = next_event(&mut cy, "welcome");
    assert_eq!(history_ids(&welcome), ids[2..].to_vec());
    assert_eq!(welcome.get("gap"), Some(&Json::Bool(true)));
    // A node started later loads the same history from Redis.
    thread::sleep(Duration::from_millis(2500)); // a snapshot is stored
    let n3 = Node::start_with(&redis, &dir, "n3", &["--history", "4"]);
    let mut di = WsClient::connect(n3.addr, &format!("/?since={}&epoch={epoch}", ids[4]), V1);
    let welcome = next_event(&mut di, "welcome");
    assert_eq!(history_ids(&welcome), ids[5..].to_vec());
    let metrics = common::http_exchange(
        n2.addr,
        format!("GET /metrics HTTP/1.1\r\nHost: {}\r\n\r\n", n2.addr).as_bytes(),
    );
    assert!(metrics.contains("wschat_resume_gaps_total 1"), "{metrics}");
}

/// Connects a v1 client to `node` at `path` once the node takes clients
/// again (503 while Redis is away); returns it with its welcome.
fn join_when_back(node: &Node, path: &str) -> (WsClient, Json) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut client = loop {
        match WsClient::try_connect(node.addr, path, V1) {
            Ok(client) => break client,
            Err(e) => assert!(Instant::now() < deadline, "never back: {e}"),
        }
        thread::sleep(Duration::from_millis(100));
    };
    let welcome = next_event(&mut client, "welcome");
    (client, welcome)
}

/// Sends `text` until it is not refused as `unavailable` (a node's writer
/// learns that Redis restarted from its first failed append); returns the
/// id of the message.
fn say_when_back(client: &mut WsClient, text: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        client.text(text);
        let event = loop {
            let event = json::parse(&client.recv_text()).unwrap();
            match event.get("type").and_then(Json::as_str) {
                Some("error") => break event,
                Some("message") if message(&event).1 == text => return message(&event).0,
                _ => {}
            }
        };
        assert_eq!(
            event.get("code").and_then(Json::as_str),
            Some("unavailable")
        );
        assert!(Instant::now() < deadline, "{text:?} never got through");
        thread::sleep(Duration::from_millis(100));
    }
}

/// Redis restarted without AOF comes back empty: sequence numbers start
/// again at 1, so an id alone would resume into another history. The
/// epoch key went with the data: the nodes start a new epoch, and a client
/// resuming from the old one is told `gap`, on every node, a new one too.
#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn a_redis_restart_without_aof_is_a_new_epoch_and_resumes_get_a_gap() {
    let dir = TempDir::new();
    let mut redis = RedisServer::start(&dir, &[]); // no AOF, no RDB
    let n1 = Node::start(&redis, &dir, "n1");
    let n2 = Node::start(&redis, &dir, "n2");
    let (mut ann, _, welcome) = joined(&n1);
    let old_epoch = epoch_of(&welcome);
    let mut old_ids = Vec::new();
    for i in 0..3 {
        ann.text(&format!("before {i}"));
        old_ids.push(message(&next_event(&mut ann, "message")).0);
    }
    // Both nodes agree on the epoch before the restart.
    let (_bo, _, welcome) = joined(&n2);
    assert_eq!(epoch_of(&welcome), old_epoch);
    thread::sleep(Duration::from_millis(2500)); // a snapshot is stored

    redis.kill();
    thread::sleep(Duration::from_millis(300));
    redis.spawn().expect("restart redis-server");

    // Resuming from the old epoch, on either node: the whole (new, empty
    // or short) history and gap, never a continuation of the new ids.
    let last_old = *old_ids.last().unwrap();
    let resume_old = format!("/?since={}&epoch={old_epoch}", old_ids[0]);
    let (mut cy, welcome) = join_when_back(&n2, &resume_old);
    let new_epoch = epoch_of(&welcome);
    assert_ne!(new_epoch, old_epoch, "{welcome:?}");
    assert_eq!(welcome.get("gap"), Some(&Json::Bool(true)), "{welcome:?}");
    for id in history_ids(&welcome) {
        assert!(!old_ids.contains(&id) || id <= last_old, "{welcome:?}");
    }
    let texts = |welcome: &Json| {
        let Json::Array(history) = welcome.get("history").unwrap() else {
            panic!("no history")
        };
        history.iter().map(|m| message(m).1).collect::<Vec<_>>()
    };
    assert!(
        texts(&welcome).iter().all(|t| !t.starts_with("before")),
        "the old history is gone: {welcome:?}"
    );
    // The chat goes on in the new epoch, with ids from 1 again. (Said by
    // a client that joined after the restart: the stream lost the joins
    // of those before it, which a node started later does not know.)
    say_when_back(&mut ann, "ann is still here");
    let mut new_ids = Vec::new();
    for i in 0..3 {
        new_ids.push(say_when_back(&mut cy, &format!("after {i}")));
    }
    assert!(new_ids[0] <= last_old, "numbers started again: {new_ids:?}");
    let (_di, welcome) = join_when_back(&n1, &resume_old);
    assert_eq!(epoch_of(&welcome), new_epoch, "one epoch on every node");
    assert_eq!(welcome.get("gap"), Some(&Json::Bool(true)));
    // A position in the new epoch resumes exactly, on a node started now.
    let n3 = Node::start(&redis, &dir, "n3");
    let resume_new = format!("/?since={}&epoch={new_epoch}", new_ids[0]);
    let (_ed, welcome) = join_when_back(&n3, &resume_new);
    assert_eq!(epoch_of(&welcome), new_epoch);
    assert_eq!(history_ids(&welcome), new_ids[1..].to_vec());
    assert!(welcome.get("gap").is_none(), "{welcome:?}");
}

/// Data lost with no connection dropped (here `FLUSHALL`): the reader
/// sees the sequence numbers go back, finds the epoch key gone, and a new
/// epoch starts before the first entry of the new stream.
#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn data_lost_without_a_disconnection_is_a_new_epoch_too() {
    let dir = TempDir::new();
    let redis = RedisServer::start(&dir, &[]);
    let n1 = Node::start(&redis, &dir, "n1");
    let (mut ann, _, welcome) = joined(&n1);
    let old_epoch = epoch_of(&welcome);
    for i in 0..3 {
        ann.text(&format!("before {i}"));
        next_event(&mut ann, "message");
    }
    let mut admin = store(&redis, 100);
    admin.redis().command(&[&b"FLUSHALL"[..]]).unwrap();
    let (_bo, welcome) = join_when_back(&n1, &format!("/?since=1&epoch={old_epoch}"));
    assert_ne!(epoch_of(&welcome), old_epoch, "{welcome:?}");
    assert_eq!(welcome.get("gap"), Some(&Json::Bool(true)));
    assert_eq!(history_ids(&welcome), Vec::<u64>::new(), "{welcome:?}");
}

// ---------------------------------------------------------------------------
// Resuming on a single node (no Redis).
// ---------------------------------------------------------------------------

/// The epoch of a welcome.
fn epoch_of(welcome: &Json) -> String {
    welcome
        .get("epoch")
        .and_then(Json::as_str)
        .expect("a welcome names its epoch")
        .to_string()
}

#[test]
fn a_client_resumes_on_a_single_node_with_since() {
    let server = common::start_with(|c| c.history = 4);
    let mut ann = WsClient::connect(server.addr(), "/", V1);
    let epoch = epoch_of(&next_event(&mut ann, "welcome"));
    let mut ids = Vec::new();
    for i in 0..6 {
        ann.text(&format!("line {i}"));
        ids.push(message(&next_event(&mut ann, "message")).0);
    }
    let resume = |since: u64| {
        let path = format!("/?since={since}&epoch={epoch}");
        let mut client = WsClient::connect(server.addr(), &path, V1);
        next_event(&mut client, "welcome")
    };
    let welcome = resume(ids[3]);
    assert_eq!(history_ids(&welcome), ids[4..].to_vec());
    assert!(welcome.get("gap").is_none());
    let welcome = resume(ids[5]);
    assert_eq!(history_ids(&welcome), Vec::<u64>::new());
    let welcome = resume(ids[0]);
    assert_eq!(history_ids(&welcome), ids[2..].to_vec());
    assert_eq!(welcome.get("gap"), Some(&Json::Bool(true)));
    // Without since: the whole history, as before.
    let mut plain = WsClient::connect(server.addr(), "/", V1);
    assert_eq!(
        history_ids(&next_event(&mut plain, "welcome")),
        ids[2..].to_vec()
    );
    // A since that is not a number, or an epoch that cannot be one, is
    // refused with a reason.
    for (path, reason) in [
        ("/?since=x", "since must be a message id"),
        ("/?since=1&epoch=a%20b", "epoch must be"),
    ] {
        let request = common::handshake_request(server.addr(), path, "");
        let response = common::http_exchange(server.addr(), request.as_bytes());
        assert_eq!(common::status_of(&response), 400, "{response}");
        assert!(response.contains(reason), "{response}");
    }
}

/// A position is only good in its own epoch: the same id with another
/// epoch, or with none, gets the whole history and `gap`.
#[test]
fn a_single_node_answers_a_wrong_or_missing_epoch_with_a_gap() {
    let server = common::start_with(|c| c.history = 4);
    let mut ann = WsClient::connect(server.addr(), "/", V1);
    let epoch = epoch_of(&next_event(&mut ann, "welcome"));
    let mut ids = Vec::new();
    for i in 0..3 {
        ann.text(&format!("line {i}"));
        ids.push(message(&next_event(&mut ann, "message")).0);
    }
    let other = if epoch == "other" { "another" } else { "other" };
    for query in [
        format!("since={}&epoch={other}", ids[1]),
        format!("since={}", ids[1]),
    ] {
        let mut client = WsClient::connect(server.addr(), &format!("/?{query}"), V1);
        let welcome = next_event(&mut client, "welcome");
        assert_eq!(history_ids(&welcome), ids, "{query}");
        assert_eq!(welcome.get("gap"), Some(&Json::Bool(true)), "{query}");
        assert_eq!(epoch_of(&welcome), epoch, "the epoch to come back with");
    }
    let metrics = common::http_exchange(
        server.addr(),
        format!("GET /metrics HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr()).as_bytes(),
    );
    assert!(metrics.contains("wschat_resume_gaps_total 2"), "{metrics}");
}

/// Resuming across a restart: without a history file the ids start again
/// in a new epoch (a gap, even where the id is a valid one again); with
/// one, the epoch and the ids go on (no gap).
#[test]
fn a_restart_is_a_new_epoch_unless_the_history_file_keeps_it() {
    let dir = TempDir::new();
    let path = dir.0.join("history.jsonl");
    for with_file in [false, true] {
        let _ = std::fs::remove_file(&path);
        let start = || {
            common::start_with(|c| {
                c.history = 10;
                c.history_file = with_file.then(|| path.clone());
            })
        };
        let first = start();
        let mut ann = WsClient::connect(first.addr(), "/", V1);
        let epoch = epoch_of(&next_event(&mut ann, "welcome"));
        for i in 0..3 {
            ann.text(&format!("before {i}"));
            next_event(&mut ann, "message");
        }
        drop(ann);
        first.shutdown();

        let second = start();
        // Ids 1..=3 exist again after the restart without a file: only the
        // epoch tells the two histories apart.
        let mut bo = WsClient::connect(second.addr(), "/", V1);
        next_event(&mut bo, "welcome");
        for i in 0..3 {
            bo.text(&format!("after {i}"));
            next_event(&mut bo, "message");
        }
        let mut ann = WsClient::connect(second.addr(), &format!("/?since=2&epoch={epoch}"), V1);
        let welcome = next_event(&mut ann, "welcome");
        if with_file {
            assert_eq!(epoch_of(&welcome), epoch, "the file keeps the epoch");
            assert_eq!(history_ids(&welcome), [3, 4, 5, 6]);
            assert!(welcome.get("gap").is_none(), "{welcome:?}");
        } else {
            assert_ne!(epoch_of(&welcome), epoch, "a new history, a new epoch");
            assert_eq!(history_ids(&welcome), [1, 2, 3]);
            assert_eq!(welcome.get("gap"), Some(&Json::Bool(true)));
        }
        second.shutdown();
    }
}

/// A stream written by a version that named the node on joins only (its
/// entries, field for field) still loads: at start-up, and read live.
#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn a_stream_that_names_the_node_on_joins_only_still_loads() {
    let dir = TempDir::new();
    let redis = RedisServer::start(&dir, &[]);
    let mut old = store(&redis, 10_000);
    let mut append = |fields: &[(&str, &[u8])]| {
        old.append(wschat::cluster::replica::ROOM, fields).unwrap();
    };
    let ann = b"90000000001";
    append(&[
        ("op", b"join"),
        ("id", ann),
        ("ts", b"1764093600000"),
        ("mode", b"v1"),
        ("node", b"old"),
    ]);
    append(&[
        ("op", b"text"),
        ("id", ann),
        ("ts", b"1764093601000"),
        ("text", b"/nick ann"),
    ]);
    append(&[
        ("op", b"text"),
        ("id", ann),
        ("ts", b"1764093602000"),
        ("text", b"before"),
    ]);
    let node = Node::start(&redis, &dir, "n1");
    let (mut bo, _, welcome) = joined(&node);
    let Json::Array(history) = welcome.get("history").unwrap() else {
        panic!("history is not an array")
    };
    let [line] = &history[..] else {
        panic!("one message in the history: {history:?}")
    };
    assert_eq!(message(line).1, "before");
    let from = line.get("from").unwrap();
    assert_eq!(from.get("nick").unwrap().as_str(), Some("ann"));
    assert!(user_ids(welcome.get("users").unwrap()).contains(&90_000_000_001));
    // Read live, after start-up: a text and a leave without a node.
    append(&[
        ("op", b"text"),
        ("id", ann),
        ("ts", b"1764093603000"),
        ("text", b"live"),
    ]);
    let (_, text) = message(&next_event(&mut bo, "message"));
    assert_eq!(text, "live");
    append(&[("op", b"leave"), ("id", ann), ("ts", b"1764093604000")]);
    let leave = next_event(&mut bo, "leave");
    let user = leave.get("user").unwrap();
    assert_eq!(user.get("id").unwrap().as_u64(), Some(90_000_000_001));
}

// ---------------------------------------------------------------------------
// Rooms and direct messages across nodes.
// ---------------------------------------------------------------------------

/// A v1 client on `node` connected with `?rooms=` (`rooms` as the query
/// writes them), having read its welcome and one `joined` per room but
/// `#main`. Returns it, its id and its welcome.
fn in_rooms(node: &Node, rooms: &str) -> (WsClient, u64, Json) {
    in_rooms_at(node, &format!("/?rooms={rooms}"))
}

fn in_rooms_at(node: &Node, path: &str) -> (WsClient, u64, Json) {
    let mut client = WsClient::connect(node.addr, path, V1);
    let welcome = next_event(&mut client, "welcome");
    let id = welcome
        .get("you")
        .unwrap()
        .get("id")
        .unwrap()
        .as_u64()
        .unwrap();
    let Json::Array(rooms) = welcome.get("rooms").unwrap() else {
        panic!("rooms is not an array: {welcome:?}")
    };
    for room in rooms.iter().filter(|r| r.as_str() != Some("#main")) {
        let joined = next_event(&mut client, "joined");
        assert_eq!(joined.get("room"), Some(room), "{joined:?}");
    }
    (client, id, welcome)
}

fn room_of(event: &Json) -> &str {
    event.get("room").and_then(Json::as_str).unwrap_or("")
}

/// Every event up to and including the first `message` whose text is
/// `last`.
fn events_until_message(client: &mut WsClient, last: &str) -> Vec<Json> {
    let deadline = Instant::now() + common::TIMEOUT;
    let mut events = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "no message {last:?} in time");
        let event = json::parse(&client.recv_text()).unwrap();
        let done = event.get("type").unwrap().as_str() == Some("message")
            && event.get("text").unwrap().as_str() == Some(last);
        events.push(event);
        if done {
            return events;
        }
    }
}

/// A room with a member on each of three nodes, and a client in `#main`
/// only on each node: every member sees every line said in the room,
/// once, in the one order; no non-member, on any node, sees any of them. (One stream
/// order: a non-member that sees the `#main` line said after them would
/// have seen them first, had they leaked.)
#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn a_room_spanning_three_nodes_reaches_its_members_only() {
    let dir = TempDir::new();
    let redis = RedisServer::start(&dir, &[]);
    let nodes = three_nodes(&redis, &dir);
    let mut members: Vec<WsClient> = Vec::new();
    let mut others: Vec<WsClient> = Vec::new();
    for node in &nodes {
        members.push(in_rooms(node, "main,rust").0);
        others.push(joined(node).0);
    }
    // Each line said after the one before it reached its sayer, so that
    // the `#main` line comes last in the one order.
    let mut seen: Vec<Vec<Json>> = vec![Vec::new(); 3];
    for (n, member) in members.iter_mut().enumerate() {
        let line = format!("from n{}", n + 1);
        member.text(&format!("/say #rust {line}"));
        seen[n].extend(events_until_message(member, &line));
    }
    members[0].text("said in main");
    for (member, seen) in members.iter_mut().zip(&mut seen) {
        seen.extend(events_until_message(member, "said in main"));
        let events = &*seen;
        let rust: Vec<String> = events
            .iter()
            .filter(|e| e.get("type").unwrap().as_str() == Some("message"))
            .filter(|e| room_of(e) == "#rust")
            .map(|e| message(e).1)
            .collect();
        // Each line was said after the one before had its place in the
        // order, so every member sees exactly this, once each.
        assert_eq!(rust, ["from n1", "from n2", "from n3"], "{events:?}");
    }
    for other in &mut others {
        let events = events_until_message(other, "said in main");
        assert!(
            events.iter().all(|e| room_of(e) != "#rust"),
            "a non-member saw #rust: {events:?}"
        );
    }
}

/// `/msg` between clients on two nodes: the recipient and the sender (its
/// copy) get the `direct` event, once each; clients on the sender's node,
/// the recipient's node and a third node do not.
#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn a_direct_message_between_nodes_reaches_only_its_two_users() {
    let dir = TempDir::new();
    let redis = RedisServer::start(&dir, &[]);
    let nodes = three_nodes(&redis, &dir);
    let (mut ann, ann_id, _) = joined(&nodes[0]);
    let (mut bob, bob_id, _) = joined(&nodes[1]);
    let mut bystanders = [
        joined(&nodes[0]).0,
        joined(&nodes[1]).0,
        joined(&nodes[2]).0,
    ];
    ann.text("/nick ann");
    bob.text("/nick bob");
    next_event_where(&mut ann, "nick", |e| {
        e.get("user").unwrap().get("nick").unwrap().as_str() == Some("bob")
    });
    ann.text("/msg bob across nodes");
    // Said after it in `#main`: whoever was sent the direct message has
    // it before this line.
    ann.text("after the direct message");
    for (client, who) in [(&mut ann, "sender"), (&mut bob, "recipient")] {
        let events = events_until_message(client, "after the direct message");
        let directs: Vec<&Json> = events
            .iter()
            .filter(|e| e.get("type").unwrap().as_str() == Some("direct"))
            .collect();
        let [direct] = directs[..] else {
            panic!("{who}: not exactly one direct message: {events:?}")
        };
        assert_eq!(direct.get("text").unwrap().as_str(), Some("across nodes"));
        let from = direct.get("from").unwrap().get("id").unwrap().as_u64();
        let to = direct.get("to").unwrap().get("id").unwrap().as_u64();
        assert_eq!(
            (from, to),
            (Some(ann_id), Some(bob_id)),
            "{who}: {direct:?}"
        );
    }
    for client in &mut bystanders {
        let events = events_until_message(client, "after the direct message");
        assert!(
            events
                .iter()
                .all(|e| e.get("type").unwrap().as_str() != Some("direct")),
            "a bystander saw the direct message: {events:?}"
        );
    }
    // A nickname nobody has, anywhere: refused on the sender's node.
    ann.text("/msg nobody hi");
    let error = next_event(&mut ann, "error");
    assert_eq!(error.get("code").unwrap().as_str(), Some("no_such_user"));
}

/// Resuming on another node with `?since=ID&epoch=E&rooms=main,rust`:
/// the welcome carries exactly the missed `#main` lines, the `joined` of
/// `#rust` exactly the missed `#rust` lines, and nothing of `#go`.
#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn resuming_on_another_node_returns_each_rooms_missed_messages() {
    let dir = TempDir::new();
    let redis = RedisServer::start(&dir, &[]);
    let nodes = three_nodes(&redis, &dir);
    let (mut ann, _, welcome) = in_rooms(&nodes[0], "main,rust");
    let epoch = epoch_of(&welcome);
    let (mut bob, _, _) = in_rooms(&nodes[1], "main,rust,go");
    bob.text("/say #rust seen");
    bob.text("seen in main");
    let mut seen = 0;
    for event in events_until_message(&mut ann, "seen in main") {
        if event.get("type").unwrap().as_str() == Some("message") {
            seen = message(&event).0;
        }
    }
    drop(ann);
    for line in ["/say #rust r1", "m1", "/say #go g1", "/say #rust r2", "m2"] {
        bob.text(line);
    }
    events_until_message(&mut bob, "m2");
    let path = format!("/?since={seen}&epoch={epoch}&rooms=main,rust");
    let mut client = WsClient::connect(nodes[2].addr, &path, V1);
    let welcome = next_event(&mut client, "welcome");
    let joined = next_event(&mut client, "joined");
    assert_eq!(room_of(&joined), "#rust");
    let texts = |event: &Json| -> Vec<String> {
        let Json::Array(history) = event.get("history").unwrap() else {
            panic!("history is not an array: {event:?}")
        };
        history.iter().map(|m| message(m).1).collect()
    };
    assert_eq!(texts(&welcome), ["m1", "m2"], "{welcome:?}");
    assert_eq!(texts(&joined), ["r1", "r2"], "{joined:?}");
    assert!(welcome.get("gap").is_none(), "{welcome:?}");
    assert!(joined.get("gap").is_none(), "{joined:?}");
    // And nothing more: the next event is the line said after it.
    bob.text("m3");
    let next = json::parse(&client.recv_text()).unwrap();
    assert_eq!(message(&next).1, "m3", "{next:?}");
}

/// A topic set on one node, and `/rooms`, read the same on every node.
#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn topics_and_the_room_list_agree_on_every_node() {
    let dir = TempDir::new();
    let redis = RedisServer::start(&dir, &[]);
    let nodes = three_nodes(&redis, &dir);
    let mut clients: Vec<WsClient> = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let rooms = ["main,rust", "rust,go", "main,rust,go"][n];
        clients.push(in_rooms(node, rooms).0);
    }
    clients[1].text("/topic #rust borrowing rules");
    for client in &mut clients {
        let topic = next_event(client, "topic");
        assert_eq!(
            topic.get("topic").unwrap().as_str(),
            Some("borrowing rules")
        );
    }
    let mut lists = Vec::new();
    for client in &mut clients {
        client.text("/topic #rust");
        let topic = next_event(client, "topic");
        assert_eq!(
            topic.get("topic").unwrap().as_str(),
            Some("borrowing rules")
        );
        client.text("/rooms");
        lists.push(format!("{:?}", next_event(client, "rooms").get("rooms")));
    }
    assert_eq!(lists[0], lists[1]);
    assert_eq!(lists[0], lists[2]);
    for want in ["#go", "#main", "#rust", "borrowing rules"] {
        assert!(lists[0].contains(want), "{want} in {}", lists[0]);
    }
    // A node started later loads the same rooms (snapshot and stream).
    let late = Node::start(&redis, &dir, "n4");
    let (mut dee, _, _) = in_rooms(&late, ""); // in no room: the counts stay
    dee.text("/rooms");
    let list = format!("{:?}", next_event(&mut dee, "rooms").get("rooms"));
    assert_eq!(list, lists[0]);
}

/// Sends `/say ROOM text` until it is not refused as `unavailable`;
/// returns the events read up to the line.
fn say_in_when_back(client: &mut WsClient, room: &str, text: &str) -> Vec<Json> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut events = Vec::new();
    loop {
        client.text(&format!("/say {room} {text}"));
        let error = loop {
            let event = json::parse(&client.recv_text()).unwrap();
            match event.get("type").and_then(Json::as_str) {
                Some("error") => break event,
                Some("message") if room_of(&event) == room && message(&event).1 == text => {
                    events.push(event);
                    return events;
                }
                _ => events.push(event),
            }
        };
        assert_eq!(
            error.get("code").and_then(Json::as_str),
            Some("unavailable"),
            "{error:?}"
        );
        assert!(Instant::now() < deadline, "{text:?} never got through");
        thread::sleep(Duration::from_millis(100));
    }
}

/// Redis killed and started again, with its data (AOF) or without: every
/// user connected across it, on either node, keeps hearing the rooms it
/// is in and only those, both ways, and the rooms keep their topics. A
/// node started afterwards knows the rooms, topics and members too, and
/// its clients get ids of their own (without AOF the node counter started
/// again: the running nodes raised it back).
fn wait_for_a_snapshot_of_the_current_epoch(redis: &RedisServer) {
    let mut store = store(redis, 1000);
    let deadline = Instant::now() + common::TIMEOUT;
    loop {
        let epoch = store.redis().command(&["GET", "wschat:{main}:epoch"]);
        let body = store
            .redis()
            .command(&["HGET", "wschat:{main}:snapshot", "body"]);
        if let (Ok(Value::Bulk(epoch)), Ok(Value::Bulk(body))) = (epoch, body) {
            let line = format!("\nepoch {}\n", String::from_utf8_lossy(&epoch));
            if String::from_utf8_lossy(&body).contains(&line) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no snapshot of the new epoch");
        thread::sleep(Duration::from_millis(100));
    }
}

fn rooms_across_a_redis_restart(aof: bool) {
    let dir = TempDir::new();
    let args: &[&str] = if aof {
        &["--appendonly", "yes", "--appendfsync", "always"]
    } else {
        &[] // no AOF, no RDB: it comes back empty
    };
    let mut redis = RedisServer::start(&dir, args);
    let nodes = [
        Node::start(&redis, &dir, "n1"),
        Node::start(&redis, &dir, "n2"),
    ];
    let (mut ann, ann_id, _) = in_rooms(&nodes[0], "main,rust");
    let (mut bob, bob_id, _) = in_rooms(&nodes[1], "rust");
    let (mut cy, _, _) = joined(&nodes[1]);
    ann.text("/topic #rust kept");
    next_event(&mut bob, "topic");
    ann.text("/say #rust before");
    events_until_message(&mut bob, "before");
    redis.kill();
    thread::sleep(Duration::from_millis(500));
    redis.spawn().expect("restart redis-server");

    // #rust, from n1 to n2 and from n2 to n1; cy (n2, #main only) sees
    // neither line: it is sent the #main line said after them.
    say_in_when_back(&mut ann, "#rust", "ann after");
    events_until_message(&mut bob, "ann after");
    say_in_when_back(&mut bob, "#rust", "bob after");
    events_until_message(&mut ann, "bob after");
    say_in_when_back(&mut ann, "#main", "in main after");
    let events = events_until_message(&mut cy, "in main after");
    assert!(events.iter().all(|e| room_of(e) != "#rust"), "{events:?}");
    // #main, from n2 to n1; bob (#rust only) sees neither #main line.
    say_in_when_back(&mut cy, "#main", "cy after");
    events_until_message(&mut ann, "cy after");
    let events = say_in_when_back(&mut bob, "#rust", "marker");
    assert!(
        events.iter().all(|e| room_of(e) != "#main"),
        "a non-member heard #main: {events:?}"
    );
    // The topic is kept on both nodes.
    for client in [&mut ann, &mut bob] {
        client.text("/topic #rust");
        let topic = next_event(client, "topic");
        assert_eq!(topic.get("topic").unwrap().as_str(), Some("kept"));
    }
    if !aof {
        // The stream lost every join: a node started now knows the rooms
        // and their members from a running node's snapshot of the new
        // epoch, written within a couple of seconds.
        wait_for_a_snapshot_of_the_current_epoch(&redis);
    }
    let late = Node::start(&redis, &dir, "n3");
    let (mut dee, dee_id, _) = in_rooms(&late, "rust");
    dee.text("/topic #rust");
    let topic = next_event(&mut dee, "topic");
    assert_eq!(topic.get("topic").unwrap().as_str(), Some("kept"));
    dee.text("/who #rust");
    let users = next_event(&mut dee, "users");
    let ids = user_ids(users.get("users").unwrap());
    assert_eq!(ids.len(), 3, "{users:?}");
    assert!(ids.contains(&dee_id) && ids.contains(&ann_id) && ids.contains(&bob_id));
    // And the room works for it both ways.
    say_in_when_back(&mut dee, "#rust", "dee here");
    events_until_message(&mut ann, "dee here");
    say_in_when_back(&mut bob, "#rust", "bob to dee");
    events_until_message(&mut dee, "bob to dee");
}

#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn rooms_keep_working_across_a_redis_restart() {
    rooms_across_a_redis_restart(true);
}

#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn rooms_keep_working_across_a_redis_restart_that_lost_the_data() {
    rooms_across_a_redis_restart(false);
}

/// Every replica applies the room limits: a node started with other ones
/// than the running cluster's is refused at start-up, saying which, and
/// one with the same ones joins. Once the last node has stopped, the
/// limits expire and a new cluster may choose others.
#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn a_node_with_other_room_limits_is_refused() {
    let dir = TempDir::new();
    let redis = RedisServer::start(&dir, &[]);
    let mut n1 = Node::start_with(&redis, &dir, "n1", &["--max-rooms", "50"]);
    let log = dir.0.join("n2-refused.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wschat"))
        .args(["--addr", "127.0.0.1:0", "--node-name", "n2"])
        .args(["--redis", &format!("redis://127.0.0.1:{}", redis.port)])
        .args(["--max-rooms", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn wschat");
    let deadline = Instant::now() + STARTUP;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a node with other room limits kept running");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("the cluster runs with --history 100 --max-rooms 50")
            && text.contains("this node was started with --history 100 --max-rooms 60"),
        "{text}"
    );
    let n3 = Node::start_with(&redis, &dir, "n3", &["--max-rooms", "50"]);
    let (mut ann, _, _) = in_rooms(&n1, "main,rust");
    let (mut bob, _, _) = in_rooms(&n3, "rust");
    ann.text("/say #rust same limits");
    events_until_message(&mut bob, "same limits");
    drop((ann, bob, n3));
    n1.kill();
    // The limits outlive the last node by at most a heartbeat's ttl.
    thread::sleep(Duration::from_secs(4));
    Node::start_with(&redis, &dir, "n4", &["--max-rooms", "60"]);
}

// ---------------------------------------------------------------------------
// Sign-in and moderation across nodes: tokens made by the `jwt` crate, as
// in tests/identity.rs; every node started with the same key file.
// ---------------------------------------------------------------------------

const AUTH_KEY: &[u8] = b"a-test-key-of-at-least-thirty-two-bytes!";

/// An HS256 token for `sub` called `sub`, valid for an hour; an operator's
/// if `op`.
fn auth_token(sub: &str, op: bool) -> String {
    use hmac::Mac;
    use jwt::SignWithKey;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = serde_json::json!({ "sub": sub, "name": sub, "exp": now + 3600 });
    if op {
        claims["role"] = "op".into();
    }
    let key = hmac::Hmac::<sha2::Sha256>::new_from_slice(AUTH_KEY).unwrap();
    claims.sign_with_key(&key).unwrap()
}

/// A node with `--auth optional` and the test's key file.
fn auth_node(redis: &RedisServer, dir: &TempDir, name: &str) -> Node {
    let keys = dir.0.join("keys");
    std::fs::write(&keys, [AUTH_KEY, b"\n"].concat()).unwrap();
    let keys = keys.to_str().unwrap();
    Node::start_with(
        redis,
        dir,
        name,
        &["--auth", "optional", "--auth-secret-file", keys],
    )
}

/// A v1 client signed in with `token` on `node`, after its welcome.
fn signed_in(node: &Node, token: &str) -> WsClient {
    let auth = format!("wschat.auth.{token}");
    let mut client = WsClient::connect(node.addr, "/", &["wschat.v1", &auth]);
    let welcome = next_event(&mut client, "welcome");
    let you = welcome.get("you").unwrap();
    assert_eq!(you.get("verified"), Some(&Json::Bool(true)), "{welcome:?}");
    client
}

/// The status and body of `node`'s answer to a handshake offering `token`.
fn handshake_answer(node: &Node, token: &str) -> (u16, String) {
    let extra = format!("Sec-WebSocket-Protocol: wschat.v1, wschat.auth.{token}\r\n");
    let request = common::handshake_request(node.addr, "/", &extra);
    let response = common::http_exchange(node.addr, request.as_bytes());
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").trim_end();
    (common::status_of(&response), body.to_string())
}

/// Reads until a Close frame; asserts it is 1008 with `reason`.
fn expect_policy_close(client: &mut WsClient, reason: &str) {
    loop {
        match client.recv() {
            wschat::protocol::message::Message::Close(Some(frame)) => {
                assert_eq!(
                    (u16::from(frame.code), frame.reason.as_str()),
                    (1008, reason)
                );
                return;
            }
            wschat::protocol::message::Message::Close(None) => {
                panic!("a Close without a code, expected {reason}")
            }
            _ => {}
        }
    }
}

/// The `action` of the next `moderation` event `client` hears.
fn moderation(client: &mut WsClient) -> String {
    let event = next_event(client, "moderation");
    event.get("action").unwrap().as_str().unwrap().to_string()
}

/// An operator on one node kicks a signed-in user on another: the node
/// the user is connected to closes it with 1008 `kicked`.
#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn a_kick_on_one_node_closes_the_user_on_another() {
    let dir = TempDir::new();
    let redis = RedisServer::start(&dir, &[]);
    let [n1, n2] = ["n1", "n2"].map(|name| auth_node(&redis, &dir, name));
    let mut olga = signed_in(&n1, &auth_token("olga", true));
    let mut gus = signed_in(&n2, &auth_token("gus", false));
    next_event(&mut olga, "join");
    olga.text("/kick gus calm down");
    let event = next_event(&mut gus, "moderation");
    assert_eq!(event.get("action").unwrap().as_str(), Some("kick"));
    assert_eq!(event.get("reason").unwrap().as_str(), Some("calm down"));
    expect_policy_close(&mut gus, "kicked");
    assert_eq!(moderation(&mut olga), "kick");
    // A kick is not a ban: gus comes back, on either node.
    signed_in(&n1, &auth_token("gus", false));
}

/// A ban made on node 1 closes the user on node 2 (1008 `banned`), and
/// node 3 turns its reconnect away with 403: every node's replica has
/// the ban.
#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn a_ban_on_one_node_refuses_the_user_on_every_node() {
    let dir = TempDir::new();
    let redis = RedisServer::start(&dir, &[]);
    let [n1, n2, n3] = ["n1", "n2", "n3"].map(|name| auth_node(&redis, &dir, name));
    let mut olga = signed_in(&n1, &auth_token("olga", true));
    let (mut watcher, _, _) = joined(&n3);
    let gus_token = auth_token("gus", false);
    let mut gus = signed_in(&n2, &gus_token);
    next_event(&mut olga, "join");
    olga.text("/ban gus spam");
    assert_eq!(moderation(&mut gus), "ban");
    expect_policy_close(&mut gus, "banned");
    // Node 3 has applied the ban once its own client heard it.
    assert_eq!(moderation(&mut watcher), "ban");
    for node in [&n3, &n2, &n1] {
        assert_eq!(handshake_answer(node, &gus_token), (403, "banned".into()));
    }
    // Others still get in.
    signed_in(&n3, &auth_token("bob", false));
}

/// A ban lives in Redis: after Redis restarts (with AOF) and every node
/// has stopped, a node started later (from the snapshot the others
/// stored) still turns the banned user away.
#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn a_ban_survives_a_redis_restart_and_holds_on_a_node_started_later() {
    let dir = TempDir::new();
    let mut redis = RedisServer::start(&dir, &["--appendonly", "yes", "--appendfsync", "always"]);
    let [mut n1, mut n2] = ["n1", "n2"].map(|name| auth_node(&redis, &dir, name));
    let mut olga = signed_in(&n1, &auth_token("olga", true));
    let gus_token = auth_token("gus", false);
    let mut gus = signed_in(&n2, &gus_token);
    next_event(&mut olga, "join");
    olga.text("/ban gus 1h spam");
    assert_eq!(moderation(&mut gus), "ban");
    expect_policy_close(&mut gus, "banned");
    // Something else after the ban, then time for a snapshot of it.
    olga.text("after the ban");
    next_event(&mut olga, "message");
    thread::sleep(Duration::from_secs(3));
    n1.kill();
    n2.kill();
    redis.kill();
    redis.spawn().expect("restart redis-server");
    let n3 = auth_node(&redis, &dir, "n3");
    let (status, body) = handshake_answer(&n3, &gus_token);
    assert_eq!(status, 403, "{body}");
    assert!(body.starts_with("banned until "), "{body}");
    signed_in(&n3, &auth_token("bob", false));
}

/// `/auth` on node 1 with an operator's token reaches every replica: the
/// user may now kick someone on node 2.
#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn a_refreshed_sign_in_gives_the_operator_right_on_every_node() {
    let dir = TempDir::new();
    let redis = RedisServer::start(&dir, &[]);
    let [n1, n2] = ["n1", "n2"].map(|name| auth_node(&redis, &dir, name));
    let mut olga = signed_in(&n1, &auth_token("olga", false));
    let mut gus = signed_in(&n2, &auth_token("gus", false));
    next_event(&mut olga, "join");
    olga.text("/kick gus");
    let error = next_event(&mut olga, "error");
    assert_eq!(error.get("code").unwrap().as_str(), Some("not_allowed"));
    olga.text(&format!("/auth {}", auth_token("olga", true)));
    next_event(&mut olga, "auth");
    olga.text("/kick gus");
    assert_eq!(moderation(&mut gus), "kick");
    expect_policy_close(&mut gus, "kicked");
}

/// A mute made on one node holds on every node: the muted user's lines
/// are refused with `muted` on its node, and on another node it connects
/// to.
#[test]
#[ignore = "needs redis-server: run tests/cluster/run.sh"]
fn a_mute_holds_on_every_node() {
    let dir = TempDir::new();
    let redis = RedisServer::start(&dir, &[]);
    let [n1, n2, n3] = ["n1", "n2", "n3"].map(|name| auth_node(&redis, &dir, name));
    let mut olga = signed_in(&n1, &auth_token("olga", true));
    let gus_token = auth_token("gus", false);
    let mut gus = signed_in(&n2, &gus_token);
    next_event(&mut olga, "join");
    olga.text("/mute gus 5m");
    assert_eq!(moderation(&mut gus), "mute");
    let error_code = |client: &mut WsClient| {
        let error = next_event(client, "error");
        error.get("code").unwrap().as_str().unwrap().to_string()
    };
    gus.text("can you hear me");
    assert_eq!(error_code(&mut gus), "muted");
    let mut gus_on_n3 = signed_in(&n3, &gus_token);
    gus_on_n3.text("and now");
    assert_eq!(error_code(&mut gus_on_n3), "muted");
    // Nobody heard gus; olga still talks to everyone.
    olga.text("still here");
    let (_, text) = message(&next_event(&mut gus_on_n3, "message"));
    assert_eq!(text, "still here");
    let (_, text) = message(&next_event(&mut olga, "message"));
    assert_eq!(text, "still here");
}
