//! `GET|POST /webhooks/x/{account_id}`: X's CRC challenge and Account
//! Activity events signed with `x-twitter-webhooks-signature` (the consumer
//! secret, over the raw body).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
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

/// X CRC challenge: answers `{"response_token": "sha256=…"}` for `crc_token`.
#[utoipa::path(get, path = "/webhooks/x/{account_id}", tag = "webhooks",
    params(("account_id" = String, Path, description = "Channel account id")),
    responses((status = 200, description = "The response token"), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn x_crc(
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut hook = Hook::new("x", method, uri, headers);
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
        Ok(x::crc_response(secret, &token))
    }
    .await;
    let result =
        result.map(|token| Json(serde_json::json!({ "response_token": token })).into_response());
    hook.handshake(&state, result).await
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
