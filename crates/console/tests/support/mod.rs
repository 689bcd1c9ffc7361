//! Test support: a broker and its console on port 0, a small HTTP/1.1
//! client that checks every API answer against the OpenAPI document, a
//! Server-Sent Events reader, and an MQTT client (rumqttc) driven by a task.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;
use switchboard_console::{ConsoleOptions, Ready};
use switchboard_server::{ListenerKind, ListenerOptions, RunningServer, Server, ServerOptions};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Guard against a hung test; not an assertion about speed.
pub const GUARD: Duration = Duration::from_secs(10);

pub const OPENAPI: &str = include_str!("../../assets/openapi.json");

/// A broker with one MQTT listener and its console, both on 127.0.0.1:0.
pub struct Harness {
    pub server: Option<RunningServer>,
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
    pub cancel: CancellationToken,
    pub console: Option<tokio::task::JoinHandle<Result<(), switchboard_console::ConsoleError>>>,
}

pub fn server_options() -> ServerOptions {
    let mut options = ServerOptions {
        listeners: vec![ListenerOptions {
            name: "test".into(),
            kind: ListenerKind::Tcp,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_connections: 0,
            ..ListenerOptions::default()
        }],
        ..ServerOptions::default()
    };
    options.broker.sys_interval = None;
    options
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(ConsoleOptions::default()).await
    }

    pub async fn start_with(options: ConsoleOptions) -> Harness {
        Harness::start_full(server_options(), options).await
    }

    pub async fn start_full(server: ServerOptions, options: ConsoleOptions) -> Harness {
        let server = Server::bind(server).await.expect("bind mqtt");
        let mqtt = server.local_addrs()[0];
        let broker = server.broker();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let ready: Ready = options.ready.clone();
        let console = tokio::spawn(switchboard_console::serve(
            listener,
            broker,
            options,
            cancel.clone(),
        ));
        let running = server.start();
        ready.set_ready();
        Harness {
            server: Some(running),
            mqtt,
            http,
            cancel,
            console: Some(console),
        }
    }

    pub fn broker(&self) -> Arc<switchboard_broker::Broker> {
        self.server.as_ref().unwrap().broker()
    }

    pub fn client(&self) -> Http {
        Http::new(self.http)
    }

    /// Stops the console (its serve returns) and the broker.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(console) = self.console.take() {
            tokio::time::timeout(GUARD, console)
                .await
                .expect("console stops")
                .unwrap()
                .unwrap();
        }
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

/// An HTTP/1.1 client, one connection per request. Every answer from a
/// documented path is checked against the OpenAPI document.
#[derive(Debug, Clone)]
pub struct Http {
    pub address: SocketAddr,
    pub headers: Vec<(String, String)>,
    /// Skip the document check (for answers the test expects to be odd).
    pub unchecked: bool,
}

impl Http {
    pub fn new(address: SocketAddr) -> Http {
        Http {
            address,
            headers: vec![("Host".into(), address.to_string())],
            unchecked: false,
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Http {
        self.headers
            .retain(|(key, _)| !key.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn bearer(self, token: &str) -> Http {
        self.with_header("Authorization", &format!("Bearer {token}"))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request("GET", path, None).await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path, None).await
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> Response {
        self.request("POST", path, body.map(|body| body.to_string().into_bytes()))
            .await
    }

    pub async fn post_raw(&self, path: &str, body: &[u8]) -> Response {
        self.request("POST", path, Some(body.to_vec())).await
    }

    pub async fn request(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Response {
        let response = tokio::time::timeout(GUARD, self.exchange(method, path, body))
            .await
            .expect("HTTP request timed out");
        if !self.unchecked {
            check_against_document(method, path, &response);
        }
        response
    }

    async fn open(&self, method: &str, path: &str, body: Option<&[u8]>) -> BufReader<TcpStream> {
        let mut stream = TcpStream::connect(self.address).await.unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        if let Some(body) = body {
            stream.write_all(body).await.unwrap();
        }
        BufReader::new(stream)
    }

    async fn exchange(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Response {
        let mut reader = self.open(method, path, body.as_deref()).await;
        let (status, headers) = read_head(&mut reader).await;
        let chunked = headers.iter().any(|(key, value)| {
            key.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked")
        });
        let mut body = Vec::new();
        if chunked {
            while let Some(chunk) = read_chunk(&mut reader).await {
                body.extend(chunk);
            }
        } else {
            reader.read_to_end(&mut body).await.unwrap();
        }
        Response {
            status,
            headers,
            body,
        }
    }

    /// Opens a Server-Sent Events stream; panics unless the answer is 200.
    pub async fn events(&self, path: &str) -> Events {
        let mut reader = self.open("GET", path, None).await;
        let (status, headers) = read_head(&mut reader).await;
        assert_eq!(status, 200, "{path}");
        let content_type = headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case("content-type"))
            .map(|(_, value)| value.clone())
            .unwrap_or_default();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Events {
            reader,
            pending: String::new(),
        }
    }
}

async fn read_head(reader: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("bad status line {line:?}"))
        .parse()
        .unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').unwrap();
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    (status, headers)
}

/// One chunk of a chunked body; `None` at the last (empty) chunk or EOF.
async fn read_chunk(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
    if size == 0 {
        return None;
    }
    let mut chunk = vec![0u8; size + 2];
    reader.read_exact(&mut chunk).await.ok()?;
    chunk.truncate(size);
    Some(chunk)
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

pub struct Events {
    reader: BufReader<TcpStream>,
    pending: String,
}

impl Events {
    /// The next event (comments and keep-alives skipped).
    pub async fn next(&mut self) -> Event {
        tokio::time::timeout(GUARD, self.next_inner())
            .await
            .expect("no event in time")
            .expect("stream ended")
    }

    /// The next event, or `None` once the stream ended.
    pub async fn next_or_end(&mut self) -> Option<Event> {
        tokio::time::timeout(GUARD, self.next_inner())
            .await
            .expect("stream neither ended nor sent")
    }

    async fn next_inner(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim_start().to_string();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push(value.strip_prefix(' ').unwrap_or(value).to_string());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Some(Event {
                    name,
                    data: data.join("\n"),
                });
            }
            let chunk = read_chunk(&mut self.reader).await?;
            self.pending.push_str(&String::from_utf8(chunk).unwrap());
        }
    }
}

// ---------------------------------------------------------------------------
// The OpenAPI document
// ---------------------------------------------------------------------------

pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| serde_json::from_str(OPENAPI).expect("openapi.json is JSON"))
}

/// The documented path template `path` (query stripped) falls under.
/// `{topic}` as the last segment takes the rest of the path, slashes and all.
pub fn template_of(path: &str) -> Option<String> {
    let path = path.split('?').next().unwrap();
    let segments: Vec<&str> = path.split('/').collect();
    let paths = document()["paths"].as_object().unwrap();
    let mut best: Option<(usize, &String)> = None;
    for template in paths.keys() {
        let parts: Vec<&str> = template.split('/').collect();
        let mut literal = 0;
        let mut matched = true;
        for (index, part) in parts.iter().enumerate() {
            let rest = *part == "{topic}" && index == parts.len() - 1;
            match segments.get(index) {
                Some(segment) if part.starts_with('{') => {
                    if segment.is_empty() && !rest {
                        matched = false;
                    }
                }
                Some(segment) if segment == part => literal += 1,
                _ => matched = false,
            }
            if rest {
                break;
            }
            if !matched {
                break;
            }
        }
        let rest_tail = parts.last() == Some(&"{topic}");
        if matched
            && (segments.len() == parts.len() || (rest_tail && segments.len() >= parts.len()))
        {
            // Prefer the template with the most literal segments.
            if best.is_none_or(|(count, _)| literal > count) {
                best = Some((literal, template));
            }
        }
    }
    best.map(|(_, template)| template.clone())
}

/// Validators of response schemas, by JSON pointer.
fn validators() -> &'static Mutex<HashMap<String, Arc<jsonschema::Validator>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A validator of the schema at `pointer` in the document (references into
/// the document resolve, because the document itself is the root).
pub fn validator(pointer: &str) -> Arc<jsonschema::Validator> {
    if let Some(found) = validators().lock().unwrap().get(pointer) {
        return found.clone();
    }
    let mut root = document().clone();
    root.as_object_mut().unwrap().insert(
        "$ref".into(),
        Value::String(format!("#{}", uri_fragment(pointer))),
    );
    let compiled = Arc::new(
        jsonschema::draft202012::new(&root)
            .unwrap_or_else(|error| panic!("schema at {pointer} does not compile: {error}")),
    );
    validators()
        .lock()
        .unwrap()
        .insert(pointer.to_string(), compiled.clone());
    compiled
}

/// Panics unless `value` is valid against the schema at `pointer`.
pub fn assert_valid(pointer: &str, value: &Value) {
    let validator = validator(pointer);
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not valid against {pointer}:\n{}\n{value:#}",
        errors.join("\n")
    );
}

/// A JSON pointer as a URI fragment: characters a URI may not hold raw
/// (the braces of path templates) percent-encoded.
fn uri_fragment(pointer: &str) -> String {
    pointer.replace('{', "%7B").replace('}', "%7D")
}

fn escape_pointer(text: &str) -> String {
    text.replace('~', "~0").replace('/', "~1")
}

/// Checks that `method path` is documented with `response.status`, and that
/// a JSON body fits the documented schema.
pub fn check_against_document(method: &str, path: &str, response: &Response) {
    let Some(template) = template_of(path) else {
        // Not an API path (static files); nothing to check.
        return;
    };
    let method = method.to_lowercase();
    let operation = &document()["paths"][&template][&method];
    assert!(
        operation.is_object(),
        "{method} {template} is not in openapi.json"
    );
    let status = response.status.to_string();
    let mut documented = operation["responses"][&status].clone();
    assert!(
        documented.is_object(),
        "{method} {path}: status {status} is not documented for {template}; body: {}",
        String::from_utf8_lossy(&response.body)
    );
    let mut pointer_base = format!(
        "/paths/{}/{method}/responses/{status}",
        escape_pointer(&template)
    );
    if let Some(reference) = documented.get("$ref").and_then(Value::as_str) {
        let name = reference
            .trim_start_matches("#/components/responses/")
            .to_string();
        documented = document()["components"]["responses"][&name].clone();
        pointer_base = format!("/components/responses/{name}");
    }
    let content_type = response
        .header("content-type")
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    match documented.get("content") {
        None => assert!(
            response.body.is_empty(),
            "{method} {path}: {status} is documented without a body"
        ),
        Some(content) => {
            assert!(
                content.get(&content_type).is_some(),
                "{method} {path}: content type {content_type:?} is not documented for {status}"
            );
            if content_type == "application/json" {
                let pointer = format!(
                    "{pointer_base}/content/{}/schema",
                    escape_pointer("application/json")
                );
                assert_valid(&pointer, &response.json());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Prometheus text format
// ---------------------------------------------------------------------------

/// One sample of the exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A parsed exposition: families (name -> (type, help)) and samples.
#[derive(Debug, Default)]
pub struct Exposition {
    pub types: HashMap<String, String>,
    pub help: HashMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of `name` with exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|sample| {
                sample.name == name
                    && sample.labels.len() == labels.len()
                    && labels.iter().all(|(key, value)| {
                        sample.labels.iter().any(|(k, v)| k == key && v == value)
                    })
            })
            .map(|sample| sample.value)
    }
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// Parses the text exposition format 0.0.4 strictly: every line a HELP, a
/// TYPE or a sample; names and label names valid; label values properly
/// quoted and escaped; values numbers; each family's HELP and TYPE before
/// its samples and given once; samples of a family together; counters end
/// in `_total`; no duplicate series.
pub fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut exposition = Exposition::default();
    let mut finished: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut series: Vec<(String, Vec<(String, String)>)> = Vec::new();
    if !text.ends_with('\n') {
        return Err("the exposition must end with a newline".into());
    }
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        let fail = |message: &str| Err(format!("line {number}: {message}: {line:?}"));
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            if !valid_metric_name(name) {
                return fail("bad metric name in HELP");
            }
            if exposition.help.insert(name.into(), help.into()).is_some() {
                return fail("second HELP");
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or("TYPE without a type")?;
            if !valid_metric_name(name) {
                return fail("bad metric name in TYPE");
            }
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return fail("unknown type");
            }
            if kind == "counter" && !name.ends_with("_total") {
                return fail("counter name without _total");
            }
            if exposition.types.insert(name.into(), kind.into()).is_some() {
                return fail("second TYPE");
            }
            if let Some(previous) = current.replace(name.into()) {
                finished.push(previous);
            }
            if finished.contains(&name.to_string()) {
                return fail("family split in two");
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            return fail("empty line");
        }
        // name{labels} value
        let name_end = line.find(['{', ' ']).ok_or("sample without a value")?;
        let name = &line[..name_end];
        if !valid_metric_name(name) {
            return fail("bad metric name");
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(after) = rest.strip_prefix('{') {
            let bytes = after.as_bytes();
            let mut index = 0;
            loop {
                if bytes.get(index) == Some(&b'}') {
                    index += 1;
                    break;
                }
                let eq = after[index..].find('=').ok_or("label without =")? + index;
                let label = &after[index..eq];
                if !valid_label_name(label) {
                    return fail("bad label name");
                }
                if bytes.get(eq + 1) != Some(&b'"') {
                    return fail("label value not quoted");
                }
                let mut value = String::new();
                index = eq + 2;
                loop {
                    match bytes.get(index) {
                        None => return fail("unterminated label value"),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            match bytes.get(index + 1) {
                                Some(b'\\') => value.push('\\'),
                                Some(b'"') => value.push('"'),
                                Some(b'n') => value.push('\n'),
                                _ => return fail("bad escape in label value"),
                            }
                            index += 2;
                        }
                        Some(_) => {
                            let c = after[index..].chars().next().unwrap();
                            value.push(c);
                            index += c.len_utf8();
                        }
                    }
                }
                labels.push((label.to_string(), value));
                index += 1;
                match bytes.get(index) {
                    Some(b',') => index += 1,
                    Some(b'}') => {
                        index += 1;
                        break;
                    }
                    _ => return fail("expected , or } after a label"),
                }
            }
            rest = &after[index..];
        }
        let value_text = rest
            .strip_prefix(' ')
            .ok_or("no space before the value")?
            .split(' ')
            .next()
            .unwrap_or_default();
        let value = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            other => other
                .parse::<f64>()
                .map_err(|_| format!("line {number}: bad value {other:?}"))?,
        };
        // A histogram's samples are its name with _bucket (labelled `le`),
        // _sum and _count.
        let family = match current.as_deref() {
            Some(family)
                if exposition.types.get(family).map(String::as_str) == Some("histogram")
                    && [
                        format!("{family}_bucket"),
                        format!("{family}_sum"),
                        format!("{family}_count"),
                    ]
                    .iter()
                    .any(|sample| sample == name) =>
            {
                family
            }
            _ => name,
        };
        if current.as_deref() != Some(family) {
            return fail("sample outside its family (HELP/TYPE missing or family interleaved)");
        }
        if !exposition.help.contains_key(family) {
            return fail("family without HELP");
        }
        if name.ends_with("_bucket")
            && family != name
            && !labels.iter().any(|(label, _)| label == "le")
        {
            return fail("histogram bucket without le");
        }
        let mut sorted = labels.clone();
        sorted.sort();
        if series.contains(&(name.to_string(), sorted.clone())) {
            return fail("duplicate series");
        }
        series.push((name.to_string(), sorted));
        exposition.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(exposition)
}

// ---------------------------------------------------------------------------
// MQTT
// ---------------------------------------------------------------------------

/// What the client's event loop saw.
#[derive(Debug)]
pub enum Incoming {
    Publish(rumqttc::Publish),
    SubAck,
    PubAck,
    PubComp,
    Closed(String),
}

/// An MQTT 3.1.1 client whose event loop runs in a task; stops at the first
/// connection error (no reconnect).
pub struct Mqtt {
    pub client: rumqttc::AsyncClient,
    pub incoming: mpsc::UnboundedReceiver<Incoming>,
}

impl Mqtt {
    pub async fn connect(address: SocketAddr, client_id: &str) -> Mqtt {
        Mqtt::connect_with(address, client_id, |_| {}).await
    }

    pub async fn connect_with(
        address: SocketAddr,
        client_id: &str,
        configure: impl FnOnce(&mut rumqttc::MqttOptions),
    ) -> Mqtt {
        let mut options =
            rumqttc::MqttOptions::new(client_id, address.ip().to_string(), address.port());
        options.set_keep_alive(Duration::from_secs(30));
        configure(&mut options);
        let (client, mut event_loop) = rumqttc::AsyncClient::new(options, 16);
        let (sender, incoming) = mpsc::unbounded_channel();
        let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut connected = Some(connected_tx);
            loop {
                match event_loop.poll().await {
                    Ok(rumqttc::Event::Incoming(packet)) => {
                        let event = match packet {
                            rumqttc::Packet::ConnAck(_) => {
                                if let Some(tx) = connected.take() {
                                    let _ = tx.send(());
                                }
                                continue;
                            }
                            rumqttc::Packet::Publish(publish) => Incoming::Publish(publish),
                            rumqttc::Packet::SubAck(_) => Incoming::SubAck,
                            rumqttc::Packet::PubAck(_) => Incoming::PubAck,
                            rumqttc::Packet::PubComp(_) => Incoming::PubComp,
                            _ => continue,
                        };
                        if sender.send(event).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        let _ = sender.send(Incoming::Closed(error.to_string()));
                        return;
                    }
                }
            }
        });
        tokio::time::timeout(GUARD, connected_rx)
            .await
            .expect("CONNACK in time")
            .expect("connected");
        Mqtt { client, incoming }
    }

    pub async fn next(&mut self) -> Incoming {
        tokio::time::timeout(GUARD, self.incoming.recv())
            .await
            .expect("no MQTT event in time")
            .expect("event loop ended")
    }

    pub async fn subscribe(&mut self, filter: &str, qos: rumqttc::QoS) {
        self.client.subscribe(filter, qos).await.unwrap();
        loop {
            if let Incoming::SubAck = self.next().await {
                return;
            }
        }
    }

    /// Publishes at QoS 1 and waits for the PUBACK.
    pub async fn publish(&mut self, topic: &str, payload: &[u8], retain: bool) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload.to_vec())
            .await
            .unwrap();
        loop {
            if let Incoming::PubAck = self.next().await {
                return;
            }
        }
    }

    pub async fn recv_publish(&mut self) -> rumqttc::Publish {
        loop {
            match self.next().await {
                Incoming::Publish(publish) => return publish,
                Incoming::Closed(error) => panic!("connection closed: {error}"),
                _ => {}
            }
        }
    }

    /// Waits for the broker to close the connection.
    pub async fn closed(&mut self) -> String {
        loop {
            if let Incoming::Closed(error) = self.next().await {
                return error;
            }
        }
    }
}

/// Polls `condition` until it holds (the broker's state changes on another
/// task); panics after [`GUARD`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + GUARD;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
