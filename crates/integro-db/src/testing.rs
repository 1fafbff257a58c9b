//! Fresh PostgreSQL databases for tests, on the server
//! `INTEGRO_TEST_POSTGRES_URL` names (feature `testing`).

use sqlx::{AssertSqlSafe, Connection};

use crate::Db;

/// A fresh, empty PostgreSQL database named after `purpose`; `None` when
/// `INTEGRO_TEST_POSTGRES_URL` is not set.
pub async fn fresh_postgres(purpose: &str) -> Option<Db> {
    let admin = admin_url()?;
    let name = format!("integro_{purpose}_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    Some(Db::connect(&url).await.unwrap())
}

/// Closes a database made by `fresh_postgres` and drops it.
pub async fn drop_postgres(db: Db) {
    let name: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(db.pool())
        .await
        .unwrap();
    db.close().await;
    let Some(admin) = admin_url() else { return };
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(&mut conn)
        .await;
}

fn admin_url() -> Option<String> {
    std::env::var("INTEGRO_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
}
