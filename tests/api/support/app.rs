//! The service under test: a database of the test's own ([`TestDb`]), the service in this
//! process on a free port ([`spawn_app`] and its variants, giving a [`TestApp`] with a
//! small REST client), or the real binary as a child process ([`GatewayProcess`]); and
//! [`serve_on_loopback`], which the fakes of outside services run on.

use std::{sync::Arc, time::Duration};

use chatkit_gateway::{
    agent::Agent,
    auth::{AuthService, SessionClaims, SessionSigner, SESSION_TYP},
    Application, Settings,
};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use tokio::{sync::oneshot, task::JoinHandle};

/// A database of the test's own: `url` for the service, plus what removes it afterwards.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new() -> Self {
        match std::env::var("TEST_DATABASE_URL") {
            Ok(base) if base.starts_with("postgres") => {
                let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
                let admin = sea_orm::Database::connect(&base)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                use sea_orm::ConnectionTrait;
                admin
                    .execute_unprepared(&format!("CREATE SCHEMA {schema}"))
                    .await
                    .expect("create schema");
                admin.close().await.ok();
                let sep = if base.contains('?') { '&' } else { '?' };
                Self {
                    url: format!("{base}{sep}options=-c%20search_path%3D{schema}"),
                    _dir: None,
                }
            }
            _ => Self::sqlite(),
        }
    }

    /// A fresh SQLite file, whatever TEST_DATABASE_URL says.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/gateway.db", dir.path().display());
        Self {
            url,
            _dir: Some(dir),
        }
    }
}

/// Serves `endpoint` on 127.0.0.1 (a free port) for the rest of the test; returns its base URL.
/// The fakes of outside services (a key server, a model API) run on this.
pub async fn serve_on_loopback<E>(endpoint: E) -> String
where
    E: poem::IntoEndpoint,
    E::Endpoint: 'static,
{
    use poem::{
        listener::{Acceptor, Listener, TcpListener},
        EndpointExt, Server,
    };
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
    let endpoint = endpoint.into_endpoint().map_to_response();
    tokio::spawn(Server::new_with_acceptor(acceptor).run(endpoint));
    format!("http://127.0.0.1:{port}")
}

/// Parses a whole SSE body of `POST /messages` into (event, data) pairs; comments are
/// kept as ("comment", text).
pub fn parse_sse(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|frame| {
            let mut event = String::new();
            let mut data = Value::Null;
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap();
                } else if let Some(c) = line.strip_prefix(':') {
                    event = "comment".into();
                    data = json!(c.trim());
                }
            }
            (event, data)
        })
        .collect()
}

/// `(role, status)` of each message, to compare a thread's shape at a glance.
pub fn roles(messages: &[Value]) -> Vec<(&str, &str)> {
    messages
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["status"].as_str().unwrap()))
        .collect()
}

/// The settings every test starts from: a free port, a short shutdown grace, and `db`.
pub fn test_settings(db: &TestDb) -> Settings {
    let mut s = Settings::defaults();
    s.server.port = 0;
    s.server.shutdown_grace_secs = 2;
    s.database.url = SecretString::from(db.url.clone());
    s.database.max_connections = 4;
    // The 2 s production default answers 503 when no PostgreSQL connection frees up in
    // time, the right call in an outage. On a CI machine that is itself starved for CPU, a
    // burst of 40 turns on four connections once waited past it (a 503 in
    // races::deleting_a_thread_while_messages_pour_in_never_fails_with_500, the suite running
    // at half speed). Tests that check the outage answer set their own (pg_outage.rs).
    s.database.acquire_timeout_ms = 10_000;
    s
}

/// A running service. It owns its database (shared with any other instance started on it),
/// so the database outlives every server using it; dropping the app stops it.
pub struct TestApp {
    pub base: String,
    /// `http://127.0.0.1:<port>` of the `/metrics` listener, when the settings ask for one.
    pub metrics_base: Option<String>,
    pub client: reqwest::Client,
    pub settings: Settings,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
    // Fields drop after `Drop::drop` has told the server to stop, so the last holder of
    // the database lets it go only once no server of this app is left on it.
    db: Option<Arc<TestDb>>,
}

/// The service with the default settings and the local agent, on a database of its own.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The service with the default settings changed by `edit`, on a database of its own.
pub async fn spawn_app_with(edit: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_on_new_db(None, edit).await
}

/// Like [`spawn_app_with`], answering with `agent` instead of the configured provider.
pub async fn spawn_app_with_agent(
    agent: Arc<dyn Agent>,
    edit: impl FnOnce(&mut Settings),
) -> TestApp {
    spawn_on_new_db(Some(agent), edit).await
}

/// The service on a database the test has already prepared (e.g. an old schema).
pub async fn spawn_on(db: TestDb) -> TestApp {
    spawn_on_with(db, |_| {}).await
}

/// Like [`spawn_on`], with the default settings changed by `edit`.
pub async fn spawn_on_with(db: TestDb, edit: impl FnOnce(&mut Settings)) -> TestApp {
    let db = Arc::new(db);
    let mut settings = test_settings(&db);
    edit(&mut settings);
    start(settings, None, Some(db)).await
}

/// The service on settings built by hand, whose database the caller looks after.
pub async fn spawn_with(settings: Settings, agent: Option<Arc<dyn Agent>>) -> TestApp {
    start(settings, agent, None).await
}

async fn spawn_on_new_db(
    agent: Option<Arc<dyn Agent>>,
    edit: impl FnOnce(&mut Settings),
) -> TestApp {
    let db = Arc::new(TestDb::new().await);
    let mut settings = test_settings(&db);
    edit(&mut settings);
    start(settings, agent, Some(db)).await
}

async fn start(
    settings: Settings,
    agent: Option<Arc<dyn Agent>>,
    db: Option<Arc<TestDb>>,
) -> TestApp {
    let app = Application::build_with_agent(settings.clone(), agent)
        .await
        .expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let metrics_base = app
        .metrics_port()
        .map(|port| format!("http://127.0.0.1:{port}"));
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        base,
        metrics_base,
        client: reqwest::Client::new(),
        settings,
        shutdown: Some(tx),
        handle: Some(handle),
        db,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Drop cannot wait for a graceful stop; the runtime ending with the test reaps
        // whatever is left. Tests that need the graceful path call `stop()`.
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

/// An HTTP response with its status and parsed JSON body (Null when empty or not JSON).
#[derive(Debug)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl ApiResponse {
    /// The stable error code of an error response.
    pub fn code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }

    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.code(), code, "body: {}", self.body);
        assert!(self.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }

    #[track_caller]
    pub fn ok(self) -> Value {
        assert!(
            self.status.is_success(),
            "status {} body {}",
            self.status,
            self.body
        );
        self.body
    }
}

impl TestApp {
    /// Stops the server gracefully, waiting for in-flight requests (up to the grace period).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
    }

    /// Stops this server and starts a new one on the same settings and database.
    pub async fn restart(self) -> TestApp {
        let (settings, db) = (self.settings.clone(), self.db.clone());
        self.stop().await;
        start(settings, None, db).await
    }

    /// A second server on the same database and settings, as in a deployment of two.
    pub async fn another_instance(&self) -> TestApp {
        start(self.settings.clone(), None, self.db.clone()).await
    }

    pub fn upstream_token(&self, user: &str) -> String {
        AuthService::dev_upstream_token(
            self.settings.upstream.hs256_secret.expose_secret(),
            user,
            600,
        )
    }

    pub fn signer(&self) -> SessionSigner {
        SessionSigner::new(&self.settings.session)
    }

    /// A client_secret signed with the service's key and arbitrary claims.
    pub fn forge_session(&self, user: &str, edit: impl FnOnce(&mut SessionClaims)) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut claims = SessionClaims {
            iss: self.settings.session.issuer.clone(),
            aud: self.settings.session.audience.clone(),
            sub: user.into(),
            user_id: user.into(),
            typ: SESSION_TYP.into(),
            iat: now,
            nbf: now,
            exp: now + 600,
            jti: format!("jti_{}", uuid::Uuid::now_v7().simple()),
            sid: format!("sid_{}", uuid::Uuid::now_v7().simple()),
            auth_time: now,
        };
        edit(&mut claims);
        self.signer().sign(&claims)
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> ApiResponse {
        request_at(&self.client, &self.base, method, path, token, body, headers).await
    }

    /// `GET /threads/{id}`, which must succeed.
    pub async fn thread(&self, token: &str, id: &str) -> Value {
        self.get(&format!("/api/chatkit/threads/{id}"), token)
            .await
            .ok()
    }

    /// The `/readyz` report.
    pub async fn ready(&self) -> Value {
        self.request(Method::GET, "/readyz", None, None, &[])
            .await
            .body
    }

    pub async fn get(&self, path: &str, token: &str) -> ApiResponse {
        self.request(Method::GET, path, Some(token), None, &[])
            .await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> ApiResponse {
        self.request(Method::POST, path, Some(token), Some(body), &[])
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> ApiResponse {
        self.request(Method::PATCH, path, Some(token), Some(body), &[])
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> ApiResponse {
        self.request(Method::DELETE, path, Some(token), None, &[])
            .await
    }

    /// `POST /session` for `user`: the full response.
    pub async fn start_session(&self, user: &str) -> Value {
        let upstream = self.upstream_token(user);
        self.request(
            Method::POST,
            "/api/chatkit/session",
            Some(&upstream),
            None,
            &[],
        )
        .await
        .ok()
    }

    /// A client_secret for `user`.
    pub async fn login(&self, user: &str) -> String {
        self.start_session(user).await["client_secret"]
            .as_str()
            .expect("client_secret")
            .to_owned()
    }

    pub async fn refresh(&self, token: &str) -> ApiResponse {
        self.request(
            Method::POST,
            "/api/chatkit/refresh",
            None,
            Some(json!({"token": token})),
            &[],
        )
        .await
    }

    pub async fn create_thread(&self, token: &str, title: &str) -> Value {
        let reply = self
            .post("/api/chatkit/threads", token, json!({"title": title}))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body
    }

    pub async fn send(&self, token: &str, thread_id: Option<&str>, message: &str) -> ApiResponse {
        self.post(
            "/api/chatkit/messages",
            token,
            json!({"thread_id": thread_id, "message": message}),
        )
        .await
    }

    /// `POST /messages` to an existing thread, which must succeed: the answer.
    pub async fn say(&self, token: &str, thread_id: &str, message: &str) -> Value {
        self.send(token, Some(thread_id), message).await.ok()
    }

    /// `POST /messages` under an `Idempotency-Key`.
    pub async fn send_keyed(
        &self,
        token: &str,
        thread_id: Option<&str>,
        message: &str,
        key: &str,
    ) -> ApiResponse {
        self.request(
            Method::POST,
            "/api/chatkit/messages",
            Some(token),
            Some(json!({"thread_id": thread_id, "message": message})),
            &[("idempotency-key", key)],
        )
        .await
    }

    /// `POST /messages` asking for server-sent events: the status and the parsed events
    /// (see [`parse_sse`]). A 200 must carry the headers that keep proxies from buffering.
    pub async fn stream_message(
        &self,
        token: &str,
        thread_id: Option<&str>,
        message: &str,
        key: Option<&str>,
    ) -> (u16, Vec<(String, Value)>) {
        let mut req = self
            .client
            .post(format!("{}/api/chatkit/messages", self.base))
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .json(&json!({"thread_id": thread_id, "message": message}));
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        if status == 200 {
            assert_eq!(resp.headers()["content-type"], "text/event-stream");
            assert_eq!(resp.headers()["cache-control"], "no-cache");
            assert_eq!(resp.headers()["x-accel-buffering"], "no");
        }
        (status, parse_sse(&resp.text().await.unwrap_or_default()))
    }

    /// Follows `after` cursors from `path` (which already has a query string) to the last
    /// page; returns every element of `key` and the number of pages read.
    pub async fn walk(&self, path: &str, token: &str, key: &str) -> (Vec<Value>, usize) {
        let (mut out, mut pages) = (Vec::new(), 0);
        let mut after: Option<String> = None;
        loop {
            let url = match &after {
                Some(a) => format!("{path}&after={a}"),
                None => path.to_owned(),
            };
            let page = self.get(&url, token).await.ok();
            pages += 1;
            out.extend(page[key].as_array().expect("page array").iter().cloned());
            if page["has_more"] == false {
                assert!(page["after"].is_null(), "last page has no cursor");
                return (out, pages);
            }
            after = Some(page["after"].as_str().expect("cursor").to_owned());
        }
    }

    /// Every message of a thread, oldest first.
    pub async fn all_messages(&self, token: &str, thread_id: &str) -> Vec<Value> {
        let path = format!("/api/chatkit/threads/{thread_id}/messages?order=asc&limit=100");
        self.walk(&path, token, "data").await.0
    }
}

/// `method path` on the service at `base`, with `token` as the bearer and `body` as JSON.
pub async fn request_at(
    client: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> ApiResponse {
    let mut req = client.request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    ApiResponse {
        status,
        body,
        headers,
    }
}

/// A free loopback port (bound and released; the caller binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real binary as a child process (its own subscriber, its own runtime), serving on a
/// free loopback port; killed (SIGKILL) and reaped when dropped.
pub struct GatewayProcess {
    child: std::process::Child,
    pub base: String,
}

impl GatewayProcess {
    /// `chatkit-gateway serve` in development on `db_url`, with `env` added; returns once
    /// `/readyz` answers 200.
    pub async fn start(db_url: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_chatkit-gateway"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("APP_CONFIG_DIR", "/nonexistent")
            .env("APP_ENV", "development")
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATABASE_URL", db_url)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .arg("serve")
            .spawn()
            .expect("gateway starts");
        // Owned at once, so every path (a panic too) kills and reaps it.
        let gateway = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/readyz", gateway.base)).send().await {
                if r.status() == 200 {
                    return gateway;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the gateway did not become ready");
    }
}

impl GatewayProcess {
    /// `method path` with `token` as the bearer and `body` as JSON.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> ApiResponse {
        request_at(
            &reqwest::Client::new(),
            &self.base,
            method,
            path,
            token,
            body,
            &[],
        )
        .await
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
