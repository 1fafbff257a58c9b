//! The reply engine at the worker's edge. It gathers what the pure engine
//! (`integro-engine`) needs — the bot's compiled rules, the conversation's
//! memory, the tenant's budget — asks it for a plan, and carries the plan out:
//! a rule's reply, the fallback, or the LLM through the bot's AI profile and
//! its fallbacks. It returns the turn; the reply job stores it (or a dry run
//! prints it). Nothing is written here.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use integro_ai::client::{AiClient, Attempt};
use integro_ai::error::AiError;
use integro_ai::{ChatMessage, ChatRequest, ChatRole, Endpoint, ProviderKind};
use integro_core::ChannelKind;
use integro_core::cache::TtlCache;
use integro_engine::context::{self, Speaker, Turn as HistoryTurn};
use integro_engine::decide::{self, AiAvailability, Plan, Situation};
use integro_engine::guard::{self, RateLimit, RateVerdict};
use integro_engine::prompt;
use integro_engine::rules::RuleSet;
use integro_engine::template::Vars;
use integro_engine::{burst, text, workflow};
use integro_store::bots::Bot;
use integro_store::conversations::{Conversation, ConversationState, MessageSender, Outgoing};
use integro_store::memory::{self, Memory};
use integro_store::secrets::Keyring;
use integro_store::usage::LlmCall;
use integro_store::{
    Db, StoreError, ai_credentials, ai_profiles, rules, tenants, usage, workflow_instances,
    workflows,
};
use tracing::Instrument;
use uuid::Uuid;

/// Alerts of one kind go out at most this often per tenant.
pub const ALERT_EVERY_MS: i64 = 3_600_000;

/// How long AI endpoints and tenant settings are reused before being read
/// again: another process's change is seen within this time (this process's
/// API clears the caches at once).
pub const SETTINGS_TTL: Duration = Duration::from_secs(5);

/// An AI profile with the endpoint it calls.
type Chain = Arc<Vec<(ai_profiles::AiProfile, Endpoint)>>;

pub struct Engine {
    ai: AiClient,
    /// Compiled rule sets by bot, with the rules version they were built from.
    rules: Mutex<HashMap<Uuid, (i64, Arc<RuleSet>)>>,
    /// Fallback chains by their first profile; every turn would otherwise
    /// read profiles, credentials and unseal keys (SQLite round trips).
    chains: TtlCache<Uuid, Chain>,
    tenant_settings: TtlCache<Uuid, tenants::TenantSettings>,
    /// Workflows conversations can start, by tenant.
    workflow_triggers: TtlCache<Uuid, Arc<Vec<workflows::Published>>>,
    /// Whether a tenant has published workflows (so its conversations may
    /// have forms waiting).
    has_workflows: TtlCache<Uuid, bool>,
}

/// One inbound message answered in this turn.
#[derive(Debug, Clone)]
pub struct Said {
    pub id: Uuid,
    pub text: String,
    pub at_ms: i64,
}

/// Everything about the turn that the caller knows.
pub struct TurnRequest<'a> {
    pub bot: &'a Bot,
    pub channel: ChannelKind,
    /// None in a dry run without a conversation.
    pub conversation: Option<&'a Conversation>,
    /// The contact's name when there is no conversation (dry runs).
    pub contact_name: Option<&'a str>,
    pub memory: &'a Memory,
    /// The message this turn answers.
    pub inbound: &'a Said,
    /// Newer messages of the same contact, not yet answered: an LLM turn
    /// answers them together with this one (rules and the fallback answer
    /// each message on its own, at once).
    pub burst: &'a [Said],
    /// The newest message's kind (`text`, `image`, …).
    pub kind: &'a str,
    pub now_ms: i64,
    /// The request that brought the message in (for the LLM call's span).
    pub request_id: Option<&'a str>,
    /// Inbound messages of the conversation within the rate-limit window.
    pub inbound_in_window: u32,
    /// Wait for a burst to end before asking the LLM (not in dry runs).
    pub coalesce: bool,
}

/// What the LLM was asked and answered, for dry runs and traces.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct LlmTrace {
    pub system_prompt: String,
    /// The history and the new message, as sent.
    #[schema(value_type = Vec<Object>)]
    pub messages: Vec<ChatMessage>,
    /// `provider/model` of each profile tried, in order, with the outcome.
    pub attempts: Vec<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Something the operator should know about.
#[derive(Debug, Clone)]
pub struct Note {
    pub kind: &'static str,
    pub detail: String,
    /// Also tell the tenant's alert webhook (at most once an hour per kind).
    pub alert: bool,
    /// Recorded once per key (e.g. once a month), not once per message.
    pub once_key: Option<String>,
}

/// The engine's answer for one turn.
#[derive(Debug, Default)]
pub struct Turn {
    pub outgoing: Vec<Outgoing>,
    /// A workflow the message starts (its trigger matched and no rule did).
    pub start_workflow: Option<Uuid>,
    /// The conversation's variables after the turn, when a rule changed them.
    pub vars: Option<BTreeMap<String, String>>,
    /// Hand the conversation to a human; the rule that asked.
    pub handoff: Option<Uuid>,
    pub rate_notice: bool,
    /// The LLM calls made: tokens, time, failures.
    pub usage: Option<LlmCall>,
    /// Events for the operator.
    pub events: Vec<Note>,
    /// Human-readable lines: what matched and why.
    pub trace: Vec<String>,
    /// What the bot's author should fix: template values that were missing
    /// (and the defaults used), a reply that rendered empty. Shown by dry runs.
    pub warnings: Vec<String>,
    pub llm: Option<LlmTrace>,
    /// A burst is still arriving: come back then (ms).
    pub wait_until: Option<i64>,
    /// The inbound messages this turn answers.
    pub answered: Vec<Uuid>,
}

impl Turn {
    /// What would be sent, in order: each part's text, or its media URL.
    pub fn replies(&self) -> Vec<String> {
        self.outgoing
            .iter()
            .map(|o| {
                o.text
                    .clone()
                    .or_else(|| o.media_url.clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The rule that answered, if one did.
    pub fn rule_id(&self) -> Option<Uuid> {
        self.outgoing.iter().find_map(|o| o.rule_id)
    }
}

/// A made-up message for a dry run.
pub struct DryRun<'a> {
    pub text: String,
    pub contact_name: Option<&'a str>,
    pub channel: ChannelKind,
    /// Decide inside this conversation (its history, variables and state).
    pub conversation: Option<&'a Conversation>,
}

impl Engine {
    pub fn new(ai: AiClient) -> Engine {
        Engine {
            ai,
            rules: Mutex::new(HashMap::new()),
            chains: TtlCache::new(SETTINGS_TTL),
            tenant_settings: TtlCache::new(SETTINGS_TTL),
            workflow_triggers: TtlCache::new(SETTINGS_TTL),
            has_workflows: TtlCache::new(SETTINGS_TTL),
        }
    }

    /// Drops cached AI endpoints and tenant settings (after an API change).
    pub fn forget_settings(&self) {
        self.chains.clear();
        self.tenant_settings.clear();
        self.workflow_triggers.clear();
        self.has_workflows.clear();
    }

    async fn chain(
        &self,
        db: &Db,
        keyring: &Keyring,
        bot: &Bot,
        first: Uuid,
    ) -> anyhow::Result<Chain> {
        if let Some(chain) = self.chains.get(&first) {
            return Ok(chain);
        }
        let mut chain = Vec::new();
        for p in ai_profiles::chain(db, bot.tenant_id, first).await? {
            // A profile whose credential was deleted is skipped.
            if let Some(cred) = ai_credentials::get(db, bot.tenant_id, p.credential_id).await? {
                let endpoint = endpoint(db, keyring, &cred).await?;
                chain.push((p, endpoint));
            }
        }
        let chain = Arc::new(chain);
        self.chains.put(first, chain.clone());
        Ok(chain)
    }

    async fn settings_of(
        &self,
        db: &Db,
        tenant_id: Uuid,
    ) -> Result<tenants::TenantSettings, StoreError> {
        if let Some(s) = self.tenant_settings.get(&tenant_id) {
            return Ok(s);
        }
        let s = tenants::settings(db, tenant_id).await?;
        self.tenant_settings.put(tenant_id, s.clone());
        Ok(s)
    }

    /// Whether the tenant has published a workflow, cached like its
    /// settings: a turn of a tenant without one skips the form lookup.
    pub async fn has_workflows(&self, db: &Db, tenant_id: Uuid) -> Result<bool, StoreError> {
        if let Some(found) = self.has_workflows.get(&tenant_id) {
            return Ok(found);
        }
        let found = workflows::any_published(db, tenant_id).await?;
        self.has_workflows.put(tenant_id, found);
        Ok(found)
    }

    /// The tenant's workflows that a conversation's message can start.
    async fn workflow_triggers(
        &self,
        db: &Db,
        tenant_id: Uuid,
    ) -> Result<Arc<Vec<workflows::Published>>, StoreError> {
        if let Some(found) = self.workflow_triggers.get(&tenant_id) {
            return Ok(found);
        }
        let found = Arc::new(workflows::conversation_triggered(db, tenant_id).await?);
        self.workflow_triggers.put(tenant_id, found.clone());
        Ok(found)
    }

    pub fn ai(&self) -> &AiClient {
        &self.ai
    }

    /// The bot's rules, compiled once per rules version.
    pub async fn rule_set(&self, db: &Db, bot: &Bot) -> Result<Arc<RuleSet>, StoreError> {
        if let Some((version, set)) = self.rules.lock().expect("rules cache").get(&bot.id)
            && *version == bot.rules_version
        {
            return Ok(set.clone());
        }
        let specs = rules::all(db, bot.id)
            .await?
            .into_iter()
            .map(|r| r.fields.spec(r.id))
            .collect();
        // Rules are validated when saved; one that no longer compiles (a
        // newer engine) is reported rather than silencing the whole bot.
        let set =
            Arc::new(RuleSet::compile(specs).map_err(|e| {
                StoreError::Internal(format!("the bot's rules do not compile: {e}"))
            })?);
        self.rules
            .lock()
            .expect("rules cache")
            .insert(bot.id, (bot.rules_version, set.clone()));
        Ok(set)
    }

    pub async fn decide(
        &self,
        db: &Db,
        keyring: &Keyring,
        req: TurnRequest<'_>,
    ) -> anyhow::Result<Turn> {
        let bot = req.bot;
        let settings = &bot.settings;
        let mut turn = Turn {
            answered: vec![req.inbound.id],
            ..Turn::default()
        };
        let max_chars = settings.max_input_chars as usize;
        let own_text = text::sanitize_input(&req.inbound.text, max_chars);
        let mut vars = facts(&req, &own_text);
        let state = req.conversation.map_or(ConversationState::Bot, |c| c.state);
        let rate = rate_verdict(&req);
        let rule_set = self.rule_set(db, bot).await?;
        let found = rule_set.find(&own_text, &vars);
        turn.trace.extend(found.trace.iter().cloned());
        let ai = self.availability(db, bot, req.now_ms, &mut turn).await?;
        // Workflow triggers are read only when no rule answers, and only in
        // a real conversation (a dry run starts nothing).
        let workflow = match (found.rule, req.conversation) {
            (None, Some(conversation)) => {
                let triggered = self
                    .workflow_triggers(db, conversation.tenant_id)
                    .await?
                    .iter()
                    .find(|p| workflow::triggered_by(&p.definition, &own_text, &vars))
                    .map(|p| p.definition_id);
                // One instance of a workflow at a time in a conversation.
                match triggered {
                    Some(id) => workflow_instances::active_in_conversation(
                        db,
                        conversation.tenant_id,
                        conversation.id,
                    )
                    .await?
                    .iter()
                    .all(|i| i.definition_id != id)
                    .then_some(id),
                    None => None,
                }
            }
            _ => None,
        };
        let situation = Situation {
            state,
            rate,
            matched: found.rule,
            workflow,
            ai,
            fallback_reply: &bot.fallback_reply,
            rate_notice: &settings.rate_limit_notice,
        };
        let reply_to = Some(req.inbound.id);
        let mut conversation_vars = req.memory.vars.clone();
        let (plan, warnings) = decide::plan(&situation, &vars);
        turn.warnings = warnings;
        match plan {
            Plan::Silent(why) => turn.trace.push(format!("silent: {why}")),
            Plan::StartWorkflow { definition_id } => {
                turn.trace
                    .push(format!("the message starts workflow {definition_id}"));
                turn.start_workflow = Some(definition_id);
            }
            Plan::Reply(reply) => {
                if let Some(missing) = &reply.reply_rendered_empty {
                    let rule = reply.rule_id.map_or_else(String::new, |id| id.to_string());
                    let why = if missing.is_empty() {
                        "nothing was left once cleaned".to_string()
                    } else {
                        let names: Vec<String> =
                            missing.iter().map(|p| format!("{{{{{p}}}}}")).collect();
                        format!("no value for {}", names.join(", "))
                    };
                    turn.trace.push(format!(
                        "rule {rule}'s reply rendered empty ({why}): the fallback reply goes instead"
                    ));
                    turn.events.push(Note {
                        kind: "reply_empty",
                        detail: format!(
                            "rule {rule} of bot {} matched but its reply rendered empty ({why}); the fallback reply was sent instead. Give the placeholders a default, e.g. {{{{contact.name | default: \"there\"}}}}",
                            bot.name
                        ),
                        alert: false,
                        once_key: None,
                    });
                }
                if let Some((name, value)) = reply.set_variable {
                    conversation_vars.insert(name, value);
                    turn.vars = Some(conversation_vars);
                }
                turn.rate_notice = reply.rate_notice;
                if reply.handoff {
                    turn.handoff = reply.rule_id;
                    turn.trace
                        .push("the rule hands the conversation to a human".into());
                }
                if reply.rule_id.is_none() && !reply.rate_notice {
                    turn.trace.push("answered with the fallback reply".into());
                }
                let finished = reply.text.as_deref().map(|t| {
                    decide::finish(
                        t,
                        &settings.blocked_phrases,
                        &bot.fallback_reply,
                        req.channel.as_str(),
                    )
                });
                let mut parts = finished.map(|f| f.parts).unwrap_or_default();
                let media = reply.media_url;
                if parts.is_empty() && media.is_some() {
                    parts.push(String::new());
                }
                for (i, part) in parts.into_iter().enumerate() {
                    turn.outgoing.push(Outgoing {
                        sender: MessageSender::Bot,
                        text: Some(part).filter(|p| !p.is_empty()),
                        media_url: if i == 0 { media.clone() } else { None },
                        reply_to,
                        rule_id: reply.rule_id,
                        ..Outgoing::default()
                    });
                }
            }
            Plan::AskLlm {
                instructions,
                rule_id,
                set_variable,
            } => {
                if req.coalesce
                    && let burst::Coalesce::Wait { until_ms } = burst::coalesce(
                        req.inbound.at_ms,
                        req.now_ms,
                        settings.burst_window_ms as i64,
                    )
                {
                    turn.wait_until = Some(until_ms);
                    turn.trace.push("waiting for the rest of a burst".into());
                    return Ok(turn);
                }
                if let Some((name, value)) = set_variable {
                    conversation_vars.insert(name, value);
                    turn.vars = Some(conversation_vars.clone());
                    vars.set("vars", serde_json::to_value(&conversation_vars)?);
                }
                let combined = std::iter::once(req.inbound)
                    .chain(req.burst)
                    .map(|s| text::sanitize_input(&s.text, max_chars))
                    .filter(|t| !t.is_empty())
                    .collect::<Vec<_>>()
                    .join("\n");
                if !req.burst.is_empty() {
                    turn.trace.push(format!(
                        "answering {} messages of a burst in one turn",
                        req.burst.len() + 1
                    ));
                }
                turn.answered.extend(req.burst.iter().map(|s| s.id));
                self.ask_llm(
                    db,
                    keyring,
                    &req,
                    &vars,
                    &combined,
                    instructions,
                    rule_id,
                    &mut turn,
                )
                .await?;
            }
        }
        Ok(turn)
    }

    /// The whole decision for a made-up message, storing and sending nothing.
    pub async fn dry_run(
        &self,
        db: &Db,
        keyring: &Keyring,
        bot: &Bot,
        message: DryRun<'_>,
    ) -> anyhow::Result<Turn> {
        let memory = match message.conversation {
            Some(c) => memory::load(db, c.id).await?,
            None => Memory::default(),
        };
        let now = integro_store::db::now_ms();
        let inbound = Said {
            id: integro_core::new_id(),
            text: message.text,
            at_ms: now,
        };
        self.decide(
            db,
            keyring,
            TurnRequest {
                bot,
                channel: message.channel,
                conversation: message.conversation,
                contact_name: message.contact_name,
                memory: &memory,
                inbound: &inbound,
                burst: &[],
                kind: "text",
                now_ms: now,
                request_id: None,
                inbound_in_window: 1,
                coalesce: false,
            },
        )
        .await
    }

    /// Whether the LLM may answer: the bot has a profile and the tenant's
    /// monthly budget is not spent (recording the first time it is, this month).
    async fn availability(
        &self,
        db: &Db,
        bot: &Bot,
        now_ms: i64,
        turn: &mut Turn,
    ) -> Result<AiAvailability, StoreError> {
        if bot.ai_profile_id.is_none() {
            return Ok(AiAvailability::NotConfigured);
        }
        let Some(budget) = self
            .settings_of(db, bot.tenant_id)
            .await?
            .monthly_token_budget
        else {
            return Ok(AiAvailability::Ready);
        };
        let spent = usage::month_tokens(db, bot.tenant_id, now_ms).await?;
        if (spent as u64) < budget {
            return Ok(AiAvailability::Ready);
        }
        turn.trace.push(format!(
            "the monthly token budget ({budget}) is spent ({spent}): rules and fallback only"
        ));
        let month = &usage::day_of(now_ms)[..7];
        turn.events.push(Note {
            kind: "budget_exhausted",
            detail: format!(
                "the monthly token budget of {budget} tokens is spent ({spent}); bots answer from rules and fallback replies until next month or until the budget is raised"
            ),
            alert: true,
            once_key: Some(format!("budget_exhausted:{}:{month}", bot.tenant_id)),
        });
        Ok(AiAvailability::BudgetExhausted)
    }

    /// A one-off answer from the bot's LLM chain, speaking as its persona
    /// with `instructions`, to `request` (no conversation): drafts of
    /// posts. `Err` in plain words when the bot has no AI profile, its
    /// tenant's budget is spent, or every option failed; the calls made
    /// (for usage) come with the answer or the failure.
    pub async fn compose(
        &self,
        db: &Db,
        keyring: &Keyring,
        bot: &Bot,
        instructions: &str,
        request: &str,
    ) -> anyhow::Result<Result<(String, LlmCall), (String, LlmCall)>> {
        let Some(profile_id) = bot.ai_profile_id else {
            let why = format!("the bot {} has no AI profile", bot.name);
            return Ok(Err((why, LlmCall::default())));
        };
        if let Some(budget) = self
            .settings_of(db, bot.tenant_id)
            .await?
            .monthly_token_budget
        {
            let spent = usage::month_tokens(db, bot.tenant_id, integro_store::db::now_ms()).await?;
            if spent as u64 >= budget {
                let why = format!("the monthly token budget ({budget} tokens) is spent");
                return Ok(Err((why, LlmCall::default())));
            }
        }
        let persona = bot.persona_or_default();
        let (system, _) = prompt::system_prompt(&persona, &Vars::new(), Some(instructions));
        let chain = self.chain(db, keyring, bot, profile_id).await?;
        let message = ChatMessage {
            role: ChatRole::User,
            content: request.to_string(),
        };
        // A few posts need more room than a chat reply.
        let attempts = attempts_of(&chain, &system, &[message], 800);
        let started = std::time::Instant::now();
        let result = self.ai.chat_with_fallback(&attempts).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        Ok(match result {
            Ok((i, answer)) => Ok((
                answer.text,
                LlmCall {
                    answered: true,
                    input_tokens: answer.input_tokens,
                    output_tokens: answer.output_tokens,
                    latency_ms,
                    failed_attempts: i as u64,
                },
            )),
            Err(errors) => {
                let why = errors.iter().map(|e| e.plain_words()).collect::<Vec<_>>();
                let why = if why.is_empty() {
                    "no usable AI profile (its credential was deleted)".to_string()
                } else {
                    why.join("; ")
                };
                let call = LlmCall {
                    latency_ms,
                    failed_attempts: errors.len() as u64,
                    ..LlmCall::default()
                };
                Err((why, call))
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn ask_llm(
        &self,
        db: &Db,
        keyring: &Keyring,
        req: &TurnRequest<'_>,
        vars: &Vars,
        combined: &str,
        instructions: Option<String>,
        rule_id: Option<Uuid>,
        turn: &mut Turn,
    ) -> anyhow::Result<()> {
        let bot = req.bot;
        let settings = &bot.settings;
        let persona = bot.persona_or_default();
        let (system, warnings) = prompt::system_prompt(&persona, vars, instructions.as_deref());
        turn.warnings.extend(warnings);
        let messages = self.history(db, req, combined).await?;
        let profile_id = bot.ai_profile_id.expect("availability checked the profile");
        let chain = self.chain(db, keyring, bot, profile_id).await?;
        let attempts = attempts_of(&chain, &system, &messages, 0);
        let mut trace = LlmTrace {
            system_prompt: system.clone(),
            messages: messages.clone(),
            attempts: Vec::new(),
            input_tokens: 0,
            output_tokens: 0,
        };
        let label = |i: usize| {
            chain
                .get(i)
                .map(|(p, _)| format!("{} ({})", p.name, p.model))
                .unwrap_or_default()
        };
        let reply_to = req
            .burst
            .last()
            .map_or(Some(req.inbound.id), |s| Some(s.id));
        let call = tracing::info_span!(
            "llm_call",
            profile = %label(0),
            attempts = attempts.len(),
            request_id = req.request_id.unwrap_or_default(),
        );
        let started = std::time::Instant::now();
        let result = self.ai.chat_with_fallback(&attempts).instrument(call).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok((i, answer)) => {
                for j in 0..i {
                    trace
                        .attempts
                        .push(format!("{}: failed or skipped", label(j)));
                }
                trace.attempts.push(format!("{}: answered", label(i)));
                trace.input_tokens = answer.input_tokens;
                trace.output_tokens = answer.output_tokens;
                turn.usage = Some(LlmCall {
                    answered: true,
                    input_tokens: answer.input_tokens,
                    output_tokens: answer.output_tokens,
                    latency_ms,
                    failed_attempts: i as u64,
                });
                let finished = decide::finish(
                    &answer.text,
                    &settings.blocked_phrases,
                    &bot.fallback_reply,
                    req.channel.as_str(),
                );
                if let Some(phrase) = &finished.blocked {
                    turn.trace.push(format!(
                        "the LLM's reply contained the blocked phrase \"{phrase}\": the fallback reply goes instead"
                    ));
                }
                let parts = if finished.parts.is_empty() {
                    turn.trace
                        .push("the LLM's reply was empty: the fallback reply goes instead".into());
                    vec![bot.fallback_reply.clone()]
                } else {
                    finished.parts
                };
                for (n, part) in parts.into_iter().enumerate() {
                    turn.outgoing.push(Outgoing {
                        sender: MessageSender::Bot,
                        text: Some(part),
                        reply_to,
                        rule_id,
                        ai_profile_id: chain.get(i).map(|(p, _)| p.id),
                        // The turn's tokens are counted once, on its first part.
                        tokens: (n == 0).then_some((answer.input_tokens, answer.output_tokens)),
                        ..Outgoing::default()
                    });
                }
            }
            Err(errors) => {
                turn.usage = Some(LlmCall {
                    latency_ms,
                    failed_attempts: errors.len() as u64,
                    ..LlmCall::default()
                });
                for (j, e) in errors.iter().enumerate() {
                    trace
                        .attempts
                        .push(format!("{}: {}", label(j), e.plain_words()));
                }
                if attempts.is_empty() {
                    trace
                        .attempts
                        .push("no usable AI profile (its credential was deleted)".into());
                }
                if let Some(auth) = errors.iter().find(|e| matches!(e, AiError::Auth { .. })) {
                    turn.events.push(Note {
                        kind: "ai_auth_failed",
                        detail: format!(
                            "an AI provider rejected its credential: {}",
                            auth.plain_words()
                        ),
                        alert: true,
                        once_key: None,
                    });
                }
                let why = errors
                    .iter()
                    .map(|e| e.plain_words())
                    .collect::<Vec<_>>()
                    .join("; ");
                turn.events.push(Note {
                    kind: "ai_failed",
                    detail: format!("every AI option failed for bot {}: {why}", bot.name),
                    alert: false,
                    once_key: None,
                });
                turn.trace
                    .push("every AI option failed: the error reply goes instead".into());
                turn.outgoing.push(Outgoing {
                    sender: MessageSender::Bot,
                    text: Some(settings.error_reply.clone()),
                    reply_to,
                    rule_id,
                    ..Outgoing::default()
                });
            }
        }
        turn.llm = Some(trace);
        Ok(())
    }

    /// The conversation's earlier turns and the new message, trimmed to the
    /// bot's history settings, in the alternating order LLM APIs want.
    async fn history(
        &self,
        db: &Db,
        req: &TurnRequest<'_>,
        combined: &str,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let settings = &req.bot.settings;
        let mut turns: Vec<HistoryTurn> = Vec::new();
        if let Some(c) = req.conversation
            && settings.history_messages > 0
        {
            let except: Vec<Uuid> = std::iter::once(req.inbound.id)
                .chain(req.burst.iter().map(|s| s.id))
                .collect();
            let said = memory::history(
                db,
                c.id,
                req.memory.memory_from.unwrap_or(0),
                settings.history_messages,
                &except,
            )
            .await?;
            turns = said
                .into_iter()
                .map(|s| HistoryTurn {
                    speaker: if s.sender == "contact" {
                        Speaker::Contact
                    } else {
                        Speaker::Bot
                    },
                    text: s.text,
                    at_ms: s.at_ms,
                })
                .collect();
        }
        let new_turn = HistoryTurn {
            speaker: Speaker::Contact,
            text: if combined.is_empty() {
                format!("(sent a {} message)", req.kind)
            } else {
                combined.to_string()
            },
            at_ms: req.now_ms,
        };
        // The new message always goes; history fills what budget is left.
        let budget = (settings.history_tokens as usize)
            .saturating_sub(context::estimate_tokens(&new_turn.text));
        let mut kept = context::window(&turns, settings.history_messages as usize, budget);
        kept.push(new_turn);
        Ok(context::merge_consecutive(kept)
            .into_iter()
            .map(|t| ChatMessage {
                role: match t.speaker {
                    Speaker::Contact => ChatRole::User,
                    Speaker::Bot => ChatRole::Assistant,
                },
                content: t.text,
            })
            .collect())
    }
}

/// The endpoint a stored AI credential calls, with its key unsealed.
pub async fn endpoint(
    db: &Db,
    keyring: &Keyring,
    credential: &ai_credentials::AiCredential,
) -> anyhow::Result<Endpoint> {
    let provider: ProviderKind =
        serde_json::from_value(serde_json::Value::String(credential.provider.clone()))?;
    Ok(Endpoint {
        credential_id: credential.id.to_string(),
        provider,
        base_url: credential
            .base_url
            .clone()
            .or_else(|| provider.default_base_url().map(String::from))
            .unwrap_or_default(),
        api_key: ai_credentials::api_key(db, keyring, credential).await?,
    })
}

fn rate_verdict(req: &TurnRequest<'_>) -> RateVerdict {
    let s = &req.bot.settings;
    let limit = RateLimit {
        max_messages: s.rate_limit_messages,
        per_ms: s.rate_limit_window_seconds as i64 * 1000,
    };
    let notice_sent = req
        .memory
        .rate_notice_at
        .is_some_and(|at| req.now_ms - at < limit.per_ms);
    guard::rate_verdict(&limit, req.inbound_in_window, notice_sent)
}

/// One attempt per profile of the chain, in order: the same prompt to each
/// profile's model, with at least `min_output_tokens` of room.
fn attempts_of(
    chain: &Chain,
    system: &str,
    messages: &[ChatMessage],
    min_output_tokens: u32,
) -> Vec<Attempt> {
    chain
        .iter()
        .map(|(p, endpoint)| Attempt {
            endpoint: endpoint.clone(),
            request: ChatRequest {
                model: p.model.clone(),
                system: system.to_string(),
                messages: messages.to_vec(),
                temperature: p.temperature.map(|t| t as f32),
                max_output_tokens: p.max_output_tokens.max(min_output_tokens),
            },
            timeout: Duration::from_millis(p.timeout_ms as u64),
        })
        .collect()
}

/// What rule conditions and templates can use: `message`, `contact`,
/// `channel`, `vars`, `now` (in the bot's time zone), `bot` and `persona`.
fn facts(req: &TurnRequest<'_>, combined: &str) -> Vars {
    let mut v = Vars::new();
    v.set("message.text", combined);
    v.set("message.kind", req.kind);
    v.set("channel", req.channel.as_str());
    if let Some(c) = req.conversation {
        v.set(
            "contact.name",
            c.contact.display_name.clone().unwrap_or_default(),
        );
        v.set(
            "contact.phone",
            c.contact.phone_e164.clone().unwrap_or_default(),
        );
        v.set("contact.id", c.contact.channel_user_id.clone());
        v.set("conversation.id", c.id.to_string());
    } else {
        v.set("contact.name", req.contact_name.unwrap_or_default());
        v.set("contact.phone", "");
        v.set("contact.id", "");
    }
    v.set(
        "vars",
        serde_json::to_value(&req.memory.vars).unwrap_or_default(),
    );
    let tz =
        jiff::tz::TimeZone::get(&req.bot.settings.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    if let Ok(ts) = jiff::Timestamp::from_millisecond(req.now_ms) {
        let local = ts.to_zoned(tz);
        v.set("now.year", local.year() as i64);
        v.set("now.month", local.month() as i64);
        v.set("now.day", local.day() as i64);
        v.set("now.hour", local.hour() as i64);
        v.set("now.minute", local.minute() as i64);
        // 1 = Monday … 7 = Sunday.
        v.set("now.weekday", local.weekday().to_monday_one_offset() as i64);
        v.set("now.date", local.strftime("%Y-%m-%d").to_string());
        v.set("now.time", local.strftime("%H:%M").to_string());
    }
    v.set("bot.name", req.bot.name.clone());
    let persona = req.bot.persona_or_default();
    prompt::persona_vars(&persona, &mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use integro_engine::variables::{self, GROUPS, OPEN_GROUP, VALUES};
    use integro_store::bots::BotSettings;
    use integro_store::conversations::Contact;
    use serde_json::Value;

    fn leaves(prefix: &str, value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&path, v, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }

    /// The names the API accepts are exactly the ones a turn has.
    #[test]
    fn facts_and_the_known_names_agree() {
        let now = time::OffsetDateTime::now_utc();
        let bot = Bot {
            id: Uuid::nil(),
            tenant_id: Uuid::nil(),
            name: "Helper".into(),
            description: None,
            fallback_reply: "Sorry?".into(),
            active: true,
            ai_profile_id: None,
            persona: None,
            settings: BotSettings::default(),
            rules_version: 0,
            created_at: now,
            updated_at: now,
            created_by: None,
        };
        let conversation = Conversation {
            id: Uuid::nil(),
            tenant_id: Uuid::nil(),
            account_id: Uuid::nil(),
            bot_id: Uuid::nil(),
            contact: Contact {
                id: Uuid::nil(),
                channel_user_id: "14155550100".into(),
                display_name: Some("Ann".into()),
                phone_e164: Some("+14155550100".into()),
            },
            state: ConversationState::Bot,
            last_inbound_at: None,
            last_message_at: None,
            created_at: now,
            updated_at: now,
            assignee_id: None,
            labels: Vec::new(),
            unread: None,
        };
        let mut memory = Memory::default();
        memory.vars.insert("plan".into(), "gold".into());
        let inbound = Said {
            id: Uuid::nil(),
            text: "hi".into(),
            at_ms: 1_700_000_000_000,
        };
        let req = TurnRequest {
            bot: &bot,
            channel: ChannelKind::Web,
            conversation: Some(&conversation),
            contact_name: None,
            memory: &memory,
            inbound: &inbound,
            burst: &[],
            kind: "text",
            now_ms: inbound.at_ms,
            request_id: None,
            inbound_in_window: 1,
            coalesce: false,
        };
        let mut paths = Vec::new();
        leaves("", facts(&req, "hi").as_json(), &mut paths);
        paths.sort();
        for path in &paths {
            assert_eq!(
                variables::check_template(&format!("{{{{{path}}}}}")),
                Ok(()),
                "a turn has {path}, the API refuses it"
            );
        }
        let mut known: Vec<String> = GROUPS
            .iter()
            .flat_map(|(g, fields)| fields.iter().map(move |f| format!("{g}.{f}")))
            .chain(VALUES.iter().map(|v| v.to_string()))
            .chain([format!("{OPEN_GROUP}.plan")])
            .collect();
        known.sort();
        assert_eq!(paths, known, "every known name is in a turn");
    }
}
