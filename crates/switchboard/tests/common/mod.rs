//! Support for tests that run the real `switchboard` binary and other programs
//! against it. Every wait is bounded by a guard timeout so a broken build fails
//! instead of hanging; none of them asserts on speed.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Guard against a hung test; not an assertion about speed.
pub const GUARD: Duration = Duration::from_secs(20);

/// `switchboard serve` on a free loopback port, killed when dropped.
pub struct Broker {
    child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Broker {
    pub fn start(extra: &[&str]) -> Broker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["serve", "--listen", "127.0.0.1:0", "--durability", "memory"])
            .args(if extra.contains(&"--log-level") {
                &[][..]
            } else {
                &["--log-level", "info"][..]
            })
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start switchboard");
        let stdout = child.stdout.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (address_sender, address) = mpsc::channel();
        let log_writer = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    if let Some(token) = rest.split_whitespace().next() {
                        if let Ok(addr) = token.parse::<SocketAddr>() {
                            let _ = address_sender.send(addr);
                        }
                    }
                }
                log_writer.lock().unwrap().push(line);
            }
        });
        let addr = address
            .recv_timeout(GUARD)
            .expect("switchboard did not report its listening address");
        Broker { child, addr, log }
    }

    pub fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// Waits until a log line contains every one of `needles` (start the broker
    /// with `--log-level debug` to see per-client events such as "subscribed").
    pub fn wait_for_log(&self, needles: &[&str]) {
        let start = Instant::now();
        loop {
            if self
                .log
                .lock()
                .unwrap()
                .iter()
                .any(|line| needles.iter().all(|needle| line.contains(needle)))
            {
                return;
            }
            assert!(start.elapsed() < GUARD, "no log line with {needles:?}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit (after `terminate`).
    pub fn wait_exit(&mut self) -> Option<ExitStatus> {
        wait_child(&mut self.child, GUARD)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if start.elapsed() > limit {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn require(program: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "{program} is not installed: run the tests with scripts/test, which installs mosquitto-clients"
    );
}

/// Runs `switchboard <args>` (a client command) to completion against the broker and
/// returns its exit status and stdout lines.
pub fn switchboard(broker: &Broker, command: &str, args: &[&str]) -> (ExitStatus, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg(command)
        .args(["-h", "127.0.0.1", "-p", &broker.port()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchboard client");
    let stdout = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let status = match wait_child(&mut child, GUARD) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            panic!("switchboard {command} {args:?} did not finish");
        }
    };
    (status, reader.join().unwrap())
}

/// Starts `switchboard <command> <args>` in the background.
pub fn switchboard_background(broker: &Broker, command: &str, args: &[&str]) -> Background {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg(command)
        .args(["-h", "127.0.0.1", "-p", &broker.port()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchboard client");
    let stdout = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    Background {
        child,
        reader: Some(reader),
    }
}

/// A client command running in the background.
pub struct Background {
    child: Child,
    reader: Option<thread::JoinHandle<Vec<String>>>,
}

impl Background {
    /// Waits for it to exit by itself; returns its status and stdout lines.
    pub fn finish(mut self) -> (ExitStatus, Vec<String>) {
        let status = wait_child(&mut self.child, GUARD).expect("client did not exit");
        let lines = self.reader.take().unwrap().join().unwrap();
        (status, lines)
    }

    /// SIGKILL, then what it printed.
    pub fn kill(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reader.take().unwrap().join().unwrap()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a Mosquitto client to completion against the broker and returns its
/// stdout lines. Fails the test if it fails or hangs.
pub fn mosquitto(program: &str, broker: &Broker, args: &[&str]) -> Vec<String> {
    let (status, lines) = run_mosquitto(program, broker, args);
    assert!(
        status.success(),
        "{program} {args:?} failed: {status:?}, output {lines:?}"
    );
    lines
}

/// Like [`mosquitto`] but a `-W` timeout (exit code 27) is not a failure.
pub fn mosquitto_allow_timeout(program: &str, broker: &Broker, args: &[&str]) -> Vec<String> {
    let (status, lines) = run_mosquitto(program, broker, args);
    assert!(
        status.success() || status.code() == Some(27),
        "{program} {args:?} failed: {status:?}, output {lines:?}"
    );
    lines
}

fn run_mosquitto(program: &str, broker: &Broker, args: &[&str]) -> (ExitStatus, Vec<String>) {
    require(program);
    let mut child = Command::new(program)
        .args(["-h", "127.0.0.1", "-p", &broker.port()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mosquitto client");
    let stdout = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let status = match wait_child(&mut child, GUARD) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            panic!("{program} {args:?} did not finish");
        }
    };
    (status, reader.join().unwrap())
}

/// A `mosquitto_sub -d` running in the background; `start` returns once the
/// broker has acknowledged its subscription (SUBACK), so a publish after it is
/// guaranteed to match.
pub struct Sub {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Sub {
    pub fn start(broker: &Broker, args: &[&str]) -> Sub {
        Sub::start_at(broker.addr.port(), args)
    }

    /// Waits for the subscriber to exit by itself (`-C`, `-W`) and returns what it printed.
    pub fn finish(mut self) -> Vec<String> {
        let status = wait_child(&mut self.child, GUARD);
        assert!(status.is_some(), "mosquitto_sub did not exit");
        // Let the reader thread drain the pipe.
        thread::sleep(Duration::from_millis(50));
        self.lines.lock().unwrap().clone()
    }

    pub fn wait_exit(mut self, limit: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, limit)
    }

    /// SIGKILL: the connection drops without DISCONNECT.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An MQTT 5 responder (a client we did not write: rumqttc): answers every
/// request on `topic` with `echo: <payload>` on its response topic, with the
/// same correlation data.
pub struct Responder {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Responder {
    pub fn start(broker: &Broker, topic: &str) -> Responder {
        use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
        use rumqttc::v5::mqttbytes::QoS;
        use rumqttc::v5::{Client, Event, MqttOptions};

        let mut options = MqttOptions::new("responder", "127.0.0.1", broker.addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut connection) = Client::new(options, 16);
        client
            .subscribe(topic, QoS::AtLeastOnce)
            .expect("subscribe");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ready_sender, ready) = mpsc::channel();
        let stopped = stop.clone();
        thread::spawn(move || {
            for event in connection.iter() {
                if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                match event {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_sender.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(request))) => {
                        let Some(properties) = request.properties else {
                            continue;
                        };
                        let Some(response_topic) = properties.response_topic else {
                            continue;
                        };
                        let reply = PublishProperties {
                            correlation_data: properties.correlation_data,
                            ..PublishProperties::default()
                        };
                        let mut payload = b"echo: ".to_vec();
                        payload.extend_from_slice(&request.payload);
                        let _ = client.publish_with_properties(
                            response_topic,
                            QoS::AtLeastOnce,
                            false,
                            payload,
                            reply,
                        );
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        ready
            .recv_timeout(GUARD)
            .expect("responder never subscribed");
        Responder { stop }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Runs `switchboard passwd <args>` with `stdin` written to its standard input;
/// returns its exit status and what it printed on standard error.
pub fn passwd(args: &[&str], stdin: &str) -> (ExitStatus, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("passwd")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchboard passwd");
    let mut input = child.stdin.take().unwrap();
    // The command may exit before reading (bad arguments): ignore a broken pipe.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    let mut stderr = child.stderr.take().unwrap();
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let status = match wait_child(&mut child, GUARD) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            panic!("switchboard passwd {args:?} did not finish");
        }
    };
    (status, reader.join().unwrap())
}

/// Sends SIGHUP (reload the password and ACL files).
pub fn hangup(broker: &Broker) {
    let status = Command::new("kill")
        .args(["-HUP", &broker.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Runs `switchboard serve <args>` expecting it to refuse to start; returns
/// what it printed on standard error.
pub fn serve_fails(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run switchboard serve");
    assert!(
        !output.status.success(),
        "switchboard serve {args:?} started"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `switchboard serve <args>` with exactly these arguments (nothing added), for
/// tests that choose the durability mode and data directory themselves. Waits
/// for the listening line; if the process exits first, or never reports an
/// address within [`GUARD`], returns the exit status (if any) and every log
/// line it wrote.
pub fn start_serve(args: &[&str]) -> Result<Broker, (Option<ExitStatus>, Vec<String>)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start switchboard");
    let stdout = child.stdout.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (address_sender, address) = mpsc::channel();
    let log_writer = log.clone();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                if let Some(token) = rest.split_whitespace().next() {
                    if let Ok(addr) = token.parse::<SocketAddr>() {
                        let _ = address_sender.send(addr);
                    }
                }
            }
            log_writer.lock().unwrap().push(line);
        }
    });
    let start = Instant::now();
    loop {
        match address.recv_timeout(Duration::from_millis(20)) {
            Ok(addr) => return Ok(Broker { child, addr, log }),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if matches!(child.try_wait(), Ok(Some(_))) || start.elapsed() > GUARD {
            break;
        }
    }
    let _ = child.kill();
    let status = child.wait().ok();
    let _ = reader.join();
    let lines = log.lock().unwrap().clone();
    Err((status, lines))
}

impl Broker {
    /// SIGKILL, then reap: what `kill -9` does; the broker gets no chance to
    /// flush or close anything.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every log line (stdout) the broker wrote so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

// ----- TLS and WebSocket listeners -----

impl Broker {
    /// The address the broker reported for its first listener of `kind`
    /// (`tcp`, `tls`, `ws`, `wss`): its "listening on ADDR (KIND)" log line.
    pub fn listener_address(&self, kind: &str) -> SocketAddr {
        let marker = format!("({kind})");
        let start = Instant::now();
        loop {
            let found = self.log.lock().unwrap().iter().find_map(|line| {
                let rest = line.split("listening on ").nth(1)?;
                let mut tokens = rest.split_whitespace();
                let address = tokens.next()?.parse::<SocketAddr>().ok()?;
                (tokens.next()? == marker).then_some(address)
            });
            if let Some(address) = found {
                return address;
            }
            assert!(start.elapsed() < GUARD, "no {kind} listener reported");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Runs a Mosquitto client against 127.0.0.1:`port` to completion; returns
/// its exit status and stdout lines (failure is for the caller to judge).
pub fn mosquitto_at(program: &str, port: u16, args: &[&str]) -> (ExitStatus, Vec<String>) {
    require(program);
    let mut child = Command::new(program)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mosquitto client");
    let stdout = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let status = match wait_child(&mut child, GUARD) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            panic!("{program} {args:?} did not finish");
        }
    };
    (status, reader.join().unwrap())
}

impl Sub {
    /// Like [`Sub::start`], against 127.0.0.1:`port` (a TLS listener: pass
    /// `--cafile` and friends in `args`).
    pub fn start_at(port: u16, args: &[&str]) -> Sub {
        require("mosquitto_sub");
        // stdbuf: mosquitto_sub's stdout is a pipe here, which libc would buffer
        // fully; line buffering lets us see the SUBACK as it happens.
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-d",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto_sub");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (subscribed_sender, subscribed) = mpsc::channel();
        let writer = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("Client ") || line.starts_with("Subscribed (") {
                    if line.contains("received SUBACK") {
                        let _ = subscribed_sender.send(());
                    }
                    continue;
                }
                writer.lock().unwrap().push(line);
            }
        });
        subscribed
            .recv_timeout(GUARD)
            .expect("mosquitto_sub never got its SUBACK");
        Sub { child, lines }
    }
}
