//! `/api/v1/settings`: the tenant's engine settings — the monthly token
//! budget and the alert webhook (its URL and secret are sealed, never shown).

use axum::Json;
use axum::extract::State;
use integro_core::Permission;
use integro_store::tenants::{self, AlertWebhook, SettingsChanges, TenantSettings};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, TenantCtx};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_settings, update_settings))
}

/// Fields left out stay as they are; `null` clears.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSettings {
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<u64>)]
    pub monthly_token_budget: Option<Option<u64>>,
    /// USD a month of X's estimated spend (`GET /api/v1/x/spend`); past it
    /// only replies go out to X. `null`: no limit.
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<f64>)]
    pub x_monthly_spend_limit_usd: Option<Option<f64>>,
    /// AI drafts of X posts asked for by an admin or owner are approved at
    /// once (`false` by default: they wait for approval).
    pub x_ai_drafts_skip_approval: Option<bool>,
    /// A Slack-compatible incoming webhook for critical alerts. Loopback,
    /// private, link-local and metadata addresses are refused unless the
    /// operator allows them with `INTEGRO_OUTBOUND_ALLOW`.
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<String>)]
    pub alert_webhook_url: Option<Option<String>>,
    /// Signs alerts: `x-integro-signature: v1=<hex HMAC-SHA256 of "{x-integro-timestamp}.{body}">`.
    pub alert_webhook_secret: Option<String>,
}

/// The tenant's settings.
#[utoipa::path(get, path = "/api/v1/settings", tag = "settings", security(("bearer" = [])),
    responses((status = 200, body = TenantSettings)))]
async fn get_settings(
    State(state): State<AppState>,
    ctx: TenantCtx,
) -> ApiResult<Json<TenantSettings>> {
    ctx.require(Permission::Read)?;
    Ok(Json(tenants::settings(&state.db, ctx.tenant_id).await?))
}

/// Change the tenant's settings.
#[utoipa::path(patch, path = "/api/v1/settings", tag = "settings", security(("bearer" = [])),
    request_body = UpdateSettings,
    responses((status = 200, body = TenantSettings), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn update_settings(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(req): ApiJson<UpdateSettings>,
) -> ApiResult<Json<TenantSettings>> {
    ctx.require(Permission::Manage)?;
    if let Some(Some(url)) = &req.alert_webhook_url {
        // The policy the alert job's client enforces on every call.
        let policy = state.engine.ai().outbound().policy();
        if let Err(e) = policy.check_url_resolving(url).await {
            return Err(ApiError::invalid_field("alert_webhook_url", e.to_string()));
        }
    }
    let before = tenants::settings(&state.db, ctx.tenant_id).await?;
    let changes = SettingsChanges {
        monthly_token_budget: req.monthly_token_budget,
        x_monthly_spend_limit_usd: req.x_monthly_spend_limit_usd,
        x_ai_drafts_skip_approval: req.x_ai_drafts_skip_approval,
        alert_webhook: req.alert_webhook_url.map(|url| {
            url.map(|url| AlertWebhook {
                url,
                secret: req.alert_webhook_secret.clone(),
            })
        }),
    };
    let mut tx = state.db.begin().await?;
    tenants::update_settings(
        &mut tx,
        &state.keyring,
        ctx.actor(),
        ctx.request_id(),
        ctx.tenant_id,
        &before,
        changes,
    )
    .await?;
    tx.commit().await?;
    state.engine.forget_settings();
    Ok(Json(tenants::settings(&state.db, ctx.tenant_id).await?))
}
