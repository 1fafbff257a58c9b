//! Slots for long-lived responses (server-sent event streams): each holds a
//! database poll open for minutes, so a caller, and a tenant, may hold only
//! so many at once; past that the answer is 429.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use uuid::Uuid;

use crate::error::ApiError;

/// Streams one API key or user may hold open at once.
pub const PER_CALLER: usize = 10;
/// Streams one tenant may hold open at once (all its callers).
pub const PER_TENANT: usize = 100;

#[derive(Debug)]
pub struct StreamSlots {
    open: Mutex<HashMap<String, usize>>,
    per_caller: usize,
    per_tenant: usize,
}

/// An open stream's place; given back when dropped (the stream ended or the
/// client went away).
#[derive(Debug)]
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    keys: [String; 2],
}

impl StreamSlots {
    pub fn new(per_caller: usize, per_tenant: usize) -> Arc<StreamSlots> {
        Arc::new(StreamSlots {
            open: Mutex::new(HashMap::new()),
            per_caller,
            per_tenant,
        })
    }

    /// A slot for `caller` in `tenant`, or 429 when either is at its limit.
    pub fn acquire(self: &Arc<Self>, caller: &str, tenant: Uuid) -> Result<StreamSlot, ApiError> {
        let keys = [format!("caller:{caller}"), format!("tenant:{tenant}")];
        let mut open = self.open.lock().expect("stream slots");
        let held = |key: &str| open.get(key).copied().unwrap_or(0);
        if held(&keys[0]) >= self.per_caller || held(&keys[1]) >= self.per_tenant {
            return Err(ApiError {
                retry_after_secs: Some(5),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_streams",
                    format!(
                        "too many event streams open at once (at most {} per caller, {} per tenant); close one first",
                        self.per_caller, self.per_tenant
                    ),
                )
            });
        }
        for key in &keys {
            *open.entry(key.clone()).or_default() += 1;
        }
        Ok(StreamSlot {
            slots: self.clone(),
            keys,
        })
    }

    /// Streams open under `key`.
    #[cfg(test)]
    fn held(&self, key: &str) -> usize {
        self.open
            .lock()
            .expect("stream slots")
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().expect("stream slots");
        for key in &self.keys {
            if let Some(n) = open.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    open.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_caller_and_per_tenant() {
        let slots = StreamSlots::new(2, 3);
        let tenant = Uuid::now_v7();
        let a1 = slots.acquire("a", tenant).unwrap();
        let _a2 = slots.acquire("a", tenant).unwrap();
        assert_eq!(slots.acquire("a", tenant).unwrap_err().status.as_u16(), 429);
        let _b1 = slots.acquire("b", tenant).unwrap();
        assert_eq!(slots.acquire("c", tenant).unwrap_err().status.as_u16(), 429);
        assert!(slots.acquire("c", Uuid::now_v7()).is_ok());
        drop(a1);
        let _a3 = slots.acquire("a", tenant).unwrap();
        assert_eq!(slots.held(&format!("tenant:{tenant}")), 3);
    }
}
