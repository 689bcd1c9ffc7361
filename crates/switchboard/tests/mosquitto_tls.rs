//! Debian's Mosquitto clients (`mosquitto_pub`, `mosquitto_sub`, built on
//! OpenSSL) against the real `switchboard serve` binary's TLS listeners:
//! passwords over TLS, client certificates whose common name is the user
//! name, and a certificate reloaded by SIGHUP; a failed handshake counted
//! in `/metrics`. Certificates are made here with rcgen; the password file
//! with `switchboard passwd`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A CA and the files the broker and clients need, in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

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

/// Writes `{name}.pem` and `{name}.key`: a certificate signed by `issuer`.
fn write_certificate(
    dir: &Path,
    name: &str,
    issuer: &CertifiedIssuer<'static, KeyPair>,
    common_name: &str,
    server: bool,
) {
    let names = if server {
        vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
    } else {
        Vec::new()
    };
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    let key = KeyPair::generate().unwrap();
    let certificate = params.signed_by(&key, &**issuer).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), certificate.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

impl Pki {
    /// `ca.pem`; `server.pem`/`server.key` for localhost and 127.0.0.1;
    /// `client.pem`/`client.key` with the common name `sensor-1`; `passwd`
    /// with alice's password `wonderland`.
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = certificate_authority("Switchboard test CA");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        write_certificate(dir.path(), "server", &ca, "switchboard", true);
        write_certificate(dir.path(), "client", &ca, "sensor-1", false);
        let pki = Pki { dir };
        let (status, stderr) = passwd(
            &[pki.arg("passwd").as_str(), "alice", "--password-stdin"],
            "wonderland\n",
        );
        assert!(status.success(), "{stderr}");
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_owned()
    }
}

/// `switchboard serve` with `args`, in memory, without the HTTP console.
fn serve(args: &[&str]) -> Broker {
    let mut all = vec!["--durability", "memory", "--no-http", "--log-level", "info"];
    all.extend_from_slice(args);
    match start_serve(&all) {
        Ok(broker) => broker,
        Err((status, lines)) => {
            panic!("switchboard serve {args:?} did not start: {status:?} {lines:#?}")
        }
    }
}

#[test]
fn mosquitto_clients_with_a_password_over_tls() {
    let pki = Pki::new();
    let broker = serve(&[
        "--listen",
        "127.0.0.1:0",
        "--listen-tls",
        "127.0.0.1:0",
        "--cert",
        &pki.arg("server.pem"),
        "--key",
        &pki.arg("server.key"),
        "--password-file",
        &pki.arg("passwd"),
    ]);
    let port = broker.listener_address("tls").port();
    let ca = pki.arg("ca.pem");
    for version in ["mqttv311", "mqttv5"] {
        let topic = format!("tls/{version}");
        let tls = [
            "--cafile",
            ca.as_str(),
            "-u",
            "alice",
            "-P",
            "wonderland",
            "-V",
            version,
        ];
        let mut sub_args = tls.to_vec();
        sub_args.extend(["-t", "tls/#", "-C", "1", "-v", "-q", "1"]);
        let sub = Sub::start_at(port, &sub_args);
        let mut pub_args = tls.to_vec();
        pub_args.extend(["-t", topic.as_str(), "-m", "over tls", "-q", "1"]);
        let (status, _) = mosquitto_at("mosquitto_pub", port, &pub_args);
        assert!(status.success(), "{version}: {status:?}");
        assert_eq!(sub.finish(), vec![format!("{topic} over tls")], "{version}");
    }
    // A wrong password is refused over TLS as over TCP.
    let (status, _) = mosquitto_at(
        "mosquitto_pub",
        port,
        &[
            "--cafile", &ca, "-u", "alice", "-P", "guess", "-t", "t", "-m", "x",
        ],
    );
    assert!(!status.success());
    // Plain MQTT to the TLS port gets nowhere.
    let (status, _) = mosquitto_at(
        "mosquitto_pub",
        port,
        &["-u", "alice", "-P", "wonderland", "-t", "t", "-m", "x"],
    );
    assert!(!status.success());
    // A server certificate the client does not trust: refused by the client.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(
        other.path().join("ca.pem"),
        certificate_authority("Somebody else").pem(),
    )
    .unwrap();
    let other_ca = other.path().join("ca.pem");
    let (status, _) = mosquitto_at(
        "mosquitto_pub",
        port,
        &[
            "--cafile",
            other_ca.to_str().unwrap(),
            "-u",
            "alice",
            "-P",
            "wonderland",
            "-t",
            "t",
            "-m",
            "x",
        ],
    );
    assert!(!status.success());
}

#[test]
fn mosquitto_clients_with_certificates_named_by_their_subject() {
    let pki = Pki::new();
    std::fs::write(
        pki.path("acl"),
        "user sensor-1\ntopic read sensors/#\ntopic readwrite sensors/1/#\n",
    )
    .unwrap();
    let config = format!(
        "[[listener]]\n\
         kind = \"tls\"\n\
         address = \"127.0.0.1:0\"\n\
         cert_file = {:?}\n\
         key_file = {:?}\n\
         client_ca_file = {:?}\n\
         require_client_cert = true\n\
         use_subject_as_username = true\n\
         [auth]\n\
         password_file = {:?}\n\
         acl_file = {:?}\n",
        pki.arg("server.pem"),
        pki.arg("server.key"),
        pki.arg("ca.pem"),
        pki.arg("passwd"),
        pki.arg("acl"),
    );
    std::fs::write(pki.path("switchboard.toml"), config).unwrap();
    let broker = serve(&["--config", &pki.arg("switchboard.toml")]);
    let port = broker.listener_address("tls").port();
    let ca = pki.arg("ca.pem");
    let cert = pki.arg("client.pem");
    let key = pki.arg("client.key");
    let identity = [
        "--cafile",
        ca.as_str(),
        "--cert",
        cert.as_str(),
        "--key",
        key.as_str(),
    ];

    let mut sub_args = identity.to_vec();
    sub_args.extend(["-t", "sensors/#", "-C", "1", "-v", "-V", "mqttv5"]);
    let sub = Sub::start_at(port, &sub_args);
    // sensor-1 may read sensors/# but write only sensors/1/#: the message to
    // sensors/2 is dropped (3.1.1 cannot say no), so the subscriber's first
    // line is the second message.
    for topic in ["sensors/2/temperature", "sensors/1/temperature"] {
        let mut pub_args = identity.to_vec();
        pub_args.extend(["-t", topic, "-m", "21.5", "-q", "1"]);
        mosquitto_at("mosquitto_pub", port, &pub_args);
    }
    assert_eq!(sub.finish(), vec!["sensors/1/temperature 21.5".to_owned()]);

    // No client certificate: the handshake is refused, whatever the password.
    let (status, _) = mosquitto_at(
        "mosquitto_pub",
        port,
        &[
            "--cafile",
            &ca,
            "-u",
            "alice",
            "-P",
            "wonderland",
            "-t",
            "sensors/1/x",
            "-m",
            "x",
        ],
    );
    assert!(!status.success());
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    let pki = Pki::new();
    let broker = serve(&[
        "--listen",
        "127.0.0.1:0",
        "--listen-tls",
        "127.0.0.1:0",
        "--cert",
        &pki.arg("server.pem"),
        "--key",
        &pki.arg("server.key"),
    ]);
    let port = broker.listener_address("tls").port();
    let old_ca = pki.arg("ca.pem");
    // Connected with the old certificate, before the reload.
    let sub = Sub::start_at(
        port,
        &["--cafile", &old_ca, "-t", "reload/#", "-C", "1", "-v"],
    );

    // A new certificate from a new CA replaces the files; SIGHUP.
    let new_ca = certificate_authority("Switchboard test CA 2");
    std::fs::write(pki.path("ca2.pem"), new_ca.pem()).unwrap();
    write_certificate(pki.dir.path(), "server", &new_ca, "switchboard 2", true);
    hangup(&broker);
    broker.wait_for_log(&["certificate reloaded"]);

    // New handshakes get the new certificate: only the new CA verifies it.
    let (status, _) = mosquitto_at(
        "mosquitto_pub",
        port,
        &["--cafile", &old_ca, "-t", "reload/old-ca", "-m", "x"],
    );
    assert!(
        !status.success(),
        "the old CA must no longer verify the server"
    );
    let (status, _) = mosquitto_at(
        "mosquitto_pub",
        port,
        &[
            "--cafile",
            &pki.arg("ca2.pem"),
            "-t",
            "reload/new",
            "-m",
            "after",
        ],
    );
    assert!(status.success(), "{status:?}");
    // The subscriber from before the reload is still connected and gets it.
    assert_eq!(sub.finish(), vec!["reload/new after".to_owned()]);

    // A reload with a broken key keeps the certificate in use.
    std::fs::write(pki.path("server.key"), "garbage").unwrap();
    hangup(&broker);
    broker.wait_for_log(&["certificate reload failed"]);
    let (status, _) = mosquitto_at(
        "mosquitto_pub",
        port,
        &[
            "--cafile",
            &pki.arg("ca2.pem"),
            "-t",
            "reload/still",
            "-m",
            "x",
        ],
    );
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_tls_listener_without_a_certificate_refuses_to_start() {
    let stderr = serve_fails(&["--no-http", "--listen-tls", "127.0.0.1:0"]);
    assert!(stderr.contains("--cert FILE and --key FILE"), "{stderr}");
    let stderr = serve_fails(&[
        "--no-http",
        "--listen-tls",
        "127.0.0.1:0",
        "--cert",
        "/nonexistent/switchboard/cert.pem",
        "--key",
        "/nonexistent/switchboard/key.pem",
    ]);
    assert!(
        stderr.contains("/nonexistent/switchboard/cert.pem"),
        "{stderr}"
    );
}

/// `GET /metrics` from the console at `http`: the whole exposition text.
fn metrics_text(http: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(http).unwrap();
    stream.set_read_timeout(Some(GUARD)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn a_failed_handshake_is_counted_in_the_metrics() {
    use std::io::{Read, Write};
    let pki = Pki::new();
    let broker = start_serve(&[
        "--durability",
        "memory",
        "--http",
        "127.0.0.1:0",
        "--log-level",
        "info",
        "--listen-tls",
        "127.0.0.1:0",
        "--cert",
        &pki.arg("server.pem"),
        "--key",
        &pki.arg("server.key"),
    ])
    .unwrap_or_else(|(status, lines)| panic!("{status:?} {lines:#?}"));
    broker.wait_for_log(&["HTTP API on http://"]);
    let http: std::net::SocketAddr = broker
        .log_lines()
        .iter()
        .find_map(|line| {
            let rest = line.split("HTTP API on http://").nth(1)?;
            rest.trim_end_matches('/').parse().ok()
        })
        .unwrap();
    let tls = broker.listener_address("tls");

    // A plain MQTT CONNECT on the TLS port.
    let mut plain = std::net::TcpStream::connect(tls).unwrap();
    plain.set_read_timeout(Some(GUARD)).unwrap();
    plain
        .write_all(&[
            0x10, 0x0E, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0, 0, 2, b'i', b'd',
        ])
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        answer.first().is_none_or(|first| *first == 0x15),
        "{answer:02x?}"
    );

    // Listeners from flags are named after their kind and configured address.
    let wanted = [
        "switchboard_tls_handshake_failures_total 1",
        "switchboard_listener_tls_handshake_failures_total{listener=\"tls-127.0.0.1:0\"} 1",
    ];
    let start = std::time::Instant::now();
    loop {
        let text = metrics_text(http);
        if wanted
            .iter()
            .all(|line| text.lines().any(|sample| sample == *line))
        {
            break;
        }
        assert!(start.elapsed() < GUARD, "expected {wanted:?} in:\n{text}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
