//! The pure core of a delivery thread, without a socket: how a log numbers
//! and counts its parts, the order in which a client's bytes are walked
//! (its variant's frames but its own, its private items and its groups'
//! frames at their point, nothing after a Close, nothing of the log while
//! it is outside the lobby), how a partial write moves it, and its lag.
//! Then a delivery thread with loopback sockets: which clients a group's
//! frame reaches, and which a turn writes to.

use super::*;
use crate::delivery::doorbell::{self, Doorbell};
use crate::delivery::{Batch, Delivery, Frame, PRIVATE_ITEM_OVERHEAD};
use crate::metrics::Metrics;
use crate::protocol::close::CloseCode;
use crate::room::Mode;
use std::io::Read;
use std::net::TcpListener;

/// A part (one batch's frames for one variant): `(origin, bytes)`.
fn part(frames: &[(Option<Tag>, &str)]) -> Arc<Part> {
    let mut part = Part::default();
    for (origin, text) in frames {
        part.bytes += text.len();
        part.frames.push(Frame {
            origin: *origin,
            bytes: text.as_bytes().into(),
        });
    }
    Arc::new(part)
}

fn log(parts: &[&[(Option<Tag>, &str)]]) -> Log {
    let mut log = Log::default();
    for frames in parts {
        log.push(part(frames));
    }
    log
}

fn queue(tag: Tag) -> Queue {
    Queue {
        tag,
        in_lobby: true,
        ..Queue::default()
    }
}

/// At part `part` of the log, before its frames.
fn at(part: u64) -> Position {
    Position { part, frame: 0 }
}

fn push(queue: &mut Queue, at: Position, text: &str, kind: Kind) {
    queue.push_private(at, Bytes::Owned(text.into()), kind, kind.capped());
}

/// A group's frame, shared, at `at`.
fn push_group(queue: &mut Queue, at: Position, text: &str) {
    let bytes: Arc<[u8]> = text.as_bytes().into();
    queue.push_private(at, Bytes::Shared(bytes), Kind::Group, Kind::Group.capped());
}

/// Every piece the client would be sent from where it is, as text.
fn walked(queue: &Queue, log: Option<&Log>) -> Vec<String> {
    let mut walk = queue.walk();
    let mut out = Vec::new();
    while let Some(piece) = queue.step(&mut walk, log) {
        out.push(String::from_utf8_lossy(piece.bytes).into_owned());
    }
    out
}

#[test]
fn a_log_numbers_its_parts_and_counts_the_bytes_from_each() {
    let mut log = log(&[&[(None, "abc")], &[(None, "defgh")], &[(None, "ijklmno")]]);
    assert_eq!(log.head(), 3);
    assert_eq!(log.get(1).map(|p| p.bytes), Some(5));
    assert_eq!(log.get(3).map(|p| p.bytes), None);
    assert_eq!(
        [0, 1, 2, 3].map(|n| log.bytes_from(n)),
        [15, 12, 7, 0],
        "bytes from a part to the end of the log"
    );
    log.trim(2);
    assert_eq!((log.first, log.head(), log.bytes()), (2, 3, 7));
    assert!(log.get(1).is_none(), "a trimmed part is gone");
    assert_eq!(log.get(2).map(|p| p.bytes), Some(7));
    log.push(part(&[(None, "pq")]));
    assert_eq!(
        (log.head(), log.bytes_from(2), log.bytes_from(3)),
        (4, 9, 2)
    );
}

#[test]
fn the_walk_gives_its_frames_in_order_across_batches_but_its_own() {
    let log = log(&[
        &[(Some(1), "from-1"), (Some(2), "from-2")],
        &[(None, "to-all")],
        &[(Some(2), "again-2"), (Some(3), "from-3")],
    ]);
    assert_eq!(
        walked(&queue(1), Some(&log)),
        ["from-2", "to-all", "again-2", "from-3"]
    );
    assert_eq!(
        walked(&queue(2), Some(&log)),
        ["from-1", "to-all", "from-3"]
    );
    let mut later = queue(3);
    later.next = 2;
    assert_eq!(
        walked(&later, Some(&log)),
        ["again-2"],
        "from its position on"
    );
}

#[test]
fn private_items_come_at_their_point_in_the_log() {
    let log = log(&[&[(None, "b0")], &[(None, "b1")], &[(None, "b2")]]);
    let mut queue = queue(1);
    push(&mut queue, at(0), "welcome", Kind::Welcome);
    push(&mut queue, at(2), "reply", Kind::Room);
    push(&mut queue, at(2), "pong", Kind::Pong);
    assert_eq!(
        walked(&queue, Some(&log)),
        ["welcome", "b0", "b1", "reply", "pong", "b2"]
    );
    // An echo client has no log (its items are all at 0): its private
    // items only, in order.
    let mut echo = self::queue(2);
    for (text, kind) in [
        ("101", Kind::Welcome),
        ("echo", Kind::Reply),
        ("pong", Kind::Pong),
    ] {
        push(&mut echo, at(0), text, kind);
    }
    assert_eq!(walked(&echo, None), ["101", "echo", "pong"]);
}

#[test]
fn nothing_is_walked_after_a_close() {
    let log = log(&[&[(None, "b0")], &[(None, "b1")]]);
    let mut queue = queue(1);
    push(&mut queue, at(1), "close", Kind::Close);
    push(&mut queue, at(1), "late reply", Kind::Reply);
    assert_eq!(walked(&queue, Some(&log)), ["b0", "close"]);
    let mut room = self::queue(2);
    push(&mut room, at(0), "rejoin", Kind::RoomClose);
    assert_eq!(walked(&room, Some(&log)), ["rejoin"]);
}

#[test]
fn a_partial_write_keeps_its_offset_and_the_next_one_goes_on_from_it() {
    let log = log(&[&[(None, "abc"), (None, "de")], &[(None, "fg")]]);
    let mut queue = queue(1);
    let advanced = queue.advance(Some(&log), 2);
    assert_eq!(advanced.pieces, 0);
    assert_eq!((queue.next, queue.frame, queue.offset), (0, 0, 2));
    assert_eq!(
        walked(&queue, Some(&log))[0],
        "abc",
        "still the piece in flight"
    );
    // The rest of "abc", then "de": the position moves to the end of part 0.
    let advanced = queue.advance(Some(&log), 1 + 2);
    assert_eq!(advanced.pieces, 2);
    assert_eq!((queue.next, queue.frame, queue.offset), (0, 2, 0));
    assert_eq!(walked(&queue, Some(&log)), ["fg"]);
    let advanced = queue.advance(Some(&log), 2);
    assert_eq!(advanced.pieces, 1);
    assert_eq!((queue.next, queue.frame), (1, 1));
    assert!(walked(&queue, Some(&log)).is_empty());
}

#[test]
fn written_private_items_are_popped_and_only_counted_ones_released() {
    let log = log(&[&[(None, "b0")]]);
    let mut queue = queue(1);
    push(&mut queue, at(0), "101", Kind::Welcome);
    push(&mut queue, at(1), "echo", Kind::Reply);
    push(&mut queue, at(1), "pong", Kind::Pong);
    queue.pong = Some(2);
    let total = private_cost(3) + private_cost(4) + private_cost(4);
    assert_eq!(queue.private_cost, total);
    // The 101, b0 and the echo: the pong is left.
    let advanced = queue.advance(Some(&log), 3 + 2 + 4);
    assert_eq!(
        advanced,
        Advanced {
            pieces: 3,
            released: private_cost(4),
        },
        "the welcome is not counted against the backlog cap"
    );
    assert_eq!((queue.popped, queue.private.len()), (2, 1));
    assert_eq!(queue.private_cost, private_cost(4));
    assert_eq!(queue.pong, Some(2), "the pong still waits");
    let advanced = queue.advance(Some(&log), 4);
    assert_eq!(advanced.released, 4 + PRIVATE_ITEM_OVERHEAD);
    assert_eq!((queue.popped, queue.pong, queue.private_cost), (3, None, 0));
}

#[test]
fn its_lag_is_what_it_will_receive_not_its_own_frames() {
    let log = log(&[&[(Some(1), "mine!"), (Some(2), "theirs")], &[(None, "all")]]);
    let mut queue = queue(1);
    queue.note_own(0, 5);
    assert_eq!(queue.held(Some(&log)), 5 + 6 + 3, "the log it holds");
    assert_eq!(queue.behind(Some(&log)), 6 + 3, "its own frame is not lag");
    push(&mut queue, at(2), "x", Kind::Reply);
    assert_eq!(queue.behind(Some(&log)), 6 + 3 + private_cost(1) as u64);
    // Writing "theirs" moves it past its own frame too.
    queue.advance(Some(&log), 6);
    assert_eq!((queue.next, queue.frame), (0, 2));
}

#[test]
fn an_idle_client_moves_to_the_head_past_its_own_frames() {
    let log = log(&[&[(Some(1), "mine")], &[(Some(1), "mine too")]]);
    let mut queue = queue(1);
    queue.note_own(0, 4);
    queue.note_own(1, 8);
    assert_eq!(queue.behind(Some(&log)), 0);
    queue.skip_to_head(Some(&log));
    assert_eq!(
        (queue.next, queue.frame),
        (2, 0),
        "it no longer holds the log"
    );
    assert!(queue.own.is_empty());
    assert_eq!(queue.own_bytes, 0);
    // One with a frame for it stays where it is.
    let mut other = self::queue(2);
    other.skip_to_head(Some(&log));
    assert_eq!(other.next, 0);
}

#[test]
fn each_variant_has_its_own_log() {
    let all = [
        Variant::new(Mode::Raw, false),
        Variant::new(Mode::V1, false),
        Variant::new(Mode::Raw, true),
        Variant::new(Mode::V1, true),
    ];
    let mut indexes = all.map(Variant::index);
    indexes.sort();
    assert_eq!(indexes, [0, 1, 2, 3], "distinct, and within VARIANTS");
    assert_eq!(VARIANTS, all.len());
    let mut logs: [Log; VARIANTS] = Default::default();
    logs[all[3].index()].push(part(&[(None, "v1 compressed")]));
    assert_eq!(log_of(&logs, Some(all[3])).map(Log::head), Some(1));
    assert_eq!(log_of(&logs, Some(all[1])).map(Log::head), Some(0));
    assert!(log_of(&logs, None).is_none(), "an echo client has none");
}

#[test]
fn the_close_code_is_read_from_the_frame_the_server_encoded() {
    let away = encode_close(CloseCode::Away, "shutting_down", None);
    assert_eq!(close_code(&away), 1001);
    assert_eq!(close_code(&[0x88, 0x00]), 1005, "no code: §7.1.5");
}

#[test]
fn a_groups_frames_come_at_their_place_among_the_log_and_private_items() {
    let log = log(&[
        &[(None, "m0"), (None, "m1")],
        &[(Some(1), "own"), (None, "m2")],
    ]);
    let mut queue = queue(1);
    push(&mut queue, at(0), "welcome", Kind::Welcome);
    push_group(&mut queue, Position { part: 0, frame: 1 }, "g-before-m1");
    push_group(&mut queue, Position { part: 0, frame: 2 }, "g-after-part-0");
    push(&mut queue, at(1), "reply", Kind::Room);
    push_group(&mut queue, Position { part: 1, frame: 1 }, "g-after-own");
    push_group(&mut queue, Position { part: 1, frame: 2 }, "g-end");
    // A batch with no frame for the lobby: before whatever comes next.
    push_group(&mut queue, at(2), "g-next");
    let expected = [
        "welcome",
        "m0",
        "g-before-m1",
        "m1",
        "g-after-part-0",
        "reply",
        "g-after-own",
        "m2",
        "g-end",
        "g-next",
    ];
    assert_eq!(walked(&queue, Some(&log)), expected);
    // Written piece by piece (the first in two halves), the rest is
    // always the tail of that order.
    queue.advance(Some(&log), 3);
    assert_eq!(queue.offset, 3);
    assert_eq!(walked(&queue, Some(&log)), expected);
    queue.advance(Some(&log), "welcome".len() - 3);
    for (k, piece) in expected.iter().enumerate().skip(1) {
        assert_eq!(
            walked(&queue, Some(&log)),
            expected[k..],
            "after {k} pieces"
        );
        queue.advance(Some(&log), piece.len());
    }
    assert!(walked(&queue, Some(&log)).is_empty());
    assert_eq!((queue.private.len(), queue.private_cost), (0, 0));
}

#[test]
fn outside_the_lobby_it_reads_the_log_up_to_where_it_left_and_again_from_where_it_joined() {
    let mut log = log(&[&[(None, "b0")]]);
    let mut queue = queue(1);
    queue.leave_lobby(log.head());
    log.push(part(&[(None, "b1-not-for-it")]));
    push_group(&mut queue, Position { part: 1, frame: 1 }, "g");
    push(&mut queue, at(2), "reply", Kind::Room);
    queue.join_lobby(log.head());
    log.push(part(&[(None, "b2")]));
    assert_eq!(walked(&queue, Some(&log)), ["b0", "g", "reply", "b2"]);
    assert_eq!(
        queue.behind(Some(&log)),
        2 + 2 + (private_cost(1) + private_cost(5)) as u64,
        "the parts it was outside for are not in its lag"
    );
    // Leaving and joining with nothing logged between changes nothing.
    queue.leave_lobby(log.head());
    queue.join_lobby(log.head());
    assert_eq!(queue.gaps.len(), 1);
    assert_eq!(walked(&queue, Some(&log)), ["b0", "g", "reply", "b2"]);
    // Once written, its position is past the gap, which is forgotten.
    queue.advance(Some(&log), 2 + 1 + 5 + 2);
    assert_eq!((queue.next, queue.frame, queue.gaps.len()), (2, 1, 0));

    // Outside the lobby and caught up, it holds none of the log, and gets
    // nothing logged after it left, however much.
    let mut outside = self::queue(2);
    outside.next = log.head();
    outside.leave_lobby(log.head());
    outside.skip_to_head(Some(&log));
    log.push(part(&[(None, "b3-not-for-it")]));
    assert_eq!(outside.next, OUTSIDE_LOG);
    assert_eq!(outside.held(Some(&log)), 0);
    assert!(walked(&outside, Some(&log)).is_empty());
    push_group(&mut outside, Position::head(Some(&log)), "g2");
    assert_eq!(walked(&outside, Some(&log)), ["g2"]);
    // Back in the lobby: from the head on.
    outside.join_lobby(log.head());
    log.push(part(&[(None, "b4")]));
    assert_eq!(walked(&outside, Some(&log)), ["g2", "b4"]);
}

#[test]
fn a_groups_frames_count_in_its_lag_but_not_against_its_backlog_cap() {
    let mut queue = queue(1);
    push_group(&mut queue, at(0), "12345");
    assert_eq!(queue.behind(None), private_cost(5) as u64);
    let advanced = queue.advance(None, 5);
    assert_eq!(
        advanced,
        Advanced {
            pieces: 1,
            released: 0
        },
        "not the reader's to wait on"
    );
    assert_eq!(queue.behind(None), 0);
}

/// A delivery thread's state with `clients` clients (tags 1..) over
/// loopback sockets, driven a command at a time, without its thread.
struct Rig {
    shard: Shard,
    _bell: Doorbell<Command>,
    peers: Vec<TcpStream>,
}

const V1: Variant = Variant::new(Mode::V1, false);
const RAW: Variant = Variant::new(Mode::Raw, false);

fn rig(clients: u64, variant: Variant, max_behind_bytes: usize) -> Rig {
    let (bell, inbox) = doorbell::doorbell(16).unwrap();
    let settings = Settings {
        threads: 1,
        stall_limit: Duration::from_secs(60),
        max_behind_bytes,
        metrics: Arc::new(Metrics::default()),
    };
    let mut rig = Rig {
        shard: Shard::new(inbox, settings),
        _bell: bell,
        peers: Vec::new(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    for tag in 1..=clients {
        let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let endpoint = Delivery::endpoint(tag, Some(variant), Arc::new(server), b"101|".to_vec());
        rig.shard.apply(Command::Add(Box::new(endpoint)));
        rig.peers.push(peer);
    }
    rig.shard.write_all();
    for tag in 1..=clients {
        assert_eq!(rig.read(tag, 4), "101|");
    }
    rig
}

impl Rig {
    fn broadcast(&mut self, batch: Batch) {
        let broadcast = Arc::new(batch.into_broadcast());
        self.shard.apply(Command::Broadcast(broadcast));
    }

    fn join(&mut self, tag: Tag, group: Group) {
        self.shard.apply(Command::Join { tag, group });
    }

    fn leave(&mut self, tag: Tag, group: Group) {
        self.shard.apply(Command::Leave { tag, group });
    }

    fn client(&self, tag: Tag) -> &Recipient {
        &self.shard.clients[self.shard.index[&tag]]
    }

    /// Items queued for `tag` (its groups' frames among them).
    fn queued(&self, tag: Tag) -> usize {
        self.client(tag).queue.private.len()
    }

    fn read(&mut self, tag: Tag, n: usize) -> String {
        let mut bytes = vec![0; n];
        self.peers[tag as usize - 1].read_exact(&mut bytes).unwrap();
        String::from_utf8(bytes).unwrap()
    }

    fn ready(&self) -> Vec<Tag> {
        let mut ready = self.shard.ready.clone();
        ready.sort();
        ready
    }
}

/// A batch of `(variant, origin, group or None for everyone, text)`.
fn batch(frames: &[(Variant, Option<Tag>, Option<Group>, &str)]) -> Batch {
    let mut batch = Batch::default();
    for &(variant, origin, group, text) in frames {
        let bytes: Box<[u8]> = text.as_bytes().into();
        match group {
            Some(group) => batch.push(variant, origin, group, bytes),
            None => batch.push_to_everyone(variant, origin, bytes),
        }
    }
    batch
}

#[test]
fn a_groups_frame_reaches_its_members_only_and_the_turn_writes_to_them_only() {
    let mut rig = rig(100, V1, 1 << 20);
    for tag in [3, 50, 97] {
        rig.join(tag, 7);
    }
    rig.broadcast(batch(&[(V1, None, Some(7), "room|")]));
    assert!(!rig.shard.logged, "nothing for the log");
    assert_eq!(rig.ready(), [3, 50, 97]);
    for tag in 1..=100 {
        let member = [3, 50, 97].contains(&tag);
        assert_eq!(rig.queued(tag), usize::from(member), "client {tag}");
    }
    let pass = rig.shard.write_all();
    assert_eq!(
        pass,
        Pass {
            visited: 3,
            more: false
        },
        "the members only"
    );
    assert!(rig.shard.ready.is_empty());
    // Then a frame for the lobby: everyone, the members after their
    // group's frame.
    rig.broadcast(batch(&[(V1, None, Some(LOBBY), "lobby|")]));
    assert_eq!(rig.shard.write_all().visited, 100);
    for tag in 1..=100 {
        let expected = if [3, 50, 97].contains(&tag) {
            "room|lobby|"
        } else {
            "lobby|"
        };
        assert_eq!(rig.read(tag, expected.len()), expected, "client {tag}");
    }
}

#[test]
fn a_raw_line_in_a_group_is_not_queued_back_to_its_sender() {
    let mut rig = rig(4, RAW, 1 << 20);
    for tag in [1, 2, 3] {
        rig.join(tag, 5);
    }
    rig.broadcast(batch(&[(RAW, Some(2), Some(5), "2: hi|")]));
    assert_eq!([1, 2, 3, 4].map(|t| rig.queued(t)), [1, 0, 1, 0]);
    rig.broadcast(batch(&[(RAW, None, Some(5), "end|")]));
    rig.shard.write_all();
    for (tag, expected) in [(1, "2: hi|end|"), (2, "end|"), (3, "2: hi|end|")] {
        assert_eq!(rig.read(tag, expected.len()), expected, "client {tag}");
    }
}

#[test]
fn a_batch_keeps_the_broadcasters_order_across_the_lobby_groups_and_everyone() {
    let mut rig = rig(3, V1, 1 << 20);
    rig.join(1, 2);
    rig.join(3, 2);
    rig.leave(3, LOBBY);
    rig.broadcast(batch(&[
        (V1, None, Some(LOBBY), "a|"),
        (V1, None, Some(2), "b|"),
        (V1, None, Some(LOBBY), "c|"),
        (V1, None, None, "d|"),
        (V1, None, Some(2), "e|"),
        // Another variant's frames are not for them.
        (RAW, None, Some(2), "raw|"),
        (RAW, None, None, "raw-all|"),
    ]));
    // Everyone's frame reaches the lobby in its log, the others queued.
    assert_eq!([1, 2, 3].map(|t| rig.queued(t)), [2, 0, 3]);
    rig.shard.write_all();
    assert_eq!(rig.read(1, 10), "a|b|c|d|e|", "in the lobby and the group");
    assert_eq!(rig.read(2, 6), "a|c|d|", "in the lobby only");
    assert_eq!(rig.read(3, 6), "b|d|e|", "in the group only");
}

#[test]
fn leaving_a_group_stops_its_frames_right_after_those_sent_before() {
    let mut rig = rig(3, V1, 1 << 20);
    rig.join(1, 9);
    rig.join(2, 9);
    rig.broadcast(batch(&[
        (V1, None, Some(9), "before|"),
        (V1, None, Some(LOBBY), "lobby1|"),
    ]));
    rig.leave(2, 9);
    rig.leave(3, LOBBY);
    rig.broadcast(batch(&[
        (V1, None, Some(9), "after|"),
        (V1, None, Some(LOBBY), "lobby2|"),
    ]));
    rig.join(3, LOBBY);
    rig.broadcast(batch(&[(V1, None, Some(LOBBY), "lobby3|")]));
    rig.shard.write_all();
    let one = "before|lobby1|after|lobby2|lobby3|";
    assert_eq!(rig.read(1, one.len()), one);
    let two = "before|lobby1|lobby2|lobby3|";
    assert_eq!(rig.read(2, two.len()), two);
    let three = "lobby1|lobby3|";
    assert_eq!(rig.read(3, three.len()), three);
    // A group whose last member left is forgotten.
    rig.leave(1, 9);
    assert!(rig.shard.groups.is_empty());
}

#[test]
fn a_member_too_far_behind_on_its_groups_frames_is_dropped() {
    const FRAME: usize = 512;
    const LIMIT: usize = 8 * (FRAME + PRIVATE_ITEM_OVERHEAD);
    let mut rig = rig(3, V1, LIMIT);
    rig.join(1, 4);
    rig.join(2, 4);
    rig.leave(2, LOBBY);
    let frame = "x".repeat(FRAME);
    // Not written (the sockets are never given a turn): they pile up.
    for _ in 0..8 {
        rig.broadcast(batch(&[(V1, None, Some(4), &frame)]));
    }
    assert!(!rig.shard.urgent, "at the limit, not past it");
    assert_eq!(
        rig.client(1).link.private_cost.load(Relaxed),
        0,
        "not its backlog"
    );
    rig.broadcast(batch(&[(V1, None, Some(4), &frame)]));
    assert!(rig.shard.urgent, "past the limit: sweep at once");
    rig.shard.sweep(true);
    for tag in [1, 2] {
        assert_eq!(rig.client(tag).link.ending(), Some(Ending::SlowConsumer));
    }
    assert_eq!(rig.client(3).link.ending(), None, "not a member");
    assert!(rig.shard.groups.is_empty(), "the dropped get no more");
    assert!(rig.shard.outside.iter().all(Vec::is_empty));
}
