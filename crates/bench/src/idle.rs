//! The `idle` scenario: many connections that do nothing. Measures how fast
//! the broker accepts them and, given its pid, what each one costs it in
//! resident memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use switchboard_codec::Packet;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::args::{Scenario, Settings};
use crate::link::{Link, SessionKind, Target};
use crate::report::{IdleResults, Report};
use crate::scenario::{protocol_name, TASK_GUARD};
use crate::wire;

/// How long a connection has to answer the final PINGREQ to count as alive.
const ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) async fn run_idle(
    settings: &Settings,
    target: &Target,
    run_id: &str,
) -> anyhow::Result<Report> {
    let connections = settings.clients_for(Scenario::Idle);
    let rss_before = settings.broker_pid.map(read_vm_rss).transpose()?;

    let permits = Arc::new(Semaphore::new(settings.connect_concurrency));
    let (ready_sender, mut ready) = mpsc::channel::<anyhow::Result<()>>(1024);
    let (stop_sender, stop) = watch::channel(false);
    let mut tasks: JoinSet<bool> = JoinSet::new();
    let started = Instant::now();
    for index in 0..connections {
        let permits = Arc::clone(&permits);
        let target = target.clone();
        let ready = ready_sender.clone();
        let stop = stop.clone();
        let client_id = format!("sbb{run_id}i{index}");
        tasks.spawn(async move {
            let Ok(permit) = permits.acquire_owned().await else {
                return false;
            };
            let link = Link::connect(&target, &client_id, SessionKind::Clean).await;
            drop(permit);
            match link {
                Ok(link) => {
                    if ready.send(Ok(())).await.is_err() {
                        return false;
                    }
                    drop(ready);
                    hold(link, stop).await
                }
                Err(error) => {
                    let _ = ready.send(Err(error)).await;
                    false
                }
            }
        });
    }
    drop(ready_sender);
    let mut connected = 0;
    while connected < connections {
        match ready.recv().await {
            Some(Ok(())) => connected += 1,
            Some(Err(error)) => {
                tasks.abort_all();
                return Err(error.context(format!(
                    "idle: connection {} of {connections} failed",
                    connected + 1
                )));
            }
            None => {
                tasks.abort_all();
                bail!("idle: connecting tasks ended early");
            }
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();

    // Let the broker finish whatever it does per connection after CONNACK.
    tokio::time::sleep(settings.settle).await;
    let rss_after = settings.broker_pid.map(read_vm_rss).transpose()?;

    let _ = stop_sender.send(true);
    let mut alive = 0;
    let guard = tokio::time::Instant::now() + ALIVE_TIMEOUT + TASK_GUARD;
    while let Some(joined) = tokio::time::timeout_at(guard, tasks.join_next())
        .await
        .map_err(|_| anyhow!("idle: connections did not close in time"))?
    {
        if joined.context("an idle connection task failed")? {
            alive += 1;
        }
    }

    let bytes_per_connection = match (rss_before, rss_after) {
        (Some(before), Some(after)) => {
            Some((after as f64 - before as f64) * 1024.0 / connections as f64)
        }
        _ => None,
    };
    Ok(Report {
        scenario: Scenario::Idle.name(),
        broker: format!("{}:{}", settings.host, settings.port),
        protocol: protocol_name(settings.version),
        qos: 0,
        payload_bytes: 0,
        publishers: 0,
        subscribers: 0,
        stalled_subscribers: 0,
        persistent_sessions: false,
        session_expiry_secs: None,
        mode: "idle",
        window_per_publisher: None,
        target_rate: None,
        duration_secs: 0.0,
        warmup_secs: 0.0,
        drain_secs: 0.0,
        count: None,
        setup_secs: connect_secs,
        flow: None,
        idle: Some(IdleResults {
            connections,
            connect_secs,
            connects_per_sec: connections as f64 / connect_secs.max(f64::MIN_POSITIVE),
            alive,
            broker_pid: settings.broker_pid,
            rss_before_kib: rss_before,
            rss_after_kib: rss_after,
            bytes_per_connection,
        }),
        retained: None,
    })
}

/// Holds one connection open (pinging within keep alive) until told to
/// stop; then checks it still answers and disconnects. True if alive.
async fn hold(mut link: Link, mut stop: watch::Receiver<bool>) -> bool {
    let mut dead = false;
    let mut next_ping = tokio::time::Instant::now() + link.ping_interval;
    while !*stop.borrow() {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            packet = link.read_packet(), if !dead => {
                // PINGRESPs to our keep-alive pings; anything else is odd but harmless.
                if packet.is_err() {
                    dead = true;
                }
            }
            () = tokio::time::sleep_until(next_ping), if !dead => {
                wire::put_pingreq(&mut link.write_buf);
                if link.flush().await.is_err() {
                    dead = true;
                }
                next_ping += link.ping_interval;
            }
        }
    }
    if dead {
        return false;
    }
    let alive = tokio::time::timeout(ALIVE_TIMEOUT, async {
        wire::put_pingreq(&mut link.write_buf);
        link.flush().await?;
        loop {
            if matches!(link.read_packet().await?, Packet::PingResp) {
                return anyhow::Ok(());
            }
        }
    })
    .await
    .is_ok_and(|answered| answered.is_ok());
    link.disconnect().await;
    alive
}

/// The resident set size of process `pid`, in KiB, from /proc/PID/status.
fn read_vm_rss(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {path} (is --broker-pid right?)"))?;
    parse_vm_rss(&status).ok_or_else(|| anyhow!("{path} has no VmRSS line"))
}

/// The `VmRSS:   1234 kB` line of a /proc status file.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let value = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | None => Some(value),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_line() {
        let status =
            "Name:\tmosquitto\nVmPeak:\t   20000 kB\nVmRSS:\t    6784 kB\nRssAnon:\t 1000 kB\n";
        assert_eq!(parse_vm_rss(status), Some(6784));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t12 MB\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let rss = read_vm_rss(std::process::id()).unwrap();
        assert!(rss > 0);
    }
}
