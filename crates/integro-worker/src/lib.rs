//! Workers: lease due jobs from the database queue and run them. A `reply`
//! job asks the reply pipeline what to answer an inbound message and queues
//! the answer; a `send` job hands an outbound message to its channel.

pub mod egress;
pub mod pipeline;
mod reply;
pub mod runner;
mod send;

pub use pipeline::{Decision, FallbackPipeline, ReplyContext, ReplyPipeline};
pub use runner::{Worker, WorkerConfig};
