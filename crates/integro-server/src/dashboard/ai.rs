//! AI: the tenant's LLM credentials (keys never shown; a test that says in
//! plain words how the provider answered), profiles with their fallbacks,
//! and the monthly token budget against this month's use. Every action is
//! the API's handler.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use integro_core::Permission;
use integro_store::ai_credentials::AiCredential;
use integro_store::ai_profiles::AiProfile;
use serde::Deserialize;
use uuid::Uuid;

use super::page::{Layout, PageError, PageResult, first_page, render};
use super::session::Acting;
use crate::api;
use crate::extract::ApiJson;
use crate::state::AppState;

pub struct ProfileView {
    pub name: String,
    pub credential: String,
    pub model: String,
    pub max_output_tokens: u32,
    pub fallback: String,
}

#[derive(Template)]
#[template(path = "ai.html")]
struct AiPage {
    layout: Layout,
    credentials: Vec<AiCredential>,
    profiles: Vec<ProfileView>,
    profile_ids: Vec<(Uuid, String)>,
    month_tokens: i64,
    budget: Option<u64>,
    can_manage: bool,
    /// What the last credential test said.
    tested: Option<String>,
}

async fn ai_page(state: &AppState, acting: &Acting, tested: Option<String>) -> PageResult {
    let ctx = || acting.ctx.clone();
    let credentials =
        api::ai_credentials::list_credentials(State(state.clone()), ctx(), first_page())
            .await?
            .0
            .items;
    let profiles = api::ai_profiles::list_profiles(State(state.clone()), ctx(), first_page())
        .await?
        .0
        .items;
    let usage = api::usage::get_usage(
        State(state.clone()),
        ctx(),
        Query(api::usage::UsageParams {
            bot_id: None,
            from: None,
            to: None,
        }),
    )
    .await?
    .0;
    let name_of = |id: Uuid| {
        credentials
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.name.clone())
            .unwrap_or_default()
    };
    let profile_name = |id: Option<Uuid>, all: &[AiProfile]| {
        id.and_then(|id| all.iter().find(|p| p.id == id))
            .map(|p| p.name.clone())
            .unwrap_or_else(|| "none".into())
    };
    let views = profiles
        .iter()
        .map(|p| ProfileView {
            name: p.name.clone(),
            credential: name_of(p.credential_id),
            model: p.model.clone(),
            max_output_tokens: p.max_output_tokens,
            fallback: profile_name(p.fallback_profile_id, &profiles),
        })
        .collect();
    Ok(render(&AiPage {
        layout: Layout::of(acting, "AI", "ai"),
        profile_ids: profiles.iter().map(|p| (p.id, p.name.clone())).collect(),
        credentials,
        profiles: views,
        month_tokens: usage.month_tokens,
        budget: usage.monthly_token_budget,
        can_manage: acting.ctx.role.allows(Permission::Manage),
        tested,
    }))
}

pub async fn ai(State(state): State<AppState>, acting: Acting) -> PageResult {
    ai_page(&state, &acting, None).await
}

fn optional(text: String) -> Option<String> {
    let text = text.trim().to_string();
    (!text.is_empty()).then_some(text)
}

#[derive(Deserialize)]
pub struct CredentialForm {
    name: String,
    provider: String,
    #[serde(default)]
    api_key: String,
    #[serde(default)]
    base_url: String,
}

pub async fn create_credential(
    State(state): State<AppState>,
    acting: Acting,
    Form(form): Form<CredentialForm>,
) -> PageResult {
    let request = api::ai_credentials::CreateCredential {
        name: form.name,
        provider: form.provider,
        api_key: optional(form.api_key),
        base_url: optional(form.base_url),
    };
    let _ =
        api::ai_credentials::create_credential(State(state), acting.ctx, ApiJson(request)).await?;
    Ok(Redirect::to("/ai").into_response())
}

#[derive(Deserialize)]
pub struct TestForm {
    #[serde(default)]
    model: String,
}

/// Tests a credential (and a model, if given) and shows what the provider said.
pub async fn test_credential(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
    Form(form): Form<TestForm>,
) -> PageResult {
    let body = match optional(form.model) {
        Some(model) => serde_json::json!({ "model": model }).to_string(),
        None => String::new(),
    };
    let result = api::ai_credentials::test_credential(
        State(state.clone()),
        acting.ctx.clone(),
        Path(id),
        axum::body::Bytes::from(body),
    )
    .await?
    .0;
    let said = if result.ok {
        format!("The credential works: {}", result.message)
    } else {
        format!(
            "The credential does not work ({}): {}",
            result.reason, result.message
        )
    };
    ai_page(&state, &acting, Some(said)).await
}

#[derive(Deserialize)]
pub struct ProfileForm {
    name: String,
    credential_id: Uuid,
    model: String,
    #[serde(default)]
    fallback_profile_id: String,
}

pub async fn create_profile(
    State(state): State<AppState>,
    acting: Acting,
    Form(form): Form<ProfileForm>,
) -> PageResult {
    let fallback = match optional(form.fallback_profile_id) {
        Some(id) => Some(
            Uuid::parse_str(&id)
                .map_err(|_| PageError::Invalid("the fallback is not a profile id".into()))?,
        ),
        None => None,
    };
    let request = api::ai_profiles::CreateProfile {
        name: form.name,
        credential_id: form.credential_id,
        model: form.model,
        temperature: None,
        max_output_tokens: None,
        timeout_ms: None,
        fallback_profile_id: fallback,
    };
    let _ = api::ai_profiles::create_profile(State(state), acting.ctx, ApiJson(request)).await?;
    Ok(Redirect::to("/ai").into_response())
}

#[derive(Deserialize)]
pub struct BudgetForm {
    /// Tokens per month; empty for no limit.
    #[serde(default)]
    budget: String,
}

pub async fn set_budget(
    State(state): State<AppState>,
    acting: Acting,
    Form(form): Form<BudgetForm>,
) -> PageResult {
    let budget = match optional(form.budget) {
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            PageError::Invalid("the budget is a whole number of tokens, or empty for none".into())
        })?),
        None => None,
    };
    let changes = serde_json::json!({ "monthly_token_budget": budget });
    let request = crate::extract::parse_json(changes.to_string().as_bytes())?;
    let _ = api::settings::update_settings(State(state), acting.ctx, ApiJson(request)).await?;
    Ok(Redirect::to("/ai").into_response())
}
