//! The reply engine from the command line: rules export and import as YAML,
//! a dry run of a bot's decision, and a check of an AI credential.

use std::io::Read;
use std::time::Duration;

use anyhow::{Context, bail};
use integro_core::Actor;
use integro_server::Config;
use integro_server::startup::{self, load_keyring};
use integro_store::rules::{self, RuleDocument};
use integro_store::{ai_credentials, bots};
use integro_worker::engine::DryRun;
use uuid::Uuid;

use crate::{AiCommand, RulesCommand};

async fn bot(db: &integro_store::Db, id: Uuid) -> anyhow::Result<bots::Bot> {
    bots::by_id(db, id)
        .await?
        .with_context(|| format!("bot {id} does not exist (see `integro bot list`)"))
}

pub async fn rules(config: &Config, cmd: RulesCommand) -> anyhow::Result<()> {
    let db = crate::admin::open_existing_database(config).await?;
    match cmd {
        RulesCommand::Export { bot: id, file } => {
            let bot = bot(&db, id).await?;
            let doc = RuleDocument::of_bot(&db, bot.id).await?;
            let yaml = doc.to_yaml();
            match file {
                Some(path) => {
                    std::fs::write(&path, yaml)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("Exported {} rule(s) to {}", doc.rules.len(), path.display());
                }
                None => print!("{yaml}"),
            }
        }
        RulesCommand::Import { bot: id, file } => {
            let bot = bot(&db, id).await?;
            let text = if file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s)?;
                s
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let doc = RuleDocument::from_yaml(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let mut tx = db.begin().await?;
            let n = rules::replace_all(
                &mut tx,
                &Actor::cli(),
                None,
                bot.tenant_id,
                bot.id,
                doc.rules,
            )
            .await?;
            tx.commit().await?;
            println!(
                "Imported {n} rule(s) into bot {} ({}); its earlier rules were replaced",
                bot.name, bot.id
            );
        }
    }
    Ok(())
}

pub async fn try_bot(
    db: &integro_store::Db,
    config: &Config,
    id: Uuid,
    text: String,
    contact_name: Option<String>,
    channel: integro_core::ChannelKind,
    json: bool,
) -> anyhow::Result<()> {
    let (keyring, _) = load_keyring(config)?;
    let bot = bot(db, id).await?;
    let turn = startup::engine(config)
        .dry_run(
            db,
            &keyring,
            &bot,
            DryRun {
                text,
                contact_name: contact_name.as_deref(),
                channel,
                conversation: None,
            },
        )
        .await?;
    let replies: Vec<String> = turn
        .outgoing
        .iter()
        .map(|o| {
            o.text
                .clone()
                .or_else(|| o.media_url.clone())
                .unwrap_or_default()
        })
        .collect();
    if json {
        let out = serde_json::json!({
            "replies": replies,
            "rule_id": turn.rule_id(),
            "handoff": turn.handoff.is_some(),
            "trace": turn.trace,
            "llm": turn.llm,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("Trace:");
    for line in &turn.trace {
        println!("  - {line}");
    }
    if let Some(llm) = &turn.llm {
        println!("System prompt:\n{}\n", indent(&llm.system_prompt));
        println!("Messages sent to the LLM:");
        for m in &llm.messages {
            println!("  {:?}: {}", m.role, m.content);
        }
        println!("Providers tried:");
        for a in &llm.attempts {
            println!("  - {a}");
        }
        println!("Tokens: {} in, {} out", llm.input_tokens, llm.output_tokens);
    }
    if turn.handoff.is_some() {
        println!("The conversation would go to a human.");
    }
    if replies.is_empty() {
        println!("Reply: (none)");
    }
    for r in replies {
        println!("Reply: {r}");
    }
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn ai(config: &Config, cmd: AiCommand) -> anyhow::Result<()> {
    let AiCommand::Test { credential, model } = cmd;
    let db = crate::admin::open_existing_database(config).await?;
    let (keyring, _) = load_keyring(config)?;
    let cred = ai_credentials::by_id(&db, credential)
        .await?
        .with_context(|| format!("AI credential {credential} does not exist"))?;
    let endpoint = integro_worker::engine::endpoint(&db, &keyring, &cred).await?;
    match startup::engine(config)
        .ai()
        .test(&endpoint, model.as_deref(), Duration::from_secs(20))
        .await
    {
        Ok(message) => {
            println!("{} ({}): {message}", cred.name, cred.provider);
            Ok(())
        }
        Err(e) => bail!("{} ({}): {}", cred.name, cred.provider, e.plain_words()),
    }
}
