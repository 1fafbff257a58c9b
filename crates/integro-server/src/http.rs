//! The HTTP stack: request ids, tracing, metrics, problem details for bare
//! errors, timeout and body limit around every route; security headers and
//! CORS around the API's only (the webhooks are called server to server,
//! ADR 0021).

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::Config;
use crate::error::{ApiError, problem_for_bare_errors};
use crate::extract::{REQUEST_ID_HEADER, TENANT_HEADER};
use crate::state::AppState;

pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    let (api, mut api_openapi) = crate::api::router().split_for_parts();
    let (visitors, visitors_openapi) = crate::api::web::public::visitor_router().split_for_parts();
    api_openapi.merge(visitors_openapi);
    let (webhooks, webhooks_openapi) = crate::webhooks::router().split_for_parts();
    let openapi = crate::api::served_document(api_openapi, webhooks_openapi);
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);

    // Bodies are limited where they are read: by extractors for the API
    // (DefaultBodyLimit), by the webhook handlers themselves, which log the refusal.
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let per_route = |routes: Router| {
        routes
            .layer(middleware::from_fn(record_metrics))
            .layer(middleware::from_fn_with_state(in_flight.clone(), shed_load))
            .layer(DefaultBodyLimit::max(config.body_limit_bytes))
    };
    let timeout = TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        Duration::from_secs(config.request_timeout_secs),
    );

    // What browsers read: the API, the dashboard's calls and Swagger UI.
    // Listed outermost first.
    let api = per_route(
        api.with_state(state.clone())
            // Swagger UI's files are compiled into the binary: nothing is fetched from a CDN.
            .merge(SwaggerUi::new("/docs").url(OPENAPI_PATH, openapi))
            .merge(crate::dashboard::router(state.clone()).with_state(state.clone())),
    )
    .layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn(security_headers))
            .layer(cors(&config))
            .layer(timeout),
    );
    // What a website's visitors call from its pages: CORS by the origins
    // of the account the path names (`web::public::cors`), never the API's
    // list, which would open them to the dashboard's origins (or any).
    let visitors = per_route(visitors.with_state(state.clone())).layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn(security_headers))
            .layer(middleware::from_fn_with_state(
                state.clone(),
                crate::api::web::public::cors,
            ))
            .layer(timeout),
    );
    // What providers call, server to server: no browser reads these
    // answers, so neither CORS nor the browser's security headers apply,
    // and the webhook path no longer pays for them (ADR 0021).
    let refusals = state.refusals.clone();
    let webhooks = per_route(webhooks.with_state(state))
        .layer(middleware::from_fn_with_state(
            refusals,
            crate::webhooks::refusals::limit,
        ))
        .layer(timeout);

    // All three, listed outermost first. Unknown paths get the API's answer
    // (a router merged into another gives it its fallback: the API's is
    // merged last).
    webhooks.merge(visitors).merge(api).layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn(refuse_long_uri))
            .layer(middleware::map_request(drop_unusable_request_id))
            .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|req: &Request| {
                        let request_id = req
                            .headers()
                            .get(REQUEST_ID_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default();
                        tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %request_id)
                    })
                    .on_response(|res: &Response, latency: Duration, _span: &tracing::Span| {
                        tracing::info!(status = res.status().as_u16(), latency_ms = latency.as_secs_f64() * 1000.0, "response");
                    }),
            )
            .layer(PropagateRequestIdLayer::new(request_id))
            .layer(middleware::map_response(problem_for_bare_errors)),
    )
}

/// The longest URI (path and query) served; no route needs more.
pub const MAX_URI_LEN: usize = 8 * 1024;

/// 414 as problem details for a URI longer than `MAX_URI_LEN` (the HTTP
/// library's own limit, far higher, answers in plain text).
async fn refuse_long_uri(req: Request, next: Next) -> Response {
    let len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if len > MAX_URI_LEN {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the URI is {len} bytes long; at most {MAX_URI_LEN} are accepted"),
        )
        .into_response();
    }
    next.run(req).await
}

/// The longest `x-request-id` kept; a longer one is replaced by a new id.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Drops a client's `x-request-id` that is too long or not plain visible
/// ASCII, so that a fresh one is made: the id goes into every log line and
/// the audit log.
async fn drop_unusable_request_id(mut req: Request) -> Request {
    let unusable = req.headers().get(REQUEST_ID_HEADER).is_some_and(|id| {
        id.len() > MAX_REQUEST_ID_LEN
            || id.is_empty()
            || !id.as_bytes().iter().all(|b| b.is_ascii_graphic())
    });
    if unusable {
        req.headers_mut().remove(REQUEST_ID_HEADER);
    }
    req
}

/// `http_requests_total` and `http_request_duration_seconds` by method, route
/// template (not the raw path, to keep the label set small) and status.
/// The labels are static strings: made anew as `String`s they were six
/// allocations per request.
async fn record_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| interned(p.as_str()));
    let method = method_label(req.method());
    let response = next.run(req).await;
    let status = interned(response.status().as_str());
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}

/// A standard method's name; any other is `other` (a client may send any
/// token as a method, and each label value is kept).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// `label` as a string that lives as long as the process, made once. Only
/// for values from a small fixed set (route templates, status codes).
fn interned(label: &str) -> &'static str {
    static SEEN: LazyLock<RwLock<HashSet<&'static str>>> = LazyLock::new(RwLock::default);
    if let Some(seen) = SEEN.read().expect("metric labels").get(label) {
        return seen;
    }
    let mut seen = SEEN.write().expect("metric labels");
    match seen.get(label) {
        Some(label) => label,
        None => {
            let label: &'static str = Box::leak(label.into());
            seen.insert(label);
            label
        }
    }
}

/// Past the in-flight limit, answers 503 at once: a provider delivers the
/// webhook again later, and memory stays bounded under any load.
async fn shed_load(State(in_flight): State<Arc<Semaphore>>, req: Request, next: Next) -> Response {
    let exempt = matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics");
    match in_flight.try_acquire() {
        Ok(_permit) => next.run(req).await,
        Err(_) if exempt => next.run(req).await,
        Err(_) => {
            metrics::counter!("integro_requests_shed_total").increment(1);
            ApiError {
                retry_after_secs: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "too many requests in flight; retry shortly",
                )
            }
            .into_response()
        }
    }
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    let defaults = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            // Swagger UI at /docs needs its own scripts, styles and inline images.
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        ),
    ];
    // Room for them at once: grown one header at a time, the map was
    // reallocated for nearly every response.
    headers.reserve(defaults.len());
    for (name, value) in defaults {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

fn cors(config: &Config) -> CorsLayer {
    let origins = &config.cors_origins;
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static(TENANT_HEADER),
            HeaderName::from_static(REQUEST_ID_HEADER),
        ])
        .expose_headers([
            HeaderName::from_static(REQUEST_ID_HEADER),
            header::RETRY_AFTER,
        ])
        .max_age(Duration::from_secs(3600))
}
