//! The REST API under `/api/v1`: one module per resource, each with a
//! `router()` merged here, and the OpenAPI document generated from them.

use utoipa::openapi::RefOr;
use utoipa::openapi::response::Response;
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
pub mod business_calendars;
pub mod canned_replies;
pub mod conversations;
pub mod events;
pub mod health;
pub mod invitations;
pub mod jobs;
pub mod labels;
pub mod members;
pub mod post_drafts;
pub mod posts;
pub mod rules;
pub mod settings;
pub mod tenants;
pub mod trends;
pub mod usage;
pub mod users;
pub mod web;
pub mod webhook_logs;
pub mod workflow_definitions;
pub mod workflow_events;
pub mod workflow_instances;
pub mod workflow_stats;
pub mod x_connect;
pub mod x_metrics;
pub mod x_spend;

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
        (name = "workflows", description = "Workflow definitions, versions and instances: forms and cases with timers and SLAs"),
        (name = "auth", description = "Sign in, refresh, sign out"),
        (name = "tenants", description = "Organisations (platform operators)"),
        (name = "users", description = "People of a tenant and their roles"),
        (name = "api-keys", description = "Keys for programs, per tenant"),
        (name = "audit-log", description = "Who changed what"),
        (name = "bots", description = "Bots: fallback replies, personas, settings, dry runs"),
        (name = "rules", description = "A bot's keyword and pattern rules; YAML import and export"),
        (name = "ai", description = "LLM credentials, AI profiles, token usage and engine events"),
        (name = "trends", description = "Trends from X and from a tenant's RSS and Atom feeds"),
        (name = "usage", description = "Messages, replies, hand-offs and delivery failures per day"),
        (name = "settings", description = "The tenant's budget and alert webhook"),
        (name = "accounts", description = "Channel accounts (WhatsApp, Instagram, X, web)"),
        (name = "conversations", description = "Conversations, messages, manual replies"),
        (name = "posts", description = "Posts on X accounts: drafts, approval, scheduled publication"),
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

/// OpenAPI requires a `description` on every response object, and clients
/// generators refuse a document without them; most of the routes' responses
/// declare only a status and a body. This gives each response still without
/// one a description by its status. Not among `ApiDoc`'s modifiers: those
/// run before the routes are merged in, when there is no response yet;
/// [`served_document`] applies it to the whole.
struct ResponseDescriptions;

impl Modify for ResponseDescriptions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let describe = |status: &str, response: &mut RefOr<Response>| {
            if let RefOr::T(response) = response
                && response.description.trim().is_empty()
            {
                response.description = description_of(status).to_owned();
            }
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
                &mut item.query,
            ];
            let operations = operations
                .into_iter()
                .flatten()
                .chain(item.additional_operations.values_mut());
            for operation in operations {
                for (status, response) in &mut operation.responses.responses {
                    describe(status, response);
                }
            }
        }
        if let Some(components) = &mut openapi.components {
            for response in components.responses.values_mut() {
                describe("", response);
            }
        }
    }
}

/// A response's description by its status code.
fn description_of(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "202" => "Accepted",
        "204" => "No content",
        "400" => "Malformed request",
        "401" => "Not authenticated",
        "403" => "Forbidden for the caller's role",
        "404" => "Not found",
        "408" => "Request timeout",
        "409" => "Conflict",
        "413" => "Body too large",
        "415" => "Unsupported media type",
        "422" => "Invalid field",
        "429" => "Rate limited",
        "500" => "Internal error",
        "502" => "Upstream failure",
        "503" => "Unavailable",
        "default" => "Any other response",
        _ => "Response",
    }
}

/// The document served at [`crate::http::OPENAPI_PATH`]: the API's, with
/// the webhooks' merged in, every response described.
pub fn served_document(
    mut api: utoipa::openapi::OpenApi,
    webhooks: utoipa::openapi::OpenApi,
) -> utoipa::openapi::OpenApi {
    api.merge(webhooks);
    ResponseDescriptions.modify(&mut api);
    api
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
        .merge(x_connect::router())
        .merge(trends::router())
        .merge(x_metrics::router())
        .merge(x_spend::router())
        .merge(conversations::router())
        .merge(labels::router())
        .merge(canned_replies::router())
        .merge(posts::router())
        .merge(post_drafts::router())
        .merge(web::router())
        .merge(jobs::router())
        .merge(webhook_logs::router())
        .merge(business_calendars::router())
        .merge(workflow_definitions::router())
        .merge(workflow_instances::router())
        .merge(workflow_events::router())
        .merge(workflow_stats::router())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// Every response object of the served document has a description
    /// (OpenAPI requires one; client generators refuse the document
    /// without), and every operation its own id.
    #[test]
    fn every_response_is_described() {
        // Assembled as `http::router` assembles it.
        let (_, mut api) = router().split_for_parts();
        let (_, visitors) = web::public::visitor_router().split_for_parts();
        api.merge(visitors);
        let (_, webhooks) = crate::webhooks::router().split_for_parts();
        let doc = serde_json::to_value(served_document(api, webhooks)).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));

        let mut responses = Vec::new();
        let mut operation_ids = std::collections::BTreeMap::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let Some(map) = operation.get("responses").and_then(Value::as_object) else {
                    continue;
                };
                // Unique too (utoipa takes the handler's name, which two
                // modules may share: then `operation_id = "…"` in its path).
                if let Some(id) = operation["operationId"].as_str()
                    && let Some(other) = operation_ids.insert(id, format!("{method} {path}"))
                {
                    panic!("operationId {id} is both {other}'s and {method} {path}'s");
                }
                assert!(!map.is_empty(), "{method} {path} has no response");
                for (status, response) in map {
                    responses.push((format!("{method} {path} {status}"), response));
                }
            }
        }
        if let Some(map) = doc["components"]["responses"].as_object() {
            for (name, response) in map {
                responses.push((format!("components.responses.{name}"), response));
            }
        }
        // Tag names are unique (the validator refuses a repeated one).
        let mut tags = std::collections::BTreeSet::new();
        for tag in doc["tags"].as_array().unwrap() {
            let name = tag["name"].as_str().unwrap();
            assert!(tags.insert(name), "the tag {name} is declared twice");
        }
        assert!(responses.len() > 100, "only {} responses", responses.len());
        for (at, response) in responses {
            if response.get("$ref").is_some() {
                continue;
            }
            let description = response["description"].as_str().unwrap_or_default();
            assert!(!description.trim().is_empty(), "{at} has no description");
        }
    }

    #[test]
    fn descriptions_by_status() {
        assert_eq!(description_of("201"), "Created");
        assert_eq!(description_of("429"), "Rate limited");
        assert_eq!(description_of("299"), "Response");
    }
}
