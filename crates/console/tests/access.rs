//! Who gets in: API tokens, the admin user (basic auth and the login
//! cookie), anonymous access on loopback, and the refusals (cross-origin
//! changes, foreign Host headers, throttled logins).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use serde_json::json;
use support::*;
use switchboard_console::{AdminCredentials, ConsoleOptions};

const TOKEN: &str = "test-token-0123456789";

/// A cheap argon2id hash: the default cost takes seconds in a debug build.
fn admin(password: &str) -> AdminCredentials {
    let hash = switchboard_auth::hash_password_with_cost(
        password.as_bytes(),
        switchboard_auth::Cost {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
        },
    )
    .unwrap();
    AdminCredentials::new("admin", &hash).unwrap()
}

fn locked_down() -> ConsoleOptions {
    ConsoleOptions {
        allow_anonymous: Some(false),
        tokens: vec![TOKEN.to_string()],
        admin: Some(admin("s3cret")),
        ..ConsoleOptions::default()
    }
}

fn basic(user: &str, password: &str) -> String {
    // Standard base64, for the test only.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let bytes = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let value = (u32::from(bytes[0]) << 16) | (u32::from(bytes[1]) << 8) | u32::from(bytes[2]);
        for index in 0..4 {
            if index <= chunk.len() {
                out.push(char::from(
                    ALPHABET[((value >> (18 - 6 * index)) & 63) as usize],
                ));
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

#[tokio::test]
async fn tokens_let_scripts_in_and_nothing_else_does() {
    let harness = Harness::start_with(locked_down()).await;
    let anonymous = harness.client();
    let refused = anonymous.get("/api/v1/status").await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["error"], "unauthorized");
    assert_eq!(anonymous.get("/metrics").await.status, 401);
    assert_eq!(anonymous.get("/api/v1/stream?filter=%23").await.status, 401);
    // Probes, the page itself and the document need nothing.
    assert_eq!(anonymous.get("/health").await.status, 200);
    assert_eq!(anonymous.get("/ready").await.status, 200);
    assert_eq!(anonymous.get("/").await.status, 200);
    assert_eq!(anonymous.get("/api/v1/openapi.json").await.status, 200);

    let script = harness.client().bearer(TOKEN);
    assert_eq!(script.get("/api/v1/status").await.status, 200);
    assert_eq!(script.get("/metrics").await.status, 200);
    let published = script
        .post(
            "/api/v1/publish",
            Some(json!({"topic": "t", "payload": "x"})),
        )
        .await;
    assert_eq!(published.status, 200);
    let info = script.get("/api/v1/session").await.json();
    assert_eq!(info["authenticated"], true);
    assert_eq!(info["method"], "token");

    let wrong = harness.client().bearer("test-token-0123456780");
    assert_eq!(wrong.get("/api/v1/status").await.status, 401);
    let scheme = harness.client().with_header("Authorization", "Digest x");
    assert_eq!(scheme.get("/api/v1/status").await.status, 401);
    harness.stop().await;
}

#[tokio::test]
async fn the_admin_logs_in_with_basic_auth_or_the_form() {
    let harness = Harness::start_with(locked_down()).await;
    let basic_ok = harness
        .client()
        .with_header("Authorization", &basic("admin", "s3cret"));
    assert_eq!(basic_ok.get("/api/v1/status").await.status, 200);
    let basic_wrong = harness
        .client()
        .with_header("Authorization", &basic("admin", "guess"));
    assert_eq!(basic_wrong.get("/api/v1/status").await.status, 401);

    let http = harness.client();
    let before = http.get("/api/v1/session").await.json();
    assert_eq!(before["authenticated"], false);
    assert_eq!(before["login_available"], true);
    assert_eq!(before["anonymous_allowed"], false);
    let wrong = http
        .post(
            "/api/v1/login",
            Some(json!({"username": "admin", "password": "nope"})),
        )
        .await;
    assert_eq!(wrong.status, 401);
    let login = http
        .post(
            "/api/v1/login",
            Some(json!({"username": "admin", "password": "s3cret"})),
        )
        .await;
    assert_eq!(login.status, 204);
    let cookie = login.header("set-cookie").unwrap().to_string();
    assert!(cookie.contains("HttpOnly"));
    assert!(cookie.contains("SameSite=Strict"));
    // Plain HTTP: a Secure cookie would not be stored by the browser.
    assert!(!cookie.contains("Secure"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();
    let browser = harness.client().with_header("Cookie", &pair);
    assert_eq!(browser.get("/api/v1/status").await.status, 200);
    let info = browser.get("/api/v1/session").await.json();
    assert_eq!(info["method"], "admin");
    assert_eq!(info["user"], "admin");

    let logout = browser.post("/api/v1/logout", None).await;
    assert_eq!(logout.status, 204);
    assert!(logout.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(browser.get("/api/v1/status").await.status, 401);

    let malformed = http.post_raw("/api/v1/login", b"{}").await;
    assert_eq!(malformed.status, 400);
    harness.stop().await;
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled() {
    let harness = Harness::start_with(locked_down()).await;
    let http = harness.client();
    let attempt = || {
        http.post(
            "/api/v1/login",
            Some(json!({"username": "admin", "password": "wrong"})),
        )
    };
    // switchboard_auth's default: five failures, then a delay.
    for _ in 0..5 {
        assert_eq!(attempt().await.status, 401);
    }
    let throttled = attempt().await;
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.json()["error"], "throttled");
    assert!(throttled.header("retry-after").is_some());
    // Even the right password waits.
    let right = http
        .post(
            "/api/v1/login",
            Some(json!({"username": "admin", "password": "s3cret"})),
        )
        .await;
    assert_eq!(right.status, 429);
    harness.stop().await;
}

#[tokio::test]
async fn loopback_is_anonymous_but_only_for_local_host_names() {
    let harness = Harness::start().await;
    let local = harness.client();
    let info = local.get("/api/v1/session").await.json();
    assert_eq!(info["authenticated"], true);
    assert_eq!(info["method"], "anonymous");
    assert_eq!(info["login_available"], false);
    let localhost = harness
        .client()
        .with_header("Host", &format!("localhost:{}", harness.http.port()));
    assert_eq!(localhost.get("/api/v1/status").await.status, 200);
    // A page on another site whose name was rebound to 127.0.0.1.
    let rebound = harness.client().with_header("Host", "evil.example:8080");
    assert_eq!(rebound.get("/api/v1/status").await.status, 401);
    harness.stop().await;
}

#[tokio::test]
async fn changes_from_another_origin_are_refused() {
    let harness = Harness::start().await;
    let origin = format!("http://{}", harness.http);
    let same = harness.client().with_header("Origin", &origin);
    let body = json!({"topic": "t", "payload": "x"});
    assert_eq!(
        same.post("/api/v1/publish", Some(body.clone()))
            .await
            .status,
        200
    );
    let foreign = harness
        .client()
        .with_header("Origin", "http://evil.example");
    let refused = foreign.post("/api/v1/publish", Some(body.clone())).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["error"], "cross_origin");
    assert_eq!(foreign.delete("/api/v1/sessions/anyone").await.status, 403);
    // Reading is not a change: a GET is answered (the browser's CORS rules
    // keep the other page from reading the answer).
    assert_eq!(foreign.get("/api/v1/status").await.status, 200);
    let fetch = harness.client().with_header("Sec-Fetch-Site", "cross-site");
    assert_eq!(fetch.post("/api/v1/publish", Some(body)).await.status, 403);
    harness.stop().await;
}

fn cheap_hash(password: &str) -> String {
    switchboard_auth::hash_password_with_cost(
        password.as_bytes(),
        switchboard_auth::Cost {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
        },
    )
    .unwrap()
}

#[tokio::test]
async fn the_admin_password_can_come_from_the_password_file_and_its_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwd");
    let write = |alice: &str| {
        std::fs::write(
            &path,
            format!("alice:{}\nbob:{}\n", cheap_hash(alice), cheap_hash("bobs")),
        )
        .unwrap();
    };
    write("first");
    let auth = std::sync::Arc::new(
        switchboard_auth::Auth::load(switchboard_auth::AuthOptions {
            password_file: Some(path.clone()),
            acl_file: None,
            throttle: switchboard_auth::ThrottleOptions::default(),
        })
        .unwrap(),
    );
    let admin = AdminCredentials::from_password_file("alice", auth.clone()).unwrap();
    let harness = Harness::start_with(ConsoleOptions {
        allow_anonymous: Some(false),
        admin: Some(admin),
        ..ConsoleOptions::default()
    })
    .await;
    let as_user = |user: &str, password: &str| {
        harness
            .client()
            .with_header("Authorization", &basic(user, password))
    };
    assert_eq!(
        as_user("alice", "first").get("/api/v1/status").await.status,
        200
    );
    // Another user of the file is not the admin.
    assert_eq!(
        as_user("bob", "bobs").get("/api/v1/status").await.status,
        401
    );
    // The file is reloaded (SIGHUP in the binary): the new password counts.
    write("second");
    auth.reload().unwrap();
    assert_eq!(
        as_user("alice", "first").get("/api/v1/status").await.status,
        401
    );
    assert_eq!(
        as_user("alice", "second")
            .get("/api/v1/status")
            .await
            .status,
        200
    );
    let metrics = harness
        .client()
        .with_header("Authorization", &basic("alice", "second"))
        .get("/metrics")
        .await
        .text();
    let failures = parse_exposition(&metrics)
        .unwrap()
        .value("switchboard_console_auth_failures_total", &[])
        .unwrap();
    assert_eq!(failures, 2.0);
    harness.stop().await;
}

#[test]
fn an_admin_from_the_password_file_needs_one() {
    let auth = std::sync::Arc::new(
        switchboard_auth::Auth::load(switchboard_auth::AuthOptions {
            password_file: None,
            acl_file: None,
            throttle: switchboard_auth::ThrottleOptions::default(),
        })
        .unwrap(),
    );
    assert!(AdminCredentials::from_password_file("alice", auth).is_err());
}
