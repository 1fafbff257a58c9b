//! A web account's public mode: a website's chat widget talks to the bot
//! straight from the visitor's browser, with no API key.
//!
//! The tenant turns it on per account (`PUT /api/v1/accounts/{id}/web-public`)
//! with the origins of its pages, and gets a publishable key (`ipk_…`). The
//! widget starts a session with that key from one of those origins and
//! receives a signed visitor token naming the account and a visitor id the
//! server chose; with it, it posts the visitor's messages and reads, or
//! streams, that visitor's conversation and nothing else.
//!
//! The visitor routes (`/api/v1/web-public/{account_id}/…`) are served
//! outside the API's CORS layer (`http::router`): `cors` answers them for
//! exactly the account's origins. The account id is in the path because a
//! CORS preflight carries neither the key nor the token: the path is all
//! it has to find the account's origins by.

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use integro_core::{ChannelKind, InboundMessage, Media, Permission};
use integro_store::Page;
use integro_store::accounts::{self, Account};
use integro_store::conversations::{Direction, Message, MessageSender, MessageStatus};
use integro_store::web_public::{self, WebPublic};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::WebAccepted;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, REQUEST_ID_HEADER, TenantCtx};
use crate::rate_limit::{RateLimit, SharedLimits};
use crate::state::AppState;

/// The header a widget sends its publishable key in.
pub const PUBLISHABLE_KEY_HEADER: &str = "x-integro-publishable-key";
/// What the visitor tokens' signing key is derived from the master key for.
pub const TOKEN_KEY_PURPOSE: &str = "web-visitor-v1";
/// How long a visitor token is valid; the widget resumes the same visitor
/// with a valid one to get a fresh one.
pub const TOKEN_TTL_SECS: i64 = 24 * 3600;
/// Sessions one address may start per minute on one account.
pub const SESSIONS_PER_MINUTE: u32 = 20;
/// Requests one address may make per minute to one account (all visitors).
pub const SOURCE_REQUESTS_PER_MINUTE: u32 = 600;
/// Requests one visitor may make per minute (posts, reads, streams).
pub const VISITOR_REQUESTS_PER_MINUTE: u32 = 120;
/// Messages one visitor may send per minute: each one runs the bot.
pub const VISITOR_MESSAGES_PER_MINUTE: u32 = 20;
const VISITOR_ID_PREFIX: &str = "vis_";
const TOKEN_TYPE: &str = "web-visitor";
const ISSUER: &str = "integro";

// ---------------------------------------------------------------- tokens

/// A visitor token's claims.
#[derive(Debug, Serialize, Deserialize)]
pub struct VisitorClaims {
    /// The visitor id (the contact id of their conversation).
    pub sub: String,
    /// The account.
    pub acc: Uuid,
    /// Which publishable key the session was started with: a token of a
    /// rotated key is refused.
    pub kid: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    /// Always `web-visitor`: access tokens and visitor tokens are signed
    /// with different keys, and each kind checks its own type too.
    pub typ: String,
}

/// Signs and checks visitor tokens, and holds the visitors' rate limits.
pub struct Visitors {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Per account and source address: every request.
    source: RateLimit,
    /// Per account and source address: sessions started.
    sessions: RateLimit,
    /// Per visitor: every request.
    requests: RateLimit,
    /// Per visitor: messages sent.
    messages: RateLimit,
}

/// Which publishable key a token belongs to: a prefix of the key's hash
/// (nothing secret: the key itself is public).
fn key_id(settings: &WebPublic) -> String {
    settings.key_hash.chars().take(16).collect()
}

impl Visitors {
    pub fn new(secret: &[u8; 32], shared: Option<&SharedLimits>) -> Visitors {
        Visitors {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            source: RateLimit::per_minute("web_source", SOURCE_REQUESTS_PER_MINUTE)
                .shared_in(shared),
            sessions: RateLimit::per_minute("web_sessions", SESSIONS_PER_MINUTE).shared_in(shared),
            requests: RateLimit::per_minute("web_requests", VISITOR_REQUESTS_PER_MINUTE)
                .shared_in(shared),
            messages: RateLimit::per_minute("web_messages", VISITOR_MESSAGES_PER_MINUTE)
                .shared_in(shared),
        }
    }

    /// A token for `visitor` on the account of `settings`, valid for
    /// `ttl_secs` (negative: already expired); and when it expires.
    pub fn sign(&self, settings: &WebPublic, visitor: &str, ttl_secs: i64) -> (String, i64) {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = VisitorClaims {
            sub: visitor.to_string(),
            acc: settings.account_id,
            kid: key_id(settings),
            iat: now,
            exp: now + ttl_secs,
            iss: ISSUER.into(),
            typ: TOKEN_TYPE.into(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of serialisable claims cannot fail");
        (token, claims.exp)
    }

    /// The claims of a well-signed, unexpired visitor token, or why it is
    /// refused. Whose account it names is the caller's to check.
    pub fn verify(&self, token: &str) -> Result<VisitorClaims, &'static str> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        match decode::<VisitorClaims>(token, &self.decoding, &validation) {
            Ok(data)
                if data.claims.typ == TOKEN_TYPE
                    && data.claims.sub.starts_with(VISITOR_ID_PREFIX)
                    && data.claims.sub.len() <= 64 =>
            {
                Ok(data.claims)
            }
            Ok(_) => Err("not a visitor token"),
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    Err("the visitor token has expired; start a new session")
                }
                _ => Err("the visitor token is invalid"),
            },
        }
    }

    /// Forgets callers that are back to a full allowance (run periodically).
    pub fn forget_idle(&self) {
        for limit in [&self.source, &self.sessions, &self.requests, &self.messages] {
            limit.forget_idle();
        }
    }
}

// ---------------------------------------------------------------- settings

/// The tenant's routes that set public mode (under the API's own CORS).
pub fn settings_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_settings, put_settings))
        .routes(routes!(rotate_key))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetWebPublic {
    /// Whether visitors may start sessions and chat.
    pub enabled: bool,
    /// The origins whose pages may chat, exactly as browsers send them:
    /// `https://shop.example.com`, `http://localhost:3000` (no path, no
    /// wildcard). At least one when enabled; at most 20.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

/// An account's public mode.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebPublicView {
    #[serde(flatten)]
    pub settings: WebPublic,
    /// The publishable key, answered only when it is made (the first PUT,
    /// and rotate-key): it is not shown again. It goes into the site's pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publishable_key: Option<String>,
    /// Where the site's widget calls.
    pub endpoints: BTreeMap<String, String>,
}

fn settings_view(state: &AppState, settings: WebPublic, key: Option<String>) -> WebPublicView {
    let base = format!(
        "{}/api/v1/web-public/{}",
        state.config.public_base(),
        settings.account_id
    );
    let endpoints = ["sessions", "messages", "events"]
        .into_iter()
        .map(|name| (name.to_string(), format!("{base}/{name}")))
        .collect();
    WebPublicView {
        settings,
        publishable_key: key,
        endpoints,
    }
}

/// The tenant's web account `id`: 404 in another tenant, 422 when it is
/// another kind of account.
async fn tenant_web_account(state: &AppState, ctx: &TenantCtx, id: Uuid) -> ApiResult<Account> {
    let account = accounts::get(&state.db, ctx.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    if account.kind != ChannelKind::Web {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_a_web_account",
            format!(
                "public mode is for web accounts; this one is {}",
                account.kind
            ),
        ));
    }
    Ok(account)
}

/// A web account's public mode (the publishable key is not shown again).
#[utoipa::path(get, path = "/api/v1/accounts/{id}/web-public", operation_id = "get_web_public_settings", tag = "web", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Web channel account id")),
    responses(
        (status = 200, description = "The account's public mode", body = WebPublicView),
        (status = 404, description = "No such account, or public mode was never set", body = Problem),
        (status = 422, description = "Not a web account", body = Problem)))]
async fn get_settings(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<WebPublicView>> {
    ctx.require(Permission::Read)?;
    let account = tenant_web_account(&state, &ctx, id).await?;
    let settings = web_public::get(&state.db, ctx.tenant_id, account.id)
        .await?
        .ok_or_else(|| ApiError::not_found("web public settings"))?;
    Ok(Json(settings_view(&state, settings, None)))
}

/// Turn a web account's public mode on or off and set its allowed origins.
/// The first time, a publishable key is made and answered (201); keep it,
/// it is not shown again.
#[utoipa::path(put, path = "/api/v1/accounts/{id}/web-public", operation_id = "put_web_public_settings", tag = "web", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Web channel account id")), request_body = SetWebPublic,
    responses(
        (status = 200, description = "Public mode changed", body = WebPublicView),
        (status = 201, description = "Public mode set for the first time; the answer holds the publishable key", body = WebPublicView),
        (status = 403, description = "The caller's role may not manage accounts", body = Problem),
        (status = 404, description = "No such account", body = Problem),
        (status = 422, description = "Not a web account, or an origin is invalid", body = Problem)))]
async fn put_settings(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
    ApiJson(req): ApiJson<SetWebPublic>,
) -> ApiResult<(StatusCode, Json<WebPublicView>)> {
    ctx.require(Permission::Manage)?;
    let account = tenant_web_account(&state, &ctx, id).await?;
    let mut tx = state.db.begin().await?;
    let (settings, key) = web_public::configure(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        ctx.tenant_id,
        account.id,
        req.enabled,
        &req.allowed_origins,
    )
    .await?;
    tx.commit().await?;
    let status = match key {
        Some(_) => StatusCode::CREATED,
        None => StatusCode::OK,
    };
    Ok((status, Json(settings_view(&state, settings, key))))
}

/// A new publishable key for a web account: the old one stops working at
/// once, and so do the visitor sessions started with it.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/web-public/rotate-key", tag = "web", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Web channel account id")),
    responses(
        (status = 200, description = "The new publishable key, shown this once", body = WebPublicView),
        (status = 403, description = "The caller's role may not manage accounts", body = Problem),
        (status = 404, description = "No such account, or public mode was never set", body = Problem),
        (status = 422, description = "Not a web account", body = Problem)))]
async fn rotate_key(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<WebPublicView>> {
    ctx.require(Permission::Manage)?;
    let account = tenant_web_account(&state, &ctx, id).await?;
    let mut tx = state.db.begin().await?;
    let (settings, key) = web_public::rotate_key(
        &mut tx,
        ctx.actor(),
        ctx.request_id(),
        ctx.tenant_id,
        account.id,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(settings_view(&state, settings, Some(key))))
}

// ---------------------------------------------------------------- CORS

/// An account whose public mode is on, with its settings.
#[derive(Debug, Clone)]
struct PublicAccount {
    account: Account,
    settings: WebPublic,
}

/// What `cors` found out about a visitor request, for its handler.
#[derive(Debug, Clone)]
struct Gate {
    public: Option<PublicAccount>,
    /// The request's `Origin` is one of the account's.
    origin_allowed: bool,
    /// The peer's address, to throttle by.
    source: String,
}

impl Gate {
    /// The account, when its public mode is on and the request comes from
    /// one of its origins.
    fn open(self) -> ApiResult<(PublicAccount, String)> {
        let public = self.public.ok_or_else(not_public)?;
        if !self.origin_allowed {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "call from a page of one of the account's allowed origins (the Origin header is missing or not among them)",
            ));
        }
        Ok((public, self.source))
    }
}

impl FromRequestParts<AppState> for Gate {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Gate>()
            .cloned()
            .ok_or_else(not_public)
    }
}

/// The same answer for an unknown account, another kind of account, and
/// one whose public mode is off or was never set: a visitor learns nothing.
fn not_public() -> ApiError {
    ApiError::not_found("public web chat")
}

/// The account named by a visitor route's path, `/api/v1/web-public/{id}/…`.
fn account_in_path(path: &str) -> Option<Uuid> {
    let rest = path.strip_prefix("/api/v1/web-public/")?;
    Uuid::parse_str(rest.split('/').next()?).ok()
}

/// The live web account `id` if its public mode is on.
async fn public_account(state: &AppState, id: Uuid) -> ApiResult<Option<PublicAccount>> {
    let Some(account) = accounts::find_for_webhook(&state.db, id)
        .await?
        .filter(|a| a.kind == ChannelKind::Web && a.active)
    else {
        return Ok(None);
    };
    let settings = web_public::get(&state.db, account.tenant_id, account.id)
        .await?
        .filter(|s| s.enabled && !s.allowed_origins.is_empty());
    Ok(settings.map(|settings| PublicAccount { account, settings }))
}

/// CORS for the visitor routes, by the account their path names: a
/// preflight is answered for the account's allowed origins only, and every
/// other answer carries `Access-Control-Allow-Origin` for those only (so a
/// widget can read its errors too). Also throttles by source address, and
/// hands the handlers what it found (`Gate`).
pub async fn cors(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let public = match account_in_path(req.uri().path()) {
        Some(id) => match public_account(&state, id).await {
            Ok(found) => found,
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    let origin = req.headers().get(header::ORIGIN).cloned();
    let allowed = match (&public, &origin) {
        (Some(p), Some(o)) => o.to_str().is_ok_and(|o| p.settings.allows(o)),
        _ => false,
    };
    let allow_origin = origin.filter(|_| allowed);

    if req.method() == Method::OPTIONS {
        let mut response = match allow_origin {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "this origin may not call this account's web chat",
            )
            .into_response(),
        };
        let headers = response.headers_mut();
        if allow_origin.is_some() {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(
                    "authorization, content-type, last-event-id, x-integro-publishable-key, x-request-id",
                ),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
        cors_headers(headers, allow_origin, true);
        return response;
    }

    let source = crate::client_address::client_address(
        crate::client_address::peer(req.extensions()),
        req.headers(),
        &state.trusted_proxies,
    )
    .to_string();
    if let Some(p) = &public
        && let Err(e) = state
            .visitors
            .source
            .check(&format!("{}:{source}", p.account.id))
            .await
    {
        let mut response = e.into_response();
        cors_headers(response.headers_mut(), allow_origin, false);
        return response;
    }
    req.extensions_mut().insert(Gate {
        public,
        origin_allowed: allowed,
        source,
    });
    let mut response = next.run(req).await;
    cors_headers(response.headers_mut(), allow_origin, false);
    response
}

fn cors_headers(headers: &mut HeaderMap, allow_origin: Option<HeaderValue>, preflight: bool) {
    // The answer differs by origin: caches must keep them apart.
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    if preflight {
        headers.append(
            header::VARY,
            HeaderValue::from_static(
                "access-control-request-method, access-control-request-headers",
            ),
        );
    }
    if let Some(origin) = allow_origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if !preflight {
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("x-request-id, retry-after"),
            );
        }
    }
}

// ---------------------------------------------------------------- visitors

/// The routes a website's visitors call, with no API key. Served by
/// `http::router` outside the API's CORS layer, inside `cors`.
pub fn visitor_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(VisitorDoc::openapi())
        .routes(routes!(start_session))
        .routes(routes!(post_message, read_messages))
        .routes(routes!(events))
}

#[derive(OpenApi)]
#[openapi(
    modifiers(&VisitorAuth),
    tags((name = "web-public", description = "A website's chat widget: visitor sessions and their conversation, with no API key"))
)]
struct VisitorDoc;

struct VisitorAuth;

impl utoipa::Modify for VisitorAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "visitor",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A visitor token from POST /api/v1/web-public/{account_id}/sessions",
                    ))
                    .build(),
            ),
        );
    }
}

/// A visitor, by a valid token of the account the path names.
struct Visitor {
    public: PublicAccount,
    id: String,
    request_id: Option<String>,
}

impl Visitor {
    async fn authenticate(
        state: &AppState,
        gate: Gate,
        headers: &HeaderMap,
        token: Option<&str>,
    ) -> ApiResult<Visitor> {
        let (public, _) = gate.open()?;
        let token = token.ok_or_else(|| {
            ApiError::unauthorized(
                "unauthenticated",
                "send `Authorization: Bearer <visitor token>` (from POST …/sessions)",
            )
        })?;
        let claims = state
            .visitors
            .verify(token)
            .map_err(|why| ApiError::unauthorized("invalid_token", why))?;
        if claims.acc != public.account.id {
            return Err(ApiError::unauthorized(
                "invalid_token",
                "the visitor token is for another account",
            ));
        }
        if claims.kid != key_id(&public.settings) {
            return Err(ApiError::unauthorized(
                "invalid_token",
                "the publishable key was changed; start a new session",
            ));
        }
        state
            .visitors
            .requests
            .check(&format!("{}:{}", claims.acc, claims.sub))
            .await?;
        Ok(Visitor {
            public,
            id: claims.sub,
            request_id: headers
                .get(REQUEST_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(String::from),
        })
    }
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let gate = Gate::from_request_parts(parts, state).await?;
        Visitor::authenticate(state, gate, &parts.headers, bearer(&parts.headers)?).await
    }
}

/// The bearer token, if an Authorization header is sent.
fn bearer(headers: &HeaderMap) -> ApiResult<Option<&str>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
        .map(|(_, token)| token.trim());
    token
        .map(Some)
        .ok_or_else(|| ApiError::unauthorized("invalid_token", "expected `Bearer <visitor token>`"))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartSession {
    /// The publishable key, when not sent in `x-integro-publishable-key`.
    pub publishable_key: Option<String>,
    /// A visitor token kept from before: while it is valid, the session
    /// resumes the same visitor (and conversation) with a fresh token.
    pub visitor_token: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VisitorSession {
    /// Send as `Authorization: Bearer …` (or `?token=` on the event stream).
    pub visitor_token: String,
    /// The visitor's id, chosen by the server.
    pub visitor_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// True when `visitor_token` resumed the same visitor.
    pub resumed: bool,
}

/// Start (or resume) a visitor's session from a page of an allowed origin.
#[utoipa::path(post, path = "/api/v1/web-public/{account_id}/sessions", tag = "web-public",
    params(("account_id" = Uuid, Path, description = "Web channel account id"),
        ("x-integro-publishable-key" = Option<String>, Header, description = "The account's publishable key (or `publishable_key` in the body)")),
    request_body = StartSession,
    responses(
        (status = 201, description = "A new visitor and their token", body = VisitorSession),
        (status = 200, description = "The same visitor, with a fresh token", body = VisitorSession),
        (status = 401, description = "The publishable key is missing or not the account's", body = Problem),
        (status = 403, description = "The Origin is missing or not allowed", body = Problem),
        (status = 404, description = "No public web chat at this account", body = Problem),
        (status = 429, description = "Too many sessions from this address", body = Problem)))]
async fn start_session(
    State(state): State<AppState>,
    gate: Gate,
    headers: HeaderMap,
    ApiJson(req): ApiJson<StartSession>,
) -> ApiResult<(StatusCode, Json<VisitorSession>)> {
    let (public, source) = gate.open()?;
    state
        .visitors
        .sessions
        .check(&format!("{}:{source}", public.account.id))
        .await?;
    let key = headers
        .get(PUBLISHABLE_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .or(req.publishable_key.as_deref())
        .map(str::trim);
    match key {
        Some(key) if public.settings.key_matches(key) => {}
        Some(_) => {
            return Err(ApiError::unauthorized(
                "invalid_publishable_key",
                "the publishable key is not this account's (or was rotated)",
            ));
        }
        None => {
            return Err(ApiError::unauthorized(
                "invalid_publishable_key",
                format!("send the publishable key in `{PUBLISHABLE_KEY_HEADER}`"),
            ));
        }
    }
    let resumed = req
        .visitor_token
        .as_deref()
        .and_then(|t| state.visitors.verify(t).ok())
        .filter(|c| c.acc == public.account.id && c.kid == key_id(&public.settings))
        .map(|c| c.sub);
    let (visitor, status) = match resumed {
        Some(id) => (id, StatusCode::OK),
        None => (
            format!(
                "{VISITOR_ID_PREFIX}{}",
                integro_store::credentials::random_token(18)
            ),
            StatusCode::CREATED,
        ),
    };
    let (token, expires) = state
        .visitors
        .sign(&public.settings, &visitor, TOKEN_TTL_SECS);
    Ok((
        status,
        Json(VisitorSession {
            visitor_token: token,
            visitor_id: visitor,
            expires_at: OffsetDateTime::from_unix_timestamp(expires)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            resumed: status == StatusCode::OK,
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VisitorText {
    pub text: String,
    /// Your id for this message (at most 100 characters): sending it again
    /// is recognised as a duplicate.
    pub message_id: Option<String>,
}

/// A message as a visitor sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VisitorMessage {
    pub id: Uuid,
    /// `inbound` (the visitor's) or `outbound` (a reply).
    pub direction: Direction,
    pub sender: MessageSender,
    pub kind: String,
    pub body: Option<String>,
    pub media: Vec<Media>,
    pub status: MessageStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<Message> for VisitorMessage {
    fn from(m: Message) -> VisitorMessage {
        VisitorMessage {
            id: m.id,
            direction: m.direction,
            sender: m.sender,
            kind: m.kind,
            body: m.body,
            media: m.media,
            status: m.status,
            created_at: m.created_at,
        }
    }
}

/// The visitor's message to the bot.
#[utoipa::path(post, path = "/api/v1/web-public/{account_id}/messages", operation_id = "visitor_post_message", tag = "web-public", security(("visitor" = [])),
    params(("account_id" = Uuid, Path, description = "Web channel account id")), request_body = VisitorText,
    responses(
        (status = 202, description = "Stored; the reply follows", body = WebAccepted),
        (status = 200, description = "A message id sent before: nothing more was done", body = WebAccepted),
        (status = 401, description = "No valid visitor token of this account", body = Problem),
        (status = 403, description = "The Origin is missing or not allowed", body = Problem),
        (status = 404, description = "No public web chat at this account", body = Problem),
        (status = 422, description = "Empty or too long", body = Problem),
        (status = 429, description = "Too many messages or requests", body = Problem)))]
async fn post_message(
    State(state): State<AppState>,
    visitor: Visitor,
    ApiJson(req): ApiJson<VisitorText>,
) -> ApiResult<(StatusCode, Json<WebAccepted>)> {
    let account = &visitor.public.account;
    state
        .visitors
        .messages
        .check(&format!("{}:{}", account.id, visitor.id))
        .await?;
    let text = super::clean_text(&req.text)?;
    // Message ids are the visitor's own: one visitor cannot take (or probe
    // for) another's.
    let message_id = match req.message_id.as_deref().map(str::trim) {
        Some(id) if id.is_empty() || id.chars().count() > 100 => {
            return Err(ApiError::invalid_field(
                "message_id",
                "must be 1 to 100 characters",
            ));
        }
        Some(id) => format!("{}:{id}", visitor.id),
        None => integro_core::new_id().to_string(),
    };
    let inbound = InboundMessage {
        provider_message_id: message_id,
        from: visitor.id.clone(),
        from_name: None,
        phone_e164: None,
        kind: "text".into(),
        text: Some(text),
        media: Vec::new(),
        reply_to: None,
    };
    super::accept(&state, account, &inbound, visitor.request_id.as_deref()).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VisitorPage {
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page: only messages after it.
    pub cursor: Option<String>,
}

/// The visitor's conversation, oldest first: their messages and the replies.
/// Poll with the `next_cursor` of the last page to get only new ones.
#[utoipa::path(get, path = "/api/v1/web-public/{account_id}/messages", operation_id = "visitor_read_messages", tag = "web-public", security(("visitor" = [])),
    params(("account_id" = Uuid, Path, description = "Web channel account id"), VisitorPage),
    responses(
        (status = 200, description = "A page of the visitor's conversation", body = Page<VisitorMessage>),
        (status = 401, description = "No valid visitor token of this account", body = Problem),
        (status = 403, description = "The Origin is missing or not allowed", body = Problem),
        (status = 404, description = "No public web chat at this account", body = Problem),
        (status = 429, description = "Too many requests", body = Problem)))]
async fn read_messages(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(p): Query<VisitorPage>,
) -> ApiResult<Json<Page<VisitorMessage>>> {
    let page = super::contact_messages(
        &state,
        &visitor.public.account,
        &visitor.id,
        p.limit,
        p.cursor,
    )
    .await?;
    Ok(Json(page.map(VisitorMessage::from)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// The visitor token, for clients that cannot send headers (EventSource).
    pub token: Option<String>,
}

/// A server-sent-events stream of the replies to the visitor:
/// `event: message`, data = the message as JSON. EventSource cannot send
/// headers: pass the visitor token as `?token=`.
#[utoipa::path(get, path = "/api/v1/web-public/{account_id}/events", operation_id = "visitor_events", tag = "web-public", security(("visitor" = [])),
    params(("account_id" = Uuid, Path, description = "Web channel account id"), StreamParams),
    responses(
        (status = 200, description = "text/event-stream of messages", content_type = "text/event-stream"),
        (status = 401, description = "No valid visitor token of this account", body = Problem),
        (status = 403, description = "The Origin is missing or not allowed", body = Problem),
        (status = 404, description = "No public web chat at this account", body = Problem),
        (status = 429, description = "Too many streams or requests", body = Problem)))]
async fn events(
    State(state): State<AppState>,
    gate: Gate,
    headers: HeaderMap,
    Query(p): Query<StreamParams>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let token = match p.token.as_deref() {
        Some(token) => Some(token),
        None => bearer(&headers)?,
    };
    let visitor = Visitor::authenticate(&state, gate, &headers, token).await?;
    let account = &visitor.public.account;
    // `streams::PER_CALLER` per visitor, and `streams::PER_TENANT` per
    // account over all its visitors: counted apart from the tenant's own
    // callers, so that a busy site cannot take the dashboard's streams.
    let slot = state.streams.acquire(
        &format!("web-visitor:{}:{}", account.id, visitor.id),
        account.id,
    )?;
    super::reply_events(
        state.clone(),
        account,
        visitor.id,
        &headers,
        slot,
        VisitorMessage::from,
    )
    .await
}
