//! The console's publish keeps the promise of a PUBACK: a message that must
//! be kept (retained, or queued for a persistent session) is on disk before
//! the HTTP answer and before any subscriber sees it, and a store that
//! cannot write it makes the API answer 507 or 503 with nothing delivered.
//! The store's commit thread is held and failed with its `FaultInjector`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use switchboard_console::ConsoleOptions;
use switchboard_server::Durability;
use switchboard_store::{Fault, FaultInjector, FaultPoint};

/// How long a held commit thread gives the console to (wrongly) answer or
/// deliver before the test lets the write go on. It only gives a wrong
/// implementation the time to show itself; a right one passes however long
/// or short it is.
const EARLY_ANSWER_WINDOW: Duration = Duration::from_millis(200);

async fn start_durable(dir: &std::path::Path) -> (Harness, Arc<FaultInjector>) {
    let injector = Arc::new(FaultInjector::new());
    let mut options = server_options();
    options.durability = Durability::Sync {
        data_dir: dir.to_path_buf(),
    };
    options.store_fault_injector = Some(injector.clone());
    let harness = Harness::start_full(options, ConsoleOptions::default()).await;
    (harness, injector)
}

async fn publish(http: &Http, body: Value) -> Response {
    http.post("/api/v1/publish", Some(body)).await
}

fn metric(text: &str, name: &str) -> f64 {
    parse_exposition(text)
        .unwrap()
        .value(name, &[])
        .unwrap_or_else(|| panic!("{name} missing\n{text}"))
}

#[tokio::test]
async fn a_retained_message_is_answered_and_delivered_only_once_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (harness, injector) = start_durable(dir.path()).await;
    let http = harness.client();
    let mut subscriber = Mqtt::connect(harness.mqtt, "watcher").await;
    subscriber
        .subscribe("lamp/#", rumqttc::QoS::AtLeastOnce)
        .await;

    injector.hold_writes();
    let request = {
        let http = http.clone();
        tokio::spawn(async move {
            publish(
                &http,
                json!({"topic": "lamp/state", "payload": "on", "qos": 1, "retain": true}),
            )
            .await
        })
    };
    // On a thread of its own, not the blocking pool: if the console never
    // writes, the wait never ends, and the runtime must still shut down.
    let (held_tx, held_rx) = tokio::sync::oneshot::channel();
    let held = injector.clone();
    std::thread::spawn(move || {
        held.wait_until_held();
        let _ = held_tx.send(());
    });
    tokio::time::timeout(GUARD, held_rx)
        .await
        .expect("the console never wrote the retained message to the store")
        .unwrap();
    // The records are at the commit thread's gate: nothing may be answered
    // or delivered yet.
    tokio::time::sleep(EARLY_ANSWER_WINDOW).await;
    assert!(!request.is_finished(), "answered before the write");
    assert!(
        subscriber.incoming.try_recv().is_err(),
        "delivered before the write"
    );
    assert_eq!(harness.broker().retained_count(), 0);

    injector.release_writes();
    let response = request.await.unwrap();
    assert_eq!(response.status, 200);
    let published = response.json();
    assert_eq!(published["durable"], true);
    assert_eq!(published["retained"], true);
    assert_eq!(published["quota_exceeded"], false);
    assert_eq!(published["delivered_to"], 1);
    let message = subscriber.recv_publish().await;
    assert_eq!(message.topic, "lamp/state");
    assert_eq!(harness.broker().retained_count(), 1);

    // A message nobody keeps is not written at all, and not waited for.
    let response = publish(&http, json!({"topic": "lamp/blink", "payload": "x"})).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["durable"], false);
    subscriber.recv_publish().await;

    // The commit thread's work shows in the metrics.
    let text = http.get("/metrics").await.text();
    assert!(metric(&text, "switchboard_store_commit_seconds_count") >= 1.0);
    assert!(metric(&text, "switchboard_store_batch_records_count") >= 1.0);
    assert!(metric(&text, "switchboard_store_records_total") >= 2.0);
    harness.stop().await;
}

#[tokio::test]
async fn a_message_the_store_refuses_is_answered_with_an_error_and_never_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (harness, injector) = start_durable(dir.path()).await;
    let http = harness.client();
    let mut subscriber = Mqtt::connect(harness.mqtt, "watcher").await;
    subscriber
        .subscribe("lamp/#", rumqttc::QoS::AtLeastOnce)
        .await;

    // A full disk: 507, code store_full.
    injector.set(FaultPoint::SegmentWrite, Fault::new(ErrorKind::StorageFull));
    let response = publish(
        &http,
        json!({"topic": "lamp/full", "payload": "on", "qos": 1, "retain": true}),
    )
    .await;
    assert_eq!(response.status, 507, "{}", response.text());
    assert_eq!(response.json()["error"], "store_full");
    assert!(response.json()["message"]
        .as_str()
        .unwrap()
        .contains("disk is full"));

    // Any other write error: 503, code store_failed.
    injector.set(FaultPoint::SegmentWrite, Fault::new(ErrorKind::Other));
    let response = publish(
        &http,
        json!({"topic": "lamp/broken", "payload": "on", "retain": true}),
    )
    .await;
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(response.json()["error"], "store_failed");
    assert!(injector.failures(FaultPoint::SegmentWrite) >= 2);

    // Neither was retained, and once the disk works again the next message
    // is the first the subscriber gets: the refused ones were never sent.
    assert_eq!(harness.broker().retained_count(), 0);
    injector.clear_all();
    let response = publish(
        &http,
        json!({"topic": "lamp/after", "payload": "ok", "retain": true}),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["durable"], true);
    assert_eq!(subscriber.recv_publish().await.topic, "lamp/after");
    assert_eq!(harness.broker().retained_count(), 1);

    let text = http.get("/metrics").await.text();
    assert_eq!(metric(&text, "switchboard_store_refusals_total"), 2.0);
    assert!(metric(&text, "switchboard_store_failed_batches_total") >= 2.0);
    harness.stop().await;
}

#[tokio::test]
async fn a_message_for_a_persistent_session_is_queued_on_disk_first() {
    let dir = tempfile::tempdir().unwrap();
    let (harness, injector) = start_durable(dir.path()).await;
    let http = harness.client();
    // A 3.1.1 session without clean session outlives its connection.
    let mut subscriber = Mqtt::connect_with(harness.mqtt, "keeper", |options| {
        options.set_clean_session(false);
    })
    .await;
    subscriber
        .subscribe("jobs/#", rumqttc::QoS::AtLeastOnce)
        .await;

    injector.set(FaultPoint::SegmentWrite, Fault::new(ErrorKind::StorageFull));
    let response = publish(&http, json!({"topic": "jobs/1", "payload": "a", "qos": 1})).await;
    assert_eq!(response.status, 507, "{}", response.text());
    injector.clear_all();
    let response = publish(&http, json!({"topic": "jobs/2", "payload": "b", "qos": 1})).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let published = response.json();
    assert_eq!(published["durable"], true);
    assert_eq!(published["retained"], false);
    assert_eq!(subscriber.recv_publish().await.topic, "jobs/2");
    harness.stop().await;
}
