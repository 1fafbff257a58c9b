//! Integro's storage: one code path over SQLite (embedded default) and
//! PostgreSQL (scale-out), embedded migrations, repositories scoped by tenant,
//! the audit log and sealed secrets.

pub mod accounts;
pub mod ai_credentials;
pub mod ai_profiles;
pub mod api_keys;
pub mod audit;
pub mod bots;
pub mod canned_replies;
mod checkpoint;
pub mod conversations;
pub mod credentials;
pub mod db;
mod direct_readers;
mod error;
pub mod events;
pub mod fields;
mod filter;
mod group_commit;
pub mod insert;
pub mod invitations;
pub mod job_wakeups;
pub mod jobs;
pub mod labels;
pub mod memory;
pub mod message_stats;
pub mod notes;
pub mod oauth_states;
pub mod page;
#[doc(hidden)]
mod pg_group_commit;
pub mod pg_socket;
pub mod posts;
pub mod rate_limits;
pub mod readers;
pub mod reads;
pub mod rules;
pub mod schedules;
pub mod secrets;
pub mod sessions;
pub mod sql;
pub mod tenants;
pub mod trends;
pub mod usage;
pub mod users;
pub mod web_public;
pub mod web_sessions;
pub mod webhook_batch;
pub mod webhook_logs;
mod writer_cpu;
pub mod x_metrics;
pub mod x_poll;
pub mod x_spend;

pub use db::{Backend, Db, Tx};
pub use error::StoreError;
pub use futures_util::future::BoxFuture;
pub use page::{Page, PageRequest};
pub use sql::Conn;
/// The database driver's error, for callers that commit transactions.
pub use sqlx::Error as DbError;

pub(crate) fn parse_id(text: &str) -> Result<uuid::Uuid, StoreError> {
    uuid::Uuid::parse_str(text)
        .map_err(|e| StoreError::Internal(format!("stored id `{text}` is not a UUID: {e}")))
}
