//! Running out of file descriptors: the real `switchboard` binary under a low
//! `ulimit -n` (set by `sh`, as the workspace forbids the `unsafe` a
//! `setrlimit` in `pre_exec` would take). Connections are opened until
//! `accept` fails; the broker must log and count the failure, back off
//! (the wait doubles while failures continue) instead of spinning, keep
//! serving the clients it has, and accept again once descriptors are free.
//!
//! Plain MQTT 3.1.1 bytes over std sockets: every read is bounded by
//! [`GUARD`], and nothing asserts on time.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Instant;

use common::GUARD;

/// The broker's descriptor limit: a dozen at start (standard streams, the
/// runtime's epoll and eventfd, the MQTT and HTTP listening sockets), the
/// rest for connections.
const DESCRIPTOR_LIMIT: u32 = 48;
/// Far more connections than the limit allows; the flood stops at the
/// first logged accept failure.
const MAX_FLOOD: usize = 200;

/// `switchboard serve` started by `sh` after `ulimit -n`, with its log.
struct LimitedBroker {
    child: std::process::Child,
    log: Arc<Mutex<Vec<String>>>,
    mqtt: SocketAddr,
    http: SocketAddr,
}

impl LimitedBroker {
    fn start() -> LimitedBroker {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -n {DESCRIPTOR_LIMIT} && exec \"$0\" \"$@\""
            ))
            .arg(env!("CARGO_BIN_EXE_switchboard"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--durability",
                "memory",
                "--log-level",
                "info",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start switchboard under sh");
        let stdout = child.stdout.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = log.clone();
        let (started, addresses) = mpsc::channel();
        thread::spawn(move || {
            let mut mqtt = None;
            let mut sent = false;
            for line in
                std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok)
            {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    mqtt = rest
                        .split_whitespace()
                        .next()
                        .and_then(|token| token.parse::<SocketAddr>().ok())
                        .or(mqtt);
                }
                let http = line
                    .split("HTTP API on http://")
                    .nth(1)
                    .and_then(|rest| rest.trim_end_matches('/').parse::<SocketAddr>().ok());
                if let (Some(mqtt), Some(http), false) = (mqtt, http, sent) {
                    let _ = started.send((mqtt, http));
                    sent = true;
                }
                writer.lock().unwrap().push(line);
            }
        });
        let (mqtt, http) = addresses
            .recv_timeout(GUARD)
            .expect("switchboard did not report its MQTT and HTTP addresses");
        LimitedBroker {
            child,
            log,
            mqtt,
            http,
        }
    }

    fn logged(&self, needle: &str) -> bool {
        self.log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(needle))
    }

    fn wait_for_log(&self, needle: &str) {
        let start = Instant::now();
        while !self.logged(needle) {
            assert!(
                start.elapsed() < GUARD,
                "no log line with {needle:?}:\n{}",
                self.log.lock().unwrap().join("\n")
            );
            thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Drop for LimitedBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A 3.1.1 CONNECT: clean session, keep alive 0 (never timed out).
fn connect_packet(client_id: &str) -> Vec<u8> {
    let id = client_id.as_bytes();
    let mut packet = vec![0x10, (12 + id.len()) as u8];
    packet.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0]);
    packet.extend_from_slice(&[0, id.len() as u8]);
    packet.extend_from_slice(id);
    packet
}

fn open(address: SocketAddr, client_id: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(GUARD)).unwrap();
    stream.write_all(&connect_packet(client_id)).unwrap();
    stream
}

/// Reads exactly `length` bytes (within [`GUARD`] per read).
fn read(stream: &mut TcpStream, length: usize) -> Vec<u8> {
    let mut bytes = vec![0; length];
    stream
        .read_exact(&mut bytes)
        .expect("the broker did not answer");
    bytes
}

/// A connected client: CONNECT, then CONNACK 0 (accepted).
fn client(address: SocketAddr, client_id: &str) -> TcpStream {
    let mut stream = open(address, client_id);
    assert_eq!(
        read(&mut stream, 4),
        [0x20, 0x02, 0x00, 0x00],
        "{client_id}"
    );
    stream
}

fn ping(stream: &mut TcpStream) {
    stream.write_all(&[0xC0, 0x00]).unwrap();
    assert_eq!(read(stream, 2), [0xD0, 0x00]);
}

/// `GET /metrics` over HTTP/1.0; the value of the sample `name`.
fn metric(http: SocketAddr, name: &str) -> u64 {
    let mut stream = TcpStream::connect(http).unwrap();
    stream.set_read_timeout(Some(GUARD)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{response}"))
}

#[test]
fn out_of_descriptors_the_broker_backs_off_serves_its_clients_and_recovers() {
    let broker = LimitedBroker::start();
    // Two clients from before the shortage: one subscribes, one publishes.
    let mut subscriber = client(broker.mqtt, "subscriber");
    subscriber
        .write_all(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b't', 0x00])
        .unwrap();
    assert_eq!(read(&mut subscriber, 5), [0x90, 0x03, 0x00, 0x01, 0x00]);
    let mut publisher = client(broker.mqtt, "publisher");

    // Flood until the broker cannot accept any more.
    let mut flood = Vec::new();
    while !broker.logged("accept failed") {
        assert!(
            flood.len() < MAX_FLOOD,
            "{MAX_FLOOD} connections and no accept failure: is the limit applied?"
        );
        let client_id = format!("flood-{}", flood.len());
        flood.push(open(broker.mqtt, &client_id));
    }
    // Failures go on while descriptors are short, each followed by a longer
    // wait (10 ms, 20 ms, 40 ms, ...): a backoff, not a spinning loop.
    broker.wait_for_log("backing off 80ms");
    assert!(broker.logged("Too many open files"));

    // Meanwhile the clients it has are served.
    ping(&mut subscriber);
    publisher
        .write_all(&[0x30, 0x05, 0x00, 0x01, b't', b'h', b'i'])
        .unwrap();
    assert_eq!(
        read(&mut subscriber, 7),
        [0x30, 0x05, 0x00, 0x01, b't', b'h', b'i']
    );
    ping(&mut publisher);

    // Descriptors freed: the broker accepts again (the backoff is at most a
    // second; the read waits up to GUARD).
    drop(flood);
    let mut late = client(broker.mqtt, "late");
    ping(&mut late);
    ping(&mut subscriber);
    assert!(metric(broker.http, "switchboard_accept_errors_total") >= 4);
}
