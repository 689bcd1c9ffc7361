//! MQTT over WebSocket, for the `ws` and `wss` listeners: the HTTP upgrade
//! and an adapter that turns the WebSocket's binary messages back into the
//! byte stream the connection task reads and writes.
//!
//! The rules ([MQTT-6.0.0-1] to [MQTT-6.0.0-4]): MQTT travels in binary
//! frames, and a frame may hold several packets or part of one, so the
//! adapter hands out message payloads as one continuous stream and the
//! decoder never sees frame boundaries. A text frame ends the connection.
//! The server answers with the subprotocol the client offered: `mqtt`
//! (MQTT 3.1.1 and 5.0), or `mqttv3.1` (what MQTT 3.1 clients offer). A
//! client that offers neither gets no subprotocol in the answer, and may
//! close; one that offers none at all is served anyway, as other brokers do.
//!
//! Bounds: the upgrade request is read up to 64 KiB (tungstenite's limit)
//! within the connect timeout; an incoming message or frame is refused above
//! the broker's maximum packet size plus [`WEBSOCKET_MESSAGE_SLACK`], so a
//! client can not make the server buffer more for one message than for one
//! packet; every outgoing write becomes one binary message of at most
//! [`MAX_OUTGOING_MESSAGE`] bytes.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// The HTTP path MQTT clients conventionally use.
pub const DEFAULT_WEBSOCKET_PATH: &str = "/mqtt";

/// Subprotocols accepted, as offered by clients: the registered name, and
/// the one MQTT 3.1 clients (Paho JavaScript and others) offer.
const SUBPROTOCOLS: &[&str] = &["mqtt", "mqttv3.1"];

/// Room above the maximum packet size for one WebSocket message: a client
/// may put a few small packets (PUBACKs, a PINGREQ) in the same message as a
/// large PUBLISH.
pub(crate) const WEBSOCKET_MESSAGE_SLACK: usize = 64 * 1024;

/// Largest binary message the server sends; a larger write is split over
/// several (the client reassembles the stream, [MQTT-6.0.0-2]).
const MAX_OUTGOING_MESSAGE: usize = 64 * 1024;

/// tungstenite's read buffer per connection: enough for typical MQTT traffic,
/// and small because every WebSocket connection holds one (its default,
/// 128 KiB, would cost more than a whole TCP connection does).
const READ_BUFFER: usize = 8 * 1024;
/// Outgoing messages are collected up to this size before being written, and
/// always written when the connection task flushes.
const WRITE_BUFFER: usize = 8 * 1024;

/// What a `ws` or `wss` listener needs besides its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketOptions {
    /// The HTTP path clients upgrade on (`/mqtt`); any other path is answered
    /// 404. The query string is ignored.
    pub path: String,
    /// The web origins (`https://example.com`, `http://localhost:8080`) whose
    /// pages may open a connection; an upgrade whose `Origin` header is not
    /// one of them is answered 403. Empty (the default): every origin is
    /// accepted. A request without an `Origin` header (not from a browser)
    /// is accepted either way. See [`origin_allowed`] for why.
    pub allowed_origins: Vec<String>,
}

impl Default for WebSocketOptions {
    fn default() -> Self {
        WebSocketOptions {
            path: DEFAULT_WEBSOCKET_PATH.to_owned(),
            allowed_origins: Vec::new(),
        }
    }
}

/// Whether an upgrade request with this `Origin` header may go ahead.
///
/// Why every origin is accepted unless a list is configured: MQTT
/// authenticates in CONNECT, with credentials the page's own script sends,
/// not with cookies or other ambient credentials a browser would attach to
/// a cross-site request. So a hostile page gains nothing from connecting
/// that any program could not do directly, which is what Mosquitto and
/// other brokers assume too. A list is for deployments that want browsers
/// to connect only from their own pages (for example where the network
/// position itself is trusted: anonymous access on an intranet).
///
/// A request without `Origin` does not come from a browser (browsers always
/// send it on WebSocket upgrades), and any other program can send whatever
/// `Origin` it likes, so the header means nothing outside browsers: such
/// requests are not refused. Origins compare without regard to ASCII case
/// (scheme and host are case-insensitive) and without a trailing `/`.
pub(crate) fn origin_allowed(allowed: &[String], origin: Option<&[u8]>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    if allowed.is_empty() {
        return true;
    }
    let origin = origin.strip_suffix(b"/").unwrap_or(origin);
    allowed.iter().any(|candidate| {
        let candidate = candidate.as_bytes();
        let candidate = candidate.strip_suffix(b"/").unwrap_or(candidate);
        candidate.eq_ignore_ascii_case(origin)
    })
}

/// The WebSocket settings for a broker whose largest packet is
/// `max_packet_size` bytes.
fn config(max_packet_size: u32) -> WebSocketConfig {
    let limit = usize::try_from(max_packet_size)
        .unwrap_or(usize::MAX)
        .saturating_add(WEBSOCKET_MESSAGE_SLACK);
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
}

/// Why an upgrade failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpgradeError {
    #[error("WebSocket upgrade failed: {0}")]
    Handshake(#[from] WsError),
    /// Answered 403: the `Origin` header is not in `allowed_origins`.
    #[error("WebSocket upgrade refused: origin {origin:?} is not allowed")]
    OriginRefused { origin: String },
}

/// Performs the server side of the upgrade on `stream`: checks the path,
/// picks the subprotocol. Returns the stream ready for MQTT and the
/// subprotocol chosen (if any). The caller bounds it in time.
pub(crate) async fn accept<S>(
    stream: S,
    options: &WebSocketOptions,
    max_packet_size: u32,
) -> Result<(WebSocketIo<S>, Option<&'static str>), UpgradeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut chosen = None;
    let mut refused_origin = None;
    // The error type is tungstenite's (an HTTP response), not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, mut response: Response| {
        if request.uri().path() != options.path {
            let mut refusal =
                ErrorResponse::new(Some(format!("MQTT is served on {}\n", options.path)));
            *refusal.status_mut() = StatusCode::NOT_FOUND;
            return Err(refusal);
        }
        let origin = request.headers().get(header::ORIGIN);
        if !origin_allowed(&options.allowed_origins, origin.map(HeaderValue::as_bytes)) {
            refused_origin = Some(
                origin
                    .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
                    .unwrap_or_default(),
            );
            let mut refusal = ErrorResponse::new(Some("origin not allowed\n".to_owned()));
            *refusal.status_mut() = StatusCode::FORBIDDEN;
            return Err(refusal);
        }
        if let Some(protocol) = pick_subprotocol(request) {
            chosen = Some(protocol);
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(protocol),
            );
        }
        Ok(response)
    };
    let accepted = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        callback,
        Some(config(max_packet_size)),
    )
    .await;
    let stream = match (accepted, refused_origin) {
        (Ok(stream), _) => stream,
        (Err(_), Some(origin)) => return Err(UpgradeError::OriginRefused { origin }),
        (Err(error), None) => return Err(error.into()),
    };
    Ok((WebSocketIo::new(stream), chosen))
}

/// The first subprotocol the client offers that MQTT uses ([MQTT-6.0.0-3],
/// [MQTT-6.0.0-4]). The header may repeat and each holds a comma-separated
/// list.
fn pick_subprotocol(request: &Request) -> Option<&'static str> {
    request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .find_map(|offered| SUBPROTOCOLS.iter().copied().find(|known| *known == offered))
}

/// A WebSocket connection as a byte stream: reads yield the payloads of
/// binary messages in order, writes become binary messages.
///
/// Invariant: `pending` holds the unread rest of the last binary message;
/// the next message is read only once it is empty.
#[derive(Debug)]
pub(crate) struct WebSocketIo<S> {
    inner: WebSocketStream<S>,
    pending: Bytes,
}

impl<S> WebSocketIo<S> {
    fn new(inner: WebSocketStream<S>) -> Self {
        WebSocketIo {
            inner,
            pending: Bytes::new(),
        }
    }
}

fn io_error(error: WsError) -> io::Error {
    match error {
        WsError::Io(error) => error,
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WebSocketIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let count = self.pending.len().min(buf.remaining());
                let chunk = self.pending.split_to(count);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            let message = ready!(Pin::new(&mut self.inner).poll_next(cx));
            match message {
                // The end of the stream (after a close frame, or the socket
                // closing) reads as end of file.
                None => return Poll::Ready(Ok(())),
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    return Poll::Ready(Ok(()))
                }
                Some(Err(error)) => return Poll::Ready(Err(io_error(error))),
                Some(Ok(Message::Binary(data))) => self.pending = data,
                Some(Ok(Message::Text(_))) => {
                    // [MQTT-6.0.0-1]: any frame but binary closes the connection.
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "[MQTT-6.0.0-1] text frame on an MQTT WebSocket connection",
                    )));
                }
                // tungstenite answers pings itself; a close frame is followed
                // by the end of the stream.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_))) => {}
                Some(Ok(Message::Frame(_))) => {}
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WebSocketIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(Pin::new(&mut self.inner).poll_ready(cx)).map_err(io_error)?;
        let count = buf.len().min(MAX_OUTGOING_MESSAGE);
        let chunk = buf.get(..count).unwrap_or(buf);
        Pin::new(&mut self.inner)
            .start_send(Message::Binary(Bytes::copy_from_slice(chunk)))
            .map_err(io_error)?;
        Poll::Ready(Ok(count))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx).map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_only_against_a_configured_list() {
        let none: Vec<String> = Vec::new();
        assert!(origin_allowed(&none, Some(b"https://evil.example")));
        assert!(origin_allowed(&none, None));
        let list = vec![
            "https://app.example".to_owned(),
            "http://localhost:8080/".to_owned(),
        ];
        assert!(origin_allowed(&list, Some(b"https://app.example")));
        assert!(origin_allowed(&list, Some(b"HTTPS://APP.example/")));
        assert!(origin_allowed(&list, Some(b"http://localhost:8080")));
        assert!(!origin_allowed(&list, Some(b"https://app.example:444")));
        assert!(!origin_allowed(&list, Some(b"http://app.example")));
        assert!(!origin_allowed(&list, Some(b"null")));
        assert!(!origin_allowed(&list, Some(b"")));
        // Not a browser: the header would mean nothing.
        assert!(origin_allowed(&list, None));
    }
}
