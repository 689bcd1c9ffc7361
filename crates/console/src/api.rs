//! The JSON API under `/api/v1`. `assets/openapi.json` describes every
//! route and response here; the integration tests check each response
//! against it, so a change here that the document does not follow fails.
//!
//! Listings walk the broker's sessions (one short lock each, never across
//! `.await`) and page their results; nothing here holds a broker lock while
//! serializing.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Extension;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use switchboard_broker::persist::StoreError;
use switchboard_broker::{Broker, Metrics, SessionInfo};
use switchboard_codec::{ProtocolVersion, PublishProperties, QoS, ReasonCode};
use switchboard_session::Message;
use switchboard_topic::FilterKind;

use crate::access::Principal;
use crate::payload::{MessageView, PayloadView};
use crate::sampler::{instant_to_unix_ms, Sample};
use crate::Console;

/// Most items one page of a listing returns.
pub const MAX_PAGE: usize = 1000;
/// Items a listing returns when the request does not say.
const DEFAULT_PAGE: usize = 100;
/// Subscriptions the tree view holds at most; beyond, it says `truncated`.
const MAX_TREE_SUBSCRIPTIONS: usize = 10_000;
/// Topic levels the tree view nests at most; deeper levels stay joined in
/// the last node, so a filter with thousands of levels cannot make the
/// response (or its serialization) that deep.
const MAX_TREE_DEPTH: usize = 32;
/// Request bodies larger than this are refused before they are read. Room
/// for a maximum-size payload written as hex, plus properties.
const MIN_BODY_LIMIT: usize = 64 * 1024;

/// An error answer: `{"error": code, "message": text}` with a status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: &self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        // One status for every malformed body (axum says 415 or 422 for
        // some), so clients need to handle only 400 and 413.
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                rejection.body_text(),
            )
        } else {
            ApiError::bad_request(rejection.body_text())
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

type ApiResult<T> = Result<T, ApiError>;

pub(crate) fn routes(body_limit: usize) -> Router<Console> {
    Router::new()
        .route("/api/v1/status", get(get_status))
        .route("/api/v1/status/history", get(get_history))
        .route("/api/v1/clients", get(list_clients))
        .route("/api/v1/clients/{id}", get(get_client))
        .route("/api/v1/clients/{id}/disconnect", post(disconnect_client))
        .route("/api/v1/sessions/{id}", delete(delete_session))
        .route("/api/v1/subscriptions", get(list_subscriptions))
        .route("/api/v1/retained", get(list_retained))
        .route("/api/v1/retained/{*topic}", delete(delete_retained))
        .route("/api/v1/publish", post(publish))
        .layer(DefaultBodyLimit::max(body_limit))
}

/// 404 for anything no route matched: JSON under `/api`, text elsewhere.
pub(crate) async fn not_found(uri: Uri) -> Response {
    if uri.path().starts_with("/api/") {
        ApiError::not_found(format!("no such endpoint: {}", uri.path())).into_response()
    } else {
        (StatusCode::NOT_FOUND, "not found\n").into_response()
    }
}

fn protocol_name(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V3_1 => "3.1",
        ProtocolVersion::V3_1_1 => "3.1.1",
        ProtocolVersion::V5 => "5.0",
    }
}

// ---------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------

/// What is summed over every session: one walk, one short lock per session.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Gauges {
    pub(crate) sessions: usize,
    pub(crate) queued_messages: usize,
    pub(crate) queued_bytes: usize,
    pub(crate) inflight: usize,
}

pub(crate) fn gauges(broker: &Broker) -> Gauges {
    let sessions = broker.sessions();
    let mut gauges = Gauges {
        sessions: sessions.len(),
        ..Gauges::default()
    };
    for entry in sessions {
        let counts = entry.counts();
        gauges.queued_messages += counts.queued;
        gauges.queued_bytes += counts.queued_bytes;
        gauges.inflight += counts.inflight;
    }
    gauges
}

#[derive(Debug, Serialize)]
pub(crate) struct Totals {
    messages_in: u64,
    messages_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    connections: u64,
    /// PUBLISH packets received, by QoS 0, 1, 2.
    publish_in_by_qos: [u64; 3],
    /// PUBLISH packets sent, by QoS 0, 1, 2.
    publish_out_by_qos: [u64; 3],
    /// Payload bytes of the PUBLISH packets received, by QoS 0, 1, 2.
    publish_bytes_in_by_qos: [u64; 3],
    /// Payload bytes of the PUBLISH packets sent, by QoS 0, 1, 2.
    publish_bytes_out_by_qos: [u64; 3],
}

#[derive(Debug, Serialize)]
pub(crate) struct Drops {
    queue_full: u64,
    queue_bytes_full: u64,
    qos0_offline: u64,
    expired: u64,
    too_large: u64,
    no_subscribers: u64,
    not_authorized: u64,
    memory_budget: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Refusals {
    connections: u64,
    protocol_errors: u64,
    keep_alive_timeouts: u64,
    connect_timeouts: u64,
    auth_failures: u64,
    auth_throttled: u64,
    publish_not_authorized: u64,
    subscriptions: u64,
    retained: u64,
    store: u64,
    connections_rate_limited: u64,
    packets_too_large: u64,
    topic_names: u64,
    publish_quota_exceeded: u64,
}

/// One listener's socket counts (see `switchboard_broker::ListenerStats`).
#[derive(Debug, Serialize)]
pub(crate) struct ListenerStatus {
    name: String,
    connections: u64,
    connections_total: u64,
    connections_refused: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Status {
    version: &'static str,
    uptime_secs: u64,
    started_at: u64,
    ready: bool,
    connections: u64,
    sessions: usize,
    subscriptions: usize,
    retained: usize,
    queued_messages: usize,
    queued_bytes: usize,
    /// Bytes counted against the broker-wide queue memory budget, and the
    /// budget (`max_queued_bytes_total`; 0 = unlimited).
    queued_bytes_total: usize,
    queued_bytes_limit: usize,
    inflight: usize,
    /// Averaged over the last few seconds.
    rates: Sample,
    /// The newest one-second sample (what the overview charts append);
    /// `null` until the first second has passed.
    last_sample: Option<Sample>,
    totals: Totals,
    drops: Drops,
    refusals: Refusals,
    takeovers: u64,
    wills_published: u64,
    sessions_expired: u64,
    accept_errors: u64,
    clients_throttled: u64,
    store_damaged_regions: u64,
    /// In the order the server bound them.
    listeners: Vec<ListenerStatus>,
    /// Live message streams open, and messages they missed (slow browser).
    streams: u64,
    stream_dropped: u64,
}

pub(crate) fn status(state: &Console) -> Status {
    let broker = &state.broker;
    let metrics = broker.metrics();
    let get = Metrics::get;
    let now = Instant::now();
    let gauges = gauges(broker);
    let by_qos = |counters: &[std::sync::atomic::AtomicU64; 3]| {
        let mut values = [0u64; 3];
        for (value, counter) in values.iter_mut().zip(counters) {
            *value = get(counter);
        }
        values
    };
    Status {
        version: crate::VERSION,
        uptime_secs: now.saturating_duration_since(broker.started()).as_secs(),
        started_at: instant_to_unix_ms(broker.started(), now, SystemTime::now()),
        ready: state.options.ready.is_ready(),
        connections: get(&metrics.connections_current),
        sessions: gauges.sessions,
        subscriptions: broker.subscription_count(),
        retained: broker.retained_count(),
        queued_messages: gauges.queued_messages,
        queued_bytes: gauges.queued_bytes,
        queued_bytes_total: broker.queued_bytes_total(),
        queued_bytes_limit: broker.queued_bytes_limit(),
        inflight: gauges.inflight,
        rates: state.sampler.recent(),
        last_sample: state.sampler.last(),
        totals: Totals {
            messages_in: get(&metrics.messages_received),
            messages_out: get(&metrics.messages_sent),
            bytes_in: get(&metrics.bytes_received),
            bytes_out: get(&metrics.bytes_sent),
            connections: get(&metrics.connections_total),
            publish_in_by_qos: by_qos(&metrics.publish_received_by_qos),
            publish_out_by_qos: by_qos(&metrics.publish_sent_by_qos),
            publish_bytes_in_by_qos: by_qos(&metrics.bytes_received_by_qos),
            publish_bytes_out_by_qos: by_qos(&metrics.bytes_sent_by_qos),
        },
        drops: Drops {
            queue_full: get(&metrics.dropped_queue_full),
            queue_bytes_full: get(&metrics.dropped_queue_bytes_full),
            qos0_offline: get(&metrics.dropped_qos0_offline),
            expired: get(&metrics.dropped_expired),
            too_large: get(&metrics.dropped_too_large),
            no_subscribers: get(&metrics.dropped_no_subscribers),
            not_authorized: get(&metrics.dropped_not_authorized),
            memory_budget: get(&metrics.dropped_memory_budget),
        },
        refusals: Refusals {
            connections: get(&metrics.connections_refused),
            protocol_errors: get(&metrics.protocol_errors),
            keep_alive_timeouts: get(&metrics.keep_alive_timeouts),
            connect_timeouts: get(&metrics.connect_timeouts),
            auth_failures: get(&metrics.auth_failures),
            auth_throttled: get(&metrics.auth_throttled),
            publish_not_authorized: get(&metrics.publish_not_authorized),
            subscriptions: get(&metrics.subscriptions_refused),
            retained: get(&metrics.retained_refused),
            store: get(&metrics.store_refusals),
            connections_rate_limited: get(&metrics.connections_rate_limited),
            packets_too_large: get(&metrics.packets_too_large),
            topic_names: get(&metrics.topic_names_refused),
            publish_quota_exceeded: get(&metrics.publish_quota_exceeded),
        },
        takeovers: get(&metrics.takeovers),
        wills_published: get(&metrics.wills_published),
        sessions_expired: get(&metrics.sessions_expired),
        accept_errors: get(&metrics.accept_errors),
        clients_throttled: get(&metrics.clients_throttled),
        store_damaged_regions: get(&metrics.store_damaged_regions),
        listeners: metrics
            .listeners
            .snapshot()
            .into_iter()
            .map(|(name, stats)| ListenerStatus {
                name,
                connections: get(&stats.connections_current),
                connections_total: get(&stats.connections_total),
                connections_refused: get(&stats.connections_refused),
            })
            .collect(),
        streams: state.streams_open.load(Ordering::Relaxed),
        stream_dropped: state.stream_dropped.load(Ordering::Relaxed),
    }
}

async fn get_status(State(state): State<Console>) -> Json<Status> {
    Json(status(&state))
}

#[derive(Debug, Serialize)]
struct History {
    interval_secs: u64,
    samples: Vec<Sample>,
}

async fn get_history(State(state): State<Console>) -> Json<History> {
    Json(History {
        interval_secs: crate::sampler::SAMPLE_INTERVAL.as_secs(),
        samples: state.sampler.history(),
    })
}

// ---------------------------------------------------------------------------
// Clients and sessions
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum StateFilter {
    #[default]
    All,
    Connected,
    Disconnected,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ClientSort {
    #[default]
    ClientId,
    Peer,
    Protocol,
    ConnectedSince,
    Subscriptions,
    Queued,
    Inflight,
    BytesIn,
    BytesOut,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Order {
    #[default]
    Asc,
    Desc,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientQuery {
    q: Option<String>,
    #[serde(default)]
    state: StateFilter,
    #[serde(default)]
    sort: ClientSort,
    #[serde(default)]
    order: Order,
    offset: Option<usize>,
    limit: Option<usize>,
}

/// One client (session) in a listing.
#[derive(Debug, Serialize)]
struct ClientSummary {
    client_id: String,
    connected: bool,
    username: Option<String>,
    peer: Option<String>,
    protocol: &'static str,
    keep_alive: Option<u16>,
    /// Seconds; `null` when the session never expires.
    session_expiry: Option<u32>,
    /// Unix ms; `null` while disconnected.
    connected_since: Option<u64>,
    /// Seconds until a disconnected session ends; `null` while connected or
    /// if it never expires.
    expires_in: Option<u64>,
    subscriptions: usize,
    queued: usize,
    queued_bytes: usize,
    inflight: usize,
    /// Bytes read from and written to the client's connections since the
    /// session began.
    bytes_in: u64,
    bytes_out: u64,
}

impl ClientSummary {
    fn of(info: &SessionInfo, now: Instant, wall_now: SystemTime) -> ClientSummary {
        ClientSummary {
            client_id: info.client_id.clone(),
            connected: info.connected,
            username: info.username.clone(),
            peer: info.peer.clone(),
            protocol: protocol_name(info.protocol),
            keep_alive: info.keep_alive,
            session_expiry: (info.session_expiry != u32::MAX).then_some(info.session_expiry),
            connected_since: info
                .connected_since
                .map(|at| instant_to_unix_ms(at, now, wall_now)),
            expires_in: info
                .expires_at
                .map(|at| at.saturating_duration_since(now).as_secs()),
            subscriptions: info.counts.subscriptions,
            queued: info.counts.queued,
            queued_bytes: info.counts.queued_bytes,
            inflight: info.counts.inflight,
            bytes_in: info.bytes_received,
            bytes_out: info.bytes_sent,
        }
    }
}

#[derive(Debug, Serialize)]
struct Page<T> {
    total: usize,
    offset: usize,
    limit: usize,
    items: Vec<T>,
}

fn page_bounds(offset: Option<usize>, limit: Option<usize>) -> ApiResult<(usize, usize)> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit must be from 1 to {MAX_PAGE}"
        )));
    }
    Ok((offset.unwrap_or(0), limit))
}

fn contains_folded(haystack: &str, needle_lower: &str) -> bool {
    haystack.to_lowercase().contains(needle_lower)
}

async fn list_clients(
    State(state): State<Console>,
    query: Result<Query<ClientQuery>, QueryRejection>,
) -> ApiResult<Json<Page<ClientSummary>>> {
    let Query(query) = query?;
    let (offset, limit) = page_bounds(query.offset, query.limit)?;
    let needle = query
        .q
        .as_deref()
        .map(str::to_lowercase)
        .unwrap_or_default();
    let mut infos: Vec<SessionInfo> = state
        .broker
        .sessions()
        .iter()
        .map(|entry| entry.info())
        .filter(|info| match query.state {
            StateFilter::All => true,
            StateFilter::Connected => info.connected,
            StateFilter::Disconnected => !info.connected,
        })
        .filter(|info| {
            needle.is_empty()
                || contains_folded(&info.client_id, &needle)
                || info
                    .peer
                    .as_deref()
                    .is_some_and(|peer| contains_folded(peer, &needle))
                || info
                    .username
                    .as_deref()
                    .is_some_and(|user| contains_folded(user, &needle))
        })
        .collect();
    infos.sort_by(|a, b| {
        let primary = match query.sort {
            ClientSort::ClientId => std::cmp::Ordering::Equal,
            ClientSort::Peer => a.peer.cmp(&b.peer),
            ClientSort::Protocol => a.protocol.cmp(&b.protocol),
            // Longest connected first in ascending order means oldest
            // `connected_since`; disconnected sessions last.
            ClientSort::ConnectedSince => match (a.connected_since, b.connected_since) {
                (Some(a), Some(b)) => a.cmp(&b),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            },
            ClientSort::Subscriptions => a.counts.subscriptions.cmp(&b.counts.subscriptions),
            ClientSort::Queued => a.counts.queued.cmp(&b.counts.queued),
            ClientSort::Inflight => a.counts.inflight.cmp(&b.counts.inflight),
            ClientSort::BytesIn => a.bytes_received.cmp(&b.bytes_received),
            ClientSort::BytesOut => a.bytes_sent.cmp(&b.bytes_sent),
        };
        let ordering = primary.then_with(|| a.client_id.cmp(&b.client_id));
        if query.order == Order::Desc {
            ordering.reverse()
        } else {
            ordering
        }
    });
    let now = Instant::now();
    let wall_now = SystemTime::now();
    let total = infos.len();
    let items = infos
        .iter()
        .skip(offset)
        .take(limit)
        .map(|info| ClientSummary::of(info, now, wall_now))
        .collect();
    Ok(Json(Page {
        total,
        offset,
        limit,
        items,
    }))
}

/// One subscription, as a session holds it.
#[derive(Debug, Clone, Serialize)]
struct SubscriptionView {
    /// As subscribed (`$share/group/filter` for shared subscriptions).
    filter: String,
    /// The topic filter messages are matched against.
    topic_filter: String,
    share_group: Option<String>,
    client_id: String,
    connected: bool,
    qos: u8,
    no_local: bool,
    retain_as_published: bool,
    retain_handling: u8,
    identifier: Option<u32>,
}

fn subscriptions_of(info: &SessionInfo) -> impl Iterator<Item = SubscriptionView> + '_ {
    info.subscriptions.iter().map(|(filter, record)| {
        let (share_group, topic_filter) = split_shared(filter);
        SubscriptionView {
            filter: filter.clone(),
            topic_filter: topic_filter.to_string(),
            share_group: share_group.map(str::to_string),
            client_id: info.client_id.clone(),
            connected: info.connected,
            qos: record.options.qos.as_u8(),
            no_local: record.options.no_local,
            retain_as_published: record.options.retain_as_published,
            retain_handling: record.options.retain_handling as u8,
            identifier: record.identifier,
        }
    })
}

/// `$share/{group}/{filter}` into its group and filter; anything else is plain.
fn split_shared(filter: &str) -> (Option<&str>, &str) {
    filter
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map_or((None, filter), |(group, inner)| (Some(group), inner))
}

#[derive(Debug, Serialize)]
struct ClientDetail {
    #[serde(flatten)]
    summary: ClientSummary,
    subscription_list: Vec<SubscriptionView>,
}

async fn get_client(
    State(state): State<Console>,
    Path(client_id): Path<String>,
) -> ApiResult<Json<ClientDetail>> {
    let entry = state
        .broker
        .session(&client_id)
        .ok_or_else(|| ApiError::not_found(format!("no session for client {client_id:?}")))?;
    let info = entry.info();
    Ok(Json(ClientDetail {
        summary: ClientSummary::of(&info, Instant::now(), SystemTime::now()),
        subscription_list: subscriptions_of(&info).collect(),
    }))
}

#[derive(Debug, Serialize)]
struct Done {
    client_id: String,
}

/// Closes the client's connection (v5: DISCONNECT 0x98, administrative
/// action); the session stays, as after any disconnect.
async fn disconnect_client(
    State(state): State<Console>,
    Extension(by): Extension<Principal>,
    Path(client_id): Path<String>,
) -> ApiResult<Json<Done>> {
    if state.broker.session(&client_id).is_none() {
        return Err(ApiError::not_found(format!(
            "no session for client {client_id:?}"
        )));
    }
    if !state
        .broker
        .kick(&client_id, ReasonCode::ADMINISTRATIVE_ACTION)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_connected",
            format!("client {client_id:?} is not connected"),
        ));
    }
    tracing::info!(%client_id, by = %by, "disconnected from the console");
    Ok(Json(Done { client_id }))
}

/// Ends the session now: closes its connection if any, drops its queue and
/// subscriptions; no will is sent.
async fn delete_session(
    State(state): State<Console>,
    Extension(by): Extension<Principal>,
    Path(client_id): Path<String>,
) -> ApiResult<Json<Done>> {
    if !state.broker.delete_session(&client_id) {
        return Err(ApiError::not_found(format!(
            "no session for client {client_id:?}"
        )));
    }
    tracing::info!(%client_id, by = %by, "session deleted from the console");
    Ok(Json(Done { client_id }))
}

// ---------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum SubscriptionsView {
    #[default]
    Flat,
    Tree,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionQuery {
    #[serde(default)]
    view: SubscriptionsView,
    q: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
struct MemberView {
    client_id: String,
    connected: bool,
    qos: u8,
}

/// A shared subscription: every member of `$share/{group}/{topic_filter}`.
#[derive(Debug, Clone, Serialize)]
struct SharedGroupView {
    group: String,
    topic_filter: String,
    members: Vec<MemberView>,
}

fn shared_groups(subscriptions: &[SubscriptionView]) -> Vec<SharedGroupView> {
    let mut groups: BTreeMap<(&str, &str), Vec<MemberView>> = BTreeMap::new();
    for subscription in subscriptions {
        if let Some(group) = subscription.share_group.as_deref() {
            groups
                .entry((group, subscription.topic_filter.as_str()))
                .or_default()
                .push(MemberView {
                    client_id: subscription.client_id.clone(),
                    connected: subscription.connected,
                    qos: subscription.qos,
                });
        }
    }
    groups
        .into_iter()
        .map(|((group, topic_filter), mut members)| {
            members.sort_by(|a, b| a.client_id.cmp(&b.client_id));
            SharedGroupView {
                group: group.to_string(),
                topic_filter: topic_filter.to_string(),
                members,
            }
        })
        .collect()
}

#[derive(Debug, Serialize)]
struct FlatSubscriptions {
    total: usize,
    offset: usize,
    limit: usize,
    items: Vec<SubscriptionView>,
    groups: Vec<SharedGroupView>,
}

/// One level of the subscription tree.
#[derive(Debug, Serialize)]
struct TreeNode {
    /// This level's name (`""` for the root and for empty levels).
    level: String,
    /// The filter up to and including this level.
    topic_filter: String,
    subscriptions: Vec<SubscriptionView>,
    shared: Vec<SharedGroupView>,
    children: Vec<TreeNode>,
}

#[derive(Debug, Serialize)]
struct TreeSubscriptions {
    total: usize,
    truncated: bool,
    root: TreeNode,
}

#[derive(Default)]
struct Building {
    subscriptions: Vec<SubscriptionView>,
    children: BTreeMap<String, Building>,
}

impl Building {
    fn into_node(self, level: String, topic_filter: String) -> TreeNode {
        let shared = shared_groups(&self.subscriptions);
        let subscriptions = self
            .subscriptions
            .into_iter()
            .filter(|subscription| subscription.share_group.is_none())
            .collect();
        let children = self
            .children
            .into_iter()
            .map(|(child, building)| {
                let path = if level.is_empty() && topic_filter.is_empty() {
                    child.clone()
                } else {
                    format!("{topic_filter}/{child}")
                };
                building.into_node(child, path)
            })
            .collect();
        TreeNode {
            level,
            topic_filter,
            subscriptions,
            shared,
            children,
        }
    }
}

/// The subscription tree; the root stands for no level at all.
fn tree(subscriptions: Vec<SubscriptionView>) -> TreeNode {
    let mut root = Building::default();
    for subscription in subscriptions {
        let mut node = &mut root;
        for level in subscription.topic_filter.splitn(MAX_TREE_DEPTH, '/') {
            node = node.children.entry(level.to_string()).or_default();
        }
        node.subscriptions.push(subscription);
    }
    root.into_node(String::new(), String::new())
}

async fn list_subscriptions(
    State(state): State<Console>,
    query: Result<Query<SubscriptionQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query?;
    let (offset, limit) = page_bounds(query.offset, query.limit)?;
    let needle = query
        .q
        .as_deref()
        .map(str::to_lowercase)
        .unwrap_or_default();
    let mut all: Vec<SubscriptionView> = Vec::new();
    for entry in state.broker.sessions() {
        let info = entry.info();
        all.extend(subscriptions_of(&info).filter(|subscription| {
            needle.is_empty()
                || contains_folded(&subscription.filter, &needle)
                || contains_folded(&subscription.client_id, &needle)
        }));
    }
    all.sort_by(|a, b| {
        (&a.topic_filter, &a.share_group, &a.client_id).cmp(&(
            &b.topic_filter,
            &b.share_group,
            &b.client_id,
        ))
    });
    let total = all.len();
    match query.view {
        SubscriptionsView::Flat => {
            let groups = shared_groups(&all);
            let items = all.into_iter().skip(offset).take(limit).collect();
            Ok(Json(FlatSubscriptions {
                total,
                offset,
                limit,
                items,
                groups,
            })
            .into_response())
        }
        SubscriptionsView::Tree => {
            let truncated = total > MAX_TREE_SUBSCRIPTIONS;
            all.truncate(MAX_TREE_SUBSCRIPTIONS);
            Ok(Json(TreeSubscriptions {
                total,
                truncated,
                root: tree(all),
            })
            .into_response())
        }
    }
}

// ---------------------------------------------------------------------------
// Retained messages
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetainedQuery {
    filter: Option<String>,
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
struct RetainedList {
    /// Retained messages in the whole store.
    total: usize,
    filter: String,
    /// Whether more messages match than `items` holds.
    truncated: bool,
    items: Vec<MessageView>,
}

/// Parses a plain (not shared) topic filter with the broker's limits.
pub(crate) fn plain_filter(broker: &Broker, filter: &str) -> ApiResult<()> {
    match switchboard_topic::parse_filter(filter, &broker.settings().topic_limits) {
        Ok(FilterKind::Plain(_)) => Ok(()),
        Ok(FilterKind::Shared { .. }) => Err(ApiError::bad_request(
            "a shared subscription filter ($share/...) is not allowed here",
        )),
        Err(error) => Err(ApiError::bad_request(format!(
            "invalid topic filter: {error}"
        ))),
    }
}

async fn list_retained(
    State(state): State<Console>,
    query: Result<Query<RetainedQuery>, QueryRejection>,
) -> ApiResult<Json<RetainedList>> {
    let Query(query) = query?;
    let (_, limit) = page_bounds(None, query.limit)?;
    let filter = query.filter.unwrap_or_else(|| "#".to_string());
    plain_filter(&state.broker, &filter)?;
    let mut messages = state.broker.retained_matching(&filter, limit + 1);
    let truncated = messages.len() > limit;
    messages.truncate(limit);
    messages.sort_by(|a, b| a.topic.cmp(&b.topic));
    let now = Instant::now();
    Ok(Json(RetainedList {
        total: state.broker.retained_count(),
        filter,
        truncated,
        items: messages
            .iter()
            .filter(|message| message.expires_at.is_none_or(|at| at > now))
            .map(|message| MessageView::of(message, now))
            .collect(),
    }))
}

#[derive(Debug, Serialize)]
struct Deleted {
    topic: String,
}

/// Removes one retained message; subscribers are not sent anything.
async fn delete_retained(
    State(state): State<Console>,
    Extension(by): Extension<Principal>,
    Path(topic): Path<String>,
) -> ApiResult<Json<Deleted>> {
    if !state.broker.delete_retained(&topic) {
        return Err(ApiError::not_found(format!(
            "no retained message on topic {topic:?}"
        )));
    }
    tracing::info!(%topic, by = %by, "retained message deleted from the console");
    Ok(Json(Deleted { topic }))
}

// ---------------------------------------------------------------------------
// Publish
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Encoding {
    #[default]
    Text,
    Hex,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPropertyInput {
    key: String,
    value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PropertiesInput {
    content_type: Option<String>,
    response_topic: Option<String>,
    /// As text (UTF-8).
    correlation_data: Option<String>,
    message_expiry_interval: Option<u32>,
    payload_format_indicator: Option<u8>,
    #[serde(default)]
    user_properties: Vec<UserPropertyInput>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    topic: String,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    encoding: Encoding,
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    retain: bool,
    #[serde(default)]
    properties: PropertiesInput,
}

#[derive(Debug, Serialize)]
struct Published {
    topic: String,
    /// Sessions the message was handed to.
    delivered_to: usize,
    /// Whether the retained store took it (false when RETAIN was not asked
    /// for, or the retained store's limits had no room).
    retained: bool,
    /// Whether it was written to the durable store before this answer:
    /// true when the broker has one and the message had to be kept
    /// (retained, or queued for a persistent session).
    durable: bool,
    /// Part of the publish could not be carried out: a persistent session's
    /// queue or the retained store had no room (MQTT 5's reason code 0x97).
    quota_exceeded: bool,
    payload: PayloadView,
}

/// Publishes a message as the broker (like a will or `$SYS`): routed to
/// every matching subscription, retained if asked.
///
/// The same promise as a PUBACK: a message that must be kept (retained, or
/// queued for a persistent session) is written to the durable store, and
/// the answer is sent and the subscribers get it only once it is on disk.
/// If the store cannot write it, nobody gets it and the answer is 507 (disk
/// full) or 503 (any other store failure).
async fn publish(
    State(state): State<Console>,
    Extension(by): Extension<Principal>,
    body: Result<Json<PublishRequest>, JsonRejection>,
) -> ApiResult<Json<Published>> {
    let Json(request) = body?;
    let broker = &state.broker;
    let settings = broker.settings();
    switchboard_topic::validate_topic_name(&request.topic, &settings.topic_limits)
        .map_err(|error| ApiError::bad_request(format!("invalid topic: {error}")))?;
    if request.topic.starts_with('$') {
        return Err(ApiError::bad_request(
            "topics starting with $ are reserved for the broker",
        ));
    }
    let qos =
        QoS::from_u8(request.qos).ok_or_else(|| ApiError::bad_request("qos must be 0, 1 or 2"))?;
    if qos > settings.maximum_qos {
        return Err(ApiError::bad_request(format!(
            "qos {} is above the broker's maximum of {}",
            request.qos,
            settings.maximum_qos.as_u8()
        )));
    }
    if request.retain && !settings.retain_available {
        return Err(ApiError::bad_request(
            "retained messages are turned off (mqtt.retain_available = false)",
        ));
    }
    let payload = match request.encoding {
        Encoding::Text => request.payload.into_bytes(),
        Encoding::Hex => crate::payload::decode_hex(&request.payload)
            .ok_or_else(|| ApiError::bad_request("payload is not valid hex"))?,
    };
    let input = request.properties;
    if let Some(response_topic) = &input.response_topic {
        switchboard_topic::validate_topic_name(response_topic, &settings.topic_limits)
            .map_err(|error| ApiError::bad_request(format!("invalid response topic: {error}")))?;
    }
    if let Some(indicator) = input.payload_format_indicator {
        if indicator > 1 {
            return Err(ApiError::bad_request(
                "payload_format_indicator must be 0 or 1",
            ));
        }
        if indicator == 1 && std::str::from_utf8(&payload).is_err() {
            return Err(ApiError::bad_request(
                "payload_format_indicator 1 says UTF-8, but the payload is not",
            ));
        }
    }
    let properties = PublishProperties {
        payload_format_indicator: input.payload_format_indicator,
        message_expiry_interval: input.message_expiry_interval,
        topic_alias: None,
        response_topic: input.response_topic,
        correlation_data: input.correlation_data.map(bytes::Bytes::from),
        user_properties: input
            .user_properties
            .into_iter()
            .map(|property| (property.key, property.value))
            .collect(),
        subscription_identifiers: Vec::new(),
        content_type: input.content_type,
    };
    let now = Instant::now();
    let message = Message {
        id: broker.next_message_id(),
        topic: request.topic,
        payload: bytes::Bytes::from(payload),
        qos,
        retain: request.retain,
        expires_at: properties
            .message_expiry_interval
            .map(|secs| now + Duration::from_secs(u64::from(secs))),
        properties,
    };
    if message.size() > settings.max_packet_size as usize {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the message is larger than max_packet_size ({} bytes)",
                settings.max_packet_size
            ),
        ));
    }
    let view = PayloadView::of(&message.payload);
    let topic = message.topic.clone();
    let route = broker.route(None, &message);
    let retained = message.retain && !route.retain_refused();
    let quota_exceeded = route.quota_exceeded();
    if quota_exceeded {
        Metrics::incr(&broker.metrics().publish_quota_exceeded);
    }
    let mut records = Vec::new();
    let durable = broker.stage_publish(&route, &message, &mut records);
    // Its own task: if the browser goes away while the records are being
    // written, the handler's future is dropped, but what is on disk must
    // still be delivered (the store would otherwise bring back, after a
    // restart, a message nobody got now).
    let task_broker = broker.clone();
    let outcome = tokio::spawn(async move {
        if durable {
            if let Some(store) = task_broker.store() {
                store.append(records).wait().await?;
            }
        }
        Ok::<usize, StoreError>(task_broker.deliver_route(route, Arc::new(message), Instant::now()))
    })
    .await;
    let delivered_to = match outcome {
        Ok(Ok(delivered_to)) => delivered_to,
        Ok(Err(error)) => {
            Metrics::incr(&broker.metrics().store_refusals);
            tracing::error!(%topic, %error, by = %by, "durable store failed; message from the console refused");
            return Err(store_refusal(&error));
        }
        Err(error) => {
            tracing::error!(%topic, %error, "publish task failed");
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the publish did not complete",
            ));
        }
    };
    tracing::debug!(%topic, delivered_to, durable, by = %by, "published from the console");
    Ok(Json(Published {
        topic,
        delivered_to,
        retained,
        durable,
        quota_exceeded,
        payload: view,
    }))
}

/// The answer when the durable store could not write a message: 507 when
/// the disk is full (space may come back), 503 for any other failure. The
/// message was neither delivered nor retained.
fn store_refusal(error: &StoreError) -> ApiError {
    if error.is_disk_full() {
        ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "store_full",
            format!(
                "the broker's disk is full, so the message could not be kept; it was not \
                 delivered or retained ({error})"
            ),
        )
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_failed",
            format!(
                "the broker's durable store could not write the message; it was not \
                 delivered or retained ({error})"
            ),
        )
    }
}

/// The body limit for `POST /api/v1/publish`: a maximum-size payload as hex.
pub(crate) fn body_limit(broker: &Broker) -> usize {
    (broker.settings().max_packet_size as usize)
        .saturating_mul(2)
        .saturating_add(MIN_BODY_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_filters_split_into_group_and_filter() {
        assert_eq!(split_shared("$share/g/a/b"), (Some("g"), "a/b"));
        assert_eq!(split_shared("a/b"), (None, "a/b"));
        assert_eq!(split_shared("$share/g"), (None, "$share/g"));
    }

    fn subscription(filter: &str, client_id: &str) -> SubscriptionView {
        let (group, topic_filter) = split_shared(filter);
        SubscriptionView {
            filter: filter.into(),
            topic_filter: topic_filter.into(),
            share_group: group.map(str::to_string),
            client_id: client_id.into(),
            connected: true,
            qos: 1,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
            identifier: None,
        }
    }

    #[test]
    fn the_tree_nests_levels_and_gathers_shared_groups() {
        let root = tree(vec![
            subscription("a/b", "one"),
            subscription("a/+", "two"),
            subscription("$share/g/a/b", "three"),
            subscription("$share/g/a/b", "four"),
            subscription("#", "five"),
        ]);
        assert_eq!(root.level, "");
        let names: Vec<&str> = root.children.iter().map(|n| n.level.as_str()).collect();
        assert_eq!(names, ["#", "a"]);
        let a = &root.children[1];
        assert_eq!(a.topic_filter, "a");
        let b = a.children.iter().find(|n| n.level == "b").unwrap();
        assert_eq!(b.topic_filter, "a/b");
        assert_eq!(b.subscriptions.len(), 1);
        assert_eq!(b.shared.len(), 1);
        let members: Vec<&str> = b.shared[0]
            .members
            .iter()
            .map(|m| m.client_id.as_str())
            .collect();
        assert_eq!(members, ["four", "three"]);
    }

    #[test]
    fn the_tree_depth_is_bounded() {
        let deep = vec!["x"; 1000].join("/");
        let mut node = &tree(vec![subscription(&deep, "c")]);
        let mut depth = 0;
        while let Some(child) = node.children.first() {
            node = child;
            depth += 1;
        }
        assert_eq!(depth, MAX_TREE_DEPTH);
        assert_eq!(node.subscriptions.len(), 1);
    }

    #[test]
    fn page_bounds_are_checked() {
        assert_eq!(page_bounds(None, None).unwrap(), (0, DEFAULT_PAGE));
        assert!(page_bounds(None, Some(0)).is_err());
        assert!(page_bounds(None, Some(MAX_PAGE + 1)).is_err());
    }
}
