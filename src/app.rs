//! `Application::build(settings)` wires the services and binds the listener (port 0 is
//! fine); `run_until_stopped` serves until SIGINT/SIGTERM and drains in-flight requests.

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context;
use poem::{
    listener::{Acceptor, Listener, TcpAcceptor, TcpListener},
    Endpoint, EndpointExt, IntoEndpoint, Route,
};
use secrecy::ExposeSecret;

use crate::{
    agent::Agent,
    api::{self, error::envelope_errors, AppState},
    auth::{AuthService, Hs256Verifier, JwksVerifier, UpstreamVerifiers},
    chat::ChatService,
    chatkit::ChatKitService,
    config::{self, Settings},
    http,
    store::Store,
};

pub struct Application {
    acceptor: TcpAcceptor,
    port: u16,
    /// The `/metrics` listener and its port, when `server.metrics_addr` is set.
    metrics: Option<(TcpAcceptor, u16)>,
    state: AppState,
}

/// Connects to the database and applies migrations when configured to.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let db = &settings.database;
    let store = match Store::open(db).await {
        Ok(store) => store,
        Err(e) => {
            let mut err = anyhow::Error::new(e);
            if let Some(why) = unreachable_server(db.url.expose_secret()).await {
                err = err.context(why);
            }
            return Err(err.context("could not connect to the database (DATABASE_URL)"));
        }
    };
    if db.run_migrations {
        store
            .migrate()
            .await
            .context("could not apply migrations")?;
    }
    Ok(store)
}

/// Why a PostgreSQL server cannot be reached, if a plain TCP connection says so. The pool
/// retries until its acquire timeout and then reports only "pool timed out", hiding the
/// "connection refused" or unknown host an operator needs to see.
async fn unreachable_server(url: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return None;
    }
    let host = url.host_str()?.trim_matches(['[', ']']).to_owned();
    let port = url.port().unwrap_or(5432);
    let probe = tokio::net::TcpStream::connect((host.as_str(), port));
    match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(format!(
            "{host}:{port}: connection refused (is PostgreSQL running?)"
        )),
        Ok(Err(e)) => Some(format!("{host}:{port}: {e}")),
        Err(_) => Some(format!("{host}:{port}: no answer within 2 s")),
    }
}

fn upstream_verifiers(settings: &Settings) -> UpstreamVerifiers {
    let mut upstream = UpstreamVerifiers::default().with_verified_cache(
        Duration::from_secs(settings.upstream.verified_cache_secs),
        settings.upstream.leeway_secs,
    );
    if !settings.upstream.hs256_secret.expose_secret().is_empty() {
        upstream = upstream.with_hs256(Arc::new(Hs256Verifier::new(
            &settings.upstream,
            &settings.session.audience,
        )));
    }
    if let Some(url) = settings.upstream.jwks_url() {
        let jwks = Arc::new(JwksVerifier::new(
            url,
            &settings.upstream,
            &settings.session.audience,
        ));
        // Warm the key cache without delaying start-up.
        let warm = jwks.clone();
        tokio::spawn(async move { warm.prefetch().await });
        upstream = upstream.with_jwks(jwks);
    }
    upstream
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_agent(settings, None).await
    }

    /// As `build`, with an agent chosen by the caller instead of by configuration.
    pub async fn build_with_agent(
        settings: Settings,
        agent: Option<Arc<dyn Agent>>,
    ) -> anyhow::Result<Self> {
        let store = open_store(&settings).await?;
        let agent = match agent {
            Some(agent) => agent,
            None => crate::agent::from_settings(&settings.agent)?,
        };
        let limits = crate::limits::RateLimits::new(&settings.rate_limits, &settings.session)?;
        let acceptor = TcpListener::bind(settings.bind_address())
            .into_acceptor()
            .await
            .with_context(|| format!("could not listen on {}", settings.bind_address()))?;
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().map(|s| s.port()))
            .context("listener has no address")?;
        let metrics = match &settings.server.metrics_addr {
            Some(addr) => {
                let acceptor = TcpListener::bind(addr.as_str())
                    .into_acceptor()
                    .await
                    .with_context(|| format!("could not listen for metrics on {addr}"))?;
                let port = acceptor
                    .local_addr()
                    .first()
                    .and_then(|a| a.as_socket_addr().map(|s| s.port()))
                    .context("metrics listener has no address")?;
                Some((acceptor, port))
            }
            None => None,
        };
        log_start(&settings, port);
        // MCP servers connect in the background: one that is down does not delay start-up.
        let mcp =
            crate::agent::McpHub::start(&settings.agent.mcp_servers, &settings.session.issuer);
        let agent = crate::agent::with_tool_servers(
            agent,
            mcp.clone(),
            settings.agent.builtin_tools_enabled(),
        );
        let auth = AuthService::new(
            upstream_verifiers(&settings),
            &settings.session,
            store.clone(),
        );
        let actions = crate::task_actions::TaskActions::new(store.clone(), agent.clone());
        let client_tools = settings
            .chatkit
            .client_tools
            .iter()
            .map(|t| crate::agent::ClientTool {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters: t.parameters.clone(),
            })
            .collect();
        let attachments = crate::attachments::Attachments::new(
            store.clone(),
            &settings.attachments,
            &settings.session,
            &settings.server.api_prefix,
        )
        .context("could not set up attachment storage")?;
        let chat = ChatService::new(store.clone(), agent, settings.messages.clone())
            .with_client_tools(client_tools)
            .with_attachments(attachments.clone());
        let chatkit = ChatKitService::new(
            store.clone(),
            chat.clone(),
            actions,
            attachments.clone(),
            settings.messages.max_chars,
            settings.agent.openai.allowed_models(),
            settings.agent.openai.max_audio_bytes,
        );
        let state = AppState::new(api::Services {
            attachments,
            settings: Arc::new(settings),
            store,
            auth,
            chat,
            chatkit,
            mcp,
            limits,
        });
        Ok(Self {
            acceptor,
            port,
            metrics,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the `/metrics` listener, when there is one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(_, port)| *port)
    }

    /// Serves until SIGINT or SIGTERM.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()> {
        let grace = Duration::from_secs(self.state.settings.server.shutdown_grace_secs);
        let purge = spawn_purger(self.state.auth.clone());
        let collector = self.state.attachments.spawn_collector();
        let metrics = match self.metrics {
            Some((acceptor, port)) => {
                let handle = crate::metrics::handle().map_err(std::io::Error::other)?;
                tracing::info!(port, "metrics listening");
                Some(crate::metrics::spawn_listener(
                    acceptor,
                    handle,
                    self.state.store.clone(),
                ))
            }
            None => None,
        };
        // Without the listener this instance still converges within the cache TTL, so a
        // failure to start it is not fatal.
        let listener = match self.state.auth.spawn_revocation_listener().await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "revocations from other instances will wait for the cache TTL");
                None
            }
        };
        let app = routes(self.state.clone());
        let server = &self.state.settings.server;
        let acceptor = http::connections::LimitedAcceptor::new(
            http::connections::NoDelay(self.acceptor),
            usize::try_from(server.max_connections).unwrap_or(usize::MAX),
            Duration::from_secs(server.header_read_timeout_secs),
        );
        let options = http::server::ServeOptions {
            idle_timeout: Duration::from_secs(server.idle_timeout_secs),
            grace,
        };
        let result = http::server::serve(acceptor, app, shutdown, options).await;
        purge.abort();
        collector.abort();
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        if let Some(listener) = listener {
            listener.abort();
        }
        self.state.store.clone().close().await;
        result
    }
}

/// The first line an operator reads: where to point a browser, what it runs on, and a
/// warning while anyone holding the published development secrets can mint tokens.
fn log_start(settings: &Settings, port: u16) {
    let url = settings.local_url(port);
    let docs = format!("{url}/docs");
    let bind = settings.server.host.as_str();
    let database = settings.database.redacted_url();
    let agent = settings.agent.provider.as_str();
    let limits = &settings.rate_limits;
    let rate_limits = match (limits.enabled, limits.redis_url.expose_secret().is_empty()) {
        (false, _) => "off",
        (true, true) => "per instance",
        (true, false) => "shared through Redis",
    };
    let env = match settings.env {
        config::AppEnv::Development => "development",
        config::AppEnv::Production => "production",
    };
    if settings.uses_development_secrets() {
        tracing::warn!(
            %url, %docs, %bind, port, %database, agent, env, rate_limits,
            warning = "development secrets in use: anyone can mint tokens for this instance; \
                       set CHATKIT_SESSION_SECRET and BETTER_AUTH_SECRET (or BETTER_AUTH_URL) \
                       before exposing it",
            "chatkit-gateway listening"
        );
    } else {
        tracing::info!(
            %url, %docs, %bind, port, %database, agent, env, rate_limits,
            "chatkit-gateway listening"
        );
    }
}

/// The whole HTTP application: API, docs, middleware and the error envelope.
pub fn routes(state: AppState) -> impl Endpoint {
    let server = &state.settings.server;
    let paths = api::Paths::new(&server.api_prefix, &state.settings.chatkit.path);
    let api = api::endpoint(&paths);
    let spec = api::spec_json_for(&paths);
    let allow = Arc::new(http::allow::AllowedMethods::new(
        &spec,
        &[
            (config::SPEC_PATH, &["GET"][..]),
            (config::DOCS_PATH, &["GET"][..]),
        ],
    ));
    let ui = api::swagger_ui(&paths);
    let spec = api::spec_endpoint(spec);
    let cors = Arc::new(http::cors::CorsPolicy::new(&server.cors_allowed_origins));
    let body_limit = server.body_limit_bytes;
    let body_timeout = Duration::from_secs(server.body_read_timeout_secs);
    let prefix = server.api_prefix.clone();
    // The ChatKit endpoint holds bodies to body_limit_bytes itself, except dictation's.
    let chatkit_path = state.settings.chatkit.path.clone();
    let attachments =
        api::attachments::AttachmentsState::new(state.attachments.clone(), state.auth.clone());
    let route = Route::new()
        .at(config::SPEC_PATH, spec)
        .nest(config::DOCS_PATH, ui)
        .nest(
            format!("{}/attachments", prefix.trim_end_matches('/')),
            api::attachments::routes(),
        )
        .nest("/", api)
        // Boxed: the middleware types nest deep enough to overflow the compiler's limit.
        .boxed();
    route
        .around(move |ep, req| {
            // Attachment uploads stream to storage, bounded by attachments.max_bytes;
            // POST /chatkit reads its body within the limit of its request type.
            let streams = api::attachments::streams_body(&prefix, req.uri().path())
                || req.uri().path() == chatkit_path;
            async move {
                if streams {
                    ep.call(req).await.map(poem::IntoResponse::into_response)
                } else {
                    http::middleware::limit_body(ep, req, body_limit).await
                }
            }
        })
        // Outside limit_body, which reads chunked bodies itself.
        .around(move |ep, req| http::connections::body_deadline(ep, req, body_timeout))
        .around(http::middleware::single_authorization)
        .data(state)
        .data(attachments)
        .with(poem::middleware::CatchPanic::new())
        .catch_all_error(envelope_errors)
        .boxed()
        // Outside the error envelope, so error answers carry the CORS headers too.
        .around(move |ep, req| http::cors::cors(ep, req, cors.clone()))
        .around(move |ep, req| http::allow::add_allow(ep, req, allow.clone()))
        .around(http::request_id::request_id)
        .into_endpoint()
}

/// Consumed refresh tokens and old revocations stop mattering; clear them out now and then.
fn spawn_purger(auth: AuthService) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tick.tick().await;
            auth.purge_expired().await;
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
