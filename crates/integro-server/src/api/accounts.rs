//! `/api/v1/accounts`: channel accounts (a WhatsApp number, an Instagram or X
//! account, a web channel) belonging to a bot. Secret credentials are sealed
//! and answered masked.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use integro_channels::{Credentials, credential_fields};
use integro_core::{ChannelKind, Permission, Template};
use integro_store::Page;
use integro_store::accounts::{
    self, Account, AccountChanges, AccountFilter, CredentialValues, NewAccount,
};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, TenantCtx};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_account, list_accounts))
        .routes(routes!(get_account, update_account, delete_account))
        .routes(routes!(test_account))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    pub bot_id: Uuid,
    pub kind: ChannelKind,
    pub name: String,
    /// By kind — twilio_whatsapp: account_sid, auth_token, phone_number;
    /// whatsapp_cloud: phone_number_id, access_token, app_secret, verify_token;
    /// instagram: ig_user_id, access_token, app_secret, verify_token;
    /// x: user_id, consumer_key, consumer_secret, access_token, access_token_secret; web: none.
    #[serde(default)]
    pub credentials: BTreeMap<String, String>,
    /// WhatsApp: sent instead of a free-form reply outside the 24-hour window
    /// (a Cloud API template name, or a Twilio Content SID).
    pub template: Option<Template>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
    pub bot_id: Option<Uuid>,
    pub name: Option<String>,
    pub active: Option<bool>,
    /// Replaces the credentials named; others stay.
    pub credentials: Option<BTreeMap<String, String>>,
    pub template: Option<Template>,
}

/// An account and where its provider must send webhooks.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountView {
    #[serde(flatten)]
    pub account: Account,
    /// URLs to configure at the provider.
    pub webhook_urls: BTreeMap<String, String>,
    /// What stands between the provider and those URLs (no public URL set).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccountParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub bot_id: Option<Uuid>,
    pub kind: Option<ChannelKind>,
}

pub fn webhook_urls(base: &str, account: &Account) -> BTreeMap<String, String> {
    let id = account.id;
    let mut urls = BTreeMap::new();
    let mut add = |name: &str, url: String| {
        urls.insert(name.to_string(), url);
    };
    match account.kind {
        ChannelKind::TwilioWhatsapp => {
            add("messages", format!("{base}/webhooks/twilio/{id}"));
            add("status_callback", format!("{base}/webhooks/twilio/{id}"));
        }
        ChannelKind::WhatsappCloud => add("callback", format!("{base}/webhooks/whatsapp/{id}")),
        ChannelKind::Instagram => add("callback", format!("{base}/webhooks/instagram/{id}")),
        ChannelKind::X => {
            add("webhook", format!("{base}/webhooks/x/{id}"));
            add(
                "oauth_callback",
                format!("{base}{}", crate::api::x_connect::CALLBACK_PATH),
            );
        }
        ChannelKind::Web => {
            add("post_messages", format!("{base}/api/v1/web/{id}/messages"));
            add("events", format!("{base}/api/v1/web/{id}/events"));
        }
    }
    urls
}

fn view(state: &AppState, account: Account) -> AccountView {
    AccountView {
        webhook_urls: webhook_urls(&state.config.public_base(), &account),
        warnings: match account.kind {
            ChannelKind::Web => Vec::new(),
            _ => state.config.public_url_warning().into_iter().collect(),
        },
        account,
    }
}

/// Checks credentials against the kind and splits the secret ones out.
fn split_credentials(
    kind: ChannelKind,
    given: &BTreeMap<String, String>,
    partial: bool,
) -> ApiResult<CredentialValues> {
    let checked = if partial {
        let fields = credential_fields(kind);
        for (name, value) in given {
            if !fields.iter().any(|f| f.name == name) {
                return Err(ApiError::invalid_field(
                    &format!("credentials.{name}"),
                    format!("unknown credential for {kind}"),
                ));
            }
            if value.trim().is_empty() {
                return Err(ApiError::invalid_field(
                    &format!("credentials.{name}"),
                    "must not be empty",
                ));
            }
            integro_channels::credentials::check_value(kind, name, value)
                .map_err(|why| ApiError::invalid_field(&format!("credentials.{name}"), why))?;
        }
        Credentials(
            given
                .iter()
                .map(|(k, v)| (k.clone(), v.trim().to_string()))
                .collect(),
        )
    } else {
        Credentials::validate(kind, given)
            .map_err(|(field, msg)| ApiError::invalid_field(&field, msg))?
    };
    let mut values = CredentialValues::default();
    for (name, value) in checked.0 {
        let secret = credential_fields(kind)
            .iter()
            .any(|f| f.name == name && f.secret);
        if secret {
            values.secret.insert(name, value);
        } else {
            values.public.insert(name, value);
        }
    }
    Ok(values)
}

fn external_id(kind: ChannelKind, values: &CredentialValues) -> Option<String> {
    credential_fields(kind)
        .iter()
        .find(|f| f.external_id)
        .and_then(|f| values.public.get(f.name).cloned())
}

fn check_template(kind: ChannelKind, template: &Option<Template>) -> ApiResult<()> {
    match template {
        Some(_) if !kind.has_customer_service_window() => Err(ApiError::invalid_field(
            "template",
            format!("only WhatsApp accounts take a template, not {kind}"),
        )),
        Some(t) if t.name.trim().is_empty() => Err(ApiError::invalid_field(
            "template.name",
            "must not be empty",
        )),
        _ => Ok(()),
    }
}

/// Register a channel account for a bot. The answer gives the webhook URL(s)
/// to configure at the provider.
#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts", security(("bearer" = [])),
    request_body = CreateAccount,
    responses((status = 201, body = AccountView), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create_account(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(req): ApiJson<CreateAccount>,
) -> ApiResult<(StatusCode, Json<AccountView>)> {
    ctx.require(Permission::Manage)?;
    check_template(req.kind, &req.template)?;
    let credentials = split_credentials(req.kind, &req.credentials, false)?;
    let new = NewAccount {
        bot_id: req.bot_id,
        kind: req.kind,
        name: req.name,
        external_id: external_id(req.kind, &credentials),
        credentials,
        template: req.template,
    };
    let mut tx = state.db.begin().await?;
    let account = accounts::create(
        &mut tx,
        &state.keyring,
        ctx.actor(),
        ctx.request_id(),
        ctx.tenant_id,
        new,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(view(&state, account))))
}

/// The tenant's channel accounts (credentials masked).
#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts", security(("bearer" = [])),
    params(AccountParams), responses((status = 200, body = Page<AccountView>)))]
pub(crate) async fn list_accounts(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(p): Query<AccountParams>,
) -> ApiResult<Json<Page<AccountView>>> {
    ctx.require(Permission::Read)?;
    let page = integro_store::PageRequest::parse(p.limit, p.cursor.as_deref())?;
    let filter = AccountFilter {
        bot_id: p.bot_id,
        kind: p.kind,
    };
    let accounts = accounts::list(&state.db, ctx.tenant_id, &filter, &page).await?;
    Ok(Json(accounts.map(|a| view(&state, a))))
}

async fn find(state: &AppState, ctx: &TenantCtx, id: Uuid) -> ApiResult<Account> {
    accounts::get(&state.db, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))
}

/// One channel account.
#[utoipa::path(get, path = "/api/v1/accounts/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Account id")),
    responses((status = 200, body = AccountView), (status = 404, body = Problem)))]
async fn get_account(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<AccountView>> {
    ctx.require(Permission::Read)?;
    Ok(Json(view(&state, find(&state, &ctx, id).await?)))
}

/// Change a channel account: name, bot, active flag, credentials (those named
/// are replaced), template.
#[utoipa::path(patch, path = "/api/v1/accounts/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Account id")), request_body = UpdateAccount,
    responses((status = 200, body = AccountView), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_account(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    ApiJson(req): ApiJson<UpdateAccount>,
) -> ApiResult<Json<AccountView>> {
    ctx.require(Permission::Manage)?;
    let before = find(&state, &ctx, id).await?;
    check_template(before.kind, &req.template)?;
    let credentials = req
        .credentials
        .as_ref()
        .map(|c| split_credentials(before.kind, c, true))
        .transpose()?;
    let changes = AccountChanges {
        bot_id: req.bot_id,
        name: req.name,
        active: req.active,
        external_id: credentials
            .as_ref()
            .and_then(|c| external_id(before.kind, c)),
        credentials,
        template: req.template.map(Some),
    };
    let mut tx = state.db.begin().await?;
    let account = accounts::update(
        &mut tx,
        &state.keyring,
        ctx.actor(),
        ctx.request_id(),
        &before,
        changes,
    )
    .await?;
    tx.commit().await?;
    // Webhooks and workers of this process see the change at once.
    state.accounts.forget(account.id);
    Ok(Json(view(&state, account)))
}

/// Delete a channel account: its webhooks answer 404 from then on and its
/// sealed credentials are erased. An X account's Activity API subscriptions
/// are removed first (best effort).
#[utoipa::path(delete, path = "/api/v1/accounts/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Account id")),
    responses((status = 204), (status = 404, body = Problem)))]
async fn delete_account(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    ctx.require(Permission::Manage)?;
    let account = find(&state, &ctx, id).await?;
    if account.kind == ChannelKind::X {
        crate::api::x_connect::unsubscribe_account(&state, &account).await;
    }
    let mut tx = state.db.begin().await?;
    accounts::delete(&mut tx, ctx.actor(), ctx.request_id(), &account).await?;
    tx.commit().await?;
    state.accounts.forget(account.id);
    Ok(StatusCode::NO_CONTENT)
}

/// What a connection test found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountTest {
    pub ok: bool,
    /// In plain words: whom the provider says the credentials are, or why
    /// it refused them.
    pub message: String,
    /// The provider's error code, when it gave one.
    pub code: Option<String>,
    /// A failure that may pass by itself (a timeout, the provider busy).
    pub retryable: bool,
}

/// Test a channel account's credentials: ask the provider whom they belong
/// to (Twilio: the account; WhatsApp Cloud: the phone number; Instagram and
/// X: the token's own user, which must be the account's). Sends nothing.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/test", tag = "accounts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Account id")),
    responses((status = 200, body = AccountTest), (status = 404, body = Problem)))]
pub(crate) async fn test_account(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<AccountTest>> {
    ctx.require(Permission::Manage)?;
    let account = find(&state, &ctx, id).await?;
    let creds = integro_channels::Credentials(
        accounts::credentials(&state.db, &state.keyring, &account).await?,
    );
    let client = integro_channels::http::client(std::time::Duration::from_secs(15));
    let urls = state.config.provider_urls();
    let fresh = integro_worker::x_tokens::fresh(
        &state.db,
        &state.keyring,
        &client,
        &urls,
        &account,
        &creds,
    )
    .await;
    let found = match fresh {
        Ok((creds, changed)) => {
            if changed {
                state.accounts.forget(account.id);
            }
            integro_channels::check::account(&client, &urls, account.kind, &creds).await
        }
        Err(e) => Err(e),
    };
    Ok(Json(match found {
        Ok(message) => AccountTest {
            ok: true,
            message,
            code: None,
            retryable: false,
        },
        Err(e) => AccountTest {
            ok: false,
            message: e.message,
            code: e.code,
            retryable: e.retryable,
        },
    }))
}
