//! The tools end to end against a scripted server on 127.0.0.1:0.

use clap::Parser;
use switchboard_codec::{
    Ack, ConnAck, Connect, Disconnect, Packet, Publish, QoS, ReasonCode, SubAck, Subscribe,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::connect::{Interrupt, DEFAULT_RECONNECT_SESSION_EXPIRY_SECS};
use super::request::request_and_print;
use super::subscribe::subscribe_and_print;
use super::{run_pub, PubArgs, ReqArgs, SubArgs};
use crate::test_support::FakeServer;

#[derive(Debug, Parser)]
#[command(disable_help_flag = true)]
enum Tools {
    Pub(PubArgs),
    Sub(SubArgs),
    Req(ReqArgs),
}

fn argv<'a>(tool: &'a str, port: u16, args: &[&'a str]) -> Vec<String> {
    let mut argv = vec!["switchboard".to_owned(), tool.to_owned()];
    argv.extend(["-h", "127.0.0.1", "-p"].map(str::to_owned));
    argv.push(port.to_string());
    argv.extend(args.iter().map(|arg| (*arg).to_owned()));
    argv
}

fn pub_args(port: u16, args: &[&str]) -> PubArgs {
    match Tools::try_parse_from(argv("pub", port, args)).unwrap() {
        Tools::Pub(args) => args,
        _ => unreachable!(),
    }
}

fn sub_args(port: u16, args: &[&str]) -> SubArgs {
    match Tools::try_parse_from(argv("sub", port, args)).unwrap() {
        Tools::Sub(args) => args,
        _ => unreachable!(),
    }
}

fn req_args(port: u16, args: &[&str]) -> ReqArgs {
    match Tools::try_parse_from(argv("req", port, args)).unwrap() {
        Tools::Req(args) => args,
        _ => unreachable!(),
    }
}

fn never() -> Interrupt {
    Interrupt::from_future(std::future::pending())
}

async fn listen() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

async fn accept(listener: &TcpListener, connack: ConnAck) -> (FakeServer<TcpStream>, Connect) {
    let (stream, _) = listener.accept().await.unwrap();
    let mut server = FakeServer::new(stream);
    let connect = server.accept(connack).await;
    (server, connect)
}

async fn expect_subscribe(server: &mut FakeServer<TcpStream>, granted: ReasonCode) -> Subscribe {
    let Packet::Subscribe(subscribe) = server.receive().await else {
        panic!("expected SUBSCRIBE");
    };
    server
        .send(Packet::SubAck(SubAck {
            packet_id: subscribe.packet_id,
            reason_codes: vec![granted; subscribe.filters.len()],
            ..SubAck::default()
        }))
        .await;
    subscribe
}

async fn expect_disconnect(server: &mut FakeServer<TcpStream>) -> Disconnect {
    match server.receive().await {
        Packet::Disconnect(disconnect) => disconnect,
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
}

fn publish(topic: &str, qos: QoS, packet_id: Option<u16>, payload: &'static str) -> Packet {
    Packet::Publish(Publish {
        topic: topic.to_owned(),
        qos,
        packet_id,
        payload: payload.into(),
        ..Publish::default()
    })
}

#[test]
fn tools_mount_as_subcommands_with_dash_h_as_host() {
    // As the `switchboard` binary will mount them.
    let Tools::Sub(args) =
        Tools::try_parse_from(["sb", "sub", "-h", "example", "-t", "a"]).unwrap()
    else {
        panic!("expected sub");
    };
    assert_eq!(args.connection.host, "example");
    for tool in ["pub", "sub", "req"] {
        let error = Tools::try_parse_from(["sb", tool, "--help"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::DisplayHelp, "{tool}");
    }
}

#[test]
fn dash_capital_v_stays_the_protocol_version_under_a_versioned_binary() {
    #[derive(Debug, Parser)]
    #[command(version, propagate_version = true)]
    enum Binary {
        Sub(SubArgs),
    }
    let Binary::Sub(args) = Binary::try_parse_from(["sb", "sub", "-V", "311", "-t", "a"]).unwrap();
    assert_eq!(
        args.connection.protocol_version,
        switchboard_codec::ProtocolVersion::V3_1_1
    );
    let Binary::Sub(args) = Binary::try_parse_from(["sb", "sub", "-h", "host", "-t", "a"]).unwrap();
    assert_eq!(args.connection.host, "host");
}

#[tokio::test]
async fn pub_sends_the_message_and_disconnects() {
    let (listener, port) = listen().await;
    let server: JoinHandle<(Connect, Packet, Disconnect)> = tokio::spawn(async move {
        let (mut server, connect) = accept(&listener, ConnAck::default()).await;
        let packet = server.receive().await;
        let Packet::Publish(publish) = &packet else {
            panic!("expected PUBLISH");
        };
        server
            .send(Packet::PubAck(Ack::new(publish.packet_id.unwrap())))
            .await;
        let disconnect = expect_disconnect(&mut server).await;
        (connect, packet, disconnect)
    });
    let args = pub_args(
        port,
        &[
            "-t",
            "greetings",
            "-m",
            "hello",
            "-q",
            "1",
            "-r",
            "-i",
            "publisher",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
        ],
    );
    run_pub(args).await.unwrap();
    let (connect, packet, disconnect) = server.await.unwrap();
    assert_eq!(connect.client_id, "publisher");
    assert!(connect.clean_start);
    let Packet::Publish(publish) = packet else {
        unreachable!()
    };
    assert_eq!(publish.topic, "greetings");
    assert_eq!(&publish.payload[..], b"hello");
    assert!(publish.retain);
    assert_eq!(publish.qos, QoS::AtLeastOnce);
    assert_eq!(
        publish.properties.user_properties,
        vec![("k".to_owned(), "v".to_owned())]
    );
    assert_eq!(disconnect.reason_code, ReasonCode::NORMAL_DISCONNECTION);
}

#[tokio::test]
async fn pub_reports_a_refused_publish() {
    let (listener, port) = listen().await;
    let server = tokio::spawn(async move {
        let (mut server, _) = accept(&listener, ConnAck::default()).await;
        let Packet::Publish(publish) = server.receive().await else {
            panic!("expected PUBLISH");
        };
        server
            .send(Packet::PubAck(Ack::with_reason(
                publish.packet_id.unwrap(),
                ReasonCode::NOT_AUTHORIZED,
            )))
            .await;
        expect_disconnect(&mut server).await;
    });
    let error = run_pub(pub_args(port, &["-t", "secret", "-n", "-q", "1"]))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "publish to secret refused: 0x87 Not authorized"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn refused_tcp_connection_is_one_clear_line() {
    let (listener, port) = listen().await;
    drop(listener);
    let error = run_pub(pub_args(port, &["-t", "a", "-n"]))
        .await
        .unwrap_err();
    assert_eq!(
        format!("{error:#}"),
        format!("connection refused: 127.0.0.1:{port}")
    );
}

#[tokio::test]
async fn sub_prints_messages_skips_stale_retained_and_leaves_cleanly() {
    let (listener, port) = listen().await;
    let server = tokio::spawn(async move {
        let (mut server, connect) = accept(&listener, ConnAck::default()).await;
        let subscribe = expect_subscribe(&mut server, ReasonCode::GRANTED_QOS_1).await;
        server
            .send(publish("a/1", QoS::AtLeastOnce, Some(1), "one"))
            .await;
        assert_eq!(server.receive().await, Packet::PubAck(Ack::new(1)));
        let Packet::Publish(mut stale) = publish("a/2", QoS::AtMostOnce, None, "stale") else {
            unreachable!()
        };
        stale.retain = true;
        server.send(Packet::Publish(stale)).await;
        server.send(publish("a/3", QoS::AtMostOnce, None, "")).await;
        let disconnect = expect_disconnect(&mut server).await;
        (connect, subscribe, disconnect)
    });
    let args = sub_args(port, &["-t", "a/#", "-q", "1", "-C", "2", "-v", "-R"]);
    let mut out = Vec::new();
    subscribe_and_print(&args, &mut out, &mut never())
        .await
        .unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "a/1 one\na/3 (null)\n");

    let (connect, subscribe, disconnect) = server.await.unwrap();
    // Reconnect is on: a session that outlives a dropped connection ...
    assert!(connect.clean_start);
    assert_eq!(
        connect.properties.session_expiry_interval,
        Some(DEFAULT_RECONNECT_SESSION_EXPIRY_SECS)
    );
    assert_eq!(subscribe.filters[0].0, "a/#");
    assert_eq!(subscribe.filters[0].1.qos, QoS::AtLeastOnce);
    // ... and ended on a normal exit.
    assert_eq!(disconnect.session_expiry_interval, Some(0));
}

#[tokio::test]
async fn sub_reconnects_and_resumes_its_session_without_resubscribing() {
    let (listener, port) = listen().await;
    let server = tokio::spawn(async move {
        let (mut first, first_connect) = accept(&listener, ConnAck::default()).await;
        expect_subscribe(&mut first, ReasonCode::GRANTED_QOS_0).await;
        drop(first);

        let resumed = ConnAck {
            session_present: true,
            ..ConnAck::default()
        };
        let (mut second, second_connect) = accept(&listener, resumed).await;
        second
            .send(publish("a", QoS::AtMostOnce, None, "after"))
            .await;
        // No SUBSCRIBE: the session kept it. The next packet is the exit DISCONNECT.
        expect_disconnect(&mut second).await;
        (first_connect, second_connect)
    });
    let args = sub_args(port, &["-t", "a", "-C", "1", "-W", "30"]);
    let mut out = Vec::new();
    subscribe_and_print(&args, &mut out, &mut never())
        .await
        .unwrap();
    assert_eq!(out, b"after\n");
    let (first, second) = server.await.unwrap();
    assert!(first.clean_start);
    assert!(
        !second.clean_start,
        "the reconnect must ask for the session"
    );
    assert_eq!(first.client_id, second.client_id);
}

#[tokio::test]
async fn sub_without_reconnect_reports_the_server_disconnect() {
    let (listener, port) = listen().await;
    let server = tokio::spawn(async move {
        let (mut server, _) = accept(&listener, ConnAck::default()).await;
        expect_subscribe(&mut server, ReasonCode::GRANTED_QOS_0).await;
        server
            .send(Packet::Disconnect(Disconnect::with_reason(
                ReasonCode::ADMINISTRATIVE_ACTION,
            )))
            .await;
    });
    let args = sub_args(port, &["-t", "a", "--no-reconnect"]);
    let mut out = Vec::new();
    let error = subscribe_and_print(&args, &mut out, &mut never())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "server disconnected: 0x98 Administrative action"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn sub_fails_when_every_subscription_is_refused() {
    let (listener, port) = listen().await;
    let server = tokio::spawn(async move {
        let (mut server, _) = accept(&listener, ConnAck::default()).await;
        expect_subscribe(&mut server, ReasonCode::NOT_AUTHORIZED).await;
        expect_disconnect(&mut server).await;
    });
    let args = sub_args(port, &["-t", "private/#"]);
    let error = subscribe_and_print(&args, &mut Vec::new(), &mut never())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "subscription refused: private/#: 0x87 Not authorized"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn req_prints_the_response_with_our_correlation_data() {
    let (listener, port) = listen().await;
    let server = tokio::spawn(async move {
        let (mut server, _) = accept(&listener, ConnAck::default()).await;
        let subscribe = expect_subscribe(&mut server, ReasonCode::GRANTED_QOS_0).await;
        let Packet::Publish(request) = server.receive().await else {
            panic!("expected the request");
        };
        let response_topic = request.properties.response_topic.clone().unwrap();
        let correlation_data = request.properties.correlation_data.clone().unwrap();

        let mut stranger = Publish {
            topic: response_topic.clone(),
            payload: "not for you".into(),
            ..Publish::default()
        };
        stranger.properties.correlation_data = Some("someone else".into());
        server.send(Packet::Publish(stranger)).await;
        let mut response = Publish {
            topic: response_topic,
            payload: "pong".into(),
            ..Publish::default()
        };
        response.properties.correlation_data = Some(correlation_data);
        server.send(Packet::Publish(response)).await;
        expect_disconnect(&mut server).await;
        (subscribe, request)
    });
    let args = req_args(port, &["-t", "service/ping", "-m", "ping"]);
    let mut out = Vec::new();
    request_and_print(&args, &mut out, &mut never())
        .await
        .unwrap();
    assert_eq!(out, b"pong\n");

    let (subscribe, request) = server.await.unwrap();
    let response_topic = request.properties.response_topic.unwrap();
    // Subscribed to the response topic before the request went out.
    assert_eq!(subscribe.filters[0].0, response_topic);
    assert!(
        response_topic.starts_with("switchboard/rr/sbreq"),
        "{response_topic}"
    );
    assert_eq!(request.topic, "service/ping");
    assert_eq!(&request.payload[..], b"ping");
}

#[tokio::test]
async fn req_without_a_response_times_out_with_an_error() {
    let (listener, port) = listen().await;
    let server = tokio::spawn(async move {
        let (mut server, _) = accept(&listener, ConnAck::default()).await;
        expect_subscribe(&mut server, ReasonCode::GRANTED_QOS_0).await;
        let _request = server.receive().await;
        expect_disconnect(&mut server).await;
    });
    let args = req_args(
        port,
        &["-t", "nobody/home", "-n", "-W", "1", "-e", "replies/me"],
    );
    let error = request_and_print(&args, &mut Vec::new(), &mut never())
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "no response on replies/me within 1 s");
    server.await.unwrap();
}

#[tokio::test]
async fn req_needs_mqtt_5() {
    let args = req_args(1, &["-t", "a", "-n", "-V", "311"]);
    let error = request_and_print(&args, &mut Vec::new(), &mut never())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("MQTT 5"), "{error}");
}
