//! Reading a parsed file into [`Config`] and applying [`Overrides`], keeping
//! track of where every value came from so that validation can point at it.
//!
//! Reading only checks what the types demand (a string where a string
//! belongs, an integer that fits its field); what the values mean is checked
//! afterwards by [`crate::validate`], on the fully layered result, so a value
//! is judged the same way whether it came from the file or a flag.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::error::{ConfigError, Position, Problem, OVERRIDES_ORIGIN};
use crate::settings::{Choice, Config, ListenerConfig, ListenerKind};
use crate::tree::{Entry, LineIndex, Node, Value};
use crate::Overrides;

/// Keys accepted at the top level, for "did you mean" suggestions.
pub(crate) const ROOT_KEYS: &[&str] = &[
    "data_dir",
    "durability",
    "sys_interval_secs",
    "log_level",
    "listener",
    "limits",
    "session",
    "mqtt",
    "auth",
    "http",
];
/// Keys accepted in a `[[listener]]` table.
pub(crate) const LISTENER_KEYS: &[&str] = &[
    "kind",
    "address",
    "name",
    "max_connections",
    "allow_anonymous",
    "password_file",
    "acl_file",
    "connection_rate_per_address",
    "connection_burst_per_address",
    "client_message_rate",
    "client_byte_rate",
    "cert_file",
    "key_file",
    "client_ca_file",
    "require_client_cert",
    "use_subject_as_username",
    "path",
    "allowed_origins",
];
/// Keys accepted in `[limits]`.
pub(crate) const LIMITS_KEYS: &[&str] = &[
    "max_connections",
    "max_packet_size",
    "connect_timeout_secs",
    "park_idle_after_ms",
    "max_inflight",
    "max_queued_messages",
    "max_queued_bytes",
    "max_topic_length",
    "max_topic_levels",
    "max_subscriptions_per_client",
    "max_retained_messages",
    "max_retained_bytes",
    "max_client_id_length",
    "max_retained_per_subscribe",
    "connection_rate_per_address",
    "connection_burst_per_address",
    "client_message_rate",
    "client_byte_rate",
    "max_queued_bytes_total",
];
/// Keys accepted in `[session]`.
pub(crate) const SESSION_KEYS: &[&str] = &[
    "max_session_expiry_secs",
    "queue_qos0_offline",
    "max_keep_alive_secs",
    "topic_alias_maximum",
    "allow_zero_length_client_id",
];
/// Keys accepted in `[auth]`.
pub(crate) const AUTH_KEYS: &[&str] = &[
    "password_file",
    "acl_file",
    "allow_anonymous",
    "failed_login_limit",
    "failed_login_window_secs",
    "failed_login_delay_secs",
    "failed_login_max_delay_secs",
    "failed_login_max_addresses",
];
/// Keys accepted in `[http]`.
pub(crate) const HTTP_KEYS: &[&str] = &[
    "enabled",
    "address",
    "allow_anonymous",
    "tokens",
    "token_file",
    "admin_user",
    "admin_password_hash",
    "cert_file",
    "key_file",
];
/// Keys accepted in `[mqtt]`.
pub(crate) const MQTT_KEYS: &[&str] = &[
    "maximum_qos",
    "retain_available",
    "wildcard_subscriptions",
    "shared_subscriptions",
    "subscription_identifiers",
];

/// Where each value of a [`Config`] came from, by key path
/// (`limits.max_packet_size`, `listener[0].address`).
///
/// A path in neither `from_file` nor `overridden` holds its built-in default.
#[derive(Debug, Clone)]
pub(crate) struct Sources {
    /// The file's name for messages, when a file was read.
    pub(crate) file_origin: Option<String>,
    /// Origin for problems that no key in a file or override can be blamed
    /// for.
    pub(crate) fallback_origin: String,
    /// Where in the file each value read from it was written.
    pub(crate) from_file: HashMap<String, Position>,
    /// Paths set by an override (the last layer, so it wins over the file).
    pub(crate) overridden: HashSet<String>,
    /// Paths (or whole sections) whose value was refused while reading: the
    /// field still holds its default, so checks on it would only repeat the
    /// problem or report a clash that is not there.
    pub(crate) failed: HashSet<String>,
    /// For each entry of `Config::listeners`, the prefix of its key paths:
    /// `listener[i]` with `i` its index in the file (refused entries are
    /// skipped, so it can differ from the index in the config), or
    /// `listen[j]` for the `j`th `--listen` address.
    pub(crate) listener_labels: Vec<String>,
    /// True when the file could not be used at all (unreadable or not TOML):
    /// checks across settings are skipped, as the file would have set some.
    pub(crate) file_unusable: bool,
    /// `--cert` or `--key` was given without `--listen-tls` or
    /// `--listen-wss`, the only listeners they apply to.
    pub(crate) unused_certificate_flags: bool,
}

impl Sources {
    pub(crate) fn new(fallback_origin: &str) -> Self {
        Self {
            file_origin: None,
            fallback_origin: fallback_origin.to_owned(),
            from_file: HashMap::new(),
            overridden: HashSet::new(),
            failed: HashSet::new(),
            listener_labels: Vec::new(),
            file_unusable: false,
            unused_certificate_flags: false,
        }
    }

    /// Labels for a config whose listeners came from nowhere in particular
    /// (built in code or left at their default).
    pub(crate) fn label_listeners(&mut self, config: &Config) {
        self.listener_labels = (0..config.listeners.len())
            .map(|index| format!("listener[{index}]"))
            .collect();
    }

    /// Whether `path`, or a section containing it, was refused while reading.
    pub(crate) fn failed(&self, path: &str) -> bool {
        self.failed.iter().any(|failed| {
            path == failed
                || path
                    .strip_prefix(failed.as_str())
                    .is_some_and(|rest| rest.starts_with('.'))
        })
    }

    /// The origin and position to report for a problem with `paths`: the
    /// first of them that was set by an override or in the file.
    pub(crate) fn locate(&self, paths: &[&str]) -> (String, Option<Position>) {
        for path in paths {
            if self.overridden.contains(*path) {
                return (OVERRIDES_ORIGIN.to_owned(), None);
            }
            if let (Some(origin), Some(position)) = (&self.file_origin, self.from_file.get(*path)) {
                return (origin.clone(), Some(*position));
            }
        }
        (self.fallback_origin.clone(), None)
    }

    fn set_overridden(&mut self, path: &str) {
        self.failed.remove(path);
        self.overridden.insert(path.to_owned());
    }
}

/// An unsigned integer field type, for range checks while reading.
pub(crate) trait Unsigned: Copy {
    const MAX: u64;
    fn from_u64(value: u64) -> Option<Self>;
}

macro_rules! unsigned {
    ($($type:ty),+) => {$(
        impl Unsigned for $type {
            const MAX: u64 = <$type>::MAX as u64;
            fn from_u64(value: u64) -> Option<Self> {
                <$type>::try_from(value).ok()
            }
        }
    )+};
}

unsigned!(u8, u16, u32, u64, usize);

/// Walks a parsed file, setting fields of a [`Config`] and collecting every
/// problem.
pub(crate) struct Reader<'a> {
    origin: &'a str,
    index: LineIndex<'a>,
    pub(crate) errors: Vec<ConfigError>,
    sources: &'a mut Sources,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(origin: &'a str, text: &'a str, sources: &'a mut Sources) -> Self {
        sources.file_origin = Some(origin.to_owned());
        Self {
            origin,
            index: LineIndex::new(text),
            errors: Vec::new(),
            sources,
        }
    }

    pub(crate) fn error_at(&mut self, span: Option<std::ops::Range<usize>>, problem: Problem) {
        let position = span.map(|span| self.index.position(&span));
        self.errors.push(ConfigError {
            origin: self.origin.to_owned(),
            position,
            problem,
        });
    }

    /// Records that `path` was read successfully from `entry`.
    fn read_ok(&mut self, path: &str, entry: &Entry) {
        if let Some(span) = entry.value_span() {
            let position = self.index.position(&span);
            self.sources.from_file.insert(path.to_owned(), position);
        }
    }

    fn wrong_type(&mut self, entry: &Entry, path: &str, expected: &'static str) {
        self.sources.failed.insert(path.to_owned());
        self.error_at(
            entry.value_span(),
            Problem::WrongType {
                key: path.to_owned(),
                expected,
                found: entry.node.value.type_name(),
            },
        );
    }

    fn unknown(&mut self, entry: &Entry, section: &str, known: &'static [&'static str]) {
        self.error_at(
            entry.key_span.clone().or_else(|| entry.value_span()),
            Problem::UnknownKey {
                key: entry.key.clone(),
                section: section.to_owned(),
                suggestion: closest(&entry.key, known),
            },
        );
    }

    /// The file's root table.
    pub(crate) fn read_root(&mut self, entries: &[Entry], config: &mut Config) {
        for entry in entries {
            let path = entry.key.as_str();
            match path {
                "data_dir" => {
                    if let Some(text) = self.string(entry, path) {
                        config.data_dir = PathBuf::from(text);
                    }
                }
                "durability" => self.choice(entry, path, &mut config.durability),
                "sys_interval_secs" => self.unsigned(entry, path, &mut config.sys_interval_secs),
                "log_level" => {
                    if let Some(text) = self.string(entry, path) {
                        config.log_level = text;
                    }
                }
                "listener" => self.read_listeners(entry, config),
                "limits" => self.read_limits(entry, config),
                "session" => self.read_session(entry, config),
                "mqtt" => self.read_mqtt(entry, config),
                "auth" => self.read_auth(entry, config),
                "http" => self.read_http(entry, config),
                _ => self.unknown(entry, "the top level", ROOT_KEYS),
            }
        }
    }

    fn read_limits(&mut self, section: &Entry, config: &mut Config) {
        let Some(entries) = self.table(section, "limits") else {
            return;
        };
        let limits = &mut config.limits;
        for entry in entries {
            let path = format!("limits.{}", entry.key);
            let path = path.as_str();
            match entry.key.as_str() {
                "max_connections" => self.unsigned(entry, path, &mut limits.max_connections),
                "max_packet_size" => self.unsigned(entry, path, &mut limits.max_packet_size),
                "connect_timeout_secs" => {
                    self.unsigned(entry, path, &mut limits.connect_timeout_secs);
                }
                "park_idle_after_ms" => {
                    self.unsigned(entry, path, &mut limits.park_idle_after_ms);
                }
                "max_inflight" => self.unsigned(entry, path, &mut limits.max_inflight),
                "max_queued_messages" => {
                    self.unsigned(entry, path, &mut limits.max_queued_messages);
                }
                "max_queued_bytes" => self.unsigned(entry, path, &mut limits.max_queued_bytes),
                "max_topic_length" => self.unsigned(entry, path, &mut limits.max_topic_length),
                "max_topic_levels" => self.unsigned(entry, path, &mut limits.max_topic_levels),
                "max_subscriptions_per_client" => {
                    self.unsigned(entry, path, &mut limits.max_subscriptions_per_client);
                }
                "max_retained_messages" => {
                    self.unsigned(entry, path, &mut limits.max_retained_messages);
                }
                "max_retained_bytes" => {
                    self.unsigned(entry, path, &mut limits.max_retained_bytes);
                }
                "max_client_id_length" => {
                    self.unsigned(entry, path, &mut limits.max_client_id_length);
                }
                "max_retained_per_subscribe" => {
                    self.unsigned(entry, path, &mut limits.max_retained_per_subscribe);
                }
                "connection_rate_per_address" => {
                    self.unsigned(entry, path, &mut limits.connection_rate_per_address);
                }
                "connection_burst_per_address" => {
                    self.unsigned(entry, path, &mut limits.connection_burst_per_address);
                }
                "client_message_rate" => {
                    self.unsigned(entry, path, &mut limits.client_message_rate);
                }
                "client_byte_rate" => self.unsigned(entry, path, &mut limits.client_byte_rate),
                "max_queued_bytes_total" => {
                    self.unsigned(entry, path, &mut limits.max_queued_bytes_total);
                }
                _ => self.unknown(entry, "[limits]", LIMITS_KEYS),
            }
        }
    }

    fn read_session(&mut self, section: &Entry, config: &mut Config) {
        let Some(entries) = self.table(section, "session") else {
            return;
        };
        let session = &mut config.session;
        for entry in entries {
            let path = format!("session.{}", entry.key);
            let path = path.as_str();
            match entry.key.as_str() {
                "max_session_expiry_secs" => {
                    self.unsigned(entry, path, &mut session.max_session_expiry_secs);
                }
                "queue_qos0_offline" => {
                    self.boolean(entry, path, &mut session.queue_qos0_offline);
                }
                "max_keep_alive_secs" => {
                    self.unsigned(entry, path, &mut session.max_keep_alive_secs);
                }
                "topic_alias_maximum" => {
                    self.unsigned(entry, path, &mut session.topic_alias_maximum);
                }
                "allow_zero_length_client_id" => {
                    self.boolean(entry, path, &mut session.allow_zero_length_client_id);
                }
                _ => self.unknown(entry, "[session]", SESSION_KEYS),
            }
        }
    }

    fn read_mqtt(&mut self, section: &Entry, config: &mut Config) {
        let Some(entries) = self.table(section, "mqtt") else {
            return;
        };
        let mqtt = &mut config.mqtt;
        for entry in entries {
            let path = format!("mqtt.{}", entry.key);
            let path = path.as_str();
            match entry.key.as_str() {
                "maximum_qos" => self.unsigned(entry, path, &mut mqtt.maximum_qos),
                "retain_available" => self.boolean(entry, path, &mut mqtt.retain_available),
                "wildcard_subscriptions" => {
                    self.boolean(entry, path, &mut mqtt.wildcard_subscriptions);
                }
                "shared_subscriptions" => {
                    self.boolean(entry, path, &mut mqtt.shared_subscriptions);
                }
                "subscription_identifiers" => {
                    self.boolean(entry, path, &mut mqtt.subscription_identifiers);
                }
                _ => self.unknown(entry, "[mqtt]", MQTT_KEYS),
            }
        }
    }

    fn read_auth(&mut self, section: &Entry, config: &mut Config) {
        let Some(entries) = self.table(section, "auth") else {
            return;
        };
        let auth = &mut config.auth;
        for entry in entries {
            let path = format!("auth.{}", entry.key);
            let path = path.as_str();
            match entry.key.as_str() {
                "password_file" => {
                    if let Some(text) = self.string(entry, path) {
                        auth.password_file = Some(PathBuf::from(text));
                    }
                }
                "acl_file" => {
                    if let Some(text) = self.string(entry, path) {
                        auth.acl_file = Some(PathBuf::from(text));
                    }
                }
                "allow_anonymous" => match entry.node.value {
                    Value::Boolean(allow) => {
                        auth.allow_anonymous = Some(allow);
                        self.read_ok(path, entry);
                    }
                    _ => self.wrong_type(entry, path, "a boolean (true or false)"),
                },
                "failed_login_limit" => {
                    self.unsigned(entry, path, &mut auth.failed_login_limit);
                }
                "failed_login_window_secs" => {
                    self.unsigned(entry, path, &mut auth.failed_login_window_secs);
                }
                "failed_login_delay_secs" => {
                    self.unsigned(entry, path, &mut auth.failed_login_delay_secs);
                }
                "failed_login_max_delay_secs" => {
                    self.unsigned(entry, path, &mut auth.failed_login_max_delay_secs);
                }
                "failed_login_max_addresses" => {
                    self.unsigned(entry, path, &mut auth.failed_login_max_addresses);
                }
                _ => self.unknown(entry, "[auth]", AUTH_KEYS),
            }
        }
    }

    fn read_http(&mut self, section: &Entry, config: &mut Config) {
        let Some(entries) = self.table(section, "http") else {
            return;
        };
        let http = &mut config.http;
        for entry in entries {
            let path = format!("http.{}", entry.key);
            let path = path.as_str();
            match entry.key.as_str() {
                "enabled" => self.boolean(entry, path, &mut http.enabled),
                "address" => {
                    if let Some(address) = self.address(entry, path) {
                        http.address = address;
                    }
                }
                "allow_anonymous" => match entry.node.value {
                    Value::Boolean(allow) => {
                        http.allow_anonymous = Some(allow);
                        self.read_ok(path, entry);
                    }
                    _ => self.wrong_type(entry, path, "a boolean (true or false)"),
                },
                "tokens" => {
                    if let Some(tokens) = self.strings(entry, path) {
                        http.tokens = tokens;
                    }
                }
                "token_file" => {
                    if let Some(text) = self.string(entry, path) {
                        http.token_file = Some(PathBuf::from(text));
                    }
                }
                "admin_user" => {
                    if let Some(text) = self.string(entry, path) {
                        http.admin_user = Some(text);
                    }
                }
                "admin_password_hash" => {
                    if let Some(text) = self.string(entry, path) {
                        http.admin_password_hash = Some(text);
                    }
                }
                "cert_file" => {
                    if let Some(text) = self.string(entry, path) {
                        http.cert_file = Some(PathBuf::from(text));
                    }
                }
                "key_file" => {
                    if let Some(text) = self.string(entry, path) {
                        http.key_file = Some(PathBuf::from(text));
                    }
                }
                _ => self.unknown(entry, "[http]", HTTP_KEYS),
            }
        }
    }

    /// `[[listener]]`: when present at all, the file's list replaces the
    /// default listener. An entry with a problem is reported and left out.
    fn read_listeners(&mut self, section: &Entry, config: &mut Config) {
        let Value::Array(tables) = &section.node.value else {
            self.wrong_type(section, "listener", "an array of tables ([[listener]])");
            return;
        };
        self.read_ok("listener", section);
        config.listeners.clear();
        self.sources.listener_labels.clear();
        for (index, node) in tables.iter().enumerate() {
            let label = format!("listener[{index}]");
            if let Some(listener) = self.read_listener(section, node, &label) {
                config.listeners.push(listener);
                self.sources.listener_labels.push(label);
            } else {
                // A refused entry must not make the list look empty or free
                // of clashes.
                self.sources.failed.insert("listener".to_owned());
            }
        }
    }

    fn read_listener(
        &mut self,
        section: &Entry,
        node: &Node,
        label: &str,
    ) -> Option<ListenerConfig> {
        let span = node.span.clone().or_else(|| section.key_span.clone());
        let Value::Table(entries) = &node.value else {
            self.error_at(
                span,
                Problem::WrongType {
                    key: label.to_owned(),
                    expected: "a table",
                    found: node.value.type_name(),
                },
            );
            return None;
        };
        let mut kind = ListenerKind::Tcp;
        let mut address = None;
        let mut name = None;
        let mut max_connections = None;
        // The transport settings, read into a default listener.
        let mut transport = ListenerConfig::default();
        let errors_before = self.errors.len();
        for entry in entries {
            let path = format!("{label}.{}", entry.key);
            let path = path.as_str();
            match entry.key.as_str() {
                "kind" => self.choice(entry, path, &mut kind),
                "address" => address = self.address(entry, path),
                "name" => name = self.string(entry, path),
                "max_connections" => max_connections = self.integer(entry, path),
                "allow_anonymous" => match entry.node.value {
                    Value::Boolean(allow) => transport.allow_anonymous = Some(allow),
                    _ => self.wrong_type(entry, path, "a boolean (true or false)"),
                },
                "password_file" => {
                    transport.password_file = self.string(entry, path).map(PathBuf::from);
                }
                "acl_file" => transport.acl_file = self.string(entry, path).map(PathBuf::from),
                "connection_rate_per_address" => {
                    transport.connection_rate_per_address = self.integer(entry, path);
                }
                "connection_burst_per_address" => {
                    transport.connection_burst_per_address = self.integer(entry, path);
                }
                "client_message_rate" => transport.client_message_rate = self.integer(entry, path),
                "client_byte_rate" => transport.client_byte_rate = self.integer(entry, path),
                "allowed_origins" => {
                    if let Some(origins) = self.strings(entry, path) {
                        transport.allowed_origins = origins;
                    }
                }
                "cert_file" => transport.cert_file = self.string(entry, path).map(PathBuf::from),
                "key_file" => transport.key_file = self.string(entry, path).map(PathBuf::from),
                "client_ca_file" => {
                    transport.client_ca_file = self.string(entry, path).map(PathBuf::from);
                }
                "require_client_cert" => {
                    self.boolean(entry, path, &mut transport.require_client_cert);
                }
                "use_subject_as_username" => {
                    self.boolean(entry, path, &mut transport.use_subject_as_username);
                }
                "path" => transport.path = self.string(entry, path),
                _ => self.unknown(entry, label, LISTENER_KEYS),
            }
        }
        let has_address_key = entries.iter().any(|entry| entry.key == "address");
        if !has_address_key {
            self.error_at(
                span,
                Problem::MissingKey {
                    key: format!("{label}.address"),
                },
            );
        }
        if self.errors.len() != errors_before {
            return None;
        }
        Some(ListenerConfig {
            kind,
            address: address?,
            name,
            max_connections,
            ..transport
        })
    }

    /// The entries of a section, or `None` (reported) when it is not a table.
    fn table<'e>(&mut self, entry: &'e Entry, path: &str) -> Option<&'e [Entry]> {
        match &entry.node.value {
            Value::Table(entries) => Some(entries),
            _ => {
                self.wrong_type(entry, path, "a table");
                None
            }
        }
    }

    /// Reads an unsigned integer into `slot`, leaving it alone (and
    /// reporting) when the value is not an integer or does not fit the field.
    fn unsigned<T: Unsigned>(&mut self, entry: &Entry, path: &str, slot: &mut T) {
        if let Some(value) = self.integer(entry, path) {
            *slot = value;
        }
    }

    fn integer<T: Unsigned>(&mut self, entry: &Entry, path: &str) -> Option<T> {
        let Value::Integer(number) = entry.node.value else {
            self.wrong_type(entry, path, "an integer");
            return None;
        };
        let value = u64::try_from(number).ok().and_then(T::from_u64);
        if value.is_some() {
            self.read_ok(path, entry);
        } else {
            self.sources.failed.insert(path.to_owned());
            self.error_at(
                entry.value_span(),
                Problem::OutOfRange {
                    key: path.to_owned(),
                    value: number.to_string(),
                    allowed: format!("must be from 0 to {}", T::MAX),
                },
            );
        }
        value
    }

    fn boolean(&mut self, entry: &Entry, path: &str, slot: &mut bool) {
        match entry.node.value {
            Value::Boolean(value) => {
                *slot = value;
                self.read_ok(path, entry);
            }
            _ => self.wrong_type(entry, path, "a boolean (true or false)"),
        }
    }

    /// An array of strings (an empty array included).
    fn strings(&mut self, entry: &Entry, path: &str) -> Option<Vec<String>> {
        let Value::Array(items) = &entry.node.value else {
            self.wrong_type(entry, path, "an array of strings");
            return None;
        };
        let mut strings = Vec::with_capacity(items.len());
        for item in items {
            match &item.value {
                Value::String(text) => strings.push(text.clone()),
                _ => {
                    self.wrong_type(entry, path, "an array of strings");
                    return None;
                }
            }
        }
        self.read_ok(path, entry);
        Some(strings)
    }

    fn string(&mut self, entry: &Entry, path: &str) -> Option<String> {
        match &entry.node.value {
            Value::String(text) => {
                self.read_ok(path, entry);
                Some(text.clone())
            }
            _ => {
                self.wrong_type(entry, path, "a string");
                None
            }
        }
    }

    fn choice<T: Choice>(&mut self, entry: &Entry, path: &str, slot: &mut T) {
        let Value::String(text) = &entry.node.value else {
            self.wrong_type(entry, path, "a string");
            return;
        };
        match T::from_name(text) {
            Some(value) => {
                *slot = value;
                self.read_ok(path, entry);
            }
            None => {
                self.sources.failed.insert(path.to_owned());
                self.error_at(
                    entry.value_span(),
                    Problem::InvalidValue {
                        key: path.to_owned(),
                        value: format!("{text:?}"),
                        expected: format!("expected {}", T::expected()),
                    },
                );
            }
        }
    }

    fn address(&mut self, entry: &Entry, path: &str) -> Option<SocketAddr> {
        let Value::String(text) = &entry.node.value else {
            self.wrong_type(entry, path, "a string");
            return None;
        };
        match text.parse::<SocketAddr>() {
            Ok(address) => {
                self.read_ok(path, entry);
                Some(address)
            }
            Err(_) => {
                self.sources.failed.insert(path.to_owned());
                self.error_at(
                    entry.value_span(),
                    Problem::InvalidValue {
                        key: path.to_owned(),
                        value: format!("{text:?}"),
                        expected: ADDRESS_EXPECTED.to_owned(),
                    },
                );
                None
            }
        }
    }
}

const ADDRESS_EXPECTED: &str =
    "expected an IP address and port such as \"127.0.0.1:1883\" or \"[::1]:1883\" (host names are not resolved)";

/// Applies the command line and environment on top of `config`.
///
/// `--listen` replaces every `tcp` listener (from the file or the default)
/// and keeps the others: the flag answers "where does plain MQTT listen",
/// while TLS and WebSocket listeners need settings a flag cannot carry.
/// `--listen-tls`, `--listen-ws` and `--listen-wss` do the same for their
/// kind, with `--cert` and `--key` for the TLS ones.
pub(crate) fn apply_overrides(config: &mut Config, overrides: &Overrides, sources: &mut Sources) {
    let flag_listeners = [
        (ListenerKind::Tcp, "listen", &overrides.listen),
        (ListenerKind::Tls, "listen_tls", &overrides.listen_tls),
        (ListenerKind::Ws, "listen_ws", &overrides.listen_ws),
        (ListenerKind::Wss, "listen_wss", &overrides.listen_wss),
    ];
    for (kind, flag, addresses) in flag_listeners {
        if !addresses.is_empty() {
            replace_listeners(config, sources, kind, flag, addresses, overrides);
        }
    }
    sources.unused_certificate_flags = (overrides.cert_file.is_some()
        || overrides.key_file.is_some())
        && overrides.listen_tls.is_empty()
        && overrides.listen_wss.is_empty();
    if let Some(data_dir) = &overrides.data_dir {
        config.data_dir.clone_from(data_dir);
        sources.set_overridden("data_dir");
    }
    if let Some(log_level) = &overrides.log_level {
        config.log_level.clone_from(log_level);
        sources.set_overridden("log_level");
    }
    if let Some(durability) = overrides.durability {
        config.durability = durability;
        sources.set_overridden("durability");
    }
    if let Some(seconds) = overrides.sys_interval_secs {
        config.sys_interval_secs = seconds;
        sources.set_overridden("sys_interval_secs");
    }
    if let Some(count) = overrides.max_connections {
        config.limits.max_connections = count;
        sources.set_overridden("limits.max_connections");
    }
    if let Some(bytes) = overrides.max_packet_size {
        config.limits.max_packet_size = bytes;
        sources.set_overridden("limits.max_packet_size");
    }
    if let Some(seconds) = overrides.connect_timeout_secs {
        config.limits.connect_timeout_secs = seconds;
        sources.set_overridden("limits.connect_timeout_secs");
    }
    if let Some(milliseconds) = overrides.park_idle_after_ms {
        config.limits.park_idle_after_ms = milliseconds;
        sources.set_overridden("limits.park_idle_after_ms");
    }
    if let Some(count) = overrides.max_inflight {
        config.limits.max_inflight = count;
        sources.set_overridden("limits.max_inflight");
    }
    if let Some(seconds) = overrides.max_session_expiry_secs {
        config.session.max_session_expiry_secs = seconds;
        sources.set_overridden("session.max_session_expiry_secs");
    }
    if let Some(path) = &overrides.password_file {
        config.auth.password_file = Some(path.clone());
        sources.set_overridden("auth.password_file");
    }
    if let Some(path) = &overrides.acl_file {
        config.auth.acl_file = Some(path.clone());
        sources.set_overridden("auth.acl_file");
    }
    if let Some(address) = overrides.http_address {
        config.http.address = address;
        config.http.enabled = true;
        sources.set_overridden("http.address");
        sources.set_overridden("http.enabled");
    }
    if let Some(enabled) = overrides.http_enabled {
        config.http.enabled = enabled;
        sources.set_overridden("http.enabled");
    }
    if let Some(path) = &overrides.http_cert_file {
        config.http.cert_file = Some(path.clone());
        sources.set_overridden("http.cert_file");
    }
    if let Some(path) = &overrides.http_key_file {
        config.http.key_file = Some(path.clone());
        sources.set_overridden("http.key_file");
    }
    if let Some(allow) = overrides.allow_anonymous {
        config.auth.allow_anonymous = Some(allow);
        sources.set_overridden("auth.allow_anonymous");
    }
}

/// Replaces every listener of `kind` with one per address from the flag
/// `flag` (labelled `flag[i]` in messages).
fn replace_listeners(
    config: &mut Config,
    sources: &mut Sources,
    kind: ListenerKind,
    flag: &str,
    addresses: &[SocketAddr],
    overrides: &Overrides,
) {
    let labels = std::mem::take(&mut sources.listener_labels);
    let (kept, kept_labels): (Vec<_>, Vec<_>) = std::mem::take(&mut config.listeners)
        .into_iter()
        .zip(labels)
        .filter(|(listener, _)| listener.kind != kind)
        .unzip();
    config.listeners = kept;
    sources.listener_labels = kept_labels;
    for (index, address) in addresses.iter().enumerate() {
        let label = format!("{flag}[{index}]");
        sources.set_overridden(&format!("{label}.address"));
        let mut listener = ListenerConfig {
            kind,
            ..ListenerConfig::tcp(*address)
        };
        if kind.uses_tls() {
            listener.cert_file.clone_from(&overrides.cert_file);
            listener.key_file.clone_from(&overrides.key_file);
            sources.set_overridden(&format!("{label}.cert_file"));
            sources.set_overridden(&format!("{label}.key_file"));
        }
        config.listeners.push(listener);
        sources.listener_labels.push(label);
    }
    // The flag's list stands on its own: entries refused in the file (of
    // its kind or not) no longer excuse an empty list.
    sources.failed.remove("listener");
    sources.set_overridden("listener");
}

/// The known key closest to a misspelt one, when close enough to be a typo.
fn closest(key: &str, known: &'static [&'static str]) -> Option<&'static str> {
    let tolerance = (key.chars().count() / 3).max(2);
    known
        .iter()
        .map(|candidate| (edit_distance(key, candidate), *candidate))
        .filter(|(distance, _)| *distance <= tolerance)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over characters.
fn edit_distance(from: &str, to: &str) -> usize {
    let to: Vec<char> = to.chars().collect();
    let mut previous: Vec<usize> = (0..=to.len()).collect();
    for (row, from_char) in from.chars().enumerate() {
        let mut current = Vec::with_capacity(to.len() + 1);
        current.push(row + 1);
        for ((to_char, diagonal), above) in to.iter().zip(&previous).zip(previous.iter().skip(1)) {
            let left = current.last().copied().unwrap_or(usize::MAX);
            let substitution = diagonal.saturating_add(usize::from(from_char != *to_char));
            let best = substitution
                .min(above.saturating_add(1))
                .min(left.saturating_add(1));
            current.push(best);
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("max_inflight", "max_inflight"), 0);
        assert_eq!(edit_distance("max_infligt", "max_inflight"), 1);
    }

    #[test]
    fn closest_suggests_only_near_keys() {
        assert_eq!(
            closest("max_pakcet_size", LIMITS_KEYS),
            Some("max_packet_size")
        );
        assert_eq!(closest("durabilty", ROOT_KEYS), Some("durability"));
        assert_eq!(closest("colour", ROOT_KEYS), None);
    }

    #[test]
    fn failed_covers_whole_sections() {
        let mut sources = Sources::new("x");
        sources.failed.insert("limits".to_owned());
        assert!(sources.failed("limits"));
        assert!(sources.failed("limits.max_packet_size"));
        assert!(!sources.failed("limits_other"));
        assert!(!sources.failed("session.max_keep_alive_secs"));
    }
}
