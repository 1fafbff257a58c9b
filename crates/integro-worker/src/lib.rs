//! Workers: lease due jobs from the database queue and run them. A `reply`
//! job asks the reply engine what to answer an inbound message and queues
//! the answer; a `send` job hands an outbound message to its channel; an
//! `alert` job tells a tenant about a critical error.

pub mod accounts;
pub mod alert;
pub mod egress;
pub mod engine;
mod outcome;
mod reply;
pub mod runner;
pub mod send;
pub mod worker;
pub mod x_tokens;

pub use engine::Engine;
pub use worker::{Worker, WorkerConfig};
