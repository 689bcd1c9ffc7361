//! Switchboard's settings: typed structs, a default with its reason for every
//! setting, and loading that reports every problem at once.
//!
//! # Layers
//!
//! A setting's value is taken from the last of these layers that gives it:
//!
//! 1. the built-in defaults (the `DEFAULT_*` constants, each with its reason);
//! 2. the config file (TOML; see `switchboard.example.toml` at the repository
//!    root for every setting, its default and what it is for);
//! 3. environment variables (`SWITCHBOARD_LISTEN`, `SWITCHBOARD_DATA_DIR`,
//!    `SWITCHBOARD_LOG_LEVEL`, ...);
//! 4. command-line flags (`--listen`, `--data-dir`, `--log-level`, ...).
//!
//! The binary reads layers 3 and 4 together (clap's `env` support: a flag
//! wins over its variable) and hands them over as one [`Overrides`]; this
//! crate applies them on top of the file. Only the handful of settings in
//! [`Overrides`] can be given that way; everything else lives in the file.
//!
//! `--listen` (one or more addresses) replaces every `tcp` listener, from the
//! file or the default, and keeps listeners of other kinds: it answers "where
//! does plain MQTT listen". `--listen-tls`, `--listen-ws` and `--listen-wss`
//! do the same for their kind; the listeners they make use the WebSocket
//! path `/mqtt` and the certificate of `--cert` and `--key`, and verify no
//! client certificates (that, and anything else a flag cannot carry, is for
//! `[[listener]]` tables in the file).
//!
//! # Errors
//!
//! Loading does not stop at the first problem. Unknown keys (a typo must not
//! silently leave a setting at its default), values of the wrong type, values
//! out of range and settings that contradict each other are all collected and
//! returned together as [`ConfigErrors`], each naming the file, line and
//! column (or the command line and environment) and the problem. Only a TOML
//! syntax error stops the reading of a file, since nothing after it can be
//! trusted.
//!
//! Validation runs on the fully layered result, so a value is judged the same
//! way whatever layer it came from.

mod error;
mod load;
mod settings;
mod tree;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use error::{ConfigError, ConfigErrors, Position, Problem, DEFAULTS_ORIGIN, OVERRIDES_ORIGIN};
pub use settings::*;

use load::{apply_overrides, Reader, Sources};

/// Settings given on the command line or in the environment; the binary fills
/// this in (a flag wins over its environment variable) and every field left
/// `None` (or empty) keeps the value from the file or the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--listen` / `SWITCHBOARD_LISTEN`: when not empty, replaces every `tcp`
    /// listener with one plain TCP listener per address; other kinds stay.
    pub listen: Vec<SocketAddr>,
    /// `--listen-tls` / `SWITCHBOARD_LISTEN_TLS`: when not empty, replaces
    /// every `tls` listener with one per address, using `cert_file` and
    /// `key_file`; other kinds stay.
    pub listen_tls: Vec<SocketAddr>,
    /// `--listen-ws` / `SWITCHBOARD_LISTEN_WS`: when not empty, replaces
    /// every `ws` listener with one per address, on the path `/mqtt`.
    pub listen_ws: Vec<SocketAddr>,
    /// `--listen-wss` / `SWITCHBOARD_LISTEN_WSS`: when not empty, replaces
    /// every `wss` listener with one per address, on the path `/mqtt`, using
    /// `cert_file` and `key_file`.
    pub listen_wss: Vec<SocketAddr>,
    /// `--cert` / `SWITCHBOARD_CERT`: the certificate chain (PEM) of the
    /// listeners made by `listen_tls` and `listen_wss`, and only those.
    pub cert_file: Option<PathBuf>,
    /// `--key` / `SWITCHBOARD_KEY`: the private key (PEM) of the listeners
    /// made by `listen_tls` and `listen_wss`, and only those.
    pub key_file: Option<PathBuf>,
    /// `--data-dir` / `SWITCHBOARD_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--log-level` / `SWITCHBOARD_LOG_LEVEL`.
    pub log_level: Option<String>,
    /// `--durability` / `SWITCHBOARD_DURABILITY`.
    pub durability: Option<Durability>,
    /// `--sys-interval-secs` / `SWITCHBOARD_SYS_INTERVAL_SECS`.
    pub sys_interval_secs: Option<u64>,
    /// `--max-connections` / `SWITCHBOARD_MAX_CONNECTIONS`.
    pub max_connections: Option<usize>,
    /// `--max-packet-size` / `SWITCHBOARD_MAX_PACKET_SIZE`.
    pub max_packet_size: Option<u32>,
    /// `--connect-timeout-secs` / `SWITCHBOARD_CONNECT_TIMEOUT_SECS`.
    pub connect_timeout_secs: Option<u64>,
    /// `--park-idle-after-ms` / `SWITCHBOARD_PARK_IDLE_AFTER_MS`.
    pub park_idle_after_ms: Option<u64>,
    /// `--max-inflight` / `SWITCHBOARD_MAX_INFLIGHT`.
    pub max_inflight: Option<u16>,
    /// `--max-session-expiry-secs` / `SWITCHBOARD_MAX_SESSION_EXPIRY_SECS`.
    pub max_session_expiry_secs: Option<u32>,
    /// `--password-file` / `SWITCHBOARD_PASSWORD_FILE`.
    pub password_file: Option<PathBuf>,
    /// `--acl-file` / `SWITCHBOARD_ACL_FILE`.
    pub acl_file: Option<PathBuf>,
    /// `--allow-anonymous` / `SWITCHBOARD_ALLOW_ANONYMOUS`.
    pub allow_anonymous: Option<bool>,
    /// `--http` / `SWITCHBOARD_HTTP`: the HTTP listener's address (and turns
    /// it on).
    pub http_address: Option<SocketAddr>,
    /// `--no-http`: `Some(false)` turns the HTTP listener off.
    pub http_enabled: Option<bool>,
    /// `--http-cert` / `SWITCHBOARD_HTTP_CERT`: the HTTP listener's
    /// certificate chain (PEM); with `http_key_file` it serves HTTPS.
    pub http_cert_file: Option<PathBuf>,
    /// `--http-key` / `SWITCHBOARD_HTTP_KEY`: the key of `http_cert_file`.
    pub http_key_file: Option<PathBuf>,
}

impl Config {
    /// Builds the configuration from the defaults, the file at `path` (if
    /// any) and `overrides`, then validates the result.
    ///
    /// A `path` that cannot be read (missing, unreadable, not UTF-8) is an
    /// error naming the path: a file asked for explicitly must not be
    /// silently replaced by defaults. Problems with the overrides are still
    /// reported alongside it.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigErrors> {
        let Some(path) = path else {
            return resolve(None, overrides, DEFAULTS_ORIGIN);
        };
        let origin = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => resolve(Some((&text, &origin)), overrides, &origin),
            Err(error) => {
                let mut errors = vec![ConfigError {
                    origin: origin.clone(),
                    position: None,
                    problem: Problem::Read {
                        message: error.to_string(),
                    },
                }];
                let mut sources = Sources::new(&origin);
                sources.file_unusable = true;
                let mut config = Config::default();
                sources.label_listeners(&config);
                apply_overrides(&mut config, overrides, &mut sources);
                errors.extend(validate::validate(&config, &sources));
                Err(ConfigErrors(errors))
            }
        }
    }

    /// Parses TOML `text` on top of the defaults and validates the result.
    /// `origin` names the text in messages (usually its file path).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
        resolve(Some((text, origin)), &Overrides::default(), origin)
    }

    /// Checks a configuration built or changed in code. Problems are reported
    /// without positions, as there is no file to point into.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut sources = Sources::new("configuration");
        sources.label_listeners(self);
        let errors = validate::validate(self, &sources);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

/// Defaults, then the file's text (if any), then the overrides, then
/// validation of the whole.
fn resolve(
    file: Option<(&str, &str)>,
    overrides: &Overrides,
    fallback_origin: &str,
) -> Result<Config, ConfigErrors> {
    let mut config = Config::default();
    let mut sources = Sources::new(fallback_origin);
    sources.label_listeners(&config);
    let mut errors = Vec::new();
    if let Some((text, origin)) = file {
        let mut reader = Reader::new(origin, text, &mut sources);
        match tree::parse(text) {
            Ok(root) => reader.read_root(&root, &mut config),
            Err(syntax) => reader.error_at(
                syntax.span,
                Problem::Syntax {
                    message: syntax.message,
                },
            ),
        }
        let unusable = matches!(
            reader.errors.first(),
            Some(ConfigError {
                problem: Problem::Syntax { .. },
                ..
            })
        );
        errors = reader.errors;
        sources.file_unusable = unusable;
    }
    apply_overrides(&mut config, overrides, &mut sources);
    errors.extend(validate::validate(&config, &sources));
    sort_for_reading(&mut errors, sources.file_origin.as_deref());
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Orders problems as an operator would fix them: the file's from top to
/// bottom (reading and validation find them in different passes), then the
/// rest in the order found.
fn sort_for_reading(errors: &mut [ConfigError], file_origin: Option<&str>) {
    errors.sort_by_key(|error| {
        let in_file = file_origin == Some(error.origin.as_str());
        (!in_file, error.position)
    });
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod listener_tests;
