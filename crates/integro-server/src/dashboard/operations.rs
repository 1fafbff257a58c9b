//! Operations: the webhook log (every request the providers sent, accepted
//! or refused, with its headers as stored, redacted, and its body), the
//! engine's events and the audit log, through the API's handlers.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue};
use serde::Deserialize;
use uuid::Uuid;

use super::page::{Layout, PageError, PageResult, render, when};
use super::session::Acting;
use crate::api;
use crate::extract::TENANT_HEADER;
use crate::state::AppState;

/// Entries shown on one page.
const SHOWN: u32 = 100;

pub struct WebhookView {
    pub when: String,
    pub channel: String,
    pub method: String,
    pub path: String,
    pub status: i64,
    pub outcome: String,
    pub error: Option<String>,
    pub headers: String,
    pub body: String,
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct WebhooksPage {
    layout: Layout,
    entries: Vec<WebhookView>,
    outcome: String,
    outcomes: [&'static str; 5],
}

#[derive(Deserialize)]
pub struct WebhooksQuery {
    #[serde(default)]
    outcome: String,
    account_id: Option<Uuid>,
}

pub async fn webhooks(
    State(state): State<AppState>,
    acting: Acting,
    Query(q): Query<WebhooksQuery>,
) -> PageResult {
    let outcomes = ["", "accepted", "duplicate", "rejected", "error"];
    if !outcomes.contains(&q.outcome.as_str()) {
        return Err(PageError::Invalid(format!(
            "unknown outcome `{}`",
            q.outcome
        )));
    }
    let params = api::webhook_logs::WebhookLogParams {
        limit: Some(SHOWN),
        cursor: None,
        account_id: q.account_id,
        channel: None,
        outcome: (!q.outcome.is_empty()).then(|| q.outcome.clone()),
    };
    let page =
        api::webhook_logs::list_webhook_logs(State(state), acting.ctx.clone(), Query(params))
            .await?
            .0;
    let entries = page
        .items
        .into_iter()
        .map(|w| WebhookView {
            when: when(w.created_at),
            channel: w.channel,
            method: w.method,
            path: w.path,
            status: w.status,
            outcome: w.outcome,
            error: w.error,
            headers: serde_json::to_string_pretty(&w.headers).unwrap_or_default(),
            body: w.body.unwrap_or_default(),
        })
        .collect();
    Ok(render(&WebhooksPage {
        layout: Layout::of(&acting, "Webhook log", "operations"),
        entries,
        outcome: q.outcome,
        outcomes,
    }))
}

pub struct AuditView {
    pub when: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub change: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    entries: Vec<AuditView>,
}

pub async fn audit(State(state): State<AppState>, acting: Acting) -> PageResult {
    // The API's handler reads the tenant from its header, as for any caller.
    let mut headers = HeaderMap::new();
    headers.insert(
        TENANT_HEADER,
        HeaderValue::from_str(&acting.ctx.tenant_id.to_string()).expect("a UUID is a header value"),
    );
    let params = api::audit_log::AuditParams {
        limit: Some(SHOWN),
        cursor: None,
        action: None,
        target_kind: None,
        target_id: None,
    };
    let page = api::audit_log::list_audit_log(
        State(state),
        acting.ctx.auth.clone(),
        headers,
        Query(params),
    )
    .await?
    .0;
    let entries = page
        .items
        .into_iter()
        .map(|e| AuditView {
            when: when(e.created_at),
            actor: e.actor_label,
            action: e.action,
            target: format!("{} {}", e.target_kind, e.target_id),
            change: match (&e.before, &e.after) {
                (None, None) => String::new(),
                (before, after) => format!(
                    "{} → {}",
                    before.as_ref().map_or("—".into(), |v| v.to_string()),
                    after.as_ref().map_or("—".into(), |v| v.to_string())
                ),
            },
        })
        .collect();
    Ok(render(&AuditPage {
        layout: Layout::of(&acting, "Audit log", "operations"),
        entries,
    }))
}

pub struct EventView {
    pub when: String,
    pub kind: String,
    pub detail: String,
    pub alerted: bool,
    pub conversation: Option<Uuid>,
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    layout: Layout,
    entries: Vec<EventView>,
    kind: String,
    kinds: [&'static str; 5],
}

#[derive(Deserialize)]
pub struct EventsQuery {
    #[serde(default)]
    kind: String,
}

/// What the engine did that an operator should know about, newest first.
pub async fn events(
    State(state): State<AppState>,
    acting: Acting,
    Query(q): Query<EventsQuery>,
) -> PageResult {
    let kinds = [
        "budget_exhausted",
        "ai_failed",
        "ai_auth_failed",
        "sends_failing",
        "alert_failed",
    ];
    let kind = kinds.iter().find(|k| **k == q.kind).map(|k| k.to_string());
    let page = api::events::list_events(
        State(state),
        acting.ctx.clone(),
        Query(api::events::EventParams {
            limit: Some(SHOWN),
            cursor: None,
            kind: kind.clone(),
        }),
    )
    .await?
    .0;
    let entries = page
        .items
        .into_iter()
        .map(|e| EventView {
            when: when(e.created_at),
            kind: e.kind,
            detail: e.detail,
            alerted: e.alerted,
            conversation: e.conversation_id,
        })
        .collect();
    Ok(render(&EventsPage {
        layout: Layout::of(&acting, "Events", "operations"),
        entries,
        kind: kind.unwrap_or_default(),
        kinds,
    }))
}
