//! The pure core of a delivery thread, without a socket: how a log numbers
//! and counts its parts, the order in which a client's bytes are walked
//! (its variant's frames but its own, its private items at their point,
//! nothing after a Close), how a partial write moves it, and its lag.

use super::*;
use crate::delivery::{Frame, PRIVATE_ITEM_OVERHEAD};
use crate::protocol::close::CloseCode;
use crate::room::Mode;

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
        ..Queue::default()
    }
}

fn push(queue: &mut Queue, at: u64, text: &str, kind: Kind) {
    queue.push_private(at, Bytes::Owned(text.into()), kind, kind.capped());
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
    push(&mut queue, 0, "welcome", Kind::Welcome);
    push(&mut queue, 2, "reply", Kind::Room);
    push(&mut queue, 2, "pong", Kind::Pong);
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
        push(&mut echo, 0, text, kind);
    }
    assert_eq!(walked(&echo, None), ["101", "echo", "pong"]);
}

#[test]
fn nothing_is_walked_after_a_close() {
    let log = log(&[&[(None, "b0")], &[(None, "b1")]]);
    let mut queue = queue(1);
    push(&mut queue, 1, "close", Kind::Close);
    push(&mut queue, 1, "late reply", Kind::Reply);
    assert_eq!(walked(&queue, Some(&log)), ["b0", "close"]);
    let mut room = self::queue(2);
    push(&mut room, 0, "rejoin", Kind::RoomClose);
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
    push(&mut queue, 0, "101", Kind::Welcome);
    push(&mut queue, 1, "echo", Kind::Reply);
    push(&mut queue, 1, "pong", Kind::Pong);
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
    push(&mut queue, 2, "x", Kind::Reply);
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
