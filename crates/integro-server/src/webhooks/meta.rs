//! `GET|POST /webhooks/whatsapp/{account_id}` and
//! `GET|POST /webhooks/instagram/{account_id}`: Meta's subscription handshake
//! against the account's verify token, and events signed with
//! `X-Hub-Signature-256` (the account's app secret, over the raw body).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use integro_channels::{instagram, meta, whatsapp_cloud};
use integro_core::ChannelKind;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Hook, Rejection};
use crate::error::Problem;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(whatsapp_handshake, whatsapp_webhook))
        .routes(routes!(instagram_handshake, instagram_webhook))
}

/// WhatsApp Cloud API subscription handshake (`hub.mode`, `hub.verify_token`, `hub.challenge`).
#[utoipa::path(get, path = "/webhooks/whatsapp/{account_id}", tag = "webhooks",
    params(("account_id" = String, Path, description = "Channel account id")),
    responses((status = 200, description = "The challenge", body = String), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn whatsapp_handshake(
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    handshake(
        state,
        "whatsapp",
        ChannelKind::WhatsappCloud,
        id,
        method,
        uri,
        headers,
    )
    .await
}

/// WhatsApp Cloud API events: messages, statuses.
#[utoipa::path(post, path = "/webhooks/whatsapp/{account_id}", tag = "webhooks",
    params(("account_id" = String, Path, description = "Channel account id")),
    request_body(content = String, content_type = "application/json"),
    responses((status = 200, description = "Stored (or a duplicate, ignored)"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem), (status = 413, body = Problem)))]
async fn whatsapp_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    events(
        state,
        "whatsapp",
        ChannelKind::WhatsappCloud,
        id,
        method,
        uri,
        headers,
        body,
    )
    .await
}

/// Instagram subscription handshake.
#[utoipa::path(get, path = "/webhooks/instagram/{account_id}", tag = "webhooks",
    params(("account_id" = String, Path, description = "Channel account id")),
    responses((status = 200, description = "The challenge", body = String), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn instagram_handshake(
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    handshake(
        state,
        "instagram",
        ChannelKind::Instagram,
        id,
        method,
        uri,
        headers,
    )
    .await
}

/// Instagram messaging events: messages, read receipts (echoes are ignored).
#[utoipa::path(post, path = "/webhooks/instagram/{account_id}", tag = "webhooks",
    params(("account_id" = String, Path, description = "Channel account id")),
    request_body(content = String, content_type = "application/json"),
    responses((status = 200, description = "Stored (or a duplicate, ignored)"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem), (status = 413, body = Problem)))]
async fn instagram_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    events(
        state,
        "instagram",
        ChannelKind::Instagram,
        id,
        method,
        uri,
        headers,
        body,
    )
    .await
}

async fn handshake(
    state: AppState,
    channel: &'static str,
    kind: ChannelKind,
    id: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut hook = Hook::new(channel, method, uri, headers);
    let result = async {
        let known = hook.find_account(&state, &id, &[kind]).await?;
        let creds = &known.creds;
        let token = creds.get("verify_token").map_err(Rejection::internal)?;
        meta::handshake(&hook.query(), token).ok_or_else(|| {
            Rejection::new(
                StatusCode::FORBIDDEN,
                "invalid_verify_token",
                "hub.mode or hub.verify_token is wrong",
            )
        })
    }
    .await;
    let result = result.map(|challenge| (StatusCode::OK, challenge).into_response());
    hook.handshake(&state, result).await
}

#[allow(clippy::too_many_arguments)]
async fn events(
    state: AppState,
    channel: &'static str,
    kind: ChannelKind,
    id: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut hook = Hook::new(channel, method, uri, headers);
    let result = async {
        let known = hook.find_account(&state, &id, &[kind]).await?;
        let (account, creds) = (&known.account, &known.creds);
        let body = hook.read_body(&state, body).await?;
        let secret = creds.get("app_secret").map_err(Rejection::internal)?;
        let signature = hook.header("x-hub-signature-256").unwrap_or_default();
        if !meta::verify_signature(secret, &body, signature) {
            return Err(Rejection::bad_signature("X-Hub-Signature-256"));
        }
        let external = account.external_id.clone().unwrap_or_default();
        let events = match kind {
            ChannelKind::Instagram => instagram::parse(&body, &external),
            _ => whatsapp_cloud::parse(&body, &external),
        }
        .map_err(Rejection::malformed)?;
        Ok((known.clone(), events))
    }
    .await;
    let ok = super::accepted("text/plain; charset=utf-8", "EVENT_RECEIVED");
    hook.events(&state, result, ok).await
}
