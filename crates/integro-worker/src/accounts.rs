//! Channel accounts and their credentials in clear, kept a few seconds:
//! every webhook and every job names an account, and looking it up and
//! unsealing its secrets each time was two to four queries a message. Changes
//! made through this process's API take effect at once (it forgets the
//! account); those made through another process within the time to live.

use std::sync::Arc;
use std::time::Duration;

use integro_channels::Credentials;
use integro_core::cache::TtlCache;
use integro_store::accounts::{self, Account};
use integro_store::secrets::Keyring;
use integro_store::{Db, StoreError};
use uuid::Uuid;

/// How long an account is kept.
pub const ACCOUNT_TTL: Duration = Duration::from_secs(5);

pub struct AccountCache {
    entries: TtlCache<Uuid, Arc<KnownAccount>>,
}

/// An account and its credentials in clear. Shared, not copied: a webhook
/// holds it until its batch is stored.
pub struct KnownAccount {
    pub account: Account,
    pub creds: Credentials,
}

impl AccountCache {
    pub fn new(ttl: Duration) -> Arc<AccountCache> {
        Arc::new(AccountCache {
            entries: TtlCache::new(ttl),
        })
    }

    /// The live account with this id, whichever tenant owns it (a webhook's
    /// signature, checked with its secret, proves the rest).
    pub async fn find(
        &self,
        db: &Db,
        keyring: &Keyring,
        id: Uuid,
    ) -> Result<Option<Arc<KnownAccount>>, StoreError> {
        if let Some(hit) = self.entries.get(&id) {
            return Ok(Some(hit));
        }
        let Some(account) = accounts::find_for_webhook(db, id).await? else {
            return Ok(None);
        };
        let creds = Credentials(accounts::credentials(db, keyring, &account).await?);
        let known = Arc::new(KnownAccount { account, creds });
        self.entries.put(id, known.clone());
        Ok(Some(known))
    }

    /// The tenant's live account with this id.
    pub async fn get(
        &self,
        db: &Db,
        keyring: &Keyring,
        tenant_id: Uuid,
        id: Uuid,
    ) -> Result<Option<Arc<KnownAccount>>, StoreError> {
        Ok(self
            .find(db, keyring, id)
            .await?
            .filter(|known| known.account.tenant_id == tenant_id))
    }

    pub fn forget(&self, id: Uuid) {
        self.entries.forget(&id);
    }
}
