//! Sealed secrets at rest: unreadable in the database, bound to their row.

use integro_store::StoreError;
use integro_store::secrets::{Keyring, MasterKey, SecretOwner, SecretStore};
use reqwest::StatusCode;

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
    assert!(!stored.is_empty(), "the secret is stored");
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

/// `integro secrets rotate` with the key file (what the command does, run
/// beside a live server): the server keeps opening every secret, and stays
/// ready, through two rotations.
async fn a_running_server_follows_a_rotation_of_the_key_file(kind: DbKind) {
    let Some(app) = TestApp::spawn_with(kind, |c| c.master_key = None).await else {
        return;
    };
    let (db, keyring) = (&app.state.db, &app.state.keyring);
    let first = keyring.current().id().to_string();
    let mut tx = db.begin().await.unwrap();
    SecretStore::put(&mut tx, keyring, owner("acc-1"), PLAINTEXT)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    for _ in 0..2 {
        let keys = integro_server::startup::rotate_key_files(&app.config).unwrap();
        let cli = Keyring::new(keys.current, keys.previous);
        assert_eq!(SecretStore::rotate(db, &cli).await.unwrap(), 1);
        // The server's own keyring, untouched by the command, still opens it.
        assert_eq!(
            SecretStore::get(db, keyring, owner("acc-1"))
                .await
                .unwrap()
                .as_deref(),
            Some(PLAINTEXT)
        );
        assert_eq!(keyring.current().id(), cli.current().id());
        let res = app.client.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_ne!(keyring.current().id(), first);
}

/// A server whose key cannot open the stored secrets says so in /readyz
/// (it answered ok while every credential use failed).
async fn readiness_fails_when_the_key_cannot_open_the_secrets(kind: DbKind) {
    let Some(app) = TestApp::spawn(kind).await else {
        return;
    };
    let (db, keyring) = (&app.state.db, &app.state.keyring);
    let mut tx = db.begin().await.unwrap();
    SecretStore::put(&mut tx, keyring, owner("acc-1"), PLAINTEXT)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Rotated with a new INTEGRO_MASTER_KEY that this server was never given.
    let new = Keyring::new(MasterKey::generate(), vec![keyring.current()]);
    SecretStore::rotate(db, &new).await.unwrap();
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = res.json().await.unwrap();
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains(new.current().id()), "{reason}");
}

db_tests!(
    sealed_secrets_round_trip_and_stay_bound,
    plaintext_never_reaches_the_database,
    a_running_server_follows_a_rotation_of_the_key_file,
    readiness_fails_when_the_key_cannot_open_the_secrets,
);
