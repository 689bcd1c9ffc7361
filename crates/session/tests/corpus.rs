//! Replays the `session` fuzz target's seed corpus (`fuzz/corpus/session`)
//! and regression inputs (`fuzz/regressions/session`) through the very
//! checks the fuzz target runs (`fuzz/src/session.rs`: the session against a
//! reference model, operation by operation), plus a few hundred inputs from
//! a fixed generator, so that every `cargo test` exercises them without a
//! fuzzer.
//!
//! The seed corpus is written by the ignored test `write_seed_corpus`:
//! `cargo test -p switchboard-session --test corpus -- --ignored write_seed_corpus`.

// Test code: a panic is a failed test. (The included fuzz checks need
// neither; they are written to the workspace lints.)
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

#[path = "../../../fuzz/src/session.rs"]
pub mod session;

use std::fs;
use std::path::{Path, PathBuf};

use session::{IdRef, MessageSpec, Op};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn inputs() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = fs::read_dir(fuzz_dir().join(dir).join("session")) else {
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
fn session_corpus() {
    let files = inputs();
    assert!(files.len() >= 10, "the session seed corpus is missing");
    for (path, bytes) in &files {
        println!("replaying {}", path.display());
        session::check(bytes);
    }
}

/// The corpus files are the seeds below, so the op format and the files
/// cannot drift apart unnoticed.
#[test]
fn corpus_files_are_the_seeds() {
    for (name, ops) in seeds() {
        let bytes = session::encode(&ops);
        assert_eq!(session::decode(&bytes), ops, "{name}: decode(encode(ops))");
        let path = fuzz_dir().join("corpus/session").join(name);
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "{} is stale",
            path.display()
        );
    }
}

/// Random inputs from a fixed generator, biased towards short values so
/// that they exercise the flows rather than only error paths.
#[test]
fn generated_inputs() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..300 {
        let length = 1 + next() % 160;
        let bytes: Vec<u8> = (0..length)
            .map(|_| {
                let value = next();
                if value % 3 == 0 {
                    (value >> 8) as u8
                } else {
                    ((value >> 8) % 25) as u8
                }
            })
            .collect();
        session::check(&bytes);
    }
}

fn message(qos: u8) -> MessageSpec {
    MessageSpec {
        qos,
        payload_quads: 2,
        topic: 1,
        expiry_millis: None,
        shared: false,
        retain: false,
        properties: false,
        subscription_identifiers: 0,
    }
}

fn attach(version: u8, receive_maximum: u16) -> Op {
    Op::Attach {
        version,
        receive_maximum,
        maximum_packet_size: None,
    }
}

const V311: u8 = 1;
const V5: u8 = 2;

/// Named operation sequences, one per behaviour of the session.
fn seeds() -> Vec<(&'static str, Vec<Op>)> {
    let first = IdRef::InFlight(0);
    vec![
        (
            "qos1-flow",
            vec![
                attach(V5, 10),
                Op::Enqueue(message(1)),
                Op::Poll,
                Op::PubAck(first),
                Op::Poll,
            ],
        ),
        (
            "qos2-flow-journaled",
            vec![
                Op::SetJournaling(true),
                attach(V5, 10),
                Op::Enqueue(message(2)),
                Op::PollAll,
                Op::PubRec {
                    id: first,
                    reason_code: 0,
                },
                Op::PubRec {
                    id: first,
                    reason_code: 0,
                },
                Op::PubComp(first),
                Op::TakeJournal,
            ],
        ),
        (
            "qos0-order",
            vec![
                attach(V311, u16::MAX),
                Op::Enqueue(message(0)),
                Op::Enqueue(message(1)),
                Op::Enqueue(message(0)),
                Op::PollAll,
                Op::PubAck(first),
            ],
        ),
        (
            "window",
            vec![
                attach(V5, 2),
                Op::Enqueue(message(1)),
                Op::Enqueue(message(2)),
                Op::Enqueue(message(1)),
                Op::Enqueue(message(0)),
                Op::PollAll,
                Op::PubAck(first),
                Op::PollAll,
                Op::PubRec {
                    id: first,
                    reason_code: 0,
                },
                Op::PollAll,
                Op::PubComp(first),
                Op::PollAll,
            ],
        ),
        (
            "reconnect-resend",
            vec![
                Op::SetJournaling(true),
                attach(V5, 8),
                Op::Enqueue(message(1)),
                Op::Enqueue(message(2)),
                Op::Enqueue(message(2)),
                Op::Enqueue(message(1)),
                Op::PollAll,
                Op::PubRec {
                    id: IdRef::InFlight(1),
                    reason_code: 0,
                },
                Op::Detach,
                attach(V311, 1),
                Op::PollAll,
                Op::PubAck(first),
                Op::PollAll,
                Op::PubComp(IdRef::InFlight(0)),
                Op::PollAll,
                Op::TakeJournal,
            ],
        ),
        (
            "expiry",
            vec![
                attach(V5, 10),
                Op::Enqueue(MessageSpec {
                    expiry_millis: Some(2500),
                    ..message(1)
                }),
                Op::Enqueue(MessageSpec {
                    expiry_millis: Some(0),
                    ..message(1)
                }),
                Op::Advance { millis: 1200 },
                Op::Poll,
                Op::Enqueue(MessageSpec {
                    expiry_millis: Some(500),
                    ..message(0)
                }),
                Op::Advance { millis: 600 },
                Op::PollAll,
                Op::Detach,
                attach(V5, 10),
                Op::TakeDrops,
            ],
        ),
        (
            "queue-full",
            vec![
                Op::SetLimits {
                    max_queued_messages: 3,
                    max_queued_bytes: 40,
                    max_inflight: 1,
                    queue_qos0_offline: false,
                },
                Op::Enqueue(message(1)),
                Op::Enqueue(MessageSpec {
                    payload_quads: 20,
                    ..message(1)
                }),
                Op::Enqueue(message(2)),
                Op::Enqueue(message(1)),
                Op::Enqueue(message(1)),
                Op::Enqueue(message(0)),
                Op::TakeDrops,
                attach(V5, 5),
                Op::PollAll,
            ],
        ),
        (
            "qos0-offline",
            vec![
                Op::Enqueue(message(0)),
                Op::SetLimits {
                    max_queued_messages: 10,
                    max_queued_bytes: 1000,
                    max_inflight: 10,
                    queue_qos0_offline: true,
                },
                Op::Enqueue(message(0)),
                attach(V311, u16::MAX),
                Op::PollAll,
                Op::TakeDrops,
            ],
        ),
        (
            "maximum-packet-size",
            vec![
                Op::SetJournaling(true),
                Op::Attach {
                    version: V5,
                    receive_maximum: 10,
                    maximum_packet_size: Some(200),
                },
                Op::Enqueue(MessageSpec {
                    payload_quads: 10,
                    properties: true,
                    subscription_identifiers: 2,
                    ..message(1)
                }),
                Op::Enqueue(MessageSpec {
                    topic: 4,
                    payload_quads: 30,
                    ..message(1)
                }),
                Op::Enqueue(message(2)),
                Op::PollAll,
                Op::Detach,
                Op::Attach {
                    version: V5,
                    receive_maximum: 10,
                    maximum_packet_size: Some(40),
                },
                Op::PollAll,
                Op::TakeDrops,
                Op::TakeJournal,
            ],
        ),
        (
            "shared",
            vec![
                Op::SetJournaling(true),
                attach(V5, 10),
                Op::Enqueue(MessageSpec {
                    shared: true,
                    ..message(1)
                }),
                Op::Enqueue(MessageSpec {
                    shared: true,
                    ..message(2)
                }),
                Op::Enqueue(message(1)),
                Op::PollAll,
                Op::Enqueue(MessageSpec {
                    shared: true,
                    ..message(1)
                }),
                Op::Detach,
                Op::TakeShared,
                Op::Clear,
                Op::TakeJournal,
            ],
        ),
        (
            "incoming-qos2",
            vec![
                Op::IncomingQos2(7),
                Op::IncomingQos2(7),
                Op::PubRel(7),
                Op::PubRel(7),
                Op::IncomingQos2(9),
                Op::AbandonIncomingQos2(9),
                Op::AbandonIncomingQos2(9),
                Op::IncomingQos2(0),
                Op::IncomingQos2(u16::MAX),
            ],
        ),
        (
            "restore",
            vec![
                Op::RestoreQueued(message(1)),
                Op::RestoreInflight {
                    packet_id: 5,
                    released: false,
                    message: message(1),
                },
                Op::RestoreInflight {
                    packet_id: 6,
                    released: true,
                    message: message(2),
                },
                Op::RestoreInflight {
                    packet_id: 0,
                    released: false,
                    message: message(2),
                },
                Op::RestoreInflight {
                    packet_id: 0,
                    released: true,
                    message: message(2),
                },
                Op::RestoreInflight {
                    packet_id: 5,
                    released: false,
                    message: message(2),
                },
                Op::RestoreInflight {
                    packet_id: 9,
                    released: false,
                    message: message(0),
                },
                Op::RestoreIncomingQos2(3),
                Op::SetJournaling(true),
                attach(V5, 1),
                Op::PollAll,
                Op::PubRec {
                    id: IdRef::Raw(5),
                    reason_code: 0,
                },
                Op::PubComp(IdRef::Raw(6)),
                Op::PollAll,
                Op::IncomingQos2(3),
                Op::TakeJournal,
            ],
        ),
        (
            "unexpected-acks",
            vec![
                attach(V5, 10),
                Op::PubAck(IdRef::Raw(0)),
                Op::PubAck(IdRef::Raw(1)),
                Op::Enqueue(message(1)),
                Op::Enqueue(message(2)),
                Op::PollAll,
                Op::PubRec {
                    id: IdRef::InFlight(0),
                    reason_code: 0,
                },
                Op::PubComp(IdRef::InFlight(0)),
                Op::PubComp(IdRef::InFlight(1)),
                Op::PubAck(IdRef::InFlight(1)),
                Op::PubRec {
                    id: IdRef::InFlight(1),
                    reason_code: 0x80,
                },
                Op::PubAck(IdRef::InFlight(0)),
                Op::PubRec {
                    id: IdRef::Raw(u16::MAX),
                    reason_code: 0,
                },
            ],
        ),
        (
            "pubrec-error",
            vec![
                Op::SetJournaling(true),
                attach(V5, 1),
                Op::Enqueue(message(2)),
                Op::Enqueue(message(2)),
                Op::PollAll,
                Op::PubRec {
                    id: first,
                    reason_code: 0x97,
                },
                Op::PollAll,
                Op::PubRec {
                    id: first,
                    reason_code: 0x10,
                },
                Op::PollAll,
                Op::TakeJournal,
            ],
        ),
        (
            "limits-shrink",
            vec![
                attach(V5, 100),
                Op::Enqueue(message(1)),
                Op::Enqueue(message(1)),
                Op::Enqueue(message(1)),
                Op::Enqueue(message(1)),
                Op::PollAll,
                Op::SetLimits {
                    max_queued_messages: 1,
                    max_queued_bytes: 0,
                    max_inflight: 2,
                    queue_qos0_offline: false,
                },
                Op::Enqueue(message(1)),
                Op::Enqueue(message(1)),
                Op::PubAck(first),
                Op::PollAll,
                Op::PubAck(first),
                Op::PubAck(first),
                Op::PollAll,
            ],
        ),
        (
            "journal-toggle",
            vec![
                Op::SetJournaling(true),
                attach(V5, 10),
                Op::Enqueue(message(1)),
                Op::Poll,
                Op::SetJournaling(false),
                Op::PubAck(first),
                Op::SetJournaling(true),
                Op::Enqueue(message(0)),
                Op::Poll,
                Op::TakeJournal,
                Op::Clear,
                Op::TakeJournal,
            ],
        ),
        (
            "aliases-and-keep-alive",
            vec![
                Op::NewAliases { maximum: 3 },
                Op::KeepAliveStart { interval_secs: 2 },
                Op::ResolveAlias { topic: 2, alias: 2 },
                Op::ResolveAlias { topic: 0, alias: 2 },
                Op::ResolveAlias { topic: 0, alias: 3 },
                Op::ResolveAlias { topic: 3, alias: 1 },
                Op::ResolveAlias { topic: 3, alias: 5 },
                Op::ResolveAlias { topic: 0, alias: 0 },
                Op::ResolveAlias { topic: 1, alias: 0 },
                Op::Advance { millis: 2000 },
                Op::KeepAliveActivity { back_millis: 500 },
                Op::KeepAliveActivity { back_millis: 3000 },
                Op::Advance { millis: 1500 },
                Op::NewAliases { maximum: 0 },
                Op::ResolveAlias { topic: 0, alias: 2 },
                Op::KeepAliveStart { interval_secs: 0 },
                Op::Advance { millis: 60_000 },
            ],
        ),
        (
            "v31-properties",
            vec![
                Op::Attach {
                    version: 0,
                    receive_maximum: 0,
                    maximum_packet_size: Some(100),
                },
                Op::Enqueue(MessageSpec {
                    properties: true,
                    subscription_identifiers: 3,
                    retain: true,
                    expiry_millis: Some(60_000),
                    ..message(1)
                }),
                Op::PollAll,
                Op::Detach,
                attach(V5, 10),
                Op::PubAck(first),
            ],
        ),
    ]
}

#[test]
#[ignore = "writes the seed corpus into fuzz/corpus; run by hand"]
fn write_seed_corpus() {
    let dir = fuzz_dir().join("corpus/session");
    fs::create_dir_all(&dir).unwrap();
    for (name, ops) in seeds() {
        fs::write(dir.join(name), session::encode(&ops)).unwrap();
    }
}
