//! Polling X for accounts set to `receive=polling` (installs X cannot
//! reach with webhooks): each interval, one process (a `schedules` claim
//! per account) reads the account's new mentions (`since_id`) and direct
//! messages, stores them like a webhook's, and moves the account's cursors
//! in the same write unit (`integro-store/src/x_poll.rs`). Stored messages
//! are deduplicated by their X id like webhooks, so a poll and a webhook
//! of the same message store it once. A first poll only marks where to
//! start: nothing older than the account's polling is answered.

use std::sync::Arc;

use integro_channels::Credentials;
use integro_channels::credentials::X_RECEIVE;
use integro_channels::x::{self, Polled, snowflake_order};
use integro_core::{ChannelKind, InboundMessage, SendError};
use integro_store::accounts::{self, Account};
use integro_store::x_poll::{self, DIRECT_MESSAGES, MENTIONS};
use integro_store::x_spend::{self, XOperation};
use integro_store::{StoreError, conversations, schedules};

use crate::worker::Worker;

/// Pages read per stream in one poll at most.
const MAX_PAGES: usize = 10;

#[derive(Debug, thiserror::Error)]
pub(crate) enum XError {
    #[error("{0}")]
    X(SendError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<SendError> for XError {
    fn from(e: SendError) -> XError {
        XError::X(e)
    }
}

fn polled(account: &Account) -> bool {
    account.credentials.get(X_RECEIVE).map(String::as_str) == Some("polling")
}

impl Worker {
    /// Polls the X accounts that ask for it, every `x_poll_interval`.
    pub(crate) async fn poll_x(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.x_poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let accounts = match accounts::live_of_kind(&self.db, ChannelKind::X).await {
                Ok(accounts) => accounts,
                Err(e) => {
                    tracing::warn!(error = %e, "listing X accounts to poll failed");
                    continue;
                }
            };
            let every = self.config.x_poll_interval.as_millis() as i64;
            for account in accounts.into_iter().filter(polled) {
                let task = format!("x_poll:{}", account.id);
                match schedules::claim(&self.db, &task, every, &self.owner).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming an X poll failed");
                        continue;
                    }
                }
                match self.poll_account(&account).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(account = %account.id, messages = n, "polled X");
                        self.wake.notify_one();
                    }
                    Err(e) => tracing::warn!(account = %account.id, error = %e, "polling X failed"),
                }
            }
        }
    }

    /// One poll of both streams; the messages newly stored.
    async fn poll_account(&self, account: &Account) -> Result<usize, XError> {
        let Some(known) = self
            .accounts
            .get(&self.db, &self.keyring, account.tenant_id, account.id)
            .await?
        else {
            return Ok(0);
        };
        let creds = crate::x_tokens::for_job(self, &known).await?;
        let mentions = self.poll_mentions(&known.account, &creds).await?;
        let direct = self.poll_direct_messages(&known.account, &creds).await?;
        Ok(mentions + direct)
    }

    /// Counts what a poll read, for the spend estimate.
    async fn count_reads(&self, account: &Account, operation: XOperation, n: usize) {
        let now = integro_store::db::now_ms();
        if let Err(e) = x_spend::record(&self.db, account.tenant_id, operation, n as u64, now).await
        {
            tracing::warn!(error = %e, "counting X reads failed");
        }
    }

    async fn poll_mentions(&self, account: &Account, creds: &Credentials) -> Result<usize, XError> {
        let (client, urls) = (&self.egress.client, &self.egress.urls);
        let Some(since) = x_poll::cursor(&self.db, account.id, MENTIONS).await? else {
            let first = x::poll_mentions(client, urls, creds, None, None).await?;
            return self
                .store(account, MENTIONS, Vec::new(), first.newest_id)
                .await;
        };
        let mut taken = Vec::new();
        let mut newest = None;
        let mut page = None;
        for _ in 0..MAX_PAGES {
            let Polled {
                messages,
                newest_id,
                next_token,
                ..
            } = x::poll_mentions(client, urls, creds, Some(&since), page.as_deref()).await?;
            self.count_reads(account, XOperation::OwnedRead, messages.len())
                .await;
            newest = newest.or(newest_id);
            taken.extend(messages);
            page = next_token;
            if page.is_none() {
                break;
            }
        }
        self.store(account, MENTIONS, taken, newest).await
    }

    async fn poll_direct_messages(
        &self,
        account: &Account,
        creds: &Credentials,
    ) -> Result<usize, XError> {
        let (client, urls) = (&self.egress.client, &self.egress.urls);
        let cursor = x_poll::cursor(&self.db, account.id, DIRECT_MESSAGES).await?;
        let mut taken = Vec::new();
        let mut newest: Option<String> = None;
        let mut page = None;
        for _ in 0..MAX_PAGES {
            let polled = x::poll_direct_messages(client, urls, creds, page.as_deref()).await?;
            self.count_reads(
                account,
                XOperation::DirectMessageRead,
                polled.messages.len(),
            )
            .await;
            newest = newest.or(polled.newest_id.clone());
            let Some(since) = &cursor else {
                break;
            };
            let newer = |id: &str| snowflake_order(id, since).is_gt();
            taken.extend(
                polled
                    .messages
                    .into_iter()
                    .filter(|m| newer(&m.provider_message_id)),
            );
            // Newest first: once a page reaches the cursor, the rest is older.
            let reached = polled
                .oldest_id
                .as_deref()
                .is_none_or(|oldest| !newer(oldest));
            page = polled.next_token;
            if reached || page.is_none() {
                break;
            }
        }
        let newest = match (newest, cursor) {
            (Some(n), Some(c)) if snowflake_order(&c, &n).is_gt() => Some(c),
            (n, c) => n.or(c),
        };
        self.store(account, DIRECT_MESSAGES, taken, newest).await
    }

    /// Stores what a poll read and moves the cursor, in one write unit.
    async fn store(
        &self,
        account: &Account,
        stream: &'static str,
        mut messages: Vec<InboundMessage>,
        newest: Option<String>,
    ) -> Result<usize, XError> {
        let Some(newest) = newest else {
            return Ok(0);
        };
        messages.sort_by(|a, b| snowflake_order(&a.provider_message_id, &b.provider_message_id));
        let account = account.clone();
        let stored = self
            .db
            .write(move |tx| {
                Box::pin(async move {
                    let mut stored = 0;
                    for message in &messages {
                        if let conversations::Ingested::Stored { .. } =
                            conversations::ingest(tx, &account, message, None).await?
                        {
                            stored += 1;
                        }
                    }
                    x_poll::advance(tx, account.id, stream, &newest).await?;
                    Ok::<_, StoreError>(stored)
                })
            })
            .await?;
        Ok(stored)
    }
}
