//! `switchboard serve`: configuration errors, flags and environment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::process::{Command, Stdio};

use common::*;

#[test]
fn bad_config_reports_every_problem_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "sys_interval_secs = \"often\"\n[limits]\nmax_inflight = 0\nmax_conections = 5\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let file = path.display().to_string();
    for line in [1, 3, 4] {
        assert!(
            stderr.contains(&format!("{file}:{line}:")),
            "expected a problem on line {line}:\n{stderr}"
        );
    }
    assert!(stderr.contains("max_conections"), "{stderr}");
}

#[test]
fn missing_config_file_is_named() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--config", "/nonexistent/switchboard.toml"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/switchboard.toml"), "{stderr}");
}

#[test]
fn listen_address_from_the_environment() {
    // SWITCHBOARD_LISTEN instead of --listen: the broker reports the address it bound.
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("serve")
        .env("SWITCHBOARD_LISTEN", "127.0.0.1:0")
        .env("SWITCHBOARD_DURABILITY", "memory")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut found = None;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
        if let Some(rest) = line.split("listening on ").nth(1) {
            found = rest.split_whitespace().next().map(str::to_string);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let address = found.expect("no listening line");
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    assert_ne!(address, "127.0.0.1:1883");
}

#[test]
fn the_broker_exits_cleanly_on_sigterm() {
    let mut broker = Broker::start(&[]);
    broker.terminate();
    let status = broker
        .wait_exit()
        .expect("broker did not exit after SIGTERM");
    assert!(status.success(), "{status:?}");
}
