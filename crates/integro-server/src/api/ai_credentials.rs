//! `/api/v1/ai-credentials`: a tenant's API keys for LLM providers. Keys are
//! sealed at rest and never returned; `/test` checks one against its provider.
//! Base URLs are checked against the outbound URL policy when saved (and
//! again on every call).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use integro_core::Permission;
use integro_store::Page;
use integro_store::ai_credentials::{self, AiCredential, CredentialFields};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ListParams, TenantCtx};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_credential, list_credentials))
        .routes(routes!(
            get_credential,
            update_credential,
            delete_credential
        ))
        .routes(routes!(test_credential))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCredential {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// `openai`, `anthropic` or `openai_compatible`.
    #[schema(pattern = "^(openai|anthropic|openai_compatible)$")]
    pub provider: String,
    /// Optional for `openai_compatible` servers that need no key.
    #[schema(min_length = 1, max_length = 4096)]
    pub api_key: Option<String>,
    /// Defaults to the provider's public API; required for `openai_compatible`
    /// (e.g. `https://llm.example.com/v1`). Loopback, private, link-local and
    /// metadata addresses are refused unless the operator allows them with
    /// `INTEGRO_OUTBOUND_ALLOW` (e.g. `127.0.0.1:11434` for a local Ollama).
    #[schema(pattern = "^https?://")]
    pub base_url: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCredential {
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// A new key replaces the stored one.
    #[schema(min_length = 1, max_length = 4096)]
    pub api_key: Option<String>,
    #[schema(pattern = "^https?://")]
    pub base_url: Option<String>,
}

/// A new base URL must pass the outbound URL policy (the one the AI client
/// enforces on every call).
async fn check_base_url(state: &AppState, base_url: Option<&str>) -> ApiResult<()> {
    let Some(url) = base_url else {
        return Ok(());
    };
    let policy = state.engine.ai().outbound().policy();
    match policy.check_url_resolving(url).await {
        Ok(_) => Ok(()),
        Err(e) => Err(ApiError::invalid_field("base_url", e.to_string())),
    }
}

pub(crate) async fn find(state: &AppState, ctx: &TenantCtx, id: Uuid) -> ApiResult<AiCredential> {
    ai_credentials::get(&state.db, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("AI credential"))
}

/// Store a provider API key (sealed; never shown again).
#[utoipa::path(post, path = "/api/v1/ai-credentials", tag = "ai", security(("bearer" = [])),
    request_body = CreateCredential,
    responses((status = 201, body = AiCredential), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create_credential(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(req): ApiJson<CreateCredential>,
) -> ApiResult<(StatusCode, Json<AiCredential>)> {
    ctx.require(Permission::Manage)?;
    check_base_url(&state, req.base_url.as_deref()).await?;
    let mut tx = state.db.begin().await?;
    let created = ai_credentials::create(
        &mut tx,
        &state.keyring,
        ctx.actor(),
        ctx.request_id(),
        ctx.tenant_id,
        CredentialFields {
            name: req.name,
            provider: req.provider,
            base_url: req.base_url,
            api_key: req.api_key,
        },
    )
    .await?;
    tx.commit().await?;
    state.engine.forget_settings();
    Ok((StatusCode::CREATED, Json(created)))
}

/// The tenant's AI credentials (keys are never shown).
#[utoipa::path(get, path = "/api/v1/ai-credentials", tag = "ai", security(("bearer" = [])),
    params(ListParams), responses((status = 200, body = Page<AiCredential>)))]
pub(crate) async fn list_credentials(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(p): Query<ListParams>,
) -> ApiResult<Json<Page<AiCredential>>> {
    ctx.require(Permission::Read)?;
    Ok(Json(
        ai_credentials::list(&state.db, ctx.tenant_id, &p.page()?).await?,
    ))
}

/// One AI credential.
#[utoipa::path(get, path = "/api/v1/ai-credentials/{id}", tag = "ai", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Credential id")),
    responses((status = 200, body = AiCredential), (status = 404, body = Problem)))]
async fn get_credential(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<AiCredential>> {
    ctx.require(Permission::Read)?;
    Ok(Json(find(&state, &ctx, id).await?))
}

/// Rename, re-point or re-key a credential.
#[utoipa::path(patch, path = "/api/v1/ai-credentials/{id}", tag = "ai", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Credential id")), request_body = UpdateCredential,
    responses((status = 200, body = AiCredential), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_credential(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    ApiJson(req): ApiJson<UpdateCredential>,
) -> ApiResult<Json<AiCredential>> {
    ctx.require(Permission::Manage)?;
    let before = find(&state, &ctx, id).await?;
    check_base_url(&state, req.base_url.as_deref()).await?;
    let mut tx = state.db.begin().await?;
    let after = ai_credentials::update(
        &mut tx,
        &state.keyring,
        ctx.actor(),
        ctx.request_id(),
        &before,
        CredentialFields {
            name: req.name.unwrap_or_else(|| before.name.clone()),
            provider: before.provider.clone(),
            base_url: req.base_url.or_else(|| before.base_url.clone()),
            api_key: req.api_key,
        },
    )
    .await?;
    tx.commit().await?;
    state.engine.forget_settings();
    Ok(Json(after))
}

/// Delete a credential and its sealed key. Refused while a profile uses it.
#[utoipa::path(delete, path = "/api/v1/ai-credentials/{id}", tag = "ai", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Credential id")),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn delete_credential(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    ctx.require(Permission::Manage)?;
    let credential = find(&state, &ctx, id).await?;
    let mut tx = state.db.begin().await?;
    ai_credentials::delete(&mut tx, ctx.actor(), ctx.request_id(), &credential).await?;
    tx.commit().await?;
    state.engine.forget_settings();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestCredential {
    /// Also check that this model answers (a one-token request).
    pub model: Option<String>,
}

/// What a test found. Never what the target answered: a base URL may point
/// at any host, and its body is not the tenant's to read.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestResult {
    pub ok: bool,
    /// The HTTP status the target answered, if it answered.
    pub status: Option<u16>,
    /// `ok`, `unauthorized`, `http_error` (another error status), `timeout`,
    /// `unreachable`, `blocked_by_policy` (the outbound URL policy refused the
    /// URL or what it resolves to), `invalid_response` (not this provider's
    /// API), `not_sent` (e.g. no key).
    pub reason: String,
    /// In plain words (ours, not the target's).
    pub message: String,
    /// When not ok, a finer class: `auth`, `quota`, `unknown_model`,
    /// `rate_limited`, `timeout`, `transport`, `blocked_by_policy`, …
    pub code: Option<String>,
}

/// Check a credential against its provider with a minimal request, and say
/// in plain words how that went (bad key, no quota, unknown model,
/// unreachable, refused by the outbound URL policy).
#[utoipa::path(post, path = "/api/v1/ai-credentials/{id}/test", tag = "ai", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Credential id")), request_body = TestCredential,
    responses((status = 200, body = TestResult), (status = 404, body = Problem)))]
pub(crate) async fn test_credential(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    body: axum::body::Bytes,
) -> ApiResult<Json<TestResult>> {
    ctx.require(Permission::Manage)?;
    let credential = find(&state, &ctx, id).await?;
    // The body is optional: no body tests the key alone.
    let req: TestCredential = if body.iter().all(u8::is_ascii_whitespace) {
        TestCredential::default()
    } else {
        crate::extract::parse_json(&body)?
    };
    let endpoint = integro_worker::engine::endpoint(&state.db, &state.keyring, &credential)
        .await
        .map_err(|e| {
            tracing::error!(error = %format!("{e:#}"), "opening an AI credential failed");
            ApiError::internal()
        })?;
    let report = state
        .engine
        .ai()
        .check(&endpoint, req.model.as_deref(), Duration::from_secs(20))
        .await;
    Ok(Json(TestResult {
        ok: report.ok,
        status: report.status,
        reason: report.reason.to_string(),
        message: report.message,
        code: report.code.map(str::to_string),
    }))
}
