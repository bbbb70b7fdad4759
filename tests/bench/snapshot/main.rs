//! What a cluster snapshot of a chat with many rooms costs: its size, the
//! time a node takes to write it (`Replica::snapshot`, on the node's
//! broadcaster thread, every couple of seconds while the chat changes)
//! and the time a starting node takes to read it back
//! (`Replica::restore`). Median of three rounds per size.
//!
//! `cargo bench --bench cluster_snapshot` (tests/bench/README.md).

use std::time::{Duration, Instant};
use wschat::cluster::replica::Replica;
use wschat::room::{Action, Chat, Epoch, Limits, Mode, RoomName};

/// Rooms of 100 messages, one member each, each line about 100
/// characters: 1,000 rooms keep about 16 MiB; 5,000 fill the default
/// 64 MiB budget.
const SIZES: [usize; 3] = [100, 1_000, 5_000];
const MESSAGES_PER_ROOM: usize = 100;

fn chat(rooms: usize, limits: Limits, epoch: &Epoch) -> Chat {
    let mut chat = Chat::new(limits, 1, epoch.clone(), Vec::new());
    let mut out = Vec::new();
    for r in 0..rooms {
        let id = r as u64 + 1;
        let name = RoomName::parse(&format!("#room-{r}")).unwrap();
        chat.connect(0, id, Mode::V1, None, &[name], &mut out);
        for i in 0..MESSAGES_PER_ROOM {
            let text = format!(
                "/say #room-{r} line {i} of a chat room, about a hundred characters of ordinary text..."
            );
            chat.handle(0, Action::Text { id, text }, &mut out);
        }
        out.clear();
    }
    chat
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let limits = Limits {
        history: 100,
        max_rooms_per_client: 32,
        max_rooms: 10_000,
        max_room_members: 10_000,
        room_history_bytes: 64 << 20,
    };
    let epoch = Epoch::parse("e1").unwrap();
    println!("| rooms × messages | history | snapshot | written in | read in |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for rooms in SIZES {
        let mut replica = Replica::new(limits, epoch.clone());
        replica.chat = chat(rooms, limits, &epoch);
        let (mut writes, mut reads, mut size) = (Vec::new(), Vec::new(), 0);
        for _ in 0..3 {
            let started = Instant::now();
            let body = replica.snapshot();
            writes.push(started.elapsed());
            let started = Instant::now();
            let back = Replica::restore(&body, limits, &epoch).unwrap();
            reads.push(started.elapsed());
            assert_eq!(back.chat.room_count(), replica.chat.room_count());
            size = body.len();
        }
        println!(
            "| {rooms} × {MESSAGES_PER_ROOM} | {:.1} MiB | {:.1} MiB | {:.0?} | {:.0?} |",
            replica.chat.history_bytes() as f64 / (1 << 20) as f64,
            size as f64 / (1 << 20) as f64,
            median(writes),
            median(reads)
        );
    }
}
