//! `POST /webhooks/twilio/{account_id}`: WhatsApp messages and status
//! callbacks from Twilio, signed with the account's auth token over the
//! public URL.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use integro_channels::twilio;
use integro_core::ChannelKind;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Hook, Rejection};
use crate::error::Problem;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(twilio_webhook))
}

/// The URL Twilio signed: the configured public URL plus the path and query,
/// or, without one, what the request's Host header says.
fn signed_url(state: &AppState, hook: &Hook) -> String {
    let path_and_query = hook.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    match &state.config.public_url {
        Some(base) => format!("{base}{path_and_query}"),
        None => format!(
            "http://{}{path_and_query}",
            hook.header("host").unwrap_or(&state.config.listen)
        ),
    }
}

/// Twilio WhatsApp webhook: inbound messages and delivery status callbacks
/// (form-encoded, `X-Twilio-Signature`).
#[utoipa::path(post, path = "/webhooks/twilio/{account_id}", tag = "webhooks",
    params(("account_id" = String, Path, description = "Channel account id")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Stored (or a duplicate, ignored)", content_type = "text/xml"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem), (status = 413, body = Problem),
    ))]
async fn twilio_webhook(
    State(state): State<AppState>,
    Path(account_id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut hook = Hook::new("twilio", method, uri, headers);
    let result = handle(&state, &mut hook, &account_id, body).await;
    // An empty TwiML answer: the reply goes out later through the API.
    let ok = super::accepted(
        "text/xml",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>",
    );
    hook.events(&state, result, ok).await
}

async fn handle(
    state: &AppState,
    hook: &mut Hook,
    account_id: &str,
    body: Body,
) -> Result<
    (
        std::sync::Arc<integro_worker::accounts::KnownAccount>,
        Vec<integro_core::InboundEvent>,
    ),
    Rejection,
> {
    let known = hook
        .find_account(state, account_id, &[ChannelKind::TwilioWhatsapp])
        .await?;
    let body = hook.read_body(state, body).await?;
    let is_form = hook.header("content-type").is_some_and(|ct| {
        ct.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    if !is_form {
        return Err(Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Twilio webhooks are application/x-www-form-urlencoded",
        ));
    }
    let params = twilio::parse_form(&body);
    let token = known.creds.get("auth_token").map_err(Rejection::internal)?;
    let signature = hook
        .header("x-twilio-signature")
        .unwrap_or_default()
        .to_string();
    if !twilio::verify_signature(token, &signed_url(state, hook), &params, &signature) {
        return Err(Rejection::bad_signature("X-Twilio-Signature"));
    }
    let events = twilio::parse(&params).map_err(Rejection::malformed)?;
    Ok((known, events))
}
