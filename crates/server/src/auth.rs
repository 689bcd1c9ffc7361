//! Where connections meet `switchboard-auth`: the CONNECT check (throttle,
//! credentials, will topic), the SUBSCRIBE check, and the delivery filter
//! the broker applies to every message it hands to a session.
//!
//! Password checks run Argon2, which takes tens of milliseconds of CPU by
//! design, so they run on tokio's blocking pool and at most
//! [`AuthGate::verifications`] at a time (one per core): a burst of CONNECTs
//! with passwords queues here instead of occupying every runtime worker or
//! allocating Argon2's memory for each at once.

use std::net::IpAddr;
use std::sync::Arc;

use switchboard_auth::{Auth, Refusal};
use switchboard_broker::{Broker, DeliveryFilter, Metrics};
use switchboard_codec::{Connect, ReasonCode, SubAck, Subscribe};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::{ListenerPolicy, Shared};

/// The server's bound on concurrent password checks, shared by every
/// listener (whichever password file they check against).
#[derive(Debug)]
pub(crate) struct AuthGate {
    /// One permit per concurrent Argon2 verification.
    verifications: Semaphore,
}

impl AuthGate {
    pub(crate) fn new() -> AuthGate {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        AuthGate {
            verifications: Semaphore::new(cores),
        }
    }
}

/// The password files and ACLs in use, by realm: index 0 is the server's
/// own ([`crate::ServerOptions::auth`]), the others those of listeners with
/// their own ([`crate::ListenerOptions::auth`]). A session's realm says
/// which one checks it.
#[derive(Debug, Clone)]
pub(crate) struct Realms(Vec<Arc<Auth>>);

impl Realms {
    pub(crate) fn new(server: Arc<Auth>) -> Realms {
        Realms(vec![server])
    }

    /// The realm of `auth`, added if new (the same `Arc` twice is one realm).
    pub(crate) fn realm_of(&mut self, auth: &Arc<Auth>) -> u32 {
        let index = match self.0.iter().position(|known| Arc::ptr_eq(known, auth)) {
            Some(index) => index,
            None => {
                self.0.push(auth.clone());
                self.0.len() - 1
            }
        };
        u32::try_from(index).unwrap_or(u32::MAX)
    }

    fn has_acl(&self) -> bool {
        self.0.iter().any(|auth| auth.has_acl())
    }
}

/// The broker's delivery filter: the ACL's read check, of the session's realm.
#[derive(Debug)]
pub(crate) struct AclDeliveryFilter(Realms);

impl DeliveryFilter for AclDeliveryFilter {
    fn can_receive(
        &self,
        realm: u32,
        client_id: &str,
        username: Option<&str>,
        topic: &str,
    ) -> bool {
        // Every realm a session can carry was registered at bind time; an
        // unknown one would be a bug, and then refusing is the safe answer.
        usize::try_from(realm)
            .ok()
            .and_then(|index| self.0 .0.get(index))
            .is_some_and(|auth| auth.can_receive(client_id, username, topic))
    }
}

/// Gives the broker the ACL's read check when any realm has an ACL file
/// (without one every delivery is allowed, and the check is skipped).
pub(crate) fn install(broker: Broker, realms: &Realms) -> Broker {
    if realms.has_acl() {
        broker.with_delivery_filter(Arc::new(AclDeliveryFilter(realms.clone())))
    } else {
        broker
    }
}

/// Whether clients without a user name may connect on `listener`: its own
/// `allow_anonymous` if set, otherwise [`switchboard_auth::anonymous_allowed`]
/// with the server's setting.
pub(crate) fn anonymous_on(
    options: &crate::ServerOptions,
    listener: &crate::ListenerOptions,
) -> bool {
    listener.allow_anonymous.unwrap_or_else(|| {
        switchboard_auth::anonymous_allowed(options.allow_anonymous, listener.address.ip())
    })
}

/// The user name a listener takes from the client certificate
/// (`use_subject_as_username`), decided at the TLS handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CertificateUser {
    /// The listener does not use certificates as credentials: the CONNECT's
    /// user name and password decide, as on any listener.
    NotUsed,
    /// The subject CN of the client certificate the handshake verified: the
    /// connection's user name, and its credential (no password check).
    Named(Arc<str>),
    /// The listener takes user names from certificates, but this client's
    /// gives none (why, for the log): its CONNECT is refused.
    Unnamed(String),
}

/// Applies the certificate's user name to `connect` (replacing whatever user
/// name and password it carries, so the ACL and the session owner see the
/// certificate's name). `Ok(true)`: the certificate authenticated the client;
/// `Ok(false)`: the CONNECT's credentials still need checking; `Err`: the
/// CONNACK code to refuse with.
pub(crate) fn apply_certificate(
    shared: &Shared,
    connect: &mut Connect,
    certificate: &CertificateUser,
    peer: IpAddr,
) -> Result<bool, ReasonCode> {
    match certificate {
        CertificateUser::NotUsed => Ok(false),
        CertificateUser::Named(name) => {
            connect.username = Some(name.to_string());
            connect.password = None;
            Ok(true)
        }
        CertificateUser::Unnamed(reason) => {
            Metrics::incr(&shared.broker.metrics().auth_failures);
            tracing::info!(%peer, client_id = %connect.client_id, %reason, "login refused: the listener takes the user name from the client certificate");
            Err(ReasonCode::NOT_AUTHORIZED)
        }
    }
}

/// Decides a CONNECT before the broker sees it: holds a connection from an
/// address that failed too often, checks the credentials, and refuses a will
/// the client could not publish itself. `Err` is the CONNACK reason code to
/// refuse with (0x86 / 3.1.1 code 4 for bad credentials, 0x87 / code 5 when
/// not authorized). `certified`: a verified client certificate named the user
/// (see [`apply_certificate`]), so neither throttling nor the password check
/// applies; the will is still checked.
pub(crate) async fn login(
    shared: &Shared,
    policy: &ListenerPolicy,
    connect: &Connect,
    peer: IpAddr,
    certified: bool,
    cancel: &CancellationToken,
) -> Result<(), ReasonCode> {
    let gate = &shared.auth;
    let auth = &policy.auth;
    let anonymous_allowed = policy.anonymous_allowed;
    let metrics = shared.broker.metrics();
    if let Some(delay) = auth.login_delay(peer, now()).filter(|_| !certified) {
        Metrics::incr(&metrics.auth_throttled);
        tracing::debug!(%peer, ?delay, "too many failed logins from this address; holding the CONNECT");
        tokio::select! {
            _ = cancel.cancelled() => return Err(ReasonCode::SERVER_UNAVAILABLE),
            _ = tokio::time::sleep(delay) => {}
        }
    }
    let username = connect.username.as_deref();
    let decided = if certified {
        Ok(())
    } else if auth.needs_hashing(username) {
        verify_blocking(gate, auth, connect, anonymous_allowed).await
    } else {
        auth.authenticate(username, connect.password.as_deref(), anonymous_allowed)
    };
    if let Err(refusal) = decided {
        Metrics::incr(&metrics.auth_failures);
        let code = match refusal {
            Refusal::BadCredentials => {
                // Only guesses count towards throttling; a missing user name is
                // not one.
                auth.record_login_failure(peer, now());
                ReasonCode::BAD_USER_NAME_OR_PASSWORD
            }
            Refusal::NotAuthorized => ReasonCode::NOT_AUTHORIZED,
        };
        tracing::info!(%peer, client_id = %connect.client_id, user = ?username, %code, "login refused");
        return Err(code);
    }
    if let Some(will) = &connect.will {
        // A will is published on the client's behalf, so it needs the client's own
        // right to publish there. The client id is the one sent: an identifier the
        // server assigns later is not known yet, so `%c` patterns do not grant it.
        if !auth.can_publish(&connect.client_id, username, &will.topic) {
            Metrics::incr(&metrics.auth_failures);
            tracing::info!(%peer, client_id = %connect.client_id, topic = %will.topic, "will topic not authorized; refusing the CONNECT");
            return Err(ReasonCode::NOT_AUTHORIZED);
        }
    }
    Ok(())
}

/// Runs the password check on the blocking pool, within the concurrency bound.
async fn verify_blocking(
    gate: &AuthGate,
    auth: &Arc<Auth>,
    connect: &Connect,
    anonymous_allowed: bool,
) -> Result<(), Refusal> {
    // The semaphore is never closed; a failure here would mean it was, and then
    // refusing is the safe answer.
    let Ok(_permit) = gate.verifications.acquire().await else {
        return Err(Refusal::BadCredentials);
    };
    let auth = auth.clone();
    let username = connect.username.clone();
    let password = connect.password.clone();
    tokio::task::spawn_blocking(move || {
        auth.authenticate(username.as_deref(), password.as_deref(), anonymous_allowed)
    })
    .await
    .unwrap_or(Err(Refusal::BadCredentials))
}

/// Splits a SUBSCRIBE by the ACL: the filters the client may subscribe to go to
/// the broker; the others are answered 0x87 Not authorized (3.1.1: 0x80
/// Failure, which the encoder writes for any failure code). Filters that are
/// not valid stay in, for the broker to answer 0x8F as it does for everyone.
pub(crate) struct SubscribeCheck {
    /// What the broker should handle (only the allowed filters).
    pub(crate) allowed: Subscribe,
    /// For each filter of the original packet, `None` if it went to the
    /// broker, or the code to answer it with.
    refused: Vec<Option<ReasonCode>>,
}

impl SubscribeCheck {
    pub(crate) fn new(
        shared: &Shared,
        auth: &Auth,
        client_id: &str,
        username: Option<&str>,
        subscribe: Subscribe,
    ) -> SubscribeCheck {
        let limits = &shared.options.broker.topic_limits;
        let mut allowed = subscribe;
        let filters = std::mem::take(&mut allowed.filters);
        let mut refused = Vec::with_capacity(filters.len());
        for (filter, options) in filters {
            let plain = match switchboard_topic::parse_filter(&filter, limits) {
                Ok(switchboard_topic::FilterKind::Plain(plain)) => Some(plain),
                Ok(switchboard_topic::FilterKind::Shared { filter, .. }) => Some(filter),
                Err(_) => None,
            };
            let permitted =
                plain.is_none_or(|plain| auth.can_subscribe(client_id, username, plain));
            if permitted {
                refused.push(None);
                allowed.filters.push((filter, options));
            } else {
                tracing::debug!(%client_id, user = ?username, %filter, "subscription not authorized");
                Metrics::incr(&shared.broker.metrics().subscriptions_refused);
                refused.push(Some(ReasonCode::NOT_AUTHORIZED));
            }
        }
        SubscribeCheck { allowed, refused }
    }

    /// The SUBACK for the whole packet: the broker's codes for the filters it
    /// handled, in order, with the refused ones put back in their places.
    pub(crate) fn merge(self, suback: SubAck) -> SubAck {
        let mut granted = suback.reason_codes.into_iter();
        let reason_codes = self
            .refused
            .into_iter()
            .map(|refused| {
                refused.unwrap_or_else(|| granted.next().unwrap_or(ReasonCode::UNSPECIFIED_ERROR))
            })
            .collect();
        SubAck {
            reason_codes,
            ..suback
        }
    }
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
