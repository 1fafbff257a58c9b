//! The schema: migrations compiled into the binary, applied in order by
//! `migrate` (`integro migrate`, and `integro serve` on SQLite).

use integro_db::EmbeddedMigration;

use crate::{Db, StoreError};

/// Every migration, oldest first. Where SQLite and PostgreSQL need different
/// SQL the files are `migrations/sqlite/…` and `migrations/postgres/…`.
pub const MIGRATIONS: &[EmbeddedMigration] = &[
    EmbeddedMigration {
        version: 1,
        description: "foundation",
        sqlite: include_str!("../migrations/0001_foundation.sql"),
        postgres: include_str!("../migrations/0001_foundation.sql"),
    },
    EmbeddedMigration {
        version: 2,
        description: "message loop",
        sqlite: include_str!("../migrations/0002_message_loop.sql"),
        postgres: include_str!("../migrations/0002_message_loop.sql"),
    },
    EmbeddedMigration {
        version: 3,
        description: "reply engine",
        sqlite: include_str!("../migrations/0003_reply_engine.sql"),
        postgres: include_str!("../migrations/0003_reply_engine.sql"),
    },
    EmbeddedMigration {
        version: 4,
        description: "job claims",
        sqlite: include_str!("../migrations/0004_job_claims.sql"),
        postgres: include_str!("../migrations/0004_job_claims.sql"),
    },
    EmbeddedMigration {
        version: 5,
        description: "live job queues",
        sqlite: include_str!("../migrations/0005_live_job_queues.sql"),
        postgres: include_str!("../migrations/0005_live_job_queues.sql"),
    },
    EmbeddedMigration {
        version: 6,
        description: "unfiled by job",
        sqlite: include_str!("../migrations/0006_unfiled_by_job.sql"),
        postgres: include_str!("../migrations/0006_unfiled_by_job.sql"),
    },
    EmbeddedMigration {
        version: 7,
        description: "filed messages index",
        sqlite: include_str!("../migrations/0007_filed_messages_index.sql"),
        postgres: include_str!("../migrations/0007_filed_messages_index.sql"),
    },
    EmbeddedMigration {
        version: 8,
        description: "queue hash",
        sqlite: include_str!("../migrations/0008_queue_hash.sql"),
        postgres: include_str!("../migrations/0008_queue_hash.sql"),
    },
    EmbeddedMigration {
        version: 9,
        description: "webhook logs purged by id",
        sqlite: include_str!("../migrations/0009_webhook_logs_purged_by_id.sql"),
        postgres: include_str!("../migrations/0009_webhook_logs_purged_by_id.sql"),
    },
    EmbeddedMigration {
        version: 10,
        description: "invitations",
        sqlite: include_str!("../migrations/0010_invitations.sql"),
        postgres: include_str!("../migrations/0010_invitations.sql"),
    },
    EmbeddedMigration {
        version: 11,
        description: "web public",
        sqlite: include_str!("../migrations/0011_web_public.sql"),
        postgres: include_str!("../migrations/0011_web_public.sql"),
    },
    EmbeddedMigration {
        version: 12,
        description: "shared limits and schedules",
        sqlite: include_str!("../migrations/sqlite/0012_shared_limits_and_schedules.sql"),
        postgres: include_str!("../migrations/postgres/0012_shared_limits_and_schedules.sql"),
    },
    EmbeddedMigration {
        version: 13,
        description: "job wakeups",
        sqlite: include_str!("../migrations/sqlite/0013_job_wakeups.sql"),
        postgres: include_str!("../migrations/postgres/0013_job_wakeups.sql"),
    },
    EmbeddedMigration {
        version: 14,
        description: "web sessions",
        sqlite: include_str!("../migrations/0014_web_sessions.sql"),
        postgres: include_str!("../migrations/0014_web_sessions.sql"),
    },
    EmbeddedMigration {
        version: 15,
        description: "assignees and notes",
        sqlite: include_str!("../migrations/0015_assignees_and_notes.sql"),
        postgres: include_str!("../migrations/0015_assignees_and_notes.sql"),
    },
    EmbeddedMigration {
        version: 16,
        description: "usage statistics",
        sqlite: include_str!("../migrations/0016_usage_statistics.sql"),
        postgres: include_str!("../migrations/0016_usage_statistics.sql"),
    },
    EmbeddedMigration {
        version: 17,
        description: "labels, canned replies and unread marks",
        sqlite: include_str!("../migrations/0017_labels_and_canned_replies.sql"),
        postgres: include_str!("../migrations/0017_labels_and_canned_replies.sql"),
    },
    EmbeddedMigration {
        version: 18,
        description: "oauth states",
        sqlite: include_str!("../migrations/0018_oauth_states.sql"),
        postgres: include_str!("../migrations/0018_oauth_states.sql"),
    },
    EmbeddedMigration {
        version: 19,
        description: "x posts",
        sqlite: include_str!("../migrations/0019_x_posts.sql"),
        postgres: include_str!("../migrations/0019_x_posts.sql"),
    },
    EmbeddedMigration {
        version: 20,
        description: "x poll cursors",
        sqlite: include_str!("../migrations/0020_x_poll_cursors.sql"),
        postgres: include_str!("../migrations/0020_x_poll_cursors.sql"),
    },
    EmbeddedMigration {
        version: 21,
        description: "trends",
        sqlite: include_str!("../migrations/0021_trends.sql"),
        postgres: include_str!("../migrations/0021_trends.sql"),
    },
    EmbeddedMigration {
        version: 22,
        description: "x spend",
        sqlite: include_str!("../migrations/0022_x_spend.sql"),
        postgres: include_str!("../migrations/0022_x_spend.sql"),
    },
    EmbeddedMigration {
        version: 23,
        description: "x metrics",
        sqlite: include_str!("../migrations/0023_x_metrics.sql"),
        postgres: include_str!("../migrations/0023_x_metrics.sql"),
    },
    EmbeddedMigration {
        version: 24,
        description: "workflows",
        sqlite: include_str!("../migrations/0024_workflows.sql"),
        postgres: include_str!("../migrations/0024_workflows.sql"),
    },
];

/// Applies every migration not applied yet.
pub async fn migrate(db: &Db) -> Result<(), StoreError> {
    db.migrate_with(MIGRATIONS).await?;
    // What SQL cannot compute: the queue hashes of jobs stored before
    // migration 0008.
    crate::jobs::hash_queue_keys(db).await
}

/// The newest migration version.
pub fn latest() -> i64 {
    MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Reachable and fully migrated: what `/readyz` and `integro doctor` ask.
pub async fn readiness(db: &Db) -> Result<(), StoreError> {
    db.readiness(MIGRATIONS).await
}

/// A migrated SQLite database in a temporary directory (removed with it).
#[cfg(test)]
pub(crate) async fn test_sqlite() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let db = Db::connect(&url).await.unwrap();
    migrate(&db).await.unwrap();
    (dir, db)
}

/// A fresh, migrated PostgreSQL database named after `purpose`, on the
/// server `INTEGRO_TEST_POSTGRES_URL` names; `None` without one.
#[cfg(test)]
pub(crate) async fn test_postgres(purpose: &str) -> Option<Db> {
    let db = integro_db::testing::fresh_postgres(purpose).await?;
    migrate(&db).await.unwrap();
    Some(db)
}
