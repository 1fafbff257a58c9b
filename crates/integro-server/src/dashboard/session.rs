//! Dashboard sessions: the cookie, the CSRF check on every state-changing
//! request, and the extractors pages use. A signed-in user becomes the same
//! `Auth` and `TenantCtx` the API builds from a bearer token, so that pages
//! and API share one authorization path (`TenantCtx::require`).

use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use integro_core::Role;
use integro_store::users::User;
use integro_store::web_sessions::{self, WebSession};
use uuid::Uuid;

use super::page::PageError;
use crate::extract::{Auth, Principal, TENANT_HEADER, TenantCtx};
use crate::state::AppState;

pub const COOKIE: &str = "integro_session";
/// The form field, or header for scripts, that carries the session's CSRF token.
pub const CSRF_FIELD: &str = "_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field that names the tenant a page was drawn for (htmx sends
/// `x-integro-tenant`).
pub const TENANT_FIELD: &str = "_tenant";

/// A signed-in browser: its session and user.
#[derive(Clone)]
pub struct SignedIn {
    pub session: WebSession,
    pub user: User,
}

impl SignedIn {
    /// The caller as the API sees one.
    pub fn auth(&self, headers: &HeaderMap) -> Auth {
        Auth::of(Principal::User(self.user.clone()), headers)
    }
}

/// The session cookie's value, if the request carries one.
fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for a new session, or (with `None`) one that clears it.
pub fn set_cookie(state: &AppState, token: Option<&str>) -> HeaderValue {
    let secure = if state.config.public_base().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let value = match token {
        Some(token) => format!(
            "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            web_sessions::IDLE_MS / 1000
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&value).expect("cookie is visible ASCII")
}

/// Whether the request comes from a page of this server: the browser says
/// so (`Sec-Fetch-Site: same-origin`, which a page cannot set), or its
/// `Origin` (or, without one, its `Referer`) names the host the request was
/// sent to. A form posted from another site names that site.
fn same_origin(headers: &HeaderMap) -> bool {
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some("same-origin") => return true,
        Some(_) => return false,
        None => {}
    }
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| url::Url::parse(v).ok());
    let Some(source) = source else {
        return false;
    };
    let authority = match (source.host_str(), source.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => return false,
    };
    authority.eq_ignore_ascii_case(host)
}

/// Equal without saying where they differ, through its timing.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The dashboard's middleware: finds the session the cookie names, and
/// refuses a state-changing request that does not come from one of this
/// server's pages (`Origin`) or lacks the session's CSRF token (form field
/// `_csrf` or header `x-csrf-token`).
pub async fn load(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let signed = match cookie_token(&parts.headers) {
        Some(token) => match web_sessions::authenticate(&state.db, token).await {
            Ok(found) => found.map(|(session, user)| SignedIn { session, user }),
            Err(e) => return PageError::from(crate::error::ApiError::from(e)).into_response(),
        },
        None => None,
    };
    let mut body = body;
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        if !same_origin(&parts.headers) {
            return PageError::Forbidden(
                "this form was sent from another site, or without saying where from".into(),
            )
            .into_response();
        }
        if let Some(signed) = &signed {
            let bytes = match to_bytes(body, state.config.body_limit_bytes).await {
                Ok(bytes) => bytes,
                Err(_) => {
                    return PageError::Invalid(
                        "the form is larger than the configured limit".into(),
                    )
                    .into_response();
                }
            };
            let header_token = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            let token = header_token.or_else(|| {
                form_urlencoded::parse(&bytes)
                    .find(|(k, _)| k == CSRF_FIELD)
                    .map(|(_, v)| v.into_owned())
            });
            if !token.is_some_and(|t| same_secret(&t, &signed.session.csrf_token)) {
                return PageError::Forbidden(
                    "the form's security token is missing or stale: reload the page and try again"
                        .into(),
                )
                .into_response();
            }
            // A form drawn for one tenant, sent after another tab switched
            // the session to another, must not act in the other.
            let drawn_for = parts
                .headers
                .get(TENANT_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
                .or_else(|| {
                    form_urlencoded::parse(&bytes)
                        .find(|(k, _)| k == TENANT_FIELD)
                        .map(|(_, v)| v.into_owned())
                });
            let switching = parts.uri.path() == "/tenant";
            if let (Some(drawn), Some(current), false) =
                (drawn_for, signed.session.tenant_id, switching)
                && drawn != current.to_string()
            {
                return PageError::Conflict(
                    "this page was drawn for another tenant than the one this session acts in now \
                     (switched in another tab): reload the page and try again"
                        .into(),
                )
                .into_response();
            }
            body = Body::from(bytes);
        }
    }
    if let Some(signed) = signed {
        parts.extensions.insert(signed);
    }
    next.run(Request::from_parts(parts, body)).await
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, PageError> {
        parts.extensions.get::<SignedIn>().cloned().ok_or_else(|| {
            // Back to the page after signing in; a form's target is no page.
            let back = if parts.method == Method::GET {
                parts.uri.path().to_string()
            } else {
                String::new()
            };
            PageError::SignIn(back)
        })
    }
}

/// A tenant the user may act in, for the tenant picker.
#[derive(Clone)]
pub struct TenantChoice {
    pub id: Uuid,
    pub name: String,
}

/// A signed-in user acting inside one tenant.
pub struct Acting {
    pub signed: SignedIn,
    pub ctx: TenantCtx,
    pub tenants: Vec<TenantChoice>,
}

/// The tenants `user` may act in: all of them for operators, else their
/// memberships.
pub async fn tenant_choices(state: &AppState, user: &User) -> Result<Vec<TenantChoice>, PageError> {
    let member = (!user.is_operator).then_some(user.id);
    let tenants =
        integro_store::tenants::list(&state.db, member, &integro_store::PageRequest::first(200))
            .await?;
    Ok(tenants
        .items
        .into_iter()
        .map(|t| TenantChoice {
            id: t.id,
            name: t.name,
        })
        .collect())
}

impl FromRequestParts<AppState> for Acting {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let signed = SignedIn::from_request_parts(parts, state).await?;
        let tenants = tenant_choices(state, &signed.user).await?;
        // An operator's list is cut at 200 tenants; the stored choice is
        // checked by `role_in` below instead.
        let chosen = signed
            .session
            .tenant_id
            .filter(|id| signed.user.is_operator || tenants.iter().any(|t| t.id == *id))
            .or(match tenants.as_slice() {
                [only] => Some(only.id),
                _ => None,
            });
        let Some(tenant_id) = chosen else {
            return Err(PageError::ChooseTenant);
        };
        if signed.session.tenant_id != Some(tenant_id) {
            // The only tenant, kept: a second one made later does not send
            // this session to the picker.
            web_sessions::choose_tenant(&state.db, signed.session.id, tenant_id).await?;
        }
        let auth = signed.auth(&parts.headers);
        let Ok(role) = auth.role_in(state, tenant_id).await else {
            // The tenant went away, or the user left it.
            return Err(PageError::ChooseTenant);
        };
        let role: Role = role;
        Ok(Acting {
            ctx: TenantCtx {
                tenant_id,
                role,
                auth,
            },
            signed,
            tenants,
        })
    }
}
