//! `/api/v1/workflow-definitions`: workflows as data (#37). The body of a
//! create or a change is the definition itself, in YAML
//! (`content-type: application/yaml`) or JSON; it is validated before it is
//! stored, and a refusal names each problem's path, line and column.
//! Publishing (`…/versions`) freezes the draft as the next version; running
//! instances stay on theirs. Admins and owners write definitions; anyone
//! in the tenant reads them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use integro_core::Permission;
use integro_engine::workflow::{self as engine, Definition, Input, ScriptItem};
use integro_store::workflows::{self, Draft, Format, WorkflowDefinition, WorkflowVersion};
use integro_store::{Page, PageRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::extract::{ApiJson, TenantCtx};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_definitions, create_definition))
        .routes(routes!(
            get_definition,
            replace_definition,
            delete_definition
        ))
        .routes(routes!(validate_definition))
        .routes(routes!(list_versions, publish_definition))
        .routes(routes!(simulate_definition))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// The outcome of a validation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Validation {
    pub valid: bool,
    /// Each with its path, and its line and column where known.
    pub problems: Vec<engine::Problem>,
}

/// The definition in the body: its text, and whether it is YAML or JSON
/// (by `content-type`; JSON when the type is JSON, YAML otherwise).
fn source_of(headers: &HeaderMap, body: &Bytes) -> ApiResult<(String, Format)> {
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let format = if kind.contains("json") {
        Format::Json
    } else if kind.is_empty() || kind.contains("yaml") || kind.starts_with("text/plain") {
        Format::Yaml
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the definition as application/yaml or application/json",
        ));
    };
    if body.len() > engine::MAX_DEFINITION_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "a definition is at most {} KiB",
                engine::MAX_DEFINITION_BYTES / 1024
            ),
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::invalid_field("body", "must be UTF-8 text"))?;
    Ok((text.to_string(), format))
}

/// A definition that loads, or 422 naming every problem.
fn loaded(source: &str, format: Format) -> ApiResult<Definition> {
    let definition = workflows::load(source, format).map_err(refusal)?;
    unsupported(&definition).map_err(|p| refusal(vec![p]))?;
    Ok(definition)
}

/// What the engine accepts but Integro does not run yet: asking the LLM
/// from a workflow, and webhook secrets by reference (webhooks are signed
/// with the tenant's alert secret).
fn unsupported(definition: &Definition) -> Result<(), engine::Problem> {
    let text = serde_json::to_string(definition).unwrap_or_default();
    let problem = |path: &str, message: &str| engine::Problem {
        path: path.into(),
        line: None,
        column: None,
        message: message.into(),
    };
    if text.contains("\"ask_llm\"") {
        return Err(problem(
            "states",
            "`ask_llm` actions are not available yet in this version of Integro",
        ));
    }
    if text.contains("\"secret_ref\":\"") {
        return Err(problem(
            "states",
            "`secret_ref` is not available yet: workflow webhooks are signed with the tenant's alert secret",
        ));
    }
    Ok(())
}

fn refusal(problems: Vec<engine::Problem>) -> ApiError {
    let errors: Vec<FieldError> = problems
        .iter()
        .map(|p| FieldError {
            field: if p.path.is_empty() {
                "body".into()
            } else {
                p.path.clone()
            },
            message: p.to_string(),
        })
        .collect();
    let detail = match problems.len() {
        1 => format!("the definition is not valid: {}", problems[0]),
        n => format!("the definition is not valid: {n} problems"),
    };
    ApiError {
        errors,
        ..ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_definition",
            detail,
        )
    }
}

async fn found(state: &AppState, ctx: &TenantCtx, id: Uuid) -> ApiResult<WorkflowDefinition> {
    workflows::get(&state.db, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("workflow definition"))
}

/// The tenant's workflow definitions (drafts, with their newest version's
/// number), oldest first.
#[utoipa::path(get, path = "/api/v1/workflow-definitions", tag = "workflows", security(("bearer" = [])),
    params(ListParams), responses((status = 200, body = Page<WorkflowDefinition>)))]
pub(crate) async fn list_definitions(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(p): Query<ListParams>,
) -> ApiResult<Json<Page<WorkflowDefinition>>> {
    ctx.require(Permission::Read)?;
    let page = PageRequest::parse(p.limit, p.cursor.as_deref())?;
    Ok(Json(
        workflows::list(&state.db, ctx.tenant_id, &page).await?,
    ))
}

/// Store a definition (admins and owners): the body is the definition, in
/// YAML (`application/yaml`) or JSON. 422 lists every problem with its
/// path, line and column; 409 when its `key` is taken.
#[utoipa::path(post, path = "/api/v1/workflow-definitions", tag = "workflows", security(("bearer" = [])),
    request_body(content = String, content_type = "application/yaml",
        description = "The definition (docs/workflows.md), YAML or JSON"),
    responses((status = 201, body = WorkflowDefinition), (status = 403, body = Problem),
        (status = 409, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem)))]
pub(crate) async fn create_definition(
    State(state): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<WorkflowDefinition>)> {
    ctx.require(Permission::Manage)?;
    let (source, format) = source_of(&headers, &body)?;
    let definition = loaded(&source, format)?;
    let mut tx = state.db.begin().await?;
    let created = workflows::create(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        ctx.tenant_id,
        Draft {
            definition: &definition,
            source: &source,
            format,
        },
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// One definition, with its draft.
#[utoipa::path(get, path = "/api/v1/workflow-definitions/{id}", tag = "workflows", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Definition id")),
    responses((status = 200, body = WorkflowDefinition), (status = 404, body = Problem)))]
pub(crate) async fn get_definition(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<WorkflowDefinition>> {
    ctx.require(Permission::Read)?;
    Ok(Json(found(&state, &ctx, id).await?))
}

/// Replace the draft (admins and owners); published versions and the
/// instances running on them do not change.
#[utoipa::path(put, path = "/api/v1/workflow-definitions/{id}", tag = "workflows", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Definition id")),
    request_body(content = String, content_type = "application/yaml",
        description = "The definition, YAML or JSON"),
    responses((status = 200, body = WorkflowDefinition), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn replace_definition(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<WorkflowDefinition>> {
    ctx.require(Permission::Manage)?;
    found(&state, &ctx, id).await?;
    let (source, format) = source_of(&headers, &body)?;
    let definition = loaded(&source, format)?;
    let mut tx = state.db.begin().await?;
    let changed = workflows::update(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        ctx.tenant_id,
        id,
        Draft {
            definition: &definition,
            source: &source,
            format,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(changed))
}

/// Delete a definition (admins and owners). Its versions stay, and the
/// instances running on them go on.
#[utoipa::path(delete, path = "/api/v1/workflow-definitions/{id}", tag = "workflows", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Definition id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn delete_definition(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    ctx.require(Permission::Manage)?;
    let mut tx = state.db.begin().await?;
    workflows::delete(&mut tx, ctx.actor(), ctx.request_id(), ctx.tenant_id, id).await?;
    tx.commit().await?;
    state.engine.forget_settings();
    Ok(StatusCode::NO_CONTENT)
}

/// Validate a definition without storing it: the body, or, when empty, the
/// stored draft. Always 200: `valid` and the problems found.
#[utoipa::path(post, path = "/api/v1/workflow-definitions/{id}/validate", tag = "workflows", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Definition id")),
    request_body(content = String, content_type = "application/yaml",
        description = "A definition to check instead of the draft (optional)"),
    responses((status = 200, body = Validation), (status = 404, body = Problem), (status = 415, body = Problem)))]
pub(crate) async fn validate_definition(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Validation>> {
    ctx.require(Permission::Read)?;
    let draft = found(&state, &ctx, id).await?;
    let (source, format) = if body.is_empty() {
        (draft.source, draft.format)
    } else {
        source_of(&headers, &body)?
    };
    let problems = match workflows::load(&source, format) {
        Ok(definition) => unsupported(&definition).err().into_iter().collect(),
        Err(problems) => problems,
    };
    Ok(Json(Validation {
        valid: problems.is_empty(),
        problems,
    }))
}

/// The definition's published versions, oldest first.
#[utoipa::path(get, path = "/api/v1/workflow-definitions/{id}/versions", tag = "workflows", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Definition id"), ListParams),
    responses((status = 200, body = Page<WorkflowVersion>), (status = 404, body = Problem)))]
pub(crate) async fn list_versions(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    Query(p): Query<ListParams>,
) -> ApiResult<Json<Page<WorkflowVersion>>> {
    ctx.require(Permission::Read)?;
    found(&state, &ctx, id).await?;
    let page = PageRequest::parse(p.limit, p.cursor.as_deref())?;
    Ok(Json(
        workflows::versions(&state.db, ctx.tenant_id, id, &page).await?,
    ))
}

/// Publish the draft as the next version (admins and owners): new
/// instances start on it; running ones stay on theirs.
#[utoipa::path(post, path = "/api/v1/workflow-definitions/{id}/versions", tag = "workflows", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Definition id")),
    responses((status = 201, body = WorkflowVersion), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn publish_definition(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<(StatusCode, Json<WorkflowVersion>)> {
    ctx.require(Permission::Manage)?;
    let draft = found(&state, &ctx, id).await?;
    let definition = loaded(&draft.source, draft.format)?;
    let calendars = integro_store::business_calendars::by_name(&state.db, ctx.tenant_id).await?;
    let missing: Vec<engine::Problem> = definition
        .calendars_used()
        .into_iter()
        .filter(|name| !calendars.contains_key(*name))
        .map(|name| engine::Problem {
            path: "states".into(),
            line: None,
            column: None,
            message: format!(
                "business calendar `{name}` does not exist: create it first (POST /api/v1/business-calendars)"
            ),
        })
        .collect();
    if !missing.is_empty() {
        return Err(refusal(missing));
    }
    let mut tx = state.db.begin().await?;
    let version =
        workflows::publish(&mut tx, ctx.actor(), ctx.request_id(), ctx.tenant_id, id).await?;
    tx.commit().await?;
    // This process's conversations see it at once; others within 5 s.
    state.engine.forget_settings();
    Ok((StatusCode::CREATED, Json(version)))
}

/// One input of a simulation: a message or an event (or `start` first), at
/// a time on the virtual clock.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScriptStep {
    /// RFC 3339; absent: just after the previous item.
    pub at: Option<String>,
    /// A message from the contact.
    pub message: Option<String>,
    /// An event's name (`accept`, `reject` …).
    pub event: Option<String>,
    /// Start data (the first item) or the event's data.
    #[schema(value_type = Object)]
    pub data: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulateRequest {
    /// Data to start with; the instance starts at the first item's time.
    #[schema(value_type = Object)]
    #[serde(default)]
    pub data: Map<String, Value>,
    /// At most 200 items.
    pub script: Vec<ScriptStep>,
    /// RFC 3339: fire the timers and SLA checks due until then.
    pub until: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SimulateResponse {
    /// Each input and each timer that came due, with what it did
    /// (transitions, effects, events) or why it was refused.
    #[schema(value_type = Vec<Object>)]
    pub steps: Vec<engine::SimulatedStep>,
}

/// The most items a simulation script holds.
const MAX_SCRIPT: usize = 200;

fn ms_of(field: &str, text: &str) -> ApiResult<i64> {
    let at = OffsetDateTime::parse(text.trim(), &Rfc3339)
        .map_err(|_| ApiError::invalid_field(field, "must be an RFC 3339 time"))?;
    Ok((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Run the draft on a virtual clock: the script's messages and events,
/// and the timers and SLA checks they arm, in time order. Nothing is
/// stored or sent.
#[utoipa::path(post, path = "/api/v1/workflow-definitions/{id}/simulate", tag = "workflows", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Definition id")), request_body = SimulateRequest,
    responses((status = 200, body = SimulateResponse), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn simulate_definition(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    ApiJson(req): ApiJson<SimulateRequest>,
) -> ApiResult<Json<SimulateResponse>> {
    ctx.require(Permission::Read)?;
    let draft = found(&state, &ctx, id).await?;
    let definition = loaded(&draft.source, draft.format)?;
    if req.script.len() > MAX_SCRIPT {
        return Err(ApiError::invalid_field(
            "script",
            format!("at most {MAX_SCRIPT} items"),
        ));
    }
    let now = integro_store::db::now_ms();
    let mut clock = now;
    let mut script = vec![ScriptItem {
        at_ms: now,
        input: Input::Start { data: req.data },
    }];
    for (i, item) in req.script.into_iter().enumerate() {
        let field = format!("script[{i}]");
        clock = match &item.at {
            Some(at) => ms_of(&format!("{field}.at"), at)?,
            None => clock + 1,
        };
        let input = match (item.message, item.event) {
            (Some(text), None) => Input::Message { text },
            (None, Some(name)) => Input::Event {
                name,
                data: item.data.unwrap_or_default(),
            },
            _ => {
                return Err(ApiError::invalid_field(
                    &field,
                    "give either `message` or `event`",
                ));
            }
        };
        script.push(ScriptItem {
            at_ms: clock,
            input,
        });
    }
    let until = req
        .until
        .as_deref()
        .map(|u| ms_of("until", u))
        .transpose()?;
    let context = integro_store::business_calendars::step_context(&state.db, ctx.tenant_id).await?;
    let steps = engine::simulate(&definition, &context, &script, until);
    Ok(Json(SimulateResponse { steps }))
}
