//! The console over HTTPS, with certificates made in the test (rcgen, as in
//! the MQTT TLS tests): a client that trusts the test CA gets `/health` and
//! the authenticated API; plain HTTP on the port gets no answer; the login
//! cookie is `Secure`; a reload picks up a new certificate for new
//! connections, and a reload with broken files keeps the old one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::json;
use support::*;
use switchboard_console::{
    AdminCredentials, Certificates, ConsoleOptions, TlsListener, TlsOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::CertificateDer;

const TOKEN: &str = "https-token-0123456789";

/// A CA in a temporary directory, and the server's `server.pem` and
/// `server.key` signed by it.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(DnType::CommonName, "Switchboard console test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca,
        };
        pki.write_server_certificate("console one");
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `server.pem` and `server.key` for localhost and 127.0.0.1,
    /// named `common_name`; returns the certificate.
    fn write_server_certificate(&self, common_name: &str) -> CertificateDer<'static> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &*self.ca).unwrap();
        std::fs::write(self.path("server.pem"), certificate.pem()).unwrap();
        std::fs::write(self.path("server.key"), key.serialize_pem()).unwrap();
        certificate.der().clone()
    }

    fn listener(&self) -> Arc<TlsListener> {
        let options = TlsOptions::new(self.path("server.pem"), self.path("server.key"));
        Arc::new(TlsListener::load("http", &options).unwrap())
    }

    /// A client that trusts this CA only.
    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        Arc::new(config)
    }
}

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

async fn start_https(pki: &Pki) -> (Harness, Arc<TlsListener>) {
    let tls = pki.listener();
    let harness = Harness::start_with(ConsoleOptions {
        tokens: vec![TOKEN.to_string()],
        admin: Some(admin("s3cret")),
        tls: Some(tls.clone()),
        ..ConsoleOptions::default()
    })
    .await;
    (harness, tls)
}

/// One HTTPS request (`Connection: close`); returns the answer and the
/// certificate the server presented. Checked against the OpenAPI document
/// like every API answer in these tests.
async fn https(
    config: Arc<rustls::ClientConfig>,
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<serde_json::Value>,
) -> (Response, CertificateDer<'static>) {
    let exchange = async {
        let tcp = TcpStream::connect(address).await.unwrap();
        let name = rustls::pki_types::ServerName::IpAddress(address.ip().into());
        let mut stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .unwrap();
        let certificate = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
        let body = body.map(|body| body.to_string()).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(&body);
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        // hyper ends with close_notify; accept a bare close after the body too.
        if let Err(error) = stream.read_to_end(&mut raw).await {
            assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof, "{error}");
        }
        (parse_response(&raw), certificate)
    };
    let (response, certificate) = tokio::time::timeout(GUARD, exchange)
        .await
        .expect("HTTPS request timed out");
    check_against_document(method, path, &response);
    (response, certificate)
}

/// Splits a whole HTTP/1.1 answer into status, headers and (de-chunked) body.
fn parse_response(raw: &[u8]) -> Response {
    let end = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_string(), value.trim().to_string())
        })
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked")
    });
    if chunked {
        let mut decoded = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                    .unwrap();
            if size == 0 {
                break;
            }
            let start = line_end + 2;
            decoded.extend_from_slice(&rest[start..start + size]);
            rest = &rest[start + size + 2..];
        }
        body = decoded;
    }
    Response {
        status: status.parse().unwrap(),
        headers,
        body,
    }
}

#[tokio::test]
async fn health_and_the_authenticated_api_over_https() {
    let pki = Pki::new();
    let (harness, _tls) = start_https(&pki).await;
    let config = pki.client_config();

    let (health, _) = https(config.clone(), harness.http, "GET", "/health", &[], None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.text(), "ok\n");

    let bearer = format!("Bearer {TOKEN}");
    let (status, _) = https(
        config.clone(),
        harness.http,
        "GET",
        "/api/v1/status",
        &[("Authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(status.status, 200);
    assert_eq!(status.json()["version"], switchboard_console::VERSION);

    let (metrics, _) = https(
        config.clone(),
        harness.http,
        "GET",
        "/metrics",
        &[("Authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(metrics.status, 200);
    let exposition = parse_exposition(&metrics.text()).unwrap();
    assert_eq!(
        exposition.value("switchboard_console_tls_handshake_failures_total", &[]),
        Some(0.0)
    );
    harness.stop().await;
}

#[tokio::test]
async fn the_login_cookie_is_secure_over_https() {
    let pki = Pki::new();
    let (harness, _tls) = start_https(&pki).await;
    let (login, _) = https(
        pki.client_config(),
        harness.http,
        "POST",
        "/api/v1/login",
        &[],
        Some(json!({"username": "admin", "password": "s3cret"})),
    )
    .await;
    assert_eq!(login.status, 204);
    let cookie = login.header("set-cookie").unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let (logout, _) = https(
        pki.client_config(),
        harness.http,
        "POST",
        "/api/v1/logout",
        &[],
        None,
    )
    .await;
    assert!(logout.header("set-cookie").unwrap().contains("; Secure"));
    harness.stop().await;
}

#[tokio::test]
async fn plain_http_on_the_https_port_gets_no_answer() {
    let pki = Pki::new();
    let (harness, _tls) = start_https(&pki).await;
    let mut stream = TcpStream::connect(harness.http).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(GUARD, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // The failed handshake is counted.
    let bearer = format!("Bearer {TOKEN}");
    let config = pki.client_config();
    let address = harness.http;
    eventually("the handshake failure is counted", || {
        let config = config.clone();
        let bearer = bearer.clone();
        async move {
            let (metrics, _) = https(
                config,
                address,
                "GET",
                "/metrics",
                &[("Authorization", &bearer)],
                None,
            )
            .await;
            parse_exposition(&metrics.text())
                .unwrap()
                .value("switchboard_console_tls_handshake_failures_total", &[])
                == Some(1.0)
        }
    })
    .await;
    harness.stop().await;
}

#[tokio::test]
async fn a_reload_serves_the_new_certificate_and_a_broken_one_keeps_the_old() {
    let pki = Pki::new();
    let (harness, tls) = start_https(&pki).await;
    let certificates = Certificates::new(vec![tls]);
    let config = pki.client_config();
    let (_, first) = https(config.clone(), harness.http, "GET", "/health", &[], None).await;

    let second = pki.write_server_certificate("console two");
    assert_ne!(first, second);
    // Before the reload, new connections still get the first certificate.
    let (_, before) = https(config.clone(), harness.http, "GET", "/health", &[], None).await;
    assert_eq!(before, first);
    certificates.reload().unwrap();
    let (health, after) = https(config.clone(), harness.http, "GET", "/health", &[], None).await;
    assert_eq!(health.status, 200);
    assert_eq!(after, second);

    // A key that does not belong to the certificate: the reload fails and
    // the previous certificate stays in use.
    let unrelated = KeyPair::generate().unwrap();
    std::fs::write(pki.path("server.key"), unrelated.serialize_pem()).unwrap();
    let errors = certificates.reload().unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].listener, "http");
    let (health, still) = https(config, harness.http, "GET", "/health", &[], None).await;
    assert_eq!(health.status, 200);
    assert_eq!(still, second);
    harness.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_is_refused() {
    let pki = Pki::new();
    let (harness, _tls) = start_https(&pki).await;
    let stranger = Pki::new();
    let tcp = TcpStream::connect(harness.http).await.unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(harness.http.ip().into());
    let result = tokio::time::timeout(
        GUARD,
        tokio_rustls::TlsConnector::from(stranger.client_config()).connect(name, tcp),
    )
    .await
    .expect("handshake ends");
    assert!(
        result.is_err(),
        "a certificate from another CA was accepted"
    );
    harness.stop().await;
}
