//! Loading, layering and validation, end to end through the public API.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::*;
use crate::load::{
    AUTH_KEYS, HTTP_KEYS, LIMITS_KEYS, LISTENER_KEYS, MQTT_KEYS, ROOT_KEYS, SESSION_KEYS,
};
use crate::tree::{self, Entry, Value};

const EXAMPLE: &str = include_str!("../../../switchboard.example.toml");

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml_str(text, "test.toml")
}

fn errors(text: &str) -> Vec<ConfigError> {
    parse(text).unwrap_err().0
}

/// The only error for `text`; fails if there is not exactly one.
fn single_error(text: &str) -> ConfigError {
    let mut all = errors(text);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

fn line_of(error: &ConfigError) -> usize {
    error.position.unwrap().line
}

fn address(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// Every key path in a parsed document: `limits.max_inflight`,
/// `listener[0].address`, ...
fn key_paths(text: &str) -> BTreeSet<String> {
    fn walk(prefix: &str, entries: &[Entry], paths: &mut BTreeSet<String>) {
        for entry in entries {
            let path = if prefix.is_empty() {
                entry.key.clone()
            } else {
                format!("{prefix}.{}", entry.key)
            };
            match &entry.node.value {
                Value::Table(children) => walk(&path, children, paths),
                Value::Array(items)
                    if !items.is_empty()
                        && items
                            .iter()
                            .all(|item| matches!(item.value, Value::Table(_))) =>
                {
                    for (index, item) in items.iter().enumerate() {
                        if let Value::Table(children) = &item.value {
                            walk(&format!("{path}[{index}]"), children, paths);
                        }
                    }
                }
                _ => {
                    paths.insert(path);
                }
            }
        }
    }
    let mut paths = BTreeSet::new();
    walk("", &tree::parse(text).unwrap(), &mut paths);
    paths
}

// ---------------------------------------------------------------------------
// Defaults and the example file
// ---------------------------------------------------------------------------

#[test]
fn defaults_are_valid() {
    Config::default().validate().unwrap();
    assert_eq!(
        Config::load(None, &Overrides::default()).unwrap(),
        Config::default()
    );
    assert_eq!(parse("").unwrap(), Config::default());
}

#[test]
fn defaults_have_the_documented_values() {
    let config = Config::default();
    assert_eq!(
        config.listeners,
        vec![ListenerConfig::tcp(address("127.0.0.1:1883"))]
    );
    assert_eq!(config.data_dir, PathBuf::from("./switchboard-data"));
    assert_eq!(config.durability, Durability::Sync);
    assert_eq!(config.sys_interval_secs, 10);
    assert_eq!(config.log_level, "info");
    assert_eq!(config.limits.max_packet_size, 1_048_576);
    assert_eq!(config.limits.connect_timeout_secs, 10);
    assert_eq!(config.limits.max_inflight, 32);
    assert_eq!(config.limits.max_queued_messages, 1000);
    assert_eq!(config.limits.max_topic_length, 65535);
    assert_eq!(config.session.max_session_expiry_secs, 604_800);
    assert!(!config.session.queue_qos0_offline);
    assert_eq!(config.session.max_keep_alive_secs, 0);
    assert_eq!(config.session.topic_alias_maximum, 10);
    assert!(config.session.allow_zero_length_client_id);
    assert_eq!(config.mqtt.maximum_qos, 2);
    assert!(config.mqtt.retain_available);
    assert!(config.mqtt.wildcard_subscriptions);
    assert!(config.mqtt.shared_subscriptions);
    assert!(config.mqtt.subscription_identifiers);
    assert_eq!(config.auth.password_file, None);
    assert_eq!(config.auth.acl_file, None);
    assert_eq!(config.auth.allow_anonymous, None);
    assert_eq!(config.auth.failed_login_limit, 5);
    assert_eq!(config.auth.failed_login_window_secs, 60);
    assert_eq!(config.auth.failed_login_delay_secs, 1);
    assert_eq!(config.auth.failed_login_max_delay_secs, 30);
    assert_eq!(config.auth.failed_login_max_addresses, 10_000);
}

#[test]
fn example_file_sets_every_setting_to_its_default() {
    let example = Config::from_toml_str(EXAMPLE, "switchboard.example.toml")
        .unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(example, Config::default());
    // Equal to the defaults could also mean "sets nothing": check that the
    // example writes out every key the defaults have.
    let defaults = toml::to_string(&Config::default()).unwrap();
    assert_eq!(key_paths(EXAMPLE), key_paths(&defaults));
}

#[test]
fn known_key_lists_match_the_structs() {
    // The lists feed "did you mean"; the serialized structs are the truth.
    let mut config = Config::default();
    config.listeners[0].name = Some("a".into());
    config.listeners[0].max_connections = Some(1);
    config.listeners[0].allow_anonymous = Some(false);
    config.listeners[0].cert_file = Some(PathBuf::from("c"));
    config.listeners[0].key_file = Some(PathBuf::from("k"));
    config.listeners[0].client_ca_file = Some(PathBuf::from("ca"));
    config.listeners[0].require_client_cert = true;
    config.listeners[0].use_subject_as_username = true;
    config.listeners[0].path = Some("/p".into());
    config.listeners[0].allowed_origins = vec!["https://a.example".into()];
    config.listeners[0].password_file = Some(PathBuf::from("p"));
    config.listeners[0].acl_file = Some(PathBuf::from("a"));
    config.listeners[0].connection_rate_per_address = Some(1);
    config.listeners[0].connection_burst_per_address = Some(1);
    config.listeners[0].client_message_rate = Some(1);
    config.listeners[0].client_byte_rate = Some(1);
    config.auth.password_file = Some(PathBuf::from("p"));
    config.auth.acl_file = Some(PathBuf::from("a"));
    config.auth.allow_anonymous = Some(true);
    config.http.allow_anonymous = Some(false);
    config.http.tokens = vec!["0123456789abcdef".into()];
    config.http.token_file = Some(PathBuf::from("t"));
    config.http.admin_user = Some("admin".into());
    config.http.admin_password_hash = Some("$argon2id$x".into());
    config.http.cert_file = Some(PathBuf::from("c"));
    config.http.key_file = Some(PathBuf::from("k"));
    let paths = key_paths(&toml::to_string(&config).unwrap());
    let section = |prefix: &str| -> BTreeSet<String> {
        paths
            .iter()
            .filter_map(|path| path.strip_prefix(prefix))
            .map(str::to_owned)
            .collect()
    };
    let owned =
        |keys: &[&str]| -> BTreeSet<String> { keys.iter().map(|key| key.to_string()).collect() };
    assert_eq!(section("limits."), owned(LIMITS_KEYS));
    assert_eq!(section("session."), owned(SESSION_KEYS));
    assert_eq!(section("mqtt."), owned(MQTT_KEYS));
    assert_eq!(section("auth."), owned(AUTH_KEYS));
    assert_eq!(section("http."), owned(HTTP_KEYS));
    assert_eq!(section("listener[0]."), owned(LISTENER_KEYS));
    let roots: BTreeSet<String> = paths
        .iter()
        .map(|path| path.split(['.', '[']).next().unwrap().to_owned())
        .collect();
    assert_eq!(roots, owned(ROOT_KEYS));
}

#[test]
fn serialized_config_reads_back_equal() {
    // Validation checks that certificate files exist.
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, "pem").unwrap();
        Some(path)
    };
    let mut config = Config {
        data_dir: PathBuf::from("/var/lib/switchboard"),
        durability: Durability::Periodic,
        sys_interval_secs: 0,
        log_level: "debug".into(),
        listeners: vec![
            ListenerConfig::tcp(address("0.0.0.0:1883")),
            ListenerConfig {
                kind: ListenerKind::Wss,
                address: address("[::]:8084"),
                name: Some("web".into()),
                max_connections: Some(500),
                allow_anonymous: Some(false),
                cert_file: file("cert.pem"),
                key_file: file("key.pem"),
                client_ca_file: file("ca.pem"),
                require_client_cert: true,
                use_subject_as_username: true,
                path: Some("/ws/mqtt".into()),
                ..ListenerConfig::default()
            },
        ],
        ..Config::default()
    };
    config.limits.max_packet_size = 4096;
    config.limits.max_queued_bytes = 4096;
    config.limits.max_retained_bytes = 8192;
    config.limits.max_inflight = 65535;
    config.session.queue_qos0_offline = true;
    config.session.max_keep_alive_secs = 600;
    config.session.topic_alias_maximum = 0;
    config.mqtt.maximum_qos = 1;
    config.mqtt.shared_subscriptions = false;
    // Public listeners need a password file (or anonymous allowed on purpose).
    config.auth.password_file = Some(PathBuf::from("/etc/switchboard/passwd"));
    config.auth.acl_file = Some(PathBuf::from("/etc/switchboard/acl"));
    config.auth.allow_anonymous = Some(false);
    config.auth.failed_login_limit = 0;
    config.auth.failed_login_max_delay_secs = 5;
    let text = toml::to_string(&config).unwrap();
    assert_eq!(parse(&text).unwrap(), config, "{text}");
}

// ---------------------------------------------------------------------------
// Reporting every problem at once
// ---------------------------------------------------------------------------

#[test]
fn three_problems_on_three_lines_are_all_reported() {
    // An out-of-range value (found by validation), an unknown key and a wrong
    // type (found while reading): all three, in line order.
    let text = "\
log_level = \"info\"

[limits]
max_inflight = 0
max_pakcet_size = 2048

[session]
queue_qos0_offline = \"yes\"
";
    let all = errors(text);
    let summary: Vec<(usize, usize, &Problem)> = all
        .iter()
        .map(|error| {
            let position = error.position.unwrap();
            (position.line, position.column, &error.problem)
        })
        .collect();
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(
        matches!(summary[0], (4, 16, Problem::OutOfRange { key, .. }) if key == "limits.max_inflight")
    );
    assert!(
        matches!(summary[1], (5, 1, Problem::UnknownKey { key, suggestion: Some("max_packet_size"), .. }) if key == "max_pakcet_size")
    );
    assert!(
        matches!(summary[2], (8, 22, Problem::WrongType { key, .. }) if key == "session.queue_qos0_offline")
    );
    let display = ConfigErrors(all).to_string();
    let lines: Vec<&str> = display.lines().collect();
    assert_eq!(
        lines,
        vec![
            "test.toml:4:16: `limits.max_inflight` = 0 is out of range: must be from 1 to 65535 (advertised as Receive Maximum, which may not be 0)",
            "test.toml:5:1: unknown key `max_pakcet_size` in [limits]; did you mean `max_packet_size`?",
            "test.toml:8:22: `session.queue_qos0_offline` must be a boolean (true or false), found a string",
        ]
    );
}

#[test]
fn problems_are_listed_file_first_in_line_order() {
    let text = "\
durability = \"fast\"
[limits]
max_topic_levels = 0
max_queued_bytes = 100
[mqtt]
maximum_qos = \"two\"
";
    let overrides = Overrides {
        max_inflight: Some(0),
        ..Overrides::default()
    };
    let all = resolve(Some((text, "f.toml")), &overrides, "f.toml")
        .unwrap_err()
        .0;
    let order: Vec<(String, Option<usize>)> = all
        .iter()
        .map(|error| {
            (
                error.origin.clone(),
                error.position.map(|position| position.line),
            )
        })
        .collect();
    assert_eq!(
        order,
        vec![
            ("f.toml".to_owned(), Some(1)),
            ("f.toml".to_owned(), Some(3)),
            ("f.toml".to_owned(), Some(4)),
            ("f.toml".to_owned(), Some(6)),
            (OVERRIDES_ORIGIN.to_owned(), None),
        ]
    );
}

#[test]
fn syntax_error_is_reported_with_its_line() {
    let error = single_error("log_level = \"info\"\n[limits\nmax_inflight = 5\n");
    assert!(matches!(error.problem, Problem::Syntax { .. }), "{error}");
    assert_eq!(line_of(&error), 2, "{error}");
}

#[test]
fn syntax_error_skips_checks_across_settings_but_not_override_checks() {
    let overrides = Overrides {
        max_packet_size: Some(1),
        max_connections: Some(0),
        ..Overrides::default()
    };
    let all = resolve(Some(("[limits", "bad.toml")), &overrides, "bad.toml")
        .unwrap_err()
        .0;
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(matches!(all[0].problem, Problem::Syntax { .. }));
    assert!(all[1..]
        .iter()
        .all(|error| error.origin == OVERRIDES_ORIGIN));
}

// ---------------------------------------------------------------------------
// Each check
// ---------------------------------------------------------------------------

#[test]
fn unknown_keys_are_errors_everywhere() {
    let text = "\
colour = 1
[limits]
max_inflights = 5
[session]
whatever = true
[mqtt]
maximum_qoss = 1
[[listener]]
address = \"127.0.0.1:1883\"
adress = \"x\"
[extra]
";
    let all = errors(text);
    let found: Vec<(usize, String, Option<&str>)> = all
        .iter()
        .map(|error| match &error.problem {
            Problem::UnknownKey {
                section,
                suggestion,
                ..
            } => (line_of(error), section.clone(), *suggestion),
            other => panic!("unexpected {other}"),
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (1, "the top level".to_owned(), None),
            (3, "[limits]".to_owned(), Some("max_inflight")),
            (5, "[session]".to_owned(), None),
            (7, "[mqtt]".to_owned(), Some("maximum_qos")),
            (10, "listener[0]".to_owned(), Some("address")),
            (11, "the top level".to_owned(), None),
        ]
    );
}

#[test]
fn subtables_of_sections_are_unknown_keys() {
    let error = single_error("[limits.extra]\nx = 1\n");
    assert!(
        matches!(&error.problem, Problem::UnknownKey { key, section, .. } if key == "extra" && section == "[limits]")
    );
    assert_eq!(line_of(&error), 1);
}

#[test]
fn dotted_keys_work_like_sections() {
    let config = parse("limits.max_inflight = 7\nmqtt.maximum_qos = 1\n").unwrap();
    assert_eq!(config.limits.max_inflight, 7);
    assert_eq!(config.mqtt.maximum_qos, 1);
}

#[test]
fn wrong_types_name_expected_and_found() {
    let cases = [
        (
            "sys_interval_secs = \"10\"",
            "sys_interval_secs",
            "an integer",
            "a string",
        ),
        ("data_dir = 5", "data_dir", "a string", "an integer"),
        ("log_level = true", "log_level", "a string", "a boolean"),
        ("durability = 1", "durability", "a string", "an integer"),
        ("limits = 5", "limits", "a table", "an integer"),
        (
            "[limits]\nmax_packet_size = 1.5",
            "limits.max_packet_size",
            "an integer",
            "a float",
        ),
        (
            "[mqtt]\nretain_available = 1",
            "mqtt.retain_available",
            "a boolean (true or false)",
            "an integer",
        ),
        (
            "[session]\nmax_keep_alive_secs = 1979-05-27",
            "session.max_keep_alive_secs",
            "an integer",
            "a date-time",
        ),
        (
            "listener = 5",
            "listener",
            "an array of tables ([[listener]])",
            "an integer",
        ),
        (
            "[[listener]]\naddress = 1883",
            "listener[0].address",
            "a string",
            "an integer",
        ),
    ];
    for (text, key_wanted, expected_wanted, found_wanted) in cases {
        let error = single_error(text);
        match &error.problem {
            Problem::WrongType {
                key,
                expected,
                found,
            } => {
                assert_eq!(
                    (key.as_str(), *expected, *found),
                    (key_wanted, expected_wanted, found_wanted),
                    "{text}"
                );
            }
            other => panic!("{text}: unexpected {other}"),
        }
        assert_eq!(line_of(&error), text.lines().count(), "{text}");
    }
}

#[test]
fn integers_must_fit_their_field() {
    for (text, key_wanted) in [
        ("[limits]\nmax_inflight = 65536", "limits.max_inflight"),
        ("[limits]\nmax_connections = -1", "limits.max_connections"),
        ("[mqtt]\nmaximum_qos = 256", "mqtt.maximum_qos"),
        (
            "[session]\nmax_session_expiry_secs = 4294967296",
            "session.max_session_expiry_secs",
        ),
        (
            "[[listener]]\naddress = \"127.0.0.1:1\"\nmax_connections = -5",
            "listener[0].max_connections",
        ),
    ] {
        let error = single_error(text);
        assert!(
            matches!(&error.problem, Problem::OutOfRange { key, .. } if key == key_wanted),
            "{text}: {error}"
        );
        assert_eq!(line_of(&error), text.lines().count(), "{text}");
    }
    // The full u32 range is accepted for session expiry.
    let config = parse("[session]\nmax_session_expiry_secs = 4294967295").unwrap();
    assert_eq!(config.session.max_session_expiry_secs, u32::MAX);
}

/// Sets `key` in `[section]` to `value` and returns the out-of-range error,
/// or `None` when the value is accepted.
fn range_error(section: &str, key: &str, value: u64) -> Option<ConfigError> {
    let text = if section.is_empty() {
        format!("{key} = {value}\n")
    } else {
        format!("[{section}]\n{key} = {value}\n")
    };
    match parse(&text) {
        Ok(_) => None,
        Err(errors) => {
            assert_eq!(errors.len(), 1, "{errors}");
            let error = errors.0.into_iter().next().unwrap();
            let path = if section.is_empty() {
                key.to_owned()
            } else {
                format!("{section}.{key}")
            };
            assert!(
                matches!(&error.problem, Problem::OutOfRange { key, .. } if *key == path),
                "{error}"
            );
            assert_eq!(line_of(&error), text.lines().count());
            Some(error)
        }
    }
}

#[test]
fn ranges_are_enforced_at_both_ends() {
    // (section, key, lowest accepted, highest accepted or None for no bound
    // below the type's maximum)
    let cases: &[(&str, &str, u64, Option<u64>)] = &[
        ("", "sys_interval_secs", 0, Some(86_400)),
        ("limits", "max_connections", 1, None),
        ("limits", "max_packet_size", 128, Some(268_435_460)),
        ("limits", "connect_timeout_secs", 1, Some(3600)),
        ("limits", "max_inflight", 1, Some(65535)),
        ("limits", "max_queued_messages", 1, None),
        ("limits", "max_topic_length", 1, Some(65535)),
        ("limits", "max_topic_levels", 1, None),
        ("limits", "max_subscriptions_per_client", 1, None),
        ("limits", "max_retained_messages", 1, None),
        ("limits", "max_client_id_length", 23, Some(65535)),
        ("limits", "max_retained_per_subscribe", 1, None),
        ("mqtt", "maximum_qos", 0, Some(2)),
        ("auth", "failed_login_limit", 0, Some(u64::from(u32::MAX))),
        ("auth", "failed_login_window_secs", 1, None),
        // Its upper bound is checked in `failed_login_settings` (the default
        // maximum delay is below it).
        ("auth", "failed_login_delay_secs", 1, None),
        ("auth", "failed_login_max_delay_secs", 1, Some(3600)),
        ("auth", "failed_login_max_addresses", 1, None),
    ];
    for &(section, key, lowest, highest) in cases {
        if lowest > 0 {
            assert!(
                range_error(section, key, lowest - 1).is_some(),
                "{key} below"
            );
        }
        if key == "max_packet_size" {
            // Both byte caps must grow with the packet size; checked
            // separately below.
            let text = format!(
                "[limits]\nmax_packet_size = {}\nmax_queued_bytes = {}\nmax_retained_bytes = {}\n",
                268_435_460, 268_435_460, 268_435_460
            );
            parse(&text).unwrap();
            let error =
                single_error(&text.replace("= 268435460\nmax_queued", "= 268435461\nmax_queued"));
            assert!(
                matches!(&error.problem, Problem::OutOfRange { key, .. } if key == "limits.max_packet_size")
            );
            assert!(range_error(section, key, lowest).is_none());
            continue;
        }
        assert!(range_error(section, key, lowest).is_none(), "{key} lowest");
        if let Some(highest) = highest {
            assert!(
                range_error(section, key, highest).is_none(),
                "{key} highest"
            );
            assert!(
                range_error(section, key, highest + 1).is_some(),
                "{key} above"
            );
        }
    }
}

#[test]
fn client_id_length_below_23_cites_the_spec() {
    // [MQTT-3.1.3-5]: the server MUST allow client identifiers of 1 to 23 bytes.
    let error = range_error("limits", "max_client_id_length", 22).unwrap();
    assert!(error.to_string().contains("MQTT-3.1.3-5"), "{error}");
}

#[test]
fn byte_caps_must_hold_one_maximum_size_packet() {
    let text = "\
[limits]
max_packet_size = 4096
max_queued_bytes = 4095
max_retained_bytes = 100
";
    let all = errors(text);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(
        matches!(&all[0].problem, Problem::Conflict { message } if message.starts_with("`limits.max_queued_bytes` = 4095"))
    );
    assert_eq!(line_of(&all[0]), 3);
    assert!(
        matches!(&all[1].problem, Problem::Conflict { message } if message.starts_with("`limits.max_retained_bytes` = 100"))
    );
    assert_eq!(line_of(&all[1]), 4);
    // Equal is enough.
    parse("[limits]\nmax_packet_size = 4096\nmax_queued_bytes = 4096\nmax_retained_bytes = 4096\n")
        .unwrap();
    // Only the packet size in the file: point at it.
    let all = errors("[limits]\nmax_packet_size = 268435460\n");
    assert_eq!(all.len(), 2, "{all:#?}");
    for error in &all {
        assert_eq!(line_of(error), 2);
        assert!(matches!(&error.problem, Problem::Conflict { .. }));
    }
}

#[test]
fn a_refused_value_causes_no_follow_on_clash() {
    // max_packet_size is refused, so it keeps its default; comparing the
    // queue cap with that default would be noise.
    let error = single_error("[limits]\nmax_packet_size = \"big\"\nmax_queued_bytes = 1000\n");
    assert!(matches!(error.problem, Problem::WrongType { .. }));
}

#[test]
fn rate_limits_and_the_queue_budget_parse_and_are_checked() {
    let config = parse(
        "[limits]\nconnection_rate_per_address = 5\nconnection_burst_per_address = 10\n\
         client_message_rate = 100\nclient_byte_rate = 1_000_000\n\
         max_queued_bytes_total = 0\n",
    )
    .unwrap();
    assert_eq!(config.limits.connection_rate_per_address, 5);
    assert_eq!(config.limits.connection_burst_per_address, 10);
    assert_eq!(config.limits.client_message_rate, 100);
    assert_eq!(config.limits.client_byte_rate, 1_000_000);
    assert_eq!(config.limits.max_queued_bytes_total, 0, "0 = unlimited");
    // A burst of 0 would refuse every connection.
    let error = single_error("[limits]\nconnection_burst_per_address = 0\n");
    assert_eq!(line_of(&error), 2);
    assert!(
        error
            .to_string()
            .contains("connection_rate_per_address = 0"),
        "{error}"
    );
    // The total must hold one full session queue; equal is enough.
    let error = single_error(
        "[limits]\nmax_queued_bytes = 2_000_000\nmax_queued_bytes_total = 1_999_999\n",
    );
    assert!(
        matches!(&error.problem, Problem::Conflict { message } if message.starts_with("`limits.max_queued_bytes_total` = 1999999")),
        "{error}"
    );
    assert_eq!(line_of(&error), 3);
    parse("[limits]\nmax_queued_bytes = 2_000_000\nmax_queued_bytes_total = 2_000_000\n").unwrap();
}

#[test]
fn choices_are_checked() {
    let error = single_error("[[listener]]\nkind = \"quic\"\naddress = \"127.0.0.1:1883\"\n");
    assert_eq!(line_of(&error), 2);
    assert!(
        error
            .to_string()
            .contains(r#"expected one of "tcp", "tls", "ws", "wss""#),
        "{error}"
    );
    for (name, durability) in [
        ("sync", Durability::Sync),
        ("periodic", Durability::Periodic),
        ("memory", Durability::Memory),
    ] {
        assert_eq!(
            parse(&format!("durability = \"{name}\""))
                .unwrap()
                .durability,
            durability
        );
    }
    assert!(single_error("durability = \"Sync\"")
        .to_string()
        .contains("not valid"));
}

#[test]
fn every_listener_kind_parses() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, "pem").unwrap();
    std::fs::write(&key, "pem").unwrap();
    let files = format!(
        "cert_file = {:?}\nkey_file = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let config = parse(&format!(
        "\
[[listener]]
kind = \"tls\"
address = \"0.0.0.0:8883\"
{files}
[[listener]]
kind = \"ws\"
address = \"0.0.0.0:8083\"
[[listener]]
kind = \"wss\"
address = \"0.0.0.0:8084\"
{files}
[auth]
allow_anonymous = true
",
    ))
    .unwrap();
    let kinds: Vec<ListenerKind> = config
        .listeners
        .iter()
        .map(|listener| listener.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![ListenerKind::Tls, ListenerKind::Ws, ListenerKind::Wss]
    );
}

#[test]
fn listener_kind_defaults_to_tcp_and_optional_fields_parse() {
    let config = parse(
        "[[listener]]\naddress = \"10.0.0.1:1883\"\nname = \"inside\"\nmax_connections = 50\n\
         [auth]\npassword_file = \"passwd\"\n",
    )
    .unwrap();
    assert_eq!(
        config.listeners,
        vec![ListenerConfig {
            kind: ListenerKind::Tcp,
            address: address("10.0.0.1:1883"),
            name: Some("inside".into()),
            max_connections: Some(50),
            ..ListenerConfig::default()
        }]
    );
}

#[test]
fn ipv6_listener() {
    let config = parse("[[listener]]\naddress = \"[::1]:1883\"\n").unwrap();
    assert_eq!(config.listeners[0].address, address("[::1]:1883"));
    assert!(config.listeners[0].address.is_ipv6());
    let config =
        parse("auth.allow_anonymous = true\n[[listener]]\naddress = \"[::]:1883\"\n[[listener]]\naddress = \"0.0.0.0:1883\"\n")
            .unwrap();
    assert_eq!(config.listeners.len(), 2);
    // Without brackets the port cannot be told from the address.
    let error = single_error("[[listener]]\naddress = \"::1:1883\"\n");
    assert!(
        matches!(&error.problem, Problem::InvalidValue { key, .. } if key == "listener[0].address")
    );
}

#[test]
fn listener_addresses_must_be_ip_and_port() {
    for bad in ["localhost:1883", "127.0.0.1", "127.0.0.1:99999", ""] {
        let error = single_error(&format!("[[listener]]\naddress = \"{bad}\"\n"));
        assert_eq!(line_of(&error), 2, "{bad}");
        assert!(error.to_string().contains("IP address and port"), "{error}");
    }
}

#[test]
fn listener_needs_an_address() {
    let error =
        single_error("[[listener]]\nname = \"x\"\n\n[[listener]]\naddress = \"127.0.0.1:1\"\n");
    assert_eq!(
        error.problem,
        Problem::MissingKey {
            key: "listener[0].address".into()
        }
    );
    assert_eq!(line_of(&error), 1);
}

#[test]
fn an_empty_listener_list_is_refused() {
    let error = single_error("listener = []\n");
    assert!(matches!(&error.problem, Problem::InvalidValue { key, .. } if key == "listener"));
    assert_eq!(line_of(&error), 1);
}

#[test]
fn listener_clashes_are_refused() {
    let text = "\
[[listener]]
address = \"0.0.0.0:1883\"
name = \"a\"
[[listener]]
address = \"127.0.0.1:1883\"
[[listener]]
address = \"127.0.0.1:1884\"
name = \"a\"
[[listener]]
address = \"127.0.0.1:0\"
name = \" \"
[[listener]]
address = \"127.0.0.1:0\"
max_connections = 0
[auth]
allow_anonymous = true
";
    let all = errors(text);
    let found: Vec<(usize, String)> = all
        .iter()
        .map(|error| (line_of(error), error.problem.to_string()))
        .collect();
    assert_eq!(all.len(), 4, "{found:#?}");
    assert_eq!(found[0].0, 5);
    assert!(
        found[0].1.contains("clashes with `listener[0].address`"),
        "{}",
        found[0].1
    );
    assert_eq!(found[1].0, 8);
    assert!(
        found[1].1.contains("already the name of `listener[0]`"),
        "{}",
        found[1].1
    );
    assert_eq!(found[2].0, 11);
    assert!(found[2].1.contains("must not be blank"), "{}", found[2].1);
    assert_eq!(found[3].0, 14);
    assert!(
        found[3].1.starts_with("`listener[4].max_connections` = 0"),
        "{}",
        found[3].1
    );
}

#[test]
fn refused_listener_does_not_also_report_an_empty_list() {
    let error = single_error("[[listener]]\naddress = \"nowhere\"\n");
    assert!(matches!(error.problem, Problem::InvalidValue { .. }));
}

#[test]
fn log_level_and_data_dir_are_checked() {
    let error = single_error("log_level = \"verbose\"");
    assert!(matches!(&error.problem, Problem::InvalidValue { key, .. } if key == "log_level"));
    parse("log_level = \"warn,switchboard_server=trace\"").unwrap();
    let error = single_error("data_dir = \"\"");
    assert!(matches!(&error.problem, Problem::InvalidValue { key, .. } if key == "data_dir"));
}

#[test]
fn validate_checks_configs_built_in_code() {
    let mut config = Config::default();
    config.limits.max_inflight = 0;
    config.listeners.push(config.listeners[0].clone());
    let errors = config.validate().unwrap_err();
    assert_eq!(errors.len(), 2, "{errors}");
    assert!(errors
        .iter()
        .all(|error| error.origin == "configuration" && error.position.is_none()));
}

// ---------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------

const LAYERED_FILE: &str = "\
data_dir = \"/from/file\"
log_level = \"debug\"
[limits]
max_packet_size = 2048
max_inflight = 64
";

#[test]
fn overrides_win_over_the_file_which_wins_over_defaults() {
    let overrides = Overrides {
        data_dir: Some(PathBuf::from("/from/flag")),
        max_packet_size: Some(4096),
        durability: Some(Durability::Memory),
        ..Overrides::default()
    };
    let config = resolve(Some((LAYERED_FILE, "file.toml")), &overrides, "file.toml").unwrap();
    // Flag over file.
    assert_eq!(config.data_dir, PathBuf::from("/from/flag"));
    assert_eq!(config.limits.max_packet_size, 4096);
    // File over default, where no flag was given.
    assert_eq!(config.log_level, "debug");
    assert_eq!(config.limits.max_inflight, 64);
    // Flag over default.
    assert_eq!(config.durability, Durability::Memory);
    // Default where neither says anything.
    assert_eq!(
        config.limits.connect_timeout_secs,
        DEFAULT_CONNECT_TIMEOUT_SECS
    );
}

#[test]
fn every_override_field_applies() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, "pem").unwrap();
    std::fs::write(&key, "pem").unwrap();
    let overrides = Overrides {
        listen: vec![address("127.0.0.1:2883")],
        data_dir: Some(PathBuf::from("d")),
        log_level: Some("trace".into()),
        durability: Some(Durability::Periodic),
        sys_interval_secs: Some(0),
        max_connections: Some(5),
        max_packet_size: Some(512),
        connect_timeout_secs: Some(3),
        park_idle_after_ms: Some(0),
        max_inflight: Some(1),
        max_session_expiry_secs: Some(0),
        password_file: Some(PathBuf::from("passwd")),
        acl_file: Some(PathBuf::from("acl")),
        allow_anonymous: Some(false),
        http_address: Some(address("127.0.0.1:9080")),
        http_enabled: Some(true),
        http_cert_file: Some(cert.clone()),
        http_key_file: Some(key.clone()),
        listen_tls: vec![address("127.0.0.1:2884")],
        listen_ws: vec![address("127.0.0.1:2885")],
        listen_wss: vec![address("127.0.0.1:2886")],
        cert_file: Some(cert.clone()),
        key_file: Some(key.clone()),
    };
    let config = Config::load(None, &overrides).unwrap();
    let tls = |kind, port| ListenerConfig {
        kind,
        cert_file: Some(cert.clone()),
        key_file: Some(key.clone()),
        ..ListenerConfig::tcp(SocketAddr::from(([127, 0, 0, 1], port)))
    };
    let mut expected = Config {
        listeners: vec![
            ListenerConfig::tcp(address("127.0.0.1:2883")),
            tls(ListenerKind::Tls, 2884),
            ListenerConfig {
                kind: ListenerKind::Ws,
                ..ListenerConfig::tcp(address("127.0.0.1:2885"))
            },
            tls(ListenerKind::Wss, 2886),
        ],
        data_dir: PathBuf::from("d"),
        log_level: "trace".into(),
        durability: Durability::Periodic,
        sys_interval_secs: 0,
        ..Config::default()
    };
    expected.limits.max_connections = 5;
    expected.limits.max_packet_size = 512;
    expected.limits.connect_timeout_secs = 3;
    expected.limits.park_idle_after_ms = 0;
    expected.limits.max_inflight = 1;
    expected.session.max_session_expiry_secs = 0;
    expected.auth.password_file = Some(PathBuf::from("passwd"));
    expected.auth.acl_file = Some(PathBuf::from("acl"));
    expected.auth.allow_anonymous = Some(false);
    expected.http.address = address("127.0.0.1:9080");
    expected.http.cert_file = Some(cert.clone());
    expected.http.key_file = Some(key.clone());
    assert_eq!(config, expected);
}

#[test]
fn bad_overrides_are_reported_as_command_line_or_environment() {
    let overrides = Overrides {
        max_inflight: Some(0),
        log_level: Some("loud".into()),
        ..Overrides::default()
    };
    let all = resolve(Some((LAYERED_FILE, "file.toml")), &overrides, "file.toml")
        .unwrap_err()
        .0;
    assert_eq!(all.len(), 2, "{all:#?}");
    for error in &all {
        assert_eq!(error.origin, OVERRIDES_ORIGIN);
        assert_eq!(error.position, None);
    }
    assert!(all[1]
        .to_string()
        .starts_with("command line or environment: `limits.max_inflight` = 0"));
}

#[test]
fn override_fixes_a_bad_file_value_but_the_file_error_stays() {
    // The file's mistake is still reported: the file should be fixed.
    let overrides = Overrides {
        max_inflight: Some(8),
        ..Overrides::default()
    };
    let error = resolve(
        Some(("[limits]\nmax_inflight = \"x\"\n", "f.toml")),
        &overrides,
        "f.toml",
    )
    .unwrap_err()
    .0;
    assert_eq!(error.len(), 1);
    assert_eq!(error[0].origin, "f.toml");
}

#[test]
fn clash_caused_by_an_override_points_at_the_override() {
    let overrides = Overrides {
        max_packet_size: Some(MQTT_MAX_PACKET_SIZE),
        ..Overrides::default()
    };
    let file = "[limits]\nmax_retained_bytes = 300_000_000\n";
    let all = resolve(Some((file, "f.toml")), &overrides, "f.toml")
        .unwrap_err()
        .0;
    assert_eq!(all.len(), 1, "{all:#?}");
    // The queue cap is at its default: blame the packet size, set by a flag.
    assert_eq!(all[0].origin, OVERRIDES_ORIGIN);
    assert!(all[0].to_string().contains("limits.max_queued_bytes"));
}

#[test]
fn listen_replaces_tcp_listeners_and_keeps_others() {
    let file = "\
[[listener]]
address = \"0.0.0.0:1883\"
[[listener]]
kind = \"ws\"
address = \"0.0.0.0:8883\"
name = \"web\"
[[listener]]
address = \"10.0.0.1:1883\"
[auth]
password_file = \"passwd\"
";
    let overrides = Overrides {
        listen: vec![address("[::1]:1884"), address("127.0.0.1:1884")],
        ..Overrides::default()
    };
    let config = resolve(Some((file, "f.toml")), &overrides, "f.toml").unwrap();
    let listeners: Vec<(ListenerKind, SocketAddr)> = config
        .listeners
        .iter()
        .map(|listener| (listener.kind, listener.address))
        .collect();
    assert_eq!(
        listeners,
        vec![
            (ListenerKind::Ws, address("0.0.0.0:8883")),
            (ListenerKind::Tcp, address("[::1]:1884")),
            (ListenerKind::Tcp, address("127.0.0.1:1884")),
        ]
    );
    // Without a file, --listen replaces the default listener.
    let config = Config::load(None, &overrides).unwrap();
    assert_eq!(config.listeners.len(), 2);
    assert!(!config.listeners.contains(&ListenerConfig::default()));
}

#[test]
fn listen_clashing_with_a_kept_listener_is_reported() {
    let file = "[[listener]]\nkind = \"ws\"\naddress = \"0.0.0.0:8083\"\n";
    let overrides = Overrides {
        listen: vec![address("127.0.0.1:8083")],
        allow_anonymous: Some(true),
        ..Overrides::default()
    };
    let all = resolve(Some((file, "f.toml")), &overrides, "f.toml")
        .unwrap_err()
        .0;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].origin, OVERRIDES_ORIGIN);
    assert!(
        all[0]
            .to_string()
            .contains("clashes with `listener[0].address`"),
        "{}",
        all[0]
    );
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

#[test]
fn missing_file_is_an_error_naming_the_path() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("absent.toml");
    let errors = Config::load(Some(&path), &Overrides::default()).unwrap_err();
    assert_eq!(errors.len(), 1);
    let error = &errors.0[0];
    assert_eq!(error.origin, path.display().to_string());
    assert!(matches!(error.problem, Problem::Read { .. }));
    assert!(errors.to_string().starts_with(&path.display().to_string()));
}

#[test]
fn file_is_read_and_named_in_messages() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("switchboard.toml");
    std::fs::write(&path, "[limits]\nmax_inflight = 16\n").unwrap();
    let config = Config::load(Some(&path), &Overrides::default()).unwrap();
    assert_eq!(config.limits.max_inflight, 16);

    std::fs::write(&path, "[limits]\n\nmax_inflight = 0\n").unwrap();
    let errors = Config::load(Some(&path), &Overrides::default()).unwrap_err();
    assert_eq!(
        errors.to_string(),
        format!(
            "{}:3:16: `limits.max_inflight` = 0 is out of range: must be from 1 to 65535 \
             (advertised as Receive Maximum, which may not be 0)",
            path.display()
        )
    );
}

// ---------------------------------------------------------------------------
// [auth]
// ---------------------------------------------------------------------------

#[test]
fn auth_section_is_read() {
    let config = parse(
        "\
[auth]
password_file = \"/etc/switchboard/passwd\"
acl_file = \"acl\"
allow_anonymous = false
failed_login_limit = 3
failed_login_window_secs = 120
failed_login_delay_secs = 2
failed_login_max_delay_secs = 64
failed_login_max_addresses = 50
",
    )
    .unwrap();
    let auth = &config.auth;
    assert_eq!(
        auth.password_file,
        Some(PathBuf::from("/etc/switchboard/passwd"))
    );
    assert_eq!(auth.acl_file, Some(PathBuf::from("acl")));
    assert_eq!(auth.allow_anonymous, Some(false));
    assert_eq!(auth.failed_login_limit, 3);
    assert_eq!(auth.failed_login_window_secs, 120);
    assert_eq!(auth.failed_login_delay_secs, 2);
    assert_eq!(auth.failed_login_max_delay_secs, 64);
    assert_eq!(auth.failed_login_max_addresses, 50);
}

#[test]
fn auth_wrong_types_and_unknown_keys() {
    let all =
        errors("[auth]\nallow_anonymous = \"yes\"\npassword_file = 5\npasword_file = \"x\"\n");
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(
        matches!(&all[0].problem, Problem::WrongType { key, .. } if key == "auth.allow_anonymous")
    );
    assert!(
        matches!(&all[1].problem, Problem::WrongType { key, .. } if key == "auth.password_file")
    );
    assert!(matches!(
        &all[2].problem,
        Problem::UnknownKey {
            suggestion: Some("password_file"),
            ..
        }
    ));
    let error = single_error("[auth]\nacl_file = \"\"\n");
    assert!(matches!(&error.problem, Problem::InvalidValue { key, .. } if key == "auth.acl_file"));
}

#[test]
fn failed_login_settings() {
    let error = single_error(
        "[auth]\nfailed_login_delay_secs = 3601\nfailed_login_max_delay_secs = 3600\n",
    );
    assert!(
        matches!(&error.problem, Problem::OutOfRange { key, .. } if key == "auth.failed_login_delay_secs")
    );
    parse("[auth]\nfailed_login_delay_secs = 3600\nfailed_login_max_delay_secs = 3600\n").unwrap();
    // The longest delay cannot be shorter than the first; point at the
    // maximum, where it was written.
    let error =
        single_error("[auth]\nfailed_login_max_delay_secs = 2\nfailed_login_delay_secs = 5\n");
    assert!(
        matches!(&error.problem, Problem::Conflict { message } if message.contains("cannot be shorter"))
    );
    assert_eq!(line_of(&error), 2);
}

/// The one problem of a config whose listeners are `addresses`, with `auth`
/// lines added to the file.
fn anonymous_errors(addresses: &[&str], auth: &str) -> Vec<ConfigError> {
    let mut text = String::new();
    if !auth.is_empty() {
        text.push_str(&format!("[auth]\n{auth}\n"));
    }
    for address in addresses {
        text.push_str(&format!("[[listener]]\naddress = \"{address}\"\n"));
    }
    match parse(&text) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0,
    }
}

#[test]
fn a_public_listener_without_a_password_file_refuses_to_start() {
    // Same safe default as Mosquitto 2: no credentials, no network.
    let all = anonymous_errors(&["127.0.0.1:1883", "0.0.0.0:1884"], "");
    assert_eq!(all.len(), 1, "{all:#?}");
    let message = all[0].to_string();
    assert!(message.starts_with("test.toml:4:"), "{message}");
    assert!(
        message.contains("`listener[1].address` = \"0.0.0.0:1884\""),
        "{message}"
    );
    assert!(message.contains("auth.password_file"), "{message}");
    assert!(message.contains("auth.allow_anonymous = true"), "{message}");
    // Every public listener is named; loopback ones in any form are fine.
    let all = anonymous_errors(
        &["10.1.2.3:1883", "[::]:1883", "[::1]:1884", "127.0.0.2:1885"],
        "",
    );
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(all[1].to_string().contains("listener[1]"), "{}", all[1]);
    // allow_anonymous = false does not help: nobody could connect at all.
    assert_eq!(
        anonymous_errors(&["0.0.0.0:1883"], "allow_anonymous = false").len(),
        1
    );
    assert!(anonymous_errors(&["0.0.0.0:1883"], "allow_anonymous = true").is_empty());
    assert!(anonymous_errors(&["0.0.0.0:1883"], "password_file = \"p\"").is_empty());
    assert!(anonymous_errors(&["127.0.0.1:1883", "[::1]:1883"], "").is_empty());
}

#[test]
fn a_listener_allow_anonymous_is_read_and_opens_only_its_listener() {
    let config = parse(
        "[[listener]]\naddress = \"0.0.0.0:1883\"\nallow_anonymous = true\n\
         [[listener]]\naddress = \"127.0.0.1:1884\"\nallow_anonymous = false\n\
         [[listener]]\naddress = \"127.0.0.1:1885\"\n",
    )
    .unwrap();
    let settings: Vec<Option<bool>> = config
        .listeners
        .iter()
        .map(|listener| listener.allow_anonymous)
        .collect();
    assert_eq!(settings, [Some(true), Some(false), None]);
    // A public listener with no password file and no override is still refused.
    let all = errors(
        "[[listener]]\naddress = \"0.0.0.0:1883\"\nallow_anonymous = true\n\
         [[listener]]\naddress = \"0.0.0.0:1884\"\n",
    );
    assert_eq!(all.len(), 1, "{all:#?}");
    assert!(all[0].to_string().contains("listener[1]"), "{}", all[0]);
    // `false` on a public listener does not help: nobody could connect.
    assert_eq!(
        errors("[[listener]]\naddress = \"0.0.0.0:1883\"\nallow_anonymous = false\n").len(),
        1
    );
    let wrong = errors("[[listener]]\naddress = \"127.0.0.1:1883\"\nallow_anonymous = 1\n");
    assert!(
        matches!(&wrong[0].problem, Problem::WrongType { key, .. } if key == "listener[0].allow_anonymous"),
        "{wrong:#?}"
    );
}

#[test]
fn the_anonymous_rule_names_the_listener_and_follows_the_layers() {
    let all = anonymous_errors(&[], "");
    assert!(all.is_empty());
    let named = "[[listener]]\naddress = \"0.0.0.0:1883\"\nname = \"public\"\n";
    let error = single_error(named);
    assert!(
        error
            .to_string()
            .contains("listener \"public\" (`listener[0].address`"),
        "{error}"
    );
    // --listen 0.0.0.0:1883 without a password file: blamed on the flag.
    let overrides = Overrides {
        listen: vec![address("0.0.0.0:1883")],
        ..Overrides::default()
    };
    let errors = Config::load(None, &overrides).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    assert_eq!(errors.0[0].origin, OVERRIDES_ORIGIN);
    assert!(errors.to_string().contains("listen[0].address"), "{errors}");
    // --allow-anonymous or --password-file fixes it.
    for fix in [
        Overrides {
            allow_anonymous: Some(true),
            ..overrides.clone()
        },
        Overrides {
            password_file: Some(PathBuf::from("passwd")),
            ..overrides
        },
    ] {
        Config::load(None, &fix).unwrap();
    }
    // A config built in code is judged the same way.
    let mut config = Config::default();
    config.listeners[0].address = address("192.0.2.1:1883");
    assert_eq!(config.validate().unwrap_err().len(), 1);
    config.auth.allow_anonymous = Some(true);
    config.validate().unwrap();
}

// ---------------------------------------------------------------------------
// [http]
// ---------------------------------------------------------------------------

#[test]
fn http_defaults_to_loopback_8080() {
    let config = Config::default();
    assert!(config.http.enabled);
    assert_eq!(config.http.address, address("127.0.0.1:8080"));
    assert_eq!(config.http.allow_anonymous, None);
    assert!(config.http.tokens.is_empty());
    assert!(!config.http.has_credentials());
}

#[test]
fn http_section_is_read() {
    let config = parse(
        "[http]\n\
         address = \"0.0.0.0:9090\"\n\
         allow_anonymous = false\n\
         tokens = [\"0123456789abcdef\", \"fedcba9876543210\"]\n\
         token_file = \"tokens\"\n\
         admin_user = \"admin\"\n\
         admin_password_hash = \"$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA\"\n",
    )
    .unwrap();
    assert_eq!(config.http.address, address("0.0.0.0:9090"));
    assert_eq!(config.http.allow_anonymous, Some(false));
    assert_eq!(config.http.tokens.len(), 2);
    assert_eq!(config.http.token_file, Some(PathBuf::from("tokens")));
    assert_eq!(config.http.admin_user.as_deref(), Some("admin"));
    assert!(config.http.has_credentials());
    let off = parse("[http]\nenabled = false\naddress = \"0.0.0.0:80\"\n").unwrap();
    assert!(!off.http.enabled);
}

#[test]
fn a_public_http_listener_without_credentials_is_refused() {
    let error = single_error("[http]\naddress = \"0.0.0.0:8080\"\n");
    assert_eq!(line_of(&error), 2, "{error}");
    let text = error.to_string();
    assert!(text.contains("not a loopback address"), "{text}");
    assert!(text.contains("http.tokens"), "{text}");
    // Anonymous access is never allowed off loopback, credentials or not.
    let error = single_error(
        "[http]\naddress = \"0.0.0.0:8080\"\nallow_anonymous = true\ntokens = [\"0123456789abcdef\"]\n",
    );
    assert!(
        error.to_string().contains("only allowed on loopback"),
        "{error}"
    );
    // Nobody could get in.
    let error = single_error("[http]\nallow_anonymous = false\n");
    assert!(error.to_string().contains("nobody could use it"), "{error}");
    // Turned off, the address does not matter.
    parse("[http]\nenabled = false\naddress = \"0.0.0.0:8080\"\n").unwrap();
}

#[test]
fn http_flags_override_the_file() {
    let overrides = Overrides {
        http_address: Some(address("0.0.0.0:8081")),
        ..Overrides::default()
    };
    let errors = Config::load(None, &overrides).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    assert_eq!(errors.0[0].origin, OVERRIDES_ORIGIN);
    let overrides = Overrides {
        http_address: Some(address("127.0.0.1:8081")),
        ..Overrides::default()
    };
    let config = Config::load(None, &overrides).unwrap();
    assert_eq!(config.http.address, address("127.0.0.1:8081"));
    let overrides = Overrides {
        http_enabled: Some(false),
        ..Overrides::default()
    };
    assert!(!Config::load(None, &overrides).unwrap().http.enabled);
}

#[test]
fn http_credentials_are_checked_without_printing_them() {
    let all = errors(
        "[http]\n\
         tokens = [\"short-secret\"]\n\
         admin_user = \"admin\"\n",
    );
    assert_eq!(all.len(), 2, "{all:#?}");
    let text = ConfigErrors(all).to_string();
    assert!(!text.contains("short-secret"), "{text}");
    assert!(text.contains("(token 1)"), "{text}");
    assert!(text.contains("needs its password"), "{text}");
    let error = single_error(
        "[http]\nadmin_user = \"admin\"\nadmin_password_hash = \"plain-text-password\"\n",
    );
    assert!(
        !error.to_string().contains("plain-text-password"),
        "{error}"
    );
    let error = single_error("[http]\ntokens = \"0123456789abcdef\"\n");
    assert!(
        matches!(error.problem, Problem::WrongType { .. }),
        "{error}"
    );
    let error = single_error("[http]\ntokens = [1]\n");
    assert!(
        matches!(error.problem, Problem::WrongType { .. }),
        "{error}"
    );
    let error = single_error("[http]\nadress = \"127.0.0.1:1\"\n");
    assert!(error.to_string().contains("did you mean"), "{error}");
}

#[test]
fn http_and_mqtt_cannot_share_an_address() {
    let error = single_error("[http]\naddress = \"127.0.0.1:1883\"\n");
    assert!(error.to_string().contains("clashes"), "{error}");
}

#[test]
fn https_needs_both_files_and_they_must_be_readable() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, "pem").unwrap();
    let text = format!("[http]\ncert_file = {:?}\n", cert.display().to_string());
    let error = single_error(&text);
    assert!(error.to_string().contains("go together"), "{error}");
    let missing = dir.path().join("missing.pem");
    let text = format!(
        "[http]\ncert_file = {:?}\nkey_file = {:?}\n",
        cert.display().to_string(),
        missing.display().to_string()
    );
    let error = single_error(&text);
    assert!(error.to_string().contains("http.key_file"), "{error}");
    let overrides = Overrides {
        http_cert_file: Some(cert.clone()),
        http_key_file: Some(cert.clone()),
        ..Overrides::default()
    };
    let config = Config::load(None, &overrides).unwrap();
    assert!(config.http.uses_tls());
    assert_eq!(config.http.cert_file, Some(cert));
}

#[test]
fn an_admin_user_without_a_hash_takes_its_password_from_the_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("passwd");
    std::fs::write(&passwords, "").unwrap();
    let text = format!(
        "[auth]\npassword_file = {:?}\n[http]\naddress = \"0.0.0.0:8080\"\nadmin_user = \"alice\"\n",
        passwords.display().to_string()
    );
    // Counts as a credential: a public console may start with it.
    let config = parse(&text).unwrap();
    assert_eq!(config.http.admin_user.as_deref(), Some("alice"));
    assert_eq!(config.http.admin_password_hash, None);
    // Without a password file the user has no password at all.
    let error = single_error("[http]\nadmin_user = \"alice\"\n");
    assert!(error.to_string().contains("needs its password"), "{error}");
    let error = single_error("[http]\nadmin_password_hash = \"$argon2id$x\"\n");
    assert!(error.to_string().contains("needs its password"), "{error}");
}
