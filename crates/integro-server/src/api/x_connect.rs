//! Connecting an X account with OAuth 2.0 and PKCE: `POST
//! /api/v1/accounts/{id}/x/connect` answers the URL where the account's
//! owner authorizes the tenant's X app; X sends the browser back to
//! `GET /oauth/x/callback`, which exchanges the code, learns which user
//! authorized (`/2/users/me`) and stores the tokens, sealed, on the account
//! (audited as the person who started the connection), then subscribes the
//! account to its events on the app's webhook (`POST
//! /api/v1/accounts/{id}/x/subscribe` does that again on demand).

use askama::Template;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use integro_channels::credentials::X_RECEIVE;
use integro_channels::x::{OAUTH2_ACCESS_TOKEN, OAUTH2_EXPIRES_AT, OAUTH2_REFRESH_TOKEN};
use integro_channels::{Credentials, x_activity, x_oauth};
use integro_core::{ChannelKind, Permission};
use integro_store::accounts::{self, AccountChanges, CredentialValues};
use integro_store::db::{from_ms, now_ms};
use integro_store::oauth_states::{self, Pending};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::TenantCtx;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(connect_x))
        .routes(routes!(subscribe_x))
}

/// The callback's path: register `{INTEGRO_PUBLIC_URL}/oauth/x/callback` on
/// the X app.
pub const CALLBACK_PATH: &str = "/oauth/x/callback";

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct XConnect {
    /// Open it in a browser signed in to the X account the bot speaks for.
    pub authorize_url: String,
    /// Where X sends the browser back; it must be registered on the app.
    pub redirect_uri: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Start connecting an X account with OAuth 2.0 (PKCE). The account needs
/// the X app's `client_id` (and `client_secret` for a confidential app).
/// Answers the authorize URL, valid 10 minutes, usable once.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/x/connect", tag = "accounts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Account id")),
    responses((status = 200, body = XConnect), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn connect_x(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<XConnect>> {
    ctx.require(Permission::Manage)?;
    let account = accounts::get(&state.db, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    if account.kind != ChannelKind::X {
        return Err(ApiError::invalid_field(
            "id",
            format!(
                "only X accounts connect with OAuth 2.0, not {}",
                account.kind
            ),
        ));
    }
    let Some(client_id) = account.credentials.get("client_id").cloned() else {
        return Err(ApiError::invalid_field(
            "credentials.client_id",
            "set the X app's OAuth 2.0 client id (and client secret) on the account first",
        ));
    };
    let redirect_uri = format!("{}{CALLBACK_PATH}", state.config.public_base());
    let (verifier, oauth_state) = x_oauth::new_verifier_and_state();
    let pending = Pending {
        tenant_id: ctx.tenant_id,
        account_id: id,
        redirect_uri: redirect_uri.clone(),
        actor: ctx.actor().clone(),
        verifier: verifier.clone(),
    };
    let mut tx = state.db.begin().await?;
    oauth_states::start(&mut tx, &state.keyring, &pending, &oauth_state).await?;
    tx.commit().await?;
    Ok(Json(XConnect {
        authorize_url: x_oauth::authorize_url(&client_id, &redirect_uri, &oauth_state, &verifier),
        redirect_uri,
        expires_at: from_ms(now_ms() + oauth_states::TTL_MS),
    }))
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    state: String,
    code: Option<String>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "x_connected.html")]
struct Outcome {
    connected: bool,
    title: &'static str,
    detail: String,
}

fn outcome(status: StatusCode, title: &'static str, detail: String) -> Response {
    crate::dashboard::render_with(
        status,
        &Outcome {
            connected: status.is_success(),
            title,
            detail,
        },
    )
}

/// Where X sends the browser back: the state (taken once) names the
/// authorization; the code becomes the account's tokens.
pub async fn callback(State(state): State<AppState>, Query(q): Query<CallbackQuery>) -> Response {
    let pending = match oauth_states::take(&state.db, &state.keyring, &q.state).await {
        Ok(Some(pending)) => pending,
        Ok(None) => {
            return outcome(
                StatusCode::BAD_REQUEST,
                "This authorization is unknown or expired",
                "Start again from the account's page: an authorization link works once, for 10 minutes.".into(),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "reading an OAuth state failed");
            return outcome(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Try again.".into(),
            );
        }
    };
    if let Some(error) = q.error {
        return outcome(
            StatusCode::BAD_REQUEST,
            "X did not authorize the app",
            format!(
                "X answered `{}`. Start again to retry.",
                error.chars().take(100).collect::<String>()
            ),
        );
    }
    let Some(code) = q.code.filter(|c| !c.is_empty() && c.len() <= 2000) else {
        return outcome(
            StatusCode::BAD_REQUEST,
            "X sent no code",
            "Start again to retry.".into(),
        );
    };
    match complete(&state, &pending, &code).await {
        Ok((name, username, subscribed)) => outcome(
            StatusCode::OK,
            "Connected",
            format!(
                "The account {name} now speaks as @{username} on X. {} X asks bots to show the \
                 \"Automated\" label: turn it on in the account's settings, and say in its bio \
                 who runs it.",
                subscribed.unwrap_or_default()
            )
            .trim_end()
            .to_string(),
        ),
        Err((status, detail)) => outcome(status, "The connection failed", detail),
    }
}

async fn complete(
    state: &AppState,
    pending: &Pending,
    code: &str,
) -> Result<(String, String, Option<String>), (StatusCode, String)> {
    let internal = |e: integro_store::StoreError| {
        tracing::error!(error = %e, "storing an X connection failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Storing the tokens failed; try again.".to_string(),
        )
    };
    let account = accounts::get(&state.db, pending.tenant_id, pending.account_id)
        .await
        .map_err(internal)?
        .ok_or((
            StatusCode::NOT_FOUND,
            "The account was deleted.".to_string(),
        ))?;
    let creds = Credentials(
        accounts::credentials(&state.db, &state.keyring, &account)
            .await
            .map_err(internal)?,
    );
    let client = integro_channels::http::client(std::time::Duration::from_secs(15));
    let urls = state.config.provider_urls();
    let refused =
        |e: integro_core::SendError| (StatusCode::BAD_GATEWAY, format!("X refused: {}", e.message));
    let tokens = x_oauth::exchange_code(
        &client,
        &urls,
        &creds,
        code,
        &pending.redirect_uri,
        &pending.verifier,
    )
    .await
    .map_err(refused)?;
    let (user_id, username) = x_oauth::me(&client, &urls, &tokens.access_token)
        .await
        .map_err(refused)?;
    let lifetime = tokens.expires_in.unwrap_or(7200) as i64;
    let mut values = CredentialValues::default();
    values
        .secret
        .insert(OAUTH2_ACCESS_TOKEN.into(), tokens.access_token);
    if let Some(refresh) = tokens.refresh_token {
        values.secret.insert(OAUTH2_REFRESH_TOKEN.into(), refresh);
    }
    values.public.insert("user_id".into(), user_id.clone());
    values.public.insert(
        OAUTH2_EXPIRES_AT.into(),
        (now_ms() + lifetime * 1000).to_string(),
    );
    let changes = AccountChanges {
        bot_id: None,
        name: None,
        active: None,
        external_id: Some(user_id),
        credentials: Some(values),
        template: None,
    };
    let mut tx = state.db.begin().await.map_err(internal)?;
    let updated = accounts::update(
        &mut tx,
        &state.keyring,
        &pending.actor,
        None,
        &account,
        changes,
    )
    .await
    .map_err(internal)?;
    tx.commit()
        .await
        .map_err(|e| internal(integro_store::StoreError::from(e)))?;
    state.accounts.forget(updated.id);
    if updated.credentials.get(X_RECEIVE).map(String::as_str) == Some("polling") {
        return Ok((updated.name, username, None));
    }
    // Connected either way; a failed subscription is said and can be retried.
    let subscribed = match subscribe_account(state, &updated).await {
        Ok(s) => format!(
            "It receives direct messages, mentions and replies on webhook {}.",
            s.webhook_id
        ),
        Err(e) => format!(
            "Subscribing it to its events failed ({}): retry with POST /api/v1/accounts/{}/x/subscribe.",
            e.message, updated.id
        ),
    };
    Ok((updated.name, username, Some(subscribed)))
}

/// One of the account's X Activity API subscriptions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct XSubscription {
    pub event_type: String,
    pub subscription_id: String,
    /// Made now (else it existed).
    pub created: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct XSubscriptions {
    /// The app's webhook for this account's URL.
    pub webhook_id: String,
    /// The webhook was registered now (X checked it with a CRC).
    pub webhook_registered: bool,
    pub subscriptions: Vec<XSubscription>,
}

/// Registers the account's webhook URL with its X app if needed and
/// subscribes the account to direct messages, mentions and replies to its
/// posts, skipping what exists.
async fn subscribe_account(
    state: &AppState,
    account: &integro_store::accounts::Account,
) -> Result<XSubscriptions, integro_core::SendError> {
    let stored = Credentials(
        accounts::credentials(&state.db, &state.keyring, account)
            .await
            .map_err(|e| integro_core::SendError::retryable(None, e.to_string()))?,
    );
    let client = integro_channels::http::client(std::time::Duration::from_secs(15));
    let urls = state.config.provider_urls();
    let (creds, changed) = integro_worker::x_tokens::fresh(
        &state.db,
        &state.keyring,
        &client,
        &urls,
        account,
        &stored,
    )
    .await?;
    if changed {
        state.accounts.forget(account.id);
    }
    let user_id = creds.require("user_id")?.to_string();
    let app = x_activity::app_token(&client, &urls, &creds).await?;
    let url = format!("{}/webhooks/x/{}", state.config.public_base(), account.id);
    let (webhook_id, webhook_registered) =
        x_activity::ensure_webhook(&client, &urls, &app, &url).await?;
    let existing = x_activity::subscribed(&client, &urls, &app, &user_id, &webhook_id).await?;
    let mut subscriptions = Vec::new();
    for event in x_activity::EVENT_TYPES {
        if let Some((_, id)) = existing.iter().find(|(e, _)| e == event) {
            subscriptions.push(XSubscription {
                event_type: event.into(),
                subscription_id: id.clone(),
                created: false,
            });
            continue;
        }
        let tag = x_activity::tag_of(account.id);
        let id = x_activity::subscribe(&client, &urls, &creds, event, &webhook_id, &tag).await?;
        subscriptions.push(XSubscription {
            event_type: event.into(),
            subscription_id: id,
            created: true,
        });
    }
    Ok(XSubscriptions {
        webhook_id,
        webhook_registered,
        subscriptions,
    })
}

/// Before an X account is deleted: removes the Activity API subscriptions
/// Integro made for it (tagged with its id), so that they neither count
/// against the app's limit nor bring its events to a webhook that answers
/// 404. Best effort: X unreachable or refusing does not stop the deletion;
/// it is logged and the subscriptions can be removed in X's console.
pub(crate) async fn unsubscribe_account(
    state: &AppState,
    account: &integro_store::accounts::Account,
) {
    let removed = async {
        let creds = Credentials(
            accounts::credentials(&state.db, &state.keyring, account)
                .await
                .map_err(|e| integro_core::SendError::retryable(None, e.to_string()))?,
        );
        if creds.get(OAUTH2_ACCESS_TOKEN).is_err() {
            // Only an OAuth 2.0 connection subscribes.
            return Ok(0);
        }
        let client = integro_channels::http::client(std::time::Duration::from_secs(10));
        let urls = state.config.provider_urls();
        let app = x_activity::app_token(&client, &urls, &creds).await?;
        x_activity::unsubscribe(&client, &urls, &app, &x_activity::tag_of(account.id)).await
    }
    .await;
    match removed {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(account = %account.id, subscriptions = n, "X subscriptions removed")
        }
        Err(e) => tracing::warn!(account = %account.id, error = %e.message,
            "removing the X account's subscriptions failed; remove them in X's developer console"),
    }
}

/// Register the account's webhook URL with its X app (if needed) and
/// subscribe the account to its direct messages, mentions and replies
/// (X Activity API). Needs the account's OAuth 2.0 connection, and
/// `INTEGRO_PUBLIC_URL` reachable by X (X checks the webhook at once).
#[utoipa::path(post, path = "/api/v1/accounts/{id}/x/subscribe", tag = "accounts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Account id")),
    responses((status = 200, body = XSubscriptions), (status = 404, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem)))]
pub(crate) async fn subscribe_x(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<XSubscriptions>> {
    ctx.require(Permission::Manage)?;
    let account = accounts::get(&state.db, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    if account.kind != ChannelKind::X {
        return Err(ApiError::invalid_field("id", "not an X account"));
    }
    if account.credentials.get(X_RECEIVE).map(String::as_str) == Some("polling") {
        return Err(ApiError::invalid_field(
            "credentials.receive",
            "the account is polled; set receive to webhook first",
        ));
    }
    subscribe_account(&state, &account)
        .await
        .map(Json)
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "provider_refused",
                format!("X refused: {}", e.message),
            )
        })
}
