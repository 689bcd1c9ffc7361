//! From an accepted TCP socket to a byte stream the connection task can
//! serve: nothing for `tcp`, a TLS handshake for `tls`, an HTTP upgrade for
//! `ws`, both for `wss`.
//!
//! The handshakes run on the connection's own task (never in the accept
//! loop, so a slow client cannot hold up others), after the connection
//! permits were taken (so half-open handshakes count against the limits),
//! and within one deadline of `connect_timeout` for all of them together.
//! The wait for CONNECT starts afterwards, with its own `connect_timeout`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use switchboard_tls::TlsListener;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use switchboard_broker::{ListenerStats, Metrics};

use crate::auth::CertificateUser;
use crate::connection::{self, Setup};
use crate::{websocket, ListenerKind};

/// What a listener's connections need to set up their transport.
#[derive(Debug)]
pub(crate) struct Transport {
    pub(crate) kind: ListenerKind,
    /// The live TLS configuration, for `tls` and `wss` listeners.
    pub(crate) tls: Option<Arc<TlsListener>>,
    /// The listener's counters (failed handshakes, refused origins).
    pub(crate) stats: Arc<ListenerStats>,
}

/// Sets up the transport on the accepted stream and serves the connection on
/// it. `setup.certificate` is ignored: the TLS handshake decides it.
pub(crate) async fn serve(transport: Arc<Transport>, setup: Box<Setup<TcpStream>>) {
    match (&transport.kind, &transport.tls) {
        (ListenerKind::Tcp, _) => connection::serve(setup).await,
        // The other transports are boxed: a task's future is as large as its
        // largest variant and lives as long as the connection, so inline TLS and
        // WebSocket state would cost every plain TCP connection as much.
        (ListenerKind::Tls(_), Some(tls)) => {
            Box::pin(async {
                let (stream, setup) = setup.take_stream();
                let deadline = handshake_deadline(&setup);
                let Some(stream) = handshake(&transport, tls, &setup, stream, deadline).await
                else {
                    return;
                };
                let user = certificate_user(tls, &stream);
                connection::serve(setup.with_stream(stream, user)).await;
            })
            .await;
        }
        (ListenerKind::Ws(options), _) => {
            Box::pin(async {
                let (stream, setup) = setup.take_stream();
                let deadline = handshake_deadline(&setup);
                let Some(stream) = upgrade(&transport, &setup, stream, options, deadline).await
                else {
                    return;
                };
                connection::serve(setup.with_stream(stream, CertificateUser::NotUsed)).await;
            })
            .await;
        }
        (ListenerKind::Wss(_, options), Some(tls)) => {
            Box::pin(async {
                let (stream, setup) = setup.take_stream();
                let deadline = handshake_deadline(&setup);
                let Some(stream) = handshake(&transport, tls, &setup, stream, deadline).await
                else {
                    return;
                };
                let user = certificate_user(tls, &stream);
                let Some(stream) = upgrade(&transport, &setup, stream, options, deadline).await
                else {
                    return;
                };
                connection::serve(setup.with_stream(stream, user)).await;
            })
            .await;
        }
        (ListenerKind::Tls(_) | ListenerKind::Wss(..), None) => {
            // `Server::bind` loads the TLS configuration of every tls and wss
            // listener; without one there is nothing safe to do but close.
            tracing::error!(peer = %setup.peer, "TLS listener without a TLS configuration; closing");
        }
    }
}

/// One deadline for all the handshakes of a connection together.
fn handshake_deadline(setup: &Setup<()>) -> tokio::time::Instant {
    tokio::time::Instant::now() + setup.shared.options.connect_timeout
}

/// The TLS handshake, with the certificate current at its start. A failure
/// (an error or the deadline) is counted globally and for the listener.
async fn handshake(
    transport: &Transport,
    tls: &TlsListener,
    setup: &Setup<()>,
    stream: TcpStream,
    deadline: tokio::time::Instant,
) -> Option<TlsStream<TcpStream>> {
    let accept = tls.acceptor().accept(stream);
    within(
        deadline,
        &setup.cancel,
        setup.peer,
        "TLS handshake",
        accept,
        |_| {
            Metrics::incr(&setup.shared.broker.metrics().tls_handshake_failures);
            Metrics::incr(&transport.stats.tls_handshake_failures);
        },
    )
    .await
}

/// The WebSocket upgrade; an upgrade refused for its `Origin` is counted
/// globally and for the listener.
async fn upgrade<S>(
    transport: &Transport,
    setup: &Setup<()>,
    stream: S,
    options: &websocket::WebSocketOptions,
    deadline: tokio::time::Instant,
) -> Option<websocket::WebSocketIo<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let shared = &setup.shared;
    let max_packet_size = shared.options.broker.max_packet_size;
    let accept = websocket::accept(stream, options, max_packet_size);
    let (stream, _) = within(
        deadline,
        &setup.cancel,
        setup.peer,
        "WebSocket upgrade",
        accept,
        |error| {
            if let Some(websocket::UpgradeError::OriginRefused { .. }) = error {
                Metrics::incr(&shared.broker.metrics().websocket_origins_refused);
                Metrics::incr(&transport.stats.websocket_origins_refused);
            }
        },
    )
    .await?;
    Some(stream)
}

/// Runs one handshake step until `deadline`; `None` (logged) when it fails,
/// times out, or the server shuts down. `failed` is called on a failure
/// with its error, or with `None` when the deadline passed (not when the
/// server shuts down). Failures are logged at debug level: on a public
/// address, scanners and clients with bad certificates are routine.
async fn within<T, E: std::fmt::Display>(
    deadline: tokio::time::Instant,
    cancel: &CancellationToken,
    peer: SocketAddr,
    what: &str,
    step: impl Future<Output = Result<T, E>>,
    failed: impl FnOnce(Option<&E>),
) -> Option<T> {
    tokio::select! {
        _ = cancel.cancelled() => None,
        result = tokio::time::timeout_at(deadline, step) => match result {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "{what} failed; closing");
                failed(Some(&error));
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "{what} not finished within the connect timeout; closing");
                failed(None);
                None
            }
        },
    }
}

/// The user name the client certificate gives, on a listener with
/// `use_subject_as_username`. rustls has verified the certificate against
/// the listener's CA by now.
fn certificate_user(tls: &TlsListener, stream: &TlsStream<TcpStream>) -> CertificateUser {
    if !tls.options().use_subject_as_username {
        return CertificateUser::NotUsed;
    }
    let (_, connection) = stream.get_ref();
    let Some(certificate) = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
    else {
        return CertificateUser::Unnamed("no client certificate".to_owned());
    };
    match crate::subject::common_name(certificate) {
        Ok(name) => CertificateUser::Named(Arc::from(name)),
        Err(error) => CertificateUser::Unnamed(error.to_string()),
    }
}
