//! `GET /`: a page saying what this server is, where the API documentation
//! is and how to sign in, until the dashboard takes its place.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

use crate::state::AppState;

const PAGE: &str = include_str!("assets/home.html");

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(home))
}

async fn home(State(state): State<AppState>) -> impl IntoResponse {
    let page = PAGE
        .replace("{{version}}", env!("CARGO_PKG_VERSION"))
        .replace("{{base}}", &html_escape(&state.config.public_base()));
    ([(header::CACHE_CONTROL, "no-cache")], Html(page))
}

/// The operator's public URL, as text inside the page.
fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
