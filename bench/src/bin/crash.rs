//! Crash test: signed WhatsApp (Twilio) webhooks under load while `integro`
//! processes are killed with SIGKILL at random moments and restarted; then
//! checks against the mock provider's record that every webhook answered 200
//! was stored once and answered by exactly one send, and that nothing was
//! sent twice.
//!
//! ```sh
//! cargo build --release -p integro -p integro-bench
//! target/release/crash --kills 20                                   # SQLite
//! target/release/crash --kills 20 --postgres postgres://postgres@127.0.0.1:5432/postgres
//! target/release/crash --kills 20 --postgres … --worker-processes 2 # serve + 2 `integro worker`
//! ```
//! Exits non-zero when a message is lost or duplicated.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::extract::{Query, State};
use axum::routing::post;
use axum::{Form, Json};
use clap::Parser;
use serde_json::{Value, json};

const ACCOUNT_SID: &str = "ACcrash";
const AUTH_TOKEN: &str = "crash-auth-token";
const BOT_NUMBER: &str = "+14155238886";

#[derive(Parser)]
struct Args {
    /// SIGKILLs to deliver.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// Webhooks per second while the kills go on.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// The `integro` binary.
    #[arg(long, default_value = "target/release/integro")]
    integro: PathBuf,
    /// Run on PostgreSQL: an admin URL; a fresh database is created and dropped.
    #[arg(long)]
    postgres: Option<String>,
    /// `integro worker` processes besides `integro serve` (which then runs no
    /// workers); each is killed and restarted like the server.
    #[arg(long, default_value_t = 0)]
    worker_processes: usize,
    /// Write the result as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// What the mock Twilio accepted.
#[derive(Clone, Default)]
struct Provider {
    sent: Arc<Mutex<Vec<Sent>>>,
}

#[derive(Clone)]
struct Sent {
    sid: String,
    to: String,
    from: String,
    body: String,
    created: time::OffsetDateTime,
}

async fn send(
    State(p): State<Provider>,
    Form(form): Form<HashMap<String, String>>,
) -> (axum::http::StatusCode, Json<Value>) {
    let mut sent = p.sent.lock().unwrap();
    let sid = format!("SM{:032x}", sent.len() + 1);
    sent.push(Sent {
        sid: sid.clone(),
        to: form.get("To").cloned().unwrap_or_default(),
        from: form.get("From").cloned().unwrap_or_default(),
        body: form.get("Body").cloned().unwrap_or_default(),
        created: time::OffsetDateTime::now_utc(),
    });
    (
        axum::http::StatusCode::CREATED,
        Json(json!({ "sid": sid, "status": "queued" })),
    )
}

/// Twilio's message list: newest first, filtered by To and From.
async fn list(State(p): State<Provider>, Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let sent = p.sent.lock().unwrap();
    let messages: Vec<Value> = sent
        .iter()
        .rev()
        .filter(|s| q.get("To").is_none_or(|t| *t == s.to) && q.get("From").is_none_or(|f| *f == s.from))
        .take(50)
        .map(|s| {
            json!({
                "sid": s.sid, "to": s.to, "from": s.from, "body": s.body, "status": "sent",
                "date_created": s.created.format(&time::format_description::well_known::Rfc2822).unwrap_or_default(),
            })
        })
        .collect();
    Json(json!({ "messages": messages, "page": 0, "page_size": 50 }))
}

async fn start_provider(p: Provider) -> anyhow::Result<String> {
    let path = format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json");
    let app = axum::Router::new()
        .route(&path, post(send).get(list))
        .with_state(p);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}

struct Setup {
    integro: PathBuf,
    env: Vec<(String, String)>,
    data: PathBuf,
}

impl Setup {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.integro);
        c.args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c.env_remove("INTEGRO_CONFIG");
        c
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<Value> {
        let out = self
            .command(&[&["--json"], args].concat())
            .stderr(Stdio::inherit())
            .output()?;
        if !out.status.success() {
            bail!(
                "integro {args:?} failed: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
    }

    fn spawn(&self, what: &str) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.join(format!("{what}.log")))?;
        let mut command = self.command(&[what]);
        if what == "worker" {
            // `serve` runs none when worker processes are asked for; these do.
            command.env("INTEGRO_WORKERS", "16");
        }
        Ok(command.stdout(log.try_clone()?).stderr(log).spawn()?)
    }
}

async fn wait_ready(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("integro did not become ready")
}

fn kill(child: &mut Child) {
    // std's kill is SIGKILL on Unix: no shutdown, no cleanup.
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let provider = Provider::default();
    let provider_url = start_provider(provider.clone()).await?;
    let data = std::env::temp_dir().join(format!("integro-crash-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&data)?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let base = format!("http://127.0.0.1:{port}");
    let pg_db = format!("integro_crash_{}", uuid::Uuid::new_v4().simple());
    let mut env: Vec<(String, String)> = vec![
        ("INTEGRO_DATA_DIR".into(), data.display().to_string()),
        ("INTEGRO_LISTEN".into(), format!("127.0.0.1:{port}")),
        ("INTEGRO_PUBLIC_URL".into(), base.clone()),
        ("INTEGRO_TWILIO_API_BASE".into(), provider_url),
        ("INTEGRO_LOG".into(), "warn".into()),
        ("INTEGRO_ADMIN_EMAIL".into(), "crash@integro.test".into()),
        ("INTEGRO_ADMIN_PASSWORD".into(), "crash-password-1".into()),
        (
            "INTEGRO_WORKERS".into(),
            if args.worker_processes > 0 {
                "0".into()
            } else {
                "16".into()
            },
        ),
        // Short leases, so the jobs a killed process held are taken again
        // within seconds rather than a minute.
        ("INTEGRO_JOB_LEASE_SECS".into(), "3".into()),
    ];
    let mut db_url = format!("sqlite://{}/integro.db", data.display());
    if let Some(admin) = &args.postgres {
        sqlx_admin(admin, &format!("CREATE DATABASE {pg_db}")).await?;
        db_url = format!(
            "{}/{pg_db}",
            admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin)
        );
        env.push(("INTEGRO_DATABASE_URL".into(), db_url.clone()));
    }
    let setup = Setup {
        integro: args.integro.clone(),
        env,
        data: data.clone(),
    };
    let result = run(&args, &setup, &base, &provider, &db_url).await;
    if let Some(admin) = &args.postgres {
        let _ = sqlx_admin(
            admin,
            &format!("DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)"),
        )
        .await;
    }
    let report = result?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    if report["lost"].as_u64() == Some(0) && report["duplicated"].as_u64() == Some(0) {
        let _ = std::fs::remove_dir_all(&data);
    } else {
        eprintln!("logs kept in {}", data.display());
    }
    if report["lost"].as_u64() != Some(0) || report["duplicated"].as_u64() != Some(0) {
        bail!(
            "invariants broken: {} lost, {} duplicated",
            report["lost"],
            report["duplicated"]
        );
    }
    Ok(())
}

async fn sqlx_admin(url: &str, sql: &str) -> anyhow::Result<()> {
    let db = integro_store::Db::connect(url).await?;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut *db.writer().await?)
        .await?;
    db.close().await;
    Ok(())
}

async fn run(
    args: &Args,
    setup: &Setup,
    base: &str,
    provider: &Provider,
    db_url: &str,
) -> anyhow::Result<Value> {
    let client = reqwest::Client::new();
    // The server creates the database and its first operator; the CLI adds
    // a tenant, a bot with one rule, and the WhatsApp account.
    let mut server = setup.spawn("serve")?;
    wait_ready(&client, base).await?;
    let tenant = setup.cli(&["tenant", "create", "Crash"])?["id"]
        .as_str()
        .context("tenant id")?
        .to_string();
    let bot = setup.cli(&[
        "bot",
        "create",
        "--tenant",
        &tenant,
        "--name",
        "Echo",
        "--fallback-reply",
        "fallback",
    ])?["id"]
        .as_str()
        .context("bot id")?
        .to_string();
    let rules = setup.data.join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n- match: starts_with\n  pattern: order\n  reply: 'ack {{message.text}}'\n",
    )?;
    setup
        .cli(&["rules", "import", &bot, &rules.display().to_string()])
        .ok();
    let account = setup.cli(&[
        "account",
        "add",
        "--tenant",
        &tenant,
        "--bot",
        &bot,
        "--kind",
        "twilio_whatsapp",
        "--name",
        "Main",
        "--credential",
        &format!("account_sid={ACCOUNT_SID}"),
        "--credential",
        &format!("auth_token={AUTH_TOKEN}"),
        "--credential",
        &format!("phone_number={BOT_NUMBER}"),
    ])?["account"]["id"]
        .as_str()
        .context("account id")?
        .to_string();
    let mut workers: Vec<Child> = (0..args.worker_processes)
        .map(|_| setup.spawn("worker"))
        .collect::<Result<_, _>>()?;

    // Load, in the background, until told to stop.
    let path = format!("/webhooks/twilio/{account}");
    let url = format!("{base}{path}");
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (client, acked, stop, url) = (client.clone(), acked.clone(), stop.clone(), url.clone());
        let rate = args.rate.max(1);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
            let mut n = 0u64;
            let mut inflight = tokio::task::JoinSet::new();
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                let (client, acked, url) = (client.clone(), acked.clone(), url.clone());
                inflight.spawn(async move {
                    let from = format!("whatsapp:+1555{:07}", n % 500);
                    let params: Vec<(String, String)> = vec![
                        ("MessageSid".into(), format!("SMcrash{n}")),
                        ("AccountSid".into(), ACCOUNT_SID.into()),
                        ("From".into(), from),
                        ("To".into(), format!("whatsapp:{BOT_NUMBER}")),
                        ("Body".into(), format!("order {n}")),
                        ("NumMedia".into(), "0".into()),
                    ];
                    let signature = integro_channels::twilio::sign(AUTH_TOKEN, &url, &params);
                    let res = client
                        .post(&url)
                        .header("x-twilio-signature", signature)
                        .form(&params)
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    if res.is_ok_and(|r| r.status().is_success()) {
                        acked.lock().unwrap().push(n);
                    }
                });
                n += 1;
            }
            while inflight.join_next().await.is_some() {}
            n
        })
    };

    // The kills: each one at a random moment, of a random process.
    let started = Instant::now();
    for _ in 0..args.kills {
        tokio::time::sleep(Duration::from_millis(300 + rand::random::<u64>() % 900)).await;
        let victim = (rand::random::<u64>() % (workers.len() as u64 + 1)) as usize;
        if victim == 0 {
            kill(&mut server);
            server = setup.spawn("serve")?;
            wait_ready(&client, base).await?;
        } else {
            kill(&mut workers[victim - 1]);
            workers[victim - 1] = setup.spawn("worker")?;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let sent_webhooks = load.await?;
    let load_secs = started.elapsed().as_secs_f64();

    // Let the queue drain: every acknowledged webhook answered, or no
    // progress for 45 s.
    let acked: Vec<u64> = acked.lock().unwrap().clone();
    let mut last = (0, Instant::now());
    loop {
        let answered = provider.sent.lock().unwrap().len();
        if answered >= acked.len() {
            tokio::time::sleep(Duration::from_secs(3)).await;
            break;
        }
        if answered != last.0 {
            last = (answered, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(45) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    kill(&mut server);
    for w in &mut workers {
        kill(w);
    }

    // What the database stored, and what the provider received.
    let db = integro_store::Db::connect(db_url).await?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT provider_message_id, COUNT(*) FROM messages WHERE account_id = $1 AND direction = 'inbound' \
         GROUP BY provider_message_id",
    )
    .bind(&account)
    .fetch_all(db.pool())
    .await?;
    db.close().await;
    let stored: HashMap<String, i64> = rows.into_iter().collect();
    let mut sends: HashMap<u64, usize> = HashMap::new();
    for s in provider.sent.lock().unwrap().iter() {
        if let Some(n) = s
            .body
            .strip_prefix("ack order ")
            .and_then(|n| n.parse().ok())
        {
            *sends.entry(n).or_default() += 1;
        }
    }
    let lost_inbound = acked
        .iter()
        .filter(|n| !stored.contains_key(&format!("SMcrash{n}")))
        .count();
    let lost_replies = acked.iter().filter(|n| !sends.contains_key(n)).count();
    let duplicated_sends = sends.values().filter(|c| **c > 1).count();
    let duplicated_inbound = stored.values().filter(|c| **c > 1).count();
    Ok(json!({
        "database": if args.postgres.is_some() { "postgres" } else { "sqlite" },
        "worker_processes": args.worker_processes,
        "kills": args.kills,
        "seconds": load_secs,
        "webhooks_sent": sent_webhooks,
        "webhooks_acknowledged": acked.len(),
        "inbound_stored": stored.len(),
        "provider_sends": provider.sent.lock().unwrap().len(),
        "lost_inbound": lost_inbound,
        "lost_replies": lost_replies,
        "duplicated_inbound": duplicated_inbound,
        "duplicated_sends": duplicated_sends,
        "lost": lost_inbound + lost_replies,
        "duplicated": duplicated_inbound + duplicated_sends,
    }))
}
