//! Integro's reply engine: the pure decision logic behind every bot reply.
//!
//! Plain data in, decision out: no IO, no async, no clock (time is an
//! argument), no database. Everything a user writes (rules, patterns,
//! conditions, templates) and every inbound message is untrusted, so no
//! function here panics on any input; errors name the offending field.

pub mod burst;
pub mod condition;
pub mod context;
pub mod decide;
pub mod filters;
pub mod guard;
pub mod handoff;
pub mod prompt;
mod regex_index;
pub mod rules;
pub mod template;
pub mod text;
pub mod variables;
pub mod workflow;
pub mod yaml;

#[cfg(test)]
mod fuzz;
