//! `GET|POST /webhooks/x/{account_id}`: X's CRC challenge and Account
//! Activity events signed with `x-twitter-webhooks-signature` (the consumer
//! secret, over the raw body).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use integro_channels::x;
use integro_core::ChannelKind;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Hook, Rejection};
use crate::error::Problem;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(x_crc, x_webhook))
}

/// CRC answers per account and minute. X sends a challenge when the webhook
/// is registered or re-validated, and then about hourly.
pub const CRC_PER_MINUTE: u32 = 30;

/// X CRC challenge: answers `{"response_token": "sha256=…"}` for `crc_token`.
///
/// The answer is `x-twitter-webhooks-signature` of the token, so only tokens
/// shaped like X's (up to 128 base64 or base64url characters) are answered,
/// never anything that could be a webhook body; and at most
/// `CRC_PER_MINUTE` a minute per account.
#[utoipa::path(get, path = "/webhooks/x/{account_id}", tag = "webhooks",
    params(("account_id" = String, Path, description = "Channel account id"),
        ("crc_token" = String, Query, description = "X's challenge: 1 to 128 base64 or base64url characters")),
    responses((status = 200, description = "The response token"), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 429, body = Problem, description = "Too many challenges for this account; see `retry-after`")))]
async fn x_crc(
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut hook = Hook::new("x", method, uri, headers);
    let mut retry_after = None;
    let result = async {
        let known = hook.find_account(&state, &id, &[ChannelKind::X]).await?;
        let creds = &known.creds;
        let token = hook
            .query()
            .into_iter()
            .find(|(k, _)| k == "crc_token")
            .map(|(_, v)| v)
            .ok_or_else(|| Rejection::malformed("crc_token is missing"))?;
        let secret = creds.get("consumer_secret").map_err(Rejection::internal)?;
        let answer = x::crc_response(secret, &token).map_err(Rejection::malformed)?;
        if let Err(secs) = state.x_crc.take(&known.account.id).await {
            retry_after = Some(secs);
            return Err(Rejection::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many CRC challenges for this account; retry in {secs} s"),
            ));
        }
        Ok(answer)
    }
    .await;
    let result =
        result.map(|token| Json(serde_json::json!({ "response_token": token })).into_response());
    let mut response = hook.handshake(&state, result).await;
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// X Account Activity events: direct messages and mentions.
#[utoipa::path(post, path = "/webhooks/x/{account_id}", tag = "webhooks",
    params(("account_id" = String, Path, description = "Channel account id")),
    request_body(content = String, content_type = "application/json"),
    responses((status = 200, description = "Stored (or a duplicate, ignored)"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem), (status = 413, body = Problem)))]
async fn x_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut hook = Hook::new("x", method, uri, headers);
    let result = async {
        let known = hook.find_account(&state, &id, &[ChannelKind::X]).await?;
        let (account, creds) = (&known.account, &known.creds);
        let body = hook.read_body(&state, body).await?;
        let secret = creds.get("consumer_secret").map_err(Rejection::internal)?;
        let signature = hook
            .header("x-twitter-webhooks-signature")
            .unwrap_or_default();
        if !x::verify_signature(secret, &body, signature) {
            return Err(Rejection::bad_signature("x-twitter-webhooks-signature"));
        }
        let events = x::parse(&body, account.external_id.as_deref().unwrap_or_default())
            .map_err(Rejection::malformed)?;
        Ok((known.clone(), events))
    }
    .await;
    hook.events(&state, result, StatusCode::OK.into_response())
        .await
}
