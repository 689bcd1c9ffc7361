//! Server-Sent Event streams: the live message view (`GET /api/v1/stream`)
//! and the overview's status (`GET /api/v1/status/stream`).
//!
//! The message stream registers a broker tap (see `switchboard_broker`'s
//! `add_tap`) with a bounded channel of [`TAP_CAPACITY`] messages. A browser
//! that reads more slowly than messages arrive loses the excess, and is told
//! how many with a `dropped` event; the broker never waits for it. The tap
//! is removed when the stream ends (browser gone, or shutdown).
//!
//! Events of the message stream, in order:
//! - `subscribed` `{"filter": ...}`, once the tap is registered: anything
//!   routed after this event is seen;
//! - `message` (a message as in the retained listing, plus `received_at`);
//! - `dropped` `{"count": n}`, the messages missed since the last report.
//!
//! At most [`MAX_STREAMS`] streams (of both kinds) are open at once; more
//! get 503. Every stream ends when the console shuts down.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use switchboard_broker::{TapError, TapHandle};
use switchboard_session::SharedMessage;
use tokio::sync::{broadcast, mpsc};

use crate::api::{plain_filter, ApiError};
use crate::payload::MessageView;
use crate::sampler::unix_ms;
use crate::Console;

/// Event streams open at once, over all browsers.
pub const MAX_STREAMS: u64 = 32;
/// Messages buffered per live view before it starts dropping.
pub(crate) const TAP_CAPACITY: usize = 256;
/// A comment line this often keeps proxies from closing an idle stream, and
/// lets the server notice a browser that went away.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub(crate) fn routes() -> Router<Console> {
    Router::new()
        .route("/api/v1/stream", get(messages))
        .route("/api/v1/status/stream", get(status))
}

/// Holds a stream slot (and the tap, for message streams) until the stream
/// is dropped.
struct Slot {
    state: Console,
    tap: Option<TapHandle>,
    /// Drops already told to the browser.
    reported: u64,
}

impl Slot {
    fn acquire(state: &Console) -> Result<Slot, ApiError> {
        let open = state.streams_open.fetch_add(1, Ordering::Relaxed);
        if open >= MAX_STREAMS {
            state.streams_open.fetch_sub(1, Ordering::Relaxed);
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                format!("at most {MAX_STREAMS} live streams may be open at once"),
            ));
        }
        Ok(Slot {
            state: state.clone(),
            tap: None,
            reported: 0,
        })
    }

    /// Drops since the last call, if any.
    fn new_drops(&mut self) -> Option<u64> {
        let dropped = self.tap.as_ref()?.dropped();
        let new = dropped.saturating_sub(self.reported);
        self.reported = dropped;
        (new > 0).then_some(new)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(tap) = self.tap.take() {
            self.state.broker.remove_tap(tap.id());
            self.state
                .stream_dropped
                .fetch_add(tap.dropped(), Ordering::Relaxed);
        }
        self.state.streams_open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamQuery {
    filter: String,
}

#[derive(Debug, Serialize)]
struct Subscribed<'a> {
    filter: &'a str,
}

#[derive(Debug, Serialize)]
struct Dropped {
    count: u64,
}

#[derive(Debug, Serialize)]
struct LiveMessage {
    #[serde(flatten)]
    message: MessageView,
    /// When the broker routed it, Unix ms.
    received_at: u64,
}

fn json_event(name: &'static str, value: &impl Serialize) -> Event {
    let data = serde_json::to_string(value).unwrap_or_else(|_| "null".to_string());
    Event::default().event(name).data(data)
}

fn sse(events: impl Stream<Item = Event> + Send + 'static) -> Response {
    Sse::new(events.map(Ok::<Event, Infallible>))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// The live message view: every message routed to a topic matching `filter`.
async fn messages(
    State(state): State<Console>,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    plain_filter(&state.broker, &query.filter)?;
    let mut slot = Slot::acquire(&state)?;
    let (sender, receiver) = mpsc::channel::<SharedMessage>(TAP_CAPACITY);
    let tap = state
        .broker
        .add_tap(&query.filter, sender)
        .map_err(|error| match error {
            TapError::TooMany => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                error.to_string(),
            ),
            other => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", other.to_string()),
        })?;
    slot.tap = Some(tap);
    let first = json_event(
        "subscribed",
        &Subscribed {
            filter: &query.filter,
        },
    );
    let live = stream::unfold((receiver, slot), |(mut receiver, mut slot)| async move {
        let message = receiver.recv().await?;
        let mut events = Vec::with_capacity(2);
        if let Some(count) = slot.new_drops() {
            events.push(json_event("dropped", &Dropped { count }));
        }
        events.push(json_event(
            "message",
            &LiveMessage {
                message: MessageView::of(&message, Instant::now()),
                received_at: unix_ms(SystemTime::now()),
            },
        ));
        Some((stream::iter(events), (receiver, slot)))
    })
    .flatten();
    let events = stream::once(async move { first })
        .chain(live)
        .take_until(state.cancel.clone().cancelled_owned());
    Ok(sse(events))
}

/// The overview: the status document once a second (see `sampler`), the
/// first one at once.
async fn status(State(state): State<Console>) -> Result<Response, ApiError> {
    let slot = Slot::acquire(&state)?;
    let receiver = state.sampler.subscribe();
    let first: Arc<str> = serde_json::to_string(&crate::api::status(&state))
        .map(Arc::from)
        .unwrap_or_else(|_| Arc::from("null"));
    let updates = stream::unfold((receiver, slot), |(mut receiver, slot)| async move {
        loop {
            match receiver.recv().await {
                Ok(json) => return Some((json, (receiver, slot))),
                // A slow browser skips to the newest document.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let events = stream::once(async move { first })
        .chain(updates)
        .map(|json| Event::default().event("status").data(&*json))
        .take_until(state.cancel.clone().cancelled_owned());
    Ok(sse(events))
}
