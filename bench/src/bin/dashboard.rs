//! Dashboard pages under a large tenant: a tenant with 10,000 conversations
//! (5 messages each, spread over 30 days), then a signed-in browser's
//! requests one after another: the inbox (first page, and filtered), a
//! random conversation, and its messages fragment (what the live view
//! fetches). Reports p50/p99/max per page, the machine's steal, and exits
//! non-zero when a page's p99 is over the target.
//!
//! ```sh
//! cargo build --release -p integro-bench --bin dashboard
//! target/release/dashboard                                         # SQLite
//! target/release/dashboard --postgres postgres://postgres@127.0.0.1:5432/postgres
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use integro_server::App;
use integro_server::config::Config;
use serde_json::json;

mod common;
use common::{Serving, api, drop_postgres, fresh_postgres, operator_tenant, steal_ticks};

#[derive(Parser)]
struct Args {
    /// Conversations in the tenant.
    #[arg(long, default_value_t = 10_000)]
    conversations: usize,
    /// Messages in each conversation.
    #[arg(long, default_value_t = 5)]
    messages: usize,
    /// Requests measured per page.
    #[arg(long, default_value_t = 300)]
    requests: usize,
    /// Run on a fresh database of this PostgreSQL server instead of SQLite.
    #[arg(long)]
    postgres: Option<String>,
    /// The p99 every page must stay under, in milliseconds.
    #[arg(long, default_value_t = 50.0)]
    target_p99_ms: f64,
    /// Keep the PostgreSQL database afterwards (its name is printed), to
    /// look at its plans.
    #[arg(long)]
    keep: bool,
    /// Also write the report (JSON) here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The path of a page's `n`th request.
type PathOf<'a> = Box<dyn Fn(usize) -> String + 'a>;

const EMAIL: &str = "bench@integro.test";
const PASSWORD: &str = "bench-password-1";

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let database = match &args.postgres {
        Some(url) => Some(fresh_postgres(url).await?),
        None => None,
    };
    let config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().join("data"),
        admin_email: Some(EMAIL.into()),
        admin_password: Some(PASSWORD.into()),
        master_key: Some(integro_store::secrets::MasterKey::generate().to_base64()),
        database_url: database.as_ref().map(|(url, _)| url.clone()),
        workers: 0,
        rate_limit_per_hour: 100_000_000,
        ..Config::default()
    };
    let app = App::build(config).await.context("building Integro")?;
    let db = app.state.db.clone();
    let serving = Serving::start(app).await?;
    let base = serving.base.clone();

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let (tenant, account) = set_up(&client, &base).await?;
    let seeding = Instant::now();
    let ids = seed(&db, &tenant, &account, args.conversations, args.messages).await?;
    eprintln!(
        "dashboard: {} conversations with {} messages each stored in {:.1} s",
        ids.len(),
        args.messages,
        seeding.elapsed().as_secs_f64()
    );
    if args.postgres.is_some() {
        // A bulk load leaves the planner's statistics stale until
        // autovacuum analyzes the tables (a minute or more later); a tenant
        // that grew to this size over weeks has them.
        sqlx::query("ANALYZE").execute(db.pool()).await?;
    }
    let cookie = sign_in(&client, &base).await?;

    let (steal_before, total_before) = steal_ticks();
    let pages: Vec<(&str, PathOf)> = vec![
        ("inbox", Box::new(|_| "/inbox".to_string())),
        (
            "inbox, with a human",
            Box::new(|_| "/inbox?state=human".to_string()),
        ),
        (
            "conversation",
            Box::new(|i| format!("/conversations/{}", ids[(i * 7919) % ids.len()])),
        ),
        (
            "conversation messages (live refresh)",
            Box::new(|i| format!("/conversations/{}/messages", ids[(i * 104_729) % ids.len()])),
        ),
    ];
    let mut report = Vec::new();
    let mut failed = false;
    for (name, path) in &pages {
        // Warm caches and connections first.
        for i in 0..20 {
            get(&client, &base, &path(i), &cookie).await?;
        }
        let mut took = Vec::with_capacity(args.requests);
        for i in 0..args.requests {
            let started = Instant::now();
            get(&client, &base, &path(i + 20), &cookie).await?;
            took.push(started.elapsed());
        }
        took.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let p = |q: f64| ms(took[((took.len() as f64 * q) as usize).min(took.len() - 1)]);
        let (p50, p99, max) = (p(0.50), p(0.99), ms(*took.last().unwrap()));
        let pass = p99 < args.target_p99_ms;
        failed |= !pass;
        println!(
            "{name:40} p50 {p50:6.1} ms   p99 {p99:6.1} ms   max {max:6.1} ms   {}",
            if pass { "PASS" } else { "FAIL" }
        );
        report.push(
            json!({ "page": name, "p50_ms": p50, "p99_ms": p99, "max_ms": max, "pass": pass }),
        );
    }
    let (steal_after, total_after) = steal_ticks();
    let steal = (steal_after - steal_before) as f64 / (total_after - total_before).max(1) as f64;
    println!("steal {:.1}% during the run", steal * 100.0);
    let summary = json!({
        "database": if args.postgres.is_some() { "postgres" } else { "sqlite" },
        "conversations": args.conversations,
        "messages_per_conversation": args.messages,
        "requests_per_page": args.requests,
        "target_p99_ms": args.target_p99_ms,
        "steal": steal,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "pages": report,
    });
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&summary)? + "\n")?;
    }
    serving.stop().await;
    if let Some((_, (admin, name))) = database.filter(|(_, (_, name))| {
        if args.keep {
            eprintln!("dashboard: kept the database {name}");
        }
        !args.keep
    }) {
        drop(db);
        drop_postgres(&admin, &name).await?;
    }
    if failed {
        bail!("a page's p99 is over {} ms", args.target_p99_ms);
    }
    Ok(())
}

/// A tenant, a bot and a WhatsApp account, through the API: (tenant, account).
async fn set_up(client: &reqwest::Client, base: &str) -> anyhow::Result<(String, String)> {
    let (token, tenant) = operator_tenant(client, base, (EMAIL, PASSWORD), "Big shop").await?;
    let bot = api(
        client,
        base,
        &token,
        Some(&tenant),
        "/api/v1/bots",
        json!({ "name": "Helper", "fallback_reply": "Thanks!" }),
    )
    .await?["id"]
        .as_str()
        .context("a bot id")?
        .to_string();
    let account = api(
        client,
        base,
        &token,
        Some(&tenant),
        "/api/v1/accounts",
        json!({ "bot_id": bot, "kind": "twilio_whatsapp", "name": "Main",
                "credentials": { "account_sid": "AC1", "auth_token": "t", "phone_number": "+14155238886" } }),
    )
    .await?["id"]
        .as_str()
        .context("an account id")?
        .to_string();
    Ok((tenant, account))
}

/// Stores the conversations, their contacts and messages in batches of
/// multi-row inserts; the conversations' ids, newest last.
async fn seed(
    db: &integro_store::Db,
    tenant: &str,
    account: &str,
    conversations: usize,
    messages: usize,
) -> anyhow::Result<Vec<String>> {
    let bot: (String,) = sqlx::query_as("SELECT bot_id FROM channel_accounts WHERE id = $1")
        .bind(account)
        .fetch_one(db.pool())
        .await?;
    let now = integro_store::db::now_ms();
    let span = 30 * 24 * 3600 * 1000_i64;
    let mut ids = Vec::with_capacity(conversations);
    const BATCH: usize = 100;
    for start in (0..conversations).step_by(BATCH) {
        let end = (start + BATCH).min(conversations);
        let mut tx = db.begin().await?;
        let mut contacts = Vec::new();
        let mut convs = Vec::new();
        let mut msgs = Vec::new();
        for n in start..end {
            let at = now - span + span * n as i64 / conversations as i64;
            let contact = uuid::Uuid::now_v7().to_string();
            let conversation = uuid::Uuid::now_v7().to_string();
            let state = match n % 10 {
                0 => "human",
                1 => "closed",
                _ => "bot",
            };
            contacts.push(format!(
                "('{contact}', '{tenant}', '{account}', 'whatsapp:+1555{n:07}', 'Contact {n}', '+1555{n:07}', {at}, {at})"
            ));
            convs.push(format!(
                "('{conversation}', '{tenant}', '{account}', '{}', '{contact}', '{state}', {at}, {at}, {at}, {at})",
                bot.0
            ));
            for m in 0..messages {
                let direction = if m % 2 == 0 { "inbound" } else { "outbound" };
                let sender = if m % 2 == 0 { "contact" } else { "bot" };
                msgs.push(format!(
                    "('{}', '{tenant}', '{conversation}', '{account}', '{direction}', '{sender}', 'text', \
                     'Message {m} of conversation {n}: do you ship to Lisbon?', 'sent', {t}, {t})",
                    uuid::Uuid::now_v7(),
                    t = at - (messages - m) as i64 * 1000
                ));
            }
            ids.push(conversation);
        }
        for (sql, rows) in [
            (
                "INSERT INTO contacts (id, tenant_id, account_id, channel_user_id, display_name, phone_e164, created_at, updated_at) VALUES ",
                contacts,
            ),
            (
                "INSERT INTO conversations (id, tenant_id, account_id, bot_id, contact_id, state, last_inbound_at, last_message_at, created_at, updated_at) VALUES ",
                convs,
            ),
            (
                "INSERT INTO messages (id, tenant_id, conversation_id, account_id, direction, sender, kind, body, status, created_at, updated_at) VALUES ",
                msgs,
            ),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!("{sql}{}", rows.join(", "))))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
    }
    Ok(ids)
}

/// Signs in through the form; the session cookie.
async fn sign_in(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let res = client
        .post(format!("{base}/login"))
        .header("origin", base)
        .form(&[("email", EMAIL), ("password", PASSWORD)])
        .send()
        .await?;
    let cookie = res
        .headers()
        .get("set-cookie")
        .context("a session cookie")?
        .to_str()?
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    Ok(cookie)
}

async fn get(client: &reqwest::Client, base: &str, path: &str, cookie: &str) -> anyhow::Result<()> {
    let res = client
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await?;
    if res.status() != reqwest::StatusCode::OK {
        bail!("GET {path}: {}", res.status());
    }
    res.bytes().await?;
    Ok(())
}
