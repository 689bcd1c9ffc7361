//! Replays the `topic` fuzz target's seed corpus (`fuzz/corpus/topic`) and
//! regression inputs (`fuzz/regressions/topic`) through the very checks the
//! fuzz target runs (`fuzz/src/topic.rs`), plus a few hundred inputs made
//! by mutating the seeds with a fixed generator, so that every `cargo test`
//! exercises them without a fuzzer.
//!
//! The seed corpus is written by the ignored test `write_seed_corpus`:
//! `cargo test -p switchboard-topic --test corpus -- --ignored write_seed_corpus`.

// Test code: a panic is a failed test. (The included fuzz checks need
// neither; they are written to the workspace lints.)
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

#[path = "../../../fuzz/src/topic.rs"]
pub mod topic;

use std::fs;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn inputs() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = fs::read_dir(fuzz_dir().join(dir).join("topic")) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() {
                let bytes = fs::read(&path).unwrap();
                files.push((path, bytes));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn topic_corpus() {
    let files = inputs();
    assert!(files.len() >= 10, "the topic seed corpus is missing");
    for (path, bytes) in &files {
        println!("replaying {}", path.display());
        topic::check(bytes);
    }
}

/// Cheap mutations of the seeds (a byte replaced by a topic-significant
/// one, or the input cut short), from a fixed generator: deterministic.
#[test]
fn mutated_seeds() {
    const SIGNIFICANT: &[u8] = b"/+#$\n\0ab";
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (_, seed) in inputs() {
        for _ in 0..20 {
            let mut bytes = seed.clone();
            if bytes.is_empty() {
                continue;
            }
            for _ in 0..1 + next() % 3 {
                let position = (next() % bytes.len() as u64) as usize;
                bytes[position] = SIGNIFICANT[(next() % SIGNIFICANT.len() as u64) as usize];
            }
            if next() % 4 == 0 {
                bytes.truncate((next() % bytes.len() as u64) as usize);
            }
            topic::check(&bytes);
        }
    }
}

/// Topic names and filters, one per line (see `fuzz/src/topic.rs`), from
/// the spec's own examples (§4.7) and the edge cases around them.
const SEEDS: &[(&str, &str)] = &[
    (
        "spec-examples",
        "sport/tennis/player1\nsport/tennis/player1/ranking\nsport/tennis/player1/score/wimbledon\nsport/tennis/player1/#\nsport/#\n#\nsport/tennis/#\nsport\nsport/",
    ),
    (
        "single-level",
        "+\n+/tennis/#\nsport/+/player1\nsport/+\n/+\n+/+\n/finance\nfinance\nsport/tennis/player1",
    ),
    (
        "dollar-topics",
        "$SYS/broker/uptime\n$SYS/#\n#\n+/monitor/Clients\n$SYS/monitor/Clients\n$SYS/monitor/+\n$share",
    ),
    (
        "shared",
        "$share/group/sport/#\n$share/group/+/tennis\n$share/other/sport/tennis\nsport/tennis\n$share/group/#\n$share/g/$SYS/#",
    ),
    (
        "shared-invalid",
        "$share//a\n$share/g+/a\n$share/g#/a\n$share/g\n$share/g/\n$share/\n$share/g/a#\n$share/g/+x",
    ),
    (
        "invalid-filters",
        "sport/tennis#\nsport/tennis/#/ranking\n#/\n##\nsport+\nsport/+x/a\n++\n+#\na/b\u{0}c",
    ),
    (
        "empty-levels",
        "/\n//\n/+\n+/\n//#\n/#\na//b\na/+/b\n\n",
    ),
    (
        "limits",
        "a/b/c\na/b/c/d\n0123456789abcdef\n0123456789abcdefg\n+/+/+\n+/+/+/+\n$share/g/a/b/c\n$share/g/a/b/c/d\n$share/long-group-name/a",
    ),
    (
        "unicode",
        "søren/ølstue\n+/ølstue\nsøren/#\nü\u{FFFD}/x\n日本/東京\n日本/+",
    ),
    (
        "case-and-spaces",
        "ACCOUNTS/accounts\naccounts/#\nACCOUNTS/+\n \n /\n+/ \na b/c",
    ),
    (
        "repeats",
        "a/#\na/#\na/#\na/b\na/b\na/+\n$share/g/a/#\n$share/g/a/#\n$share/h/a/#",
    ),
    ("one-name", "home/kitchen/temperature"),
];

#[test]
#[ignore = "writes the seed corpus into fuzz/corpus; run by hand"]
fn write_seed_corpus() {
    let dir = fuzz_dir().join("corpus/topic");
    fs::create_dir_all(&dir).unwrap();
    for (name, text) in SEEDS {
        fs::write(dir.join(name), text).unwrap();
    }
}
