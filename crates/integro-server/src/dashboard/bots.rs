//! Bots and their rules: a rules editor with the dry run beside it. Saving
//! and trying go through the API's handlers (validation, audit, the engine).

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use integro_core::Permission;
use integro_store::PageRequest;
use integro_store::bots::{self, Bot};
use integro_store::rules::{self, Rule};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::page::{Layout, PageError, PageResult, render};
use super::session::Acting;
use crate::api;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "bots.html")]
struct BotsPage {
    layout: Layout,
    bots: Vec<Bot>,
}

/// The tenant's bots (a page's worth).
pub(super) async fn tenant_bots(state: &AppState, tenant_id: Uuid) -> Result<Vec<Bot>, PageError> {
    Ok(bots::list(&state.db, tenant_id, &PageRequest::first(200))
        .await?
        .items)
}

pub async fn bots(State(state): State<AppState>, acting: Acting) -> PageResult {
    acting.ctx.require(Permission::Read)?;
    let bots = tenant_bots(&state, acting.ctx.tenant_id).await?;
    Ok(render(&BotsPage {
        layout: Layout::of(&acting, "Bots", "bots"),
        bots,
    }))
}

/// A rule as its form shows it.
pub struct RuleView {
    pub id: Uuid,
    pub name: String,
    pub priority: i64,
    pub match_kind: String,
    pub pattern: String,
    pub keywords: String,
    pub condition: String,
    pub reply: String,
    /// `none`, `handoff`, or `keep` for an action this form does not edit.
    pub action: &'static str,
    pub action_label: String,
    pub active: bool,
}

pub const MATCH_KINDS: [&str; 5] = ["contains", "exact", "starts_with", "any_keyword", "regex"];

fn rule_view(rule: &Rule) -> RuleView {
    let f = &rule.fields;
    let stored = |v: Value| v.as_str().unwrap_or_default().to_string();
    let (action, action_label) = match f
        .action
        .as_ref()
        .map(|a| serde_json::to_value(a).unwrap_or_default())
    {
        None => ("none", String::new()),
        Some(a) if a["type"] == "handoff" => ("handoff", String::new()),
        Some(a) => ("keep", stored(a["type"].clone())),
    };
    RuleView {
        id: rule.id,
        name: f.name.clone().unwrap_or_default(),
        priority: f.priority,
        match_kind: stored(serde_json::to_value(f.match_kind).unwrap_or_default()),
        pattern: f.pattern.clone().unwrap_or_default(),
        keywords: f.keywords.join(", "),
        condition: f.condition.clone().unwrap_or_default(),
        reply: f.reply.clone().unwrap_or_default(),
        action,
        action_label,
        active: f.active,
    }
}

/// What the dry run answered, ready to show.
pub struct TryView {
    pub text: String,
    pub replies: Vec<String>,
    pub rule: Option<String>,
    pub handoff: bool,
    pub trace: Vec<String>,
    pub warnings: Vec<String>,
}

#[derive(Template)]
#[template(path = "rules.html")]
struct RulesPage {
    layout: Layout,
    bot: Bot,
    rules: Vec<RuleView>,
    match_kinds: [&'static str; 5],
    can_manage: bool,
    tried: Option<TryView>,
    test_message: String,
    /// The blank form for a new rule.
    new_rule: RuleView,
    /// Rules past `SHOWN_RULES`, not drawn.
    hidden_rules: usize,
}

/// The dry run's result alone, for htmx.
#[derive(Template)]
#[template(path = "try_result.html")]
struct TryResult {
    tried: Option<TryView>,
}

/// Rules drawn as forms on one page; a bot may hold far more (export them).
const SHOWN_RULES: usize = 200;

pub(super) async fn find_bot(
    state: &AppState,
    acting: &Acting,
    id: Uuid,
) -> Result<Bot, PageError> {
    acting.ctx.require(Permission::Read)?;
    bots::get(&state.db, acting.ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("bot").into())
}

async fn rules_page(
    state: &AppState,
    acting: &Acting,
    bot_id: Uuid,
    tried: Option<TryView>,
) -> PageResult {
    let bot = find_bot(state, acting, bot_id).await?;
    let mut rules = rules::all(&state.db, bot.id).await?;
    // The order they run in: higher priority first, then oldest.
    rules.sort_by_key(|r| std::cmp::Reverse(r.fields.priority));
    let hidden_rules = rules.len().saturating_sub(SHOWN_RULES);
    rules.truncate(SHOWN_RULES);
    Ok(render(&RulesPage {
        layout: Layout::of(acting, format!("Rules of {}", bot.name), "bots"),
        rules: rules.iter().map(rule_view).collect(),
        match_kinds: MATCH_KINDS,
        can_manage: acting.ctx.role.allows(Permission::Manage),
        test_message: tried.as_ref().map(|t| t.text.clone()).unwrap_or_default(),
        tried,
        bot,
        hidden_rules,
        new_rule: RuleView {
            id: Uuid::nil(),
            name: String::new(),
            priority: 0,
            match_kind: "contains".into(),
            pattern: String::new(),
            keywords: String::new(),
            condition: String::new(),
            reply: String::new(),
            action: "none",
            action_label: String::new(),
            active: true,
        },
    }))
}

pub async fn rules(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
) -> PageResult {
    rules_page(&state, &acting, id, None).await
}

#[derive(Deserialize)]
pub struct RuleForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    priority: String,
    #[serde(default)]
    r#match: String,
    #[serde(default)]
    pattern: String,
    #[serde(default)]
    keywords: String,
    #[serde(default)]
    condition: String,
    #[serde(default)]
    reply: String,
    #[serde(default)]
    action: String,
    /// A checkbox: present when ticked.
    active: Option<String>,
}

fn text_or_null(text: &str) -> Value {
    match text.trim() {
        "" => Value::Null,
        t => json!(t),
    }
}

impl RuleForm {
    /// The rule's fields as the API takes them; an action this form does
    /// not edit is left out, so that an update keeps it.
    fn to_json(&self) -> Result<Value, PageError> {
        let priority = match self.priority.trim() {
            "" => 0,
            p => p
                .parse::<i64>()
                .map_err(|_| PageError::Invalid("priority must be a whole number".into()))?,
        };
        let keywords: Vec<&str> = self
            .keywords
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .collect();
        let mut fields = json!({
            "name": text_or_null(&self.name),
            "priority": priority,
            "match": if self.r#match.is_empty() { "contains" } else { self.r#match.as_str() },
            "pattern": text_or_null(&self.pattern),
            "keywords": keywords,
            "condition": text_or_null(&self.condition),
            "reply": text_or_null(&self.reply),
            "active": self.active.is_some(),
        });
        match self.action.as_str() {
            "" | "none" => fields["action"] = Value::Null,
            "handoff" => fields["action"] = json!({"type": "handoff"}),
            "keep" => {}
            other => return Err(PageError::Invalid(format!("unknown action `{other}`"))),
        }
        Ok(fields)
    }
}

pub async fn create_rule(
    State(state): State<AppState>,
    acting: Acting,
    Path(bot_id): Path<Uuid>,
    Form(form): Form<RuleForm>,
) -> PageResult {
    let fields = crate::extract::parse_json(form.to_json()?.to_string().as_bytes())?;
    let _ =
        api::rules::create_rule(State(state), acting.ctx, Path(bot_id), ApiJson(fields)).await?;
    Ok(Redirect::to(&format!("/bots/{bot_id}/rules")).into_response())
}

pub async fn update_rule(
    State(state): State<AppState>,
    acting: Acting,
    Path((bot_id, id)): Path<(Uuid, Uuid)>,
    Form(form): Form<RuleForm>,
) -> PageResult {
    let _ = api::rules::update_rule(
        State(state),
        acting.ctx,
        Path((bot_id, id)),
        ApiJson(form.to_json()?),
    )
    .await?;
    Ok(Redirect::to(&format!("/bots/{bot_id}/rules#rule-{id}")).into_response())
}

pub async fn delete_rule(
    State(state): State<AppState>,
    acting: Acting,
    Path((bot_id, id)): Path<(Uuid, Uuid)>,
) -> PageResult {
    let _ = api::rules::delete_rule(State(state), acting.ctx, Path((bot_id, id))).await?;
    Ok(Redirect::to(&format!("/bots/{bot_id}/rules")).into_response())
}

#[derive(Deserialize)]
pub struct TryForm {
    text: String,
}

/// The dry run: the rules page again, with what the bot would answer. htmx
/// takes the result's part of it; without JavaScript the whole page shows.
pub async fn try_message(
    State(state): State<AppState>,
    acting: Acting,
    Path(bot_id): Path<Uuid>,
    headers: axum::http::HeaderMap,
    Form(form): Form<TryForm>,
) -> PageResult {
    let request = api::bots::TryMessage {
        text: form.text.clone(),
        contact_name: None,
        channel: None,
        conversation_id: None,
    };
    let ctx = acting.ctx.clone();
    let result = api::bots::try_bot(State(state.clone()), ctx, Path(bot_id), ApiJson(request))
        .await?
        .0;
    let rule = match result.rule_id {
        Some(id) => Some(
            rules::get(&state.db, acting.ctx.tenant_id, bot_id, id)
                .await?
                .and_then(|r| r.fields.name)
                .unwrap_or_else(|| id.to_string()),
        ),
        None => None,
    };
    let tried = TryView {
        text: form.text,
        replies: result.replies,
        rule,
        handoff: result.handoff,
        trace: result.trace,
        warnings: result.warnings,
    };
    if headers.contains_key("hx-request") {
        return Ok(render(&TryResult { tried: Some(tried) }));
    }
    rules_page(&state, &acting, bot_id, Some(tried)).await
}

/// The bot's rules as a YAML file to download (the API's export).
pub async fn export_rules(
    State(state): State<AppState>,
    acting: Acting,
    Path(bot_id): Path<Uuid>,
) -> PageResult {
    let mut response = api::rules::export_rules(State(state), acting.ctx, Path(bot_id)).await?;
    response.headers_mut().insert(
        axum::http::header::CONTENT_DISPOSITION,
        axum::http::HeaderValue::from_static("attachment; filename=\"rules.yaml\""),
    );
    Ok(response)
}

#[derive(Deserialize)]
pub struct ImportForm {
    yaml: String,
}

/// Replaces every rule with a YAML document (the API's import: all valid,
/// or nothing changes).
pub async fn import_rules(
    State(state): State<AppState>,
    acting: Acting,
    Path(bot_id): Path<Uuid>,
    Form(form): Form<ImportForm>,
) -> PageResult {
    let _ = api::rules::import_rules(
        State(state),
        acting.ctx,
        Path(bot_id),
        axum::body::Bytes::from(form.yaml),
    )
    .await?;
    Ok(Redirect::to(&format!("/bots/{bot_id}/rules")).into_response())
}
