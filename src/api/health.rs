use poem_openapi::{payload::Json, ApiResponse, Object, OpenApi};

use super::ApiTags;
use crate::api::{
    error::{described, route_errors},
    AppState,
};

pub struct HealthApi;

route_errors! {
    /// The probes never fail themselves; the edge still refuses an ambiguous request.
    HealthError {
        400 => described::MALFORMED_HEADERS,
    }
}

#[derive(Object)]
struct Health {
    status: String,
}

/// One MCP server's state.
#[derive(Object)]
struct McpServerState {
    name: String,
    /// `connecting`, `ready` or `down` (turns that need a down server fail with 502
    /// `agent.unavailable`; the gateway itself stays ready).
    state: String,
    /// Tools offered from it (the last known list while down).
    tools: usize,
    #[oai(skip_serializing_if_is_none)]
    error: Option<String>,
}

#[derive(Object)]
struct ReadyReport {
    /// `ready` or `database unavailable`.
    status: String,
    /// Why the database is not ready (absent when it is): unreachable, or refusing writes
    /// (read-only, full) since the last write that failed.
    #[oai(skip_serializing_if_is_none)]
    database_error: Option<String>,
    /// The upstream key set, when BETTER_AUTH_URL is configured: `not_fetched`, `ready`,
    /// `stale` (serving the last good keys while the key server fails) or `unavailable`
    /// (no keys: new sessions cannot start; existing client_secrets keep working).
    #[oai(skip_serializing_if_is_none)]
    jwks: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    jwks_keys: Option<usize>,
    #[oai(skip_serializing_if_is_none)]
    jwks_error: Option<String>,
    /// The app's MCP servers, when configured.
    #[oai(skip_serializing_if_is_none)]
    mcp_servers: Option<Vec<McpServerState>>,
}

#[derive(ApiResponse)]
enum Readiness {
    /// The database answers (and takes writes).
    #[oai(status = 200)]
    Ready(Json<ReadyReport>),
    /// The database does not answer.
    #[oai(status = 503)]
    NotReady(Json<ReadyReport>),
}

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness: the process serves requests.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> Result<Json<Health>, HealthError> {
        Ok(Json(Health {
            status: "ok".into(),
        }))
    }

    /// Readiness: the database answers a query. The upstream key state is reported but
    /// does not fail readiness: signed-in users keep working while Better Auth is down.
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self, state: poem::web::Data<&AppState>) -> Result<Readiness, HealthError> {
        use crate::auth::JwksState;
        let (jwks, jwks_keys, jwks_error) = match state.auth.upstream().jwks().map(|j| j.state()) {
            None => (None, None, None),
            Some(JwksState::NotFetched) => (Some("not_fetched"), None, None),
            Some(JwksState::Ready { keys }) => (Some("ready"), Some(keys), None),
            Some(JwksState::Stale { keys, error }) => (Some("stale"), Some(keys), Some(error)),
            Some(JwksState::Unavailable { error }) => (Some("unavailable"), None, Some(error)),
        };
        let report = |status: &str, database_error: Option<String>| ReadyReport {
            status: status.into(),
            database_error,
            jwks: jwks.map(str::to_owned),
            jwks_keys,
            jwks_error: jwks_error.clone(),
            mcp_servers: state.mcp.as_ref().map(|hub| {
                hub.report()
                    .into_iter()
                    .map(|r| McpServerState {
                        name: r.name,
                        state: r.state.into(),
                        tools: r.tools,
                        error: r.error,
                    })
                    .collect()
            }),
        };
        match state.store.ping().await {
            Ok(()) => Ok(Readiness::Ready(Json(report("ready", None)))),
            Err(e) => {
                tracing::warn!(error = %e, "readiness check failed");
                Ok(Readiness::NotReady(Json(report(
                    "database unavailable",
                    Some(e.to_string()),
                ))))
            }
        }
    }
}
