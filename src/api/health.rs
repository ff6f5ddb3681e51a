use poem_openapi::{payload::Json, ApiResponse, Object, OpenApi};

use super::ApiTags;
use crate::app::AppState;

pub struct HealthApi;

#[derive(Object)]
struct Health {
    status: String,
}

#[derive(ApiResponse)]
enum Readiness {
    /// The database answers.
    #[oai(status = 200)]
    Ready(Json<Health>),
    /// The database does not answer.
    #[oai(status = 503)]
    NotReady(Json<Health>),
}

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness: the process serves requests.
    #[oai(path = "/healthz", method = "get")]
    async fn healthz(&self) -> Json<Health> {
        Json(Health {
            status: "ok".into(),
        })
    }

    /// Readiness: the database answers a query.
    #[oai(path = "/readyz", method = "get")]
    async fn readyz(&self, state: poem::web::Data<&AppState>) -> Readiness {
        match state.store.ping().await {
            Ok(()) => Readiness::Ready(Json(Health {
                status: "ready".into(),
            })),
            Err(e) => {
                tracing::warn!(error = %e, "readiness check failed");
                Readiness::NotReady(Json(Health {
                    status: "database unavailable".into(),
                }))
            }
        }
    }
}
