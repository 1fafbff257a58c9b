//! Crash test: signed WhatsApp (Twilio) webhooks under load while `integro`
//! processes are killed with SIGKILL at random moments and restarted; then
//! checks against the mock provider's record that every webhook answered 200
//! was stored once and answered by exactly one send, and that nothing was
//! sent twice, even a job lease after the last reply.
//!
//! ```sh
//! cargo build --release -p integro -p integro-bench
//! target/release/crash --kills 20                                   # SQLite
//! target/release/crash --kills 20 --postgres postgres://postgres@127.0.0.1:5432/postgres
//! target/release/crash --kills 20 --postgres … --worker-processes 2 # serve + 2 `integro worker`
//! ```
//! Exits non-zero when a message is lost or duplicated, when too few webhooks
//! were acknowledged for that to mean anything (`--min-acknowledged`), when
//! an acknowledged webhook is still unanswered `--drain-timeout-secs` after
//! the load, when a send is not the rule's reply, and when the set-up fails.

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
/// What the bot's one rule answers to `order <n>`: `ack order <n>`.
const REPLY_PREFIX: &str = "ack order ";

/// `INTEGRO_JOB_LEASE_SECS` of every process: short (the default is a
/// minute), so that the jobs a killed process held are taken again within
/// seconds.
const LEASE_SECS: u64 = 3;
/// How much longer than a lease the run watches for late duplicates once
/// every acknowledged webhook is answered. A job whose process died after its
/// send but before recording it is taken again when its lease runs out, on a
/// worker's next poll (250 ms), which asks Twilio's message list before
/// sending again: the margin covers the poll, the claim and those two calls,
/// several times over.
const LATE_MARGIN: Duration = Duration::from_secs(3);

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
    /// Fail unless at least this fraction of the webhooks sent was
    /// acknowledged (answered 200). Not 1: the requests in flight when the
    /// server is killed fail, and so do those sent while it restarts. But
    /// the invariants are checked on acknowledged webhooks only, so a run that
    /// acknowledged few proves little, and one that acknowledged none (a
    /// wrong URL, a bad signature, a server that never came back) would pass
    /// while proving nothing. Runs so far acknowledged over 95%; half leaves
    /// room for a slow machine restarting a debug build between kills.
    #[arg(long, default_value_t = 0.5)]
    min_acknowledged: f64,
    /// Fail when an acknowledged webhook has no reply this long after the
    /// load stopped.
    #[arg(long, default_value_t = 120)]
    drain_timeout_secs: u64,
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

    /// Runs a CLI command; its standard output. Fails when the command does.
    fn cli_text(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command(args)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", self.integro.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!("integro {args:?} failed ({}): {stdout}", out.status);
        }
        Ok(stdout)
    }

    /// Runs a CLI command with `--json`; what it printed.
    fn cli(&self, args: &[&str]) -> anyhow::Result<Value> {
        let out = self.cli_text(&[&["--json"], args].concat())?;
        serde_json::from_str(&out).with_context(|| format!("integro {args:?} printed {out:?}"))
    }

    fn spawn(&self, what: &str) -> anyhow::Result<Proc> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.join(format!("{what}.log")))?;
        let mut command = self.command(&[what]);
        if what == "worker" {
            // `serve` runs none when worker processes are asked for; these do.
            // Each serves its probes on a port of its own.
            command
                .env("INTEGRO_WORKERS", "16")
                .env("INTEGRO_WORKER_LISTEN", "127.0.0.1:0");
        }
        let child = command
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} {what}", self.integro.display()))?;
        Ok(Proc(child))
    }
}

/// An `integro` process, killed when dropped: none outlives the run, also
/// when the run stops at an error.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        kill(&mut self.0);
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
    if !(args.min_acknowledged > 0.0 && args.min_acknowledged <= 1.0) {
        bail!("--min-acknowledged must be above 0 and at most 1");
    }
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
        ("INTEGRO_JOB_LEASE_SECS".into(), LEASE_SECS.to_string()),
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
    let (tally, report) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("logs kept in {}", data.display());
            return Err(e.context("the crash test could not run"));
        }
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    let failures = tally.failures(args.min_acknowledged);
    if failures.is_empty() {
        let _ = std::fs::remove_dir_all(&data);
        Ok(())
    } else {
        eprintln!("logs kept in {}", data.display());
        bail!("crash test failed:\n- {}", failures.join("\n- "))
    }
}

/// What a run counted; the verdict is [`Tally::failures`].
#[derive(Debug, Clone, Default)]
struct Tally {
    webhooks_sent: u64,
    webhooks_acknowledged: usize,
    /// Acknowledged webhooks not stored.
    lost_inbound: usize,
    /// Acknowledged webhooks without a reply.
    lost_replies: usize,
    /// Webhooks stored more than once.
    duplicated_inbound: usize,
    /// Webhooks answered by more than one send.
    duplicated_sends: usize,
    /// Sends that are not the rule's reply to a webhook (the fallback reply,
    /// when the rule is not in place).
    unexpected_sends: usize,
    /// Whether every acknowledged webhook was answered before the drain
    /// timeout (if not, the run did not watch for late duplicates).
    drained: bool,
}

impl Tally {
    /// Why the run failed, in words; empty when it passed.
    fn failures(&self, min_acknowledged: f64) -> Vec<String> {
        let mut failures = Vec::new();
        let sent = self.webhooks_sent;
        let acked = self.webhooks_acknowledged;
        let ratio = if sent == 0 {
            0.0
        } else {
            acked as f64 / sent as f64
        };
        if sent == 0 {
            failures.push("no webhook was sent".to_string());
        } else if ratio < min_acknowledged {
            failures.push(format!(
                "only {acked} of {sent} webhooks ({:.1}%) were acknowledged; at least {:.0}% must be \
                 (--min-acknowledged), or the checks below prove little",
                ratio * 100.0,
                min_acknowledged * 100.0
            ));
        }
        if !self.drained {
            failures.push(format!(
                "{} acknowledged webhook(s) still had no reply at the drain timeout",
                self.lost_replies
            ));
        }
        if self.lost_inbound + self.lost_replies > 0 {
            failures.push(format!(
                "lost: {} acknowledged webhook(s) not stored, {} without a reply",
                self.lost_inbound, self.lost_replies
            ));
        }
        if self.duplicated_inbound + self.duplicated_sends > 0 {
            failures.push(format!(
                "duplicated: {} webhook(s) stored more than once, {} answered more than once",
                self.duplicated_inbound, self.duplicated_sends
            ));
        }
        if self.unexpected_sends > 0 {
            failures.push(format!(
                "{} send(s) were not the rule's reply to a webhook",
                self.unexpected_sends
            ));
        }
        failures
    }
}

/// The webhook numbers each send answered (`ack order <n>`), with how many
/// times; and how many sends answered none.
fn replies(sent: &[Sent]) -> (HashMap<u64, usize>, usize) {
    let mut answered: HashMap<u64, usize> = HashMap::new();
    let mut other = 0;
    for s in sent {
        match s
            .body
            .strip_prefix(REPLY_PREFIX)
            .and_then(|n| n.parse().ok())
        {
            Some(n) => *answered.entry(n).or_default() += 1,
            None => other += 1,
        }
    }
    (answered, other)
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
) -> anyhow::Result<(Tally, Value)> {
    let client = reqwest::Client::new();
    // The server creates the database and its first operator; the CLI adds
    // a tenant, a bot with one rule, and the WhatsApp account.
    let mut server = setup.spawn("serve")?;
    wait_ready(&client, base)
        .await
        .context("the first start of integro serve")?;
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
    // The rule must be in place: without it every reply is the fallback,
    // and no webhook would count as answered.
    setup
        .cli_text(&["rules", "import", &bot, &rules.display().to_string()])
        .context("importing the bot's rule")?;
    let exported = setup
        .cli_text(&["rules", "export", &bot])
        .context("exporting the bot's rules")?;
    if !exported.contains("pattern: order") {
        bail!("the bot's rule is not in place after its import; its rules are:\n{exported}");
    }
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
    let mut workers: Vec<Proc> = (0..args.worker_processes)
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
            kill(&mut server.0);
            server = setup.spawn("serve")?;
            wait_ready(&client, base).await?;
        } else {
            kill(&mut workers[victim - 1].0);
            workers[victim - 1] = setup.spawn("worker")?;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let sent_webhooks = load.await?;
    let load_secs = started.elapsed().as_secs_f64();

    // Let the queue drain: every acknowledged webhook answered (`acked` is
    // final: the load task has returned).
    let acked: Vec<u64> = acked.lock().unwrap().clone();
    let drain_started = Instant::now();
    let deadline = drain_started + Duration::from_secs(args.drain_timeout_secs);
    let unanswered = || {
        let (answered, _) = replies(&provider.sent.lock().unwrap());
        acked.iter().filter(|n| !answered.contains_key(n)).count()
    };
    let drained = loop {
        if unanswered() == 0 {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let drain_secs = drain_started.elapsed().as_secs_f64();
    // Then watch a lease and a margin longer: a job whose process was killed
    // after its send, before recording it, is run again once its lease has
    // run out, and a second send would come then.
    let watch = Duration::from_secs(LEASE_SECS) + LATE_MARGIN;
    if drained {
        tokio::time::sleep(watch).await;
    }
    kill(&mut server.0);
    for w in &mut workers {
        kill(&mut w.0);
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
    let sent = provider.sent.lock().unwrap().clone();
    let (sends, unexpected_sends) = replies(&sent);
    let tally = Tally {
        webhooks_sent: sent_webhooks,
        webhooks_acknowledged: acked.len(),
        lost_inbound: acked
            .iter()
            .filter(|n| !stored.contains_key(&format!("SMcrash{n}")))
            .count(),
        lost_replies: acked.iter().filter(|n| !sends.contains_key(n)).count(),
        duplicated_inbound: stored.values().filter(|c| **c > 1).count(),
        duplicated_sends: sends.values().filter(|c| **c > 1).count(),
        unexpected_sends,
        drained,
    };
    let failures = tally.failures(args.min_acknowledged);
    let report = json!({
        "database": if args.postgres.is_some() { "postgres" } else { "sqlite" },
        "worker_processes": args.worker_processes,
        "kills": args.kills,
        "seconds": load_secs,
        "drain_seconds": drain_secs,
        "drained": drained,
        "late_duplicate_watch_seconds": if drained { watch.as_secs_f64() } else { 0.0 },
        "webhooks_sent": sent_webhooks,
        "webhooks_acknowledged": acked.len(),
        "acknowledged_ratio": if sent_webhooks == 0 { 0.0 } else { acked.len() as f64 / sent_webhooks as f64 },
        "min_acknowledged": args.min_acknowledged,
        "inbound_stored": stored.len(),
        "provider_sends": sent.len(),
        "unexpected_sends": unexpected_sends,
        "lost_inbound": tally.lost_inbound,
        "lost_replies": tally.lost_replies,
        "duplicated_inbound": tally.duplicated_inbound,
        "duplicated_sends": tally.duplicated_sends,
        "lost": tally.lost_inbound + tally.lost_replies,
        "duplicated": tally.duplicated_inbound + tally.duplicated_sends,
        "failures": failures,
    });
    Ok((tally, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run that passed: most webhooks acknowledged, each stored and
    /// answered once.
    fn good() -> Tally {
        Tally {
            webhooks_sent: 400,
            webhooks_acknowledged: 390,
            drained: true,
            ..Tally::default()
        }
    }

    #[test]
    fn a_clean_run_passes() {
        assert_eq!(good().failures(0.5), Vec::<String>::new());
    }

    #[test]
    fn nothing_acknowledged_fails() {
        let t = Tally {
            webhooks_acknowledged: 0,
            ..good()
        };
        let failures = t.failures(0.5);
        assert_eq!(failures.len(), 1);
        assert!(failures[0].contains("only 0 of 400"), "{failures:?}");
        let none_sent = Tally {
            webhooks_sent: 0,
            webhooks_acknowledged: 0,
            ..good()
        };
        assert_eq!(none_sent.failures(0.5), vec!["no webhook was sent"]);
    }

    #[test]
    fn too_few_acknowledged_fails_at_the_threshold() {
        let half = Tally {
            webhooks_acknowledged: 200,
            ..good()
        };
        assert!(half.failures(0.5).is_empty());
        let under = Tally {
            webhooks_acknowledged: 199,
            ..good()
        };
        assert!(under.failures(0.5)[0].contains("49.8%"));
        assert!(!half.failures(0.9).is_empty());
    }

    #[test]
    fn lost_duplicated_undrained_and_unexpected_fail() {
        for (t, word) in [
            (
                Tally {
                    lost_inbound: 1,
                    ..good()
                },
                "lost",
            ),
            (
                Tally {
                    lost_replies: 2,
                    ..good()
                },
                "lost",
            ),
            (
                Tally {
                    duplicated_sends: 1,
                    ..good()
                },
                "duplicated",
            ),
            (
                Tally {
                    duplicated_inbound: 1,
                    ..good()
                },
                "duplicated",
            ),
            (
                Tally {
                    drained: false,
                    ..good()
                },
                "drain timeout",
            ),
            (
                Tally {
                    unexpected_sends: 3,
                    ..good()
                },
                "not the rule's reply",
            ),
        ] {
            let failures = t.failures(0.5);
            assert!(
                failures.iter().any(|f| f.contains(word)),
                "{t:?}: {failures:?}"
            );
        }
    }

    #[test]
    fn replies_are_counted_per_webhook() {
        let sent = |body: &str| Sent {
            sid: String::new(),
            to: String::new(),
            from: String::new(),
            body: body.to_string(),
            created: time::OffsetDateTime::UNIX_EPOCH,
        };
        let (answered, other) = replies(&[
            sent("ack order 1"),
            sent("ack order 2"),
            sent("ack order 2"),
            sent("fallback"),
        ]);
        assert_eq!(answered, HashMap::from([(1, 1), (2, 2)]));
        assert_eq!(other, 1);
    }
}
