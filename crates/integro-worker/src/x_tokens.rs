//! Keeps an X account's OAuth 2.0 access token fresh: refreshed shortly
//! before it expires, one refresh at a time per account in this process;
//! across processes, the stored expiry decides whose refresh stands
//! (`accounts::replace_refreshed`), and the loser takes the winner's tokens.
//! X may rotate the refresh token on each use, so a new one is stored with
//! the access token, in one transaction.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use integro_channels::x::{OAUTH2_ACCESS_TOKEN, OAUTH2_EXPIRES_AT, OAUTH2_REFRESH_TOKEN};
use integro_channels::{Credentials, ProviderUrls, x_oauth};
use integro_core::SendError;
use integro_store::accounts::{self, Account, CredentialValues};
use integro_store::db::now_ms;
use integro_store::secrets::Keyring;
use integro_store::{Db, StoreError};
use uuid::Uuid;

/// Refreshed when it has less than this to live.
const MARGIN_MS: i64 = 2 * 60 * 1000;
/// X's documented lifetime, when its answer names none.
const DEFAULT_LIFETIME_SECS: u64 = 7200;

static REFRESHING: LazyLock<Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Mutex::default);

fn expires_at(creds: &Credentials) -> i64 {
    creds
        .get(OAUTH2_EXPIRES_AT)
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}

fn fresh_enough(creds: &Credentials) -> bool {
    expires_at(creds) > now_ms() + MARGIN_MS
}

fn internal(e: StoreError) -> SendError {
    SendError::retryable(None, format!("reading or storing the X tokens failed: {e}"))
}

async fn stored(
    db: &Db,
    keyring: &Keyring,
    account: &Account,
) -> Result<(Account, Credentials), SendError> {
    let account = accounts::get(db, account.tenant_id, account.id)
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            SendError::permanent(Some("account_deleted".into()), "the account was deleted")
        })?;
    let creds = accounts::credentials(db, keyring, &account)
        .await
        .map_err(internal)?;
    Ok((account, Credentials(creds)))
}

/// The account's credentials with an access token that will live a while:
/// `creds` as they are (OAuth 1.0a, or a token still fresh), or refreshed.
/// The flag says the stored credentials changed (a cache should forget
/// them).
pub async fn fresh(
    db: &Db,
    keyring: &Keyring,
    client: &reqwest::Client,
    urls: &ProviderUrls,
    account: &Account,
    creds: &Credentials,
) -> Result<(Credentials, bool), SendError> {
    if creds.get(OAUTH2_REFRESH_TOKEN).is_err() || fresh_enough(creds) {
        return Ok((creds.clone(), false));
    }
    let lock = REFRESHING
        .lock()
        .expect("refresh locks")
        .entry(account.id)
        .or_default()
        .clone();
    let _turn = lock.lock().await;
    // Another task or process may have refreshed meanwhile.
    let (account, current) = stored(db, keyring, account).await?;
    if fresh_enough(&current) {
        return Ok((current, true));
    }
    let used = current.require(OAUTH2_REFRESH_TOKEN)?.to_string();
    let tokens = match x_oauth::refresh(client, urls, &current, &used).await {
        Ok(tokens) => tokens,
        Err(e) => {
            // A rotated token that another process used first is refused;
            // that process stored its successor.
            let (_, after) = stored(db, keyring, &account).await?;
            if after.get(OAUTH2_REFRESH_TOKEN).ok() != Some(used.as_str()) {
                return Ok((after, true));
            }
            return Err(if e.retryable {
                e
            } else {
                SendError::permanent(
                    Some("x_reconnect".into()),
                    format!(
                        "X refused the account's refresh token ({}): connect the account again",
                        e.message
                    ),
                )
            });
        }
    };
    let lifetime = tokens.expires_in.unwrap_or(DEFAULT_LIFETIME_SECS) as i64;
    let mut values = CredentialValues::default();
    values
        .secret
        .insert(OAUTH2_ACCESS_TOKEN.into(), tokens.access_token.clone());
    values.secret.insert(
        OAUTH2_REFRESH_TOKEN.into(),
        tokens.refresh_token.clone().unwrap_or(used),
    );
    values.public.insert(
        OAUTH2_EXPIRES_AT.into(),
        (now_ms() + lifetime * 1000).to_string(),
    );
    let expected = current.get(OAUTH2_EXPIRES_AT).ok();
    let won =
        accounts::replace_refreshed(db, keyring, &account, OAUTH2_EXPIRES_AT, expected, values)
            .await
            .map_err(internal)?;
    if !won {
        let (_, after) = stored(db, keyring, &account).await?;
        return Ok((after, true));
    }
    tracing::info!(account = %account.id, "refreshed the X account's access token");
    Ok((stored(db, keyring, &account).await?.1, true))
}

/// `fresh` for a job of this worker: credentials that changed are dropped
/// from the account cache.
pub(crate) async fn for_job(
    worker: &crate::worker::Worker,
    known: &crate::accounts::KnownAccount,
) -> Result<Credentials, SendError> {
    let (creds, changed) = fresh(
        &worker.db,
        &worker.keyring,
        &worker.egress.client,
        &worker.egress.urls,
        &known.account,
        &known.creds,
    )
    .await?;
    if changed {
        worker.accounts.forget(known.account.id);
    }
    Ok(creds)
}
