//! The command-line clients (`switchboard pub`, `sub`, `req`) against the real
//! broker binary. The broker runs at debug level so that a test can wait for
//! the "subscribed" log line instead of sleeping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::*;

fn debug_broker() -> Broker {
    Broker::start(&["--log-level", "debug"])
}

#[test]
fn sub_prints_what_pub_sends() {
    let broker = debug_broker();
    let sub = switchboard_background(
        &broker,
        "sub",
        &["-t", "cli/t", "-C", "2", "-v", "-i", "cli-sub", "-q", "2"],
    );
    broker.wait_for_log(&["subscribed", "cli-sub"]);
    let (status, _) = switchboard(&broker, "pub", &["-t", "cli/t", "-m", "one"]);
    assert!(status.success());
    let (status, _) = switchboard(&broker, "pub", &["-t", "cli/t", "-m", "two", "-q", "2"]);
    assert!(status.success());
    let (status, lines) = sub.finish();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        lines,
        vec!["cli/t one".to_string(), "cli/t two".to_string()]
    );
}

#[test]
fn retained_message_from_pub_reaches_a_later_sub() {
    let broker = debug_broker();
    let (status, _) = switchboard(
        &broker,
        "pub",
        &["-t", "cli/retained", "-m", "kept", "-r", "-q", "1"],
    );
    assert!(status.success());
    let (status, lines) = switchboard(
        &broker,
        "sub",
        &["-t", "cli/#", "-C", "1", "-v", "-W", "10"],
    );
    assert!(status.success());
    assert_eq!(lines, vec!["cli/retained kept".to_string()]);
}

#[test]
fn user_properties_and_json_output() {
    let broker = debug_broker();
    let sub = switchboard_background(
        &broker,
        "sub",
        &["-t", "cli/json", "-C", "1", "-F", "%j", "-i", "json-sub"],
    );
    broker.wait_for_log(&["subscribed", "json-sub"]);
    let (status, _) = switchboard(
        &broker,
        "pub",
        &[
            "-t",
            "cli/json",
            "-m",
            "21.5",
            "-D",
            "publish",
            "user-property",
            "unit",
            "celsius",
        ],
    );
    assert!(status.success());
    let (status, lines) = sub.finish();
    assert!(status.success());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("celsius") && lines[0].contains("21.5"),
        "{lines:?}"
    );
}

#[test]
fn req_gets_the_response_with_its_correlation_data() {
    let broker = debug_broker();
    let _responder = Responder::start(&broker, "svc/echo");
    let (status, lines) = switchboard(&broker, "req", &["-t", "svc/echo", "-m", "hi", "-W", "10"]);
    assert!(status.success(), "{status:?} {lines:?}");
    assert_eq!(lines, vec!["echo: hi".to_string()]);
}

#[test]
fn req_without_responder_times_out_cleanly() {
    let broker = debug_broker();
    let (status, lines) = switchboard(&broker, "req", &["-t", "svc/nobody", "-m", "hi", "-W", "1"]);
    assert!(!status.success());
    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn sub_will_is_published_when_it_is_killed() {
    let broker = debug_broker();
    let watcher = switchboard_background(
        &broker,
        "sub",
        &["-t", "wills/#", "-C", "1", "-v", "-i", "watcher"],
    );
    broker.wait_for_log(&["subscribed", "watcher"]);
    let doomed = switchboard_background(
        &broker,
        "sub",
        &[
            "-t",
            "x",
            "-i",
            "doomed",
            "--will-topic",
            "wills/doomed",
            "--will-payload",
            "gone",
        ],
    );
    broker.wait_for_log(&["subscribed", "doomed"]);
    doomed.kill();
    let (status, lines) = watcher.finish();
    assert!(status.success());
    assert_eq!(lines, vec!["wills/doomed gone".to_string()]);
}

#[test]
fn persistent_sub_session_gets_what_was_sent_while_away() {
    let broker = debug_broker();
    let first = switchboard_background(
        &broker,
        "sub",
        &[
            "-t",
            "cli/offline",
            "-c",
            "-i",
            "away",
            "-q",
            "1",
            "-x",
            "600",
        ],
    );
    broker.wait_for_log(&["subscribed", "away"]);
    first.kill();
    let (status, _) = switchboard(
        &broker,
        "pub",
        &["-t", "cli/offline", "-m", "queued", "-q", "1"],
    );
    assert!(status.success());
    let (status, lines) = switchboard(
        &broker,
        "sub",
        &[
            "-t",
            "cli/offline",
            "-c",
            "-i",
            "away",
            "-q",
            "1",
            "-x",
            "600",
            "-C",
            "1",
            "-W",
            "10",
        ],
    );
    assert!(status.success());
    assert_eq!(lines, vec!["queued".to_string()]);
}
