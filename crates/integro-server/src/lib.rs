//! Integro's HTTP server: the `/api/v1` REST API with its OpenAPI document and
//! Swagger UI, authentication and tenancy, health checks and metrics.

pub mod api;
pub mod client_address;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod http;
pub mod ingest;
pub mod login_guard;
pub mod rate_limit;
pub mod startup;
pub mod state;
pub mod streams;
pub mod telemetry;
pub mod tokens;
pub mod webhooks;

pub use config::Config;
pub use startup::App;
