//! Integro's storage: the schema (embedded migrations) and the repositories,
//! scoped by tenant, the audit log and sealed secrets, over the storage
//! engine of `integro-db` (one code path for SQLite and PostgreSQL).

pub mod accounts;
pub mod ai_credentials;
pub mod ai_profiles;
pub mod api_keys;
pub mod audit;
pub mod bots;
pub mod business_calendars;
pub mod canned_replies;
pub mod conversations;
pub mod credentials;
pub mod events;
pub mod fields;
mod filter;
pub mod invitations;
pub mod job_wakeups;
pub mod jobs;
pub mod labels;
pub mod memory;
pub mod message_stats;
pub mod migrations;
pub mod notes;
pub mod oauth_states;
pub mod page;
pub mod posts;
pub mod rate_limits;
pub mod reads;
pub mod rules;
pub mod schedules;
pub mod secrets;
pub mod sessions;
pub mod tenants;
pub mod trends;
pub mod usage;
pub mod users;
pub mod web_public;
pub mod web_sessions;
pub mod webhook_batch;
pub mod webhook_logs;
pub mod workflow_instances;
pub mod workflow_stats;
pub mod workflows;
pub mod x_metrics;
pub mod x_poll;
pub mod x_spend;

pub use integro_db::{Backend, BoxFuture, Conn, Db, DbError, StoreError, Tx};
/// The storage engine's modules, where the repositories and their callers
/// have always found them.
pub use integro_db::{db, insert, pg_socket, readers, sql};
pub use page::{Page, PageRequest};

pub(crate) fn parse_id(text: &str) -> Result<uuid::Uuid, StoreError> {
    uuid::Uuid::parse_str(text)
        .map_err(|e| StoreError::Internal(format!("stored id `{text}` is not a UUID: {e}")))
}
