//! What every page shares: the layout's data, rendering, and errors shown as
//! pages (or, for signed-out visitors, a trip to the sign-in form).

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::session::{Acting, TenantChoice};
use crate::error::ApiError;

/// The header, navigation and tenant picker around every signed-in page.
pub struct Layout {
    pub title: String,
    /// Which navigation entry is current (`inbox`, `bots`, `jobs`, `account`).
    pub nav: &'static str,
    pub user_email: String,
    pub tenant_id: String,
    pub tenants: Vec<TenantChoice>,
    pub csrf: String,
    pub version: &'static str,
}

impl Layout {
    pub fn of(acting: &Acting, title: impl Into<String>, nav: &'static str) -> Layout {
        Layout {
            title: title.into(),
            nav,
            user_email: acting.signed.user.email.clone(),
            tenant_id: acting.ctx.tenant_id.to_string(),
            tenants: acting.tenants.clone(),
            csrf: acting.signed.session.csrf_token.clone(),
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    /// `aria-current` for the navigation entry `name`.
    pub fn current(&self, name: &str) -> &'static str {
        if self.nav == name { "page" } else { "false" }
    }
}

/// The first page of an API list, as long as a page shows.
pub fn first_page() -> axum::extract::Query<crate::extract::ListParams> {
    axum::extract::Query(crate::extract::ListParams {
        limit: Some(200),
        cursor: None,
    })
}

/// A time as pages show it (UTC, to the minute).
pub fn when(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    t.format(&f).unwrap_or_default()
}

/// A rendered page, or a 500 when a template fails.
pub fn render(page: &impl Template) -> Response {
    render_with(StatusCode::OK, page)
}

pub fn render_with(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a dashboard template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be drawn",
            )
                .into_response()
        }
    }
}

/// Why a page is not shown.
#[derive(Debug)]
pub enum PageError {
    /// Not signed in: to the sign-in form, then back to this path.
    SignIn(String),
    /// Signed in to several tenants and none chosen yet.
    ChooseTenant,
    Forbidden(String),
    Conflict(String),
    Invalid(String),
    Api(ApiError),
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError::Api(e)
    }
}

impl From<integro_store::StoreError> for PageError {
    fn from(e: integro_store::StoreError) -> PageError {
        PageError::Api(e.into())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    detail: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, detail) = match self {
            PageError::SignIn(path) => {
                let target = if path.starts_with('/') && !path.starts_with("//") {
                    format!(
                        "/login?next={}",
                        form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>()
                    )
                } else {
                    "/login".to_string()
                };
                // htmx follows a redirect inside its request; HX-Redirect
                // makes it load the sign-in page as a whole page instead.
                let mut response = Redirect::to(&target).into_response();
                if let Ok(value) = HeaderValue::from_str(&target) {
                    response.headers_mut().insert("hx-redirect", value);
                }
                return response;
            }
            PageError::ChooseTenant => return Redirect::to("/tenant").into_response(),
            PageError::Forbidden(detail) => (StatusCode::FORBIDDEN, detail),
            PageError::Conflict(detail) => (StatusCode::CONFLICT, detail),
            PageError::Invalid(detail) => (StatusCode::UNPROCESSABLE_ENTITY, detail),
            PageError::Api(e) => (e.status, e.detail),
        };
        render_with(
            status,
            &ErrorPage {
                status: status.as_u16(),
                reason: status.canonical_reason().unwrap_or("Error"),
                detail: &detail,
            },
        )
    }
}

pub type PageResult<T = Response> = Result<T, PageError>;
