//! The TLS, WebSocket and secure WebSocket transports end to end, with
//! certificates made in the test (rcgen): a CA, server certificates for
//! localhost, 127.0.0.1 and ::1, and client certificates.
//!
//! Clients we did not write: rumqttc over TLS (rustls), WebSocket and
//! secure WebSocket (its `websocket` feature: async-tungstenite), in both its
//! 3.1.1 and 5.0 APIs; tokio-tungstenite's WebSocket client (carrying our
//! codec's bytes) and tokio-rustls. Every
//! wait is bounded by [`GUARD`]; nothing sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use support::*;
use switchboard_auth::{hash_password_with_cost, Auth, AuthOptions, Cost};
use switchboard_codec::{
    encode, Ack, ConnAck, Connect, Decoder, Packet, ProtocolVersion, QoS, ReasonCode,
};
use switchboard_server::{ListenerKind, Server, ServerError, TlsOptions, WebSocketOptions};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn loopback_v6() -> SocketAddr {
    SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
}

// ----- Certificates -----

/// A client certificate chain and its key.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A test PKI in a temporary directory: `ca.pem`, and the server's
/// `server.pem` and `server.key`.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
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

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = certificate_authority("Switchboard test CA");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let pki = Pki { dir, ca };
        pki.write_server_certificate("server one");
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `server.pem` and `server.key`: a certificate for localhost,
    /// 127.0.0.1 and ::1 named `common_name`. Returns it.
    fn write_server_certificate(&self, common_name: &str) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ])
        .unwrap();
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

    /// A client certificate signed by this CA, with the subject common name
    /// `common_name` (none at all when `None`).
    fn client(&self, common_name: Option<&str>) -> Identity {
        client_identity(&self.ca, common_name)
    }

    /// Listener settings with the server certificate, no client certificates.
    fn tls(&self) -> TlsOptions {
        TlsOptions::new(self.path("server.pem"), self.path("server.key"))
    }

    /// Listener settings that require a client certificate from this CA.
    fn tls_requiring_client_certificates(&self) -> TlsOptions {
        TlsOptions {
            client_ca_file: Some(self.path("ca.pem")),
            require_client_cert: true,
            ..self.tls()
        }
    }

    /// A rustls client that trusts this CA and presents `identity`.
    fn client_config(&self, identity: Option<Identity>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let config = match identity {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }
}

fn client_identity(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    common_name: Option<&str>,
) -> Identity {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Switchboard tests");
    if let Some(name) = common_name {
        params.distinguished_name.push(DnType::CommonName, name);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let certificate = params.signed_by(&key, &**issuer).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    (vec![certificate.der().clone()], key)
}

// ----- Clients -----

/// A TLS connection to `address`, verifying the server as 127.0.0.1 or ::1.
async fn tls_connect(
    address: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(address).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::IpAddress(address.ip().into());
    let connecting = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
    tokio::time::timeout(GUARD, connecting)
        .await
        .expect("TLS handshake hung")
}

/// The certificate the server presented.
fn server_certificate(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// The WebSocket upgrade on `stream` for `path`, offering `protocols` (a
/// `Sec-WebSocket-Protocol` value; empty offers none). Returns the socket and
/// the subprotocol the server answered.
async fn ws_upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    path: &str,
    protocols: &str,
) -> Result<(WebSocketStream<S>, Option<String>), tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://127.0.0.1{path}")
        .into_client_request()
        .unwrap();
    if !protocols.is_empty() {
        request
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, protocols.parse().unwrap());
    }
    let (socket, response) =
        tokio::time::timeout(GUARD, tokio_tungstenite::client_async(request, stream))
            .await
            .expect("WebSocket upgrade hung")?;
    let protocol = response
        .headers()
        .get(SEC_WEBSOCKET_PROTOCOL)
        .map(|value| value.to_str().unwrap().to_owned());
    Ok((socket, protocol))
}

/// An MQTT client over a WebSocket: our codec's bytes in binary messages.
struct WsClient<S> {
    socket: WebSocketStream<S>,
    decoder: Decoder,
    buffer: BytesMut,
    version: ProtocolVersion,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsClient<S> {
    fn new(socket: WebSocketStream<S>, version: ProtocolVersion) -> Self {
        WsClient {
            socket,
            decoder: Decoder::client(version, 16 * 1024 * 1024),
            buffer: BytesMut::new(),
            version,
        }
    }

    fn bytes(&self, packet: &Packet) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(packet, self.version, &mut out).unwrap();
        out.to_vec()
    }

    /// One packet in one binary message.
    async fn send(&mut self, packet: Packet) {
        let bytes = self.bytes(&packet);
        self.send_frames(&bytes, bytes.len()).await;
    }

    /// `bytes` in binary messages of `size` bytes each.
    async fn send_frames(&mut self, bytes: &[u8], size: usize) {
        for chunk in bytes.chunks(size) {
            self.socket
                .send(Message::Binary(Bytes::copy_from_slice(chunk)))
                .await
                .unwrap();
        }
    }

    /// The next packet, or `None` once the server closed the connection.
    async fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buffer).unwrap() {
                return Some(packet);
            }
            let message = tokio::time::timeout(GUARD, self.socket.next())
                .await
                .expect("timed out waiting for a packet");
            match message {
                Some(Ok(Message::Binary(data))) => self.buffer.extend_from_slice(&data),
                // [MQTT-6.0.0-1]: the server must send binary frames only.
                Some(Ok(Message::Text(text))) => panic!("server sent a text frame: {text}"),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
            }
        }
    }

    async fn expect(&mut self) -> Packet {
        self.recv()
            .await
            .expect("connection closed, expected a packet")
    }

    async fn connect(&mut self, connect: Connect) -> ConnAck {
        self.send(Packet::Connect(Box::new(connect))).await;
        match self.expect().await {
            Packet::ConnAck(connack) => connack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }
}

/// rumqttc (3.1.1) over TLS to `address`, trusting `pki`'s CA.
fn rumqttc_tls(
    address: SocketAddr,
    client_id: &str,
    config: Arc<rustls::ClientConfig>,
) -> rumqttc::MqttOptions {
    let mut options =
        rumqttc::MqttOptions::new(client_id, address.ip().to_string(), address.port());
    options.set_keep_alive(Duration::from_secs(60));
    options.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(config),
    ));
    options
}

/// rumqttc (5) over TLS to `address`.
fn rumqttc_v5_tls(
    address: SocketAddr,
    client_id: &str,
    config: Arc<rustls::ClientConfig>,
) -> rumqttc::v5::MqttOptions {
    let mut options =
        rumqttc::v5::MqttOptions::new(client_id, address.ip().to_string(), address.port());
    options.set_keep_alive(Duration::from_secs(60));
    options.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(config),
    ));
    options
}

fn success(connack: &ConnAck) {
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS, "{connack:?}");
}

fn puback(packet: Packet) -> Ack {
    match packet {
        Packet::PubAck(ack) => ack,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

// ----- TLS -----

#[tokio::test]
async fn rumqttc_publishes_and_subscribes_over_tls() {
    let pki = Pki::new();
    let server = start(options_with_listeners(vec![listener(
        "tls",
        ListenerKind::Tls(pki.tls()),
        loopback(),
    )]))
    .await;
    let address = server.local_addrs()[0];
    let config = pki.client_config(None);

    let (mut subscriber, connack) =
        V4::connect(rumqttc_tls(address, "tls-sub", config.clone())).await;
    assert_eq!(connack.code, rumqttc::ConnectReturnCode::Success);
    subscriber
        .subscribe("tls/#", rumqttc::QoS::AtLeastOnce)
        .await;
    let (mut publisher, _) = V5::connect(rumqttc_v5_tls(address, "tls-pub", config)).await;
    for index in 0..50u32 {
        publisher
            .publish(
                "tls/data",
                rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                false,
                index.to_be_bytes().to_vec(),
            )
            .await;
    }
    // More than one TLS record, and more than the server's write batch: the
    // connection task must flush what the TLS stream holds.
    for index in 0..50u32 {
        let publish = subscriber.recv_publish().await;
        assert_eq!(publish.topic, "tls/data");
        assert_eq!(publish.payload.as_ref(), index.to_be_bytes());
    }
    publisher.disconnect().await;
    subscriber.disconnect().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_required_client_certificate_is_checked() {
    let pki = Pki::new();
    let server = start(options_with_listeners(vec![listener(
        "mutual",
        ListenerKind::Tls(pki.tls_requiring_client_certificates()),
        loopback(),
    )]))
    .await;
    let address = server.local_addrs()[0];

    // With a certificate from the CA: served.
    let stream = tls_connect(
        address,
        pki.client_config(Some(pki.client(Some("device-1")))),
    )
    .await
    .unwrap();
    let mut client = RawClient::new(stream, V5);
    success(
        &client
            .connect(connect_packet(V5, "with-certificate", true))
            .await,
    );

    // Without one: the handshake fails (TLS 1.3 reports it to the client on
    // its first read), and no CONNACK ever comes.
    assert!(refused(address, pki.client_config(None)).await);
    // With one from another CA: the same.
    let stranger = client_identity(&certificate_authority("Somebody else"), Some("device-1"));
    assert!(refused(address, pki.client_config(Some(stranger))).await);
    // rumqttc without a certificate: the connection fails.
    let options = rumqttc_tls(address, "rumqttc-no-cert", pki.client_config(None));
    let (_client, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
    let first = tokio::time::timeout(GUARD, eventloop.poll()).await.unwrap();
    assert!(first.is_err(), "{first:?}");

    // The connection that was let in still works.
    client.send(Packet::PingReq).await;
    assert_eq!(client.expect().await, Packet::PingResp);
    server.shutdown().await;
}

/// Whether a client with `config` is kept out: the handshake or the first
/// read fails, and no CONNACK arrives.
async fn refused(address: SocketAddr, config: Arc<rustls::ClientConfig>) -> bool {
    let Ok(stream) = tls_connect(address, config).await else {
        return true;
    };
    let mut client = RawClient::new(stream, V5);
    client
        .send_bytes(&{
            let mut out = BytesMut::new();
            encode(
                &Packet::Connect(Box::new(connect_packet(V5, "refused", true))),
                V5,
                &mut out,
            )
            .unwrap();
            out.to_vec()
        })
        .await;
    client.recv().await.is_none()
}

#[tokio::test]
async fn an_optional_client_certificate_is_verified_when_presented() {
    let pki = Pki::new();
    let tls = TlsOptions {
        client_ca_file: Some(pki.path("ca.pem")),
        ..pki.tls()
    };
    let server = start(options_with_listeners(vec![listener(
        "optional",
        ListenerKind::Tls(tls),
        loopback(),
    )]))
    .await;
    let address = server.local_addrs()[0];
    for identity in [None, Some(pki.client(Some("device-2")))] {
        let stream = tls_connect(address, pki.client_config(identity))
            .await
            .unwrap();
        let mut client = RawClient::new(stream, V4);
        success(&client.connect(connect_packet(V4, "optional", true)).await);
    }
    let stranger = client_identity(&certificate_authority("Somebody else"), Some("device-2"));
    assert!(refused(address, pki.client_config(Some(stranger))).await);
    server.shutdown().await;
}

#[tokio::test]
async fn the_subject_common_name_is_the_user_name_for_the_acl() {
    let pki = Pki::new();
    let cheap = Cost {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };
    let hash = hash_password_with_cost(b"wonderland", cheap).unwrap();
    std::fs::write(pki.path("passwd"), format!("alice:{hash}\n")).unwrap();
    std::fs::write(
        pki.path("acl"),
        "user alice\ntopic readwrite #\n\nuser sensor-1\ntopic readwrite sensors/1/#\n",
    )
    .unwrap();
    let auth = Auth::load(AuthOptions {
        password_file: Some(pki.path("passwd")),
        acl_file: Some(pki.path("acl")),
        ..AuthOptions::default()
    })
    .unwrap();
    let tls = TlsOptions {
        use_subject_as_username: true,
        ..pki.tls_requiring_client_certificates()
    };
    let mut options = options_with_listeners(vec![listener(
        "devices",
        ListenerKind::Tls(tls),
        loopback(),
    )]);
    options.auth = Arc::new(auth);
    // Anonymous clients refused, as on a public listener.
    options.allow_anonymous = Some(false);
    let server = start(options).await;
    let address = server.local_addrs()[0];

    // The CONNECT claims to be alice with a wrong password: ignored, the
    // certificate says sensor-1 and is the credential.
    let stream = tls_connect(
        address,
        pki.client_config(Some(pki.client(Some("sensor-1")))),
    )
    .await
    .unwrap();
    let mut client = RawClient::new(stream, V5);
    let mut connect = connect_packet(V5, "sensor-1-client", true);
    connect.username = Some("alice".into());
    connect.password = Some(Bytes::from_static(b"not alice's password"));
    success(&client.connect(connect).await);
    // sensor-1's rules apply, not alice's.
    client
        .send(publish(
            "sensors/1/temperature",
            QoS::AtLeastOnce,
            Some(1),
            b"21",
        ))
        .await;
    // Allowed; nobody subscribes.
    assert_eq!(
        puback(client.expect().await).reason_code,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    client
        .send(publish(
            "sensors/2/temperature",
            QoS::AtLeastOnce,
            Some(2),
            b"21",
        ))
        .await;
    assert_eq!(
        puback(client.expect().await).reason_code,
        ReasonCode::NOT_AUTHORIZED
    );
    let owner = server.broker().session("sensor-1-client").unwrap().info();
    assert_eq!(owner.username.as_deref(), Some("sensor-1"), "{owner:?}");

    // A certificate without a common name names nobody: CONNACK 0x87 (3.1.1: 5).
    for version in [V5, V4] {
        let stream = tls_connect(address, pki.client_config(Some(pki.client(None))))
            .await
            .unwrap();
        let mut client = RawClient::new(stream, version);
        let connack = client
            .connect(connect_packet(version, "nameless", true))
            .await;
        assert_eq!(
            connack.reason_code,
            ReasonCode::NOT_AUTHORIZED,
            "{version:?}"
        );
        assert!(client.recv().await.is_none());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn reloaded_certificates_serve_new_handshakes_and_keep_open_connections() {
    let pki = Pki::new();
    let first = pki.write_server_certificate("server one");
    let server = start(options_with_listeners(vec![listener(
        "tls",
        ListenerKind::Tls(pki.tls()),
        loopback(),
    )]))
    .await;
    let address = server.local_addrs()[0];
    let config = pki.client_config(None);

    let stream = tls_connect(address, config.clone()).await.unwrap();
    assert_eq!(server_certificate(&stream), first);
    let mut old = RawClient::new(stream, V4);
    success(&old.connect(connect_packet(V4, "old", true)).await);
    old.subscribe_granted(1, "reload/#", QoS::AtMostOnce).await;

    // What SIGHUP does: the files change, then reload.
    let second = pki.write_server_certificate("server two");
    assert_ne!(first, second);
    server.certificates().reload().unwrap();
    let stream = tls_connect(address, config.clone()).await.unwrap();
    assert_eq!(server_certificate(&stream), second);
    let mut new = RawClient::new(stream, V4);
    success(&new.connect(connect_packet(V4, "new", true)).await);

    // The connection made with the old certificate carries on.
    new.send(publish("reload/x", QoS::AtMostOnce, None, b"after reload"))
        .await;
    let received = old.expect_publish().await;
    assert_eq!(received.payload.as_ref(), b"after reload");

    // A reload that fails keeps the certificate in use.
    std::fs::write(pki.path("server.key"), "not a key").unwrap();
    let errors = server.certificates().reload().unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].listener, "tls");
    assert!(
        errors[0].to_string().contains("server.key"),
        "{}",
        errors[0]
    );
    let stream = tls_connect(address, config).await.unwrap();
    assert_eq!(server_certificate(&stream), second);
    server.shutdown().await;
}

#[tokio::test]
async fn unusable_certificate_files_stop_the_server_from_binding() {
    let pki = Pki::new();
    let missing = TlsOptions::new(pki.path("missing.pem"), pki.path("server.key"));
    let mismatched = TlsOptions::new(pki.path("server.pem"), pki.path("other.key"));
    std::fs::write(
        pki.path("other.key"),
        KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let no_ca = TlsOptions {
        require_client_cert: true,
        ..pki.tls()
    };
    for (tls, expected) in [
        (missing, "missing.pem"),
        (mismatched, "cannot be used together"),
        (no_ca, "client_ca_file"),
    ] {
        let options =
            options_with_listeners(vec![listener("bad", ListenerKind::Tls(tls), loopback())]);
        match Server::bind(options).await {
            Err(error @ ServerError::Tls { .. }) => {
                let message = error.to_string();
                assert!(message.contains("listener bad"), "{message}");
                assert!(message.contains(expected), "{message}");
            }
            Err(other) => panic!("unexpected error: {other}"),
            Ok(_) => panic!("bound with {expected}"),
        }
    }
}

#[tokio::test]
async fn a_silent_client_is_closed_at_the_connect_timeout_during_the_handshake() {
    let pki = Pki::new();
    let mut options = options_with_listeners(vec![
        listener("tls", ListenerKind::Tls(pki.tls()), loopback()),
        listener(
            "ws",
            ListenerKind::Ws(WebSocketOptions::default()),
            loopback(),
        ),
    ]);
    options.connect_timeout = Duration::from_millis(200);
    let server = start(options).await;
    for address in server.local_addrs().to_vec() {
        let mut socket = TcpStream::connect(address).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(GUARD, socket.read(&mut byte))
            .await
            .expect("the server kept a silent connection open");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    server.shutdown().await;
}

// ----- WebSocket -----

#[tokio::test]
async fn a_websocket_subscriber_gets_what_a_tcp_publisher_sends() {
    let server = start(options_with_listeners(vec![
        listener("tcp", ListenerKind::Tcp, loopback()),
        listener(
            "ws",
            ListenerKind::Ws(WebSocketOptions::default()),
            loopback(),
        ),
    ]))
    .await;
    let tcp_address = server.local_addrs()[0];
    let ws_address = server.local_addrs()[1];

    let stream = TcpStream::connect(ws_address).await.unwrap();
    let (socket, protocol) = ws_upgrade(stream, "/mqtt", "mqtt").await.unwrap();
    // [MQTT-6.0.0-4]
    assert_eq!(protocol.as_deref(), Some("mqtt"));
    let mut subscriber = WsClient::new(socket, V5);
    success(&subscriber.connect(connect_packet(V5, "ws-sub", true)).await);
    // [MQTT-6.0.0-2]: a packet may span frames, and a frame may hold several
    // packets (or parts of them).
    let subscribe = subscriber.bytes(&Packet::Subscribe(support::subscribe(
        1,
        "web/#",
        QoS::AtLeastOnce,
    )));
    subscriber.send_frames(&subscribe, 1).await;
    assert!(matches!(subscriber.expect().await, Packet::SubAck(_)));
    let mut two = subscriber.bytes(&Packet::PingReq);
    two.extend(subscriber.bytes(&Packet::PingReq));
    two.extend(subscriber.bytes(&Packet::PingReq));
    subscriber.send_frames(&two, 3).await;
    for _ in 0..3 {
        assert_eq!(subscriber.expect().await, Packet::PingResp);
    }

    let mut publisher = V4::connect(v4_options_for(tcp_address, "tcp-pub")).await.0;
    let large = vec![7u8; 200 * 1024];
    publisher
        .publish("web/large", rumqttc::QoS::AtLeastOnce, false, large.clone())
        .await;
    for index in 0..100u32 {
        publisher
            .publish(
                "web/small",
                rumqttc::QoS::AtLeastOnce,
                false,
                index.to_be_bytes().to_vec(),
            )
            .await;
    }
    let first = next_publish(&mut subscriber).await;
    assert_eq!(first.topic, "web/large");
    assert_eq!(first.payload.as_ref(), &large[..]);
    for index in 0..100u32 {
        let publish = next_publish(&mut subscriber).await;
        assert_eq!(publish.payload.as_ref(), index.to_be_bytes());
    }
    publisher.disconnect().await;
    server.shutdown().await;
}

/// The next PUBLISH, acknowledged if QoS 1.
async fn next_publish<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut WsClient<S>,
) -> switchboard_codec::Publish {
    match client.expect().await {
        Packet::Publish(publish) => {
            if let Some(packet_id) = publish.packet_id {
                client.send(Packet::PubAck(Ack::new(packet_id))).await;
            }
            publish
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

fn v4_options_for(address: SocketAddr, client_id: &str) -> rumqttc::MqttOptions {
    let mut options =
        rumqttc::MqttOptions::new(client_id, address.ip().to_string(), address.port());
    options.set_keep_alive(Duration::from_secs(60));
    options.set_max_packet_size(1024 * 1024, 1024 * 1024);
    options
}

#[tokio::test]
async fn the_upgrade_checks_the_path_and_answers_the_offered_subprotocol() {
    let server = start(options_with_listeners(vec![listener(
        "ws",
        ListenerKind::Ws(WebSocketOptions {
            path: "/broker".into(),
            ..WebSocketOptions::default()
        }),
        loopback(),
    )]))
    .await;
    let address = server.local_addrs()[0];

    let stream = TcpStream::connect(address).await.unwrap();
    match ws_upgrade(stream, "/mqtt", "mqtt").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 404);
        }
        other => panic!(
            "expected 404, got {:?}",
            other.map(|(_, protocol)| protocol)
        ),
    }
    for (offered, answered) in [
        ("mqtt", Some("mqtt")),
        ("mqttv3.1", Some("mqttv3.1")),
        ("wamp, mqtt", Some("mqtt")),
        ("", None),
    ] {
        let stream = TcpStream::connect(address).await.unwrap();
        // The query string does not matter.
        let (socket, protocol) = ws_upgrade(stream, "/broker?client=1", offered)
            .await
            .unwrap();
        assert_eq!(protocol.as_deref(), answered, "offered {offered:?}");
        let version = if offered == "mqttv3.1" {
            ProtocolVersion::V3_1
        } else {
            V4
        };
        let mut client = WsClient::new(socket, version);
        let client_id = format!("offered-{}", answered.unwrap_or("none"));
        success(
            &client
                .connect(connect_packet(version, &client_id, true))
                .await,
        );
    }

    // [MQTT-6.0.0-1]: a text frame closes the connection.
    let stream = TcpStream::connect(address).await.unwrap();
    let (socket, _) = ws_upgrade(stream, "/broker", "mqtt").await.unwrap();
    let mut client = WsClient::new(socket, V4);
    success(&client.connect(connect_packet(V4, "texter", true)).await);
    client
        .socket
        .send(Message::Text("PINGREQ".into()))
        .await
        .unwrap();
    assert_eq!(client.recv().await, None);
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_over_secure_websocket() {
    let pki = Pki::new();
    let server = start(options_with_listeners(vec![listener(
        "wss",
        ListenerKind::Wss(pki.tls(), WebSocketOptions::default()),
        loopback(),
    )]))
    .await;
    let address = server.local_addrs()[0];
    let stream = tls_connect(address, pki.client_config(None)).await.unwrap();
    let (socket, protocol) = ws_upgrade(stream, "/mqtt", "mqtt").await.unwrap();
    assert_eq!(protocol.as_deref(), Some("mqtt"));
    let mut client = WsClient::new(socket, V5);
    success(&client.connect(connect_packet(V5, "wss", true)).await);
    client
        .send(Packet::Subscribe(support::subscribe(
            1,
            "secure/#",
            QoS::AtLeastOnce,
        )))
        .await;
    assert!(matches!(client.expect().await, Packet::SubAck(_)));
    client
        .send(Packet::Publish(publish(
            "secure/echo",
            QoS::AtLeastOnce,
            Some(2),
            b"over wss",
        )))
        .await;
    let mut got_puback = false;
    let mut got_publish = false;
    while !(got_puback && got_publish) {
        match client.expect().await {
            Packet::PubAck(ack) => {
                assert_eq!(ack.packet_id, 2);
                got_puback = true;
            }
            Packet::Publish(publish) => {
                assert_eq!(publish.payload.as_ref(), b"over wss");
                got_publish = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn every_kind_listens_on_ipv4_and_ipv6_at_once() {
    let pki = Pki::new();
    let websocket = WebSocketOptions::default;
    let mut listeners = Vec::new();
    for (name, address) in [("4", loopback()), ("6", loopback_v6())] {
        listeners.push(listener(&format!("tcp{name}"), ListenerKind::Tcp, address));
        listeners.push(listener(
            &format!("tls{name}"),
            ListenerKind::Tls(pki.tls()),
            address,
        ));
        listeners.push(listener(
            &format!("ws{name}"),
            ListenerKind::Ws(websocket()),
            address,
        ));
        listeners.push(listener(
            &format!("wss{name}"),
            ListenerKind::Wss(pki.tls(), websocket()),
            address,
        ));
    }
    // Two of a kind on one family.
    listeners.push(listener(
        "tls4-again",
        ListenerKind::Tls(pki.tls()),
        loopback(),
    ));
    let kinds: Vec<(String, &'static str)> = listeners
        .iter()
        .map(|listener| (listener.name.clone(), listener.kind.as_str()))
        .collect();
    let server = start(options_with_listeners(listeners)).await;
    let addresses = server.local_addrs().to_vec();
    assert_eq!(addresses.len(), kinds.len());
    let config = pki.client_config(None);
    for ((name, kind), address) in kinds.iter().zip(&addresses) {
        assert_eq!(address.is_ipv6(), name.contains('6'), "{name} on {address}");
        let client_id = format!("client-{name}");
        let connect = connect_packet(V4, &client_id, true);
        let connack = match *kind {
            "tcp" => RawClient::tcp(*address, V4).await.connect(connect).await,
            "tls" => {
                let stream = tls_connect(*address, config.clone()).await.unwrap();
                RawClient::new(stream, V4).connect(connect).await
            }
            "ws" => {
                let stream = TcpStream::connect(address).await.unwrap();
                let (socket, _) = ws_upgrade(stream, "/mqtt", "mqtt").await.unwrap();
                WsClient::new(socket, V4).connect(connect).await
            }
            _ => {
                let stream = tls_connect(*address, config.clone()).await.unwrap();
                let (socket, _) = ws_upgrade(stream, "/mqtt", "mqtt").await.unwrap();
                WsClient::new(socket, V4).connect(connect).await
            }
        };
        success(&connack);
    }
    server.shutdown().await;
}

// ----- Counted refusals: failed TLS handshakes, refused origins -----

/// The listener `name`'s counters.
fn listener_stats(
    server: &switchboard_server::RunningServer,
    name: &str,
) -> Arc<switchboard_broker::ListenerStats> {
    server
        .broker()
        .metrics()
        .listeners
        .snapshot()
        .into_iter()
        .find(|(known, _)| known == name)
        .map(|(_, stats)| stats)
        .unwrap()
}

fn get(counter: &std::sync::atomic::AtomicU64) -> u64 {
    switchboard_broker::Metrics::get(counter)
}

#[tokio::test]
async fn failed_tls_handshakes_are_counted_per_listener_and_in_total() {
    let pki = Pki::new();
    let server = start(options_with_listeners(vec![
        listener("tls", ListenerKind::Tls(pki.tls()), loopback()),
        listener(
            "mutual",
            ListenerKind::Tls(pki.tls_requiring_client_certificates()),
            loopback(),
        ),
    ]))
    .await;
    let (tls, mutual) = (server.local_addrs()[0], server.local_addrs()[1]);
    let broker = server.broker();
    let metrics = broker.metrics();

    // Plain MQTT bytes on a TLS port: not a ClientHello, the server closes.
    let mut plain = TcpStream::connect(tls).await.unwrap();
    let mut connect = BytesMut::new();
    encode(
        &Packet::Connect(Box::new(connect_packet(V5, "plain", true))),
        V5,
        &mut connect,
    )
    .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut plain, &connect)
        .await
        .unwrap();
    // At most a TLS alert (record type 0x15) comes back, then the close;
    // never a CONNACK (0x20).
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(GUARD, plain.read_to_end(&mut answer))
        .await
        .expect("the server neither answered nor closed");
    assert!(
        answer.first().is_none_or(|first| *first == 0x15),
        "{answer:02x?}"
    );
    wait_until(|| get(&metrics.tls_handshake_failures) == 1).await;
    assert_eq!(
        get(&listener_stats(&server, "tls").tls_handshake_failures),
        1
    );
    assert_eq!(
        get(&listener_stats(&server, "mutual").tls_handshake_failures),
        0
    );

    // A client certificate from a CA the listener does not trust.
    let stranger = client_identity(&certificate_authority("Somebody else"), Some("device-1"));
    assert!(refused(mutual, pki.client_config(Some(stranger))).await);
    wait_until(|| get(&metrics.tls_handshake_failures) == 2).await;
    assert_eq!(
        get(&listener_stats(&server, "mutual").tls_handshake_failures),
        1
    );

    // A good handshake is not counted.
    let stream = tls_connect(tls, pki.client_config(None)).await.unwrap();
    let mut client = RawClient::new(stream, V5);
    success(&client.connect(connect_packet(V5, "good", true)).await);
    assert_eq!(get(&metrics.tls_handshake_failures), 2);
    assert_eq!(
        get(&listener_stats(&server, "tls").tls_handshake_failures),
        1
    );
    server.shutdown().await;
}

#[tokio::test]
async fn origins_outside_the_allow_list_get_403_and_are_counted() {
    let server = start(options_with_listeners(vec![
        listener(
            "browsers",
            ListenerKind::Ws(WebSocketOptions {
                allowed_origins: vec!["https://app.example".into()],
                ..WebSocketOptions::default()
            }),
            loopback(),
        ),
        listener(
            "open",
            ListenerKind::Ws(WebSocketOptions::default()),
            loopback(),
        ),
    ]))
    .await;
    let (browsers, open) = (server.local_addrs()[0], server.local_addrs()[1]);
    let upgrade = |address: SocketAddr, origin: Option<&'static str>| async move {
        let stream = TcpStream::connect(address).await.unwrap();
        let mut request = "ws://127.0.0.1/mqtt".into_client_request().unwrap();
        request
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, "mqtt".parse().unwrap());
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().unwrap());
        }
        tokio::time::timeout(GUARD, tokio_tungstenite::client_async(request, stream))
            .await
            .expect("WebSocket upgrade hung")
            .map(|(socket, _)| socket)
    };

    // Another origin: 403, before any MQTT.
    match upgrade(browsers, Some("https://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
        }
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    let broker = server.broker();
    let metrics = broker.metrics();
    assert_eq!(get(&metrics.websocket_origins_refused), 1);
    assert_eq!(
        get(&listener_stats(&server, "browsers").websocket_origins_refused),
        1
    );

    // The allowed origin (any ASCII case), and a client that sends no
    // Origin (not a browser), are served.
    for (origin, client_id) in [
        (Some("https://app.example"), "allowed"),
        (Some("HTTPS://APP.EXAMPLE"), "allowed-upper"),
        (None, "no-origin"),
    ] {
        let socket = upgrade(browsers, origin).await.unwrap();
        let mut client = WsClient::new(socket, V5);
        success(&client.connect(connect_packet(V5, client_id, true)).await);
    }
    // A listener without a list accepts any origin.
    let socket = upgrade(open, Some("https://evil.example")).await.unwrap();
    let mut client = WsClient::new(socket, V4);
    success(&client.connect(connect_packet(V4, "anywhere", true)).await);
    assert_eq!(get(&metrics.websocket_origins_refused), 1);
    assert_eq!(
        get(&listener_stats(&server, "open").websocket_origins_refused),
        0
    );
    server.shutdown().await;
}

// ----- rumqttc over WebSocket and secure WebSocket -----

/// rumqttc (3.1.1) over WebSocket (`wss`: with TLS trusting `tls`) to
/// `address`, path `/mqtt`. rumqttc offers the `mqtt` subprotocol and
/// checks that the answer names it.
fn rumqttc_ws(
    address: SocketAddr,
    client_id: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> rumqttc::MqttOptions {
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let url = format!("{scheme}://{address}/mqtt");
    let mut options = rumqttc::MqttOptions::new(client_id, url, address.port());
    options.set_keep_alive(Duration::from_secs(60));
    options.set_max_packet_size(1024 * 1024, 1024 * 1024);
    options.set_transport(match tls {
        Some(config) => {
            rumqttc::Transport::wss_with_config(rumqttc::TlsConfiguration::Rustls(config))
        }
        None => rumqttc::Transport::Ws,
    });
    options
}

/// rumqttc (5) over WebSocket, as [`rumqttc_ws`].
fn rumqttc_v5_ws(
    address: SocketAddr,
    client_id: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> rumqttc::v5::MqttOptions {
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let url = format!("{scheme}://{address}/mqtt");
    let mut options = rumqttc::v5::MqttOptions::new(client_id, url, address.port());
    options.set_keep_alive(Duration::from_secs(60));
    options.set_max_packet_size(Some(1024 * 1024));
    options.set_transport(match tls {
        Some(config) => {
            rumqttc::Transport::wss_with_config(rumqttc::TlsConfiguration::Rustls(config))
        }
        None => rumqttc::Transport::Ws,
    });
    options
}

/// A 3.1.1 subscriber and a 5.0 publisher, then the other way round, both
/// on `address` (ws or wss by `tls`): every message arrives, in order.
async fn rumqttc_round_trip(address: SocketAddr, tls: Option<Arc<rustls::ClientConfig>>) {
    let (mut v4_subscriber, connack) =
        V4::connect(rumqttc_ws(address, "ws-v4-sub", tls.clone())).await;
    assert_eq!(connack.code, rumqttc::ConnectReturnCode::Success);
    v4_subscriber
        .subscribe("web/v5/#", rumqttc::QoS::AtLeastOnce)
        .await;
    let (mut v5_subscriber, connack) =
        V5::connect(rumqttc_v5_ws(address, "ws-v5-sub", tls.clone())).await;
    assert_eq!(
        connack.code,
        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success
    );
    v5_subscriber
        .subscribe("web/v4/#", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await;

    // The 5.0 client publishes to the 3.1.1 one; messages larger than one
    // of the server's outgoing WebSocket messages are split and put back.
    let large = vec![0x5a; 100 * 1024];
    for index in 0..20u32 {
        v5_subscriber
            .publish(
                "web/v5/data",
                rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                false,
                index.to_be_bytes().to_vec(),
            )
            .await;
    }
    v5_subscriber
        .publish(
            "web/v5/large",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            large.clone(),
        )
        .await;
    for index in 0..20u32 {
        let publish = v4_subscriber.recv_publish().await;
        assert_eq!(publish.topic, "web/v5/data");
        assert_eq!(publish.payload.as_ref(), index.to_be_bytes());
    }
    let publish = v4_subscriber.recv_publish().await;
    assert_eq!(publish.topic, "web/v5/large");
    assert_eq!(publish.payload.as_ref(), large.as_slice());

    // And the 3.1.1 client publishes to the 5.0 one.
    for index in 0..20u32 {
        v4_subscriber
            .publish(
                "web/v4/data",
                rumqttc::QoS::AtLeastOnce,
                false,
                index.to_be_bytes().to_vec(),
            )
            .await;
    }
    for index in 0..20u32 {
        let publish = v5_subscriber.recv_publish().await;
        assert_eq!(publish.topic.as_ref(), b"web/v4/data");
        assert_eq!(publish.payload.as_ref(), index.to_be_bytes());
    }
    v4_subscriber.disconnect().await;
    v5_subscriber.disconnect().await;
}

#[tokio::test]
async fn rumqttc_publishes_and_subscribes_over_websocket() {
    let server = start(options_with_listeners(vec![listener(
        "ws",
        ListenerKind::Ws(WebSocketOptions::default()),
        loopback(),
    )]))
    .await;
    rumqttc_round_trip(server.local_addrs()[0], None).await;
    server.shutdown().await;
}

#[tokio::test]
async fn rumqttc_publishes_and_subscribes_over_secure_websocket() {
    let pki = Pki::new();
    let server = start(options_with_listeners(vec![listener(
        "wss",
        ListenerKind::Wss(pki.tls(), WebSocketOptions::default()),
        loopback(),
    )]))
    .await;
    rumqttc_round_trip(server.local_addrs()[0], Some(pki.client_config(None))).await;
    server.shutdown().await;
}
