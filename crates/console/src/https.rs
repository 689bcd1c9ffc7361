//! HTTPS: the console's listener with TLS in front.
//!
//! An accept loop takes TCP connections and runs each TLS handshake on a
//! task of its own, so a client that stalls its handshake holds up nobody
//! else; finished handshakes are handed to axum through [`TlsIncoming`], an
//! [`axum::serve::Listener`]. The handshake takes the listener's current
//! certificate (a [`TlsListener`] shared with the SIGHUP reload), so a
//! reload applies to the next connection and never cuts one that is open.
//!
//! Bounds: at most [`MAX_PENDING_HANDSHAKES`] handshakes at once (beyond
//! that the loop stops accepting and connections wait in the kernel's
//! backlog), each within [`HANDSHAKE_TIMEOUT`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use switchboard_tls::TlsListener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::Console;

/// Handshakes in progress at once. Each holds a socket and a little rustls
/// state; a browser opens a handful of connections, so this only bounds
/// what a flood of half-open connections can hold.
pub(crate) const MAX_PENDING_HANDSHAKES: usize = 128;

/// A handshake not finished by then is dropped: a real client needs one or
/// two round trips, a stalled one must not hold its socket.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// After a failed `accept` (out of file descriptors, say): wait this long
/// before the next, instead of spinning on the error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(250);

/// Connections whose handshake is done, waiting for axum to take them.
/// Short: axum takes each at once.
const READY_QUEUE: usize = 16;

/// The listener axum serves: connections that finished their handshake.
pub(crate) struct TlsIncoming {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_address: SocketAddr,
}

impl axum::serve::Listener for TlsIncoming {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop ended: it only does at shutdown, when axum's
            // graceful shutdown stops calling this anyway.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_address)
    }
}

/// Starts the accept loop on `listener`; it runs until `cancel` fires.
pub(crate) fn incoming(
    listener: TcpListener,
    local_address: SocketAddr,
    tls: Arc<TlsListener>,
    state: Console,
    cancel: CancellationToken,
) -> TlsIncoming {
    let (sender, ready) = mpsc::channel(READY_QUEUE);
    tokio::spawn(accept_loop(listener, tls, state, sender, cancel));
    TlsIncoming {
        ready,
        local_address,
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<TlsListener>,
    state: Console,
    sender: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    cancel: CancellationToken,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => return,
            permit = handshakes.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "HTTPS console: accept failed; retrying shortly");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = tls.acceptor();
        let sender = sender.clone();
        let state = state.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return,
                outcome = handshake => outcome,
            };
            drop(permit);
            match outcome {
                Ok(Ok(stream)) => {
                    let _ = sender.send((stream, peer)).await;
                }
                Ok(Err(error)) => {
                    state.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                    // Routine on a reachable port (scanners, plain HTTP,
                    // clients that distrust the certificate): debug only.
                    tracing::debug!(%peer, %error, "HTTPS console: TLS handshake failed");
                }
                Err(_) => {
                    state.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "HTTPS console: TLS handshake timed out");
                }
            }
        });
    }
}
