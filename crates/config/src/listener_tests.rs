//! `[[listener]]` transport settings (TLS and WebSocket) and the flags that
//! make such listeners.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::*;

fn address(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml_str(text, "test.toml")
}

fn errors(text: &str) -> Vec<ConfigError> {
    parse(text).unwrap_err().0
}

/// A directory with `cert.pem`, `key.pem` and `ca.pem` (validation only
/// checks that they can be opened; the server parses them).
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        for name in ["cert.pem", "key.pem", "ca.pem"] {
            std::fs::write(dir.path().join(name), "pem").unwrap();
        }
        Files { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `name = "path"` lines for TOML.
    fn keys(&self, names: &[&str]) -> String {
        names
            .iter()
            .map(|name| {
                let file = self.path(&format!("{}.pem", name.trim_end_matches("_file")));
                let file = file.display().to_string();
                let key = match *name {
                    "cert" => "cert_file",
                    "key" => "key_file",
                    "ca" => "client_ca_file",
                    other => other,
                };
                format!("{key} = {file:?}\n")
            })
            .collect()
    }
}

fn position(error: &ConfigError) -> (usize, usize) {
    let position = error.position.unwrap();
    (position.line, position.column)
}

#[test]
fn tls_and_wss_listeners_read_every_setting() {
    let files = Files::new();
    let text = format!(
        "[[listener]]\nkind = \"tls\"\naddress = \"[::]:8883\"\n{}require_client_cert = true\n\
         use_subject_as_username = true\n\
         [[listener]]\nkind = \"wss\"\naddress = \"0.0.0.0:8084\"\n{}path = \"/broker\"\n\
         [auth]\npassword_file = \"passwd\"\n",
        files.keys(&["cert", "key", "ca"]),
        files.keys(&["cert", "key"]),
    );
    let config = parse(&text).unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(
        config.listeners[0],
        ListenerConfig {
            kind: ListenerKind::Tls,
            address: address("[::]:8883"),
            cert_file: Some(files.path("cert.pem")),
            key_file: Some(files.path("key.pem")),
            client_ca_file: Some(files.path("ca.pem")),
            require_client_cert: true,
            use_subject_as_username: true,
            ..ListenerConfig::default()
        }
    );
    assert_eq!(config.listeners[1].kind, ListenerKind::Wss);
    assert_eq!(config.listeners[1].ws_path(), "/broker");
    assert!(!config.listeners[1].require_client_cert);
    let ws = parse("[[listener]]\nkind = \"ws\"\naddress = \"127.0.0.1:8083\"\n").unwrap();
    assert_eq!(ws.listeners[0].path, None);
    assert_eq!(ws.listeners[0].ws_path(), DEFAULT_WS_PATH);
}

#[test]
fn a_tls_listener_needs_a_certificate_and_a_key() {
    let all = errors("\n[[listener]]\nkind = \"tls\"\naddress = \"127.0.0.1:8883\"\n");
    assert_eq!(all.len(), 2, "{all:#?}");
    for (error, key) in all.iter().zip(["cert_file", "key_file"]) {
        assert!(
            matches!(&error.problem, Problem::MissingKey { key: missing } if *missing == format!("listener[0].{key}")),
            "{error}"
        );
        // Pointed at the listener's `kind`.
        assert_eq!(position(error), (3, 8), "{error}");
    }
}

#[test]
fn certificate_files_that_cannot_be_opened_are_reported_with_their_line() {
    let files = Files::new();
    let text = format!(
        "[[listener]]\nkind = \"wss\"\naddress = \"127.0.0.1:8084\"\n\
         cert_file = \"/nonexistent/switchboard/cert.pem\"\n\
         key_file = {:?}\n\
         client_ca_file = \"/nonexistent/switchboard/ca.pem\"\n",
        files.dir.path().display().to_string(),
    );
    let all = errors(&text);
    assert_eq!(all.len(), 3, "{all:#?}");
    assert_eq!(position(&all[0]).0, 4);
    let message = all[0].to_string();
    assert!(message.starts_with("test.toml:4:"), "{message}");
    assert!(
        message.contains("/nonexistent/switchboard/cert.pem"),
        "{message}"
    );
    assert!(message.contains("cannot read it"), "{message}");
    assert_eq!(position(&all[1]).0, 5);
    assert!(
        all[1].to_string().contains("not a regular file"),
        "{}",
        all[1]
    );
    assert_eq!(position(&all[2]).0, 6);
}

#[test]
fn transport_settings_on_the_wrong_kind_are_refused() {
    let files = Files::new();
    let text = format!(
        "[[listener]]\naddress = \"127.0.0.1:1883\"\n{}require_client_cert = true\n\
         [[listener]]\nkind = \"tls\"\naddress = \"127.0.0.1:8883\"\n{}path = \"/mqtt\"\n",
        files.keys(&["cert"]),
        files.keys(&["cert", "key"]),
    );
    let all = errors(&text);
    let messages: Vec<String> = all.iter().map(ToString::to_string).collect();
    assert_eq!(all.len(), 3, "{messages:#?}");
    assert!(
        messages[0].contains("`listener[0].cert_file` only applies to tls and wss listeners"),
        "{messages:#?}"
    );
    assert!(
        messages[1].contains("listener[0].require_client_cert"),
        "{messages:#?}"
    );
    assert!(
        messages[2].contains("`listener[1].path` only applies to ws and wss listeners"),
        "{messages:#?}"
    );
    assert_eq!(position(&all[2]).0, 10);
}

#[test]
fn client_certificate_settings_must_fit_together() {
    let files = Files::new();
    let text = format!(
        "[[listener]]\nkind = \"tls\"\naddress = \"127.0.0.1:8883\"\n{}require_client_cert = true\n\
         [[listener]]\nkind = \"tls\"\naddress = \"127.0.0.1:8884\"\n{}use_subject_as_username = true\n",
        files.keys(&["cert", "key"]),
        files.keys(&["cert", "key", "ca"]),
    );
    let all = errors(&text);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(
        all[0]
            .to_string()
            .contains("needs `listener[0].client_ca_file`"),
        "{}",
        all[0]
    );
    assert_eq!(position(&all[0]).0, 6);
    assert!(
        all[1]
            .to_string()
            .contains("needs `listener[1].require_client_cert` = true"),
        "{}",
        all[1]
    );
    assert_eq!(position(&all[1]).0, 13);
}

#[test]
fn websocket_paths_must_be_paths() {
    for bad in ["mqtt", "", "/a b", "/mqtt?x=1", "/mqtt#top"] {
        let all = errors(&format!(
            "[[listener]]\nkind = \"ws\"\naddress = \"127.0.0.1:8083\"\npath = {bad:?}\n"
        ));
        assert_eq!(all.len(), 1, "{bad:?}: {all:#?}");
        assert!(
            matches!(&all[0].problem, Problem::InvalidValue { key, .. } if key == "listener[0].path"),
            "{bad:?}: {}",
            all[0]
        );
    }
    let config = parse("[[listener]]\nkind = \"ws\"\naddress = \"127.0.0.1:8083\"\npath = \"/\"\n");
    assert!(config.is_ok());
}

#[test]
fn certificate_user_names_make_a_public_listener_safe_without_passwords() {
    let files = Files::new();
    let listener = |extra: &str| {
        format!(
            "[[listener]]\nkind = \"tls\"\naddress = \"0.0.0.0:8883\"\n{}{extra}",
            files.keys(&["cert", "key", "ca"])
        )
    };
    // Verified certificates name every client: nobody is anonymous.
    parse(&listener(
        "require_client_cert = true\nuse_subject_as_username = true\n",
    ))
    .unwrap_or_else(|errors| panic!("{errors}"));
    // Required certificates alone do not give user names.
    let all = errors(&listener("require_client_cert = true\n"));
    assert_eq!(all.len(), 1, "{all:#?}");
    assert!(
        all[0].to_string().contains("auth.password_file"),
        "{}",
        all[0]
    );
}

#[test]
fn listen_flags_make_listeners_of_their_kind() {
    let files = Files::new();
    let text = format!(
        "[[listener]]\nkind = \"ws\"\naddress = \"127.0.0.1:9001\"\npath = \"/old\"\n\
         [[listener]]\nkind = \"tls\"\naddress = \"127.0.0.1:8883\"\n{}",
        files.keys(&["cert", "key", "ca"]),
    );
    let path = files.path("broker.toml");
    std::fs::write(&path, text).unwrap();
    let overrides = Overrides {
        listen_ws: vec![address("[::1]:8083"), address("127.0.0.1:8083")],
        ..Overrides::default()
    };
    let config = Config::load(Some(&path), &overrides).unwrap_or_else(|errors| panic!("{errors}"));
    let listeners: Vec<(ListenerKind, SocketAddr, &str)> = config
        .listeners
        .iter()
        .map(|listener| (listener.kind, listener.address, listener.ws_path()))
        .collect();
    assert_eq!(
        listeners,
        vec![
            (ListenerKind::Tls, address("127.0.0.1:8883"), "/mqtt"),
            (ListenerKind::Ws, address("[::1]:8083"), "/mqtt"),
            (ListenerKind::Ws, address("127.0.0.1:8083"), "/mqtt"),
        ]
    );
    // The file's tls listener keeps its client CA; --cert and --key would
    // only apply to --listen-tls listeners.
    assert_eq!(
        config.listeners[0].client_ca_file,
        Some(files.path("ca.pem"))
    );

    let overrides = Overrides {
        listen_tls: vec![address("127.0.0.1:8884")],
        listen_wss: vec![address("127.0.0.1:8085")],
        cert_file: Some(files.path("cert.pem")),
        key_file: Some(files.path("key.pem")),
        ..Overrides::default()
    };
    let config = Config::load(Some(&path), &overrides).unwrap_or_else(|errors| panic!("{errors}"));
    let kinds: Vec<(ListenerKind, Option<&Path>)> = config
        .listeners
        .iter()
        .map(|listener| (listener.kind, listener.cert_file.as_deref()))
        .collect();
    let cert = files.path("cert.pem");
    assert_eq!(
        kinds,
        vec![
            (ListenerKind::Ws, None),
            (ListenerKind::Tls, Some(cert.as_path())),
            (ListenerKind::Wss, Some(cert.as_path())),
        ]
    );
}

#[test]
fn listen_tls_without_a_certificate_and_orphan_certificate_flags_are_refused() {
    let overrides = Overrides {
        listen_tls: vec![address("127.0.0.1:8883")],
        key_file: Some(PathBuf::from("/nonexistent/switchboard/key.pem")),
        ..Overrides::default()
    };
    let all = Config::load(None, &overrides).unwrap_err().0;
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(all.iter().all(|error| error.origin == OVERRIDES_ORIGIN));
    let text = ConfigErrors(all).to_string();
    assert!(text.contains("give --cert FILE and --key FILE"), "{text}");
    assert!(text.contains("/nonexistent/switchboard/key.pem"), "{text}");

    let files = Files::new();
    let overrides = Overrides {
        cert_file: Some(files.path("cert.pem")),
        key_file: Some(files.path("key.pem")),
        ..Overrides::default()
    };
    let all = Config::load(None, &overrides).unwrap_err().0;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].origin, OVERRIDES_ORIGIN);
    assert!(
        all[0]
            .to_string()
            .contains("only used by listeners from --listen-tls"),
        "{}",
        all[0]
    );
}

#[test]
fn listeners_read_their_own_auth_files_and_rate_limits() {
    let files = Files::new();
    let passwords = files.path("cert.pem").display().to_string();
    let acl = files.path("ca.pem").display().to_string();
    let config = parse(&format!(
        "[[listener]]\naddress = \"0.0.0.0:1883\"\npassword_file = {passwords:?}\n\
         acl_file = {acl:?}\nconnection_rate_per_address = 3\n\
         connection_burst_per_address = 4\nclient_message_rate = 5\nclient_byte_rate = 6\n\
         [[listener]]\nkind = \"ws\"\naddress = \"127.0.0.1:8083\"\n\
         allowed_origins = [\"https://app.example\", \"http://localhost:8080\", \"null\"]\n"
    ))
    .unwrap_or_else(|errors| panic!("{errors}"));
    let public = &config.listeners[0];
    assert_eq!(public.password_file.as_deref(), Some(Path::new(&passwords)));
    assert_eq!(public.acl_file.as_deref(), Some(Path::new(&acl)));
    assert_eq!(public.connection_rate_per_address, Some(3));
    assert_eq!(public.connection_burst_per_address, Some(4));
    assert_eq!(public.client_message_rate, Some(5));
    assert_eq!(public.client_byte_rate, Some(6));
    assert_eq!(
        config.listeners[1].allowed_origins,
        ["https://app.example", "http://localhost:8080", "null"]
    );
    // Unset, the global settings apply: nothing of the listener's own.
    assert_eq!(config.listeners[1].password_file, None);
    assert_eq!(config.listeners[1].client_message_rate, None);
}

#[test]
fn a_listeners_own_password_file_makes_a_public_listener_safe() {
    let files = Files::new();
    let passwords = files.path("cert.pem").display().to_string();
    // Its own password file: no error, though `auth.password_file` is unset.
    parse(&format!(
        "[[listener]]\naddress = \"0.0.0.0:1883\"\npassword_file = {passwords:?}\n"
    ))
    .unwrap_or_else(|errors| panic!("{errors}"));
    // Another listener's password file does not protect this one.
    let all = errors(&format!(
        "[[listener]]\naddress = \"0.0.0.0:1883\"\npassword_file = {passwords:?}\n\
         [[listener]]\naddress = \"0.0.0.0:1884\"\n"
    ));
    assert_eq!(all.len(), 1, "{all:#?}");
    let message = all[0].to_string();
    assert!(
        message.contains("listener[1].address") && message.contains("password_file"),
        "{message}"
    );
}

#[test]
fn listener_auth_files_limits_and_origins_are_checked() {
    let all = errors(
        "[[listener]]\naddress = \"127.0.0.1:1883\"\npassword_file = \"/nonexistent/passwords\"\n\
         acl_file = \"\"\nconnection_burst_per_address = 0\nallowed_origins = [\"https://a.example\"]\n\
         [[listener]]\nkind = \"ws\"\naddress = \"127.0.0.1:8083\"\n\
         allowed_origins = [\"https://a.example/path\", \"a.example\", \"https://\", \"https://a.example\"]\n",
    );
    let messages: Vec<String> = all.iter().map(ToString::to_string).collect();
    let has = |fragment: &str| messages.iter().any(|message| message.contains(fragment));
    assert!(has("listener[0].password_file"), "{messages:#?}");
    assert!(has("listener[0].acl_file"), "{messages:#?}");
    assert!(
        has("listener[0].connection_burst_per_address"),
        "{messages:#?}"
    );
    assert!(
        has("`listener[0].allowed_origins` only applies to ws and wss listeners"),
        "{messages:#?}"
    );
    for bad in ["https://a.example/path", "a.example", "https://"] {
        assert!(
            messages
                .iter()
                .any(|message| message.contains("listener[1].allowed_origins")
                    && message.contains(&format!("{bad:?}"))),
            "{bad}: {messages:#?}"
        );
    }
    assert_eq!(all.len(), 7, "{messages:#?}");
}
