//! Tests of the log: append and reopen, crash and power loss, torn tails,
//! damage, snapshots, failing disks, the lock and reclamation.
//!
//! All deterministic: no sleeps; where batching matters the commit thread is
//! held at the [`FaultInjector`] gate.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use switchboard_codec::{Publish, PublishProperties, QoS};

use crate::format::{self, parse_batch, Parsed};
use crate::*;

fn config(dir: &Path) -> LogConfig {
    LogConfig::new(dir)
}

fn with_faults(dir: &Path) -> (LogConfig, Arc<FaultInjector>) {
    let fault = Arc::new(FaultInjector::new());
    let mut config = config(dir);
    config.fault_injector = Some(Arc::clone(&fault));
    (config, fault)
}

/// Opens the log, with a copy of its recovered state to compare.
fn open(config: LogConfig) -> (Log, Recovered) {
    let (log, report) = Log::open(config).unwrap();
    let state = log.with_state(State::clone);
    (log, Recovered { state, report })
}

fn publish(topic: &str, payload_len: usize) -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: topic.into(),
        packet_id: Some(9),
        properties: PublishProperties::default(),
        payload: Bytes::from(vec![0x5A; payload_len]),
    }
}

/// What the broker writes when a QoS 1 message is queued for `client`.
fn queued(client: &str, id: u64, payload_len: usize) -> Vec<Record> {
    vec![
        Record::message(id, Some(4_000_000_000_000), &publish("a/b", payload_len)).unwrap(),
        Record::Enqueue {
            client_id: client.into(),
            message_id: id,
            qos: 1,
            retain: false,
            subscription_identifiers: vec![],
            shared_filter: None,
        },
    ]
}

fn session(client: &str) -> Vec<Record> {
    vec![Record::SessionUpsert {
        client_id: client.into(),
        protocol_level: 5,
        session_expiry_secs: 600,
    }]
}

/// Appends and waits, applying what succeeded to `truth`.
fn commit(log: &Log, truth: &mut State, records: Vec<Record>) -> u64 {
    let sequence = log.append(records.clone()).wait_blocking().unwrap();
    for record in &records {
        truth.apply(record);
    }
    sequence
}

fn queue_ids(state: &State, client: &str) -> Vec<u64> {
    state
        .session(client)
        .map(|session| session.queue().map(|entry| entry.message_id).collect())
        .unwrap_or_default()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    paths.sort();
    paths
}

/// (offset, length) of every valid batch of a segment file.
fn batches(path: &Path) -> Vec<(usize, usize)> {
    let bytes = fs::read(path).unwrap();
    let mut found = Vec::new();
    let mut position = 0;
    while let Some(Parsed::Batch(batch)) = bytes.get(position..).map(parse_batch) {
        found.push((position, batch.total_len));
        position += batch.total_len;
    }
    found
}

fn with_truth_dropped(mut truth: State) -> State {
    truth.drop_unreferenced();
    truth
}

#[test]
fn appended_records_come_back_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut truth = State::new();
    {
        let (log, recovered) = open(config(dir.path()));
        assert_eq!(recovered.state, State::new());
        assert!(recovered.report.is_clean());
        assert_eq!(commit(&log, &mut truth, session("c")), 1);
        assert_eq!(commit(&log, &mut truth, queued("c", 1, 100)), 3);
        assert_eq!(commit(&log, &mut truth, queued("c", 2, 100)), 5);
        assert_eq!(log.append(Vec::new()).wait_blocking().unwrap(), 5);
        log.close().unwrap();
    }
    let (log, recovered) = open(config(dir.path()));
    assert_eq!(recovered.state, truth);
    assert_eq!(queue_ids(&recovered.state, "c"), vec![1, 2]);
    assert_eq!(recovered.report.last_sequence, 5);
    assert_eq!(recovered.report.records_replayed, 5);
    assert!(recovered.report.is_clean());
    assert!(recovered.report.torn_tail.is_none());
    // Sequence numbers continue after a restart, in a new segment.
    assert_eq!(log.append(session("d")).wait_blocking().unwrap(), 6);
    drop(log);
    assert_eq!(segments(dir.path()).len(), 2);
    let decoded = Record::decode(&{
        let mut out = BytesMut::new();
        queued("c", 1, 100)[0].encode(&mut out);
        out
    })
    .unwrap();
    let Record::Message {
        publish: stored, ..
    } = decoded
    else {
        panic!("not a message");
    };
    assert_eq!(decode_publish(&stored).unwrap().topic, "a/b");
}

#[tokio::test]
async fn tickets_can_be_awaited() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(config(dir.path()));
    let first = log.append(session("c"));
    let second = log.append(queued("c", 1, 10));
    assert_eq!(first.wait().await.unwrap(), 1);
    assert_eq!(second.wait().await.unwrap(), 3);
}

#[test]
fn appends_waiting_during_a_write_form_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (config, fault) = with_faults(dir.path());
    let (log, _) = open(config);
    fault.hold_writes();
    let first = log.append(session("c"));
    fault.wait_until_held();
    // These queue up behind the held batch...
    let tickets: Vec<Ticket> = (1..=50).map(|id| log.append(queued("c", id, 10))).collect();
    fault.release_writes();
    assert_eq!(first.wait_blocking().unwrap(), 1);
    let sequences: Vec<u64> = tickets
        .into_iter()
        .map(|ticket| ticket.wait_blocking().unwrap())
        .collect();
    // ...and are written as one batch with one fsync, in call order.
    assert_eq!(sequences, (1..=50).map(|n| 1 + 2 * n).collect::<Vec<_>>());
    let stats = log.stats();
    assert_eq!(stats.batches, 2);
    assert_eq!(stats.syncs, 2);
    assert_eq!(stats.records, 101);
    drop(log);
    assert_eq!(batches(&segments(dir.path())[0]).len(), 2);
}

#[test]
fn a_batch_of_detached_appends_is_fsynced_with_the_next_batch_that_has_a_waiter() {
    let dir = tempfile::tempdir().unwrap();
    let without_waiter = tempfile::tempdir().unwrap();
    let with_waiter = tempfile::tempdir().unwrap();
    let (mut config, fault) = with_faults(dir.path());
    config.detached_sync_delay = Duration::from_secs(3600);
    let (log, _) = open(config);
    let mut truth = State::new();
    commit(&log, &mut truth, session("c"));
    assert_eq!(log.stats().syncs, 1);
    let mut bookkeeping = truth.clone();
    // A batch of detached appends only: written, not fsynced on its own.
    fault.hold_writes();
    log.append_detached(queued("c", 1, 10));
    fault.wait_until_held();
    fault.release_writes();
    // An empty append completes after the commands before it are done.
    log.append(Vec::new()).wait_blocking().unwrap();
    for record in queued("c", 1, 10) {
        bookkeeping.apply(&record);
    }
    let stats = log.stats();
    assert_eq!((stats.batches, stats.syncs), (2, 1));
    fault
        .power_loss_copy(dir.path(), without_waiter.path(), 0)
        .unwrap();
    let (_copy, recovered) = open(LogConfig::new(without_waiter.path()));
    assert_eq!(recovered.state, truth);
    // The next batch with a waiter fsyncs it along: one fsync for both.
    commit(&log, &mut bookkeeping, queued("c", 2, 10));
    assert_eq!(log.stats().syncs, 2);
    fault
        .power_loss_copy(dir.path(), with_waiter.path(), 0)
        .unwrap();
    let (_copy, recovered) = open(LogConfig::new(with_waiter.path()));
    assert_eq!(recovered.state, bookkeeping);
    drop(log);
}

#[test]
fn a_full_queue_refuses_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, fault) = with_faults(dir.path());
    config.queue_capacity = 2;
    let (log, _) = open(config);
    fault.hold_writes();
    let held = log.append(session("a"));
    fault.wait_until_held();
    let waiting: Vec<Ticket> = (0..2).map(|_| log.append(session("b"))).collect();
    let refused = log.append(session("c"));
    assert_eq!(
        refused.wait_blocking(),
        Err(StoreError::Backlog { capacity: 2 })
    );
    assert_eq!(log.stats().backlog_refusals, 1);
    fault.release_writes();
    held.wait_blocking().unwrap();
    for ticket in waiting {
        ticket.wait_blocking().unwrap();
    }
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(config(dir.path()));
    match Log::open(config(dir.path())) {
        Err(StoreError::Locked { path }) => assert_eq!(path, dir.path().join("LOCK")),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(log);
    let (_log, _) = open(config(dir.path()));
}

#[test]
fn a_killed_process_loses_nothing_acknowledged() {
    // kill -9: whatever was written is in the page cache and survives; the
    // copy taken after the tickets completed is what a restart sees.
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let mut truth = State::new();
    let (log, _) = open(config(dir.path()));
    commit(&log, &mut truth, session("c"));
    for id in 1..=20 {
        commit(&log, &mut truth, queued("c", id, 300));
    }
    copy_data_dir(dir.path(), copy.path()).unwrap();
    let (_copy_log, recovered) = open(config(copy.path()));
    assert_eq!(recovered.state, truth);
    assert!(recovered.report.is_clean());
    drop(log);
}

#[test]
fn power_loss_keeps_every_completed_ticket() {
    // SyncMode::Always: a completed ticket was fsynced. The power-loss copy
    // keeps only fsynced bytes and scribbles over the rest.
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let (mut config, fault) = with_faults(dir.path());
    config.segment_bytes = 4096;
    let (log, _) = open(config);
    let mut truth = State::new();
    commit(&log, &mut truth, session("c"));
    for id in 1..=40 {
        commit(&log, &mut truth, queued("c", id, 200));
    }
    assert!(segments(dir.path()).len() > 2);
    fault.power_loss_copy(dir.path(), copy.path(), 777).unwrap();
    let (_copy_log, recovered) = open(LogConfig::new(copy.path()));
    assert_eq!(recovered.state, truth);
    assert!(recovered.report.is_clean());
    // The junk where the unsynced tail would be is a torn tail.
    let torn = recovered.report.torn_tail.unwrap();
    assert_eq!(torn.length, 777);
    drop(log);
}

#[test]
fn power_loss_in_periodic_mode_loses_at_most_the_unsynced_interval() {
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let (mut config, fault) = with_faults(dir.path());
    config.sync = SyncMode::Periodic(Duration::from_secs(3600));
    let (log, _) = open(config);
    let mut synced = State::new();
    commit(&log, &mut synced, session("c"));
    for id in 1..=10 {
        commit(&log, &mut synced, queued("c", id, 100));
    }
    log.sync().unwrap();
    // Acknowledged (written) but not yet fsynced:
    let mut unsynced = synced.clone();
    for id in 11..=20 {
        commit(&log, &mut unsynced, queued("c", id, 100));
    }
    fault.power_loss_copy(dir.path(), copy.path(), 64).unwrap();
    let (_copy_log, recovered) = open(LogConfig::new(copy.path()));
    assert_eq!(recovered.state, synced);
    assert!(recovered.report.is_clean());
    // A process crash instead loses nothing: the page cache has it all.
    drop(log);
    let (_log, recovered) = open(LogConfig::new(dir.path()));
    assert_eq!(recovered.state, unsynced);
}

#[test]
fn a_torn_last_batch_is_dropped_and_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut before_last = State::new();
    {
        let (log, _) = open(config(dir.path()));
        commit(&log, &mut before_last, session("c"));
        commit(&log, &mut before_last, queued("c", 1, 100));
        log.append(queued("c", 2, 100)).wait_blocking().unwrap();
    }
    let segment = segments(dir.path()).pop().unwrap();
    let found = batches(&segment);
    assert_eq!(found.len(), 3);
    let (last_offset, last_len) = found[2];
    // Cut the last batch in the middle, as a crash during `write` does.
    let file = fs::OpenOptions::new().write(true).open(&segment).unwrap();
    file.set_len((last_offset + last_len / 2) as u64).unwrap();
    drop(file);

    let (log, recovered) = open(config(dir.path()));
    assert_eq!(recovered.state, with_truth_dropped(before_last.clone()));
    assert!(recovered.report.is_clean());
    let torn = recovered.report.torn_tail.unwrap();
    assert_eq!(
        (torn.file, torn.offset, torn.length),
        (segment.clone(), last_offset as u64, (last_len / 2) as u64)
    );
    assert_eq!(fs::metadata(&segment).unwrap().len(), last_offset as u64);
    assert!(!dir.path().join("damaged").exists());
    // The sequence numbers of the dropped batch are not reused: numbers
    // only grow, whatever was on disk.
    assert!(log.append(session("d")).wait_blocking().unwrap() > 3);
}

#[test]
fn a_garbage_tail_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut truth = State::new();
    {
        let (log, _) = open(config(dir.path()));
        commit(&log, &mut truth, session("c"));
        commit(&log, &mut truth, queued("c", 1, 100));
    }
    let segment = segments(dir.path()).pop().unwrap();
    let length = fs::metadata(&segment).unwrap().len();
    let mut bytes = fs::read(&segment).unwrap();
    // Garbage that even starts like a batch.
    bytes.extend_from_slice(b"SBLB\x01\0\0\0 and then nothing that checks out");
    fs::write(&segment, &bytes).unwrap();
    let (_log, recovered) = open(config(dir.path()));
    assert_eq!(recovered.state, truth);
    assert!(recovered.report.is_clean());
    assert_eq!(recovered.report.torn_tail.unwrap().offset, length);
}

#[test]
fn damage_in_the_middle_is_set_aside_and_the_rest_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = State::new();
    {
        let (log, _) = open(config(dir.path()));
        commit(&log, &mut expected, session("c"));
        commit(&log, &mut expected, queued("c", 1, 100));
        // This batch gets damaged: its records are lost.
        log.append(queued("c", 2, 100)).wait_blocking().unwrap();
        commit(&log, &mut expected, queued("c", 3, 100));
        commit(&log, &mut expected, queued("c", 4, 100));
    }
    let segment = segments(dir.path()).pop().unwrap();
    let found = batches(&segment);
    let (offset, length) = found[2];
    let mut bytes = fs::read(&segment).unwrap();
    let original = bytes[offset..offset + length].to_vec();
    bytes[offset + length - 10] ^= 0xFF;
    let damaged_bytes = bytes[offset..offset + length].to_vec();
    fs::write(&segment, &bytes).unwrap();

    let (log, recovered) = open(config(dir.path()));
    let report = &recovered.report;
    assert_eq!(report.damaged.len(), 1);
    let damage = &report.damaged[0];
    assert_eq!(damage.file, segment);
    assert_eq!(damage.offset, offset as u64);
    assert_eq!(damage.length, length as u64);
    let copy = damage.copied_to.clone().unwrap();
    assert_eq!(
        copy,
        dir.path().join("damaged").join(format!(
            "{}-{offset}.bin",
            segment.file_name().unwrap().to_string_lossy()
        ))
    );
    assert_eq!(fs::read(&copy).unwrap(), damaged_bytes);
    assert_ne!(damaged_bytes, original);
    assert!(report.torn_tail.is_none());
    assert_eq!(recovered.state, expected);
    assert_eq!(queue_ids(&recovered.state, "c"), vec![1, 3, 4]);
    // Damage asks for a fresh snapshot.
    assert!(log.needs_checkpoint());
    assert!(log.should_checkpoint(u64::MAX / 4));
}

#[test]
fn a_damaged_batch_length_is_skipped_by_scanning_for_the_next_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = State::new();
    {
        let (log, _) = open(config(dir.path()));
        commit(&log, &mut expected, session("c"));
        log.append(queued("c", 1, 100)).wait_blocking().unwrap();
        commit(&log, &mut expected, queued("c", 2, 100));
    }
    let segment = segments(dir.path()).pop().unwrap();
    let (offset, length) = batches(&segment)[1];
    let mut bytes = fs::read(&segment).unwrap();
    // The body length field: the header no longer says where the batch ends.
    bytes[offset + 21] ^= 0x40;
    fs::write(&segment, &bytes).unwrap();
    let (_log, recovered) = open(config(dir.path()));
    assert_eq!(recovered.report.damaged.len(), 1);
    assert_eq!(recovered.report.damaged[0].offset, offset as u64);
    assert_eq!(recovered.report.damaged[0].length, length as u64);
    assert_eq!(recovered.state, expected);
}

#[test]
fn a_bad_end_of_an_older_segment_is_damage_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.segment_bytes = 1024;
    let mut expected = State::new();
    {
        let (log, _) = open(config.clone());
        commit(&log, &mut expected, session("c"));
        for id in 1..=8 {
            commit(&log, &mut expected, queued("c", id, 300));
        }
    }
    let all = segments(dir.path());
    assert!(all.len() >= 3);
    let older = &all[0];
    let length = fs::metadata(older).unwrap().len();
    let (last_offset, last_len) = *batches(older).last().unwrap();
    let file = fs::OpenOptions::new().write(true).open(older).unwrap();
    file.set_len(length - 5).unwrap();
    drop(file);
    let (_log, recovered) = open(config);
    assert!(recovered.report.torn_tail.is_none());
    assert_eq!(recovered.report.damaged.len(), 1);
    assert_eq!(recovered.report.damaged[0].file, *older);
    assert_eq!(recovered.report.damaged[0].offset, last_offset as u64);
    assert_eq!(recovered.report.damaged[0].length, last_len as u64 - 5);
    // Everything else is back: only the message in the cut batch is missing.
    let ids = queue_ids(&recovered.state, "c");
    assert_eq!(ids.len(), 7);
    let missing = (1..=8u64).find(|id| !ids.contains(id)).unwrap();
    let mut without_cut = expected.clone();
    without_cut.apply(&Record::Dequeue {
        client_id: "c".into(),
        message_id: missing,
    });
    assert_eq!(recovered.state, without_cut);
}

#[test]
fn a_batch_whose_records_do_not_decode_is_damage() {
    // A valid checksum over bytes that are not records: written by a bug or
    // a newer build. Set aside, never a panic or a failed open.
    let dir = tempfile::tempdir().unwrap();
    let mut expected = State::new();
    {
        let (log, _) = open(config(dir.path()));
        commit(&log, &mut expected, session("c"));
    }
    let segment = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&segment).unwrap();
    let offset = bytes.len();
    let body = [3u8, 0, 0, 0, 1, 99, 0];
    format::put_batch(&mut bytes, 2, 1, &[&body]);
    let mut good = BytesMut::new();
    format::frame_record(&mut good, &session("d")[0]);
    format::put_batch(&mut bytes, 3, 1, &[&good]);
    expected.apply(&session("d")[0]);
    fs::write(&segment, &bytes).unwrap();
    let (_log, recovered) = open(config(dir.path()));
    assert_eq!(recovered.report.damaged.len(), 1);
    assert_eq!(recovered.report.damaged[0].offset, offset as u64);
    assert_eq!(recovered.state, expected);
}

#[test]
fn a_full_disk_fails_the_batch_and_the_log_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (config, fault) = with_faults(dir.path());
    let (log, _) = open(config.clone());
    let mut truth = State::new();
    commit(&log, &mut truth, session("c"));
    commit(&log, &mut truth, queued("c", 1, 500));

    // ENOSPC after half the batch reached the file.
    fault.set(
        FaultPoint::SegmentWrite,
        Fault::partial(io::ErrorKind::StorageFull, 300),
    );
    let failed = log.append(queued("c", 2, 500)).wait_blocking().unwrap_err();
    assert!(failed.is_disk_full(), "{failed:?}");
    assert!(log.needs_checkpoint());
    // While the disk is full, new segments cannot be created either.
    fault.set(
        FaultPoint::SegmentCreate,
        Fault::new(io::ErrorKind::StorageFull),
    );
    assert!(log
        .append(queued("c", 3, 500))
        .wait_blocking()
        .unwrap_err()
        .is_disk_full());
    assert_eq!(log.stats().failed_batches, 2);

    fault.clear_all();
    let sequence = commit(&log, &mut truth, queued("c", 4, 500));
    assert!(sequence > 5);
    // The owner rewrites the full state, as asked.
    let report = log
        .checkpoint(|| truth.records().collect::<Vec<_>>())
        .unwrap();
    assert!(report.records > 0);
    assert!(!log.needs_checkpoint());
    commit(&log, &mut truth, queued("c", 5, 500));
    drop(log);

    let (_log, recovered) = open(config);
    assert!(recovered.report.is_clean(), "{:?}", recovered.report);
    assert_eq!(recovered.state, truth);
    assert_eq!(queue_ids(&recovered.state, "c"), vec![1, 4, 5]);
}

#[test]
fn a_failed_fsync_fails_the_batch_and_starts_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (config, fault) = with_faults(dir.path());
    let (log, _) = open(config.clone());
    let mut truth = State::new();
    commit(&log, &mut truth, session("c"));
    fault.set(FaultPoint::SegmentSync, Fault::new(io::ErrorKind::Other));
    match log.append(queued("c", 1, 100)).wait_blocking() {
        Err(StoreError::Io { operation, .. }) => assert_eq!(operation, "fsync"),
        other => panic!("expected an fsync error, got {other:?}"),
    }
    fault.clear_all();
    commit(&log, &mut truth, queued("c", 2, 100));
    drop(log);
    // The failed batch was cut off the old segment; the next one went to a
    // new segment.
    assert_eq!(segments(dir.path()).len(), 2);
    let (_log, recovered) = open(config);
    assert!(recovered.report.is_clean());
    assert_eq!(recovered.state, truth);
}

#[test]
fn a_snapshot_replaces_the_log_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut truth = State::new();
    let sequence;
    {
        let (log, _) = open(config(dir.path()));
        commit(&log, &mut truth, session("c"));
        commit(&log, &mut truth, queued("c", 1, 100));
        let report = log.checkpoint(|| truth.records()).unwrap();
        sequence = report.sequence;
        assert_eq!(sequence, 4);
        assert_eq!(report.records, 3);
        commit(&log, &mut truth, queued("c", 2, 100));
    }
    assert!(dir.path().join(format::snapshot_name(4)).exists());
    let (_log, recovered) = open(config(dir.path()));
    assert_eq!(recovered.report.snapshot, Some(4));
    assert_eq!(recovered.report.snapshot_records, 3);
    assert_eq!(recovered.report.records_replayed, 2);
    assert_eq!(recovered.state, truth);
}

#[test]
fn a_snapshot_taken_while_appends_continue_recovers_exactly() {
    // The owner's state is captured after the roll and already reflects a
    // few records appended after it, some of which move and drop messages.
    let dir = tempfile::tempdir().unwrap();
    let mut truth = State::new();
    let (log, _) = open(config(dir.path()));
    commit(&log, &mut truth, session("c"));
    commit(&log, &mut truth, queued("c", 1, 100));
    let retained = Record::Retain {
        topic: "t".into(),
        message_id: 1,
    };
    commit(&log, &mut truth, vec![retained]);
    let checkpoint = log.begin_checkpoint().unwrap();
    let dequeue = Record::Dequeue {
        client_id: "c".into(),
        message_id: 1,
    };
    let enqueue_again = queued("c", 1, 100).pop().unwrap();
    commit(&log, &mut truth, vec![dequeue]);
    commit(&log, &mut truth, queued("c", 2, 100));
    commit(&log, &mut truth, vec![enqueue_again]);
    let captured: Vec<Record> = truth.records().collect();
    commit(
        &log,
        &mut truth,
        vec![Record::RetainClear { topic: "t".into() }],
    );
    checkpoint.write(captured).unwrap();
    drop(log);
    let (_log, recovered) = open(config(dir.path()));
    assert_eq!(recovered.state, truth);
    assert_eq!(queue_ids(&recovered.state, "c"), vec![2, 1]);
}

#[test]
fn a_damaged_snapshot_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut truth = State::new();
    let newest;
    {
        let (log, _) = open(config(dir.path()));
        commit(&log, &mut truth, session("c"));
        commit(&log, &mut truth, queued("c", 1, 100));
        log.checkpoint(|| truth.records()).unwrap();
        commit(&log, &mut truth, queued("c", 2, 100));
        newest = log.checkpoint(|| truth.records()).unwrap().sequence;
        commit(&log, &mut truth, queued("c", 3, 100));
    }
    let path = dir.path().join(format::snapshot_name(newest));
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&path, &bytes).unwrap();

    let (_log, recovered) = open(config(dir.path()));
    let report = &recovered.report;
    assert_eq!(report.snapshots_rejected, 1);
    assert_eq!(report.snapshot, Some(4));
    assert_eq!(report.damaged.len(), 1);
    assert_eq!(report.damaged[0].file, path);
    let copy = report.damaged[0].copied_to.clone().unwrap();
    assert_eq!(fs::read(copy).unwrap(), bytes);
    assert!(!path.exists());
    assert_eq!(recovered.state, truth);
}

#[test]
fn a_damaged_only_snapshot_falls_back_to_the_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut truth = State::new();
    {
        let (log, _) = open(config(dir.path()));
        commit(&log, &mut truth, session("c"));
        commit(&log, &mut truth, queued("c", 1, 100));
        log.checkpoint(|| truth.records()).unwrap();
        commit(&log, &mut truth, queued("c", 2, 100));
    }
    let path = dir.path().join(format::snapshot_name(4));
    // An incomplete snapshot (no footer).
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let (_log, recovered) = open(config(dir.path()));
    assert_eq!(recovered.report.snapshot, None);
    assert_eq!(recovered.report.snapshots_rejected, 1);
    assert_eq!(recovered.state, truth);
}

#[test]
fn leftover_temporary_snapshots_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (config, fault) = with_faults(dir.path());
    let mut truth = State::new();
    {
        let (log, _) = open(config.clone());
        commit(&log, &mut truth, session("c"));
        fault.set(
            FaultPoint::SnapshotWrite,
            Fault::new(io::ErrorKind::StorageFull),
        );
        let error = log.checkpoint(|| truth.records()).unwrap_err();
        assert!(error.is_disk_full());
        fault.clear_all();
    }
    fs::write(dir.path().join(format::snapshot_temp_name(9)), b"half").unwrap();
    let (_log, recovered) = open(config);
    assert!(!dir.path().join(format::snapshot_temp_name(9)).exists());
    assert_eq!(recovered.report.snapshot, None);
    assert_eq!(recovered.state, truth);
}

#[test]
fn checkpoints_keep_the_disk_within_a_small_multiple_of_live_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.segment_bytes = 16 * 1024;
    config.checkpoint_slack_bytes = 32 * 1024;
    let (log, _) = open(config.clone());
    let mut truth = State::new();
    commit(&log, &mut truth, session("c"));
    let mut checkpoints = 0;
    let mut largest = 0;
    // A steady state: ten messages of 1 KiB queued, each acknowledged later.
    for id in 1..=3000u64 {
        let mut records = queued("c", id, 1024);
        if id > 10 {
            records.push(Record::Dequeue {
                client_id: "c".into(),
                message_id: id - 10,
            });
        }
        commit(&log, &mut truth, records);
        if log.should_checkpoint(truth.live_bytes()) {
            log.checkpoint(|| truth.records()).unwrap();
            checkpoints += 1;
        }
        largest = largest.max(log.disk_usage().total_bytes());
    }
    let live = truth.live_bytes();
    assert!(live > 10 * 1024 && live < 12 * 1024, "{live}");
    // 6 x live + 2 x slack + 2 segments, plus a batch of overshoot.
    let bound = 6 * live + 2 * 32 * 1024 + 2 * 16 * 1024 + 4096;
    assert!(checkpoints > 10, "{checkpoints}");
    assert!(largest < bound, "{largest} >= {bound}");
    // What is on disk agrees with the accounting.
    let usage = log.disk_usage();
    let on_disk: u64 = segments(dir.path())
        .iter()
        .map(|path| fs::metadata(path).unwrap().len())
        .sum();
    assert_eq!(usage.segment_bytes, on_disk);
    assert!(usage.snapshots <= 2);
    drop(log);
    let (_log, recovered) = open(config);
    assert!(recovered.report.is_clean());
    assert_eq!(recovered.state, truth);
}

#[test]
fn an_unreadable_segment_is_damage_and_the_rest_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut truth = State::new();
    {
        let (log, _) = open(config(dir.path()));
        commit(&log, &mut truth, session("c"));
        commit(&log, &mut truth, queued("c", 1, 100));
    }
    // A "segment" that cannot be read (a directory where a file should be).
    let unreadable = dir.path().join("log").join(format::segment_name(100));
    fs::create_dir(&unreadable).unwrap();
    let (log, recovered) = open(config(dir.path()));
    assert_eq!(recovered.report.damaged.len(), 1);
    assert_eq!(recovered.report.damaged[0].file, unreadable);
    assert_eq!(recovered.report.damaged[0].offset, 0);
    assert_eq!(recovered.state, truth);
    // New appends go after it.
    assert!(log.append(session("d")).wait_blocking().unwrap() > 100);
}

#[test]
fn the_log_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Log>();
    shareable::<Ticket>();
    shareable::<State>();
}

// ----- the log's own state -------------------------------------------------

#[test]
fn the_state_holds_a_batch_before_its_ticket_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (config, fault) = with_faults(dir.path());
    let (log, _) = open(config);
    let mut truth = State::new();
    commit(&log, &mut truth, session("c"));
    fault.hold_writes();
    let ticket = log.append(queued("c", 1, 10));
    fault.wait_until_held();
    // Not written yet: not in the state.
    assert_eq!(
        log.with_state(|state| queue_ids(state, "c")),
        Vec::<u64>::new()
    );
    fault.release_writes();
    ticket.wait_blocking().unwrap();
    for record in queued("c", 1, 10) {
        truth.apply(&record);
    }
    // The ticket completed: the records are in the state, no waiting needed.
    assert!(log.with_state(|state| *state == truth));
}

#[test]
fn a_batch_whose_write_fails_reaches_neither_the_state_nor_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (config, fault) = with_faults(dir.path());
    let (log, _) = open(config.clone());
    let mut truth = State::new();
    commit(&log, &mut truth, session("c"));
    commit(&log, &mut truth, queued("c", 1, 100));
    fault.set(
        FaultPoint::SegmentWrite,
        Fault::partial(io::ErrorKind::StorageFull, 40),
    );
    let mut refused = queued("c", 2, 100);
    refused.push(Record::Retain {
        topic: "t".into(),
        message_id: 2,
    });
    refused.push(Record::InboundQos2 {
        client_id: "c".into(),
        packet_id: 7,
    });
    assert!(log
        .append(refused)
        .wait_blocking()
        .unwrap_err()
        .is_disk_full());
    fault.clear_all();
    commit(&log, &mut truth, queued("c", 3, 100));
    assert!(log.with_state(|state| *state == truth));
    assert!(log.needs_checkpoint());

    let report = log.checkpoint_state().unwrap();
    assert!(!log.needs_checkpoint());
    assert_eq!(report.records, 5, "{report:?}");
    drop(log);
    let (_log, recovered) = open(config);
    assert!(recovered.report.is_clean(), "{:?}", recovered.report);
    assert_eq!(recovered.state, truth);
    assert_eq!(queue_ids(&recovered.state, "c"), vec![1, 3]);
    assert!(recovered.state.retained().is_empty());
    assert!(recovered
        .state
        .session("c")
        .unwrap()
        .inbound_qos2()
        .is_empty());
}

#[test]
fn a_detached_append_reaches_the_state_even_if_its_write_fails() {
    // Bookkeeping the owner has done already (here: a delivered message left
    // the queue) must not come back: the checkpoint the failure makes due
    // writes it, while a refused append in the same batch stays out.
    let dir = tempfile::tempdir().unwrap();
    let (config, fault) = with_faults(dir.path());
    let (log, _) = open(config.clone());
    let mut truth = State::new();
    commit(&log, &mut truth, session("c"));
    commit(&log, &mut truth, queued("c", 1, 100));
    fault.hold_writes();
    let held = log.append(session("other"));
    fault.wait_until_held();
    let dequeue = Record::Dequeue {
        client_id: "c".into(),
        message_id: 1,
    };
    log.append_detached(vec![dequeue.clone()]);
    let refused = log.append(queued("c", 2, 100));
    fault.set(FaultPoint::SegmentWrite, Fault::new(io::ErrorKind::Other));
    fault.release_writes();
    assert!(held.wait_blocking().is_err());
    assert!(refused.wait_blocking().is_err());
    // The held batch, then the one holding both appends, failed.
    assert_eq!(log.stats().failed_batches, 2);
    truth.apply(&dequeue);
    assert!(log.with_state(|state| *state == truth));
    fault.clear_all();

    log.checkpoint_state().unwrap();
    drop(log);
    let (_log, recovered) = open(config);
    assert_eq!(recovered.state, with_truth_dropped(truth));
    assert_eq!(queue_ids(&recovered.state, "c"), Vec::<u64>::new());
    assert!(recovered.state.session("other").is_none());
}

#[test]
fn the_state_starts_as_what_was_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let mut truth = State::new();
    {
        let (log, _) = open(config(dir.path()));
        commit(&log, &mut truth, session("c"));
        commit(&log, &mut truth, queued("c", 1, 100));
        log.checkpoint_state().unwrap();
        commit(&log, &mut truth, queued("c", 2, 100));
    }
    let (log, recovered) = open(config(dir.path()));
    assert_eq!(recovered.state, truth);
    assert!(log.with_state(|state| *state == recovered.state));
    commit(&log, &mut truth, queued("c", 3, 100));
    assert_eq!(log.with_state(|state| queue_ids(state, "c")), vec![1, 2, 3]);
}

#[test]
fn checkpoints_of_the_state_between_appends_recover_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut truth = State::new();
    let (log, _) = open(config(dir.path()));
    commit(&log, &mut truth, session("c"));
    for id in 1..=12 {
        commit(&log, &mut truth, queued("c", id, 100));
        if id % 3 == 0 {
            commit(
                &log,
                &mut truth,
                vec![Record::Dequeue {
                    client_id: "c".into(),
                    message_id: id - 1,
                }],
            );
            log.checkpoint_state().unwrap();
        }
    }
    drop(log);
    let (_log, recovered) = open(config(dir.path()));
    assert_eq!(recovered.state, with_truth_dropped(truth));
    assert_eq!(
        queue_ids(&recovered.state, "c"),
        vec![1, 3, 4, 6, 7, 9, 10, 12]
    );
}

#[test]
fn outbound_done_is_outbound_complete_then_dequeue() {
    let mut records = session("c");
    records.extend(queued("c", 1, 10));
    records.push(Record::OutboundSent {
        client_id: "c".into(),
        message_id: 1,
        packet_id: 4,
    });
    let mut two = State::new();
    let mut one = State::new();
    for record in &records {
        two.apply(record);
        one.apply(record);
    }
    two.apply(&Record::OutboundComplete {
        client_id: "c".into(),
        packet_id: 4,
    });
    two.apply(&Record::Dequeue {
        client_id: "c".into(),
        message_id: 1,
    });
    one.apply(&Record::OutboundDone {
        client_id: "c".into(),
        packet_id: 4,
        message_id: 1,
    });
    assert_eq!(one, two);
    // The message had no other reference: it is gone.
    assert!(one.messages().is_empty());
    assert_eq!(one.session("c").unwrap().outbound().count(), 0);
}
