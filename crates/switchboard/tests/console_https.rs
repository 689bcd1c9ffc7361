//! `switchboard serve --http-cert FILE --http-key FILE`: the web console
//! over HTTPS from the real binary, its certificate reloaded by SIGHUP with
//! the MQTT listeners', the flags checked together, and the warning for a
//! console on a public address without TLS. The client is rustls, trusting
//! only the test CA (rcgen).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio_rustls::rustls;

fn certificate_authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// Writes `server.pem` and `server.key` for 127.0.0.1, signed by `issuer`.
fn write_server_certificate(dir: &Path, issuer: &CertifiedIssuer<'static, KeyPair>) {
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "switchboard console");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let certificate = params.signed_by(&key, &**issuer).unwrap();
    std::fs::write(dir.join("server.pem"), certificate.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

fn arg(path: PathBuf) -> String {
    path.to_str().unwrap().to_owned()
}

/// GET `path` over HTTPS, trusting only `ca`; the status line, or the TLS
/// error.
fn https_get(
    address: SocketAddr,
    ca: &CertifiedIssuer<'static, KeyPair>,
    path: &str,
) -> Result<String, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::IpAddress(address.ip().into());
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(address).unwrap();
    tcp.set_read_timeout(Some(GUARD)).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(error) => return Err(error),
    }
    let text = String::from_utf8_lossy(&response);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// The console's address from its "web console and HTTP API on URL" line.
fn console_address(broker: &Broker, scheme: &str) -> SocketAddr {
    let marker = format!("web console and HTTP API on {scheme}://");
    let start = Instant::now();
    loop {
        let found = broker.log_lines().iter().find_map(|line| {
            let rest = line.split(&marker).nth(1)?;
            rest.split('/').next()?.parse::<SocketAddr>().ok()
        });
        if let Some(address) = found {
            return address;
        }
        assert!(
            start.elapsed() < GUARD,
            "no console line: {:#?}",
            broker.log_lines()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn start(args: &[&str]) -> Broker {
    let mut all = vec![
        "--durability",
        "memory",
        "--listen",
        "127.0.0.1:0",
        "--log-level",
        "info",
    ];
    all.extend_from_slice(args);
    match start_serve(&all) {
        Ok(broker) => broker,
        Err((status, lines)) => panic!("serve {args:?} did not start: {status:?} {lines:#?}"),
    }
}

#[test]
fn the_console_serves_https_and_sighup_reloads_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let first_ca = certificate_authority("console CA 1");
    write_server_certificate(dir.path(), &first_ca);
    let broker = start(&[
        "--http",
        "127.0.0.1:0",
        "--http-cert",
        &arg(dir.path().join("server.pem")),
        "--http-key",
        &arg(dir.path().join("server.key")),
    ]);
    let address = console_address(&broker, "https");
    let status = https_get(address, &first_ca, "/health").unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    // A certificate from another CA replaces the files; SIGHUP.
    let second_ca = certificate_authority("console CA 2");
    write_server_certificate(dir.path(), &second_ca);
    hangup(&broker);
    broker.wait_for_log(&["certificate reloaded", "http"]);
    let status = https_get(address, &second_ca, "/health").unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(
        https_get(address, &first_ca, "/health").is_err(),
        "the old certificate is still served"
    );
}

#[test]
fn the_certificate_and_key_flags_go_together() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certificate_authority("console CA");
    write_server_certificate(dir.path(), &ca);
    let stderr = serve_fails(&[
        "--durability",
        "memory",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--http-cert",
        &arg(dir.path().join("server.pem")),
    ]);
    assert!(stderr.contains("go together"), "{stderr}");
    // A key that is not a key: refused before anything listens.
    let stderr = serve_fails(&[
        "--durability",
        "memory",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--http-cert",
        &arg(dir.path().join("server.pem")),
        "--http-key",
        &arg(dir.path().join("server.pem")),
    ]);
    assert!(stderr.contains("certificate"), "{stderr}");
}

#[test]
fn a_public_console_without_tls_warns_that_credentials_travel_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        "[http]\naddress = \"0.0.0.0:0\"\ntokens = [\"a-token-of-twenty-chars\"]\n",
    )
    .unwrap();
    let broker = start(&["--config", &arg(config)]);
    broker.wait_for_log(&["clear text", "--http-cert"]);
}
