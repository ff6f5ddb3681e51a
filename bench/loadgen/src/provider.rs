//! A fake OpenAI Chat Completions endpoint (`POST /v1/chat/completions`, `stream: true`)
//! that streams a fixed number of content deltas evenly over a fixed time, in OpenAI's
//! chunk format: a role chunk, the content chunks, a `finish_reason: "stop"` chunk, then
//! `data: [DONE]`. Every content delta carries the instant it was written (see [`stamp`]),
//! so the load client in this process measures provider → client latency on one clock.
//!
//! Each call is matched to its turn (the turn number in the request's text) in the
//! [`Ledger`] it shares with the load clients: when its response body is dropped (the
//! gateway's side closed, or the answer written) the ledger gets the instant; once the
//! turn's client has hung up, the call writes an SSE comment every `probe` (see
//! [`crate::hangup`]).

use std::{
    io,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use poem::{
    handler,
    http::{uri::Scheme, StatusCode},
    listener::Acceptor,
    post,
    web::{Data, Json, LocalAddr, RemoteAddr},
    Body, Endpoint, EndpointExt, Response, Route, Server,
};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

use crate::{
    clock,
    hangup::{self, Ledger},
};

/// How the fake answers every request.
#[derive(Clone, Copy, Debug)]
pub struct Pacing {
    pub deltas: u32,
    pub over: Duration,
    /// Answer with `Connection: close`, so the gateway cannot keep idle connections to
    /// the provider (separates their memory from the streams' own).
    pub close: bool,
    /// Once a call's client has hung up, write an SSE comment this often (for at most
    /// [`hangup::PROBE_WINDOW`]), so that a closed stream is seen by a write; `None`: never.
    pub probe: Option<Duration>,
}

/// What the fake has served (read by the report).
#[derive(Default)]
pub struct ProviderStats {
    pub requests: AtomicU64,
    pub finished: AtomicU64,
    pub deltas_written: AtomicU64,
    /// Size of the largest request body (JSON text) the gateway sent.
    pub max_request_bytes: AtomicU64,
    /// Calls whose response body is still held (streaming, or not yet dropped).
    pub open: AtomicU64,
    pub max_open: AtomicU64,
    /// SSE comments written to calls whose client had hung up.
    pub probes: AtomicU64,
    /// Calls whose request named no turn of the ledger.
    pub unmatched: AtomicU64,
}

#[derive(Clone)]
struct State {
    pacing: Pacing,
    stats: Arc<ProviderStats>,
    ledger: Arc<Ledger>,
}

/// One call in progress: counted open until its response body is dropped, which it
/// records in the ledger; probes the gateway once the turn's client has hung up.
struct Call {
    stats: Arc<ProviderStats>,
    ledger: Arc<Ledger>,
    /// The turn, if the request named one of the ledger's.
    turn: Option<usize>,
    probe: Option<Duration>,
    /// When this call learnt that its client had hung up, and when it last probed.
    probing: Option<(tokio::time::Instant, tokio::time::Instant)>,
    finished: bool,
}

impl Call {
    fn start(state: &State, turn: Option<usize>) -> Self {
        let turn = turn.filter(|&t| state.ledger.call_started(t));
        if turn.is_none() {
            state.stats.unmatched.fetch_add(1, Ordering::Relaxed);
        }
        let open = state.stats.open.fetch_add(1, Ordering::Relaxed) + 1;
        state.stats.max_open.fetch_max(open, Ordering::Relaxed);
        Self {
            stats: state.stats.clone(),
            ledger: state.ledger.clone(),
            turn,
            probe: state.pacing.probe,
            probing: None,
            finished: false,
        }
    }

    /// Waits for `due`, the next delta's time: `true` then; `false` when a probe is to be
    /// written first (the client has hung up: at once, then every `probe`).
    async fn wait(&mut self, due: tokio::time::Instant) -> bool {
        use tokio::time::{sleep_until, Instant};
        let (Some(turn), Some(probe)) = (self.turn, self.probe) else {
            sleep_until(due).await;
            return true;
        };
        let Some((since, last)) = self.probing else {
            if !self.ledger.has_hung_up(turn) {
                tokio::select! {
                    () = sleep_until(due) => return true,
                    () = self.ledger.hung_up(turn) => {}
                }
            }
            let now = Instant::now();
            self.probing = Some((now, now));
            return false;
        };
        let next = last + probe;
        if next >= due || next > since + hangup::PROBE_WINDOW {
            sleep_until(due).await;
            return true;
        }
        sleep_until(next).await;
        self.probing = Some((since, next));
        false
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(turn) = self.turn {
            self.ledger.call_ended(turn, self.finished);
        }
    }
}

/// The marker around a stamp in a delta's text: `⟨t=<µs since the process epoch>⟩`.
const STAMP_OPEN: &str = "⟨t=";
const STAMP_CLOSE: char = '⟩';

/// The text of content delta `index`, stamped with `at_us`.
#[must_use]
pub fn stamp(index: u32, at_us: u64) -> String {
    format!("w{index} {STAMP_OPEN}{at_us}{STAMP_CLOSE} ")
}

/// Every stamp in `text` (a delta may in principle carry several if a proxy merged them).
pub fn stamps(text: &str) -> impl Iterator<Item = u64> + '_ {
    text.split(STAMP_OPEN).skip(1).filter_map(|rest| {
        let end = rest.find(STAMP_CLOSE)?;
        rest[..end].parse().ok()
    })
}

/// One answer's chunks in OpenAI's format, written as text around the `delta` object
/// rather than as a JSON map per delta: this process shares two cores with the gateway it
/// measures, and every cycle it spends is one the gateway does not get.
struct Chunks {
    /// `data: {"id":...,"choices":[{"index":0,"delta":`
    head: String,
}

impl Chunks {
    fn new(id: &str, created: u64, model: &str) -> Self {
        let head = format!(
            "data: {{\"id\":{},\"object\":\"chat.completion.chunk\",\"created\":{created},\
             \"model\":{},\"system_fingerprint\":\"fp_loadgen\",\"choices\":[{{\"index\":0,\"delta\":",
            json_str(id),
            json_str(model),
        );
        Self { head }
    }

    /// The frame whose delta is the JSON object `delta`.
    fn frame(&self, delta: &str, finish: Option<&str>) -> String {
        let finish = finish.map_or_else(|| "null".to_owned(), json_str);
        format!(
            "{}{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n",
            self.head
        )
    }

    fn content(&self, text: &str) -> String {
        self.frame(&format!("{{\"content\":{}}}", json_str(text)), None)
    }
}

fn json_str(s: &str) -> String {
    Value::from(s).to_string()
}

#[handler]
async fn completions(state: Data<&State>, body: Json<Value>) -> Response {
    let n = state.stats.requests.fetch_add(1, Ordering::Relaxed);
    let text = body.to_string();
    let size = u64::try_from(text.len()).unwrap_or(u64::MAX);
    state
        .stats
        .max_request_bytes
        .fetch_max(size, Ordering::Relaxed);
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .content_type("application/json")
            .body(
                json!({"error": {"message": "this fake only streams", "type": "invalid_request_error"}})
                    .to_string(),
            );
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("gpt-4o-mini")
        .to_owned();
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let chunks = Arc::new(Chunks::new(
        &format!("chatcmpl-loadgen{n}"),
        created,
        &model,
    ));
    let Pacing {
        deltas,
        over,
        close,
        probe: _,
    } = state.pacing;
    let step = over / deltas.max(1);
    let start = tokio::time::Instant::now();
    let call = Call::start(&state, hangup::turn_index(&text));
    drop(text);
    // Frame k: 0 the role chunk, 1..=deltas content, deltas+1 finish, deltas+2 [DONE].
    // The call lives in the stream's state: dropped with the body, it records the end.
    let frames = futures_util::stream::unfold((0u32, call), move |(k, mut call)| {
        let chunks = chunks.clone();
        async move {
            let frame = if k == 0 {
                chunks.frame(r#"{"role":"assistant","content":"","refusal":null}"#, None)
            } else if k <= deltas {
                if !call.wait(start + step * k).await {
                    call.stats.probes.fetch_add(1, Ordering::Relaxed);
                    return Some((Ok(": probe\n\n".to_owned()), (k, call)));
                }
                // Stamped after the wake-up: timer lateness here is not the gateway's.
                let text = stamp(k, clock::now_us());
                call.stats.deltas_written.fetch_add(1, Ordering::Relaxed);
                chunks.content(&text)
            } else if k == deltas + 1 {
                chunks.frame("{}", Some("stop"))
            } else if k == deltas + 2 {
                call.stats.finished.fetch_add(1, Ordering::Relaxed);
                call.finished = true;
                "data: [DONE]\n\n".to_owned()
            } else {
                return None;
            };
            Some((Ok::<_, io::Error>(frame), (k + 1, call)))
        }
    });
    let mut response = Response::builder()
        .content_type("text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache");
    if close {
        response = response.header("connection", "close");
    }
    response.body(Body::from_bytes_stream(frames))
}

/// Accepts with `TCP_NODELAY`, so that Nagle's algorithm never holds a small delta back
/// (which would be counted as the gateway's latency).
struct NoDelay {
    listener: TcpListener,
    local: LocalAddr,
}

impl Acceptor for NoDelay {
    type Io = TcpStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        vec![self.local.clone()]
    }

    async fn accept(&mut self) -> io::Result<(TcpStream, LocalAddr, RemoteAddr, Scheme)> {
        let (io, remote) = self.listener.accept().await?;
        io.set_nodelay(true)?;
        Ok((
            io,
            self.local.clone(),
            RemoteAddr(remote.into()),
            Scheme::HTTP,
        ))
    }
}

/// The project's test CA and the certificate it signed for 127.0.0.1 (tests/fixtures/tls):
/// the fake serves `https` with them, and the gateway is told to trust `ca.pem`.
pub const TLS_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/tls");

/// The fake's base URL (its `/v1`) on `port`, over TLS if `tls`.
#[must_use]
pub fn base(tls: bool, port: u16) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://127.0.0.1:{port}/v1")
}

/// Serves the fake on `127.0.0.1:port` (0: any free port), over TLS if `tls`, recording
/// the calls of `ledger`'s turns there, and returns the port.
pub async fn serve(
    port: u16,
    pacing: Pacing,
    tls: bool,
    ledger: Arc<Ledger>,
) -> anyhow::Result<(u16, Arc<ProviderStats>)> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let stats = Arc::new(ProviderStats::default());
    let app = Route::new()
        .at("/v1/chat/completions", post(completions))
        .data(State {
            pacing,
            stats: stats.clone(),
            ledger,
        });
    if tls {
        let tls = tls_acceptor()?;
        tokio::spawn(serve_tls(listener, tls, app));
        return Ok((addr.port(), stats));
    }
    let acceptor = NoDelay {
        listener,
        local: LocalAddr(addr.into()),
    };
    tokio::spawn(async move {
        // HTTP/1.1, or HTTP/2 by prior knowledge (the gateway's `agent.openai.http2`),
        // with a concurrent-stream limit per connection like a hosted API's (poem's
        // default is none): a gateway that put more streams on a connection would see
        // them queue, and the delta latency would show it.
        let server = Server::new_with_acceptor(acceptor).http2_max_concurrent_streams(100);
        if let Err(e) = server.run(app).await {
            eprintln!("[loadgen] fake provider stopped: {e}");
        }
    });
    Ok((addr.port(), stats))
}

/// The fake's TLS: the fixtures' certificate, ALPN `h2` and `http/1.1` (as hosted APIs
/// offer them).
fn tls_acceptor() -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(format!("{TLS_FIXTURES}/provider.pem"))?
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(format!("{TLS_FIXTURES}/provider.key"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The fake over TLS, with hyper's server (HTTP/2 or HTTP/1.1, as ALPN settles it): each
/// connection's handshake runs on its own task, so a burst of new connections is not
/// handshaken one at a time. The same 100-stream limit per HTTP/2 connection as over h2c.
async fn serve_tls<E: Endpoint + 'static>(
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    app: E,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let local = LocalAddr(match listener.local_addr() {
        Ok(addr) => addr.into(),
        Err(_) => return,
    });
    let app = Arc::new(app.map_to_response());
    loop {
        let (io, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("[loadgen] fake provider stopped: {e}");
                return;
            }
        };
        let _ = io.set_nodelay(true);
        let (tls, app, local) = (tls.clone(), app.clone(), local.clone());
        tokio::spawn(async move {
            let Ok(io) = tls.accept(io).await else { return };
            let service = hyper::service::service_fn(move |req| {
                let (app, local) = (app.clone(), local.clone());
                async move {
                    let req =
                        poem::Request::from((req, local, RemoteAddr(remote.into()), Scheme::HTTPS));
                    let response = hyper::Response::from(app.get_response(req).await);
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder.http2().max_concurrent_streams(100);
            let _ = builder.serve_connection(TokioIo::new(io), service).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;

    #[test]
    fn stamps_round_trip() {
        let text = format!("{}{}", stamp(1, 42), stamp(2, 1_234_567));
        assert_eq!(stamps(&text).collect::<Vec<_>>(), vec![42, 1_234_567]);
        assert_eq!(stamps("no stamp ⟨t=x⟩ ⟨t=7").count(), 0);
    }

    /// The frames written as text are the JSON OpenAI sends, field for field.
    #[test]
    fn frames_are_openai_chunks() {
        let chunks = Chunks::new("chatcmpl-x\"1", 7, "gpt-4o-mini");
        let parse = |frame: String| -> Value {
            let data = frame
                .strip_prefix("data: ")
                .unwrap()
                .strip_suffix("\n\n")
                .unwrap();
            serde_json::from_str(data).unwrap()
        };
        let expected = |delta: Value, finish: Value| {
            json!({"id": "chatcmpl-x\"1", "object": "chat.completion.chunk", "created": 7,
                "model": "gpt-4o-mini", "system_fingerprint": "fp_loadgen",
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
        };
        assert_eq!(
            parse(chunks.content("a \"q\" ⟨t=5⟩\n")),
            expected(json!({"content": "a \"q\" ⟨t=5⟩\n"}), Value::Null)
        );
        assert_eq!(
            parse(chunks.frame("{}", Some("stop"))),
            expected(json!({}), json!("stop"))
        );
    }

    /// The stream parses the way the gateway parses it: JSON chunks with the content in
    /// `choices[0].delta.content`, a finish reason, then `[DONE]`.
    #[tokio::test]
    async fn streams_openai_chunks() {
        let (port, stats) = serve(0, three_deltas(), false, no_turns()).await.unwrap();
        let response = stream(&reqwest::Client::new(), false, port).await;
        assert_eq!(response.version(), reqwest::Version::HTTP_11);
        read_three_deltas(response).await;
        assert_eq!(stats.finished.load(Ordering::Relaxed), 1);
    }

    /// Over TLS, to a client that trusts the fixtures' CA: HTTP/2 by ALPN, the same stream.
    #[tokio::test]
    async fn streams_over_tls_with_http2_by_alpn() {
        let (port, stats) = serve(0, three_deltas(), true, no_turns()).await.unwrap();
        let ca = std::fs::read(format!("{TLS_FIXTURES}/ca.pem")).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .build()
            .unwrap();
        let response = stream(&client, true, port).await;
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        read_three_deltas(response).await;
        assert_eq!(stats.finished.load(Ordering::Relaxed), 1);
    }

    /// A streamed completion request to the fake on `port`.
    async fn stream(client: &reqwest::Client, tls: bool, port: u16) -> reqwest::Response {
        client
            .post(format!("{}/chat/completions", base(tls, port)))
            .json(&json!({"model": "m", "stream": true, "messages": []}))
            .send()
            .await
            .unwrap()
    }

    fn three_deltas() -> Pacing {
        Pacing {
            deltas: 3,
            over: Duration::from_millis(30),
            close: false,
            probe: None,
        }
    }

    fn no_turns() -> Arc<Ledger> {
        Arc::new(Ledger::new(0))
    }

    /// A client that hangs up: its call probes (SSE comments), and the ledger records when
    /// the call's body was dropped, well before its next delta was due.
    async fn hang_up_is_seen(tls: bool) {
        let ledger = Arc::new(Ledger::new(2));
        let pacing = Pacing {
            deltas: 2,
            over: Duration::from_secs(20),
            close: false,
            probe: Some(Duration::from_millis(10)),
        };
        let (port, stats) = serve(0, pacing, tls, ledger.clone()).await.unwrap();
        let ca = std::fs::read(format!("{TLS_FIXTURES}/ca.pem")).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let response = client
            .post(format!("{}/chat/completions", base(tls, port)))
            .json(&json!({"model": "m", "stream": true,
                "messages": [{"role": "user", "content": "bench turn 1: hello"}]}))
            .send()
            .await
            .unwrap();
        let version = if tls {
            reqwest::Version::HTTP_2
        } else {
            reqwest::Version::HTTP_11
        };
        assert_eq!(response.version(), version);
        let mut body = response.bytes_stream();
        let mut read = String::new();
        while !read.contains("\"role\"") {
            read.push_str(&String::from_utf8_lossy(
                &body.next().await.unwrap().unwrap(),
            ));
        }
        ledger.hang_up(1);
        while !read.contains(": probe") {
            read.push_str(&String::from_utf8_lossy(
                &body.next().await.unwrap().unwrap(),
            ));
        }
        drop(body);
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let s = ledger.summary();
                if s.still_open == 0 {
                    return s;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the call was still open 5 s after its client left");
        assert_eq!(ended.hung_up, 1);
        assert_eq!(ended.open_after_1s, 0);
        assert_eq!(ended.finished_anyway, 0);
        assert!(ended.ended_after_us[0] < 1_000_000, "{ended:?}");
        assert_eq!(stats.open.load(Ordering::Relaxed), 0);
        assert_eq!(stats.unmatched.load(Ordering::Relaxed), 0);
        assert!(stats.probes.load(Ordering::Relaxed) >= 1);
        assert_eq!(stats.deltas_written.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_dropped_http1_call_is_recorded() {
        hang_up_is_seen(false).await;
    }

    #[tokio::test]
    async fn a_reset_http2_stream_is_recorded() {
        hang_up_is_seen(true).await;
    }

    async fn read_three_deltas(response: reqwest::Response) {
        assert_eq!(response.status(), 200);
        let mut events = response.bytes_stream().eventsource();
        let (mut texts, mut finish, mut done) = (Vec::new(), None, false);
        while let Some(event) = events.next().await {
            let data = event.unwrap().data;
            if data == "[DONE]" {
                done = true;
                continue;
            }
            let chunk: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert_eq!(chunk["model"], "m");
            let choice = &chunk["choices"][0];
            if let Some(t) = choice["delta"]["content"]
                .as_str()
                .filter(|t| !t.is_empty())
            {
                texts.push(t.to_owned());
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                finish = Some(f.to_owned());
            }
        }
        assert!(done);
        assert_eq!(finish.as_deref(), Some("stop"));
        assert_eq!(texts.len(), 3);
        assert!(texts.iter().all(|t| stamps(t).count() == 1));
    }

    #[tokio::test]
    async fn refuses_unstreamed_requests() {
        let pacing = Pacing {
            deltas: 1,
            over: Duration::from_millis(1),
            close: true,
            probe: None,
        };
        let (port, _) = serve(0, pacing, false, no_turns()).await.unwrap();
        let response = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
            .json(&json!({"model": "m", "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
    }
}
