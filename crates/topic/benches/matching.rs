//! Matching one published topic against 10^3 to 10^6 subscriptions.
//!
//! Each kind gets its own index so the figures say what each kind of filter
//! costs as the index grows:
//! - `exact`: `devices/{i}/commands`, one per session;
//! - `single_level`: `devices/{i}/+`;
//! - `multi_level`: `devices/{i}/#`;
//! - `shared`: `$share/g{i % 8}/devices/{i / 64}/#`, so each filter has 8
//!   groups of 8 members; one member per group is picked per match.
//!
//! The topic matches exactly one filter (for `shared`: 8 groups of one
//! filter). The measured step is what a publish does: match into a reused
//! buffer, then pick a member for each shared group.
//!
//! Run: `cargo bench -p switchboard-topic --bench matching`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchboard_topic::{Matches, TopicIndex};

const SIZES: [u32; 4] = [1_000, 10_000, 100_000, 1_000_000];

/// Members per shared filter: 8 groups of 8.
const SHARED_PER_FILTER: u32 = 64;
const SHARED_GROUPS: u32 = 8;

/// Stand-in for the broker's per-subscription value: options byte and a
/// subscription identifier.
#[derive(Debug, Clone, Copy)]
struct Options {
    qos: u8,
    identifier: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Exact,
    SingleLevel,
    MultiLevel,
    Shared,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Exact => "exact",
            Kind::SingleLevel => "single_level",
            Kind::MultiLevel => "multi_level",
            Kind::Shared => "shared",
        }
    }
}

/// An index with `size` subscriptions of `kind`, and a topic that matches.
fn build(kind: Kind, size: u32) -> (TopicIndex<u32, Options>, String) {
    let mut index = TopicIndex::new();
    let options = Options {
        qos: 1,
        identifier: None,
    };
    for key in 0..size {
        let options = Options {
            identifier: Some(key),
            ..options
        };
        match kind {
            Kind::Exact => index.insert(&format!("devices/{key}/commands"), key, options),
            Kind::SingleLevel => index.insert(&format!("devices/{key}/+"), key, options),
            Kind::MultiLevel => index.insert(&format!("devices/{key}/#"), key, options),
            Kind::Shared => index.insert_shared(
                &format!("g{}", key % SHARED_GROUPS),
                &format!("devices/{}/#", key / SHARED_PER_FILTER),
                key,
                options,
            ),
        };
    }
    let device = match kind {
        Kind::Shared => size / 2 / SHARED_PER_FILTER,
        _ => size / 2,
    };
    (index, format!("devices/{device}/commands"))
}

fn matching(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("matching");
    // One match is well under a microsecond; short runs give stable medians
    // on a shared machine without building 10^6-entry indexes for long.
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    for kind in [
        Kind::Exact,
        Kind::SingleLevel,
        Kind::MultiLevel,
        Kind::Shared,
    ] {
        for size in SIZES {
            let (index, topic) = build(kind, size);
            group.bench_with_input(
                BenchmarkId::new(kind.name(), size),
                &topic,
                |bencher, topic| {
                    let mut out = Matches::new();
                    bencher.iter(|| {
                        index.matches_into(black_box(topic), &mut out);
                        let mut delivered = 0u32;
                        for (_, options) in out.plain() {
                            delivered +=
                                u32::from(options.qos) + u32::from(options.identifier.is_some());
                        }
                        for shared in out.shared() {
                            if let Some((key, _)) = shared.candidates().next() {
                                delivered = delivered.wrapping_add(key);
                            }
                        }
                        black_box(delivered)
                    });
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, matching);
criterion_main!(benches);
