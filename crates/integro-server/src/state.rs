//! What every handler shares.

use std::sync::Arc;

use integro_store::Db;
use integro_store::secrets::Keyring;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::rate_limit::RateLimit;
use crate::tokens::TokenKeys;

/// Cloned for every request (and by every middleware on its way), so it is
/// one reference count rather than a clone of every field (ADR 0029).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub db: Db,
    pub config: Arc<Config>,
    pub keyring: Arc<Keyring>,
    pub tokens: TokenKeys,
    pub rate_limit: Arc<RateLimit>,
    /// Sign-in's throttles and password-hashing threads.
    pub login_guard: Arc<crate::login_guard::LoginGuard>,
    /// `INTEGRO_TRUSTED_PROXIES`, parsed.
    pub trusted_proxies: Arc<[std::net::IpAddr]>,
    /// Event streams open per caller and per tenant.
    pub streams: Arc<crate::streams::StreamSlots>,
    /// Web chat visitors: their tokens' keys and rate limits (`api::web::public`).
    pub visitors: Arc<crate::api::web::public::Visitors>,
    /// Refused webhooks per path and source, to hold back a flood of them.
    pub refusals: Arc<crate::webhooks::refusals::Refusals>,
    pub metrics: PrometheusHandle,
    /// Wakes this process's workers when a request enqueues a job.
    pub wake: Arc<tokio::sync::Notify>,
    /// Channel accounts recently named by webhooks.
    pub accounts: Arc<integro_worker::accounts::AccountCache>,
    /// Turns true when the process is shutting down.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Stores webhooks in group commits.
    pub ingest: crate::ingest::Ingestor,
    /// The reply engine, shared with this process's workers (dry runs use it).
    pub engine: Arc<integro_worker::Engine>,
    /// X CRC answers per account (`webhooks::x::CRC_PER_MINUTE`).
    pub x_crc: RateLimit<uuid::Uuid>,
}
