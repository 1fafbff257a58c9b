//! The reply seam: given an inbound message and what surrounds it, decide
//! what the bot answers. The reply engine (rules, workflows, LLMs) plugs in
//! here; until then every bot answers with its fallback reply, which stays a
//! product feature: a bot with nothing else configured still answers politely.

use std::future::Future;
use std::pin::Pin;

use integro_store::bots::Bot;
use integro_store::conversations::{Conversation, Message, Outgoing};

/// Plain data in: no IO is needed to decide.
pub struct ReplyContext<'a> {
    pub bot: &'a Bot,
    pub conversation: &'a Conversation,
    pub message: &'a Message,
}

#[derive(Debug, Clone)]
pub enum Decision {
    /// Send these, in order.
    Reply(Vec<Outgoing>),
    /// Say nothing; the reason is logged.
    Silent(&'static str),
}

pub trait ReplyPipeline: Send + Sync + 'static {
    fn decide<'a>(
        &'a self,
        ctx: ReplyContext<'a>,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<Decision>> + Send + 'a>>;
}

/// Answers every message with the bot's fallback reply.
pub struct FallbackPipeline;

impl ReplyPipeline for FallbackPipeline {
    fn decide<'a>(
        &'a self,
        ctx: ReplyContext<'a>,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<Decision>> + Send + 'a>> {
        Box::pin(async move {
            Ok(Decision::Reply(vec![Outgoing {
                sender: "bot",
                text: Some(ctx.bot.fallback_reply.clone()),
                reply_to: Some(ctx.message.id),
                ..Outgoing::default()
            }]))
        })
    }
}
