//! Integro's domain vocabulary, shared by every other crate. Plain types, no
//! IO, except in [`outbound`]: the policy for URLs called on a tenant's
//! behalf, which resolves names and builds the HTTP client that enforces it.

pub mod actor;
pub mod breaker;
pub mod cache;
pub mod channel;
pub mod outbound;
pub mod retry_after;
pub mod role;
pub mod trace;

pub use actor::{Actor, ActorKind};
pub use channel::{
    ChannelKind, DeliveryStatus, InboundEvent, InboundMessage, Media, OutboundMessage, PostMetrics,
    SendError, StatusUpdate, Template,
};
pub use role::{Permission, Role, UnknownRole};

/// A new time-ordered identifier (UUID v7): ids sort by creation time, which is
/// what cursor pagination relies on.
pub fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}
