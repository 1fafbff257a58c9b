//! `GET /api/v1/workflow-events`: the tenant's workflow events as
//! server-sent events (#37), from now on, or after the event a
//! reconnecting client names in `Last-Event-ID` (EventSource sends it), so
//! nothing is missed in between. `event:` is the event's name
//! (`workflow.instance.transitioned` …), `id:` its id, `data:` the event as
//! JSON.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use integro_core::Permission;
use integro_store::workflow_instances::{self, WorkflowEventRecord};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiResult, Problem};
use crate::extract::TenantCtx;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(workflow_events))
}

/// How often the stream looks for new events.
const POLL: Duration = Duration::from_millis(200);
/// Streams end after this long; EventSource clients reconnect on their own.
const MAX_STREAM: Duration = Duration::from_secs(600);
/// Events read at once.
const BATCH: i64 = 100;

/// The tenant's workflow events as a stream.
#[utoipa::path(get, path = "/api/v1/workflow-events", tag = "workflows", security(("bearer" = [])),
    params(("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")),
    responses((status = 200, description = "text/event-stream of workflow events", content_type = "text/event-stream"),
        (status = 429, description = "Too many streams open for the caller or the tenant", body = Problem)))]
pub(crate) async fn workflow_events(
    State(state): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    ctx.require(Permission::Read)?;
    let slot = state.streams.acquire(
        &format!(
            "{}:{}",
            ctx.actor().kind.as_str(),
            ctx.actor().id.as_deref().unwrap_or_default()
        ),
        ctx.tenant_id,
    )?;
    let tenant = ctx.tenant_id;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v.trim()).ok());
    // From now on: after the newest event there is (ids are time-ordered).
    let start = match resume {
        Some(id) => Some(id),
        None => Some(Uuid::now_v7()),
    };
    let opened = Instant::now();
    let stream = futures_util::stream::unfold(
        (state, start, Vec::<WorkflowEventRecord>::new(), slot),
        move |(state, mut after, mut pending, slot)| async move {
            loop {
                if *state.stopping.borrow() || opened.elapsed() > MAX_STREAM {
                    return None;
                }
                if let Some(e) = pending.pop() {
                    let event = Event::default()
                        .event(e.name.clone())
                        .id(e.id.to_string())
                        .json_data(&e)
                        .unwrap_or_default();
                    return Some((Ok(event), (state, after, pending, slot)));
                }
                let mut stopping = state.stopping.clone();
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stopping.changed() => continue,
                }
                if let Ok(found) =
                    workflow_instances::events_after(&state.db, tenant, after, BATCH).await
                {
                    if let Some(last) = found.last() {
                        after = Some(last.id);
                    }
                    pending = found.into_iter().rev().collect();
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
