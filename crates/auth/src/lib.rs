//! Authentication and access control for Switchboard: a password file of
//! argon2id hashes, an access control list, and throttling of failed logins.
//!
//! No sockets here and no clock: the server asks [`Auth`] whether a CONNECT
//! may go ahead, and whether a PUBLISH, SUBSCRIBE or delivery is allowed;
//! time is passed in. Checking a password costs tens of milliseconds of CPU
//! on purpose, so callers in an async runtime run [`Auth::authenticate`] on
//! a blocking thread (see [`Auth::needs_hashing`]).
//!
//! # The password file
//!
//! One user per line, `user:hash`, where `hash` is an argon2id hash in PHC
//! string format:
//!
//! ```text
//! # comments start with `#`; blank lines are ignored
//! alice:$argon2id$v=19$m=19456,t=2,p=1$nJFonyPead82dcXmmjO56A$z7Jh/mPYelv+T4/Top5q7hLo21s71LeYh0L6anA2hyw
//! ```
//!
//! - Only argon2id, version 19, is accepted. A line whose hash is anything
//!   else, a password written in clear in particular, is refused with its
//!   line number and the command that fixes it:
//!   `switchboard passwd FILE USER` (which hashes with [`Cost::DEFAULT`]).
//!   Memory costs above [`MAX_MEMORY_KIB`] are refused as typos.
//! - The user name is everything before the first `:`. It may not be empty,
//!   start with `#`, hold control characters or begin or end with spaces
//!   ([`check_user_name`]). Each user appears once.
//! - Every bad line is reported at once, as `file:line: problem`.
//!
//! # The ACL file
//!
//! ```text
//! # Rules before any `user` line, or after `anonymous`, are for clients
//! # that give no user name.
//! topic read public/#
//!
//! user alice
//! topic readwrite alice/#
//! topic read sensors/+/temperature
//! topic deny sensors/secret/#
//!
//! # Patterns apply to every client, with %c the client id and %u the user name.
//! pattern readwrite devices/%c/#
//! pattern read users/%u/inbox/#
//! ```
//!
//! - `user <name>` starts the rules of one user (several sections of one
//!   name add up); `anonymous` starts the rules of clients without a user
//!   name.
//! - `topic [read|write|readwrite|deny] <filter>` is a rule of the current
//!   section; `pattern [read|write|readwrite|deny] <filter>` is a rule for
//!   every client, wherever it is written. The access may be left out
//!   (`readwrite`); the filter is the rest of the line, so it may hold
//!   spaces. `read` allows subscribing and receiving, `write` publishing,
//!   `deny` takes both away.
//! - Filters are MQTT topic filters with `+` and `#`. As in subscriptions, a
//!   filter starting with a wildcard does not match topics starting with `$`:
//!   grant `$SYS/#` explicitly.
//! - `%c` and `%u` are substituted in patterns only. A pattern with `%u` does
//!   not apply to clients without a user name, and a pattern does not apply
//!   when the client id or user name it would insert is empty or holds `/`,
//!   `+` or `#` (client `a/b` must not get the rights of `devices/a/...`).
//! - `#` starts a comment only at the start of a line, since `#` is also a
//!   wildcard. Unknown words and invalid filters are errors with their line.
//!
//! **Evaluation order** ([`Acl`]): (1) a `deny` rule of the client's section
//! or a `deny` pattern that applies refuses; (2) otherwise a rule of the
//! client's own section (its `user` section, or the anonymous section)
//! granting the access allows; (3) otherwise a pattern granting it allows;
//! (4) otherwise the request is refused. With no ACL file configured every
//! request is allowed.
//!
//! What "applies" means per request:
//! - PUBLISH to topic `t` ([`Auth::can_publish`]): the rule's filter matches `t`.
//! - delivery of a message on topic `t` ([`Auth::can_receive`]), retained or
//!   live: the rule's filter matches `t`.
//! - SUBSCRIBE to filter `f` ([`Auth::can_subscribe`]): the rule's filter
//!   *covers* `f`, i.e. matches every topic `f` can match ([`covers`]). So a
//!   `read a/#` rule allows subscribing to `a/#`, `a/b` and `a/+/c`, but not
//!   to `#` or `+/b`. A `deny` rule that covers only part of `f` does not
//!   refuse the subscription; the messages it covers are withheld one by one.
//!   Shared subscriptions are checked against the filter after
//!   `$share/{group}/`.
//!
//! # Anonymous clients
//!
//! A client that gives no user name is anonymous. Whether it may connect is
//! decided per listener by [`anonymous_allowed`]: the `allow_anonymous`
//! setting if given, otherwise yes on a loopback listener and no on any
//! other. Without a password file nobody's user name can be checked, so
//! every client counts as anonymous for that rule; its user name is still
//! used for the ACL (as in Mosquitto), which is why an ACL with `user`
//! sections wants a password file.
//!
//! # Reload
//!
//! [`Auth::reload`] reads both files again and swaps them in only if both
//! are valid; otherwise the old ones stay and the errors are logged and
//! returned.

mod acl;
mod error;
mod password;
mod throttle;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

pub use acl::{covers, Access, Acl};
pub use error::{AuthError, AuthErrors, FileKind, HashError, LineError, Problem};
pub use password::{
    check_user_name, hash_password, hash_password_with_cost, remove_user, set_user, Change, Cost,
    PasswordFile, MAX_MEMORY_KIB,
};
pub use throttle::{
    Throttle, ThrottleOptions, DEFAULT_DELAY, DEFAULT_MAX_ADDRESSES, DEFAULT_MAX_DELAY,
    DEFAULT_MAX_FAILURES, DEFAULT_WINDOW,
};

/// Whether clients without a user name may connect on a listener bound to
/// `listener`: `setting` when given, otherwise only on loopback (the safe
/// default: a broker reachable from the network does not take anonymous
/// clients unless told to). An IPv4-mapped IPv6 loopback counts as loopback.
pub fn anonymous_allowed(setting: Option<bool>, listener: IpAddr) -> bool {
    setting.unwrap_or_else(|| listener.to_canonical().is_loopback())
}

/// Where the files are, and the throttling policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthOptions {
    /// `None`: no passwords are checked.
    pub password_file: Option<PathBuf>,
    /// `None`: everything is allowed.
    pub acl_file: Option<PathBuf>,
    pub throttle: ThrottleOptions,
}

/// Why a CONNECT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No user name where one is required (v5 0x87 Not authorized, 3.1.1
    /// return code 5).
    NotAuthorized,
    /// Unknown user, wrong or missing password (v5 0x86 Bad User Name or
    /// Password, 3.1.1 return code 4).
    BadCredentials,
}

/// The files as last loaded.
#[derive(Debug, Default)]
struct Files {
    passwords: Option<PasswordFile>,
    acl: Option<Acl>,
}

/// Authentication and access control, shared by every connection.
///
/// Lock rules: `files` is read by taking a snapshot (an `Arc` clone) and
/// released before any work, so a password check never holds it and a
/// reload never waits for one; `throttle` is held for one O(log n) update.
/// Neither is held while calling out, so callers may hold their own locks.
#[derive(Debug)]
pub struct Auth {
    options: AuthOptions,
    files: RwLock<Arc<Files>>,
    throttle: Mutex<Throttle>,
}

impl Default for Auth {
    fn default() -> Self {
        Auth::allow_all()
    }
}

impl Auth {
    /// No password file, no ACL, default throttling: everything allowed
    /// (anonymous clients still subject to [`anonymous_allowed`]).
    pub fn allow_all() -> Auth {
        Auth {
            files: RwLock::new(Arc::new(Files::default())),
            throttle: Mutex::new(Throttle::new(ThrottleOptions::default())),
            options: AuthOptions::default(),
        }
    }

    /// Loads the configured files; every problem in either is reported.
    pub fn load(options: AuthOptions) -> Result<Auth, AuthErrors> {
        let files = load_files(&options)?;
        Ok(Auth {
            files: RwLock::new(Arc::new(files)),
            throttle: Mutex::new(Throttle::new(options.throttle.clone())),
            options,
        })
    }

    pub fn options(&self) -> &AuthOptions {
        &self.options
    }

    /// Reads both files again. On success they replace the old ones at
    /// once (connections already open keep their login; their next PUBLISH,
    /// SUBSCRIBE and delivery are checked against the new ACL). On failure
    /// the old ones stay in force and the errors are logged and returned.
    pub fn reload(&self) -> Result<(), AuthErrors> {
        match load_files(&self.options) {
            Ok(files) => {
                let users = files.passwords.as_ref().map(PasswordFile::len);
                let rules = files.acl.as_ref().map(Acl::rule_count);
                *self.files.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(files);
                tracing::info!(
                    password_file = ?self.options.password_file,
                    acl_file = ?self.options.acl_file,
                    ?users,
                    ?rules,
                    "reloaded the password and ACL files"
                );
                Ok(())
            }
            Err(errors) => {
                tracing::error!("reload failed; keeping the files loaded before:\n{errors}");
                Err(errors)
            }
        }
    }

    fn files(&self) -> Arc<Files> {
        self.files
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether a password file is configured.
    pub fn has_password_file(&self) -> bool {
        self.options.password_file.is_some()
    }

    /// Whether an ACL file is configured (without one, every check allows).
    pub fn has_acl(&self) -> bool {
        self.options.acl_file.is_some()
    }

    /// Whether [`Auth::authenticate`] will run Argon2 for this user name (and
    /// so should run on a blocking thread).
    pub fn needs_hashing(&self, username: Option<&str>) -> bool {
        username.is_some() && self.files().passwords.is_some()
    }

    /// Whether `password` is `user`'s password; `false` without a password
    /// file. Slow on purpose, and as slow for an unknown user.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        self.files()
            .passwords
            .as_ref()
            .is_some_and(|passwords| passwords.verify(user, password))
    }

    /// Decides a CONNECT's credentials. `anonymous_allowed` is the listener's
    /// [`anonymous_allowed`].
    ///
    /// - No user name: allowed if anonymous clients are (a password without a
    ///   user name, which MQTT 5 permits, identifies nobody and is ignored).
    /// - A user name and a password file: the password must verify, else
    ///   [`Refusal::BadCredentials`] (also when the password is missing,
    ///   after spending the time of a check).
    /// - A user name and no password file: nothing can be verified, so the
    ///   client is treated as anonymous.
    pub fn authenticate(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
        anonymous_allowed: bool,
    ) -> Result<(), Refusal> {
        let files = self.files();
        let (Some(user), Some(passwords)) = (username, files.passwords.as_ref()) else {
            return if anonymous_allowed {
                Ok(())
            } else {
                Err(Refusal::NotAuthorized)
            };
        };
        let verified = match password {
            Some(password) => passwords.verify(user, password),
            None => passwords.verify_nothing(),
        };
        if verified {
            Ok(())
        } else {
            Err(Refusal::BadCredentials)
        }
    }

    /// See [`Acl::can_publish`]; `true` without an ACL.
    pub fn can_publish(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.files()
            .acl
            .as_ref()
            .is_none_or(|acl| acl.can_publish(client_id, username, topic))
    }

    /// See [`Acl::can_subscribe`]; `true` without an ACL.
    pub fn can_subscribe(&self, client_id: &str, username: Option<&str>, filter: &str) -> bool {
        self.files()
            .acl
            .as_ref()
            .is_none_or(|acl| acl.can_subscribe(client_id, username, filter))
    }

    /// See [`Acl::can_receive`]; `true` without an ACL.
    pub fn can_receive(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.files()
            .acl
            .as_ref()
            .is_none_or(|acl| acl.can_receive(client_id, username, topic))
    }

    /// How long to hold a CONNECT from `address` before checking it (see
    /// [`Throttle`]); `None` to go ahead.
    pub fn login_delay(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        self.throttle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .delay(address, now)
    }

    /// Counts a failed login from `address`.
    pub fn record_login_failure(&self, address: IpAddr, now: Instant) {
        self.throttle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record_failure(address, now);
    }
}

/// Loads whichever files are configured, collecting every problem of both.
fn load_files(options: &AuthOptions) -> Result<Files, AuthErrors> {
    let mut errors = Vec::new();
    let passwords = match &options.password_file {
        Some(path) => match PasswordFile::load(path) {
            Ok(file) => Some(file),
            Err(problems) => {
                errors.extend(problems);
                None
            }
        },
        None => None,
    };
    let acl = match &options.acl_file {
        Some(path) => match Acl::load(path) {
            Ok(acl) => Some(acl),
            Err(problems) => {
                errors.extend(problems);
                None
            }
        },
        None => None,
    };
    if errors.is_empty() {
        Ok(Files { passwords, acl })
    } else {
        Err(AuthErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::path::Path;

    use super::*;

    const CHEAP: Cost = Cost {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn line(user: &str, password: &str) -> String {
        format!(
            "{user}:{}\n",
            hash_password_with_cost(password.as_bytes(), CHEAP).unwrap()
        )
    }

    #[test]
    fn anonymous_is_allowed_on_loopback_unless_configured() {
        let loopback4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let loopback6: IpAddr = "::1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        let public: IpAddr = "192.0.2.10".parse().unwrap();
        let any6: IpAddr = "::".parse().unwrap();
        for address in [loopback4, loopback6, mapped, "127.0.0.2".parse().unwrap()] {
            assert!(anonymous_allowed(None, address), "{address}");
            assert!(!anonymous_allowed(Some(false), address), "{address}");
        }
        for address in [any, public, any6] {
            assert!(!anonymous_allowed(None, address), "{address}");
            assert!(anonymous_allowed(Some(true), address), "{address}");
        }
    }

    #[test]
    fn authenticate_covers_every_case() {
        let dir = tempfile::tempdir().unwrap();
        let passwords = write(dir.path(), "passwd", &line("alice", "secret"));
        let auth = Auth::load(AuthOptions {
            password_file: Some(passwords),
            ..AuthOptions::default()
        })
        .unwrap();
        assert!(auth.has_password_file());
        assert!(auth.needs_hashing(Some("alice")));
        assert!(!auth.needs_hashing(None));
        assert_eq!(
            auth.authenticate(Some("alice"), Some(b"secret"), false),
            Ok(())
        );
        assert_eq!(
            auth.authenticate(Some("alice"), Some(b"wrong"), true),
            Err(Refusal::BadCredentials)
        );
        assert_eq!(
            auth.authenticate(Some("mallory"), Some(b"secret"), true),
            Err(Refusal::BadCredentials)
        );
        assert_eq!(
            auth.authenticate(Some("alice"), None, true),
            Err(Refusal::BadCredentials)
        );
        assert_eq!(auth.authenticate(None, None, true), Ok(()));
        assert_eq!(
            auth.authenticate(None, Some(b"secret"), false),
            Err(Refusal::NotAuthorized)
        );
        assert!(auth.verify("alice", b"secret"));
        assert!(!auth.verify("alice", b"x"));

        // No password file: user names are not checked, so the client counts
        // as anonymous.
        let open = Auth::allow_all();
        assert!(!open.needs_hashing(Some("alice")));
        assert_eq!(open.authenticate(Some("alice"), Some(b"x"), true), Ok(()));
        assert_eq!(
            open.authenticate(Some("alice"), Some(b"x"), false),
            Err(Refusal::NotAuthorized)
        );
        assert!(!open.verify("alice", b"x"));
    }

    #[test]
    fn no_acl_allows_everything() {
        let auth = Auth::allow_all();
        assert!(!auth.has_acl());
        assert!(auth.can_publish("c", None, "any/topic"));
        assert!(auth.can_subscribe("c", Some("u"), "#"));
        assert!(auth.can_receive("c", None, "$SYS/x"));
    }

    #[test]
    fn load_reports_problems_of_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let passwords = write(dir.path(), "passwd", "alice:plain\n");
        let acl = write(dir.path(), "acl", "topic read a\nbogus\n");
        let errors = Auth::load(AuthOptions {
            password_file: Some(passwords.clone()),
            acl_file: Some(acl.clone()),
            ..AuthOptions::default()
        })
        .unwrap_err();
        assert_eq!(errors.len(), 2, "{errors}");
        let text = errors.to_string();
        assert!(
            text.contains(&format!("{}:1:", passwords.display())),
            "{text}"
        );
        assert!(text.contains(&format!("{}:2:", acl.display())), "{text}");
        let missing = Auth::load(AuthOptions {
            acl_file: Some(dir.path().join("absent")),
            ..AuthOptions::default()
        })
        .unwrap_err();
        assert!(matches!(
            missing.0.as_slice(),
            [AuthError::Read {
                kind: FileKind::Acl,
                ..
            }]
        ));
    }

    #[test]
    fn reload_swaps_in_valid_files_and_keeps_the_old_ones_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let passwords = write(dir.path(), "passwd", &line("alice", "one"));
        let acl = write(dir.path(), "acl", "user alice\ntopic read a/#\n");
        let auth = Auth::load(AuthOptions {
            password_file: Some(passwords.clone()),
            acl_file: Some(acl),
            ..AuthOptions::default()
        })
        .unwrap();
        assert!(auth.verify("alice", b"one"));
        assert!(auth.can_subscribe("c", Some("alice"), "a/#"));

        write(dir.path(), "passwd", &line("alice", "two"));
        write(dir.path(), "acl", "user alice\ntopic read b/#\n");
        auth.reload().unwrap();
        assert!(!auth.verify("alice", b"one"));
        assert!(auth.verify("alice", b"two"));
        assert!(!auth.can_subscribe("c", Some("alice"), "a/#"));
        assert!(auth.can_subscribe("c", Some("alice"), "b/#"));

        // A broken ACL: neither file is swapped, even though the password
        // file alone would be fine.
        write(dir.path(), "passwd", &line("alice", "three"));
        write(dir.path(), "acl", "user alice\ntopic read b/#/c\n");
        let errors = auth.reload().unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(auth.verify("alice", b"two"));
        assert!(auth.can_subscribe("c", Some("alice"), "b/#"));
        // A missing file, likewise.
        std::fs::remove_file(&passwords).unwrap();
        assert!(auth.reload().is_err());
        assert!(auth.verify("alice", b"two"));
    }

    #[test]
    fn login_throttling_goes_through_auth() {
        let auth = Auth::load(AuthOptions {
            throttle: ThrottleOptions {
                max_failures: 2,
                ..ThrottleOptions::default()
            },
            ..AuthOptions::default()
        })
        .unwrap();
        let address = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let now = Instant::now();
        assert_eq!(auth.login_delay(address, now), None);
        auth.record_login_failure(address, now);
        auth.record_login_failure(address, now);
        assert_eq!(auth.login_delay(address, now), Some(DEFAULT_DELAY));
    }
}
