//! Workers: lease due jobs from the database queue and run them. A `reply`
//! job asks the reply engine what to answer an inbound message and queues
//! the answer; a `send` job hands an outbound message to its channel; an
//! `alert` job tells a tenant about a critical error; a `publish_post` job
//! publishes an approved post on X.

pub mod accounts;
pub mod alert;
pub mod egress;
pub mod engine;
mod outcome;
pub mod publish;
mod reply;
pub mod runner;
pub mod send;
pub mod worker;
pub mod workflow;
mod x_metrics;
mod x_poll;
pub mod x_tokens;

pub use engine::Engine;
pub use worker::{Worker, WorkerConfig};
