//! A fake OpenAI-compatible model API on loopback: it plays scripted answers in the real
//! wire format (SSE `data:` chunks of `chat.completion.chunk`), records every request, can
//! hold an answer back until the test opens a [`Gate`], and serves over TLS when asked.
//! Unscripted calls are answered HTTP 500, as a model API that is down answers. It also
//! transcribes: `/audio/transcriptions` reads the multipart upload for real and answers
//! scripted text.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use poem::{
    handler, post,
    web::{Data, Json},
    Body, EndpointExt, Request, Response, Route,
};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::{
    app::serve_on_loopback,
    wait::{within, Gate},
};

/// One scripted answer.
#[derive(Clone)]
pub enum Script {
    /// An SSE answer, frame by frame.
    Sse(Vec<Frame>),
    /// An error status, with OpenAI's error body.
    Status {
        code: u16,
        retry_after: Option<&'static str>,
    },
    /// Nothing at all, not even the head, until the gate opens; then the script.
    Held(Gate, Box<Script>),
}

/// A step of an SSE answer.
#[derive(Clone)]
pub enum Frame {
    /// `data: <chunk>`.
    Chunk(Value),
    /// `data: [DONE]`.
    Done,
    /// Nothing sent for a while.
    Pause(Duration),
    /// Nothing sent until the gate opens.
    Wait(Gate),
    /// No data until the gate opens, but an SSE comment every 50 ms meanwhile: a write
    /// fails once the gateway has gone, so the fake notices a dropped call (a server
    /// notices a closed connection only when it writes).
    Stall(Gate),
    /// The connection breaks.
    Cut,
}

/// A chunk in OpenAI's shape.
pub fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "fake",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

/// `chunks`, each after `delay`, then `[DONE]` (after `delay` too) if `done`.
pub fn chunks(chunks: Vec<Value>, delay: Duration, done: bool) -> Script {
    let mut frames = Vec::new();
    for c in chunks {
        frames.extend([Frame::Pause(delay), Frame::Chunk(c)]);
    }
    if done {
        frames.extend([Frame::Pause(delay), Frame::Done]);
    }
    Script::Sse(frames)
}

/// An answer streamed as `parts`.
pub fn text(parts: &[&str]) -> Script {
    let mut all = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    all.extend(parts.iter().map(|p| chunk(json!({"content": p}), None)));
    all.push(chunk(json!({}), Some("stop")));
    chunks(all, Duration::from_millis(2), true)
}

/// One tool call, its arguments split into `parts`.
pub fn tool_call(id: &str, name: &str, parts: &[&str]) -> Script {
    let mut all = vec![chunk(
        json!({"role": "assistant", "tool_calls": [{"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
        None,
    )];
    all.extend(parts.iter().map(|p| {
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}),
            None,
        )
    }));
    all.push(chunk(json!({}), Some("tool_calls")));
    chunks(all, Duration::from_millis(1), true)
}

/// A call of `name` with `args` whole, under the id `call_<name>`.
pub fn call(name: &str, args: Value) -> Script {
    tool_call(&format!("call_{name}"), name, &[&args.to_string()])
}

/// Some chunks, then the connection breaks.
pub fn die(before: Vec<Value>) -> Script {
    let mut frames = Vec::new();
    for c in before {
        frames.extend([Frame::Pause(Duration::from_millis(5)), Frame::Chunk(c)]);
    }
    frames.extend([Frame::Pause(Duration::from_millis(5)), Frame::Cut]);
    Script::Sse(frames)
}

/// A request the fake received: its JSON body and Authorization header.
type Seen = (Value, Option<String>);

/// What the fake has been told and what it has seen.
#[derive(Clone)]
pub struct Fake {
    scripts: Arc<Mutex<VecDeque<Script>>>,
    requests: Arc<Mutex<Vec<Seen>>>,
    /// Each request's HTTP version and the connection it came on (the peer's address).
    transport: Arc<Mutex<Vec<(poem::http::Version, String)>>>,
    /// When each request arrived.
    times: Arc<Mutex<Vec<Instant>>>,
    arrived: Arc<watch::Sender<usize>>,
    /// When set, the first `n` answers wait for each other, after their heads, before any
    /// streams a frame.
    together: Option<(usize, Arc<tokio::sync::Barrier>)>,
    /// Answers whose stream is still open (the gateway has not dropped it).
    open: Arc<watch::Sender<usize>>,
    /// Answers to title calls: a title, or an HTTP status to fail with.
    titles: Arc<Mutex<VecDeque<Result<String, u16>>>>,
    title_requests: Arc<Mutex<Vec<Value>>>,
    /// Answers to transcription calls: the text heard, or an HTTP status to fail with.
    transcripts: Arc<Mutex<VecDeque<Result<String, u16>>>>,
    transcriptions: Arc<Mutex<Vec<Transcription>>>,
}

/// A transcription call as the fake read it from its multipart body.
#[derive(Clone, Debug, Default)]
pub struct Transcription {
    /// The form's field names, in order.
    pub fields: Vec<String>,
    /// The `model` field.
    pub model: Option<String>,
    /// The `file` field's file name, type and bytes.
    pub file_name: Option<String>,
    pub file_type: Option<String>,
    pub file: Vec<u8>,
    pub authorization: Option<String>,
}

impl Default for Fake {
    fn default() -> Self {
        Self {
            scripts: Arc::default(),
            requests: Arc::default(),
            transport: Arc::default(),
            times: Arc::default(),
            arrived: Arc::new(watch::channel(0).0),
            together: None,
            open: Arc::new(watch::channel(0).0),
            titles: Arc::default(),
            title_requests: Arc::default(),
            transcripts: Arc::default(),
            transcriptions: Arc::default(),
        }
    }
}

impl Fake {
    /// A fake whose first `n` answers are held open together: none streams a frame before
    /// all have arrived (though their heads have gone out).
    pub fn together(n: usize) -> Self {
        Self {
            together: Some((n, Arc::new(tokio::sync::Barrier::new(n)))),
            ..Self::default()
        }
    }
}

/// Counts a stream as open from its first frame until the gateway drops it.
struct OpenStream(Arc<watch::Sender<usize>>);

impl OpenStream {
    fn new(open: Arc<watch::Sender<usize>>) -> Self {
        open.send_modify(|n| *n += 1);
        Self(open)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

fn sse(
    frames: Vec<Frame>,
    barrier: Option<Arc<tokio::sync::Barrier>>,
    open: Arc<watch::Sender<usize>>,
) -> Response {
    let guard = OpenStream::new(open);
    let opened = futures_util::stream::once(async move {
        if let Some(barrier) = barrier {
            barrier.wait().await;
        }
    })
    .filter_map(|()| async { None });
    let frames = futures_util::stream::iter(frames).flat_map(move |frame| {
        // Captured by the body's stream: the stream counts as open until it is dropped.
        let _open = &guard;
        match frame {
            Frame::Stall(gate) => futures_util::stream::unfold(gate, |gate| async move {
                if gate.is_open() {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((Ok(": stalled\n\n".to_owned()), gate))
            })
            .boxed(),
            frame => futures_util::stream::once(async move {
                match frame {
                    Frame::Chunk(c) => Some(Ok(format!("data: {c}\n\n"))),
                    Frame::Done => Some(Ok("data: [DONE]\n\n".to_owned())),
                    Frame::Pause(d) => {
                        tokio::time::sleep(d).await;
                        None
                    }
                    Frame::Wait(gate) => {
                        gate.pass().await;
                        None
                    }
                    Frame::Cut => Some(Err(std::io::Error::other("cut"))),
                    Frame::Stall(_) => None,
                }
            })
            .filter_map(|frame| async move { frame })
            .boxed(),
        }
    });
    Response::builder()
        .content_type("text/event-stream")
        .body(Body::from_bytes_stream(opened.chain(frames)))
}

async fn answer(
    script: Option<Script>,
    barrier: Option<Arc<tokio::sync::Barrier>>,
    open: Arc<watch::Sender<usize>>,
) -> Response {
    let status = |code: u16, message: &str| {
        Response::builder()
            .status(poem::http::StatusCode::from_u16(code).unwrap())
            .content_type("application/json")
            .body(json!({"error": {"message": message, "type": "server_error"}}).to_string())
    };
    match script {
        None => status(500, "no script"),
        Some(Script::Status { code, retry_after }) => {
            let mut r = status(code, "scripted");
            if let Some(ra) = retry_after {
                r.headers_mut()
                    .insert("retry-after", poem::http::HeaderValue::from_static(ra));
            }
            r
        }
        Some(Script::Sse(frames)) => sse(frames, barrier, open),
        Some(Script::Held(gate, then)) => {
            gate.pass().await;
            Box::pin(answer(Some(*then), barrier, open)).await
        }
    }
}

#[handler]
async fn completions(fake: Data<&Fake>, req: &Request, body: Json<Value>) -> Response {
    // A non-streamed call is a thread's title: answered from its own queue, and kept
    // apart, so the turns' scripts and requests are as they were.
    if body.0.get("stream") == Some(&Value::Bool(false)) {
        fake.title_requests.lock().unwrap().push(body.0);
        let title = fake.titles.lock().unwrap().pop_front();
        return match title {
            Some(Ok(text)) => Response::builder().content_type("application/json").body(
                json!({"id": "chatcmpl-t", "object": "chat.completion", "model": "fake",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": text}}]})
                .to_string(),
            ),
            Some(Err(code)) => Response::builder()
                .status(poem::http::StatusCode::from_u16(code).unwrap())
                .body("scripted"),
            None => Response::builder()
                .status(poem::http::StatusCode::INTERNAL_SERVER_ERROR)
                .body("no title scripted"),
        };
    }
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    fake.times.lock().unwrap().push(Instant::now());
    fake.requests.lock().unwrap().push((body.0, auth));
    let arrived = {
        let mut transport = fake.transport.lock().unwrap();
        transport.push((req.version(), req.remote_addr().to_string()));
        transport.len()
    };
    fake.arrived.send_replace(arrived);
    // Waited for in the body, after the head has gone out: the calls count as open for
    // as long as their streams are, not only until their heads arrive.
    let barrier = fake
        .together
        .as_ref()
        .filter(|(n, _)| arrived <= *n)
        .map(|(_, barrier)| barrier.clone());
    let script = fake.scripts.lock().unwrap().pop_front();
    answer(script, barrier, fake.open.clone()).await
}

#[handler]
async fn transcriptions(fake: Data<&Fake>, req: &Request, body: Body) -> Response {
    let reply = |code: u16, body: Value| {
        Response::builder()
            .status(poem::http::StatusCode::from_u16(code).unwrap())
            .content_type("application/json")
            .body(body.to_string())
    };
    let boundary = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok());
    let Some(boundary) = boundary else {
        return reply(
            400,
            json!({"error": {"message": "not multipart/form-data"}}),
        );
    };
    let mut seen = Transcription {
        authorization: req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        ..Transcription::default()
    };
    let mut form = multer::Multipart::new(body.into_bytes_stream(), boundary);
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return reply(400, json!({"error": {"message": e.to_string()}})),
        };
        let name = field.name().unwrap_or_default().to_owned();
        seen.fields.push(name.clone());
        if name == "file" {
            seen.file_name = field.file_name().map(str::to_owned);
            seen.file_type = field.content_type().map(ToString::to_string);
        }
        let Ok(bytes) = field.bytes().await else {
            return reply(400, json!({"error": {"message": "a field broke off"}}));
        };
        match name.as_str() {
            "model" => seen.model = Some(String::from_utf8_lossy(&bytes).into_owned()),
            "file" => seen.file = bytes.to_vec(),
            _ => {}
        }
    }
    let seen_key = seen
        .authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::to_owned);
    fake.transcriptions.lock().unwrap().push(seen);
    match fake.transcripts.lock().unwrap().pop_front() {
        Some(Ok(text)) => reply(200, json!({"text": text})),
        // A refused key is quoted back, as some providers and proxies do.
        Some(Err(401)) => reply(
            401,
            json!({"error": {"message": format!("Incorrect API key provided: {}",
                seen_key.unwrap_or_default()), "type": "invalid_request_error"}}),
        ),
        Some(Err(code)) => reply(
            code,
            json!({"error": {"message": "scripted", "type": "server_error"}}),
        ),
        None => reply(500, json!({"error": {"message": "no transcript scripted"}})),
    }
}

/// The fake, serving at `base` (its `/v1`).
pub struct FakeModel {
    pub base: String,
    fake: Fake,
}

impl FakeModel {
    pub async fn start(scripts: Vec<Script>) -> Self {
        Self::start_with(Fake::default(), scripts).await
    }

    pub async fn start_with(fake: Fake, scripts: Vec<Script>) -> Self {
        Self::serve(fake, scripts, None).await
    }

    /// Over `https`, with the test CA's certificate for 127.0.0.1, offering the `alpn`
    /// protocols.
    pub async fn start_tls(fake: Fake, scripts: Vec<Script>, alpn: &[&[u8]]) -> Self {
        Self::serve(fake, scripts, Some(alpn)).await
    }

    async fn serve(fake: Fake, scripts: Vec<Script>, tls: Option<&[&[u8]]>) -> Self {
        fake.scripts.lock().unwrap().extend(scripts);
        let api = Route::new()
            .at("/v1/chat/completions", post(completions))
            .at("/v1/audio/transcriptions", post(transcriptions))
            .data(fake.clone());
        let base = match tls {
            None => serve_on_loopback(api).await,
            Some(alpn) => serve_tls_on_loopback(api, alpn).await,
        };
        Self {
            base: format!("{base}/v1"),
            fake,
        }
    }

    /// Queues `script` after those not played yet.
    pub fn push(&self, script: Script) {
        self.fake.scripts.lock().unwrap().push_back(script);
    }

    /// Queues `scripts`, in order.
    pub fn script(&self, scripts: Vec<Script>) {
        self.fake.scripts.lock().unwrap().extend(scripts);
    }

    /// Drops the scripts not played yet.
    pub fn forget_scripts(&self) {
        self.fake.scripts.lock().unwrap().clear();
    }

    /// The JSON bodies of the requests so far.
    pub fn requests(&self) -> Vec<Value> {
        self.fake
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(|(body, _)| body.clone())
            .collect()
    }

    /// The Authorization header of request `i`.
    pub fn authorization(&self, i: usize) -> Option<String> {
        self.fake.requests.lock().unwrap()[i].1.clone()
    }

    /// Each call's HTTP version and connection, in arrival order.
    pub fn transport(&self) -> Vec<(poem::http::Version, String)> {
        self.fake.transport.lock().unwrap().clone()
    }

    /// Waits until no answer's stream is open: the gateway has dropped every model call.
    pub async fn all_closed(&self) {
        let mut open = self.fake.open.subscribe();
        let _ = within("the model calls to be dropped", open.wait_for(|n| *n == 0)).await;
    }

    /// The answer to the next title call: a title, or an HTTP status to fail with.
    pub fn push_title(&self, title: Result<&str, u16>) {
        self.fake
            .titles
            .lock()
            .unwrap()
            .push_back(title.map(str::to_owned));
    }

    /// The title calls received, in order.
    pub fn title_requests(&self) -> Vec<Value> {
        self.fake.title_requests.lock().unwrap().clone()
    }

    /// The answer to the next transcription call: the text heard, or an HTTP status.
    pub fn push_transcript(&self, text: Result<&str, u16>) {
        self.fake
            .transcripts
            .lock()
            .unwrap()
            .push_back(text.map(str::to_owned));
    }

    /// The transcription calls received, in order, as read from their multipart bodies.
    pub fn transcriptions(&self) -> Vec<Transcription> {
        self.fake.transcriptions.lock().unwrap().clone()
    }

    /// How many answers' streams are open now.
    pub fn open_streams(&self) -> usize {
        *self.fake.open.borrow()
    }

    /// When each call arrived, in arrival order.
    pub fn arrival_times(&self) -> Vec<Instant> {
        self.fake.times.lock().unwrap().clone()
    }

    /// Waits until `n` calls have arrived in all.
    pub async fn arrivals(&self, n: usize) {
        let mut arrived = self.fake.arrived.subscribe();
        let what = format!("{n} call(s) of the model");
        let _ = within(&what, arrived.wait_for(|a| *a >= n)).await;
    }

    /// The tool names offered in request `i`.
    pub fn offered(&self, i: usize) -> Vec<String> {
        self.requests()[i]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The content of the last `tool` message in request `i`, parsed.
    pub fn tool_result(&self, i: usize) -> Value {
        let req = &self.requests()[i];
        let m = req["messages"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|m| m["role"] == "tool")
            .expect("a tool message");
        serde_json::from_str(m["content"].as_str().unwrap()).unwrap()
    }
}

/// A file of tests/fixtures/tls: a private CA (`ca.pem`), and a certificate it signed for
/// 127.0.0.1 and localhost (`provider.pem`, `provider.key`), valid for a century; test
/// material only.
pub fn tls_fixture(name: &str) -> String {
    format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Serves `endpoint` over TLS on loopback (hyper's HTTP/1.1 or HTTP/2, as ALPN settles it
/// among `alpn`) and returns its `https://` base.
async fn serve_tls_on_loopback(
    endpoint: impl poem::IntoEndpoint<Endpoint: 'static>,
    alpn: &[&[u8]],
) -> String {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use poem::{
        web::{LocalAddr, RemoteAddr},
        Endpoint,
    };
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(tls_fixture("provider.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(tls_fixture("provider.key")).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let endpoint = Arc::new(endpoint.into_endpoint().map_to_response());
    tokio::spawn(async move {
        while let Ok((tcp, remote)) = listener.accept().await {
            let (acceptor, endpoint) = (acceptor.clone(), endpoint.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    let endpoint = endpoint.clone();
                    async move {
                        let req = poem::Request::from((
                            req,
                            LocalAddr(local.into()),
                            RemoteAddr(remote.into()),
                            poem::http::uri::Scheme::HTTPS,
                        ));
                        let answer = hyper::Response::from(endpoint.get_response(req).await);
                        Ok::<_, std::convert::Infallible>(answer)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    format!("https://127.0.0.1:{}", local.port())
}

/// Points `s` at the fake model API.
pub fn use_model(s: &mut chatkit_gateway::Settings, model: &FakeModel) {
    use_model_at(s, &model.base);
}

/// Points `s` at a model API served at `base` (its `/v1`).
pub fn use_model_at(s: &mut chatkit_gateway::Settings, base: &str) {
    s.agent.provider = chatkit_gateway::config::AgentProvider::OpenAi;
    s.agent.openai.base_url = base.to_owned();
    s.agent.openai.api_key = secrecy::SecretString::from("sk-test");
    s.agent.openai.model = "fake-model".into();
    s.agent.openai.retry_base_ms = 20;
    s.agent.openai.first_token_timeout_ms = 3000;
    // Titles are a call of their own; the tests of titles turn them on.
    s.agent.openai.titles = false;
}
