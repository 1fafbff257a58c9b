//! `/api/v1/bots/{bot_id}/rules`: a bot's keyword and pattern rules, and
//! their export and import as YAML.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use integro_core::Permission;
use integro_store::Page;
use integro_store::rules::{self, Rule, RuleDocument, RuleFields, YamlError};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::api::bots;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ListParams, TenantCtx};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_rule, list_rules))
        .routes(routes!(get_rule, update_rule, delete_rule))
        .routes(routes!(export_rules))
        .routes(routes!(import_rules))
}

async fn find(state: &AppState, ctx: &TenantCtx, bot_id: Uuid, id: Uuid) -> ApiResult<Rule> {
    rules::get(&state.db, ctx.tenant_id, bot_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("rule"))
}

/// Add a rule to a bot.
#[utoipa::path(post, path = "/api/v1/bots/{bot_id}/rules", tag = "rules", security(("bearer" = [])),
    params(("bot_id" = Uuid, Path, description = "Bot id")), request_body = RuleFields,
    responses((status = 201, body = Rule), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create_rule(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(bot_id): Path<Uuid>,
    ApiJson(req): ApiJson<RuleFields>,
) -> ApiResult<(StatusCode, Json<Rule>)> {
    ctx.require(Permission::Manage)?;
    let bot = bots::find(&state, &ctx, bot_id).await?;
    let mut tx = state.db.begin().await?;
    let rule = rules::create(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        ctx.tenant_id,
        bot.id,
        req,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(rule)))
}

/// A bot's rules, in creation order.
#[utoipa::path(get, path = "/api/v1/bots/{bot_id}/rules", tag = "rules", security(("bearer" = [])),
    params(("bot_id" = Uuid, Path, description = "Bot id"), ListParams),
    responses((status = 200, body = Page<Rule>), (status = 404, body = Problem)))]
async fn list_rules(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(bot_id): Path<Uuid>,
    Query(p): Query<ListParams>,
) -> ApiResult<Json<Page<Rule>>> {
    ctx.require(Permission::Read)?;
    let bot = bots::find(&state, &ctx, bot_id).await?;
    Ok(Json(
        rules::list(&state.db, ctx.tenant_id, bot.id, &p.page()?).await?,
    ))
}

/// One rule.
#[utoipa::path(get, path = "/api/v1/bots/{bot_id}/rules/{id}", tag = "rules", security(("bearer" = [])),
    params(("bot_id" = Uuid, Path, description = "Bot id"), ("id" = Uuid, Path, description = "Rule id")),
    responses((status = 200, body = Rule), (status = 404, body = Problem)))]
async fn get_rule(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((bot_id, id)): Path<(Uuid, Uuid)>,
) -> ApiResult<Json<Rule>> {
    ctx.require(Permission::Read)?;
    Ok(Json(find(&state, &ctx, bot_id, id).await?))
}

/// Change a rule: the fields given replace the stored ones (`null` clears).
#[utoipa::path(patch, path = "/api/v1/bots/{bot_id}/rules/{id}", tag = "rules", security(("bearer" = [])),
    params(("bot_id" = Uuid, Path, description = "Bot id"), ("id" = Uuid, Path, description = "Rule id")),
    request_body = Object,
    responses((status = 200, body = Rule), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn update_rule(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((bot_id, id)): Path<(Uuid, Uuid)>,
    ApiJson(changes): ApiJson<serde_json::Value>,
) -> ApiResult<Json<Rule>> {
    ctx.require(Permission::Manage)?;
    let before = find(&state, &ctx, bot_id, id).await?;
    let serde_json::Value::Object(changes) = changes else {
        return Err(ApiError::invalid_field("body", "must be a JSON object"));
    };
    let mut merged = serde_json::to_value(&before.fields).map_err(|_| ApiError::internal())?;
    for (k, v) in changes {
        merged[k] = v;
    }
    let fields: RuleFields = crate::extract::parse_json(merged.to_string().as_bytes())?;
    let mut tx = state.db.begin().await?;
    let after = rules::update(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        ctx.tenant_id,
        &before,
        fields,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Delete a rule.
#[utoipa::path(delete, path = "/api/v1/bots/{bot_id}/rules/{id}", tag = "rules", security(("bearer" = [])),
    params(("bot_id" = Uuid, Path, description = "Bot id"), ("id" = Uuid, Path, description = "Rule id")),
    responses((status = 204), (status = 404, body = Problem)))]
pub(crate) async fn delete_rule(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path((bot_id, id)): Path<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    ctx.require(Permission::Manage)?;
    let rule = find(&state, &ctx, bot_id, id).await?;
    let mut tx = state.db.begin().await?;
    rules::delete(&mut tx, ctx.actor(), ctx.request_id(), ctx.tenant_id, &rule).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// All of a bot's rules as YAML, ready to edit and import again.
#[utoipa::path(get, path = "/api/v1/bots/{bot_id}/rules/export", tag = "rules", security(("bearer" = [])),
    params(("bot_id" = Uuid, Path, description = "Bot id")),
    responses((status = 200, description = "The rules as YAML", content_type = "application/yaml", body = RuleDocument), (status = 404, body = Problem)))]
pub(crate) async fn export_rules(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(bot_id): Path<Uuid>,
) -> ApiResult<Response> {
    ctx.require(Permission::Read)?;
    let bot = bots::find(&state, &ctx, bot_id).await?;
    let yaml = RuleDocument::of_bot(&state.db, bot.id).await?.to_yaml();
    Ok(([(header::CONTENT_TYPE, "application/yaml")], yaml).into_response())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportResult {
    pub imported: usize,
}

/// Replace all of a bot's rules with a YAML (or JSON) document
/// `{rules: [...]}`. Every rule is checked first; nothing changes unless all
/// are valid, and errors name the rule by position (`rules[3].pattern`).
#[utoipa::path(post, path = "/api/v1/bots/{bot_id}/rules/import", tag = "rules", security(("bearer" = [])),
    params(("bot_id" = Uuid, Path, description = "Bot id")),
    request_body(content = String, content_type = "application/yaml", description = "A rules document, as exported"),
    responses((status = 200, body = ImportResult), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem, description = "A rule is invalid (`invalid_field`), or YAML aliases would expand the document past 4 times its size (`yaml_too_repetitive`)")))]
pub(crate) async fn import_rules(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(bot_id): Path<Uuid>,
    body: Bytes,
) -> ApiResult<Json<ImportResult>> {
    ctx.require(Permission::Manage)?;
    let bot = bots::find(&state, &ctx, bot_id).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("malformed_yaml", "the document is not UTF-8"))?;
    // YAML is a superset of JSON: one parser reads both.
    let doc = RuleDocument::from_yaml(text).map_err(|e| match e {
        YamlError::Malformed(m) => ApiError::bad_request("malformed_yaml", m),
        YamlError::TooRepetitive(m) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "yaml_too_repetitive", m)
        }
    })?;
    let mut tx = state.db.begin().await?;
    let imported = rules::replace_all(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        ctx.tenant_id,
        bot.id,
        doc.rules,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(ImportResult { imported }))
}
