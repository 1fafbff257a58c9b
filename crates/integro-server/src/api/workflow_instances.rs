//! `/api/v1/workflow-instances`: running workflows (#37). An instance is
//! started on a definition's newest published version and stays on it
//! until a person migrates it (`…/migrate`, with a state map and a dry
//! run). Events move it (`…/events`, agents and above), one at a time per
//! instance; each step is written with its events, timers, assignment and
//! messages in one transaction (`integro_store::workflow_instances`).
//! `GET /api/v1/me/workflow-tasks` lists the caller's open instances.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use integro_core::Permission;
use integro_engine::workflow::{
    Definition, Effect, Input, MAX_STATES, StepContext, StepError, is_key,
};
use integro_store::workflow_instances::{
    self, ApplyError, Instance, InstanceFilter, Migration, NewInstance, StepRequest,
    WorkflowEventRecord,
};
use integro_store::{Page, PageRequest, Tx, business_calendars, workflows};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, Principal, TenantCtx};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_instances, create_instance))
        .routes(routes!(get_instance, delete_instance))
        .routes(routes!(instance_history))
        .routes(routes!(send_event))
        .routes(routes!(migrate_instance))
        .routes(routes!(assign_instance))
        .routes(routes!(my_tasks))
}

/// Header that makes a create idempotent when no `external_ref` is given.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The longest event name and `Idempotency-Key`, in characters.
const MAX_NAME_CHARS: usize = 200;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceRequest {
    /// The definition's id or `key`; the instance runs on its newest
    /// published version.
    pub definition: String,
    /// Field values (validated) and variables to start with.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    /// A conversation of the tenant: the instance's messages go there.
    pub conversation_id: Option<Uuid>,
    /// Your reference: a second create with the same one returns the
    /// instance already started (200). At most 200 characters.
    pub external_ref: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventRequest {
    /// The event's name, as the state's `on` names it.
    pub event: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    /// The `seq` you last saw: 409 with the current one when it moved.
    pub expected_seq: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    /// The published version to move to, by number; default: the
    /// definition's newest.
    pub version: Option<i64>,
    /// Or by id (as `GET …/workflow-definitions/{id}/versions` lists them),
    /// instead of `version`.
    pub version_id: Option<Uuid>,
    /// Old state name → new one, e.g. `{"b": "review"}`; a state not in
    /// the map keeps its name. Every state named must exist in the target
    /// version.
    #[serde(default)]
    pub state_map: BTreeMap<String, String>,
    /// Compute the migration and answer it without storing anything.
    #[serde(default)]
    pub dry_run: bool,
    /// The `seq` you last saw: 409 with the current one when it moved.
    pub expected_seq: Option<i64>,
}

/// A migration done, or (`dry_run`) what it would do.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MigrationResult {
    /// `true`: nothing was stored or sent; `instance` is what it would be.
    pub dry_run: bool,
    /// The instance after the migration: its new `version_id`, `state` and
    /// `seq`.
    pub instance: Instance,
    /// The events published, in order: `workflow.instance.migrated` first,
    /// then what entering the state caused (`workflow.instance.assigned`,
    /// `workflow.instance.completed`, …).
    pub events: Vec<String>,
    /// What the step sets in motion, as `/simulate` shows it: `send`,
    /// `assign`, `handoff`, `webhook`, `arm_timer` and `arm_sla` (due times
    /// in Unix milliseconds), …
    #[schema(value_type = Vec<Object>)]
    pub effects: Vec<Effect>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    /// A member of the tenant; `null` unassigns.
    pub user_id: Option<Uuid>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InstanceParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    /// A definition's id.
    pub definition_id: Option<Uuid>,
    pub state: Option<String>,
    /// `active`, `completed` or `cancelled`.
    pub status: Option<String>,
    pub assignee_id: Option<Uuid>,
    /// `running`, `warning` or `breached`.
    pub sla_status: Option<String>,
    pub conversation_id: Option<Uuid>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

fn refused(e: ApplyError) -> ApiError {
    match e {
        ApplyError::Moved { current } => ApiError {
            errors: vec![crate::error::FieldError {
                field: "expected_seq".into(),
                message: format!("the instance is at seq {current}"),
            }],
            ..ApiError::new(
                StatusCode::CONFLICT,
                "seq_moved",
                format!("the instance moved: its seq is {current}"),
            )
        },
        ApplyError::Refused(
            e @ (StepError::Completed | StepError::Cancelled | StepError::AlreadyStarted),
        ) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
        ApplyError::Refused(StepError::InvalidData { field, reason }) => {
            ApiError::invalid_field(&format!("data.{field}"), reason)
        }
        ApplyError::Refused(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "event_refused",
            e.to_string(),
        ),
        ApplyError::Store(e) => e.into(),
    }
}

async fn found(state: &AppState, ctx: &TenantCtx, id: Uuid) -> ApiResult<Instance> {
    workflow_instances::get(&state.db, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("workflow instance"))
}

/// The tenant's instances, newest first, by definition, state, status,
/// assignee, SLA status or conversation.
#[utoipa::path(get, path = "/api/v1/workflow-instances", tag = "workflows", security(("bearer" = [])),
    params(InstanceParams), responses((status = 200, body = Page<Instance>)))]
pub(crate) async fn list_instances(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(p): Query<InstanceParams>,
) -> ApiResult<Json<Page<Instance>>> {
    ctx.require(Permission::Read)?;
    let page = PageRequest::parse(p.limit, p.cursor.as_deref())?;
    let filter = InstanceFilter {
        definition_id: p.definition_id,
        state: p.state,
        status: p.status,
        assignee_id: p.assignee_id,
        sla_status: p.sla_status,
        conversation_id: p.conversation_id,
    };
    Ok(Json(
        workflow_instances::list(&state.db, ctx.tenant_id, &filter, &page).await?,
    ))
}

/// Start an instance (agents and above) on the definition's newest
/// published version. Idempotent by `external_ref`, or by the
/// `Idempotency-Key` header: the instance already started is answered with
/// 200. 422 when the definition has no published version, or for data a
/// field refuses.
#[utoipa::path(post, path = "/api/v1/workflow-instances", tag = "workflows", security(("bearer" = [])),
    request_body = InstanceRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the create idempotent")),
    responses((status = 201, body = Instance), (status = 200, body = Instance), (status = 403, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create_instance(
    State(state): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    ApiJson(req): ApiJson<InstanceRequest>,
) -> ApiResult<(StatusCode, Json<Instance>)> {
    ctx.require(Permission::Converse)?;
    let definition = match Uuid::parse_str(req.definition.trim()) {
        Ok(id) => workflows::get(&state.db, ctx.tenant_id, id).await?,
        Err(_) => workflows::find_by_key(&state.db, ctx.tenant_id, req.definition.trim()).await?,
    }
    .ok_or_else(|| {
        ApiError::invalid_field(
            "definition",
            "no workflow definition of the tenant has this id or key",
        )
    })?;
    let version = workflows::version(&state.db, ctx.tenant_id, definition.id, None)
        .await?
        .ok_or_else(|| {
            ApiError::invalid_field(
                "definition",
                "has no published version yet: publish it first (POST …/versions)",
            )
        })?;
    if let Some(conversation) = req.conversation_id {
        integro_store::conversations::get(&state.db, ctx.tenant_id, conversation)
            .await?
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "conversation_id",
                    "no conversation of the tenant has this id",
                )
            })?;
    }
    let idempotency_key = headers
        .get(IDEMPOTENCY_KEY)
        .map(|v| {
            v.to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.chars().count() <= MAX_NAME_CHARS)
                .map(|k| format!("idempotency-key:{k}"))
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        "Idempotency-Key",
                        "must be 1 to 200 visible characters",
                    )
                })
        })
        .transpose()?;
    // Read before the transaction: it holds a connection (and on
    // PostgreSQL a row lock) while it lasts.
    let compiled = workflows::compiled(&state.db, ctx.tenant_id, version.id).await?;
    let context = business_calendars::step_context(&state.db, ctx.tenant_id).await?;
    let mut tx = state.db.begin().await?;
    let (instance, created) = workflow_instances::create(
        &mut tx,
        NewInstance {
            tenant_id: ctx.tenant_id,
            definition_id: definition.id,
            version_id: version.id,
            definition: &compiled,
            data: req.data,
            conversation_id: req.conversation_id,
            external_ref: req.external_ref.or(idempotency_key),
            actor: &ctx.actor().label,
        },
        &context,
    )
    .await
    .map_err(refused)?;
    tx.commit().await?;
    state.wake.notify_one();
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(instance)))
}

/// One instance: its state, `seq`, fields, assignee and SLA.
#[utoipa::path(get, path = "/api/v1/workflow-instances/{id}", tag = "workflows", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Instance id")),
    responses((status = 200, body = Instance), (status = 404, body = Problem)))]
pub(crate) async fn get_instance(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Instance>> {
    ctx.require(Permission::Read)?;
    Ok(Json(found(&state, &ctx, id).await?))
}

/// What happened to the instance, oldest first: every event it published.
#[utoipa::path(get, path = "/api/v1/workflow-instances/{id}/history", tag = "workflows", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Instance id"), PageParams),
    responses((status = 200, body = Page<WorkflowEventRecord>), (status = 404, body = Problem)))]
pub(crate) async fn instance_history(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    Query(p): Query<PageParams>,
) -> ApiResult<Json<Page<WorkflowEventRecord>>> {
    ctx.require(Permission::Read)?;
    found(&state, &ctx, id).await?;
    let page = PageRequest::parse(p.limit, p.cursor.as_deref())?;
    Ok(Json(
        workflow_instances::history(&state.db, ctx.tenant_id, id, &page).await?,
    ))
}

/// Send an event (agents and above): the state's transition for it runs,
/// with its actions. 409 `seq_moved` when `expected_seq` is not the
/// current one, or when the instance is finished; 422 for an event the
/// state does not take, a `require`d field missing, or a condition false.
#[utoipa::path(post, path = "/api/v1/workflow-instances/{id}/events", tag = "workflows", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Instance id")), request_body = EventRequest,
    responses((status = 200, body = Instance), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn send_event(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    ApiJson(req): ApiJson<EventRequest>,
) -> ApiResult<Json<Instance>> {
    ctx.require(Permission::Converse)?;
    let event = req.event.trim();
    if event.is_empty() || event.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid_field(
            "event",
            "must be 1 to 200 characters",
        ));
    }
    let input = Input::Event {
        name: event.to_string(),
        data: req.data,
    };
    step(&state, &ctx, id, &input, req.expected_seq).await
}

/// An instance locked in a new transaction, with its version's definition
/// and the tenant's calendars.
struct Locked {
    tx: Tx<'static>,
    instance: Instance,
    definition: Arc<Definition>,
    context: StepContext,
}

/// How often `locked` reads again when a migration moved the instance to
/// another version between its read and its lock.
const LOCK_ATTEMPTS: usize = 3;

/// Reads what a step needs besides the instance before the transaction
/// (it holds a connection, and on PostgreSQL a row lock, while it lasts),
/// then locks the instance; a migration in between changes its version,
/// and then it is read again.
async fn locked(state: &AppState, ctx: &TenantCtx, id: Uuid) -> ApiResult<Locked> {
    for _ in 0..LOCK_ATTEMPTS {
        let current = found(state, ctx, id).await?;
        let definition = workflows::compiled(&state.db, ctx.tenant_id, current.version_id).await?;
        let context = business_calendars::step_context(&state.db, ctx.tenant_id).await?;
        let mut tx = state.db.begin().await?;
        let instance = workflow_instances::lock(&mut tx, ctx.tenant_id, id)
            .await?
            .ok_or_else(|| ApiError::not_found("workflow instance"))?;
        if instance.version_id == current.version_id {
            return Ok(Locked {
                tx,
                instance,
                definition,
                context,
            });
        }
        tx.rollback().await?;
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        "the instance is being migrated; send the request again",
    ))
}

/// Applies `input` to the instance, locked in its own transaction.
async fn step(
    state: &AppState,
    ctx: &TenantCtx,
    id: Uuid,
    input: &Input,
    expected_seq: Option<i64>,
) -> ApiResult<Json<Instance>> {
    let Locked {
        mut tx,
        instance,
        definition,
        context,
    } = locked(state, ctx, id).await?;
    workflow_instances::apply(
        &mut tx,
        ctx.tenant_id,
        &instance,
        &definition,
        StepRequest {
            input,
            expected_seq,
            actor: &ctx.actor().label,
            ctx: &context,
        },
    )
    .await
    .map_err(refused)?;
    let after = workflow_instances::lock(&mut tx, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("workflow instance"))?;
    tx.commit().await?;
    state.wake.notify_one();
    Ok(Json(after))
}

/// Move a running instance onto another published version of its
/// definition (agents and above): `state_map` renames states (a state not
/// in it keeps its name), `dry_run` answers what would happen and stores
/// nothing. The instance keeps its field values and variables; its `seq`
/// grows, so the timers and SLA checks armed before do nothing. Its state
/// is entered on the new version as by a transition (timers and SLA from
/// now, its form asking its first empty field), with its `assign` and
/// `enter` actions only when the state's name changes. 409 for a finished
/// instance or a moved `expected_seq`; 422 for a version that is not one of
/// the definition's, a state the version lacks (its states are listed), or
/// nothing to migrate (the same version and state).
#[utoipa::path(post, path = "/api/v1/workflow-instances/{id}/migrate", tag = "workflows", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Instance id")), request_body = MigrateRequest,
    responses((status = 200, body = MigrationResult), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn migrate_instance(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    ApiJson(req): ApiJson<MigrateRequest>,
) -> ApiResult<Json<MigrationResult>> {
    ctx.require(Permission::Converse)?;
    if req.state_map.len() > MAX_STATES {
        return Err(ApiError::invalid_field(
            "state_map",
            format!("at most {MAX_STATES} states"),
        ));
    }
    if let Some(name) = req
        .state_map
        .iter()
        .flat_map(|(from, to)| [from, to])
        .find(|name| !is_key(name))
    {
        let shown: String = name.chars().take(80).collect();
        return Err(ApiError::invalid_field(
            "state_map",
            format!("`{shown}` is not a state name"),
        ));
    }
    // What the migration reads, before the transaction: the instance's
    // definition does not change, and versions never do.
    let current = found(&state, &ctx, id).await?;
    let version_id = match (req.version, req.version_id) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_field(
                "version_id",
                "give `version` or `version_id`, not both",
            ));
        }
        (None, Some(version_id)) => {
            match workflow_instances::version_of(&state.db, ctx.tenant_id, version_id).await? {
                Some((definition, _)) if definition == current.definition_id => version_id,
                Some(_) => {
                    return Err(ApiError::invalid_field(
                        "version_id",
                        "is a version of another workflow definition",
                    ));
                }
                None => {
                    return Err(ApiError::invalid_field(
                        "version_id",
                        "no published workflow version of the tenant has this id",
                    ));
                }
            }
        }
        (number, None) => {
            workflows::version(&state.db, ctx.tenant_id, current.definition_id, number)
                .await?
                .ok_or_else(|| match number {
                    Some(n) => ApiError::invalid_field(
                        "version",
                        format!("the definition has no published version {n}"),
                    ),
                    None => ApiError::invalid_field(
                        "version",
                        "the definition has no published version",
                    ),
                })?
                .id
        }
    };
    let definition = workflows::compiled(&state.db, ctx.tenant_id, version_id).await?;
    let context = business_calendars::step_context(&state.db, ctx.tenant_id).await?;
    let mut tx = state.db.begin().await?;
    let instance = workflow_instances::lock(&mut tx, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("workflow instance"))?;
    let migrated = workflow_instances::migrate(
        &mut tx,
        ctx.tenant_id,
        &instance,
        Migration {
            version_id,
            definition: &definition,
            state_map: &req.state_map,
            expected_seq: req.expected_seq,
            actor: &ctx.actor().label,
            ctx: &context,
        },
    )
    .await
    .map_err(|e| match e {
        // The new version cannot take the instance (a calendar its SLA
        // names is gone, its forms loop, …).
        ApplyError::Refused(e) if !matches!(e, StepError::Completed | StepError::Cancelled) => {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "migration_refused",
                e.to_string(),
            )
        }
        e => refused(e),
    })?;
    let after = workflow_instances::lock(&mut tx, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("workflow instance"))?;
    if req.dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
        state.wake.notify_one();
    }
    Ok(Json(MigrationResult {
        dry_run: req.dry_run,
        instance: after,
        events: migrated.events,
        effects: migrated.step.effects,
    }))
}

/// Assign the instance to a member of the tenant, or to nobody (agents and
/// above).
#[utoipa::path(post, path = "/api/v1/workflow-instances/{id}/assign", tag = "workflows", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Instance id")), request_body = AssignRequest,
    responses((status = 200, body = Instance), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
pub(crate) async fn assign_instance(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    ApiJson(req): ApiJson<AssignRequest>,
) -> ApiResult<Json<Instance>> {
    ctx.require(Permission::Converse)?;
    let mut tx = state.db.begin().await?;
    let instance = workflow_instances::lock(&mut tx, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("workflow instance"))?;
    workflow_instances::assign(
        &mut tx,
        ctx.tenant_id,
        &instance,
        req.user_id,
        &ctx.actor().label,
    )
    .await?;
    let after = workflow_instances::lock(&mut tx, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("workflow instance"))?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Cancel the instance if it runs, and delete it (agents and above): its
/// timers no longer fire; its history stays.
#[utoipa::path(delete, path = "/api/v1/workflow-instances/{id}", tag = "workflows", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Instance id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn delete_instance(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    ctx.require(Permission::Converse)?;
    let Locked {
        mut tx,
        instance,
        definition,
        context,
    } = locked(&state, &ctx, id).await?;
    if instance.status == "active" {
        let cancel = Input::Cancel {
            reason: Some("deleted".into()),
        };
        workflow_instances::apply(
            &mut tx,
            ctx.tenant_id,
            &instance,
            &definition,
            StepRequest {
                input: &cancel,
                expected_seq: None,
                actor: &ctx.actor().label,
                ctx: &context,
            },
        )
        .await
        .map_err(refused)?;
    }
    workflow_instances::mark_deleted(&mut tx, ctx.tenant_id, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's open workflow instances (assigned to them), newest first.
/// API keys have none.
#[utoipa::path(get, path = "/api/v1/me/workflow-tasks", tag = "workflows", security(("bearer" = [])),
    params(PageParams), responses((status = 200, body = Page<Instance>)))]
pub(crate) async fn my_tasks(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(p): Query<PageParams>,
) -> ApiResult<Json<Page<Instance>>> {
    ctx.require(Permission::Read)?;
    let page = PageRequest::parse(p.limit, p.cursor.as_deref())?;
    let Principal::User(user) = &ctx.auth.principal else {
        return Ok(Json(Page::from_rows(Vec::new(), &page, |i: &Instance| {
            i.id
        })));
    };
    let filter = InstanceFilter {
        assignee_id: Some(user.id),
        status: Some("active".into()),
        ..InstanceFilter::default()
    };
    Ok(Json(
        workflow_instances::list(&state.db, ctx.tenant_id, &filter, &page).await?,
    ))
}
