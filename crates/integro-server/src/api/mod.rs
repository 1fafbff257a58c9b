//! The REST API under `/api/v1`: one module per resource, each with a
//! `router()` merged here, and the OpenAPI document generated from them.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

pub mod accounts;
pub mod ai_credentials;
pub mod ai_profiles;
pub mod api_keys;
pub mod audit_log;
pub mod auth;
pub mod bots;
pub mod conversations;
pub mod events;
pub mod health;
pub mod invitations;
pub mod jobs;
pub mod members;
pub mod rules;
pub mod settings;
pub mod tenants;
pub mod usage;
pub mod users;
pub mod web;
pub mod webhook_logs;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Integro API",
        description = "Self-hosted, multi-tenant, omnichannel AI bot platform. \
            Authenticate with `Authorization: Bearer <access token or API key>`; \
            act inside a tenant with the API key's tenant or the `X-Integro-Tenant` header. \
            Errors are RFC 9457 problem details with a stable `code`; lists are cursor-paginated."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Sign in, refresh, sign out"),
        (name = "tenants", description = "Organisations (platform operators)"),
        (name = "users", description = "People of a tenant and their roles"),
        (name = "api-keys", description = "Keys for programs, per tenant"),
        (name = "audit-log", description = "Who changed what"),
        (name = "bots", description = "Bots: fallback replies, personas, settings, dry runs"),
        (name = "rules", description = "A bot's keyword and pattern rules; YAML import and export"),
        (name = "ai", description = "LLM credentials, AI profiles, token usage and engine events"),
        (name = "settings", description = "The tenant's budget and alert webhook"),
        (name = "accounts", description = "Channel accounts (WhatsApp, Instagram, X, web)"),
        (name = "conversations", description = "Conversations, messages, manual replies"),
        (name = "web", description = "Integro's own web/API channel"),
        (name = "jobs", description = "The job queue; dead jobs can be retried"),
        (name = "webhook-logs", description = "Every webhook request received"),
        (name = "webhooks", description = "Endpoints the channel providers call"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An access token from /api/v1/auth/login, or an API key (ik_…)",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every route of the API with its OpenAPI description (the webhooks'
/// are in `webhooks::router`, which `http::router` serves beside it).
pub fn router() -> OpenApiRouter<AppState> {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    OpenApiRouter::with_openapi(doc)
        .merge(health::router())
        .merge(auth::router())
        .merge(tenants::router())
        .merge(users::router())
        .merge(invitations::router())
        .merge(members::router())
        .merge(api_keys::router())
        .merge(audit_log::router())
        .merge(bots::router())
        .merge(rules::router())
        .merge(ai_credentials::router())
        .merge(ai_profiles::router())
        .merge(usage::router())
        .merge(events::router())
        .merge(settings::router())
        .merge(accounts::router())
        .merge(conversations::router())
        .merge(web::router())
        .merge(jobs::router())
        .merge(webhook_logs::router())
}
