//! Replays the fuzz corpus (`tests/fuzz/corpus/TARGET/*`, kept minimised
//! with `cargo fuzz cmin`) and the regressions (`tests/fuzz/regressions/
//! TARGET/*`: each input that broke a property, named for what it was,
//! kept when it was fixed) through the fuzz targets' own bodies, on
//! stable: everything the fuzzer found is checked again by `cargo test`.

#[path = "fuzz/targets.rs"]
mod targets;

use std::path::Path;

fn replay(target: &str) {
    let (_, body) = targets::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a target of that name");
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let mut replayed = 0;
    for folder in ["regressions", "corpus"].map(|kind| fuzz.join(kind).join(target)) {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue; // a target without regressions
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let input = std::fs::read(&path).unwrap();
            println!("{}", path.display());
            body(&input);
            replayed += 1;
        }
    }
    // A corpus that went missing would make this test pass vacuously.
    assert!(replayed >= 10, "{target}: only {replayed} files");
}

#[test]
fn frames() {
    replay("frames");
}

#[test]
fn handshake() {
    replay("handshake");
}

#[test]
fn extension_offer() {
    replay("extension_offer");
}

#[test]
fn inflate() {
    replay("inflate");
}

#[test]
fn resp() {
    replay("resp");
}

#[test]
fn json() {
    replay("json");
}

#[test]
fn room_input() {
    replay("room_input");
}

#[test]
fn every_target_has_a_replay_test() {
    let source = include_str!("fuzz_corpus.rs");
    for (name, _) in targets::TARGETS {
        assert!(source.contains(&format!("replay(\"{name}\")")), "{name}");
    }
}
