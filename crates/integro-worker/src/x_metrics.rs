//! Refreshing published X posts' public metrics (impressions, likes,
//! reposts, replies, quotes, bookmarks): each interval one process (a
//! `schedules` claim) reads, per account, up to 100 posts a call that were
//! published in the last 30 days and not read since the last interval.
//! Each post read is an owned read in the spend estimate; a tenant past
//! its `x_monthly_spend_limit_usd` is skipped (metrics are not essential).

use std::collections::BTreeMap;
use std::sync::Arc;

use integro_channels::x;
use integro_store::db::now_ms;
use integro_store::x_metrics::{self, IDS_PER_CALL, REFRESH_FOR_MS};
use integro_store::x_spend::{self, XOperation};
use integro_store::{StoreError, schedules};
use uuid::Uuid;

use crate::worker::Worker;
use crate::x_poll::XError;

const TASK: &str = "x_post_metrics";
/// Posts read in one run at most: the rest waits for the next interval.
const MAX_POSTS_PER_RUN: i64 = 5_000;

impl Worker {
    /// Refreshes due posts' metrics every `x_metrics_interval`.
    pub(crate) async fn refresh_x_metrics(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.x_metrics_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let every = self.config.x_metrics_interval.as_millis() as i64;
        loop {
            tick.tick().await;
            match schedules::claim(&self.db, TASK, every, &self.owner).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming the X metrics refresh failed");
                    continue;
                }
            }
            match self.refresh_metrics_once(every).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(posts = n, "X post metrics refreshed"),
                Err(e) => tracing::warn!(error = %e, "refreshing X post metrics failed"),
            }
        }
    }

    /// One refresh of the posts not read for `every` ms; the posts read.
    async fn refresh_metrics_once(&self, every: i64) -> Result<usize, StoreError> {
        let now = now_ms();
        let due = x_metrics::due(
            &self.db,
            now - REFRESH_FOR_MS,
            now - every / 2,
            MAX_POSTS_PER_RUN,
        )
        .await?;
        let mut by_account: BTreeMap<(Uuid, Uuid), Vec<String>> = BTreeMap::new();
        for post in due {
            by_account
                .entry((post.tenant_id, post.account_id))
                .or_default()
                .push(post.provider_post_id);
        }
        let mut read = 0;
        for ((tenant_id, account_id), ids) in by_account {
            if let Some(why) = x_spend::over_limit(&self.db, tenant_id, now).await? {
                tracing::info!(tenant = %tenant_id, "X metrics not refreshed: {why}");
                continue;
            }
            match self.refresh_account(tenant_id, account_id, &ids).await {
                Ok(n) => read += n,
                Err(e) => {
                    tracing::warn!(account = %account_id, error = %e, "reading X post metrics failed")
                }
            }
        }
        Ok(read)
    }

    async fn refresh_account(
        &self,
        tenant_id: Uuid,
        account_id: Uuid,
        ids: &[String],
    ) -> Result<usize, XError> {
        let Some(known) = self
            .accounts
            .get(&self.db, &self.keyring, tenant_id, account_id)
            .await?
        else {
            return Ok(0);
        };
        let creds = crate::x_tokens::for_job(self, &known).await?;
        let mut read = 0;
        for chunk in ids.chunks(IDS_PER_CALL) {
            let reported =
                x::post_metrics(&self.egress.client, &self.egress.urls, &creds, chunk).await?;
            let at = now_ms();
            x_spend::record(
                &self.db,
                tenant_id,
                XOperation::OwnedRead,
                reported.len() as u64,
                at,
            )
            .await?;
            x_metrics::store(&self.db, account_id, chunk, &reported, at).await?;
            read += reported.len();
        }
        Ok(read)
    }
}
