//! `switchboard serve` and its HTTP listener: --http, --no-http, and the
//! refusal to serve the console on a public address without credentials.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

fn serve(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .args(["serve", "--durability", "memory", "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("SWITCHBOARD_HTTP")
        .env_remove("SWITCHBOARD_CONFIG")
        .stdin(Stdio::null());
    command
}

/// Reads the broker's log until a line containing `marker`; returns the
/// word after it.
fn word_after(child: &mut Child, marker: &str) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let found = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            line.split(marker)
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next().map(str::to_string))
        })
        .unwrap_or_else(|| panic!("no line with {marker:?}"));
    // Keep draining the log so the broker never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    found
}

fn get(address: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn the_console_is_served_next_to_the_broker_and_stops_with_it() {
    let mut child = serve(&["--http", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let url = word_after(&mut child, "web console and HTTP API on ");
    let address = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let health = get(&address, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // /ready turns 200 once the MQTT listeners are up, which may be just after the
    // console's own line is logged: poll it (bounded), don't assume.
    let started = std::time::Instant::now();
    let mut ready = get(&address, "/ready");
    while !ready.starts_with("HTTP/1.1 200")
        && started.elapsed() < std::time::Duration::from_secs(10)
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
        ready = get(&address, "/ready");
    }
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let metrics = get(&address, "/metrics");
    assert!(metrics.contains("switchboard_connections 0"), "{metrics}");
    // SIGTERM: the broker and the console shut down, the process exits 0.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_public_console_without_credentials_refuses_to_start() {
    let output = serve(&["--http", "0.0.0.0:0"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("http.address"), "{stderr}");
    assert!(stderr.contains("not a loopback address"), "{stderr}");
    assert!(stderr.contains("--no-http"), "{stderr}");
}

#[test]
fn no_http_serves_no_console() {
    let mut child = serve(&["--no-http"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    let mut log: Vec<String> = lines
        .by_ref()
        .take_while(|line| !line.contains("listening on"))
        .collect();
    // Everything `serve` logs while starting comes before it handles the
    // signal, so the whole log up to the exit shows whether a console ran.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    log.extend(lines);
    assert!(child.wait().unwrap().success());
    assert!(log.iter().any(|line| line.contains("stopped")), "{log:#?}");
    assert!(
        !log.iter().any(|line| line.contains("web console")),
        "{log:#?}"
    );
    let clash = serve(&["--no-http", "--http", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!clash.status.success());
    assert!(String::from_utf8_lossy(&clash.stderr).contains("--no-http"));
}
