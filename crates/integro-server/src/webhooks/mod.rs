//! Webhook ingress, one module per channel. The request path is: find the
//! account, verify the signature with its secret, parse into events, store
//! them and their jobs in one transaction, answer. Nothing slower: providers
//! and the reply pipeline are the workers' business. Every request, accepted
//! or not, lands in the webhook log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use integro_core::{ChannelKind, InboundEvent};
use integro_store::webhook_logs::{self, NewWebhookLog};
use integro_worker::accounts::KnownAccount;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use crate::error::{ApiError, problem, problem_response};
use crate::extract::REQUEST_ID_HEADER;
use crate::ingest::{Item, Webhook};
use crate::state::AppState;

pub mod meta;
pub mod refusals;
pub mod twilio;
pub mod x;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(twilio::router())
        .merge(meta::router())
        .merge(x::router())
}

/// A webhook's 200: `body` as `content_type`. Its header map is made with
/// room for the one header the webhooks' middleware adds (the request id,
/// ADR 0021) at once: grown from empty under the whole stack, it was
/// reallocated on the way out of nearly every webhook.
pub fn accepted(content_type: &'static str, body: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    *headers = HeaderMap::with_capacity(2);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Words in a header's name that say its value is a secret (or proves
/// one): such values are never written to the log.
const SECRET_WORDS: &[&str] = &[
    "auth",
    "cookie",
    "key",
    "password",
    "secret",
    "session",
    "signature",
    "token",
];

/// Whether a header's value is kept out of the log, by its (lower-case) name.
fn is_secret_header(name: &str) -> bool {
    SECRET_WORDS.iter().any(|word| name.contains(word))
}

/// A body as text for the log: as it is when it is UTF-8, otherwise with
/// U+FFFD in place of what is not. Checked by `str::from_utf8` first, whose
/// ASCII fast path `from_utf8_lossy`'s scan lacks (ADR 0029).
/// U+0000, which PostgreSQL cannot store, becomes U+FFFD too.
fn text_of(body: &[u8]) -> String {
    let mut text = match std::str::from_utf8(body) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    integro_core::channel::replace_nul(&mut text);
    text
}

/// One webhook request on its way through.
pub struct Hook {
    pub channel: &'static str,
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub started: Instant,
    pub account: Option<Arc<KnownAccount>>,
    pub body: Option<Bytes>,
}

impl Hook {
    pub fn new(channel: &'static str, method: Method, uri: Uri, headers: HeaderMap) -> Hook {
        Hook {
            channel,
            method,
            uri,
            headers,
            started: Instant::now(),
            account: None,
            body: None,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The query string's parameters, decoded.
    pub fn query(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect()
    }

    /// The account named in the path, if it exists and is of this channel,
    /// with its credentials.
    pub async fn find_account(
        &mut self,
        state: &AppState,
        id: &str,
        kinds: &[ChannelKind],
    ) -> Result<Arc<KnownAccount>, Rejection> {
        let not_found = || {
            Rejection::new(
                StatusCode::NOT_FOUND,
                "unknown_account",
                "no channel account of this kind has that id",
            )
        };
        let id = Uuid::parse_str(id).map_err(|_| not_found())?;
        let found = state
            .accounts
            .find(&state.db, &state.keyring, id)
            .await
            .map_err(Rejection::internal)?;
        match found {
            Some(known) if kinds.contains(&known.account.kind) => {
                self.account = Some(known.clone());
                Ok(known)
            }
            _ => Err(not_found()),
        }
    }

    /// The body, up to the configured limit.
    pub async fn read_body(&mut self, state: &AppState, body: Body) -> Result<Bytes, Rejection> {
        match axum::body::to_bytes(body, state.config.body_limit_bytes).await {
            Ok(bytes) => {
                self.body = Some(bytes.clone());
                Ok(bytes)
            }
            Err(_) => Err(Rejection::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the webhook body is larger than the configured limit",
            )),
        }
    }

    fn log(
        &self,
        status: StatusCode,
        outcome: &'static str,
        error: Option<String>,
    ) -> NewWebhookLog {
        // Sorted by name; of a repeated header, the last value.
        let headers: BTreeMap<&str, &str> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let shown = if is_secret_header(name.as_str()) {
                    "[redacted]"
                } else {
                    value.to_str().unwrap_or("[binary]")
                };
                (name.as_str(), shown)
            })
            .collect();
        NewWebhookLog {
            tenant_id: self.account.as_ref().map(|k| k.account.tenant_id),
            account_id: self.account.as_ref().map(|k| k.account.id),
            channel: self.channel.to_string(),
            method: self.method.to_string(),
            path: self.uri.path().to_string(),
            headers_json: serde_json::to_string(&headers).expect("strings serialise"),
            body: self.body.as_ref().map(|b| text_of(b)),
            status: status.as_u16(),
            duration_us: self.started.elapsed().as_micros() as i64,
            outcome,
            error,
            request_id: self.header(REQUEST_ID_HEADER).map(String::from),
        }
    }

    /// Records a refusal and answers it.
    pub async fn reject(self, state: &AppState, rejection: Rejection) -> Response {
        let log = self.log(
            rejection.status,
            if rejection.status.is_server_error() {
                "error"
            } else {
                "rejected"
            },
            Some(rejection.detail.clone()),
        );
        if let Err(e) = webhook_logs::record(&state.db, log).await {
            tracing::error!(error = %e, "could not record a refused webhook");
        }
        tracing::warn!(channel = self.channel, status = rejection.status.as_u16(), reason = %rejection.detail, "webhook refused");
        metrics::counter!("integro_webhooks_total", "channel" => self.channel, "outcome" => "rejected").increment(1);
        problem_response(
            rejection.status,
            &problem(
                rejection.status,
                rejection.code,
                &rejection.detail,
                Vec::new(),
            ),
        )
    }

    /// Answers a handshake (subscription verification, CRC), or its refusal.
    pub async fn handshake(
        self,
        state: &AppState,
        result: Result<Response, Rejection>,
    ) -> Response {
        match result {
            Ok(response) => self.verified(state, response).await,
            Err(rejection) => self.reject(state, rejection).await,
        }
    }

    /// Stores the events and answers `ok`, or answers the refusal.
    pub async fn events(
        self,
        state: &AppState,
        result: Result<(Arc<KnownAccount>, Vec<InboundEvent>), Rejection>,
        ok: Response,
    ) -> Response {
        match result {
            Ok((account, events)) => self.accept(state, account, events, ok).await,
            Err(rejection) => self.reject(state, rejection).await,
        }
    }

    async fn verified(self, state: &AppState, response: Response) -> Response {
        if let Err(e) =
            webhook_logs::record(&state.db, self.log(StatusCode::OK, "verified", None)).await
        {
            tracing::error!(error = %e, "could not record a webhook handshake");
        }
        response
    }

    /// Stores the events, their jobs and the log entry (in a group commit);
    /// answers with `ok` only once they are durable.
    async fn accept(
        self,
        state: &AppState,
        account: Arc<KnownAccount>,
        events: Vec<InboundEvent>,
        ok: Response,
    ) -> Response {
        let mut events = events;
        let mut replaced = false;
        for event in &mut events {
            replaced |= event.replace_nul();
        }
        let note = replaced.then(|| {
            metrics::counter!("integro_webhook_nul_replaced_total", "channel" => self.channel)
                .increment(1);
            "U+0000 in the message replaced by U+FFFD (it cannot be stored)".to_string()
        });
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let item = Item {
            webhook: Webhook {
                account,
                events,
                log: self.log(StatusCode::OK, "accepted", note),
                request_id: self.header(REQUEST_ID_HEADER).map(String::from),
                traceparent: integro_core::trace::traceparent(),
            },
            reply,
        };
        let result = match state.ingest.submit(item).await {
            Ok(()) => outcome
                .await
                .unwrap_or_else(|_| Err("the ingest writer stopped".into())),
            Err(e) => Err(e),
        };
        match result {
            Ok(outcome) => {
                metrics::counter!("integro_webhooks_total", "channel" => self.channel, "outcome" => outcome).increment(1);
                ok
            }
            Err(e) => {
                tracing::error!(error = %e, "storing a webhook failed");
                // Nothing was committed: the provider will deliver it again.
                let rejection = Rejection::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "could not store the webhook; retry",
                );
                self.reject(state, rejection).await
            }
        }
    }
}

/// Why a webhook is refused.
#[derive(Debug)]
pub struct Rejection {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
}

impl Rejection {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Rejection {
        Rejection {
            status,
            code,
            detail: detail.into(),
        }
    }

    pub fn bad_signature(header: &str) -> Rejection {
        Rejection::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            format!("{header} is missing or does not match"),
        )
    }

    pub fn malformed(detail: impl std::fmt::Display) -> Rejection {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "malformed_webhook",
            detail.to_string(),
        )
    }

    pub fn internal(e: impl std::fmt::Display) -> Rejection {
        tracing::error!(error = %e, "webhook handling failed");
        Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the webhook could not be handled; retry",
        )
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        ApiError::new(self.status, self.code, self.detail).into_response()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_headers_are_recognised_by_name() {
        for secret in [
            "authorization",
            "proxy-authorization",
            "cookie",
            "x-api-key",
            "x-twilio-signature",
            "x-hub-signature-256",
            "x-twitter-webhooks-signature",
            "x-auth-token",
            "x-client-secret",
            "x-session-id",
        ] {
            assert!(super::is_secret_header(secret), "{secret}");
        }
        for plain in ["content-type", "user-agent", "x-request-id", "host"] {
            assert!(!super::is_secret_header(plain), "{plain}");
        }
    }

    use super::text_of;

    /// The log keeps a UTF-8 body byte for byte, and one that is not with
    /// U+FFFD in place of each invalid sequence, as `from_utf8_lossy` does.
    #[test]
    fn a_body_is_logged_as_text() {
        assert_eq!(
            text_of("Body=Ol\u{e1} \u{1F44B}".as_bytes()),
            "Body=Ol\u{e1} \u{1F44B}"
        );
        assert_eq!(text_of(b""), "");
        let invalid = b"Body=\xff\xfeok\xc3";
        assert_eq!(text_of(invalid), String::from_utf8_lossy(invalid));
        assert_eq!(text_of(invalid), "Body=\u{fffd}\u{fffd}ok\u{fffd}");
    }
}
