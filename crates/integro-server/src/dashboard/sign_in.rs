//! Signing in and out, choosing the tenant to act in, and the list of one's
//! own sessions (each revocable).

use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use integro_store::web_sessions::{self, WebSession};
use serde::Deserialize;
use uuid::Uuid;

use super::page::{Layout, PageError, PageResult, render, render_with, when};
use super::session::{self, Acting, SignedIn, TenantChoice, tenant_choices};
use crate::error::ApiError;
use crate::state::AppState;

/// `/`: the inbox when signed in, else the sign-in form.
pub async fn root(signed: Option<SignedIn>) -> Redirect {
    match signed {
        Some(_) => Redirect::to("/inbox"),
        None => Redirect::to("/login"),
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for SignedIn {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<SignedIn>().cloned())
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    next: String,
    email: String,
    error: Option<String>,
    version: &'static str,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Only a path of this server: never another site (an open redirect).
/// Browsers drop tabs and newlines from a URL, so `/\t/evil.example` would
/// become `//evil.example`: only visible ASCII, and no backslash, is kept.
fn local_path(next: Option<String>) -> String {
    next.filter(|n| {
        n.starts_with('/')
            && !n.starts_with("//")
            && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
    })
    .unwrap_or_else(|| "/inbox".into())
}

pub async fn login_form(Query(q): Query<LoginQuery>) -> Response {
    render(&LoginPage {
        next: local_path(q.next),
        email: String::new(),
        error: None,
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    next: Option<String>,
}

/// Checks the password with the API's throttles and hashing threads, then
/// starts a session.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> PageResult {
    let next = local_path(form.next);
    let refuse = |status: StatusCode, why: &str| {
        render_with(
            status,
            &LoginPage {
                next: next.clone(),
                email: form.email.clone(),
                error: Some(why.to_string()),
                version: env!("CARGO_PKG_VERSION"),
            },
        )
    };
    if form.email.len() > 320 || form.password.len() > 1024 {
        return Ok(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "wrong email or password",
        ));
    }
    let user = match crate::api::auth::check_password(
        &state,
        peer,
        &headers,
        &form.email,
        form.password.clone(),
    )
    .await
    {
        Ok(user) => user,
        Err(e) => return Ok(refuse(e.status, &e.detail)),
    };
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let started = web_sessions::start(&state.db, &user, agent).await?;
    tracing::info!(user = %user.id, "signed in to the dashboard");
    Ok((
        [(
            header::SET_COOKIE,
            session::set_cookie(&state, Some(&started.token)),
        )],
        Redirect::to(&next),
    )
        .into_response())
}

pub async fn logout(State(state): State<AppState>, signed: Option<SignedIn>) -> PageResult {
    if let Some(signed) = signed {
        web_sessions::revoke(&state.db, signed.user.id, signed.session.id).await?;
    }
    Ok((
        [(header::SET_COOKIE, session::set_cookie(&state, None))],
        Redirect::to("/login"),
    )
        .into_response())
}

#[derive(Template)]
#[template(path = "tenant.html")]
struct TenantPage {
    tenants: Vec<TenantChoice>,
    csrf: String,
    /// Operators may create tenants here (a new install has none).
    is_operator: bool,
}

/// The tenant picker, for users of several tenants who have not chosen.
pub async fn tenant_form(State(state): State<AppState>, signed: SignedIn) -> PageResult {
    let tenants = tenant_choices(&state, &signed.user).await?;
    Ok(render(&TenantPage {
        tenants,
        is_operator: signed.user.is_operator,
        csrf: signed.session.csrf_token,
    }))
}

#[derive(Deserialize)]
pub struct TenantForm {
    tenant_id: Uuid,
}

pub async fn choose_tenant(
    State(state): State<AppState>,
    headers: HeaderMap,
    signed: SignedIn,
    Form(form): Form<TenantForm>,
) -> PageResult {
    // The API's own check: a tenant the user may not see is not found.
    signed
        .auth(&headers)
        .role_in(&state, form.tenant_id)
        .await
        .map_err(PageError::from)?;
    web_sessions::choose_tenant(&state.db, signed.session.id, form.tenant_id).await?;
    Ok(Redirect::to("/inbox").into_response())
}

/// A session as its row shows it.
pub struct SessionView {
    pub id: Uuid,
    pub user_agent: Option<String>,
    pub created: String,
    pub last_seen: String,
}

fn session_view(s: WebSession) -> SessionView {
    SessionView {
        id: s.id,
        user_agent: s.user_agent,
        created: when(s.created_at),
        last_seen: when(s.last_seen_at),
    }
}

#[derive(Template)]
#[template(path = "sessions.html")]
struct SessionsPage {
    layout: Layout,
    current: Uuid,
    sessions: Vec<SessionView>,
}

pub async fn sessions(State(state): State<AppState>, acting: Acting) -> PageResult {
    let sessions = web_sessions::list(&state.db, acting.signed.user.id).await?;
    Ok(render(&SessionsPage {
        current: acting.signed.session.id,
        layout: Layout::of(&acting, "Sessions", "account"),
        sessions: sessions.into_iter().map(session_view).collect(),
    }))
}

pub async fn revoke_session(
    State(state): State<AppState>,
    signed: SignedIn,
    Path(id): Path<Uuid>,
) -> PageResult {
    if !web_sessions::revoke(&state.db, signed.user.id, id).await? {
        return Err(ApiError::not_found("session").into());
    }
    if id == signed.session.id {
        return Ok((
            [(header::SET_COOKIE, session::set_cookie(&state, None))],
            Redirect::to("/login"),
        )
            .into_response());
    }
    Ok(Redirect::to("/account/sessions").into_response())
}

#[derive(Deserialize)]
pub struct NewTenantForm {
    name: String,
}

/// An operator creates a tenant (the API's handler) and acts in it.
pub async fn create_tenant(
    State(state): State<AppState>,
    headers: HeaderMap,
    signed: SignedIn,
    Form(form): Form<NewTenantForm>,
) -> PageResult {
    let request = crate::api::tenants::TenantRequest { name: form.name };
    let tenant = crate::api::tenants::create_tenant(
        State(state.clone()),
        signed.auth(&headers),
        crate::extract::ApiJson(request),
    )
    .await?
    .1
    .0;
    web_sessions::choose_tenant(&state.db, signed.session.id, tenant.id).await?;
    Ok(Redirect::to("/inbox").into_response())
}
