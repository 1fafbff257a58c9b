//! A bot's page: its name, fallback reply, AI profile, persona and settings,
//! saved through the API's handlers (`PATCH /api/v1/bots/{id}`,
//! `PUT /api/v1/bots/{id}/persona`), which validate and audit.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use integro_core::Permission;
use integro_engine::prompt::Persona;
use integro_store::bots::{Bot, BotSettings};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::bots::find_bot;
use super::page::{Layout, PageError, PageResult, first_page, render};
use super::session::Acting;
use crate::api;
use crate::extract::ApiJson;
use crate::state::AppState;

/// A number setting as its field shows it.
pub struct NumberField {
    pub name: &'static str,
    pub label: &'static str,
    pub value: String,
    pub hint: &'static str,
}

#[derive(Template)]
#[template(path = "bot.html")]
struct BotPage {
    layout: Layout,
    bot: Bot,
    persona: Persona,
    interests: String,
    profiles: Vec<(Uuid, String)>,
    numbers: Vec<NumberField>,
    blocked_phrases: String,
    can_manage: bool,
}

/// The whole-number settings the form edits: field name, label, hint.
const NUMBERS: [(&str, &str, &str); 8] = [
    (
        "history_messages",
        "History messages",
        "earlier messages the LLM sees",
    ),
    (
        "history_tokens",
        "History tokens",
        "at most this many tokens of history",
    ),
    (
        "conversation_expiry_minutes",
        "Conversation expiry (minutes)",
        "a conversation ends after this long without a message",
    ),
    (
        "burst_window_ms",
        "Burst window (ms)",
        "messages this close together are answered in one LLM turn",
    ),
    (
        "rate_limit_messages",
        "Rate limit (messages)",
        "per contact and window",
    ),
    (
        "rate_limit_window_seconds",
        "Rate limit window (seconds)",
        "",
    ),
    ("max_input_chars", "Longest message read (characters)", ""),
    (
        "handoff_timeout_minutes",
        "Hand-off timeout (minutes)",
        "empty: a handed-off conversation stays with people",
    ),
];

fn number_of(settings: &BotSettings, name: &str) -> String {
    let value = serde_json::to_value(settings).unwrap_or_default();
    match &value[name] {
        Value::Null => String::new(),
        v => v.to_string(),
    }
}

pub async fn bot_page(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
) -> PageResult {
    let bot = find_bot(&state, &acting, id).await?;
    let mut profiles: Vec<(Uuid, String)> =
        api::ai_profiles::list_profiles(State(state.clone()), acting.ctx.clone(), first_page())
            .await?
            .0
            .items
            .into_iter()
            .map(|p| (p.id, format!("{} ({})", p.name, p.model)))
            .collect();
    // The bot's own profile is always a choice, or saving would unset it.
    if let Some(id) = bot.ai_profile_id
        && !profiles.iter().any(|(p, _)| *p == id)
    {
        let profile = integro_store::ai_profiles::get(&state.db, acting.ctx.tenant_id, id).await?;
        profiles.push((
            id,
            profile.map_or_else(|| id.to_string(), |p| format!("{} ({})", p.name, p.model)),
        ));
    }
    let persona = bot.persona_or_default();
    Ok(render(&BotPage {
        layout: Layout::of(&acting, bot.name.clone(), "bots"),
        interests: persona.interests.join(", "),
        persona,
        profiles,
        numbers: NUMBERS
            .iter()
            .map(|(name, label, hint)| NumberField {
                name,
                label,
                value: number_of(&bot.settings, name),
                hint,
            })
            .collect(),
        blocked_phrases: bot.settings.blocked_phrases.join("\n"),
        can_manage: acting.ctx.role.allows(Permission::Manage),
        bot,
    }))
}

#[derive(Deserialize)]
pub struct BotForm {
    name: String,
    #[serde(default)]
    description: String,
    fallback_reply: String,
    /// Present when the box is ticked.
    active: Option<String>,
    #[serde(default)]
    ai_profile_id: String,
    #[serde(default)]
    error_reply: String,
    #[serde(default)]
    rate_limit_notice: String,
    #[serde(default)]
    time_zone: String,
    #[serde(default)]
    blocked_phrases: String,
    #[serde(default)]
    history_messages: String,
    #[serde(default)]
    history_tokens: String,
    #[serde(default)]
    conversation_expiry_minutes: String,
    #[serde(default)]
    burst_window_ms: String,
    #[serde(default)]
    rate_limit_messages: String,
    #[serde(default)]
    rate_limit_window_seconds: String,
    #[serde(default)]
    max_input_chars: String,
    #[serde(default)]
    handoff_timeout_minutes: String,
}

impl BotForm {
    fn number(&self, name: &str) -> &str {
        match name {
            "history_messages" => &self.history_messages,
            "history_tokens" => &self.history_tokens,
            "conversation_expiry_minutes" => &self.conversation_expiry_minutes,
            "burst_window_ms" => &self.burst_window_ms,
            "rate_limit_messages" => &self.rate_limit_messages,
            "rate_limit_window_seconds" => &self.rate_limit_window_seconds,
            "max_input_chars" => &self.max_input_chars,
            _ => &self.handoff_timeout_minutes,
        }
    }

    /// The API's request: a blank number keeps its setting, except the
    /// hand-off timeout, where blank means none.
    fn to_json(&self) -> Result<Value, PageError> {
        let mut settings = Map::new();
        for (name, label, _) in NUMBERS {
            let text = self.number(name).trim();
            if text.is_empty() {
                if name == "handoff_timeout_minutes" {
                    settings.insert(name.into(), Value::Null);
                }
                continue;
            }
            let n: u32 = text
                .parse()
                .map_err(|_| PageError::Invalid(format!("{label} must be a whole number")))?;
            settings.insert(name.into(), n.into());
        }
        for (name, text) in [
            ("error_reply", &self.error_reply),
            ("rate_limit_notice", &self.rate_limit_notice),
            ("time_zone", &self.time_zone),
        ] {
            if !text.trim().is_empty() {
                settings.insert(name.into(), text.trim().into());
            }
        }
        let phrases: Vec<&str> = self
            .blocked_phrases
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        settings.insert("blocked_phrases".into(), json!(phrases));
        let profile = match self.ai_profile_id.trim() {
            "" => Value::Null,
            id => Uuid::parse_str(id)
                .map(|id| json!(id))
                .map_err(|_| PageError::Invalid("choose an AI profile from the list".into()))?,
        };
        let description = self.description.trim();
        Ok(json!({
            "name": self.name.trim(),
            "description": description,
            "fallback_reply": self.fallback_reply,
            "active": self.active.is_some(),
            "ai_profile_id": profile,
            "settings": settings,
        }))
    }
}

pub async fn update_bot(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
    Form(form): Form<BotForm>,
) -> PageResult {
    let request = crate::extract::parse_json(form.to_json()?.to_string().as_bytes())?;
    let _ = api::bots::update_bot(State(state), acting.ctx, Path(id), ApiJson(request)).await?;
    Ok(Redirect::to(&format!("/bots/{id}")).into_response())
}

#[derive(Deserialize)]
pub struct PersonaForm {
    name: String,
    #[serde(default)]
    tone: String,
    #[serde(default)]
    interests: String,
    #[serde(default)]
    language: String,
    #[serde(default)]
    system_prompt: String,
}

fn optional(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

pub async fn update_persona(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
    Form(form): Form<PersonaForm>,
) -> PageResult {
    let persona = Persona {
        name: form.name.trim().to_string(),
        tone: optional(&form.tone),
        interests: form
            .interests
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(String::from)
            .collect(),
        language: optional(&form.language),
        system_prompt: optional(&form.system_prompt),
    };
    let _ = api::bots::put_persona(State(state), acting.ctx, Path(id), ApiJson(persona)).await?;
    Ok(Redirect::to(&format!("/bots/{id}#persona")).into_response())
}
