//! `/healthz` (the process answers), `/readyz` (the database is reachable and
//! migrated, and the master key opens the stored secrets) and `/metrics` (Prometheus text format).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` with a reason.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        reason: None,
        version: env!("CARGO_PKG_VERSION").into(),
        database: None,
    })
}

/// Readiness: the database answers, every migration is applied, and the
/// master key opens the stored secrets.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, description = "Not ready", body = Health)))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let database = Some(state.db.backend().name().to_string());
    let version = env!("CARGO_PKG_VERSION").to_string();
    let ready = match integro_store::migrations::readiness(&state.db).await {
        Ok(()) => master_key_opens_secrets(&state).await,
        Err(e) => Err(e.to_string()),
    };
    match ready {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: "ok".into(),
                reason: None,
                version,
                database,
            }),
        ),
        Err(reason) => {
            tracing::warn!(%reason, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "unavailable".into(),
                    reason: Some(reason),
                    version,
                    database,
                }),
            )
        }
    }
}

/// Every stored secret was sealed with a key this process holds (the key
/// files are read again first, after a rotation); otherwise credentials
/// cannot be used and the process is not ready.
async fn master_key_opens_secrets(state: &AppState) -> Result<(), String> {
    let unknown = integro_store::secrets::SecretStore::unknown_keys(&state.db, &state.keyring)
        .await
        .map_err(|e| e.to_string())?;
    if unknown.is_empty() {
        return Ok(());
    }
    Err(format!(
        "stored secrets were sealed with master key(s) {} that this process does not hold \
         (its current key is {}): give it the key that sealed them \
         (INTEGRO_MASTER_KEY, or the old one in INTEGRO_PREVIOUS_MASTER_KEYS) and restart",
        unknown.join(", "),
        state.keyring.current().id()
    ))
}

/// Prometheus metrics: `http_requests_total` and `http_request_duration_seconds`
/// by method, route and status.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
