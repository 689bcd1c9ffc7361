//! Interoperability: Debian's Mosquitto clients (`mosquitto_pub`, `mosquitto_sub`,
//! `mosquitto_rr`) against the real `switchboard serve` binary, for every feature
//! those tools expose. `scripts/test` installs the clients when they are missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;

#[test]
fn publish_and_subscribe_at_every_qos_in_311_and_5() {
    let broker = Broker::start(&[]);
    for version in ["mqttv311", "mqttv5"] {
        for qos in ["0", "1", "2"] {
            let topic = format!("interop/{version}/q{qos}");
            let payload = format!("hello {version} qos {qos}");
            let sub = Sub::start(
                &broker,
                &["-V", version, "-q", qos, "-t", &topic, "-C", "1", "-v"],
            );
            mosquitto(
                "mosquitto_pub",
                &broker,
                &["-V", version, "-q", qos, "-t", &topic, "-m", &payload],
            );
            let lines = sub.finish();
            assert_eq!(
                lines,
                vec![format!("{topic} {payload}")],
                "{version} qos {qos}"
            );
        }
    }
}

#[test]
fn retained_message_is_kept_and_cleared() {
    let broker = Broker::start(&[]);
    mosquitto(
        "mosquitto_pub",
        &broker,
        &["-t", "interop/retained", "-m", "kept", "-r", "-q", "1"],
    );
    // [MQTT-3.3.1-6] (3.1.1): a new subscriber gets the retained message.
    let lines = mosquitto(
        "mosquitto_sub",
        &broker,
        &["-t", "interop/#", "-C", "1", "-v", "-W", "5"],
    );
    assert_eq!(lines, vec!["interop/retained kept".to_string()]);
    // [MQTT-3.3.1-10] (3.1.1): an empty retained message clears it.
    mosquitto(
        "mosquitto_pub",
        &broker,
        &["-t", "interop/retained", "-n", "-r"],
    );
    let lines = mosquitto_allow_timeout(
        "mosquitto_sub",
        &broker,
        &["-t", "interop/#", "-v", "-W", "1", "--retained-only"],
    );
    assert!(
        lines.is_empty(),
        "retained message should be gone: {lines:?}"
    );
}

#[test]
fn v5_properties_pass_through_unchanged() {
    let broker = Broker::start(&[]);
    let sub = Sub::start(
        &broker,
        &[
            "-V",
            "mqttv5",
            "-t",
            "props/t",
            "-C",
            "1",
            "-F",
            "%t|%p|%R|%C|%D|%P",
        ],
    );
    mosquitto(
        "mosquitto_pub",
        &broker,
        &[
            "-V",
            "mqttv5",
            "-t",
            "props/t",
            "-m",
            "body",
            "-D",
            "publish",
            "response-topic",
            "props/reply",
            "-D",
            "publish",
            "content-type",
            "text/plain",
            "-D",
            "publish",
            "correlation-data",
            "abc123",
            "-D",
            "publish",
            "user-property",
            "unit",
            "celsius",
        ],
    );
    let lines = sub.finish();
    assert_eq!(
        lines,
        vec!["props/t|body|props/reply|text/plain|abc123|unit:celsius".to_string()]
    );
}

#[test]
fn request_response_with_mosquitto_rr() {
    let broker = Broker::start(&[]);
    let responder = Responder::start(&broker, "svc/echo");
    let lines = mosquitto(
        "mosquitto_rr",
        &broker,
        &[
            "-V",
            "mqttv5",
            "-t",
            "svc/echo",
            "-e",
            "svc/echo/reply",
            "-m",
            "ping",
            "-W",
            "10",
        ],
    );
    assert_eq!(lines, vec!["echo: ping".to_string()]);
    drop(responder);
}

#[test]
fn will_is_published_when_the_client_vanishes() {
    let broker = Broker::start(&[]);
    let watcher = Sub::start(&broker, &["-t", "wills/#", "-C", "1", "-v"]);
    let doomed = Sub::start(
        &broker,
        &[
            "-t",
            "unused",
            "-i",
            "doomed",
            "--will-topic",
            "wills/doomed",
            "--will-payload",
            "gone",
            "--will-qos",
            "1",
        ],
    );
    // [MQTT-3.1.2-8] (3.1.1): network loss publishes the will.
    doomed.kill();
    assert_eq!(watcher.finish(), vec!["wills/doomed gone".to_string()]);
}

#[test]
fn persistent_session_receives_what_was_sent_while_offline() {
    let broker = Broker::start(&[]);
    for (version, extra) in [("mqttv311", vec![]), ("mqttv5", vec!["-x", "600"])] {
        let client_id = format!("persist-{version}");
        let topic = format!("offline/{version}");
        let mut first = vec![
            "-V", version, "-c", "-i", &client_id, "-q", "1", "-t", &topic, "-E",
        ];
        first.extend(extra.iter().copied());
        mosquitto("mosquitto_sub", &broker, &first);
        mosquitto(
            "mosquitto_pub",
            &broker,
            &[
                "-V",
                version,
                "-q",
                "1",
                "-t",
                &topic,
                "-m",
                "while you were away",
            ],
        );
        let mut second = vec![
            "-V", version, "-c", "-i", &client_id, "-q", "1", "-t", &topic, "-C", "1", "-W", "5",
        ];
        second.extend(extra.iter().copied());
        let lines = mosquitto("mosquitto_sub", &broker, &second);
        assert_eq!(lines, vec!["while you were away".to_string()], "{version}");
    }
}

#[test]
fn sys_topics_are_published() {
    let broker = Broker::start(&["--sys-interval-secs", "1"]);
    let lines = mosquitto(
        "mosquitto_sub",
        &broker,
        &["-t", "$SYS/broker/version", "-C", "1", "-W", "10"],
    );
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("switchboard "), "{lines:?}");
}

#[test]
fn shutdown_on_sigterm_is_graceful() {
    let broker = Broker::start(&[]);
    let sub = Sub::start(&broker, &["-V", "mqttv5", "-t", "x", "-v"]);
    broker.terminate();
    // The v5 subscriber is told the server is shutting down and exits.
    let status = sub.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some(),
        "mosquitto_sub did not exit after broker shutdown"
    );
}
