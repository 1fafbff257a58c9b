//! `/api/v1/audit-log`: every create, update and delete, newest first.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use integro_core::Permission;
use integro_store::Page;
use integro_store::audit::{self, AuditEntry, AuditFilter};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, Problem};
use crate::extract::{Auth, TenantCtx, tenant_header};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit_log))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only this action, e.g. `api_key.revoke`.
    pub action: Option<String>,
    /// Only this kind of target, e.g. `tenant`.
    pub target_kind: Option<String>,
    /// Only this target.
    pub target_id: Option<String>,
}

/// The audit log of the caller's tenant (admins and owners). Platform operators
/// who name no tenant see every tenant's entries and the platform's own.
#[utoipa::path(get, path = "/api/v1/audit-log", tag = "audit-log",
    security(("bearer" = [])),
    params(AuditParams, ("X-Integro-Tenant" = Option<uuid::Uuid>, Header, description = "Tenant to act in")),
    responses((status = 200, body = Page<AuditEntry>), (status = 403, body = Problem)))]
pub(crate) async fn list_audit_log(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Query(params): Query<AuditParams>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    let page = integro_store::PageRequest::parse(params.limit, params.cursor.as_deref())?;
    let tenant_id = if auth.is_operator() && tenant_header(&headers)?.is_none() {
        None
    } else {
        let ctx = TenantCtx::resolve(&state, auth, &headers).await?;
        ctx.require(Permission::ReadAudit)?;
        Some(ctx.tenant_id)
    };
    let filter = AuditFilter {
        tenant_id,
        action: params.action,
        target_kind: params.target_kind,
        target_id: params.target_id,
    };
    Ok(Json(audit::list(&state.db, &filter, &page).await?))
}
