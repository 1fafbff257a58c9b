//! Sealed secrets at rest: unreadable in the database, bound to their row.

use integro_store::StoreError;
use integro_store::secrets::{SecretOwner, SecretStore};

use crate::db_tests;
use crate::helpers::{DbKind, TestApp};

const PLAINTEXT: &str = "twilio-auth-token-7f3a9c1e55";

fn owner(id: &str) -> SecretOwner<'_> {
    SecretOwner {
        tenant_id: "tenant-1",
        kind: "account",
        id,
        field: "auth_token",
    }
}

async fn sealed_secrets_round_trip_and_stay_bound(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let (db, keyring) = (&app.state.db, &app.state.keyring);
    let mut tx = db.begin().await.unwrap();
    SecretStore::put(&mut tx, keyring, owner("acc-1"), PLAINTEXT)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        SecretStore::get(db, keyring, owner("acc-1"))
            .await
            .unwrap()
            .as_deref(),
        Some(PLAINTEXT)
    );

    // Moved onto another record, the ciphertext no longer opens.
    sqlx::query(
        "INSERT INTO sealed_secrets (tenant_id, owner_kind, owner_id, field, key_id, ciphertext, created_at, updated_at) \
         SELECT tenant_id, owner_kind, 'acc-2', field, key_id, ciphertext, created_at, updated_at FROM sealed_secrets WHERE owner_id = 'acc-1'",
    )
    .execute(&mut *db.writer().await.unwrap())
    .await
    .unwrap();
    let moved = SecretStore::get(db, keyring, owner("acc-2")).await;
    assert!(matches!(moved, Err(StoreError::Crypto(_))), "{moved:?}");

    // Tampered in place, it does not open either.
    // (Its first character changed for certain: a ciphertext starting with
    // 'A' made the old 'A' || … a no-op, one run in 64.)
    sqlx::query(
        "UPDATE sealed_secrets SET ciphertext = \
         CASE WHEN substr(ciphertext, 1, 1) = 'A' THEN 'B' ELSE 'A' END || substr(ciphertext, 2) \
         WHERE owner_id = 'acc-1'",
    )
    .execute(&mut *db.writer().await.unwrap())
    .await
    .unwrap();
    assert!(matches!(
        SecretStore::get(db, keyring, owner("acc-1")).await,
        Err(StoreError::Crypto(_))
    ));
}

async fn plaintext_never_reaches_the_database(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let (db, keyring) = (&app.state.db, &app.state.keyring);
    let mut tx = db.begin().await.unwrap();
    SecretStore::put(&mut tx, keyring, owner("acc-1"), PLAINTEXT)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let stored: Vec<String> = sqlx::query_scalar("SELECT ciphertext FROM sealed_secrets")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert!(stored.iter().all(|c| !c.contains(PLAINTEXT)));
    if kind == DbKind::Sqlite {
        // Every byte on disk: the database file and its write-ahead log.
        let dir = app.config.data_dir.clone();
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().contains("integro.db") {
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !bytes
                        .windows(PLAINTEXT.len())
                        .any(|w| w == PLAINTEXT.as_bytes()),
                    "{}",
                    path.display()
                );
                checked += 1;
            }
        }
        assert!(checked >= 1);
    }
}

db_tests!(
    sealed_secrets_round_trip_and_stay_bound,
    plaintext_never_reaches_the_database
);
