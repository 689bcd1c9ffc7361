//! End to end: a short, slow fan-in against an in-process Switchboard broker
//! on port 0. Checks accounting, not speed: no loss, and the counts add up.
// Helpers outside #[test] functions may unwrap too: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use clap::Parser;
use switchboard_bench::BenchArgs;
use switchboard_server::{Durability, ListenerKind, ListenerOptions, Server, ServerOptions};

#[derive(Debug, Parser)]
#[command(disable_help_flag = true)]
struct Wrapper {
    #[command(flatten)]
    args: BenchArgs,
}

async fn start_broker() -> switchboard_server::RunningServer {
    start_broker_with(Durability::Memory).await
}

async fn start_broker_with(durability: Durability) -> switchboard_server::RunningServer {
    let mut options = ServerOptions {
        durability,
        listeners: vec![ListenerOptions {
            name: "bench-test".into(),
            kind: ListenerKind::Tcp,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_connections: 0,
            ..ListenerOptions::default()
        }],
        ..ServerOptions::default()
    };
    options.broker.sys_interval = None;
    Server::bind(options).await.unwrap().start()
}

async fn bench_json(args: &[&str]) -> Vec<serde_json::Value> {
    let args = Wrapper::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
        .unwrap()
        .args;
    let mut out = Vec::new();
    switchboard_bench::run_to(&args, &mut out).await.unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_second_fan_in_at_a_low_rate_loses_nothing() {
    let server = start_broker().await;
    let port = server.local_addrs()[0].port().to_string();
    // 4 publishers, 400 msg/s in total for 1 s, QoS 1, no warm-up.
    let reports = bench_json(&[
        "fan-in", "-p", &port, "-c", "4", "-q", "1", "-s", "64", "--rate", "400", "-d", "1",
        "--warmup", "0", "--drain", "5", "--json",
    ])
    .await;
    assert_eq!(reports.len(), 1);
    let report = &reports[0];
    assert_eq!(report["scenario"], "fan-in");
    assert_eq!(report["mode"], "open");
    assert_eq!(report["publishers"], 4);
    assert_eq!(report["subscribers"], 1);
    assert_eq!(report["qos"], 1);
    assert_eq!(report["payload_bytes"], 64);
    let sent = report["sent"].as_u64().unwrap();
    assert!(sent > 0, "{report}");
    // The schedule allows at most rate x duration (+1 per publisher for its first message).
    assert!(sent <= 400 + 4, "{report}");
    assert_eq!(report["expected"].as_u64(), Some(sent), "{report}");
    assert_eq!(report["received"].as_u64(), Some(sent), "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert_eq!(report["reordered"], 0, "{report}");
    assert_eq!(report["refused"], 0, "{report}");
    assert_eq!(report["unacknowledged"], 0, "{report}");
    assert_eq!(report["foreign"], 0, "{report}");
    assert_eq!(
        report["latency_us"]["samples"].as_u64(),
        Some(sent),
        "{report}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_count_run_delivers_exactly_the_count() {
    let server = start_broker().await;
    let port = server.local_addrs()[0].port().to_string();
    // Closed loop, QoS 2, stops after 300 measured messages split over 3 publishers.
    let reports = bench_json(&[
        "pairs", "-p", &port, "-c", "3", "-q", "2", "-n", "300", "-d", "5", "--warmup", "0",
        "--json",
    ])
    .await;
    let report = &reports[0];
    assert_eq!(report["scenario"], "pairs");
    assert_eq!(report["sent"], 300, "{report}");
    assert_eq!(report["received"], 300, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_fan_in_against_a_durable_broker_loses_nothing_and_leaves_no_session() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = start_broker_with(Durability::Sync {
        data_dir: data_dir.path().to_owned(),
    })
    .await;
    let port = server.local_addrs()[0].port().to_string();
    // Twice, as the benchmark script does: the second run replaces the first's sessions.
    for _ in 0..2 {
        let reports = bench_json(&[
            "fan-in",
            "-p",
            &port,
            "-c",
            "4",
            "-q",
            "1",
            "-n",
            "400",
            "-d",
            "5",
            "--warmup",
            "0",
            "--persistent",
            "--session-expiry",
            "600",
            "--json",
        ])
        .await;
        let report = &reports[0];
        assert_eq!(report["persistent_sessions"], true, "{report}");
        assert_eq!(report["session_expiry_secs"], 600, "{report}");
        assert_eq!(report["sent"], 400, "{report}");
        assert_eq!(report["received"], 400, "{report}");
        assert_eq!(report["lost"], 0, "{report}");
        assert_eq!(report["duplicates"], 0, "{report}");
        assert_eq!(report["refused"], 0, "{report}");
        assert_eq!(report["foreign"], 0, "{report}");
    }
    // The run ends its sessions; the broker handles the last DISCONNECT on
    // its own task, so wait for it (bounded).
    let broker = server.broker();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while broker.session("sbb-fan-in-s0").is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the session was not ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    server.shutdown().await;
}
