//! Sign-in: `/api/v1/auth/login`, `/refresh`, `/logout`, `/me`.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use integro_store::api_keys::ApiKey;
use integro_store::sessions::{self, RefreshError};
use integro_store::users::{self, Membership, User};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, Auth, Principal};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// JWT to send as `Authorization: Bearer …`.
    pub access_token: String,
    /// Exchanges for a new pair at `/api/v1/auth/refresh`; works once.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

fn tokens_for(state: &AppState, user: &User, refresh_token: String) -> TokenResponse {
    TokenResponse {
        access_token: state.tokens.sign(
            user.id,
            user.token_generation,
            state.config.access_token_ttl_secs,
        ),
        refresh_token,
        token_type: "Bearer".into(),
        expires_in: state.config.access_token_ttl_secs,
    }
}

/// Exchange an email and password for an access token and a refresh token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 401, description = "Wrong email or password", body = Problem),
        (status = 422, description = "Invalid body", body = Problem),
        (status = 429, description = "Too many attempts", body = Problem),
    ))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let user = check_password(&state, peer, &headers, &req.email, req.password).await?;
    let refresh = sessions::issue(
        &state.db,
        user.id,
        None,
        state.config.refresh_token_ttl_secs,
    )
    .await?;
    tracing::info!(user = %user.id, "signed in");
    Ok(Json(tokens_for(&state, &user, refresh)))
}

/// The user an email and password name, through sign-in's throttles and
/// hashing threads: the API's sign-in and the dashboard's.
pub(crate) async fn check_password(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    email: &str,
    password: String,
) -> ApiResult<User> {
    let source = crate::client_address::client_address(peer.ip(), headers, &state.trusted_proxies);
    state.login_guard.admit(email, source).await?;
    let creds = users::find_credentials(&state.db, email).await?;
    let (user, phc) = match creds {
        Some(c) => (Some(c.user), Some(c.password_hash)),
        None => (None, None),
    };
    let verified = state.login_guard.verify(password, phc).await?;
    let user = user
        .filter(|_| verified)
        .ok_or_else(|| ApiError::unauthorized("invalid_credentials", "wrong email or password"))?;
    if user.disabled_at.is_some() {
        return Err(ApiError::unauthorized(
            "account_disabled",
            "this account was disabled by an operator",
        ));
    }
    Ok(user)
}

/// Exchange a refresh token for a new pair. Each refresh token works once; a
/// reused one revokes every token of that sign-in.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 401, description = "Unknown, expired, revoked or reused refresh token", body = Problem),
    ))]
async fn refresh(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<Json<TokenResponse>> {
    match sessions::rotate(
        &state.db,
        &req.refresh_token,
        state.config.refresh_token_ttl_secs,
    )
    .await?
    {
        Ok((user, token)) => {
            let user = users::get(&state.db, user)
                .await?
                .filter(|u| u.disabled_at.is_none())
                .ok_or_else(|| {
                    ApiError::unauthorized("invalid_refresh_token", "the account is disabled")
                })?;
            Ok(Json(tokens_for(&state, &user, token)))
        }
        Err(e @ RefreshError::Invalid) => Err(ApiError::unauthorized(
            "invalid_refresh_token",
            e.to_string(),
        )),
        Err(e @ RefreshError::Reused) => Err(ApiError::unauthorized(
            "refresh_token_reused",
            e.to_string(),
        )),
    }
}

/// Revoke a refresh token (and every token rotated from the same sign-in).
/// Access tokens already issued expire on their own, within minutes.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "Signed out"),
        (status = 400, description = "Malformed JSON", body = Problem),
        (status = 415, description = "Not JSON", body = Problem),
        (status = 422, description = "Invalid body", body = Problem),
    ))]
async fn logout(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<StatusCode> {
    sessions::revoke(&state.db, &req.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    /// `user` or `api_key`.
    pub kind: String,
    pub user: Option<User>,
    pub api_key: Option<ApiKey>,
    /// The tenants a user belongs to, with the role in each.
    pub memberships: Vec<Membership>,
}

/// Who the caller is: the signed-in user and their tenants, or the API key.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, body = Me),
        (status = 401, body = Problem),
    ))]
async fn me(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Me>> {
    Ok(Json(match auth.principal {
        Principal::User(user) => Me {
            kind: "user".into(),
            memberships: users::memberships(&state.db, user.id).await?,
            user: Some(user),
            api_key: None,
        },
        Principal::ApiKey(key) => Me {
            kind: "api_key".into(),
            user: None,
            api_key: Some(key),
            memberships: Vec::new(),
        },
    }))
}
