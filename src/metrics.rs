//! Prometheus metrics: the recorder, the names of the series, and the `/metrics` listener.
//!
//! Recording goes through the `metrics` facade, which is a no-op until a recorder is
//! installed, so an instance without `METRICS_ADDR` pays next to nothing for it.

use std::sync::OnceLock;

use crate::store::Store;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use poem::{get, handler, listener::TcpAcceptor, web::Data, EndpointExt, Route, Server};

pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_DURATION: &str = "http_request_duration_seconds";
pub const TURNS: &str = "chat_turns_total";
pub const AGENT_DURATION: &str = "agent_turn_duration_seconds";
pub const AGENT_FIRST_TOKEN: &str = "agent_first_token_seconds";
pub const TOOL_CALLS: &str = "agent_tool_calls_total";
pub const SECRETS_MINTED: &str = "client_secrets_minted_total";
pub const SECRETS_REFRESHED: &str = "client_secrets_refreshed_total";
pub const REUSE_DETECTED: &str = "refresh_reuse_detected_total";
pub const REVOCATIONS: &str = "session_revocations_total";
pub const JWKS_FETCHES: &str = "jwks_fetches_total";
pub const JWKS_FAILURES: &str = "jwks_fetch_failures_total";
pub const SSE_STREAMS: &str = "sse_streams_in_flight";
pub const DB_POOL: &str = "db_pool_connections";
pub const DB_POOL_ACQUIRE: &str = "db_pool_acquire_seconds";

/// Where sqlx reports, for every pool acquire, how long it waited (`aquired_after_secs`,
/// sqlx's spelling): the store builds its pools to report at TRACE.
pub const POOL_ACQUIRE_TARGET: &str = "sqlx::pool::acquire";

/// Turns sqlx's acquire reports into the `db_pool_acquire_seconds` histogram. sqlx measures
/// the wait inside its pool and publishes it only as a tracing event; the subscriber routes
/// those events here, whatever `RUST_LOG` lets through to the log (see `telemetry`).
pub struct PoolAcquireLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for PoolAcquireLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Waited(Option<f64>);
        impl tracing::field::Visit for Waited {
            fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
                if field.name() == "aquired_after_secs" {
                    self.0 = Some(value);
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut waited = Waited(None);
        event.record(&mut waited);
        if let Some(secs) = waited.0 {
            metrics::histogram!(DB_POOL_ACQUIRE).record(secs);
        }
    }
}

/// Seconds; from a cached read to a slow agent turn.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The process-wide recorder, installed on first use. The `metrics` facade has one global
/// recorder, so several apps in one process (the tests) share it.
///
/// # Errors
/// When another recorder was installed by something else in the process.
pub fn handle() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .and_then(|b| b.install_recorder())
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("could not install the metrics recorder: {e}"))
}

#[handler]
fn render(handle: Data<&PrometheusHandle>, store: Data<&Store>) -> String {
    // Read at scrape time: no task polling the pools in between.
    for (pool, open, idle) in store.pool_stats() {
        let in_use = open.saturating_sub(u32::try_from(idle).unwrap_or(u32::MAX));
        metrics::gauge!(DB_POOL, "pool" => pool, "state" => "in_use").set(f64::from(in_use));
        metrics::gauge!(DB_POOL, "pool" => pool, "state" => "idle")
            .set(f64::from(u32::try_from(idle).unwrap_or(u32::MAX)));
    }
    handle.render()
}

/// Serves `GET /metrics` on its own listener until the task is aborted.
pub fn spawn_listener(
    acceptor: TcpAcceptor,
    handle: PrometheusHandle,
    store: Store,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let app = Route::new()
        .at("/metrics", get(render))
        .data(handle)
        .data(store);
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app))
}

/// Counts an in-flight SSE stream for as long as it lives.
#[derive(Debug)]
pub struct StreamGuard(());

impl StreamGuard {
    #[must_use]
    pub fn new() -> Self {
        metrics::gauge!(SSE_STREAMS).increment(1.0);
        Self(())
    }
}

impl Default for StreamGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        metrics::gauge!(SSE_STREAMS).decrement(1.0);
    }
}
