//! The reply pipeline's own overhead per message: `Engine::decide` on a real
//! SQLite database, for a bot with many rules and a conversation with history,
//! against an LLM provider that answers instantly (a local HTTP server).
//!
//! Two paths are timed: a message a rule answers, and one that goes to the
//! LLM. The LLM path includes one local HTTP round trip to the instant
//! provider, so its figure is an upper bound of the overhead.
//!
//! `cargo run --release -p integro-bench --bin pipeline -- --messages 5000 --rules 10000`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Json;
use axum::routing::post;
use clap::Parser;
use integro_core::{Actor, ChannelKind, InboundMessage};
use integro_engine::rules::MatchKind;
use integro_store::Conn;
use integro_store::accounts::{self, CredentialValues, NewAccount};
use integro_store::ai_credentials::{self, CredentialFields};
use integro_store::ai_profiles::{self, ProfileFields};
use integro_store::bots::{self, BotFields, BotSettings};
use integro_store::conversations::{self, MessageSender, Outgoing};
use integro_store::memory;
use integro_store::rules::{self, RuleFields};
use integro_store::secrets::{Keyring, MasterKey};
use integro_store::{Db, tenants};
use integro_worker::engine::{Said, TurnRequest};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Turns timed on each path.
    #[arg(long, default_value_t = 5000)]
    messages: usize,
    /// Rules of the bot.
    #[arg(long, default_value_t = 10_000)]
    rules: usize,
    /// Earlier messages in the conversation.
    #[arg(long, default_value_t = 40)]
    history: usize,
}

async fn instant_provider() -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            Json(json!({
                "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "bench",
                "choices": [{ "index": 0, "finish_reason": "stop", "message": { "role": "assistant", "content": "An instant answer." } }],
                "usage": { "prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105 }
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}/v1"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn report(name: &str, mut samples: Vec<Duration>) -> Value {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    let (p50, p99, max) = (
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        *samples.last().expect("samples"),
    );
    println!(
        "{name:<10} n={:<6} mean {:>8.1} µs   p50 {:>8.1} µs   p99 {:>8.1} µs   max {:>8.1} µs",
        samples.len(),
        mean.as_secs_f64() * 1e6,
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        max.as_secs_f64() * 1e6,
    );
    json!({ "path": name, "n": samples.len(), "mean_us": mean.as_secs_f64() * 1e6,
            "p50_us": p50.as_secs_f64() * 1e6, "p99_us": p99.as_secs_f64() * 1e6 })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("integro-pipeline-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let db = Db::connect(&format!("sqlite://{}/bench.db?mode=rwc", dir.display())).await?;
    integro_store::migrations::migrate(&db).await?;
    let keyring = Keyring::new(MasterKey::generate(), Vec::new());
    let actor = Actor::system();
    let base_url = instant_provider().await?;

    let mut tx = db.begin().await?;
    let tenant = tenants::create(&mut tx, &actor, None, "Bench").await?;
    let credential = ai_credentials::create(
        &mut tx,
        &keyring,
        &actor,
        None,
        tenant.id,
        CredentialFields {
            name: "instant".into(),
            provider: "openai".into(),
            base_url: Some(base_url.clone()),
            api_key: Some("sk-bench".into()),
        },
    )
    .await?;
    let profile = ai_profiles::create(
        &mut tx,
        &actor,
        None,
        tenant.id,
        ProfileFields {
            name: "instant".into(),
            credential_id: credential.id,
            model: "bench".into(),
            temperature: None,
            max_output_tokens: 200,
            timeout_ms: 5000,
            fallback_profile_id: None,
        },
    )
    .await?;
    let settings = BotSettings {
        rate_limit_messages: u32::MAX,
        ..BotSettings::default()
    };
    let bot = bots::create(
        &mut tx,
        &actor,
        None,
        tenant.id,
        BotFields {
            name: "Bench".into(),
            description: None,
            fallback_reply: "Thanks!".into(),
            active: true,
            ai_profile_id: Some(profile.id),
            persona: None,
            settings,
        },
    )
    .await?;
    // Rules on made-up words; one of them is the word the rule path sends.
    let rule_set: Vec<RuleFields> = (0..args.rules)
        .map(|i| RuleFields {
            name: None,
            priority: (i % 7) as i64,
            match_kind: if i % 10 == 0 {
                MatchKind::AnyKeyword
            } else {
                MatchKind::Contains
            },
            pattern: (i % 10 != 0).then(|| format!("zorb{i} qua{}", i % 97)),
            keywords: if i % 10 == 0 {
                vec![format!("kwa{i}"), format!("kwb{i}")]
            } else {
                Vec::new()
            },
            condition: None,
            reply: Some(format!("Reply {i} for {{{{contact.name}}}}")),
            media_url: None,
            action: None,
            active: true,
            unknown: Default::default(),
        })
        .collect();
    rules::replace_all(&mut tx, &actor, None, tenant.id, bot.id, rule_set).await?;
    let account = accounts::create(
        &mut tx,
        &keyring,
        &actor,
        None,
        tenant.id,
        NewAccount {
            bot_id: bot.id,
            kind: ChannelKind::Web,
            name: "web".into(),
            external_id: None,
            credentials: CredentialValues::default(),
            template: None,
        },
    )
    .await?;
    tx.commit().await?;

    // A conversation with history.
    let mut tx = db.begin().await?;
    let inbound = InboundMessage {
        provider_message_id: "m0".into(),
        from: "contact-1".into(),
        from_name: Some("Ana".into()),
        phone_e164: None,
        kind: "text".into(),
        text: Some("Hello, I would like to order a cake".into()),
        media: Vec::new(),
        reply_to: None,
    };
    let first =
        match conversations::ingest(&mut Conn::of(&mut tx), &account, &inbound, None).await? {
            conversations::Ingested::Stored { message_id } => message_id,
            conversations::Ingested::Duplicate => anyhow::bail!("fresh database"),
        };
    tx.commit().await?;
    let message = conversations::message(&db, first)
        .await?
        .context("stored")?;
    let mut tx = db.begin().await?;
    let conversation_id =
        conversations::file_inbound(&mut Conn::of(&mut tx), &message, bot.id, i64::MAX / 4).await?;
    tx.commit().await?;
    let conversation = conversations::conversation(&db, conversation_id)
        .await?
        .context("filed")?;
    let mut tx = db.begin().await?;
    for i in 0..args.history {
        conversations::queue_outbound(
            &mut Conn::of(&mut tx),
            &conversation,
            Outgoing {
                sender: if i % 2 == 0 {
                    MessageSender::Bot
                } else {
                    MessageSender::Agent
                },
                text: Some(format!(
                    "An earlier turn number {i} about cakes and candles."
                )),
                ..Outgoing::default()
            },
        )
        .await?;
    }
    tx.commit().await?;
    let bot = bots::get(&db, tenant.id, bot.id).await?.context("bot")?;
    // The instant provider listens on loopback: an outbound policy exception.
    let provider = base_url
        .trim_start_matches("http://")
        .trim_end_matches("/v1");
    let engine = Arc::new(integro_server::startup::engine(&integro_server::Config {
        outbound_allow: vec![provider.to_string()],
        ..integro_server::Config::default()
    }));

    let turn = |text: String| {
        let (db, keyring, engine, bot, conversation) =
            (&db, &keyring, &engine, &bot, &conversation);
        async move {
            let memory = memory::load(db, conversation.id).await?;
            let said = Said {
                id: integro_core::new_id(),
                text,
                at_ms: integro_store::db::now_ms(),
            };
            let started = Instant::now();
            let turn = engine
                .decide(
                    db,
                    keyring,
                    TurnRequest {
                        bot,
                        channel: ChannelKind::Web,
                        conversation: Some(conversation),
                        contact_name: None,
                        memory: &memory,
                        inbound: &said,
                        burst: &[],
                        kind: "text",
                        now_ms: said.at_ms,
                        request_id: None,
                        inbound_in_window: 1,
                        coalesce: false,
                    },
                )
                .await?;
            let took = started.elapsed();
            anyhow::ensure!(!turn.outgoing.is_empty(), "a reply");
            Ok::<_, anyhow::Error>((took, turn.rule_id().is_some()))
        }
    };
    // Warm up: compile the rule set, open connections.
    for _ in 0..50 {
        turn("zorb5 qua5 please".into()).await?;
        turn("something else entirely".into()).await?;
    }
    let mut rule_path = Vec::with_capacity(args.messages);
    let mut llm_path = Vec::with_capacity(args.messages);
    for i in 0..args.messages {
        let n = (i * 7919) % args.rules.max(1);
        let n = if n % 10 == 0 { n + 1 } else { n };
        let (took, by_rule) = turn(format!("hi, zorb{n} qua{} for me", n % 97)).await?;
        anyhow::ensure!(by_rule, "rule {n} answers");
        rule_path.push(took);
        let (took, by_rule) = turn(format!("is there a gluten-free option, number {i}?")).await?;
        anyhow::ensure!(!by_rule, "the LLM answers");
        llm_path.push(took);
    }
    // The provider's own share of the LLM path: the same call, alone.
    let endpoint = integro_worker::engine::endpoint(&db, &keyring, &credential).await?;
    let request = integro_ai::ChatRequest {
        model: "bench".into(),
        system: "You are Bench.".into(),
        messages: vec![integro_ai::ChatMessage {
            role: integro_ai::ChatRole::User,
            content: "is there a gluten-free option?".into(),
        }],
        temperature: None,
        max_output_tokens: 200,
    };
    let mut provider_only = Vec::with_capacity(args.messages);
    for _ in 0..args.messages {
        let started = Instant::now();
        engine
            .ai()
            .chat(&endpoint, &request, Duration::from_secs(5))
            .await?;
        provider_only.push(started.elapsed());
    }
    println!(
        "Engine::decide on SQLite, {} rules, {} messages of history, instant LLM provider on localhost",
        args.rules, args.history
    );
    let results = json!({
        "rules": args.rules,
        "history": args.history,
        "paths": [report("rule", rule_path), report("llm", llm_path), report("provider", provider_only)],
    });
    println!("{}", serde_json::to_string(&results)?);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
