//! The web dashboard, served by the binary: server-rendered pages
//! (askama templates, checked at compile time) with htmx for live parts,
//! both vendored (`assets.rs`). Pages sign in with a cookie session
//! (`session.rs`) and act through the API's own handlers and role checks.

mod ai;
mod assets;
mod bot_settings;
mod bots;
mod canned;
mod channels;
mod chart;
mod inbox;
mod jobs;
mod operations;
mod page;
mod posts;
mod session;
mod sign_in;
mod team;
mod usage;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::routing::{get, post};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::state::AppState;

pub(crate) use page::render_with;

/// The dashboard's content security policy: its own scripts and styles only.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(sign_in::root))
        .route("/login", get(sign_in::login_form).post(sign_in::login))
        .route("/logout", post(sign_in::logout))
        .route(
            "/tenant",
            get(sign_in::tenant_form).post(sign_in::choose_tenant),
        )
        .route("/tenants", post(sign_in::create_tenant))
        .route("/account/sessions", get(sign_in::sessions))
        .route(
            "/account/sessions/{id}/revoke",
            post(sign_in::revoke_session),
        )
        .route(
            crate::api::x_connect::CALLBACK_PATH,
            get(crate::api::x_connect::callback),
        )
        .route("/inbox", get(inbox::inbox))
        .route("/inbox/rows", get(inbox::inbox_rows))
        .route("/inbox/live", get(inbox::inbox_live))
        .route("/conversations/{id}", get(inbox::conversation))
        .route(
            "/conversations/{id}/messages",
            get(inbox::conversation_messages),
        )
        .route("/conversations/{id}/live", get(inbox::conversation_live))
        .route("/conversations/{id}/send", post(inbox::send))
        .route("/conversations/{id}/handoff", post(inbox::hand_off))
        .route("/conversations/{id}/resume", post(inbox::resume))
        .route("/conversations/{id}/close", post(inbox::close))
        .route("/conversations/{id}/reset", post(inbox::reset))
        .route("/conversations/{id}/assign", post(inbox::assign))
        .route("/conversations/{id}/notes", post(inbox::add_note))
        .route("/conversations/{id}/labels", post(inbox::add_label))
        .route(
            "/conversations/{id}/labels/remove",
            post(inbox::remove_label),
        )
        .route(
            "/canned-replies",
            get(canned::canned_replies).post(canned::create),
        )
        .route("/canned-replies/{id}", post(canned::update))
        .route("/canned-replies/{id}/delete", post(canned::delete))
        .route("/bots", get(bots::bots))
        .route(
            "/bots/{id}",
            get(bot_settings::bot_page).post(bot_settings::update_bot),
        )
        .route("/bots/{id}/persona", post(bot_settings::update_persona))
        .route("/bots/{id}/rules", get(bots::rules).post(bots::create_rule))
        .route("/bots/{id}/rules/{rule}", post(bots::update_rule))
        .route("/bots/{id}/rules/{rule}/delete", post(bots::delete_rule))
        .route("/bots/{id}/try", post(bots::try_message))
        .route("/bots/{id}/rules.yaml", get(bots::export_rules))
        .route("/bots/{id}/rules/import", post(bots::import_rules))
        .route(
            "/channels",
            get(channels::channels).post(channels::create_channel),
        )
        .route("/channels/new", get(channels::new_channel))
        .route("/channels/{id}/test", post(channels::test_channel))
        .route("/posts", get(posts::posts).post(posts::create))
        .route("/posts/drafts", post(posts::draft))
        .route("/posts/{id}/submit", post(posts::submit))
        .route("/posts/{id}/approve", post(posts::approve))
        .route("/posts/{id}/reject", post(posts::reject))
        .route("/posts/{id}/delete", post(posts::delete))
        .route("/usage", get(usage::usage))
        .route("/ai", get(ai::ai))
        .route("/ai/credentials", post(ai::create_credential))
        .route("/ai/credentials/{id}/test", post(ai::test_credential))
        .route("/ai/profiles", post(ai::create_profile))
        .route("/ai/budget", post(ai::set_budget))
        .route("/team", get(team::team))
        .route("/team/members/{id}", post(team::change_role))
        .route("/team/members/{id}/remove", post(team::remove_member))
        .route("/team/invitations", post(team::invite))
        .route(
            "/team/invitations/{id}/revoke",
            post(team::revoke_invitation),
        )
        .route("/team/api-keys", post(team::create_key))
        .route("/team/api-keys/{id}/revoke", post(team::revoke_key))
        .route("/invitation", get(team::invitation_form).post(team::join))
        .route("/operations/webhooks", get(operations::webhooks))
        .route("/operations/events", get(operations::events))
        .route("/operations/audit", get(operations::audit))
        .route("/jobs", get(jobs::jobs))
        .route("/jobs/{id}/retry", post(jobs::retry))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .layer(middleware::from_fn_with_state(state, session::load))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(POLICY),
        ))
        // The API's `no-referrer` makes Chromium send `Origin: null` with a
        // form; the CSRF check needs this site's origin.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .merge(assets::router())
}
