//! What the values mean: ranges, clashes between listeners, and settings that
//! contradict each other. Runs on the fully layered [`Config`], so a value is
//! judged the same whether it came from the file, the environment or a flag;
//! [`Sources`] says where to point for each problem.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::Path;

use crate::error::{ConfigError, Problem, OVERRIDES_ORIGIN};
use crate::load::Sources;
use crate::settings::{
    Config, ListenerConfig, ListenerKind, LOG_LEVELS, MAX_CONNECT_TIMEOUT_SECS,
    MAX_FAILED_LOGIN_DELAY_SECS, MAX_PARK_IDLE_AFTER_MS, MAX_QOS, MAX_SYS_INTERVAL_SECS,
    MIN_CLIENT_ID_LENGTH, MIN_HTTP_TOKEN_LENGTH, MIN_PACKET_SIZE, MQTT_MAX_PACKET_SIZE,
};

/// Every problem with `config`, located through `sources`.
pub(crate) fn validate(config: &Config, sources: &Sources) -> Vec<ConfigError> {
    let mut checker = Checker {
        sources,
        errors: Vec::new(),
    };
    checker.listeners(config);
    checker.top_level(config);
    checker.limits(config);
    checker.mqtt(config);
    checker.auth(config);
    checker.http(config);
    checker.errors
}

struct Checker<'a> {
    sources: &'a Sources,
    errors: Vec<ConfigError>,
}

/// Widens any unsigned field to `u64` for range checks.
fn wide(value: impl TryInto<u64>) -> u64 {
    value.try_into().unwrap_or(u64::MAX)
}

impl Checker<'_> {
    fn report(&mut self, paths: &[&str], problem: Problem) {
        let (origin, position) = self.sources.locate(paths);
        self.errors.push(ConfigError {
            origin,
            position,
            problem,
        });
    }

    /// Reports `path` unless `value` lies in `range`; `reason` says why the
    /// bound exists. Returns whether it does.
    fn range(&mut self, path: &str, value: u64, range: RangeInclusive<u64>, reason: &str) -> bool {
        if range.contains(&value) {
            return true;
        }
        if self.sources.failed(path) {
            return false;
        }
        let bounds = if *range.end() == u64::MAX {
            format!("must be at least {}", range.start())
        } else {
            format!("must be from {} to {}", range.start(), range.end())
        };
        let allowed = if reason.is_empty() {
            bounds
        } else {
            format!("{bounds} ({reason})")
        };
        self.report(
            &[path],
            Problem::OutOfRange {
                key: path.to_owned(),
                value: value.to_string(),
                allowed,
            },
        );
        false
    }

    /// The key-path prefix of each listener: the loader's labels, or
    /// `listener[i]` for a config built in code.
    fn listener_labels(&self, config: &Config) -> Vec<String> {
        let labels = &self.sources.listener_labels;
        if labels.len() == config.listeners.len() {
            labels.clone()
        } else {
            (0..config.listeners.len())
                .map(|index| format!("listener[{index}]"))
                .collect()
        }
    }

    fn listeners(&mut self, config: &Config) {
        if config.listeners.is_empty() {
            if !self.sources.failed("listener") {
                self.report(
                    &["listener"],
                    Problem::InvalidValue {
                        key: "listener".to_owned(),
                        value: "[]".to_owned(),
                        expected: "at least one listener is needed to accept connections"
                            .to_owned(),
                    },
                );
            }
            return;
        }
        let labels = self.listener_labels(config);
        let mut seen: Vec<(&SocketAddr, &str)> = Vec::new();
        let mut names: Vec<(&str, &str)> = Vec::new();
        for (listener, label) in config.listeners.iter().zip(&labels) {
            let address_path = format!("{label}.address");
            let name_path = format!("{label}.name");
            if let Some(count) = listener.max_connections {
                self.range(
                    &format!("{label}.max_connections"),
                    wide(count),
                    1..=u64::MAX,
                    "leave it out for no per-listener cap",
                );
            }
            self.listener_auth_and_limits(listener, label);
            if let Some(name) = &listener.name {
                if name.trim().is_empty() {
                    self.report(
                        &[&name_path],
                        Problem::InvalidValue {
                            key: name_path.clone(),
                            value: format!("{name:?}"),
                            expected: "a name must not be blank; leave it out instead".to_owned(),
                        },
                    );
                } else if let Some((_, other)) = names.iter().find(|(seen, _)| *seen == name) {
                    let message = format!(
                        "`{name_path}` = {name:?} is already the name of `{other}`: \
                         listener names label logs and metrics, so they must be unique"
                    );
                    self.report(&[&name_path], Problem::Conflict { message });
                } else {
                    names.push((name, label));
                }
            }
            if let Some((other_address, other)) = seen
                .iter()
                .find(|(other_address, _)| addresses_clash(other_address, &listener.address))
            {
                let message = format!(
                    "`{address_path}` = \"{}\" clashes with `{other}.address` = \"{other_address}\": \
                     both cannot be bound at once",
                    listener.address
                );
                self.report(&[&address_path], Problem::Conflict { message });
            } else {
                seen.push((&listener.address, label));
            }
            self.listener_transport(listener, label);
        }
        if self.sources.unused_certificate_flags {
            self.errors.push(ConfigError {
                origin: OVERRIDES_ORIGIN.to_owned(),
                position: None,
                problem: Problem::Conflict {
                    message: "--cert and --key (SWITCHBOARD_CERT, SWITCHBOARD_KEY) are only used \
                              by listeners from --listen-tls and --listen-wss, and neither is \
                              given; a `[[listener]]` in the config file takes `cert_file` and \
                              `key_file` instead"
                        .to_owned(),
                },
            });
        }
    }

    /// A listener's own auth files and rate limits: files that can be read,
    /// and a burst that lets at least one connection through.
    fn listener_auth_and_limits(&mut self, listener: &ListenerConfig, label: &str) {
        for (key, file) in [
            ("password_file", &listener.password_file),
            ("acl_file", &listener.acl_file),
        ] {
            if let Some(file) = file {
                self.readable_file(&format!("{label}.{key}"), file);
            }
        }
        if let Some(burst) = listener.connection_burst_per_address {
            self.range(
                &format!("{label}.connection_burst_per_address"),
                u64::from(burst),
                1..=u64::MAX,
                "a burst of 0 would refuse every connection; to turn the limit off                  on this listener, set its connection_rate_per_address = 0",
            );
        }
    }

    /// A listener's TLS and WebSocket settings: each only on the kinds it
    /// applies to (a setting of another transport most likely means a wrong
    /// `kind`), a readable certificate and key for `tls` and `wss`,
    /// client-certificate settings that fit together, and a usable path.
    fn listener_transport(&mut self, listener: &ListenerConfig, label: &str) {
        let kind = listener.kind;
        let kind_path = format!("{label}.kind");
        let address_path = format!("{label}.address");
        if !kind.uses_tls() {
            for (key, set) in [
                ("cert_file", listener.cert_file.is_some()),
                ("key_file", listener.key_file.is_some()),
                ("client_ca_file", listener.client_ca_file.is_some()),
                ("require_client_cert", listener.require_client_cert),
                ("use_subject_as_username", listener.use_subject_as_username),
            ] {
                if set {
                    self.not_for_kind(label, key, kind, "tls and wss");
                }
            }
        }
        if !kind.uses_websocket() && listener.path.is_some() {
            self.not_for_kind(label, "path", kind, "ws and wss");
        }
        if !kind.uses_websocket() && !listener.allowed_origins.is_empty() {
            self.not_for_kind(label, "allowed_origins", kind, "ws and wss");
        }
        let origins_path = format!("{label}.allowed_origins");
        for origin in &listener.allowed_origins {
            if !valid_origin(origin) && !self.sources.failed(&origins_path) {
                self.report(
                    &[&origins_path],
                    Problem::InvalidValue {
                        key: origins_path.clone(),
                        value: format!("{origin:?}"),
                        expected: "a web origin as browsers send it: scheme://host or                                    scheme://host:port, with no path (e.g.                                    \"https://app.example\"), or \"null\""
                            .to_owned(),
                    },
                );
            }
        }
        if kind.uses_tls() {
            for (key, file) in [
                ("cert_file", &listener.cert_file),
                ("key_file", &listener.key_file),
            ] {
                let path = format!("{label}.{key}");
                match file {
                    Some(file) => self.readable_file(&path, file),
                    None if self.sources.failed(&path) => {}
                    None if label.starts_with("listen_") => {
                        let message = format!(
                            "the {kind} listener on {} from --listen-{kind} needs a certificate \
                             and its key: give --cert FILE and --key FILE (or SWITCHBOARD_CERT \
                             and SWITCHBOARD_KEY)",
                            listener.address
                        );
                        self.report(&[&path], Problem::Conflict { message });
                    }
                    None => {
                        let (origin, position) = self.sources.locate(&[&kind_path, &address_path]);
                        self.errors.push(ConfigError {
                            origin,
                            position,
                            problem: Problem::MissingKey { key: path },
                        });
                    }
                }
            }
            if let Some(file) = &listener.client_ca_file {
                self.readable_file(&format!("{label}.client_ca_file"), file);
            }
            let require_path = format!("{label}.require_client_cert");
            let subject_path = format!("{label}.use_subject_as_username");
            if listener.require_client_cert && listener.client_ca_file.is_none() {
                let message = format!(
                    "`{require_path}` = true needs `{label}.client_ca_file`: the CA certificates \
                     that client certificates are verified against"
                );
                self.report(&[&require_path], Problem::Conflict { message });
            }
            if listener.use_subject_as_username && !listener.require_client_cert {
                let message = format!(
                    "`{subject_path}` = true needs `{require_path}` = true (and \
                     `{label}.client_ca_file`): the certificate is then every client's \
                     credential, so every client must present one"
                );
                self.report(&[&subject_path], Problem::Conflict { message });
            }
        }
        if let (true, Some(path)) = (kind.uses_websocket(), &listener.path) {
            let valid = path.starts_with('/')
                && !path.chars().any(|character| {
                    character.is_whitespace() || character.is_control() || "?#".contains(character)
                });
            let key = format!("{label}.path");
            if !valid && !self.sources.failed(&key) {
                self.report(
                    &[&key],
                    Problem::InvalidValue {
                        key: key.clone(),
                        value: format!("{path:?}"),
                        expected: "an HTTP path starting with `/`, without spaces, `?` or `#` \
                                   (such as \"/mqtt\")"
                            .to_owned(),
                    },
                );
            }
        }
    }

    /// Reports a setting given on a listener of a kind it does not apply to.
    fn not_for_kind(&mut self, label: &str, key: &str, kind: ListenerKind, kinds: &str) {
        let path = format!("{label}.{key}");
        let message = format!(
            "`{path}` only applies to {kinds} listeners, and `{label}.kind` is \"{kind}\": \
             remove it, or change the kind"
        );
        self.report(&[&path], Problem::Conflict { message });
    }

    /// Reports `path` unless `file` names a regular file that can be opened.
    /// Checked here so that a typo is reported with its line; the server
    /// reads the contents when it starts (and on SIGHUP).
    fn readable_file(&mut self, path: &str, file: &Path) {
        if self.sources.failed(path) {
            return;
        }
        let problem = if file.as_os_str().is_empty() {
            Some("expected a file path".to_owned())
        } else {
            match std::fs::metadata(file) {
                Ok(metadata) if !metadata.is_file() => Some("it is not a regular file".to_owned()),
                Ok(_) => std::fs::File::open(file)
                    .err()
                    .map(|error| format!("cannot open it: {error}")),
                Err(error) => Some(format!("cannot read it: {error}")),
            }
        };
        if let Some(expected) = problem {
            self.report(
                &[path],
                Problem::InvalidValue {
                    key: path.to_owned(),
                    value: format!("{:?}", file.display().to_string()),
                    expected,
                },
            );
        }
    }

    fn top_level(&mut self, config: &Config) {
        if config.data_dir.as_os_str().is_empty() && !self.sources.failed("data_dir") {
            self.report(
                &["data_dir"],
                Problem::InvalidValue {
                    key: "data_dir".to_owned(),
                    value: "\"\"".to_owned(),
                    expected: "expected a directory path (\".\" for the working directory)"
                        .to_owned(),
                },
            );
        }
        if !self.sources.failed("log_level") {
            if let Err(reason) = check_log_filter(&config.log_level) {
                self.report(
                    &["log_level"],
                    Problem::InvalidValue {
                        key: "log_level".to_owned(),
                        value: format!("{:?}", config.log_level),
                        expected: reason,
                    },
                );
            }
        }
        self.range(
            "sys_interval_secs",
            config.sys_interval_secs,
            0..=MAX_SYS_INTERVAL_SECS,
            "0 disables $SYS; longer than a day is of no use",
        );
    }

    fn limits(&mut self, config: &Config) {
        let limits = &config.limits;
        self.range(
            "limits.max_connections",
            wide(limits.max_connections),
            1..=u64::MAX,
            "",
        );
        let packet_size_valid = self.range(
            "limits.max_packet_size",
            wide(limits.max_packet_size),
            wide(MIN_PACKET_SIZE)..=wide(MQTT_MAX_PACKET_SIZE),
            "the protocol's largest packet is 268435455 bytes plus a 5-byte header; \
             less than 128 cannot hold an ordinary CONNECT",
        );
        self.range(
            "limits.connect_timeout_secs",
            limits.connect_timeout_secs,
            1..=MAX_CONNECT_TIMEOUT_SECS,
            "",
        );
        self.range(
            "limits.park_idle_after_ms",
            limits.park_idle_after_ms,
            0..=MAX_PARK_IDLE_AFTER_MS,
            "0 turns parking off",
        );
        self.range(
            "limits.max_inflight",
            wide(limits.max_inflight),
            1..=wide(u16::MAX),
            "advertised as Receive Maximum, which may not be 0",
        );
        self.range(
            "limits.max_queued_messages",
            wide(limits.max_queued_messages),
            1..=u64::MAX,
            "",
        );
        self.range(
            "limits.max_topic_length",
            wide(limits.max_topic_length),
            1..=wide(u16::MAX),
            "",
        );
        self.range(
            "limits.max_topic_levels",
            wide(limits.max_topic_levels),
            1..=u64::MAX,
            "",
        );
        self.range(
            "limits.max_subscriptions_per_client",
            wide(limits.max_subscriptions_per_client),
            1..=u64::MAX,
            "",
        );
        self.range(
            "limits.max_retained_messages",
            wide(limits.max_retained_messages),
            1..=u64::MAX,
            "to store none, set mqtt.retain_available = false",
        );
        self.range(
            "limits.max_client_id_length",
            wide(limits.max_client_id_length),
            wide(MIN_CLIENT_ID_LENGTH)..=wide(u16::MAX),
            "servers must accept identifiers of up to 23 bytes [MQTT-3.1.3-5]",
        );
        self.range(
            "limits.max_retained_per_subscribe",
            wide(limits.max_retained_per_subscribe),
            1..=u64::MAX,
            "",
        );
        self.range(
            "limits.connection_burst_per_address",
            wide(limits.connection_burst_per_address),
            1..=u64::MAX,
            "a burst of 0 would refuse every connection; to turn the limit off, \
             set connection_rate_per_address = 0",
        );
        let total = limits.max_queued_bytes_total;
        if total != 0
            && total < limits.max_queued_bytes
            && !self.sources.file_unusable
            && !self.sources.failed("limits.max_queued_bytes_total")
            && !self.sources.failed("limits.max_queued_bytes")
        {
            let message = format!(
                "`limits.max_queued_bytes_total` = {total} is smaller than \
                 `limits.max_queued_bytes` = {}: one session's queue could never fill; \
                 raise `limits.max_queued_bytes_total` (0 = unlimited) or lower \
                 `limits.max_queued_bytes`",
                limits.max_queued_bytes
            );
            self.report(
                &["limits.max_queued_bytes_total", "limits.max_queued_bytes"],
                Problem::Conflict { message },
            );
        }
        if self.sources.file_unusable
            || !packet_size_valid
            || self.sources.failed("limits.max_packet_size")
        {
            // The file may well have set the other side of these, or the
            // packet size is already reported.
            return;
        }
        let packet_size = wide(limits.max_packet_size);
        for (path, what, value) in [
            (
                "limits.max_queued_bytes",
                "an empty session queue",
                limits.max_queued_bytes,
            ),
            (
                "limits.max_retained_bytes",
                "an empty retained store",
                limits.max_retained_bytes,
            ),
        ] {
            if wide(value) >= packet_size || self.sources.failed(path) {
                continue;
            }
            let message = format!(
                "`{path}` = {value} is smaller than `limits.max_packet_size` = {packet_size}: \
                 a message the broker accepts must fit {what}; raise `{path}` or lower \
                 `limits.max_packet_size`"
            );
            self.report(
                &[path, "limits.max_packet_size"],
                Problem::Conflict { message },
            );
        }
    }

    fn auth(&mut self, config: &Config) {
        let auth = &config.auth;
        for (path, value) in [
            ("auth.password_file", &auth.password_file),
            ("auth.acl_file", &auth.acl_file),
        ] {
            if value
                .as_ref()
                .is_some_and(|path| path.as_os_str().is_empty())
                && !self.sources.failed(path)
            {
                self.report(
                    &[path],
                    Problem::InvalidValue {
                        key: path.to_owned(),
                        value: "\"\"".to_owned(),
                        expected: "expected a file path; leave the key out for none".to_owned(),
                    },
                );
            }
        }
        self.range(
            "auth.failed_login_window_secs",
            auth.failed_login_window_secs,
            1..=u64::MAX,
            "",
        );
        let delay_valid = self.range(
            "auth.failed_login_delay_secs",
            auth.failed_login_delay_secs,
            1..=MAX_FAILED_LOGIN_DELAY_SECS,
            "turn throttling off with failed_login_limit = 0",
        );
        let max_delay_valid = self.range(
            "auth.failed_login_max_delay_secs",
            auth.failed_login_max_delay_secs,
            1..=MAX_FAILED_LOGIN_DELAY_SECS,
            "",
        );
        self.range(
            "auth.failed_login_max_addresses",
            wide(auth.failed_login_max_addresses),
            1..=u64::MAX,
            "",
        );
        if delay_valid
            && max_delay_valid
            && !self.sources.file_unusable
            && auth.failed_login_max_delay_secs < auth.failed_login_delay_secs
            && !self.sources.failed("auth.failed_login_delay_secs")
            && !self.sources.failed("auth.failed_login_max_delay_secs")
        {
            let message = format!(
                "`auth.failed_login_max_delay_secs` = {} is less than \
                 `auth.failed_login_delay_secs` = {}: the longest delay cannot be shorter \
                 than the first",
                auth.failed_login_max_delay_secs, auth.failed_login_delay_secs
            );
            self.report(
                &[
                    "auth.failed_login_max_delay_secs",
                    "auth.failed_login_delay_secs",
                ],
                Problem::Conflict { message },
            );
        }
        self.anonymous_listeners(config);
    }

    /// The safe default for a broker reachable from the network: a listener
    /// on a non-loopback address needs a password file, unless anonymous
    /// clients are allowed on purpose (`auth.allow_anonymous = true`, or the
    /// listener's own `allow_anonymous = true`).
    fn anonymous_listeners(&mut self, config: &Config) {
        let auth = &config.auth;
        if auth.password_file.is_some()
            || auth.allow_anonymous == Some(true)
            || self.sources.file_unusable
            || self.sources.failed("auth")
            || self.sources.failed("auth.password_file")
            || self.sources.failed("auth.allow_anonymous")
        {
            return;
        }
        let labels = self.listener_labels(config);
        for (listener, label) in config.listeners.iter().zip(&labels) {
            // A listener that takes user names from verified client
            // certificates has no anonymous clients; one with its own
            // password file checks user names.
            if listener.address.ip().to_canonical().is_loopback()
                || listener.use_subject_as_username
                || listener.allow_anonymous == Some(true)
                || listener.password_file.is_some()
                || self.sources.failed(&format!("{label}.password_file"))
            {
                continue;
            }
            let address_path = format!("{label}.address");
            let named = match &listener.name {
                Some(name) => format!(
                    "listener {name:?} (`{address_path}` = \"{}\")",
                    listener.address
                ),
                None => format!("`{address_path}` = \"{}\"", listener.address),
            };
            let message = format!(
                "{named} is not a loopback address and no `auth.password_file` is set, so \
                 anyone who can reach it could connect without credentials: set \
                 `auth.password_file` or the listener's `password_file` (create it with \
                 `switchboard passwd FILE USER`), or set \
                 `auth.allow_anonymous = true` (or the listener's `allow_anonymous = true`) \
                 to accept anonymous clients on purpose"
            );
            self.report(
                &[&address_path, "auth.allow_anonymous"],
                Problem::Conflict { message },
            );
        }
    }

    /// `[http]`: well-formed credentials, and the access rule: a listener
    /// on any address but loopback needs credentials and never serves
    /// anonymous requests. The console crate checks the same again when it
    /// starts (for embedders that build its options in code).
    fn http(&mut self, config: &Config) {
        let http = &config.http;
        if self.sources.failed("http") {
            return;
        }
        for (index, token) in http.tokens.iter().enumerate() {
            if token.chars().count() < MIN_HTTP_TOKEN_LENGTH
                || token.chars().any(char::is_whitespace)
            {
                // The token itself is a secret: name its position only.
                self.report(
                    &["http.tokens"],
                    Problem::InvalidValue {
                        key: "http.tokens".to_owned(),
                        value: format!("(token {})", index + 1),
                        expected: format!(
                            "each token needs at least {MIN_HTTP_TOKEN_LENGTH} characters and no \
                             white space; generate one with `openssl rand -hex 24`"
                        ),
                    },
                );
            }
        }
        if http
            .token_file
            .as_ref()
            .is_some_and(|path| path.as_os_str().is_empty())
            && !self.sources.failed("http.token_file")
        {
            self.report(
                &["http.token_file"],
                Problem::InvalidValue {
                    key: "http.token_file".to_owned(),
                    value: "\"\"".to_owned(),
                    expected: "expected a file path; leave the key out for none".to_owned(),
                },
            );
        }
        // An admin user without a hash takes its password from the
        // password file; a hash without a user names nobody.
        let password_file = config.auth.password_file.is_some();
        let half_an_admin = match (&http.admin_user, &http.admin_password_hash) {
            (Some(_), None) => !password_file,
            (None, Some(_)) => true,
            _ => false,
        };
        if half_an_admin
            && !self.sources.failed("http.admin_user")
            && !self.sources.failed("http.admin_password_hash")
            && !self.sources.failed("auth.password_file")
            && !self.sources.file_unusable
        {
            let message = "`http.admin_user` needs its password: `http.admin_password_hash` \
                           (make the hash with `switchboard passwd`), or an `auth.password_file` \
                           (--password-file) with that user in it; and a hash goes together with \
                           `http.admin_user`"
                .to_owned();
            self.report(
                &["http.admin_user", "http.admin_password_hash"],
                Problem::Conflict { message },
            );
        }
        if let Some(user) = &http.admin_user {
            if user.is_empty() || user.contains(':') || user.chars().any(char::is_control) {
                self.report(
                    &["http.admin_user"],
                    Problem::InvalidValue {
                        key: "http.admin_user".to_owned(),
                        value: format!("{user:?}"),
                        expected: "a user name: not empty, without `:` or control characters"
                            .to_owned(),
                    },
                );
            }
        }
        if let Some(hash) = &http.admin_password_hash {
            if !hash.starts_with("$argon2id$") {
                self.report(
                    &["http.admin_password_hash"],
                    Problem::InvalidValue {
                        key: "http.admin_password_hash".to_owned(),
                        value: "(hidden)".to_owned(),
                        expected: "an argon2id PHC string (`$argon2id$v=19$...`), as \
                                   `switchboard passwd FILE USER` writes after `USER:`"
                            .to_owned(),
                    },
                );
            }
        }
        if http.cert_file.is_some() != http.key_file.is_some()
            && !self.sources.failed("http.cert_file")
            && !self.sources.failed("http.key_file")
            && !self.sources.file_unusable
        {
            let message = "`http.cert_file` and `http.key_file` go together: set both \
                           (--http-cert and --http-key) for HTTPS, or neither for plain HTTP"
                .to_owned();
            self.report(
                &["http.cert_file", "http.key_file"],
                Problem::Conflict { message },
            );
        }
        if http.enabled {
            for (key, file) in [
                ("http.cert_file", &http.cert_file),
                ("http.key_file", &http.key_file),
            ] {
                if let Some(file) = file {
                    self.readable_file(key, file);
                }
            }
        }
        if !http.enabled || self.sources.file_unusable {
            return;
        }
        let loopback = http.address.ip().to_canonical().is_loopback();
        let credentials = http.has_credentials()
            || (http.admin_user.is_some() && config.auth.password_file.is_some());
        let anonymous = http.allow_anonymous.unwrap_or(loopback);
        let address = format!("`http.address` = \"{}\"", http.address);
        if anonymous && !loopback {
            let message = format!(
                "`http.allow_anonymous` = true, but {address} is not a loopback address: \
                 anyone who can reach it could disconnect clients and read every message. \
                 Anonymous console access is only allowed on loopback"
            );
            self.report(
                &["http.allow_anonymous", "http.address"],
                Problem::Conflict { message },
            );
        } else if !loopback && !credentials {
            let message = format!(
                "{address} is not a loopback address and the console has no credentials, so \
                 anyone who can reach it could disconnect clients and read every message: set \
                 `http.tokens` (or `http.token_file`), or `http.admin_user` and \
                 `http.admin_password_hash`; or bind it to 127.0.0.1, or turn it off with \
                 --no-http / `http.enabled = false`"
            );
            self.report(&["http.address"], Problem::Conflict { message });
        } else if !anonymous && !credentials {
            let message = "`http.allow_anonymous` = false and the console has no \
                           credentials, so nobody could use it: add `http.tokens` or the admin \
                           user, or leave `allow_anonymous` out"
                .to_owned();
            self.report(&["http.allow_anonymous"], Problem::Conflict { message });
        }
        let labels = self.listener_labels(config);
        for (listener, label) in config.listeners.iter().zip(&labels) {
            if addresses_clash(&listener.address, &http.address) {
                let message = format!(
                    "{address} clashes with `{label}.address` = \"{}\": both cannot be bound at \
                     once; move the console (--http or `http.address`) or turn it off (--no-http)",
                    listener.address
                );
                self.report(&["http.address"], Problem::Conflict { message });
            }
        }
    }

    fn mqtt(&mut self, config: &Config) {
        self.range(
            "mqtt.maximum_qos",
            wide(config.mqtt.maximum_qos),
            0..=wide(MAX_QOS),
            "QoS levels are 0, 1 and 2",
        );
    }
}

/// Whether two listeners cannot both be bound: the same port (port 0 asks
/// the system for a fresh one, so it never clashes) and the same address, or
/// one of them the wildcard address of the same family.
fn addresses_clash(first: &SocketAddr, second: &SocketAddr) -> bool {
    if first.port() != second.port() || first.port() == 0 {
        return false;
    }
    first.ip() == second.ip()
        || (first.is_ipv4() == second.is_ipv4()
            && (first.ip().is_unspecified() || second.ip().is_unspecified()))
}

/// Checks a `log_level` filter: comma-separated directives, each a level or
/// `target=level`. This is the part of the tracing filter syntax that the
/// binary documents; anything else is most likely a typo.
fn check_log_filter(filter: &str) -> Result<(), String> {
    let levels = LOG_LEVELS.join(", ");
    if filter.trim().is_empty() {
        return Err(format!("expected a level ({levels})"));
    }
    for directive in filter.split(',').map(str::trim) {
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive),
        };
        if let Some(target) = target {
            let valid_target = !target.is_empty()
                && target.chars().all(|character| {
                    character.is_ascii_alphanumeric() || "_:-.".contains(character)
                });
            if !valid_target {
                return Err(format!(
                    "`{directive}` has no valid target before `=` (a module path such as switchboard_server)"
                ));
            }
        }
        if !LOG_LEVELS
            .iter()
            .any(|known| known.eq_ignore_ascii_case(level))
        {
            return Err(format!(
                "`{level}` is not a level; expected one of {levels}, or target=level"
            ));
        }
    }
    Ok(())
}

/// Whether `origin` is written as browsers send the `Origin` header:
/// `scheme://host[:port]` with no path, query or user, or `null`.
fn valid_origin(origin: &str) -> bool {
    if origin == "null" {
        return true;
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "+-.".contains(character))
        && !authority.is_empty()
        && !authority.chars().any(|character| {
            character.is_whitespace() || character.is_control() || "/?#@".contains(character)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn clashing_addresses() {
        assert!(addresses_clash(
            &address("127.0.0.1:1883"),
            &address("127.0.0.1:1883")
        ));
        assert!(addresses_clash(
            &address("0.0.0.0:1883"),
            &address("127.0.0.1:1883")
        ));
        assert!(addresses_clash(
            &address("[::]:1883"),
            &address("[::1]:1883")
        ));
        assert!(!addresses_clash(
            &address("127.0.0.1:1883"),
            &address("127.0.0.2:1883")
        ));
        assert!(!addresses_clash(
            &address("127.0.0.1:1883"),
            &address("127.0.0.1:8883")
        ));
        // Dual-stack binding depends on the system; not ours to judge.
        assert!(!addresses_clash(
            &address("0.0.0.0:1883"),
            &address("[::]:1883")
        ));
        assert!(!addresses_clash(
            &address("127.0.0.1:0"),
            &address("127.0.0.1:0")
        ));
    }

    #[test]
    fn log_filters() {
        for good in [
            "info",
            "DEBUG",
            "off",
            "info,switchboard_server=debug",
            "warn, switchboard::session=trace",
        ] {
            assert_eq!(check_log_filter(good), Ok(()), "{good}");
        }
        for bad in ["", "verbose", "info,", "=debug", "server=loud", "a b=info"] {
            assert!(check_log_filter(bad).is_err(), "{bad}");
        }
    }
}
