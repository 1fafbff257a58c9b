//! Sign-in's defences: password hashes on a small pool of their own threads,
//! and throttles that slow a guesser without locking the real person out.
//!
//! * Hashes run on `HASH_THREADS` dedicated threads behind a bounded queue:
//!   argon2id takes ~19 MiB a hash, so at most two are in memory at once
//!   (`startup::return_large_blocks_to_the_system` makes each go back to the
//!   system when done). Past the queue's length a login answers 503 rather
//!   than waiting without bound.
//! * Throttles: a budget of attempts per source address, and a smaller one
//!   per (account, address). The account alone is never a key, so someone
//!   guessing from elsewhere cannot lock its owner out.
//! * An unknown email is checked against a dummy hash, so it takes as long as
//!   a known one and the timing does not tell which emails have accounts.

use std::net::IpAddr;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::http::StatusCode;
use integro_store::credentials::{hash_password, random_token, verify_password};

use crate::error::ApiError;
use crate::rate_limit::{RateLimit, SharedLimits};

/// Threads that compute password hashes.
pub const HASH_THREADS: usize = 2;
/// Hashes that may wait for a thread.
const HASH_QUEUE: usize = 128;

type Job = Box<dyn FnOnce() + Send>;

pub struct LoginGuard {
    jobs: SyncSender<Job>,
    per_address: RateLimit<IpAddr>,
    per_account_address: RateLimit<(String, IpAddr)>,
}

impl LoginGuard {
    pub fn new(shared: Option<&SharedLimits>) -> LoginGuard {
        let (jobs, queue) = sync_channel::<Job>(HASH_QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..HASH_THREADS {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("integro-hash-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for a job.
                        let job = queue.lock().map(|q| q.recv());
                        match job {
                            Ok(Ok(job)) => job(),
                            // The guard was dropped: the server stopped.
                            _ => break,
                        }
                    }
                })
                .expect("a hashing thread starts");
        }
        LoginGuard {
            jobs,
            // 100 attempts at once, then one a second, per source address
            // (generous: a reverse proxy is one address for everyone).
            per_address: RateLimit::new("sign_in_address", Duration::from_secs(1), 100)
                .shared_in(shared),
            // 10 attempts at once, then one every 30 s, per account and address.
            per_account_address: RateLimit::new("sign_in_account", Duration::from_secs(30), 10)
                .shared_in(shared),
        }
    }

    /// Counts an attempt to sign in as `email` from `address`; 429 with a
    /// retry-after past either budget.
    pub async fn admit(&self, email: &str, address: IpAddr) -> Result<(), ApiError> {
        const WHAT: &str = "sign-in attempts";
        self.per_address.check_for(&address, WHAT).await?;
        self.per_account_address
            .check_for(&(email.trim().to_lowercase(), address), WHAT)
            .await
    }

    /// Checks `password` against `phc` (or, with no account, against a dummy
    /// hash that takes as long) on the hashing threads.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, ApiError> {
        self.run(move || {
            let known = phc.is_some();
            let phc = phc.unwrap_or_else(|| dummy_hash().to_string());
            verify_password(&password, &phc) && known
        })
        .await
    }

    /// Runs `work` on a hashing thread.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(work());
        });
        match self.jobs.try_send(job) {
            Ok(()) => rx.await.map_err(|_| ApiError::internal()),
            Err(TrySendError::Full(_)) => Err(ApiError {
                retry_after_secs: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "too many sign-ins at once; try again in a moment",
                )
            }),
            Err(TrySendError::Disconnected(_)) => Err(ApiError::internal()),
        }
    }

    /// Forgets addresses that are back to a full allowance (run periodically).
    pub fn forget_idle(&self) {
        self.per_address.forget_idle();
        self.per_account_address.forget_idle();
    }
}

/// A hash of a random password, made once, with the same parameters as real
/// ones.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&random_token(16)).expect("a random password hashes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_accounts_never_verify() {
        let guard = LoginGuard::new(None);
        let phc = hash_password("the-right-password").unwrap();
        assert!(
            guard
                .verify("the-right-password".into(), Some(phc.clone()))
                .await
                .unwrap()
        );
        assert!(
            !guard
                .verify("wrong-password".into(), Some(phc))
                .await
                .unwrap()
        );
        assert!(!guard.verify("anything-at-all".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn one_address_cannot_lock_out_another() {
        let guard = LoginGuard::new(None);
        let attacker: IpAddr = "203.0.113.7".parse().unwrap();
        let owner: IpAddr = "198.51.100.2".parse().unwrap();
        let mut refused = 0;
        for _ in 0..20 {
            if guard.admit("ann@example.com", attacker).await.is_err() {
                refused += 1;
            }
        }
        assert_eq!(refused, 10, "10 attempts per account and address at once");
        assert!(guard.admit("Ann@Example.com", owner).await.is_ok());
    }
}
