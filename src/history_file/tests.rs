use super::*;
use crate::room::{gone_record, message_event, room_message_event, trim_record};

/// A directory of its own for one test, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("wschat-hf-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self) -> PathBuf {
        self.0.join("history.jsonl")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn event(seq: u64, text: &str) -> Arc<str> {
    message_event(seq, 1, "ann", text, 0, false).into()
}

/// What the broadcaster does for each message: the room keeps it, then
/// the log gets it, with the room's state should the queue be full.
struct FakeRoom {
    history: History,
    next_seq: u64,
}

impl FakeRoom {
    fn new(loaded: &Loaded) -> FakeRoom {
        FakeRoom {
            history: loaded.main().clone(),
            next_seq: loaded.next_seq,
        }
    }

    fn say(&mut self, log: &HistoryLog, text: &str) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let event = event(seq, text);
        self.history.push(event.clone());
        log.append(event, || Snapshot {
            rooms: vec![KeptRoom {
                name: RoomName::main(),
                topic: None,
                history: self.history.clone(),
                oplock: false,
            }],
            next_seq: self.next_seq,
            identity: KeptIdentity::default(),
        });
        seq
    }
}

/// `#main`'s record in a rewritten file, with nothing dropped.
const MAIN_RECORD: &str = r##"{"type":"room","room":"#main","topic":null,"dropped":0}"##;

fn header_of(path: &Path) -> (u64, Option<Epoch>, u64) {
    let text = std::fs::read_to_string(path).unwrap();
    parse_header(text.lines().next().unwrap()).expect("a header first")
}

#[test]
fn torn_lines_are_skipped_and_numbering_continues() {
    let dir = TempDir::new("torn");
    let path = dir.file();
    let mut text = String::new();
    for seq in 1..=5 {
        text.push_str(&event(seq, &format!("line {seq}")));
        text.push('\n');
    }
    text.push_str("{\"type\":\"message\",\"id\":6,\"from\":{\"id\":1,\"ni");
    std::fs::write(&path, text).unwrap();
    let loaded = load(&path, 3).unwrap();
    // Id 6 may have reached clients before the crash: never reused.
    assert_eq!(loaded.next_seq, 7);
    let texts: Vec<_> = loaded.main().iter().collect();
    assert_eq!(texts.len(), 3);
    assert!(texts[0].contains("line 3") && texts[2].contains("line 5"));
    assert_eq!(loaded.main().dropped_through(), 2);
    assert_eq!(loaded.epoch, None, "no header: no epoch");
}

#[test]
fn only_whole_message_events_are_accepted() {
    let good = message_event(7, 1, "ann", "hi \"you\" \n </script>", 5, false);
    assert_eq!(message_seq(&good), Some(7));
    let action = message_event(8, 1, "ann", "waves", 5, true);
    assert_eq!(message_seq(&action), Some(8));
    for torn in 0..good.len() {
        assert_eq!(message_seq(&good[..torn]), None, "{}", &good[..torn]);
    }
    for bad in [
        // What an append onto a torn line makes.
        format!("{}{good}", &good[..30]),
        format!("{good}{good}"),
        good.replace("\"message\"", "\"join\""),
        good.replace("\"id\":7", "\"id\":-7"),
        good.replace("\"id\":7", "\"id\":\"7\""),
        good.replace(",\"ts\":5", ""),
        good.replace("}", ",\"extra\":1}"),
        action.replace("true", "false"),
        "[]".into(),
    ] {
        assert_eq!(message_seq(&bad), None, "{bad}");
    }
}

/// Opening rewrites the file: a torn last line is gone (whole, it is
/// kept), every line is whole, and the header comes first.
#[test]
fn a_torn_last_line_is_cut_off_or_kept_when_the_file_is_opened() {
    let dir = TempDir::new("repair");
    let path = dir.file();
    let first = event(1, "one");
    let second = event(2, "two");
    for tear in 0..=second.len() {
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, format!("{first}\n{}", &second[..tear])).unwrap();
        let readable = tear > second.find(",\"from\"").unwrap();
        let (loaded, epoch, log) = HistoryLog::open(&path, 10).unwrap();
        log.close();
        let next = if readable { 3 } else { 2 };
        assert_eq!(loaded.next_seq, next, "tear {tear}");
        let text = std::fs::read_to_string(&path).unwrap();
        let header = format!(
            "{{\"wschat_history\":{FORMAT_VERSION},\"epoch\":\"{epoch}\",\"next_seq\":{next}}}\n{MAIN_RECORD}"
        );
        if tear == second.len() {
            assert_eq!(text, format!("{header}\n{first}\n{second}\n"));
        } else {
            assert_eq!(text, format!("{header}\n{first}\n"), "tear {tear}");
        }
    }
}

/// A file from before the header (bare `message` lines) is loaded, given
/// a fresh epoch and rewritten in the current format; the epoch then
/// stays with the file.
#[test]
fn an_old_file_without_a_header_is_loaded_and_migrated() {
    let dir = TempDir::new("old");
    let path = dir.file();
    let old: String = (1..=5)
        .map(|seq| format!("{}\n", event(seq, "old")))
        .collect();
    std::fs::write(&path, &old).unwrap();
    let (loaded, epoch, log) = HistoryLog::open(&path, 3).unwrap();
    log.close();
    assert_eq!(loaded.epoch, None);
    assert_eq!((loaded.main().len(), loaded.next_seq), (3, 6));
    assert_eq!(header_of(&path), (FORMAT_VERSION, Some(epoch.clone()), 6));
    let text = std::fs::read_to_string(&path).unwrap();
    let records: Vec<&str> = text.lines().skip(1).collect();
    let ids: Vec<u64> = records.iter().filter_map(|l| message_seq(l)).collect();
    assert_eq!(ids, [3, 4, 5]);
    // Opened again: the same epoch, the same messages, dropped ones known.
    let (again, same, log) = HistoryLog::open(&path, 3).unwrap();
    log.close();
    assert_eq!((again.epoch.clone(), same), (Some(epoch.clone()), epoch));
    assert_eq!((again.main().len(), again.next_seq), (3, 6));
    assert_eq!(again.main().dropped_through(), 2);
}

#[test]
fn a_new_file_gets_a_fresh_epoch_that_it_keeps() {
    let dir = TempDir::new("new");
    let path = dir.file();
    let (loaded, epoch, log) = HistoryLog::open(&path, 3).unwrap();
    log.close();
    assert_eq!((loaded.epoch, loaded.next_seq), (None, 1));
    assert_eq!(header_of(&path), (FORMAT_VERSION, Some(epoch.clone()), 1));
    let (_, again, log) = HistoryLog::open(&path, 3).unwrap();
    log.close();
    assert_eq!(again, epoch);
    // Deleting the file deletes the history: the next one is another.
    std::fs::remove_file(&path).unwrap();
    let (_, other, log) = HistoryLog::open(&path, 3).unwrap();
    log.close();
    assert_ne!(other, epoch);
}

#[test]
fn a_file_of_a_newer_version_is_refused_and_left_alone() {
    let dir = TempDir::new("newer");
    let path = dir.file();
    let text = "{\"wschat_history\":4,\"epoch\":\"abc\",\"next_seq\":9}\n{\"type\":\"role\"}\n";
    std::fs::write(&path, text).unwrap();
    let error = HistoryLog::open(&path, 3).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert!(error.to_string().contains("format version 4"), "{error}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

/// The file is compacted to the kept history once COMPACT_AFTER_BYTES
/// have been appended: it never holds much more than that, and the next
/// id and the dropped mark survive.
#[test]
fn the_file_is_compacted_to_the_kept_history() {
    let dir = TempDir::new("compact");
    let path = dir.file();
    let (loaded, epoch, log) = HistoryLog::open(&path, 3).unwrap();
    let mut room = FakeRoom::new(&loaded);
    let text = "\u{fffd}".repeat(20_000); // 60 KB of JSON each
    let bound = COMPACT_AFTER_BYTES + 4 * (text.len() + 200);
    let mut largest = 0;
    for _ in 0..60 {
        room.say(&log, &text);
        // Let the writer catch up, then look at the file.
        let deadline = Instant::now() + Duration::from_secs(5);
        while log.backlog().0 > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        largest = largest.max(std::fs::metadata(&path).map_or(0, |m| m.len() as usize));
    }
    log.close();
    assert!(
        largest <= bound,
        "the file grew to {largest} bytes (bound {bound})"
    );
    let sent = 60 * text.len();
    assert!(sent > 3 * COMPACT_AFTER_BYTES, "enough written to compact");
    let loaded = load(&path, 3).unwrap();
    assert_eq!(loaded.epoch, Some(epoch));
    assert_eq!(loaded.next_seq, 61);
    let ids: Vec<u64> = loaded.main().iter().filter_map(message_id).collect();
    assert_eq!(ids, [58, 59, 60]);
    assert_eq!(loaded.main().dropped_through(), 57);
}

/// `--history 0`: nothing is kept, the file shrinks to its header, and
/// the next id still survives.
#[test]
fn with_no_history_kept_the_next_id_survives_compaction() {
    let dir = TempDir::new("zero");
    let path = dir.file();
    let (loaded, _, log) = HistoryLog::open(&path, 0).unwrap();
    let mut room = FakeRoom::new(&loaded);
    let text = "x".repeat(100_000);
    for _ in 0..25 {
        room.say(&log, &text);
    }
    log.close();
    let size = std::fs::metadata(&path).unwrap().len() as usize;
    assert!(size < COMPACT_AFTER_BYTES, "{size} bytes");
    let loaded = load(&path, 0).unwrap();
    assert_eq!(loaded.next_seq, 26);
    assert!(loaded.main().is_empty());
    assert_eq!(loaded.main().dropped_through(), 25);
    // And once compacted to the header alone, still.
    let (loaded, _, log) = HistoryLog::open(&path, 0).unwrap();
    log.close();
    assert_eq!(loaded.next_seq, 26);
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
}

/// A stalled disk: the queue stays within its bounds, the broadcaster
/// never waits, and once the disk is back the file holds exactly the kept
/// history and the next id.
#[test]
fn a_stalled_disk_bounds_the_queue_and_loses_nothing_kept() {
    let dir = TempDir::new("stall");
    let path = dir.file();
    let (loaded, _, log) = HistoryLog::open(&path, 5).unwrap();
    let mut room = FakeRoom::new(&loaded);
    let stalled = log.shared.stall.lock().unwrap();
    let started = Instant::now();
    let mut worst = (0, 0);
    for n in 0..10 * QUEUE_MAX_RECORDS {
        room.say(&log, &format!("message {n}"));
        let (records, bytes, _) = log.backlog();
        worst = (worst.0.max(records), worst.1.max(bytes));
    }
    let took = started.elapsed();
    assert!(worst.0 <= QUEUE_MAX_RECORDS, "{worst:?}");
    assert!(worst.1 <= QUEUE_MAX_BYTES, "{worst:?}");
    assert!(log.backlog().2, "a rewrite from memory is waiting");
    assert!(
        took < Duration::from_secs(5),
        "never waited for the disk: {took:?}"
    );
    drop(stalled);
    log.close();
    let loaded = load(&path, 5).unwrap();
    let last = 10 * QUEUE_MAX_RECORDS as u64;
    assert_eq!(loaded.next_seq, last + 1);
    let ids: Vec<u64> = loaded.main().iter().filter_map(message_id).collect();
    assert_eq!(ids, (last - 4..=last).collect::<Vec<_>>());
}

/// A write that fails (here: the directory is gone, so no rewrite can
/// work either) is logged and retried from memory; once the disk works
/// again the file is whole.
#[test]
fn a_failed_rewrite_is_retried_from_memory() {
    let dir = TempDir::new("retry");
    let path = dir.file();
    let (loaded, _, log) = HistoryLog::open(&path, 3).unwrap();
    let mut room = FakeRoom::new(&loaded);
    std::fs::remove_dir_all(&dir.0).unwrap();
    // Stall the writer holding one message (so that it has not emptied
    // the queue by the time it fills), then fill the queue past its
    // bound so that a rewrite is asked for.
    let stalled = log.shared.stall.lock().unwrap();
    room.say(&log, "first");
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.backlog().0 != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    for n in 0..QUEUE_MAX_RECORDS + 10 {
        room.say(&log, &format!("m {n}"));
    }
    assert!(log.backlog().2, "a rewrite from memory is waiting");
    drop(stalled);
    std::thread::sleep(Duration::from_millis(200)); // the rewrite fails
    std::fs::create_dir_all(&dir.0).unwrap();
    room.say(&log, "after");
    // The retry comes RETRY_AFTER later; a loaded machine may be slower.
    let deadline = Instant::now() + RETRY_AFTER * 10;
    let rewritten = loop {
        std::thread::sleep(Duration::from_millis(100));
        let seq = load(&path, 3).ok().map(|loaded| loaded.next_seq);
        if seq == Some(room.next_seq) || Instant::now() > deadline {
            break seq;
        }
    };
    assert_eq!(rewritten, Some(room.next_seq), "rewritten on the retry");
    log.close();
    let ids: Vec<u64> = load(&path, 3)
        .unwrap()
        .main()
        .iter()
        .filter_map(message_id)
        .collect();
    let last = room.next_seq - 1;
    assert_eq!(ids, [last - 2, last - 1, last]);
}

fn room_event(seq: u64, room: &str, text: &str) -> String {
    let room = RoomName::parse(room).unwrap();
    room_message_event(seq, &room, (1, "ann").into(), text, 0, false)
}

fn kept<'a>(loaded: &'a Loaded, room: &str) -> Option<&'a KeptRoom> {
    loaded.rooms.iter().find(|r| r.name.as_str() == room)
}

#[test]
fn message_lines_may_name_their_room() {
    assert_eq!(message_seq(&room_event(4, "#rust", "hi")), Some(4));
    let event = room_event(4, "#rust", "hi");
    for bad in [
        event.replace("#rust", "#Rust"),
        event.replace("#rust", "rust"),
        event.replace("\"#rust\"", "7"),
    ] {
        assert_eq!(message_seq(&bad), None, "{bad}");
    }
}

/// Rooms, topics, trims and evictions are records applied in order; a
/// restart finds the rooms as they were, and the rewrite keeps them.
#[test]
fn rooms_topics_and_histories_survive_a_reload() {
    let dir = TempDir::new("rooms");
    let path = dir.file();
    let rust = RoomName::parse("#rust").unwrap();
    let go = RoomName::parse("#go").unwrap();
    let lines = [
        "{\"wschat_history\":2,\"epoch\":\"e1\",\"next_seq\":1}".to_string(),
        room_event(1, "#main", "m1"),
        room_record(&rust, Some("borrowing"), 0),
        room_event(2, "#rust", "r2"),
        room_event(3, "#rust", "r3"),
        room_record(&go, None, 0),
        room_event(4, "#go", "g4"),
        room_event(5, "#rust", "r5"),
        trim_record(&rust, 2),
        gone_record(&go),
        room_event(6, "#main", "m6"),
    ];
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let (loaded, epoch, log) = HistoryLog::open(&path, 10).unwrap();
    log.close();
    assert_eq!(epoch.as_str(), "e1");
    assert_eq!(loaded.next_seq, 7);
    let names: Vec<&str> = loaded.rooms.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["#main", "#rust"]);
    let ids = |room: &KeptRoom| {
        room.history
            .iter()
            .filter_map(message_id)
            .collect::<Vec<_>>()
    };
    let kept_rust = kept(&loaded, "#rust").unwrap();
    assert_eq!(kept_rust.topic.as_deref(), Some("borrowing"));
    assert_eq!(ids(kept_rust), [3, 5]);
    assert_eq!(kept_rust.history.dropped_through(), 2);
    assert_eq!(ids(&loaded.rooms[0]), [1, 6]);
    assert_eq!(
        loaded.rooms[0].history.dropped_through(),
        0,
        "v2: nothing dropped"
    );
    // Rewritten at open; loaded again, the same.
    let again = load(&path, 10).unwrap();
    let again_rust = kept(&again, "#rust").unwrap();
    assert_eq!(
        (ids(again_rust), again_rust.history.dropped_through()),
        (vec![3, 5], 2)
    );
    assert_eq!(again_rust.topic.as_deref(), Some("borrowing"));
    assert!(kept(&again, "#go").is_none());
    // The writer's copy forgets the places of rooms gone when it rewrites.
    let mut copy = Kept::from_rooms(10, again.rooms.clone());
    copy.apply(&gone_record(&rust));
    assert_eq!(copy.rooms.len(), 2);
    copy.compact();
    assert_eq!(copy.rooms.len(), 1);
    assert!(copy.index.contains_key(&RoomName::main()) && !copy.index.contains_key(&rust));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .starts_with(r##"{"type":"room","room":"#main""##)
    );
}

/// A version 1 file (with its header) is `#main`'s history.
#[test]
fn a_version_1_file_loads_as_main() {
    let dir = TempDir::new("v1");
    let path = dir.file();
    let mut text = String::from("{\"wschat_history\":1,\"epoch\":\"old1\",\"next_seq\":3}\n");
    for seq in 3..=4 {
        text.push_str(&event(seq, "v1"));
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    let loaded = load(&path, 10).unwrap();
    assert_eq!(loaded.rooms.len(), 1);
    assert_eq!(
        (loaded.main().len(), loaded.main().dropped_through()),
        (2, 2)
    );
    assert_eq!(loaded.epoch.unwrap().as_str(), "old1");
}

/// Version 3's records: names owned, private rooms, bans and mutes (and
/// their lifting), `/oplock`, direct messages. They load, and a rewrite
/// keeps them, leaving out the sanctions that have ended.
#[test]
fn identity_and_moderation_records_load_and_survive_a_rewrite() {
    let dir = TempDir::new("identity");
    let path = dir.file();
    let now = now_ms();
    let later = now + 3_600_000;
    let dm = r#"{"type":"direct","from":{"id":1,"nick":"ann","verified":true},"to":{"id":2,"nick":"bo","verified":true},"text":"hi \"there\"","ts":5}"#;
    let signed_message = r#"{"type":"message","id":4,"from":{"id":1,"nick":"ann","verified":true,"op":true},"text":"hello","ts":5}"#;
    let lines = [
        "{\"wschat_history\":3,\"epoch\":\"e1\",\"next_seq\":4}".to_string(),
        r##"{"type":"room","room":"#main","topic":null,"dropped":0}"##.to_string(),
        signed_message.to_string(),
        r##"{"type":"oplock","room":"#main","on":true}"##.to_string(),
        r#"{"type":"owner","name":"ann","sub":"u-1"}"#.to_string(),
        r##"{"type":"private","room":"#staff"}"##.to_string(),
        format!(r#"{{"type":"sanction","kind":"ban","target":{{"sub":"u-9"}},"label":"troll","room":null,"until":{later}}}"#),
        r#"{"type":"sanction","kind":"ban","target":{"address":"192.0.2.7"},"label":"gus","room":null,"until":null}"#.to_string(),
        r##"{"type":"sanction","kind":"mute","target":{"address":"192.0.2.8"},"label":"old","room":"#main","until":1}"##.to_string(),
        r#"{"type":"sanction","kind":"ban","target":{"address":"192.0.2.9"},"label":"lifted","room":null,"until":null}"#.to_string(),
        r#"{"type":"lift","kind":"ban","target":{"address":"192.0.2.9"},"room":null}"#.to_string(),
        direct_record("u-1", "u-2", dm),
    ];
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let check = |loaded: &Loaded| {
        assert_eq!(loaded.next_seq, 5, "a signed-in sender's message is whole");
        assert_eq!(loaded.main().len(), 1);
        assert!(loaded.rooms[0].oplock);
        let identity = &loaded.identity;
        assert_eq!(identity.owners, [("ann".to_string(), "u-1".to_string())]);
        assert_eq!(identity.private_rooms, [RoomName::parse("#staff").unwrap()]);
        let labels: Vec<&str> = identity
            .sanctions
            .iter()
            .map(|s| s.label.as_str())
            .collect();
        assert_eq!(
            labels,
            ["troll", "gus"],
            "the ended mute and the lifted ban are gone"
        );
        assert_eq!(identity.sanctions[0].until, Some(later));
        assert_eq!(
            identity.sanctions[0].target,
            SanctionTarget::User("u-9".into())
        );
        let (pair, history) = &identity.direct[0];
        assert_eq!(pair, &("u-1".to_string(), "u-2".to_string()));
        assert_eq!(history.iter().collect::<Vec<_>>(), [dm]);
    };
    let (loaded, epoch, log) = HistoryLog::open(&path, 3).unwrap();
    log.close();
    check(&loaded);
    assert_eq!(epoch.to_string(), "e1");
    // The rewrite at start-up wrote them again: a second load agrees.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("{\"wschat_history\":3,"), "{text}");
    assert!(
        !text.contains("192.0.2.8") && !text.contains("192.0.2.9"),
        "{text}"
    );
    check(&load(&path, 3).unwrap());
}

/// A version 2 file (rooms, no identity records) loads as it is: no
/// names owned, no bans; it is rewritten as version 3.
#[test]
fn a_version_2_file_loads_with_no_identity() {
    let dir = TempDir::new("v2");
    let path = dir.file();
    let message = room_message_event(
        3,
        &RoomName::parse("#rust").unwrap(),
        (1, "ann").into(),
        "hi",
        5,
        false,
    );
    let text = format!(
        "{{\"wschat_history\":2,\"epoch\":\"e2\",\"next_seq\":3}}\n{}\n{message}\n",
        r##"{"type":"room","room":"#rust","topic":"t","dropped":2}"##
    );
    std::fs::write(&path, text).unwrap();
    let (loaded, _, log) = HistoryLog::open(&path, 3).unwrap();
    log.close();
    assert_eq!(loaded.next_seq, 4);
    assert_eq!(loaded.rooms[1].history.len(), 1);
    assert!(loaded.identity.owners.is_empty() && loaded.identity.sanctions.is_empty());
    let rewritten = std::fs::read_to_string(&path).unwrap();
    assert!(
        rewritten.starts_with("{\"wschat_history\":3,"),
        "{rewritten}"
    );
}
