//! The `openai` provider against a fake OpenAI-compatible server on loopback that plays
//! scripted responses in the real wire format (SSE `data:` chunks).

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

use chatkit_gateway::{
    agent::{
        Agent, AgentAnswer, AgentError, AgentRequest, EventSink, OpenAiAgent, PromptTemplate,
        TaskTools,
    },
    config::{AgentProvider, Http2Mode},
    store::Store,
    Settings,
};

use crate::helpers::{
    parse_sse, roles, serve_on_loopback, spawn_app_with, spawn_app_with_agent, TestApp,
};

/// One scripted answer of the fake model API.
#[derive(Clone)]
enum Script {
    /// SSE `data:` payloads, `delay` apart, then `[DONE]` if `done`.
    Chunks {
        chunks: Vec<Value>,
        delay: Duration,
        done: bool,
    },
    Status {
        code: u16,
        retry_after: Option<&'static str>,
    },
    /// Some chunks, then the connection breaks.
    Die { chunks: Vec<Value> },
    /// Headers only after `delay`.
    Hang { delay: Duration },
}

/// A request the fake received: its JSON body and Authorization header.
type Seen = (Value, Option<String>);

#[derive(Clone, Default)]
struct Fake {
    scripts: Arc<Mutex<VecDeque<Script>>>,
    requests: Arc<Mutex<Vec<Seen>>>,
    /// Each request's HTTP version and the connection it came on (the peer's address).
    transport: Arc<Mutex<Vec<(poem::http::Version, String)>>>,
    /// When set, the first `n` answers wait for each other, after their heads, before any
    /// streams a chunk.
    gate: Option<(usize, Arc<tokio::sync::Barrier>)>,
}

#[handler]
async fn completions(fake: Data<&Fake>, req: &Request, body: Json<Value>) -> Response {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    fake.requests.lock().unwrap().push((body.0, auth));
    let arrived = {
        let mut transport = fake.transport.lock().unwrap();
        transport.push((req.version(), req.remote_addr().to_string()));
        transport.len()
    };
    // Waited for in the body, after the head has gone out: the calls count as open for
    // as long as their streams are, not only until their heads arrive.
    let gate = fake
        .gate
        .as_ref()
        .filter(|(n, _)| arrived <= *n)
        .map(|(_, gate)| gate.clone());
    let script = fake.scripts.lock().unwrap().pop_front();
    let sse = move |frames: Vec<Result<String, std::io::Error>>, delay: Duration| {
        let gate = gate.clone();
        let opened = futures_util::stream::once(async move {
            if let Some(gate) = gate {
                gate.wait().await;
            }
        })
        .filter_map(|()| async { None });
        let stream = opened.chain(
            futures_util::stream::iter(frames).then(move |f| async move {
                tokio::time::sleep(delay).await;
                f
            }),
        );
        Response::builder()
            .content_type("text/event-stream")
            .body(Body::from_bytes_stream(stream))
    };
    let data = |c: &Value| Ok(format!("data: {c}\n\n"));
    match script {
        None => Response::builder()
            .status(poem::http::StatusCode::INTERNAL_SERVER_ERROR)
            .body("no script"),
        Some(Script::Status { code, retry_after }) => {
            let mut r = Response::builder().status(poem::http::StatusCode::from_u16(code).unwrap());
            if let Some(ra) = retry_after {
                r = r.header("retry-after", ra);
            }
            r.body(json!({"error": {"message": "scripted", "type": "server_error"}}).to_string())
        }
        Some(Script::Chunks {
            chunks,
            delay,
            done,
        }) => {
            let mut frames: Vec<_> = chunks.iter().map(data).collect();
            if done {
                frames.push(Ok("data: [DONE]\n\n".into()));
            }
            sse(frames, delay)
        }
        Some(Script::Die { chunks }) => {
            let mut frames: Vec<_> = chunks.iter().map(data).collect();
            frames.push(Err(std::io::Error::other("cut")));
            sse(frames, Duration::from_millis(5))
        }
        Some(Script::Hang { delay }) => {
            tokio::time::sleep(delay).await;
            sse(vec![], Duration::ZERO)
        }
    }
}

struct FakeModel {
    base: String,
    fake: Fake,
}

impl FakeModel {
    async fn start(scripts: Vec<Script>) -> Self {
        Self::start_with(Fake::default(), scripts).await
    }

    async fn start_with(fake: Fake, scripts: Vec<Script>) -> Self {
        Self::serve(fake, scripts, None).await
    }

    /// Over `https`, with the test CA's certificate for 127.0.0.1, offering the `alpn`
    /// protocols.
    async fn start_tls(fake: Fake, scripts: Vec<Script>, alpn: &[&[u8]]) -> Self {
        Self::serve(fake, scripts, Some(alpn)).await
    }

    async fn serve(fake: Fake, scripts: Vec<Script>, tls: Option<&[&[u8]]>) -> Self {
        fake.scripts.lock().unwrap().extend(scripts);
        let api = Route::new()
            .at("/v1/chat/completions", post(completions))
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

    /// Each call's HTTP version and connection, in arrival order.
    fn transport(&self) -> Vec<(poem::http::Version, String)> {
        self.fake.transport.lock().unwrap().clone()
    }

    fn requests(&self) -> Vec<Value> {
        self.fake
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(|(b, _)| b.clone())
            .collect()
    }

    fn push(&self, script: Script) {
        self.fake.scripts.lock().unwrap().push_back(script);
    }
}

/// A file of tests/fixtures/tls: a private CA (`ca.pem`), and a certificate it signed for
/// 127.0.0.1 and localhost (`provider.pem`, `provider.key`), valid for a century; test
/// material only.
fn tls_fixture(name: &str) -> String {
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

// Chunk builders in OpenAI's shape.
fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "fake",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

fn text(parts: &[&str]) -> Script {
    let mut chunks = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    chunks.extend(parts.iter().map(|p| chunk(json!({"content": p}), None)));
    chunks.push(chunk(json!({}), Some("stop")));
    Script::Chunks {
        chunks,
        delay: Duration::from_millis(2),
        done: true,
    }
}

/// One tool call with its arguments split into `parts`.
fn tool_call(id: &str, name: &str, parts: &[&str]) -> Script {
    let mut chunks = vec![chunk(
        json!({"role": "assistant", "tool_calls": [{"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
        None,
    )];
    chunks.extend(parts.iter().map(|p| {
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}),
            None,
        )
    }));
    chunks.push(chunk(json!({}), Some("tool_calls")));
    Script::Chunks {
        chunks,
        delay: Duration::from_millis(1),
        done: true,
    }
}

/// Model calls held open together: the fake's first `HELD` answers stream nothing before
/// all have arrived (though their heads have gone out).
const HELD: usize = 5;

fn held() -> Fake {
    Fake {
        gate: Some((HELD, Arc::new(tokio::sync::Barrier::new(HELD)))),
        ..Fake::default()
    }
}

fn held_answers() -> Vec<Script> {
    vec![text(&["Shared", " line"]); HELD]
}

/// `HELD` turns sent at once, each answered; how their calls arrived (version, connection).
async fn held_turns(app: &TestApp, model: &FakeModel) -> Vec<(poem::http::Version, String)> {
    let t = app.login("alice").await;
    let messages: Vec<String> = (0..HELD).map(|i| format!("hi {i}")).collect();
    let replies =
        futures_util::future::join_all(messages.iter().map(|m| app.send(&t, None, m))).await;
    for reply in replies {
        assert_eq!(reply.ok()["response"], "Shared line");
    }
    let transport = model.transport();
    assert_eq!(transport.len(), HELD);
    transport
}

/// The distinct connections of `transport`, checking every call came over `version`.
fn connections(
    transport: &[(poem::http::Version, String)],
    version: poem::http::Version,
) -> std::collections::HashSet<String> {
    assert!(
        transport.iter().all(|(v, _)| *v == version),
        "{transport:?}"
    );
    transport.iter().map(|(_, c)| c.clone()).collect()
}

#[tokio::test]
async fn over_http2_concurrent_turns_share_connections_up_to_the_configured_count() {
    // Two streams per connection: three connections for the five calls, over h2c.
    let model = FakeModel::start_with(held(), held_answers()).await;
    let app = gateway(&model, |s| {
        s.agent.openai.http2 = Http2Mode::Always;
        s.agent.openai.http2_streams_per_connection = 2;
    })
    .await;
    let transport = held_turns(&app, &model).await;
    let connections = connections(&transport, poem::http::Version::HTTP_2);
    assert_eq!(connections.len(), 3, "{transport:?}");

    // Once those streams are over, the next turn goes out on a connection already open.
    model.push(text(&["Again"]));
    let t = app.login("alice").await;
    let reply = app.send(&t, None, "once more").await.ok();
    assert_eq!(reply["response"], "Again");
    let last = model.transport().last().unwrap().1.clone();
    assert!(connections.contains(&last), "{last} not in {connections:?}");
}

#[tokio::test]
async fn over_https_http2_is_negotiated_by_default_and_connections_are_shared() {
    // A server offering h2 and HTTP/1.1 by ALPN, as hosted APIs do, behind a private CA.
    let alpn: &[&[u8]] = &[b"h2", b"http/1.1"];
    let model = FakeModel::start_tls(held(), held_answers(), alpn).await;
    assert!(model.base.starts_with("https://"));
    let app = gateway(&model, |s| {
        s.agent.openai.ca_file = Some(tls_fixture("ca.pem"));
        s.agent.openai.http2_streams_per_connection = 2;
    })
    .await;
    assert_eq!(app.settings.agent.openai.http2, Http2Mode::Auto);
    let transport = held_turns(&app, &model).await;
    assert_eq!(
        connections(&transport, poem::http::Version::HTTP_2).len(),
        3
    );
}

#[tokio::test]
async fn over_https_a_server_without_h2_is_spoken_to_over_http1() {
    // The same default against a server whose ALPN offers HTTP/1.1 only: ALPN settles on
    // it, and every concurrent call holds a connection of its own.
    let alpn: &[&[u8]] = &[b"http/1.1"];
    let model = FakeModel::start_tls(held(), held_answers(), alpn).await;
    let app = gateway(&model, |s| {
        s.agent.openai.ca_file = Some(tls_fixture("ca.pem"));
        s.agent.openai.http2_streams_per_connection = 2;
    })
    .await;
    let transport = held_turns(&app, &model).await;
    assert_eq!(
        connections(&transport, poem::http::Version::HTTP_11).len(),
        HELD
    );
}

#[tokio::test]
async fn a_provider_certificate_from_an_authority_not_trusted_fails_the_turn() {
    // No `ca_file`: the fake's private CA is not among the web roots.
    let model = FakeModel::start_tls(Fake::default(), vec![text(&["never sent"])], &[b"h2"]).await;
    let app = gateway(&model, |s| s.agent.openai.max_retries = 0).await;
    let t = app.login("alice").await;
    app.send(&t, None, "hi")
        .await
        .assert_error(502, "agent.unavailable");
    assert!(model.transport().is_empty());
    let threads = app.get("/api/chatkit/threads", &t).await.ok();
    let id = threads["threads"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        roles(&app.all_messages(&t, &id).await),
        [("user", "failed")]
    );
}

#[test]
fn an_unusable_ca_file_stops_the_start() {
    let mut settings = Settings::defaults();
    settings.agent.provider = AgentProvider::OpenAi;
    for (path, says) in [
        ("/nonexistent/ca.pem".to_owned(), "No such file"),
        // A private key is PEM, but not a certificate.
        (tls_fixture("provider.key"), "no certificate"),
    ] {
        settings.agent.openai.ca_file = Some(path);
        let err = chatkit_gateway::agent::from_settings(&settings.agent)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("agent.openai.ca_file") && err.contains(says),
            "{err}"
        );
    }
    // Empty (as `GATEWAY__AGENT__OPENAI__CA_FILE=` gives it): no file, the web roots only.
    settings.agent.openai.ca_file = Some(String::new());
    assert!(chatkit_gateway::agent::from_settings(&settings.agent).is_ok());
}

#[tokio::test]
async fn http2_against_a_server_that_only_speaks_http1_fails_the_turn_clearly() {
    // What an HTTP/1.1-only server does with the HTTP/2 preface: a 400, then it closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
                )
                .await;
        }
    });
    let app = spawn_app_with(|s| {
        use_model_at(s, &base);
        s.agent.openai.max_retries = 1;
        s.agent.openai.http2 = Http2Mode::Always;
    })
    .await;
    let t = app.login("alice").await;
    app.send(&t, None, "hi")
        .await
        .assert_error(502, "agent.unavailable");
    // The call reached the server: the turn failed on the server's answer, not before.
    assert!(seen.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    let threads = app.get("/api/chatkit/threads", &t).await.ok();
    let id = threads["threads"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        roles(&app.all_messages(&t, &id).await),
        [("user", "failed")]
    );
}

/// Points `s` at the fake model API.
fn use_model(s: &mut Settings, model: &FakeModel) {
    use_model_at(s, &model.base);
}

/// Points `s` at a model API served at `base` (its `/v1`).
fn use_model_at(s: &mut Settings, base: &str) {
    s.agent.provider = AgentProvider::OpenAi;
    s.agent.openai.base_url = base.to_owned();
    s.agent.openai.api_key = secrecy::SecretString::from("sk-test");
    s.agent.openai.model = "fake-model".into();
    s.agent.openai.retry_base_ms = 20;
    s.agent.openai.first_token_timeout_ms = 3000;
}

/// The service answering with the `openai` provider against `model`, `edit` applied on top.
async fn gateway(model: &FakeModel, edit: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(|s| {
        use_model(s, model);
        edit(s);
    })
    .await
}

#[tokio::test]
async fn a_plain_answer_is_recorded_and_the_request_is_well_formed() {
    let model = FakeModel::start(vec![text(&["Hello", " there", "!"])]).await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let reply = app.send(&t, None, "hi").await.ok();
    assert_eq!(reply["response"], "Hello there!");
    assert_eq!(reply["tool_calls"], json!([]));
    let messages = app
        .all_messages(&t, reply["thread_id"].as_str().unwrap())
        .await;
    assert_eq!(messages[1]["content"], "Hello there!");
    assert_eq!(
        roles(&messages),
        [("user", "completed"), ("assistant", "completed")]
    );

    let (body, auth) = model.fake.requests.lock().unwrap()[0].clone();
    assert_eq!(auth.as_deref(), Some("Bearer sk-test"));
    // The default: HTTP/1.1, which every OpenAI-compatible server speaks.
    assert_eq!(
        model.fake.transport.lock().unwrap()[0].0,
        poem::http::Version::HTTP_11
    );
    assert_eq!(body["model"], "fake-model");
    assert_eq!(body["stream"], true);
    let tools: Vec<_> = body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        [
            "add_task",
            "list_tasks",
            "complete_task",
            "delete_task",
            "update_task"
        ]
    );
    let sent = body["messages"].as_array().unwrap();
    assert_eq!(sent[0]["role"], "system");
    let system = sent[0]["content"].as_str().unwrap();
    assert!(
        system.contains("alice") && system.contains("Roman Urdu") && !system.contains("{{"),
        "{system}"
    );
    assert_eq!(sent[1], json!({"role": "user", "content": "hi"}));
}

#[tokio::test]
async fn the_answer_streams_as_server_sent_events() {
    let model = FakeModel::start(vec![text(&["Your ", "list ", "is ", "empty."])]).await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let (status, events) = app
        .stream_message(&t, None, "what's on my list?", None)
        .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        names,
        [
            "message.recorded",
            "delta",
            "delta",
            "delta",
            "delta",
            "done"
        ]
    );
    let deltas: String = events
        .iter()
        .filter(|(e, _)| e == "delta")
        .map(|(_, d)| d["text"].as_str().unwrap())
        .collect();
    let done = &events.last().unwrap().1;
    assert_eq!(deltas, "Your list is empty.");
    assert_eq!(done["response"], deltas.as_str());
    assert_eq!(done["message_id"], events[0].1["message_id"]);
    let messages = app
        .all_messages(&t, done["thread_id"].as_str().unwrap())
        .await;
    assert_eq!(messages[1]["id"], done["response_id"]);
    assert_eq!(messages[1]["content"], "Your list is empty.");
}

#[tokio::test]
async fn a_tool_call_split_over_many_chunks_runs_and_its_result_goes_back() {
    let model = FakeModel::start(vec![
        tool_call(
            "call_1",
            "add_task",
            &["{\"ti", "tle\":", " \"buy ", "milk\"", "}"],
        ),
        text(&["Added ", "\"buy milk\"."]),
    ])
    .await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let (_, events) = app
        .stream_message(&t, None, "remember to buy milk", None)
        .await;
    let tool_event = events.iter().find(|(e, _)| e == "tool_call").unwrap();
    assert_eq!(tool_event.1["tool"], "add_task");
    assert_eq!(tool_event.1["args"], json!({"title": "buy milk"}));
    assert_eq!(tool_event.1["result"]["task"]["task_id"], 1);
    let done = &events.last().unwrap().1;
    assert_eq!(done["response"], "Added \"buy milk\".");
    assert_eq!(done["tool_calls"].as_array().unwrap().len(), 1);

    let second = &model.requests()[1]["messages"];
    let n = second.as_array().unwrap().len();
    assert_eq!(second[n - 2]["role"], "assistant");
    assert_eq!(second[n - 2]["tool_calls"][0]["id"], "call_1");
    assert_eq!(
        second[n - 2]["tool_calls"][0]["function"]["arguments"],
        "{\"title\": \"buy milk\"}"
    );
    assert_eq!(second[n - 1]["role"], "tool");
    assert_eq!(second[n - 1]["tool_call_id"], "call_1");
    let fed_back: Value = serde_json::from_str(second[n - 1]["content"].as_str().unwrap()).unwrap();
    assert_eq!(fed_back["task"]["title"], "buy milk");

    // The task really exists: the model's next list_tasks sees it.
    model.push(tool_call("call_2", "list_tasks", &["{}"]));
    model.push(text(&["ok"]));
    let listed = app
        .send(&t, Some(done["thread_id"].as_str().unwrap()), "list")
        .await
        .ok();
    assert_eq!(
        listed["tool_calls"][0]["result"]["tasks"][0]["title"],
        "buy milk"
    );
}

#[tokio::test]
async fn two_tool_calls_in_one_step_and_a_multi_step_loop() {
    let two_calls = Script::Chunks {
        chunks: vec![
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "add_task", "arguments": "{\"title\":\"one\"}"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "add_task", "arguments": "{\"title\":"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "function": {"arguments": "\"two\"}"}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
        ],
        delay: Duration::from_millis(1),
        done: true,
    };
    let model = FakeModel::start(vec![
        two_calls,
        tool_call("c", "complete_task", &["{\"task_id\": 2}"]),
        tool_call("d", "list_tasks", &["{\"status\":\"pending\"}"]),
        text(&["Done: one is pending, two is complete."]),
    ])
    .await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let reply = app
        .send(&t, None, "add one and two, then finish two")
        .await
        .ok();
    let tools: Vec<_> = reply["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tool"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        ["add_task", "add_task", "complete_task", "list_tasks"]
    );
    assert_eq!(reply["tool_calls"][2]["result"]["task"]["completed"], true);
    assert_eq!(
        reply["tool_calls"][3]["result"]["tasks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(reply["response"], "Done: one is pending, two is complete.");
    assert_eq!(model.requests().len(), 4);
    // Tool calls are recorded with the reply: a replayed idempotent request would return them;
    // the thread shows just the two messages.
    let messages = app
        .all_messages(&t, reply["thread_id"].as_str().unwrap())
        .await;
    assert_eq!(messages.len(), 2);
}

#[tokio::test]
async fn the_step_limit_stops_a_model_that_keeps_calling_tools() {
    let model = FakeModel::start(vec![
        tool_call("1", "list_tasks", &["{}"]),
        tool_call("2", "list_tasks", &["{}"]),
        tool_call("3", "list_tasks", &["{}"]),
    ])
    .await;
    let app = gateway(&model, |s| s.agent.openai.max_tool_steps = 2).await;
    let t = app.login("alice").await;
    let reply = app.send(&t, None, "loop forever").await.ok();
    assert_eq!(model.requests().len(), 2);
    assert_eq!(reply["tool_calls"].as_array().unwrap().len(), 2);
    assert!(reply["response"]
        .as_str()
        .unwrap()
        .contains("stopped after 2 tool steps"));
    let messages = app
        .all_messages(&t, reply["thread_id"].as_str().unwrap())
        .await;
    assert_eq!(
        roles(&messages),
        [("user", "completed"), ("assistant", "completed")]
    );
}

#[tokio::test]
async fn invalid_tool_arguments_become_an_error_the_model_sees() {
    let model = FakeModel::start(vec![
        tool_call("x", "add_task", &["{\"title\": tru"]),
        tool_call("y", "complete_task", &["{\"task_id\": \"seven\"}"]),
        tool_call("z", "no_such_tool", &["{}"]),
        text(&["Sorry, something went wrong."]),
    ])
    .await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let keyed = || app.send_keyed(&t, None, "add something", "bad-args");
    let reply = keyed().await.ok();
    // The replay is read back from the database: the tool calls were recorded, raw
    // unparsable arguments included.
    assert_eq!(keyed().await.ok(), reply);
    assert_eq!(
        model.requests().len(),
        4,
        "the replay did not call the model"
    );
    let calls = reply["tool_calls"].as_array().unwrap();
    assert_eq!(calls[0]["args"], "{\"title\": tru");
    assert!(calls[0]["result"]["error"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    assert!(calls[1]["result"]["error"]
        .as_str()
        .unwrap()
        .contains("invalid arguments"));
    assert!(calls[2]["result"]["error"]
        .as_str()
        .unwrap()
        .contains("unknown tool"));
    let requests = model.requests();
    let fed: Vec<String> = requests[1..]
        .iter()
        .map(|r| {
            r["messages"].as_array().unwrap().last().unwrap()["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(fed[0].contains("not valid JSON"), "{fed:?}");
    assert_eq!(reply["response"], "Sorry, something went wrong.");
}

#[tokio::test]
async fn gemini_and_ollama_chunk_shapes_are_understood() {
    // Gemini: tool calls whole and without index, finish_reason "stop", a trailing
    // usage-only chunk with empty choices, and no [DONE].
    let gemini = Script::Chunks {
        chunks: vec![
            json!({"choices": [{"delta": {"role": "assistant", "tool_calls": [
                {"id": "g1", "type": "function", "function": {"name": "add_task", "arguments": "{\"title\":\"g one\"}"}},
                {"id": "g2", "type": "function", "function": {"name": "add_task", "arguments": "{\"title\":\"g two\"}"}}
            ]}, "finish_reason": "stop", "index": 0}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5}}),
        ],
        delay: Duration::from_millis(1),
        done: false,
    };
    let gemini_text = Script::Chunks {
        chunks: vec![
            json!({"choices": [{"delta": {"content": "Added both", "role": "assistant"}, "index": 0}]}),
            json!({"choices": [{"delta": {"content": "."}, "finish_reason": "STOP", "index": 0}]}),
        ],
        delay: Duration::from_millis(1),
        done: false,
    };
    // Ollama: tool call with index but finish_reason "stop"; final chunk carries `message`.
    let ollama = Script::Chunks {
        chunks: vec![
            json!({"id": "o", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "",
                "tool_calls": [{"id": "call_o", "index": 0, "type": "function", "function": {"name": "list_tasks", "arguments": "{}"}}]}, "finish_reason": null}]}),
            json!({"id": "o", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": "stop"}]}),
        ],
        delay: Duration::from_millis(1),
        done: true,
    };
    let ollama_text = Script::Chunks {
        chunks: vec![
            json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "You have 2 tasks."}, "finish_reason": "stop"}]}),
        ],
        delay: Duration::from_millis(1),
        done: true,
    };
    let model = FakeModel::start(vec![gemini, gemini_text, ollama, ollama_text]).await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let first = app.send(&t, None, "add g one and g two").await.ok();
    assert_eq!(first["response"], "Added both.");
    assert_eq!(first["tool_calls"].as_array().unwrap().len(), 2);
    let second = app
        .send(&t, first["thread_id"].as_str(), "how many?")
        .await
        .ok();
    assert_eq!(second["response"], "You have 2 tasks.");
    assert_eq!(
        second["tool_calls"][0]["result"]["tasks"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let messages = app
        .all_messages(&t, first["thread_id"].as_str().unwrap())
        .await;
    let contents: Vec<&str> = messages
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        [
            "add g one and g two",
            "Added both.",
            "how many?",
            "You have 2 tasks."
        ]
    );
}

#[tokio::test]
async fn rate_limits_are_retried_honouring_retry_after() {
    let model = FakeModel::start(vec![
        Script::Status {
            code: 429,
            retry_after: Some("1"),
        },
        text(&["ok"]),
    ])
    .await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let started = Instant::now();
    let reply = app.send(&t, None, "hi").await.ok();
    assert_eq!(reply["response"], "ok");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(model.requests().len(), 2);
    let messages = app
        .all_messages(&t, reply["thread_id"].as_str().unwrap())
        .await;
    assert_eq!(
        roles(&messages),
        [("user", "completed"), ("assistant", "completed")]
    );
    assert_eq!(messages[1]["content"], "ok");
}

#[tokio::test]
async fn server_errors_are_retried_then_the_turn_fails_and_a_keyed_retry_completes_it() {
    let fail = || Script::Status {
        code: 500,
        retry_after: None,
    };
    let model = FakeModel::start(vec![fail(), fail(), fail()]).await;
    let app = gateway(&model, |s| s.agent.openai.max_retries = 2).await;
    let t = app.login("alice").await;
    let keyed = |key: &'static str| app.send_keyed(&t, None, "hi", key);
    keyed("k1").await.assert_error(502, "agent.unavailable");
    assert_eq!(model.requests().len(), 3, "one try and two retries");
    let threads = app.get("/api/chatkit/threads", &t).await.ok();
    let id = threads["threads"][0]["id"].as_str().unwrap().to_owned();
    let messages = app.all_messages(&t, &id).await;
    assert_eq!(roles(&messages), [("user", "failed")]);

    // A client error is not retried.
    model.push(Script::Status {
        code: 400,
        retry_after: None,
    });
    app.send(&t, Some(&id), "bad request")
        .await
        .assert_error(502, "agent.unavailable");
    assert_eq!(model.requests().len(), 4);

    model.push(text(&["Hello again"]));
    let done = keyed("k1").await.ok();
    assert_eq!(done["message_id"], messages[0]["id"]);
    assert_eq!(done["response"], "Hello again");
    let messages = app.all_messages(&t, &id).await;
    assert_eq!(
        roles(&messages),
        [
            ("user", "completed"),
            ("user", "failed"),
            ("assistant", "completed")
        ]
    );
}

#[tokio::test]
async fn a_stream_that_dies_half_way_records_no_partial_answer() {
    let model = FakeModel::start(vec![Script::Die {
        chunks: vec![chunk(json!({"content": "Half an ans"}), None)],
    }])
    .await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let (status, events) = app.stream_message(&t, None, "tell me", Some("die-1")).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["message.recorded", "delta", "error"]);
    assert_eq!(events[2].1["code"], "agent.unavailable");
    assert_eq!(model.requests().len(), 1, "no retry once text has streamed");
    let id = events[0].1["thread_id"].as_str().unwrap();
    let messages = app.all_messages(&t, id).await;
    assert_eq!(roles(&messages), [("user", "failed")]);
    // The keyed retry completes the same turn.
    model.push(text(&["The whole answer."]));
    let (_, events) = app.stream_message(&t, None, "tell me", Some("die-1")).await;
    assert_eq!(events.last().unwrap().0, "done");
    assert_eq!(events[0].1["message_id"], messages[0]["id"]);
    let messages = app.all_messages(&t, id).await;
    assert_eq!(
        roles(&messages),
        [("user", "completed"), ("assistant", "completed")]
    );
    assert_eq!(messages[1]["content"], "The whole answer.");
}

#[tokio::test]
async fn a_slow_first_token_times_out() {
    let model = FakeModel::start(vec![Script::Hang {
        delay: Duration::from_secs(3),
    }])
    .await;
    let app = gateway(&model, |s| {
        s.agent.openai.first_token_timeout_ms = 300;
        s.agent.openai.max_retries = 0;
    })
    .await;
    let t = app.login("alice").await;
    let started = Instant::now();
    app.send(&t, None, "hi")
        .await
        .assert_error(502, "agent.unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Slow chunks after a fast start are fine (only the first token has a deadline).
    // 200 ms between chunks: the first arrives within 300 ms, the whole answer takes longer.
    let slow = Script::Chunks {
        chunks: vec![
            chunk(json!({"content": "sl"}), None),
            chunk(json!({"content": "ow"}), None),
            chunk(json!({}), Some("stop")),
        ],
        delay: Duration::from_millis(200),
        done: true,
    };
    model.push(slow);
    let threads = app.get("/api/chatkit/threads", &t).await.ok();
    let id = threads["threads"][0]["id"].as_str().unwrap();
    assert_eq!(
        app.send(&t, Some(id), "again").await.ok()["response"],
        "slow"
    );
}

/// A model that counts to five, one word per chunk, `delay` apart.
fn counting(delay: Duration) -> Script {
    Script::Chunks {
        chunks: ["one ", "two ", "three ", "four ", "five"]
            .iter()
            .map(|p| chunk(json!({"content": p}), None))
            .chain([chunk(json!({}), Some("stop"))])
            .collect(),
        delay,
        done: true,
    }
}

/// Waits (5 s at most) for the [`counting`] answer to be recorded in `thread_id`, with
/// nothing partial recorded meanwhile.
async fn counted_answer_recorded(app: &TestApp, t: &str, thread_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let messages = app.all_messages(t, thread_id).await;
        if messages.len() == 2 {
            assert_eq!(messages[1]["content"], "one two three four five");
            assert_eq!(
                roles(&messages),
                [("user", "completed"), ("assistant", "completed")]
            );
            return;
        }
        assert_eq!(
            roles(&messages),
            [("user", "pending")],
            "nothing partial is recorded meanwhile"
        );
        assert!(Instant::now() < deadline, "the answer was never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_still_gets_the_whole_answer_recorded() {
    let model = FakeModel::start(vec![counting(Duration::from_millis(150))]).await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let resp = app
        .client
        .post(format!("{}/api/chatkit/messages", app.base))
        .bearer_auth(&t)
        .header("accept", "text/event-stream")
        .json(&json!({"thread_id": null, "message": "count"}))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("event: delta") {
        seen.push_str(&String::from_utf8_lossy(
            &body.next().await.unwrap().unwrap(),
        ));
    }
    drop(body); // hang up after the first delta
    let recorded = parse_sse(seen.split("event: delta").next().unwrap());
    let thread_id = recorded[0].1["thread_id"].as_str().unwrap().to_owned();
    counted_answer_recorded(&app, &t, &thread_id).await;
}

/// A client that stays connected but stops reading after the response's first bytes does
/// not hold its turn back: the answer is recorded while nothing more is read.
#[tokio::test]
async fn a_client_that_never_reads_its_stream_still_gets_the_answer_recorded_meanwhile() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let model = FakeModel::start(vec![counting(Duration::from_millis(50))]).await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let thread = app.create_thread(&t, "unread").await;
    let thread_id = thread["id"].as_str().unwrap().to_owned();
    let body = json!({"thread_id": thread_id, "message": "count"}).to_string();
    let mut raw = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "POST /api/chatkit/messages HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {t}\r\n\
         accept: text/event-stream\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    raw.write_all(head.as_bytes()).await.unwrap();
    raw.write_all(body.as_bytes()).await.unwrap();
    // The head comes once the user's message is recorded; nothing is read after it.
    let mut first = [0u8; 64];
    let n = raw.read(&mut first).await.unwrap();
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&first[..n])
    );
    counted_answer_recorded(&app, &t, &thread_id).await;
    drop(raw);
}

#[tokio::test]
async fn history_is_sent_in_order_within_its_window_and_keep_alives_flow() {
    let model = FakeModel::start(vec![text(&["first answer"]), text(&["second answer"])]).await;
    let app = gateway(&model, |s| {
        s.messages.history_max_items = 2;
        s.stream.keep_alive_secs = 0; // the floor (100 ms) applies
    })
    .await;
    let t = app.login("alice").await;
    let first = app.send(&t, None, "first question").await.ok();
    let slow = Script::Chunks {
        chunks: vec![
            chunk(json!({"content": "third"}), None),
            chunk(json!({}), Some("stop")),
        ],
        delay: Duration::from_millis(350),
        done: true,
    };
    app.send(&t, first["thread_id"].as_str(), "second question")
        .await
        .ok();
    let sent = &model.requests()[1]["messages"];
    let shape: Vec<(&str, &str)> = sent.as_array().unwrap()[1..]
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(
        shape,
        [
            ("user", "first question"),
            ("assistant", "first answer"),
            ("user", "second question")
        ]
    );
    // Window of 2: the oldest message drops out.
    model.push(slow);
    let (_, events) = app
        .stream_message(&t, first["thread_id"].as_str(), "third question", None)
        .await;
    let sent = &model.requests()[2]["messages"];
    let contents: Vec<&str> = sent.as_array().unwrap()[1..]
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        ["second question", "second answer", "third question"]
    );
    assert!(
        events.iter().any(|(e, _)| e == "comment"),
        "keep-alive comments while waiting: {events:?}"
    );
    assert_eq!(events.last().unwrap().0, "done");
}

#[tokio::test]
async fn streaming_errors_before_the_agent_runs_are_plain_json() {
    let model = FakeModel::start(vec![]).await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let (status, _) = app
        .stream_message(&t, Some("thr_00000000000000000000000000000000"), "hi", None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = app.stream_message(&t, None, "  ", None).await;
    assert_eq!(status, 422);
    assert!(model.requests().is_empty());
}

/// The openai provider with task tools whose database has gone away (its pool closed), as
/// in an outage that starts after the user's message was recorded.
struct ToolsWithoutDatabase(OpenAiAgent);

#[async_trait::async_trait]
impl Agent for ToolsWithoutDatabase {
    async fn respond(
        &self,
        request: AgentRequest<'_>,
        _tools: &TaskTools,
        events: &EventSink,
    ) -> Result<AgentAnswer, AgentError> {
        let store = Store::connect("sqlite::memory:", 1, Duration::from_secs(1))
            .await
            .unwrap();
        store.clone().close().await;
        let tools = TaskTools::new(store, request.user.clone());
        self.0.respond(request, &tools, events).await
    }
}

#[tokio::test]
async fn a_database_failure_inside_a_tool_call_is_a_503_not_a_model_failure() {
    let add = || tool_call("call_1", "add_task", &["{\"title\": \"x\"}"]);
    let model = FakeModel::start(vec![add()]).await;
    let mut settings = Settings::defaults();
    use_model(&mut settings, &model);
    let agent = ToolsWithoutDatabase(
        OpenAiAgent::new(settings.agent.openai, PromptTemplate::load("/nonexistent")).unwrap(),
    );
    let app = spawn_app_with_agent(Arc::new(agent), |s| use_model(s, &model)).await;
    let t = app.login("alice").await;
    app.send(&t, None, "add x")
        .await
        .assert_error(503, "service.unavailable");
    assert_eq!(
        model.requests().len(),
        1,
        "the turn ends at the failed call; no tool result goes back to the model"
    );
    let threads = app.get("/api/chatkit/threads", &t).await.ok();
    let id = threads["threads"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        roles(&app.all_messages(&t, &id).await),
        [("user", "failed")]
    );

    model.push(add());
    let (status, events) = app.stream_message(&t, Some(&id), "add x", None).await;
    assert_eq!(status, 200);
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(data["code"], "service.unavailable");
}
