//! Extractors: a handler states what it needs in its signature. `ApiJson` for a
//! body that fails with problem details naming the field, `Auth` for a signed-in
//! caller, `TenantCtx` for a caller acting inside one tenant.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use integro_core::{Actor, ActorKind, Permission, Role};
use integro_store::api_keys::{self, ApiKey};
use integro_store::users::{self, User};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub const TENANT_HEADER: &str = "x-integro-tenant";
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A JSON body. Malformed JSON answers 400; a missing, unknown or invalid field
/// answers 422 naming the field; a body of another type answers 415.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                let ct = ct.to_ascii_lowercase();
                ct.starts_with("application/json")
                    || (ct.starts_with("application/") && ct.contains("+json"))
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `content-type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    status,
                    "payload_too_large",
                    "the request body is larger than the configured limit",
                )
            } else {
                ApiError::bad_request("unreadable_body", rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The longest string any API field takes (a persona's instructions, a
/// system prompt); shorter limits are the resources' own.
pub const MAX_FIELD_CHARS: usize = 32_768;

/// What is wrong with a string of a JSON body, whatever its field: U+0000
/// (PostgreSQL cannot store it, nor can it be shown safely) or a length past
/// `MAX_FIELD_CHARS`.
fn bad_text(text: &str) -> Option<String> {
    if text.contains('\0') {
        Some("must not contain the NUL character (U+0000)".into())
    } else if text.chars().count() > MAX_FIELD_CHARS {
        Some(format!("must be at most {MAX_FIELD_CHARS} characters"))
    } else {
        None
    }
}

/// The first string or key of a JSON document that `bad_text` refuses, as a
/// field path (`name`, `rules[2].reply`; `body` for the document itself),
/// with why.
fn first_bad_text(value: &serde_json::Value, path: &str) -> Option<(String, String)> {
    use serde_json::Value;
    match value {
        Value::String(text) => bad_text(text).map(|why| {
            let field = if path.is_empty() { "body" } else { path };
            (field.to_string(), why)
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| first_bad_text(v, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, v)| {
            let child = match path {
                "" => key.replace('\0', "\\u0000"),
                _ => format!("{path}.{}", key.replace('\0', "\\u0000")),
            };
            match bad_text(key) {
                Some(why) => Some((child, why)),
                None => first_bad_text(v, &child),
            }
        }),
        _ => None,
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    // Only a body that long can hold a string that long, and `\u0000` is
    // the only way U+0000 can be written in valid JSON: the common small
    // request is never parsed twice.
    let may_hold_nul = bytes.windows(6).any(|w| w == b"\\u0000");
    if (bytes.len() > MAX_FIELD_CHARS || may_hold_nul)
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes)
        && let Some((field, why)) = first_bad_text(&value, "")
    {
        return Err(ApiError::invalid_field(&field, why));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = inner.to_string();
                let message = message
                    .split(" at line ")
                    .next()
                    .unwrap_or(&message)
                    .to_string();
                ApiError::invalid_field(&field_of(&path, &message), message)
            }
            _ => ApiError::bad_request(
                "malformed_json",
                format!("the body is not valid JSON: {inner}"),
            ),
        }
    })?;
    de.end().map_err(|e| {
        ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
    })?;
    Ok(value)
}

/// The field a deserialisation error is about: its path, or for a missing or
/// unknown field (reported at the parent) the name serde quotes in the message.
fn field_of(path: &str, message: &str) -> String {
    let quoted = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))
        .and_then(|rest| rest.split('`').next());
    match (path, quoted) {
        // Unknown fields are reported at their own path already.
        (path, Some(name)) if path == name || path.ends_with(&format!(".{name}")) => {
            path.to_string()
        }
        (".", Some(name)) => name.to_string(),
        (parent, Some(name)) => format!("{parent}.{name}"),
        (".", None) => "body".to_string(),
        (path, None) => path.to_string(),
    }
}

/// `?limit=…&cursor=…` on every list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl ListParams {
    pub fn page(&self) -> ApiResult<integro_store::PageRequest> {
        Ok(integro_store::PageRequest::parse(
            self.limit,
            self.cursor.as_deref(),
        )?)
    }
}

#[derive(Debug, Clone)]
pub enum Principal {
    User(User),
    ApiKey(ApiKey),
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Auth {
    pub principal: Principal,
    pub actor: Actor,
    pub request_id: Option<String>,
}

impl Auth {
    pub fn is_operator(&self) -> bool {
        matches!(&self.principal, Principal::User(u) if u.is_operator)
    }

    pub fn require_operator(&self) -> ApiResult<()> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(ApiError::forbidden("only platform operators may do this"))
        }
    }

    /// The role the caller holds in `tenant_id`; a tenant the caller cannot see
    /// answers 404, exactly as one that does not exist.
    pub async fn role_in(&self, state: &AppState, tenant_id: Uuid) -> ApiResult<Role> {
        let role = match &self.principal {
            Principal::ApiKey(key) => (key.tenant_id == tenant_id).then_some(key.role),
            Principal::User(user) if user.is_operator => {
                integro_store::tenants::get(&state.db, tenant_id)
                    .await?
                    .map(|_| Role::Owner)
            }
            Principal::User(user) => users::role_in(&state.db, tenant_id, user.id).await?,
        };
        role.ok_or_else(|| ApiError::not_found("tenant"))
    }

    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
}

fn bearer(headers: &HeaderMap) -> ApiResult<&str> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "unauthenticated",
                "send `Authorization: Bearer <access token or API key>`",
            )
        })?
        .to_str()
        .map_err(|_| {
            ApiError::unauthorized("invalid_token", "the Authorization header is not text")
        })?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("invalid_token", "expected `Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthorized(
            "invalid_token",
            "expected `Bearer <token>`",
        ));
    }
    Ok(token.trim())
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(auth) = parts.extensions.get::<Auth>() {
            return Ok(auth.clone());
        }
        let auth = Auth::authenticate(state, &parts.headers).await?;
        parts.extensions.insert(auth.clone());
        Ok(auth)
    }
}

impl Auth {
    /// The caller the request's bearer token names, or why it is refused.
    pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<Auth> {
        let token = bearer(headers)?;

        let principal = if token.starts_with(api_keys::KEY_PREFIX) {
            let key = api_keys::authenticate(&state.db, token)
                .await?
                .ok_or_else(|| {
                    ApiError::unauthorized("invalid_api_key", "the API key is unknown or revoked")
                })?;
            Principal::ApiKey(key)
        } else {
            let (user_id, generation) = state
                .tokens
                .verify(token)
                .map_err(|why| ApiError::unauthorized("invalid_token", why))?;
            let user = users::get(&state.db, user_id).await?.ok_or_else(|| {
                ApiError::unauthorized("invalid_token", "the user no longer exists")
            })?;
            if user.disabled_at.is_some() {
                return Err(ApiError::unauthorized(
                    "account_disabled",
                    "this account was disabled by an operator",
                ));
            }
            if user.token_generation != generation {
                return Err(ApiError::unauthorized(
                    "session_ended",
                    "this session was ended (removed from a tenant, or a password reset): sign in again",
                ));
            }
            Principal::User(user)
        };
        let auth = Auth::of(principal, headers);
        state
            .rate_limit
            .check(&format!(
                "{}:{}",
                auth.actor.kind.as_str(),
                auth.actor.id.as_deref().unwrap_or_default()
            ))
            .await?;
        Ok(auth)
    }

    /// A caller already known (a bearer token checked, or a dashboard
    /// session), as the audit log names it.
    pub fn of(principal: Principal, headers: &HeaderMap) -> Auth {
        let actor = match &principal {
            Principal::User(u) => Actor {
                kind: ActorKind::User,
                id: Some(u.id.to_string()),
                label: u.email.clone(),
            },
            Principal::ApiKey(k) => Actor {
                kind: ActorKind::ApiKey,
                id: Some(k.id.to_string()),
                label: format!("api_key:{}", k.name),
            },
        };
        Auth {
            principal,
            actor,
            request_id: headers
                .get(REQUEST_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(String::from),
        }
    }
}

/// A caller acting inside one tenant: the API key's tenant, or the one named by
/// `X-Integro-Tenant` (needed by operators and by users in several tenants).
#[derive(Debug, Clone)]
pub struct TenantCtx {
    pub tenant_id: Uuid,
    pub role: Role,
    pub auth: Auth,
}

impl TenantCtx {
    pub fn require(&self, permission: Permission) -> ApiResult<()> {
        if self.role.allows(permission) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "the {} role may not do this; it needs {} or above",
                self.role,
                Role::minimum_for(permission)
            )))
        }
    }

    pub fn actor(&self) -> &Actor {
        &self.auth.actor
    }

    pub fn request_id(&self) -> Option<&str> {
        self.auth.request_id()
    }
}

/// The tenant named by `X-Integro-Tenant`, if the header is present.
pub fn tenant_header(headers: &HeaderMap) -> ApiResult<Option<Uuid>> {
    headers
        .get(TENANT_HEADER)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| Uuid::parse_str(s.trim()).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_tenant_header",
                        "X-Integro-Tenant must be a tenant id (UUID)",
                    )
                })
        })
        .transpose()
}

impl TenantCtx {
    /// Resolves the tenant a caller acts in, and the caller's role there.
    pub async fn resolve(
        state: &AppState,
        auth: Auth,
        headers: &HeaderMap,
    ) -> ApiResult<TenantCtx> {
        let named = tenant_header(headers)?;
        let tenant_id = match (&auth.principal, named) {
            (_, Some(id)) => id,
            (Principal::ApiKey(key), None) => key.tenant_id,
            (Principal::User(user), None) => {
                let memberships = users::memberships(&state.db, user.id).await?;
                match memberships.as_slice() {
                    [only] => only.tenant_id,
                    _ => {
                        return Err(ApiError::bad_request(
                            "tenant_required",
                            "name the tenant to act in with the X-Integro-Tenant header",
                        ));
                    }
                }
            }
        };
        let role = auth.role_in(state, tenant_id).await?;
        Ok(TenantCtx {
            tenant_id,
            role,
            auth,
        })
    }
}

impl FromRequestParts<AppState> for TenantCtx {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let auth = Auth::from_request_parts(parts, state).await?;
        TenantCtx::resolve(state, auth, &parts.headers).await
    }
}

/// For PATCH fields where `null` means "clear": a present field (even
/// `null`) becomes `Some(value)`; use with `#[serde(default)]` so an absent
/// field stays `None`.
pub fn present<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        role: Role,
    }

    fn err(body: &str) -> ApiError {
        parse_json::<Body>(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn errors_name_the_field() {
        let e = err(r#"{"role": "admin"}"#);
        assert_eq!(
            (e.status.as_u16(), e.errors[0].field.as_str()),
            (422, "name")
        );
        let e = err(r#"{"name": "x", "role": "boss"}"#);
        assert_eq!(
            (e.status.as_u16(), e.errors[0].field.as_str()),
            (422, "role")
        );
        let e = err(r#"{"name": "x", "role": "admin", "extra": 1}"#);
        assert_eq!(
            (e.status.as_u16(), e.errors[0].field.as_str()),
            (422, "extra")
        );
        let e = err(r#"{"name": 5, "role": "admin"}"#);
        assert_eq!(e.errors[0].field, "name");
    }

    #[test]
    fn nul_characters_are_refused_naming_the_field() {
        let e = err(r#"{"name": "a\u0000b", "role": "admin"}"#);
        assert_eq!(
            (e.status.as_u16(), e.errors[0].field.as_str()),
            (422, "name")
        );
        let e = parse_json::<serde_json::Value>(br#"{"a": [{"b": "x"}, {"c": "\u0000"}]}"#)
            .unwrap_err();
        assert_eq!(e.errors[0].field, "a[1].c");
        // An escaped backslash followed by `u0000` is not NUL.
        assert!(parse_json::<serde_json::Value>(br#"{"a": "\\u0000"}"#).is_ok());
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        assert_eq!(err(r#"{"name": "#).code, "malformed_json");
        assert_eq!(
            err(r#"{"name": "x", "role": "admin"} trailing"#).code,
            "malformed_json"
        );
    }
}
