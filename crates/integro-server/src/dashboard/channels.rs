//! Channel accounts: each with the URLs to paste at its provider, the guide
//! to follow, its recent webhooks and a connection test; adding one with
//! the fields of its kind. Listing and creating are the API's handlers (validation, sealing
//! the secrets, audit).

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use integro_channels::credentials::credential_fields;
use integro_core::{ChannelKind, Permission};
use integro_store::bots::Bot;
use serde::Deserialize;
use uuid::Uuid;

use super::page::{Layout, PageError, PageResult, render};
use super::session::Acting;
use crate::api;
use crate::api::accounts::{AccountParams, CreateAccount};
use crate::extract::ApiJson;
use crate::state::AppState;

/// The provider guide of each kind, in the repository's `docs/providers/`.
fn guide(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::TwilioWhatsapp => "docs/providers/twilio-whatsapp.md",
        ChannelKind::WhatsappCloud => "docs/providers/whatsapp-cloud.md",
        ChannelKind::Instagram => "docs/providers/instagram.md",
        ChannelKind::X => "docs/providers/x.md",
        ChannelKind::Web => "docs/web-chat.md",
    }
}

pub struct AccountRow {
    pub id: Uuid,
    pub name: String,
    pub kind: &'static str,
    pub bot: String,
    pub active: bool,
    pub urls: Vec<(String, String)>,
    pub guide: &'static str,
    /// The connection test just run on this account.
    pub tested: Option<api::accounts::AccountTest>,
}

#[derive(Template)]
#[template(path = "channels.html")]
struct ChannelsPage {
    layout: Layout,
    accounts: Vec<AccountRow>,
    warnings: Vec<String>,
    kinds: Vec<&'static str>,
    can_manage: bool,
    repository: &'static str,
}

pub async fn channels(State(state): State<AppState>, acting: Acting) -> PageResult {
    channels_page(&state, &acting, None).await
}

/// Tests an account's credentials with its provider and shows the page with
/// what the provider said beside the account.
pub async fn test_channel(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
) -> PageResult {
    let tested = api::accounts::test_account(State(state.clone()), acting.ctx.clone(), Path(id))
        .await?
        .0;
    channels_page(&state, &acting, Some((id, tested))).await
}

async fn channels_page(
    state: &AppState,
    acting: &Acting,
    mut tested: Option<(Uuid, api::accounts::AccountTest)>,
) -> PageResult {
    let params = AccountParams {
        limit: Some(200),
        cursor: None,
        bot_id: None,
        kind: None,
    };
    let views =
        api::accounts::list_accounts(State(state.clone()), acting.ctx.clone(), Query(params))
            .await?
            .0
            .items;
    let bots = super::bots::tenant_bots(state, acting.ctx.tenant_id).await?;
    let mut warnings: Vec<String> = views.iter().flat_map(|v| v.warnings.clone()).collect();
    warnings.dedup();
    let accounts = views
        .into_iter()
        .map(|v| AccountRow {
            id: v.account.id,
            name: v.account.name,
            kind: v.account.kind.as_str(),
            bot: bots
                .iter()
                .find(|b| b.id == v.account.bot_id)
                .map(|b| b.name.clone())
                .unwrap_or_default(),
            active: v.account.active,
            urls: v.webhook_urls.into_iter().collect(),
            guide: guide(v.account.kind),
            tested: tested
                .take_if(|(id, _)| *id == v.account.id)
                .map(|(_, t)| t),
        })
        .collect();
    Ok(render(&ChannelsPage {
        layout: Layout::of(acting, "Channels", "channels"),
        accounts,
        warnings,
        kinds: ChannelKind::ALL
            .into_iter()
            .map(ChannelKind::as_str)
            .collect(),
        can_manage: acting.ctx.role.allows(Permission::Manage),
        repository: env!("CARGO_PKG_REPOSITORY"),
    }))
}

/// A credential field of the new account's form.
pub struct FieldView {
    pub name: &'static str,
    pub secret: bool,
}

#[derive(Template)]
#[template(path = "channel_new.html")]
struct NewChannelPage {
    layout: Layout,
    kind: &'static str,
    fields: Vec<FieldView>,
    bots: Vec<Bot>,
    guide: &'static str,
    repository: &'static str,
}

#[derive(Deserialize)]
pub struct KindQuery {
    kind: String,
}

fn kind(text: &str) -> Result<ChannelKind, PageError> {
    text.parse()
        .map_err(|_| PageError::Invalid(format!("unknown channel kind `{text}`")))
}

/// The form for a new account of one kind, with that kind's fields.
pub async fn new_channel(
    State(state): State<AppState>,
    acting: Acting,
    Query(q): Query<KindQuery>,
) -> PageResult {
    acting.ctx.require(Permission::Manage)?;
    let kind = kind(&q.kind)?;
    Ok(render(&NewChannelPage {
        layout: Layout::of(&acting, "New channel account", "channels"),
        kind: kind.as_str(),
        fields: credential_fields(kind)
            .iter()
            .map(|f| FieldView {
                name: f.name,
                secret: f.secret,
            })
            .collect(),
        bots: super::bots::tenant_bots(&state, acting.ctx.tenant_id).await?,
        guide: guide(kind),
        repository: env!("CARGO_PKG_REPOSITORY"),
    }))
}

/// The form's fields: `kind`, `name`, `bot_id`, and `credential.<name>`.
pub async fn create_channel(
    State(state): State<AppState>,
    acting: Acting,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> PageResult {
    let value = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let kind = kind(&value("kind"))?;
    let bot_id = Uuid::parse_str(&value("bot_id"))
        .map_err(|_| PageError::Invalid("choose the bot that answers".into()))?;
    let credentials: BTreeMap<String, String> = form
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("credential.")
                .map(|n| (n.to_string(), v.clone()))
        })
        .collect();
    let request = CreateAccount {
        bot_id,
        kind,
        name: value("name"),
        credentials,
        template: None,
    };
    let created = api::accounts::create_account(State(state), acting.ctx, ApiJson(request))
        .await?
        .1
        .0;
    Ok(Redirect::to(&format!("/channels#account-{}", created.account.id)).into_response())
}
