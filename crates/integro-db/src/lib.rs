//! Integro's storage engine: one handle over SQLite (embedded default) and
//! PostgreSQL (scale-out). Connections and pools, the group committers,
//! the loop's readers, WAL checkpoints, the SQLite writer's CPU, statements
//! for both drivers and bulk inserts. It knows no table: the schema and the
//! repositories are `integro-store`'s.

mod checkpoint;
pub mod db;
mod direct_readers;
mod error;
mod group_commit;
pub mod insert;
#[doc(hidden)]
mod pg_group_commit;
pub mod pg_socket;
pub mod readers;
pub mod sql;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod writer_cpu;

pub use db::{Backend, ConnectOptions, Db, EmbeddedMigration, Tx};
pub use error::{OnUnique, StoreError};
pub use futures_util::future::BoxFuture;
pub use sql::Conn;
/// The database driver's error, for callers that commit transactions.
pub use sqlx::Error as DbError;
