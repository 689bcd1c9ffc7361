//! `switchboard bench`: a load generator for MQTT brokers, Switchboard or any
//! other, and what it measured.
//!
//! It connects to one broker, the `--host` and `--port` it is given
//! (127.0.0.1:1883 by default), and sends load there and nowhere else;
//! it never discovers or scans anything. Every run is bounded: it measures for
//! `--duration` seconds (after `--warmup`) or `--count` messages, waits at
//! most `--drain` seconds for messages still in flight, reports and returns.
//!
//! # Scenarios
//!
//! `fan-in`, `fan-out`, `pairs` and `req-resp` move messages and report sent
//! and delivered rates, loss, duplicates, reordering (from per-publisher
//! sequence numbers) and latency percentiles p50/p99/p99.9/max from an HDR
//! histogram. `idle` opens many connections and reports the connect rate and,
//! with `--broker-pid`, the broker's resident memory per connection.
//! `retained` stores retained messages and times one subscribe to all of them.
//!
//! # How it measures
//!
//! - Every payload starts with a 16-byte header: publisher id, sequence
//!   number, send time in nanoseconds since the run's base `Instant`. All
//!   clients are in this process, so one monotonic clock serves both ends.
//! - Connecting and subscribing happen before the base is taken: setup is
//!   never part of a rate. Messages stamped before the warm-up ends are
//!   tracked for sequence checks but not measured.
//! - Closed loop (default): each publisher has at most its window of messages
//!   not yet received end to end, so the run goes as fast as the broker
//!   delivers. Open loop (`--rate`): a fixed schedule, whatever the broker
//!   does; the report then shows whether the schedule was kept.
//! - One tokio task per client, with its own buffers; publishers encode many
//!   PUBLISH packets into one buffer per write, from a prebuilt padding
//!   buffer, with no allocation per message; receivers decode with the
//!   codec and account per read batch. See `flow.rs`.

mod args;
mod flow;
mod idle;
mod link;
mod payload;
mod report;
mod retained;
mod scenario;
mod stats;
mod wire;

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

pub use args::{
    BenchArgs, Scenario, DEFAULT_CONNECT_CONCURRENCY, DEFAULT_DRAIN_SECS, DEFAULT_DURATION_SECS,
    DEFAULT_HOST, DEFAULT_INFLIGHT_V311, DEFAULT_PAYLOAD_SIZE, DEFAULT_PORT,
    DEFAULT_SESSION_EXPIRY_SECS, DEFAULT_WARMUP_SECS, DEFAULT_WINDOW,
};

use crate::args::Settings;
use crate::link::Target;

/// Runs every scenario in `args`, one after the other, and prints each
/// result to standard output as it completes (a table, or one JSON object
/// per line with `--json`).
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout();
    run_to(&args, &mut stdout).await
}

/// [`run`], writing the results to `out`.
pub async fn run_to(args: &BenchArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let settings = Settings::from_args(args)?;
    let target = Target::resolve(
        &settings.host,
        settings.port,
        settings.version,
        settings.connect_timeout,
        settings.payload_size,
    )
    .await?
    .with_sources(&settings.source_addresses)?;
    for (index, &scenario) in args.scenarios.iter().enumerate() {
        let run_id = run_id(index);
        if !settings.json {
            eprintln!(
                "switchboard bench: {} against {} ...",
                scenario.name(),
                target.address
            );
        }
        let report = match scenario {
            Scenario::Idle => idle::run_idle(&settings, &target, &run_id).await,
            Scenario::Retained => retained::run_retained(&settings, &target, &run_id).await,
            Scenario::FanIn | Scenario::FanOut | Scenario::Pairs | Scenario::ReqResp => {
                scenario::run_flow(&settings, &target, scenario, &run_id).await
            }
        }
        .map_err(|error| error.context(format!("{} failed", scenario.name())))?;
        if settings.json {
            report.write_json(out)?;
        } else {
            report.write_table(out)?;
        }
        out.flush()?;
    }
    Ok(())
}

/// A short id that keeps this run's topics and client ids apart from any
/// other run against the same broker (and from retained leftovers).
fn run_id(index: usize) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos() ^ (elapsed.as_secs() as u32))
        .unwrap_or(0);
    let mixed = nanos ^ std::process::id().rotate_left(16) ^ (index as u32).rotate_left(8);
    format!("{mixed:08x}")
}
