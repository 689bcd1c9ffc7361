//! Append throughput of 1 KiB records, fsync on every batch
//! (`SyncMode::Always`), in a temporary directory.
//!
//! - `append_batch/<n>`: one append of `n` records, waited for: exactly `n`
//!   records per write and fsync.
//! - `group_commit/<n>`: `n` single-record appends made back to back, then
//!   all waited for: the commit thread forms the batches by itself (the
//!   first append usually goes alone, the rest join the following batches).
//!
//! Throughput is in records per second. Between measurements the log is
//! checkpointed with an empty state so the disk does not fill up; that time
//! is not measured.

// A bench that cannot set up or append must stop, like a test: a panic here
// is a failed measurement, not a crashed broker.
#![allow(clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchboard_codec::{Publish, PublishProperties, QoS};
use switchboard_store::{Log, LogConfig, Record};

const RECORD_PAYLOAD: usize = 1024 - 40;

fn record(id: u64) -> Record {
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "bench/topic".into(),
        packet_id: Some(1),
        properties: PublishProperties::default(),
        payload: Bytes::from(vec![0xA5; RECORD_PAYLOAD]),
    };
    Record::message(id, None, &publish).expect("the bench PUBLISH encodes")
}

/// Keeps the bench's disk use bounded: an empty snapshot lets everything
/// before it go (after two checkpoints).
fn reclaim(log: &Log) {
    for _ in 0..2 {
        log.checkpoint(Vec::new).expect("checkpoint");
    }
}

fn bench(criterion: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (log, _) = Log::open(LogConfig::new(dir.path())).expect("open the log");
    let mut next_id = 0u64;
    let one_kib = record(0);
    {
        let mut encoded = bytes::BytesMut::new();
        one_kib.encode(&mut encoded);
        assert!((1000..=1030).contains(&encoded.len()), "{}", encoded.len());
    }

    let mut group = criterion.benchmark_group("append_batch");
    for per_batch in [1usize, 64, 512] {
        group.throughput(Throughput::Elements(per_batch as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(per_batch),
            &per_batch,
            |b, &n| {
                b.iter_custom(|iterations| {
                    let mut measured = Duration::ZERO;
                    for _ in 0..iterations {
                        let records: Vec<Record> = (0..n)
                            .map(|_| {
                                next_id += 1;
                                record(next_id)
                            })
                            .collect();
                        let start = Instant::now();
                        log.append(records).wait_blocking().expect("append");
                        measured += start.elapsed();
                    }
                    reclaim(&log);
                    measured
                })
            },
        );
    }
    group.finish();

    let mut group = criterion.benchmark_group("group_commit");
    for appends in [64usize, 512] {
        group.throughput(Throughput::Elements(appends as u64));
        group.bench_with_input(BenchmarkId::from_parameter(appends), &appends, |b, &n| {
            b.iter_custom(|iterations| {
                let mut measured = Duration::ZERO;
                for _ in 0..iterations {
                    let records: Vec<Record> = (0..n)
                        .map(|_| {
                            next_id += 1;
                            record(next_id)
                        })
                        .collect();
                    let start = Instant::now();
                    let tickets: Vec<_> =
                        records.into_iter().map(|r| log.append(vec![r])).collect();
                    for ticket in tickets {
                        ticket.wait_blocking().expect("append");
                    }
                    measured += start.elapsed();
                }
                reclaim(&log);
                measured
            })
        });
    }
    group.finish();
    let stats = log.stats();
    eprintln!(
        "log stats: {} records in {} batches, {} fsyncs ({:.1} records per fsync)",
        stats.records,
        stats.batches,
        stats.syncs,
        stats.records as f64 / stats.syncs.max(1) as f64
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
