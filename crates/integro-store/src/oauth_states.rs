//! OAuth 2.0 authorizations in progress: the state sent to the provider
//! (kept as a hash), the account it connects, who started it, and the PKCE
//! verifier, sealed. The callback takes a state once, before it expires.

use integro_core::{Actor, ActorKind};
use uuid::Uuid;

use crate::credentials::token_hash;
use crate::db::{Tx, now_ms};
use crate::secrets::{Keyring, SecretOwner, SecretStore};
use crate::{Db, StoreError, parse_id};

const OWNER_KIND: &str = "oauth_state";
const VERIFIER: &str = "code_verifier";
/// How long the account's owner has to authorize the app.
pub const TTL_MS: i64 = 10 * 60 * 1000;

/// A started authorization, as the callback finds it.
#[derive(Debug, Clone)]
pub struct Pending {
    pub tenant_id: Uuid,
    pub account_id: Uuid,
    pub redirect_uri: String,
    pub actor: Actor,
    pub verifier: String,
}

fn owner<'a>(tenant: &'a str, hash: &'a str) -> SecretOwner<'a> {
    SecretOwner {
        tenant_id: tenant,
        kind: OWNER_KIND,
        id: hash,
        field: VERIFIER,
    }
}

/// Records an authorization `pending` describes, named by `state`.
pub async fn start(
    tx: &mut Tx<'_>,
    keyring: &Keyring,
    pending: &Pending,
    state: &str,
) -> Result<(), StoreError> {
    let hash = token_hash(state);
    let tenant = pending.tenant_id.to_string();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO oauth_states (state_hash, tenant_id, account_id, redirect_uri, actor_kind, actor_id, actor_label, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&hash)
    .bind(&tenant)
    .bind(pending.account_id.to_string())
    .bind(&pending.redirect_uri)
    .bind(pending.actor.kind.as_str())
    .bind(pending.actor.id.clone())
    .bind(&pending.actor.label)
    .bind(now)
    .bind(now + TTL_MS)
    .execute(&mut **tx)
    .await?;
    SecretStore::put(tx, keyring, owner(&tenant, &hash), &pending.verifier).await
}

fn actor_kind(s: &str) -> ActorKind {
    [ActorKind::User, ActorKind::ApiKey, ActorKind::Cli]
        .into_iter()
        .find(|k| k.as_str() == s)
        .unwrap_or(ActorKind::System)
}

/// Takes the authorization `state` names: removed whether or not it was
/// still valid, so a state works once. `None` when unknown or expired.
pub async fn take(db: &Db, keyring: &Keyring, state: &str) -> Result<Option<Pending>, StoreError> {
    let hash = token_hash(state);
    let mut tx = db.begin().await?;
    type Row = (String, String, String, String, Option<String>, String, i64);
    let row: Option<Row> = sqlx::query_as(
        "SELECT tenant_id, account_id, redirect_uri, actor_kind, actor_id, actor_label, expires_at \
         FROM oauth_states WHERE state_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let verifier = {
        let sealed: Option<(String, String)> = sqlx::query_as(
            "SELECT key_id, ciphertext FROM sealed_secrets \
             WHERE tenant_id = $1 AND owner_kind = $2 AND owner_id = $3 AND field = $4",
        )
        .bind(&row.0)
        .bind(OWNER_KIND)
        .bind(&hash)
        .bind(VERIFIER)
        .fetch_optional(&mut *tx)
        .await?;
        sealed
            .map(|(key_id, ciphertext)| {
                keyring
                    .open(
                        owner(&row.0, &hash),
                        &crate::secrets::Sealed { key_id, ciphertext },
                    )
                    .map_err(|e| StoreError::Crypto(e.to_string()))
                    .and_then(|plain| {
                        String::from_utf8(plain)
                            .map_err(|_| StoreError::Crypto("the verifier is not UTF-8".into()))
                    })
            })
            .transpose()?
    };
    forget(&mut tx, &row.0, &hash).await?;
    tx.commit().await?;
    let (Some(verifier), true) = (verifier, row.6 > now_ms()) else {
        return Ok(None);
    };
    Ok(Some(Pending {
        tenant_id: parse_id(&row.0)?,
        account_id: parse_id(&row.1)?,
        redirect_uri: row.2,
        actor: Actor {
            kind: actor_kind(&row.3),
            id: row.4,
            label: row.5,
        },
        verifier,
    }))
}

async fn forget(tx: &mut Tx<'_>, tenant: &str, hash: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM oauth_states WHERE state_hash = $1")
        .bind(hash)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "DELETE FROM sealed_secrets WHERE tenant_id = $1 AND owner_kind = $2 AND owner_id = $3",
    )
    .bind(tenant)
    .bind(OWNER_KIND)
    .bind(hash)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes authorizations that expired unused, with their verifiers.
pub async fn purge_expired(db: &Db, now: i64) -> Result<u64, StoreError> {
    let expired: Vec<(String, String)> = sqlx::query_as(
        "SELECT tenant_id, state_hash FROM oauth_states WHERE expires_at < $1 LIMIT 1000",
    )
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    let mut tx = db.begin().await?;
    for (tenant, hash) in &expired {
        forget(&mut tx, tenant, hash).await?;
    }
    tx.commit().await?;
    Ok(expired.len() as u64)
}
