//! Who may use the API, the metrics and the live views.
//!
//! A request gets in by the first of these that applies:
//!
//! 1. `Authorization: Bearer TOKEN` with one of the configured API tokens
//!    (for scripts and Prometheus). A wrong token is refused; it does not
//!    fall back to anonymous access.
//! 2. `Authorization: Basic` with the admin user and password (argon2id,
//!    verified on a blocking thread; failures throttled per address). The
//!    password is a hash in the configuration, or the admin user's entry in
//!    the broker's password file.
//! 3. The `switchboard_session` cookie the login form sets (`HttpOnly`,
//!    `SameSite=Strict`, also `Secure` on an HTTPS listener, twelve hours,
//!    at most [`MAX_LOGINS`] at once).
//! 4. Anonymously, when the listener allows it (loopback by default) and the
//!    `Host` header names a loopback address or `localhost`: a web page that
//!    rebinds its own host name to 127.0.0.1 must not get the console.
//!
//! Requests that change something (any method but GET and HEAD) must not
//! come from another site: a browser's `Origin` must match `Host`, and
//! `Sec-Fetch-Site`, when sent, must say `same-origin` or `none`. Scripts
//! send neither header. Together with `SameSite=Strict` this keeps other web
//! pages from using a logged-in (or loopback) browser to act on the broker.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use switchboard_auth::{Auth, PasswordFile, Throttle, ThrottleOptions};

use crate::api::ApiError;
use crate::{Console, ConsoleError, ConsoleOptions, Peer};

/// API tokens shorter than this are refused: a token is the whole secret,
/// and sixteen random characters are beyond guessing over HTTP.
pub const MIN_TOKEN_LENGTH: usize = 16;
/// A login lasts a working day; then the form asks again.
const LOGIN_TTL: Duration = Duration::from_secs(12 * 3600);
/// Logins held at once; the oldest is forgotten beyond that, so a script
/// logging in in a loop cannot grow memory.
pub(crate) const MAX_LOGINS: usize = 1024;
const COOKIE_NAME: &str = "switchboard_session";

/// How requests get in, decided once when the console starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessMode {
    /// Whether requests without credentials are served.
    pub anonymous: bool,
}

/// The admin user: a name, and where its password is checked.
#[derive(Clone)]
pub struct AdminCredentials {
    user: String,
    password: AdminPassword,
}

/// Where the admin's password is checked.
#[derive(Clone)]
enum AdminPassword {
    /// An argon2id PHC hash from the configuration, held in the auth
    /// crate's password file verifier: same hash checks, same constant-time
    /// comparison.
    Hash(Arc<PasswordFile>),
    /// The broker's password file (the MQTT users'), as last loaded: a
    /// SIGHUP that reloads it changes the admin's password too.
    File(Arc<Auth>),
}

impl std::fmt::Debug for AdminCredentials {
    /// Names the user, never the hash.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AdminCredentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl AdminCredentials {
    /// Checks the user name and that `password_hash` is an argon2id PHC
    /// string with sane parameters.
    pub fn new(user: &str, password_hash: &str) -> Result<AdminCredentials, ConsoleError> {
        switchboard_auth::check_user_name(user)
            .map_err(|reason| ConsoleError::Admin(format!("admin_user is not valid: {reason}")))?;
        let line = format!("{user}:{password_hash}");
        let file = PasswordFile::parse(&line, std::path::Path::new("[http] admin_password_hash"))
            .map_err(|errors| {
            let reasons: Vec<String> = errors
                .iter()
                .map(|error| error.problem.to_string())
                .collect();
            ConsoleError::Admin(reasons.join("; "))
        })?;
        Ok(AdminCredentials {
            user: user.to_string(),
            password: AdminPassword::Hash(Arc::new(file)),
        })
    }

    /// The admin is `user` of the broker's password file: its password
    /// there is the console's. No other user of the file gets in. Refused
    /// when `auth` has no password file.
    pub fn from_password_file(
        user: &str,
        auth: Arc<Auth>,
    ) -> Result<AdminCredentials, ConsoleError> {
        switchboard_auth::check_user_name(user)
            .map_err(|reason| ConsoleError::Admin(format!("admin_user is not valid: {reason}")))?;
        if !auth.has_password_file() {
            return Err(ConsoleError::Admin(format!(
                "admin_user {user:?} has no admin_password_hash and there is no password file \
                 to find its password in"
            )));
        }
        Ok(AdminCredentials {
            user: user.to_string(),
            password: AdminPassword::File(auth),
        })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// Slow on purpose (argon2id); run it on a blocking thread.
    fn verify(&self, user: &str, password: &[u8]) -> bool {
        match &self.password {
            AdminPassword::Hash(file) => file.verify(user, password),
            AdminPassword::File(auth) => {
                // The hash is checked for any name, so that a wrong name
                // takes as long as a wrong password.
                let verified = auth.verify(user, password);
                verified && constant_time_eq(user.as_bytes(), self.user.as_bytes())
            }
        }
    }
}

pub(crate) fn check(
    options: &ConsoleOptions,
    address: SocketAddr,
) -> Result<AccessMode, ConsoleError> {
    for (index, token) in options.tokens.iter().enumerate() {
        if token.chars().count() < MIN_TOKEN_LENGTH || token.chars().any(char::is_whitespace) {
            return Err(ConsoleError::WeakToken {
                position: index + 1,
            });
        }
    }
    let loopback = address.ip().to_canonical().is_loopback();
    let credentials = !options.tokens.is_empty() || options.admin.is_some();
    let anonymous = options.allow_anonymous.unwrap_or(loopback);
    if anonymous && !loopback {
        return Err(ConsoleError::AnonymousNotLoopback { address });
    }
    if !loopback && !credentials {
        return Err(ConsoleError::NoCredentials { address });
    }
    if !anonymous && !credentials {
        return Err(ConsoleError::NoWayIn { address });
    }
    Ok(AccessMode { anonymous })
}

/// Who a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    Anonymous,
    Token,
    Admin { user: String },
}

impl std::fmt::Display for Principal {
    /// For logs of administrative actions: who did it.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Anonymous => formatter.write_str("anonymous (loopback)"),
            Principal::Token => formatter.write_str("an API token"),
            Principal::Admin { user } => write!(formatter, "admin user {user:?}"),
        }
    }
}

impl Principal {
    fn method(&self) -> &'static str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::Token => "token",
            Principal::Admin { .. } => "admin",
        }
    }
}

/// Login cookies and failed-login throttling.
pub(crate) struct Sessions {
    logins: Mutex<HashMap<String, Login>>,
    throttle: Mutex<Throttle>,
}

#[derive(Debug, Clone)]
struct Login {
    user: String,
    expires_at: Instant,
}

impl Sessions {
    pub(crate) fn new() -> Sessions {
        Sessions {
            logins: Mutex::new(HashMap::new()),
            throttle: Mutex::new(Throttle::new(ThrottleOptions::default())),
        }
    }

    fn create(&self, user: &str, now: Instant) -> String {
        let token = random_token();
        let mut logins = self.logins.lock();
        logins.retain(|_, login| login.expires_at > now);
        if logins.len() >= MAX_LOGINS {
            let oldest = logins
                .iter()
                .min_by_key(|(_, login)| login.expires_at)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                logins.remove(&oldest);
            }
        }
        logins.insert(
            token.clone(),
            Login {
                user: user.to_string(),
                expires_at: now + LOGIN_TTL,
            },
        );
        token
    }

    fn lookup(&self, token: &str, now: Instant) -> Option<String> {
        let logins = self.logins.lock();
        logins
            .get(token)
            .filter(|login| login.expires_at > now)
            .map(|login| login.user.clone())
    }

    fn remove(&self, token: &str) {
        self.logins.lock().remove(token);
    }

    pub(crate) fn count(&self) -> usize {
        self.logins.lock().len()
    }
}

/// 32 random bytes from the operating system, hex: the login cookie.
fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    crate::payload::hex(&bytes)
}

/// Equal strings in time that depends only on their lengths.
fn constant_time_eq(first: &[u8], second: &[u8]) -> bool {
    if first.len() != second.len() {
        return false;
    }
    first
        .iter()
        .zip(second)
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}

/// Why a request was not let in.
enum Denied {
    /// No or wrong credentials: 401.
    Unauthorized(&'static str),
    /// Too many failed logins from this address: 429.
    Throttled(Duration),
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::Unauthorized(message) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response()
            }
            Denied::Throttled(delay) => {
                let mut response = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "throttled",
                    "too many failed logins from this address; try again later",
                )
                .into_response();
                if let Ok(value) = HeaderValue::from_str(&delay.as_secs().max(1).to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                response
            }
        }
    }
}

/// Works out who the request is, or why it may not come in.
async fn identify(state: &Console, headers: &HeaderMap, peer: IpAddr) -> Result<Principal, Denied> {
    if let Some(authorization) = headers.get(header::AUTHORIZATION) {
        let value = authorization.to_str().unwrap_or_default();
        let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            let known = state.options.tokens.iter().fold(false, |found, token| {
                found | constant_time_eq(token.as_bytes(), credentials.as_bytes())
            });
            return if known {
                Ok(Principal::Token)
            } else {
                state.auth_failures.fetch_add(1, Ordering::Relaxed);
                Err(Denied::Unauthorized("unknown API token"))
            };
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = decode_base64(credentials).unwrap_or_default();
            let text = String::from_utf8(decoded).unwrap_or_default();
            let (user, password) = text.split_once(':').unwrap_or(("", ""));
            return verify_admin(state, user, password, peer).await;
        }
        return Err(Denied::Unauthorized(
            "unsupported Authorization scheme; use Bearer or Basic",
        ));
    }
    if let Some(token) = cookie(headers, COOKIE_NAME) {
        if let Some(user) = state.access.lookup(token, Instant::now()) {
            return Ok(Principal::Admin { user });
        }
    }
    if state.mode.anonymous && host_is_local(headers) {
        return Ok(Principal::Anonymous);
    }
    Err(Denied::Unauthorized(
        "log in, or send an API token as Authorization: Bearer",
    ))
}

/// Verifies the admin password (throttled per address, on a blocking thread).
async fn verify_admin(
    state: &Console,
    user: &str,
    password: &str,
    peer: IpAddr,
) -> Result<Principal, Denied> {
    let Some(admin) = state.options.admin.clone() else {
        return Err(Denied::Unauthorized("no admin user is configured"));
    };
    if let Some(delay) = state.access.throttle.lock().delay(peer, Instant::now()) {
        return Err(Denied::Throttled(delay));
    }
    let user = user.to_string();
    let password = password.to_string();
    let checked_user = user.clone();
    let verified =
        tokio::task::spawn_blocking(move || admin.verify(&checked_user, password.as_bytes()))
            .await
            .unwrap_or(false);
    if verified {
        Ok(Principal::Admin { user })
    } else {
        state.auth_failures.fetch_add(1, Ordering::Relaxed);
        state
            .access
            .throttle
            .lock()
            .record_failure(peer, Instant::now());
        Err(Denied::Unauthorized("wrong user name or password"))
    }
}

/// The value of cookie `name`, if the request carries it.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Whether the `Host` header names this machine: `localhost` (or a
/// `*.localhost` name, which resolves to loopback by RFC 6761) or a
/// loopback IP address, with any port.
fn host_is_local(headers: &HeaderMap) -> bool {
    let Some(host) = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    let name = name.to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// Refuses a state-changing request that a browser sent from another site
/// (see the module documentation).
fn same_origin(method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    if *method == Method::GET || *method == Method::HEAD {
        return Ok(());
    }
    let forbidden = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "requests that change something must come from the console's own origin",
        )
    };
    if let Some(site) = headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok())
    {
        if site != "same-origin" && site != "none" {
            return Err(forbidden());
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let host = headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if host.is_empty() || authority != Some(host) {
            return Err(forbidden());
        }
    }
    Ok(())
}

/// Middleware on every protected route.
pub(crate) async fn require(
    State(state): State<Console>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Err(error) = same_origin(request.method(), request.headers()) {
        return error.into_response();
    }
    match identify(&state, request.headers(), peer.ip()).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(denied) => denied.into_response(),
    }
}

pub(crate) fn routes() -> Router<Console> {
    Router::new()
        .route("/api/v1/session", get(session_info))
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
}

#[derive(Debug, Serialize)]
struct SessionInfo {
    authenticated: bool,
    /// `anonymous`, `token` or `admin`; `null` when not authenticated.
    method: Option<&'static str>,
    user: Option<String>,
    /// Whether the login form can work (an admin user is configured).
    login_available: bool,
    anonymous_allowed: bool,
}

/// Who the browser is: lets the console decide whether to show the login form.
async fn session_info(
    State(state): State<Console>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    let principal = identify(&state, &headers, peer.ip()).await.ok();
    Json(SessionInfo {
        authenticated: principal.is_some(),
        method: principal.as_ref().map(Principal::method),
        user: match principal {
            Some(Principal::Admin { user }) => Some(user),
            _ => None,
        },
        login_available: state.options.admin.is_some(),
        anonymous_allowed: state.mode.anonymous,
    })
    .into_response()
}

#[derive(Debug, Deserialize)]
struct LoginRequest {
    username: String,
    password: String,
}

/// The login form: checks the admin password and sets the session cookie.
async fn login(
    State(state): State<Console>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Result<Json<LoginRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(error) = same_origin(&Method::POST, &headers) {
        return error.into_response();
    }
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return ApiError::from(rejection).into_response(),
    };
    match verify_admin(&state, &body.username, &body.password, peer.ip()).await {
        Ok(_) => {
            let token = state.access.create(&body.username, Instant::now());
            let cookie = format!(
                "{COOKIE_NAME}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                LOGIN_TTL.as_secs(),
                secure(&state)
            );
            let mut response = StatusCode::NO_CONTENT.into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(denied) => denied.into_response(),
    }
}

/// Forgets the login and clears the cookie.
async fn logout(State(state): State<Console>, headers: HeaderMap) -> Response {
    if let Err(error) = same_origin(&Method::POST, &headers) {
        return error.into_response();
    }
    if let Some(token) = cookie(&headers, COOKIE_NAME) {
        state.access.remove(token);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let cookie = format!(
        "{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        secure(&state)
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The cookie attribute that keeps the browser from sending the login over
/// plain HTTP, on an HTTPS listener. (On plain HTTP a `Secure` cookie would
/// not be stored at all, so the login form could not work.)
fn secure(state: &Console) -> &'static str {
    if state.options.tls.is_some() {
        "; Secure"
    } else {
        ""
    }
}

/// Standard base64 (RFC 4648, with or without padding); `None` on anything
/// else. Only for the short `Authorization: Basic` value.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn value(byte: u8) -> Option<u32> {
        match byte {
            b'A'..=b'Z' => Some(u32::from(byte - b'A')),
            b'a'..=b'z' => Some(u32::from(byte - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(byte - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let trimmed = text.trim_end_matches('=');
    if text.len() - trimmed.len() > 2 || trimmed.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0u32;
    for byte in trimmed.bytes() {
        buffer = (buffer << 6) | value(byte)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn base64_decodes_basic_credentials() {
        assert_eq!(decode_base64("YWRtaW46c2VjcmV0").unwrap(), b"admin:secret");
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert_eq!(decode_base64("YWI=").unwrap(), b"ab");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert!(decode_base64("Y").is_none());
        assert!(decode_base64("a*b=").is_none());
        assert!(decode_base64("YQ===").is_none());
    }

    #[test]
    fn local_hosts_only() {
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:8080",
            "127.1.2.3",
            "[::1]:8080",
            "console.localhost:80",
        ] {
            let mut map = HeaderMap::new();
            map.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            assert!(host_is_local(&map), "{host}");
        }
        for host in [
            "example.com:8080",
            "10.0.0.1:8080",
            "localhost.evil.com",
            "[::2]:1",
        ] {
            let mut map = HeaderMap::new();
            map.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            assert!(!host_is_local(&map), "{host}");
        }
        assert!(!host_is_local(&HeaderMap::new()));
    }

    #[test]
    fn cross_site_changes_are_refused() {
        let post = Method::POST;
        assert!(same_origin(&post, &headers(&[("host", "127.0.0.1:8080")])).is_ok());
        assert!(same_origin(
            &post,
            &headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080")
            ])
        )
        .is_ok());
        assert!(same_origin(
            &post,
            &headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example")
            ])
        )
        .is_err());
        assert!(same_origin(
            &post,
            &headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")])
        )
        .is_err());
        assert!(same_origin(
            &Method::GET,
            &headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example")
            ])
        )
        .is_ok());
    }

    #[test]
    fn cookies_are_found_among_others() {
        let map = headers(&[("cookie", "a=1; switchboard_session=abc; b=2")]);
        assert_eq!(cookie(&map, COOKIE_NAME), Some("abc"));
        assert_eq!(cookie(&headers(&[("cookie", "a=1")]), COOKIE_NAME), None);
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    fn address(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_public_listener_needs_credentials() {
        let options = ConsoleOptions::default();
        assert_eq!(
            check(&options, address("127.0.0.1:8080")).unwrap(),
            AccessMode { anonymous: true }
        );
        assert!(matches!(
            check(&options, address("0.0.0.0:8080")),
            Err(ConsoleError::NoCredentials { .. })
        ));
        let with_token = ConsoleOptions {
            tokens: vec!["0123456789abcdef".into()],
            ..ConsoleOptions::default()
        };
        assert_eq!(
            check(&with_token, address("0.0.0.0:8080")).unwrap(),
            AccessMode { anonymous: false }
        );
        let anonymous_public = ConsoleOptions {
            allow_anonymous: Some(true),
            ..with_token
        };
        assert!(matches!(
            check(&anonymous_public, address("192.0.2.1:8080")),
            Err(ConsoleError::AnonymousNotLoopback { .. })
        ));
        let closed = ConsoleOptions {
            allow_anonymous: Some(false),
            ..ConsoleOptions::default()
        };
        assert!(matches!(
            check(&closed, address("127.0.0.1:8080")),
            Err(ConsoleError::NoWayIn { .. })
        ));
        let weak = ConsoleOptions {
            tokens: vec!["short".into()],
            ..ConsoleOptions::default()
        };
        assert!(matches!(
            check(&weak, address("127.0.0.1:8080")),
            Err(ConsoleError::WeakToken { position: 1 })
        ));
    }

    #[test]
    fn admin_hash_must_be_argon2id() {
        assert!(AdminCredentials::new("admin", "plain-password").is_err());
        assert!(
            AdminCredentials::new("ad:min", "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA")
                .is_err()
        );
        let hash = switchboard_auth::hash_password_with_cost(
            b"secret",
            switchboard_auth::Cost {
                memory_kib: 8,
                iterations: 1,
                parallelism: 1,
            },
        )
        .unwrap();
        let admin = AdminCredentials::new("admin", &hash).unwrap();
        assert!(admin.verify("admin", b"secret"));
        assert!(!admin.verify("admin", b"wrong"));
        assert!(!admin.verify("other", b"secret"));
        assert!(!format!("{admin:?}").contains("argon2"));
    }

    #[test]
    fn logins_are_bounded_and_expire() {
        let sessions = Sessions::new();
        let now = Instant::now();
        let first = sessions.create("admin", now);
        assert_eq!(sessions.lookup(&first, now).as_deref(), Some("admin"));
        assert_eq!(sessions.lookup(&first, now + LOGIN_TTL), None);
        for _ in 0..MAX_LOGINS + 10 {
            sessions.create("admin", now);
        }
        assert!(sessions.count() <= MAX_LOGINS);
        sessions.remove(&first);
        assert_eq!(sessions.lookup(&first, now), None);
    }
}
