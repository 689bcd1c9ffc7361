//! Tests of what the broker stages for the durable store.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use switchboard_codec::QoS;
use switchboard_session::{Message, SharedMessage};

use crate::persist::{LogConfig, Store};
use crate::{Broker, Record, Settings};

fn retained(id: u64, topic: &str, payload: &'static [u8]) -> SharedMessage {
    Arc::new(Message {
        id,
        topic: topic.to_owned(),
        payload: Bytes::from_static(payload),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Default::default(),
        expires_at: None,
    })
}

/// A broker with a store in `dir` and the given retained limits.
fn durable_broker(dir: &std::path::Path, max_messages: usize, max_bytes: usize) -> Broker {
    let settings = Settings {
        max_retained_messages: max_messages,
        max_retained_bytes: max_bytes,
        sys_interval: None,
        ..Settings::default()
    };
    let now = Instant::now();
    let (store, _) = Store::open(LogConfig::new(dir), now).unwrap();
    Broker::with_store(settings, now, store).0
}

/// What `stage_publish` stages for `message` (nobody subscribes).
fn staged(broker: &Broker, message: &Message) -> Option<Vec<Record>> {
    let route = broker.route(None, message);
    let mut records = Vec::new();
    broker
        .stage_publish(&route, message, &mut records)
        .then_some(records)
}

fn retained_topics(dir: &std::path::Path) -> Vec<String> {
    let (store, _) = Store::open(LogConfig::new(dir), Instant::now()).unwrap();
    store.with_state(|state| state.retained().keys().cloned().collect())
}

#[test]
fn a_retained_message_over_the_count_limit_stages_no_retain() {
    let dir = tempfile::tempdir().unwrap();
    let broker = durable_broker(dir.path(), 1, 0);
    let first = retained(1, "r/1", b"first");
    assert!(matches!(
        staged(&broker, &first).as_deref(),
        Some([Record::Message { .. }, Record::Retain { .. }])
    ));
    broker.publish(None, first, Instant::now());
    assert_eq!(broker.retained_count(), 1);

    // A second topic would be refused by the retained store: nothing to keep.
    let second = retained(2, "r/2", b"second");
    assert_eq!(staged(&broker, &second), None);
    broker.publish(None, second, Instant::now());
    assert_eq!(broker.retained_count(), 1);

    // Replacing the one retained topic stays within the limit; clearing is
    // always recorded.
    let replacement = retained(3, "r/1", b"replacement");
    assert!(matches!(
        staged(&broker, &replacement).as_deref(),
        Some([Record::Message { .. }, Record::Retain { .. }])
    ));
    let clear = retained(4, "r/2", b"");
    assert!(matches!(
        staged(&broker, &clear).as_deref(),
        Some([Record::RetainClear { .. }])
    ));
    drop(broker);
    // The refused message did not reach the disk.
    assert_eq!(retained_topics(dir.path()), ["r/1"]);
}

#[test]
fn a_retained_replacement_over_the_byte_limit_stages_no_retain() {
    let dir = tempfile::tempdir().unwrap();
    let small = retained(1, "r/1", b"small");
    let broker = durable_broker(dir.path(), 0, small.size() + 2);
    broker.publish(None, small, Instant::now());
    let large = retained(2, "r/1", b"much too large");
    assert_eq!(staged(&broker, &large), None);
    broker.publish(None, large, Instant::now());
    let kept = broker.retained_matching("r/1", 0);
    assert_eq!(kept.len(), 1);
    assert_eq!(&kept[0].payload[..], b"small");
    drop(broker);
    // After a restart the topic still holds the message that was retained.
    let (store, _) = Store::open(LogConfig::new(dir.path()), Instant::now()).unwrap();
    let id = store.with_state(|state| state.retained()["r/1"]);
    assert_eq!(id, 1);
}

#[test]
fn a_staged_message_shares_its_payload_with_its_stored_form() {
    let publish = switchboard_codec::Publish {
        topic: "t/1".to_owned(),
        qos: QoS::AtLeastOnce,
        packet_id: Some(3),
        payload: Bytes::from_static(b"kept once"),
        ..Default::default()
    };
    let records = vec![Record::message(7, None, &publish).unwrap()];
    let Record::Message {
        publish: stored, ..
    } = &records[0]
    else {
        panic!("not a message");
    };
    let inside_stored =
        |message: &SharedMessage| stored.as_ptr_range().contains(&message.payload.as_ptr());
    let mut message = crate::message_from_publish(publish.clone(), 7, Instant::now());
    assert!(!inside_stored(&message));
    crate::persist::share_stored_payload(&mut message, &records);
    assert!(inside_stored(&message));
    assert_eq!(&message.payload[..], b"kept once");
    // Another message's record, or a message already handed out, is left alone.
    let mut other = crate::message_from_publish(publish.clone(), 8, Instant::now());
    crate::persist::share_stored_payload(&mut other, &records);
    assert!(!inside_stored(&other));
    let mut handed_out = crate::message_from_publish(publish, 7, Instant::now());
    let _elsewhere = handed_out.clone();
    crate::persist::share_stored_payload(&mut handed_out, &records);
    assert!(!inside_stored(&handed_out));
}

/// Close orders: what a connection task finds after the broker orders its
/// connection closed (the replacement of a control channel per connection).
mod close_orders {
    use std::time::Instant;

    use std::sync::Arc;

    use switchboard_codec::{Connect, ConnectProperties, ProtocolVersion, ReasonCode};

    use crate::{Broker, CloseReason, ConnectRequest, Connected, Settings};

    fn connect(broker: &Broker, client_id: &str) -> Connected {
        let connect = Connect {
            protocol: ProtocolVersion::V5,
            clean_start: false,
            keep_alive: 0,
            client_id: client_id.to_owned(),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties {
                session_expiry_interval: Some(60),
                ..ConnectProperties::default()
            },
        };
        let request = ConnectRequest {
            connect: &connect,
            peer: std::net::SocketAddr::from(([127, 0, 0, 1], 1883)),
            username: None,
            realm: 0,
        };
        broker.connect(request, Instant::now()).unwrap()
    }

    fn broker() -> Broker {
        let settings = Settings {
            sys_interval: None,
            ..Settings::default()
        };
        Broker::new(settings, Instant::now())
    }

    #[test]
    fn none_without_an_order() {
        let broker = broker();
        let first = connect(&broker, "c");
        assert_eq!(first.entry.close_order(first.generation), None);
    }

    #[test]
    fn a_takeover_orders_only_the_old_connection_closed() {
        // [MQTT-3.1.4-3]: the existing connection is closed (v5: 0x8E).
        let broker = broker();
        let first = connect(&broker, "c");
        let second = connect(&broker, "c");
        assert!(Arc::ptr_eq(&first.entry, &second.entry), "session resumed");
        assert_eq!(second.entry.close_order(second.generation), None);
        assert_eq!(
            first.entry.close_order(first.generation),
            Some(ReasonCode::SESSION_TAKEN_OVER)
        );
        // Taken once.
        assert_eq!(first.entry.close_order(first.generation), None);
    }

    #[test]
    fn a_kick_orders_the_attached_connection_closed() {
        let broker = broker();
        let first = connect(&broker, "c");
        assert!(broker.kick("c", ReasonCode::ADMINISTRATIVE_ACTION));
        assert!(!broker.kick("nobody", ReasonCode::ADMINISTRATIVE_ACTION));
        assert_eq!(
            first.entry.close_order(first.generation),
            Some(ReasonCode::ADMINISTRATIVE_ACTION)
        );
    }

    #[test]
    fn an_order_left_untaken_is_forgotten_when_the_connection_ends() {
        let broker = broker();
        let first = connect(&broker, "c");
        broker.disconnect_all(ReasonCode::SERVER_SHUTTING_DOWN);
        broker.disconnected(
            &first.entry,
            first.generation,
            CloseReason::Abnormal,
            Instant::now(),
        );
        assert_eq!(first.entry.close_order(first.generation), None);
        assert!(first.entry.lock().close_orders().is_empty());
    }

    #[test]
    fn rarely_used_state_is_freed_once_empty() {
        let broker = broker();
        let first = connect(&broker, "c");
        assert!(
            !first.entry.lock().holds_rare(),
            "nothing rare while connected"
        );
        // A takeover: an order for the old connection, until it is taken.
        let second = connect(&broker, "c");
        assert!(second.entry.lock().holds_rare());
        assert!(first.entry.close_order(first.generation).is_some());
        assert!(!second.entry.lock().holds_rare());
        // Detached: the expiry deadline is kept (60 s), until a reconnect.
        broker.disconnected(
            &second.entry,
            second.generation,
            CloseReason::Normal {
                session_expiry: None,
            },
            Instant::now(),
        );
        assert!(second.entry.lock().expires_at().is_some());
        let third = connect(&broker, "c");
        assert!(Arc::ptr_eq(&second.entry, &third.entry), "session resumed");
        assert!(third.entry.lock().expires_at().is_none());
        assert!(!third.entry.lock().holds_rare());
    }

    #[test]
    fn an_order_wakes_a_waiting_connection_task() {
        use std::future::Future;
        use std::task::{Context, Waker};

        let broker = broker();
        let first = connect(&broker, "c");
        let notified = first.entry.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        let mut context = Context::from_waker(Waker::noop());
        assert!(notified.as_mut().poll(&mut context).is_pending());
        assert!(broker.kick("c", ReasonCode::ADMINISTRATIVE_ACTION));
        assert!(notified.as_mut().poll(&mut context).is_ready());
        assert_eq!(
            first.entry.close_order(first.generation),
            Some(ReasonCode::ADMINISTRATIVE_ACTION)
        );
    }
}
