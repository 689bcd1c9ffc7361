//! The HTTP API, metrics and probes against an in-process broker. Every
//! answer from a documented path is checked against `assets/openapi.json`
//! by the support client (status documented, JSON body valid against the
//! documented schema).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use serde_json::{json, Value};
use support::*;

/// Percent-encodes everything but unreserved characters (like JavaScript's
/// `encodeURIComponent`, plus `!*'()`).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["client_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn probes_answer_and_metrics_parse() {
    let harness = Harness::start().await;
    let http = harness.client();
    let health = http.get("/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.text(), "ok\n");
    assert_eq!(http.get("/ready").await.status, 200);

    let mut subscriber = Mqtt::connect(harness.mqtt, "metrics-sub").await;
    subscriber.subscribe("m/#", rumqttc::QoS::AtLeastOnce).await;
    let mut publisher = Mqtt::connect(harness.mqtt, "metrics-pub").await;
    publisher.publish("m/a", b"one", false).await;
    subscriber.recv_publish().await;
    publisher.publish("nobody/listens", b"two", false).await;
    publisher.publish("m/retained", b"three", true).await;
    subscriber.recv_publish().await;

    let response = http.get("/metrics").await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = response.text();
    let metrics = parse_exposition(&text).unwrap_or_else(|error| panic!("{error}\n{text}"));
    let value = |name: &str, labels: &[(&str, &str)]| {
        metrics
            .value(name, labels)
            .unwrap_or_else(|| panic!("{name}{labels:?} missing\n{text}"))
    };
    assert_eq!(value("switchboard_connections", &[]), 2.0);
    assert_eq!(value("switchboard_sessions", &[]), 2.0);
    assert_eq!(value("switchboard_subscriptions", &[]), 1.0);
    assert_eq!(value("switchboard_retained_messages", &[]), 1.0);
    assert_eq!(
        value("switchboard_messages_received_total", &[("qos", "1")]),
        3.0
    );
    assert_eq!(
        value("switchboard_messages_received_total", &[("qos", "0")]),
        0.0
    );
    assert_eq!(
        value("switchboard_messages_sent_total", &[("qos", "1")]),
        2.0
    );
    assert_eq!(
        value(
            "switchboard_messages_dropped_total",
            &[("reason", "no_subscribers")]
        ),
        1.0
    );
    assert!(value("switchboard_bytes_received_total", &[]) > 0.0);
    assert!(value("switchboard_bytes_sent_total", &[]) > 0.0);
    // Payload bytes: "one" + "two" + "three" in, "one" + "three" out.
    assert_eq!(
        value(
            "switchboard_publish_payload_bytes_received_total",
            &[("qos", "1")]
        ),
        11.0
    );
    assert_eq!(
        value(
            "switchboard_publish_payload_bytes_sent_total",
            &[("qos", "1")]
        ),
        8.0
    );
    assert_eq!(
        value(
            "switchboard_publish_payload_bytes_received_total",
            &[("qos", "0")]
        ),
        0.0
    );
    assert_eq!(
        value("switchboard_listener_connections", &[("listener", "test")]),
        2.0
    );
    assert_eq!(
        value(
            "switchboard_listener_connections_total",
            &[("listener", "test")]
        ),
        2.0
    );
    assert_eq!(
        value(
            "switchboard_listener_connections_refused_total",
            &[("listener", "test")]
        ),
        0.0
    );
    assert_eq!(
        value(
            "switchboard_build_info",
            &[("version", switchboard_console::VERSION)]
        ),
        1.0
    );
    for family in [
        "switchboard_queued_messages",
        "switchboard_queued_bytes",
        "switchboard_inflight_messages",
        "switchboard_store_refusals_total",
        "switchboard_auth_failures_total",
        "switchboard_connections_rate_limited_total",
        "switchboard_accept_errors_total",
        "switchboard_packets_too_large_total",
        "switchboard_topic_names_refused_total",
        "switchboard_clients_throttled_total",
        "switchboard_publish_quota_exceeded_total",
        "switchboard_store_damaged_regions",
        "switchboard_queued_bytes_budget_used",
        "switchboard_queued_bytes_budget_limit",
        "switchboard_uptime_seconds",
        "switchboard_ready",
    ] {
        assert!(metrics.types.contains_key(family), "{family} missing");
    }
    for reason in [
        "queue_full",
        "queue_bytes_full",
        "qos0_offline",
        "expired",
        "too_large",
        "not_authorized",
        "memory_budget",
    ] {
        value("switchboard_messages_dropped_total", &[("reason", reason)]);
    }
    harness.stop().await;
}

#[test]
fn the_exposition_parser_refuses_what_prometheus_would() {
    let good = "# HELP a_total Help.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\"} 3\n";
    let parsed = parse_exposition(good).unwrap();
    assert_eq!(
        parsed.value("a_total", &[("x", "1"), ("y", "q\"")]),
        Some(3.0)
    );
    for bad in [
        // No trailing newline.
        "# HELP a A.\n# TYPE a gauge\na 1",
        // Sample before its TYPE.
        "a 1\n",
        // Counter without _total.
        "# HELP a A.\n# TYPE a counter\na 1\n",
        // Unquoted label value.
        "# HELP a A.\n# TYPE a gauge\na{x=1} 1\n",
        // Bad escape.
        "# HELP a A.\n# TYPE a gauge\na{x=\"\\t\"} 1\n",
        // Not a number.
        "# HELP a A.\n# TYPE a gauge\na one\n",
        // Bad metric name.
        "# HELP 1a A.\n# TYPE 1a gauge\n1a 1\n",
        // Duplicate series.
        "# HELP a A.\n# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",
        // Family given twice.
        "# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\n# TYPE a gauge\n",
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}

#[tokio::test]
async fn queued_and_inflight_are_summed_over_sessions() {
    let harness = Harness::start().await;
    let http = harness.client();
    // A persistent session that subscribed and went away.
    let mut sleeper = Mqtt::connect_with(harness.mqtt, "sleeper", |options| {
        options.set_clean_session(false);
    })
    .await;
    sleeper.subscribe("q/#", rumqttc::QoS::AtLeastOnce).await;
    sleeper.client.disconnect().await.unwrap();
    sleeper.closed().await;
    // Messages queue only once the broker has handled the DISCONNECT.
    eventually("the session is detached", || async {
        http.get("/api/v1/clients/sleeper").await.json()["connected"] == false
    })
    .await;
    let mut publisher = Mqtt::connect(harness.mqtt, "queue-pub").await;
    publisher.publish("q/1", b"waiting", false).await;
    publisher.publish("q/2", b"waiting too", false).await;

    let status = http.get("/api/v1/status").await.json();
    assert_eq!(status["queued_messages"], 2);
    assert!(status["queued_bytes"].as_u64().unwrap() > 0);
    let metrics = parse_exposition(&http.get("/metrics").await.text()).unwrap();
    assert_eq!(metrics.value("switchboard_queued_messages", &[]), Some(2.0));
    let detail = http.get("/api/v1/clients/sleeper").await.json();
    assert_eq!(detail["connected"], false);
    assert_eq!(detail["queued"], 2);
    assert_eq!(detail["peer"], Value::Null);
    assert!(detail["expires_in"].as_u64().unwrap() > 0);
    harness.stop().await;
}

#[tokio::test]
async fn status_reports_version_counts_and_rates() {
    let harness = Harness::start().await;
    let http = harness.client();
    let _client = Mqtt::connect(harness.mqtt, "status-client").await;
    let status = http.get("/api/v1/status").await.json();
    assert_eq!(status["version"], switchboard_console::VERSION);
    assert_eq!(status["ready"], true);
    assert_eq!(status["connections"], 1);
    assert_eq!(status["sessions"], 1);
    assert_eq!(status["totals"]["connections"], 1);
    assert_eq!(status["listeners"][0]["name"], "test");
    assert_eq!(status["listeners"][0]["connections"], 1);
    assert_eq!(status["listeners"][0]["connections_total"], 1);
    assert_eq!(status["queued_bytes_limit"], 0);
    // The sampler takes one sample a second.
    eventually("a rate sample", || async {
        let history = http.get("/api/v1/status/history").await.json();
        assert_eq!(history["interval_secs"], 1);
        !history["samples"].as_array().unwrap().is_empty()
    })
    .await;
    harness.stop().await;
}

#[tokio::test]
async fn clients_are_searched_sorted_and_paged() {
    let harness = Harness::start().await;
    let http = harness.client();
    let mut clients = Vec::new();
    for id in ["charlie", "alpha", "bravo-sensor", "delta-sensor"] {
        clients.push(Mqtt::connect(harness.mqtt, id).await);
    }
    clients[0].subscribe("a/1", rumqttc::QoS::AtMostOnce).await;
    clients[0].subscribe("a/2", rumqttc::QoS::AtMostOnce).await;
    clients[1].subscribe("a/3", rumqttc::QoS::AtMostOnce).await;

    let page = http.get("/api/v1/clients").await.json();
    assert_eq!(page["total"], 4);
    assert_eq!(
        ids(&page),
        ["alpha", "bravo-sensor", "charlie", "delta-sensor"]
    );
    let first = &page["items"][0];
    assert_eq!(first["connected"], true);
    assert_eq!(first["protocol"], "3.1.1");
    assert_eq!(first["keep_alive"], 30);
    assert!(first["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(first["connected_since"].as_u64().unwrap() > 1_600_000_000_000);

    let searched = http.get("/api/v1/clients?q=SENSOR").await.json();
    assert_eq!(ids(&searched), ["bravo-sensor", "delta-sensor"]);
    let sorted = http
        .get("/api/v1/clients?sort=subscriptions&order=desc")
        .await
        .json();
    assert_eq!(
        ids(&sorted),
        ["charlie", "alpha", "delta-sensor", "bravo-sensor"]
    );
    // charlie sent two SUBSCRIBEs, alpha one, the others none.
    let by_bytes = http
        .get("/api/v1/clients?sort=bytes_in&order=desc")
        .await
        .json();
    assert_eq!(
        ids(&by_bytes),
        ["charlie", "alpha", "delta-sensor", "bravo-sensor"]
    );
    let paged = http.get("/api/v1/clients?offset=1&limit=2").await.json();
    assert_eq!(paged["total"], 4);
    assert_eq!(ids(&paged), ["bravo-sensor", "charlie"]);
    let disconnected = http.get("/api/v1/clients?state=disconnected").await.json();
    assert_eq!(disconnected["total"], 0);

    for bad in [
        "/api/v1/clients?limit=0",
        "/api/v1/clients?limit=100000",
        "/api/v1/clients?sort=colour",
        "/api/v1/clients?unknown=1",
    ] {
        let response = http.get(bad).await;
        assert_eq!(response.status, 400, "{bad}");
        assert_eq!(response.json()["error"], "bad_request");
    }
    harness.stop().await;
}

#[tokio::test]
async fn a_client_in_detail() {
    let harness = Harness::start().await;
    let http = harness.client();
    let mut client = Mqtt::connect(harness.mqtt, "room/3 sensor").await;
    client
        .subscribe("rooms/+/temp", rumqttc::QoS::AtLeastOnce)
        .await;
    client
        .subscribe("$share/workers/jobs", rumqttc::QoS::ExactlyOnce)
        .await;
    let detail = http
        .get(&format!("/api/v1/clients/{}", encode("room/3 sensor")))
        .await;
    assert_eq!(detail.status, 200);
    let detail = detail.json();
    assert_eq!(detail["client_id"], "room/3 sensor");
    assert_eq!(detail["subscriptions"], 2);
    // After CONNECT the client sent two SUBSCRIBEs (3.1.1): 2 fixed header +
    // 2 packet id + 2 length + 12 filter + 1 options = 19 bytes, and
    // 2 + 2 + 2 + 19 + 1 = 26. It got two SUBACKs of 5 bytes (and CONNACK).
    assert_eq!(detail["bytes_in"], 19 + 26);
    assert!(detail["bytes_out"].as_u64().unwrap() >= 10, "{detail}");
    let list = detail["subscription_list"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let shared = list
        .iter()
        .find(|subscription| subscription["share_group"] == "workers")
        .unwrap();
    assert_eq!(shared["filter"], "$share/workers/jobs");
    assert_eq!(shared["topic_filter"], "jobs");
    assert_eq!(shared["qos"], 2);
    let missing = http.get("/api/v1/clients/nobody").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "not_found");
    harness.stop().await;
}

#[tokio::test]
async fn clients_are_disconnected_and_sessions_deleted() {
    let harness = Harness::start().await;
    let http = harness.client();
    let mut client = Mqtt::connect_with(harness.mqtt, "kick-me", |options| {
        options.set_clean_session(false);
    })
    .await;
    client.subscribe("k/#", rumqttc::QoS::AtLeastOnce).await;

    let response = http.post("/api/v1/clients/kick-me/disconnect", None).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["client_id"], "kick-me");
    client.closed().await;
    eventually("the session shows disconnected", || async {
        http.get("/api/v1/clients/kick-me").await.json()["connected"] == false
    })
    .await;
    // The session (and its subscription) stays.
    assert_eq!(harness.broker().subscription_count(), 1);
    let again = http.post("/api/v1/clients/kick-me/disconnect", None).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.json()["error"], "not_connected");
    assert_eq!(
        http.post("/api/v1/clients/nobody/disconnect", None)
            .await
            .status,
        404
    );

    let deleted = http.delete("/api/v1/sessions/kick-me").await;
    assert_eq!(deleted.status, 200);
    assert_eq!(http.get("/api/v1/clients/kick-me").await.status, 404);
    assert_eq!(harness.broker().subscription_count(), 0);
    assert_eq!(http.delete("/api/v1/sessions/kick-me").await.status, 404);

    // Deleting the session of a connected client closes its connection too.
    let mut connected = Mqtt::connect(harness.mqtt, "delete-me").await;
    assert_eq!(http.delete("/api/v1/sessions/delete-me").await.status, 200);
    connected.closed().await;
    harness.stop().await;
}

#[tokio::test]
async fn subscriptions_as_a_list_and_a_tree_with_shared_groups() {
    let harness = Harness::start().await;
    let http = harness.client();
    let mut one = Mqtt::connect(harness.mqtt, "one").await;
    let mut two = Mqtt::connect(harness.mqtt, "two").await;
    one.subscribe("home/+/temp", rumqttc::QoS::AtLeastOnce)
        .await;
    one.subscribe("$share/g/jobs/#", rumqttc::QoS::AtLeastOnce)
        .await;
    two.subscribe("$share/g/jobs/#", rumqttc::QoS::AtMostOnce)
        .await;
    two.subscribe("home/#", rumqttc::QoS::AtMostOnce).await;

    let flat = http.get("/api/v1/subscriptions").await.json();
    assert_eq!(flat["total"], 4);
    let filters: Vec<&str> = flat["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["filter"].as_str().unwrap())
        .collect();
    assert_eq!(
        filters,
        [
            "home/#",
            "home/+/temp",
            "$share/g/jobs/#",
            "$share/g/jobs/#"
        ]
    );
    assert_eq!(flat["groups"].as_array().unwrap().len(), 1);
    assert_eq!(flat["groups"][0]["group"], "g");
    assert_eq!(flat["groups"][0]["topic_filter"], "jobs/#");
    assert_eq!(flat["groups"][0]["members"][0]["client_id"], "one");
    assert_eq!(flat["groups"][0]["members"][1]["client_id"], "two");

    let searched = http.get("/api/v1/subscriptions?q=temp").await.json();
    assert_eq!(searched["total"], 1);

    let tree = http.get("/api/v1/subscriptions?view=tree").await.json();
    assert_eq!(tree["total"], 4);
    assert_eq!(tree["truncated"], false);
    let root = &tree["root"];
    let top: Vec<&str> = root["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["level"].as_str().unwrap())
        .collect();
    assert_eq!(top, ["home", "jobs"]);
    let jobs_all = &root["children"][1]["children"][0];
    assert_eq!(jobs_all["topic_filter"], "jobs/#");
    assert_eq!(
        jobs_all["shared"][0]["members"].as_array().unwrap().len(),
        2
    );
    assert_eq!(jobs_all["subscriptions"].as_array().unwrap().len(), 0);
    let home = &root["children"][0];
    let temp = &home["children"][1]["children"][0];
    assert_eq!(temp["topic_filter"], "home/+/temp");
    assert_eq!(temp["subscriptions"][0]["client_id"], "one");
    harness.stop().await;
}

#[tokio::test]
async fn retained_messages_are_browsed_formatted_and_deleted() {
    let harness = Harness::start().await;
    let http = harness.client();
    let mut publisher = Mqtt::connect(harness.mqtt, "retainer").await;
    publisher
        .publish("state/kitchen/json", br#"{"temp": 21.5}"#, true)
        .await;
    publisher.publish("state/kitchen/text", b"21.5", true).await;
    publisher
        .publish("state/hall/binary", &[0xff, 0x00, 0x10], true)
        .await;
    publisher.publish("other/thing", b"x", true).await;

    let list = http
        .get(&format!("/api/v1/retained?filter={}", encode("state/#")))
        .await
        .json();
    assert_eq!(list["total"], 4);
    assert_eq!(list["filter"], "state/#");
    assert_eq!(list["truncated"], false);
    let items = list["items"].as_array().unwrap();
    let topics: Vec<&str> = items
        .iter()
        .map(|item| item["topic"].as_str().unwrap())
        .collect();
    assert_eq!(
        topics,
        [
            "state/hall/binary",
            "state/kitchen/json",
            "state/kitchen/text"
        ]
    );
    assert_eq!(items[0]["payload"]["format"], "binary");
    assert_eq!(items[0]["payload"]["text"], Value::Null);
    assert_eq!(items[0]["payload"]["hex"], "ff0010");
    assert_eq!(items[1]["payload"]["format"], "json");
    assert_eq!(items[1]["payload"]["text"], r#"{"temp": 21.5}"#);
    assert_eq!(items[2]["payload"]["format"], "text");
    assert_eq!(items[2]["retain"], true);
    assert_eq!(items[2]["qos"], 1);

    let limited = http.get("/api/v1/retained?limit=1").await.json();
    assert_eq!(limited["items"].as_array().unwrap().len(), 1);
    assert_eq!(limited["truncated"], true);

    for bad in ["a/#/b", "$share/g/a"] {
        let response = http
            .get(&format!("/api/v1/retained?filter={}", encode(bad)))
            .await;
        assert_eq!(response.status, 400, "{bad}");
    }

    // The topic's slashes either encoded or not.
    let deleted = http
        .delete(&format!(
            "/api/v1/retained/{}",
            encode("state/kitchen/json")
        ))
        .await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.json()["topic"], "state/kitchen/json");
    assert_eq!(
        http.delete("/api/v1/retained/state/kitchen/text")
            .await
            .status,
        200
    );
    assert_eq!(
        http.delete("/api/v1/retained/state/kitchen/text")
            .await
            .status,
        404
    );
    assert_eq!(harness.broker().retained_count(), 2);
    // A topic with a leading slash and an empty level, percent-encoded.
    publisher.publish("/odd//topic", b"y", true).await;
    let odd = http
        .delete(&format!("/api/v1/retained/{}", encode("/odd//topic")))
        .await;
    assert_eq!(odd.status, 200, "{}", odd.text());
    assert_eq!(odd.json()["topic"], "/odd//topic");
    assert_eq!(harness.broker().retained_count(), 2);
    harness.stop().await;
}

#[tokio::test]
async fn publish_reaches_subscribers_and_bad_requests_are_refused() {
    let harness = Harness::start().await;
    let http = harness.client();
    let mut subscriber = Mqtt::connect(harness.mqtt, "listener").await;
    subscriber
        .subscribe("cmd/#", rumqttc::QoS::ExactlyOnce)
        .await;

    let response = http
        .post(
            "/api/v1/publish",
            Some(json!({
                "topic": "cmd/lamp",
                "payload": "on",
                "qos": 1,
                "retain": true,
                "properties": {
                    "content_type": "text/plain",
                    "user_properties": [{"key": "from", "value": "console"}]
                }
            })),
        )
        .await;
    assert_eq!(response.status, 200);
    let published = response.json();
    assert_eq!(published["delivered_to"], 1);
    assert_eq!(published["retained"], true);
    let message = subscriber.recv_publish().await;
    assert_eq!(message.topic, "cmd/lamp");
    assert_eq!(&message.payload[..], b"on");
    assert_eq!(message.qos, rumqttc::QoS::AtLeastOnce);
    assert_eq!(harness.broker().retained_count(), 1);

    let hex = http
        .post(
            "/api/v1/publish",
            Some(json!({"topic": "cmd/raw", "payload": "00ff10", "encoding": "hex"})),
        )
        .await;
    assert_eq!(hex.status, 200);
    assert_eq!(
        &subscriber.recv_publish().await.payload[..],
        &[0x00, 0xff, 0x10]
    );

    for (body, why) in [
        (json!({"topic": "cmd/+"}), "wildcard in a topic name"),
        (json!({"topic": ""}), "empty topic"),
        (json!({"topic": "$SYS/x"}), "reserved topic"),
        (json!({"topic": "a", "qos": 3}), "qos 3"),
        (
            json!({"topic": "a", "payload": "xyz", "encoding": "hex"}),
            "bad hex",
        ),
        (json!({"topic": "a", "colour": "red"}), "unknown field"),
        (json!({"payload": "x"}), "no topic"),
        (
            json!({"topic": "a", "payload": "\u{fffd}", "encoding": "hex"}),
            "bad hex characters",
        ),
        (
            json!({"topic": "a", "properties": {"response_topic": "r/#"}}),
            "wildcard in the response topic",
        ),
    ] {
        let response = http.post("/api/v1/publish", Some(body)).await;
        assert_eq!(response.status, 400, "{why}");
    }
    let not_json = http.post_raw("/api/v1/publish", b"{").await;
    assert_eq!(not_json.status, 400);
    harness.stop().await;
}

#[tokio::test]
async fn oversized_publishes_are_refused() {
    let mut server = server_options();
    server.broker.max_packet_size = 1024;
    let harness = Harness::start_full(server, switchboard_console::ConsoleOptions::default()).await;
    let http = harness.client();
    let response = http
        .post(
            "/api/v1/publish",
            Some(json!({"topic": "big", "payload": "x".repeat(2000)})),
        )
        .await;
    assert_eq!(response.status, 413);
    assert_eq!(response.json()["error"], "too_large");
    // A body beyond the limit is refused before it is read.
    let huge = format!(
        r#"{{"topic": "big", "payload": "{}"}}"#,
        "x".repeat(200 * 1024)
    );
    let response = http.post_raw("/api/v1/publish", huge.as_bytes()).await;
    assert_eq!(response.status, 413);
    harness.stop().await;
}

#[tokio::test]
async fn the_live_stream_shows_matching_messages() {
    let harness = Harness::start().await;
    let http = harness.client();
    let mut events = http
        .events(&format!("/api/v1/stream?filter={}", encode("live/+")))
        .await;
    let subscribed = events.next().await;
    assert_eq!(subscribed.name, "subscribed");
    assert_eq!(subscribed.json()["filter"], "live/+");
    assert_eq!(harness.broker().tap_count(), 1);

    let mut publisher = Mqtt::connect(harness.mqtt, "live-pub").await;
    publisher.publish("other/topic", b"not shown", false).await;
    publisher.publish("live/json", br#"{"a":1}"#, false).await;
    let event = events.next().await;
    assert_eq!(event.name, "message");
    let data = event.json();
    assert_valid("/components/schemas/LiveMessage", &data);
    assert_eq!(data["topic"], "live/json");
    assert_eq!(data["payload"]["format"], "json");
    assert_eq!(data["qos"], 1);

    // From the console's own publish form, too.
    http.post(
        "/api/v1/publish",
        Some(json!({"topic": "live/form", "payload": "hello"})),
    )
    .await;
    let event = events.next().await;
    assert_eq!(event.json()["topic"], "live/form");
    assert_eq!(event.json()["payload"]["text"], "hello");

    let status = harness.client().get("/api/v1/status").await.json();
    assert_eq!(status["streams"], 1);

    // Shutdown ends the stream, and the tap goes with it.
    let broker = harness.broker();
    harness.cancel.cancel();
    assert!(events.next_or_end().await.is_none());
    eventually("the tap is removed", || {
        let broker = broker.clone();
        async move { broker.tap_count() == 0 }
    })
    .await;
    harness.stop().await;
}

#[tokio::test]
async fn bad_stream_filters_are_refused() {
    let harness = Harness::start().await;
    let http = harness.client();
    for bad in ["a/#/b", "$share/g/a", ""] {
        let response = http
            .get(&format!("/api/v1/stream?filter={}", encode(bad)))
            .await;
        assert_eq!(response.status, 400, "{bad:?}");
    }
    assert_eq!(http.get("/api/v1/stream").await.status, 400);
    harness.stop().await;
}

#[tokio::test]
async fn the_status_stream_sends_the_status_at_once_and_then_every_second() {
    let harness = Harness::start().await;
    let http = harness.client();
    let mut events = http.events("/api/v1/status/stream").await;
    let first = events.next().await;
    assert_eq!(first.name, "status");
    assert_valid("/components/schemas/Status", &first.json());
    let second = events.next().await;
    assert_eq!(second.name, "status");
    assert_valid("/components/schemas/Status", &second.json());
    harness.stop().await;
}

#[tokio::test]
async fn unknown_api_paths_are_json_404s() {
    let harness = Harness::start().await;
    let mut http = harness.client();
    http.unchecked = true;
    let response = http.get("/api/v1/nothing-here").await;
    assert_eq!(response.status, 404);
    assert_eq!(response.json()["error"], "not_found");
    assert_eq!(http.get("/nothing").await.status, 404);
    harness.stop().await;
}

#[tokio::test]
async fn the_console_page_and_its_assets_are_served_with_a_strict_policy() {
    let harness = Harness::start().await;
    let http = harness.client();
    let page = http.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let policy = page.header("content-security-policy").unwrap();
    assert!(policy.contains("script-src 'self'"));
    assert!(!policy.contains("unsafe-inline"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(page.text().contains("/assets/app.js"));
    for (path, kind) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
        ("/favicon.svg", "image/svg+xml"),
        ("/api/v1/openapi.json", "application/json"),
    ] {
        let response = http.get(path).await;
        assert_eq!(response.status, 200, "{path}");
        assert!(response.header("content-type").unwrap().starts_with(kind));
        assert!(!response.body.is_empty());
    }
    assert_eq!(
        http.get("/api/v1/openapi.json").await.json(),
        document().clone()
    );
    harness.stop().await;
}

/// Every operation in the document, called once with arguments that make
/// it succeed: a route missing from the server, or an operation missing
/// from this table, fails.
#[tokio::test]
async fn every_documented_operation_exists_and_answers_as_documented() {
    let harness = Harness::start().await;
    let http = harness.client();
    let mut client = Mqtt::connect(harness.mqtt, "doc-client").await;
    client.subscribe("doc/#", rumqttc::QoS::AtLeastOnce).await;
    client.publish("doc/retained", b"kept", true).await;
    client.recv_publish().await;
    let _other = Mqtt::connect(harness.mqtt, "doc-other").await;
    let _third = Mqtt::connect(harness.mqtt, "doc-third").await;

    let mut covered = std::collections::BTreeSet::new();
    let document = document();
    for (template, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let (path, body): (&str, Option<Value>) = match (method.as_str(), template.as_str()) {
                ("get", "/api/v1/stream") => {
                    let mut events = http.events("/api/v1/stream?filter=%23").await;
                    assert_eq!(events.next().await.name, "subscribed");
                    covered.insert(format!("{method} {template}"));
                    continue;
                }
                ("get", "/api/v1/status/stream") => {
                    let mut events = http.events(template).await;
                    assert_eq!(events.next().await.name, "status");
                    covered.insert(format!("{method} {template}"));
                    continue;
                }
                ("get", "/api/v1/clients/{id}") => ("/api/v1/clients/doc-client", None),
                ("post", "/api/v1/clients/{id}/disconnect") => {
                    ("/api/v1/clients/doc-other/disconnect", None)
                }
                ("delete", "/api/v1/sessions/{id}") => ("/api/v1/sessions/doc-third", None),
                ("delete", "/api/v1/retained/{topic}") => ("/api/v1/retained/doc/retained", None),
                ("post", "/api/v1/publish") => (
                    "/api/v1/publish",
                    Some(json!({"topic": "doc/x", "payload": "p"})),
                ),
                ("post", "/api/v1/login") => {
                    // Needs an admin user: exercised in tests/access.rs.
                    covered.insert(format!("{method} {template}"));
                    continue;
                }
                ("post", "/api/v1/logout") => (template.as_str(), None),
                ("get", _) => (template.as_str(), None),
                (method, template) => panic!("no request for {method} {template} in this test"),
            };
            let body = body.map(|body| body.to_string().into_bytes());
            let response = http.request(&method.to_uppercase(), path, body).await;
            assert!(
                (200..300).contains(&response.status),
                "{method} {path}: {} {}",
                response.status,
                response.text()
            );
            covered.insert(format!("{method} {template}"));
        }
    }
    let operations: usize = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(covered.len(), operations, "{covered:?}");
    assert_eq!(operations, 19, "a new route needs a row in this test");
    harness.stop().await;
}

#[tokio::test]
async fn serve_refuses_a_public_listener_without_credentials() {
    let broker = Harness::start().await;
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let result = switchboard_console::serve(
        listener,
        broker.broker(),
        switchboard_console::ConsoleOptions::default(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await;
    let error = result.unwrap_err();
    assert!(
        matches!(
            error,
            switchboard_console::ConsoleError::NoCredentials { .. }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("not on a loopback address"));
    broker.stop().await;
}
