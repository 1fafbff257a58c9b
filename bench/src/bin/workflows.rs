//! Workflows through the API (#37), in one process with its workers:
//!
//! 1. **Transitions per second**: `--instances` instances of a two-state
//!    workflow (`a ⇄ b` on `flip`), `--clients` clients each sending `flip`
//!    events to its own instances for `--seconds`: transitions/s, latency
//!    p50/p99, and the process's CPU per transition (the load generator runs
//!    in the same process, so this is an upper bound).
//! 2. **Timer lateness**: `--timers` instances whose timer moves them on
//!    after `--timer-after` seconds, started as fast as the API takes them;
//!    for each, how late its transition was written after its due time
//!    (p50, p99, max).
//!
//! Prints the machine's steal; `--out` writes the report as JSON.
//!
//! ```sh
//! cargo build --release -p integro-bench --bin workflows
//! target/release/workflows                                            # SQLite
//! target/release/workflows --postgres postgres://postgres@127.0.0.1:5432/postgres
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use integro_server::App;
use integro_server::config::Config;
use serde_json::{Value, json};

mod common;
use common::{Serving, api, drop_postgres, fresh_postgres, operator_tenant, steal_ticks};

#[derive(Parser)]
struct Args {
    /// Instances the events are spread over.
    #[arg(long, default_value_t = 1000)]
    instances: usize,
    /// Concurrent API clients sending events.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// How long events are sent.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Instances with a pending timer (0: skip the timer part).
    #[arg(long, default_value_t = 10_000)]
    timers: usize,
    /// Their timer's delay, in seconds: long enough to start them all.
    #[arg(long, default_value_t = 30)]
    timer_after: u64,
    /// Job slots of the process's worker.
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// Run on a fresh database of this PostgreSQL server instead of SQLite.
    #[arg(long)]
    postgres: Option<String>,
    /// Also write the report (JSON) here.
    #[arg(long)]
    out: Option<PathBuf>,
}

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

/// This process's CPU time (user + system), in seconds.
fn own_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage writes the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
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
        workers: args.workers,
        rate_limit_per_hour: 100_000_000,
        ..Config::default()
    };
    let app = App::build(config).await.context("building Integro")?;
    let db = app.state.db.clone();
    let serving = Serving::start(app).await?;
    let base = serving.base.clone();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients * 2)
        .build()?;
    let (token, tenant) = operator_tenant(&client, &base, (EMAIL, PASSWORD), "Cases").await?;
    let (steal_before, total_before) = steal_ticks();

    // 1. Transitions per second.
    publish(
        &client,
        &base,
        &token,
        &tenant,
        json!({ "key": "toggle", "triggers": { "api": true }, "initial": "a",
                "states": { "a": { "on": { "flip": "b" } }, "b": { "on": { "flip": "a" } } } }),
    )
    .await?;
    let ids = Arc::new(
        start(
            &client,
            &base,
            &token,
            &tenant,
            "toggle",
            args.instances,
            args.clients,
        )
        .await?,
    );
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let cpu_before = own_cpu_seconds();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (client, base, token, tenant, ids) = (
            client.clone(),
            base.clone(),
            token.clone(),
            tenant.clone(),
            ids.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut took = Vec::new();
            let mut i = c;
            while Instant::now() < deadline {
                let id = &ids[i % ids.len()];
                i += args.clients;
                let sent = Instant::now();
                api(
                    &client,
                    &base,
                    &token,
                    Some(&tenant),
                    &format!("/api/v1/workflow-instances/{id}/events"),
                    json!({ "event": "flip" }),
                )
                .await?;
                took.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(took)
        }));
    }
    let mut took = Vec::new();
    for task in tasks {
        took.extend(task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = own_cpu_seconds() - cpu_before;
    took.sort_by(f64::total_cmp);
    let transitions = json!({
        "transitions": took.len(),
        "per_second": took.len() as f64 / elapsed,
        "p50_ms": percentile(&took, 0.50),
        "p99_ms": percentile(&took, 0.99),
        "cpu_ms_per_transition": cpu * 1000.0 / took.len().max(1) as f64,
    });
    println!(
        "transitions: {} in {elapsed:.1} s = {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, CPU {:.2} ms per transition (with the load generator)",
        took.len(),
        took.len() as f64 / elapsed,
        percentile(&took, 0.50),
        percentile(&took, 0.99),
        cpu * 1000.0 / took.len().max(1) as f64
    );

    // 2. Timer lateness.
    let timers = if args.timers > 0 {
        publish(
            &client,
            &base,
            &token,
            &tenant,
            json!({ "key": "timed", "triggers": { "api": true }, "initial": "waiting",
                    "states": { "waiting": { "timers": [{ "after": format!("PT{}S", args.timer_after), "goto": "done" }] },
                                "done": { "final": true } } }),
        )
        .await?;
        let starting = Instant::now();
        start(
            &client,
            &base,
            &token,
            &tenant,
            "timed",
            args.timers,
            args.clients,
        )
        .await?;
        let start_secs = starting.elapsed().as_secs_f64();
        println!(
            "timers: {} instances started in {start_secs:.1} s; waiting for them to fire",
            args.timers
        );
        if start_secs > args.timer_after as f64 {
            eprintln!(
                "workflows: starting took longer than the timers' delay: raise --timer-after"
            );
        }
        let wait_until = Instant::now() + Duration::from_secs(args.timer_after + 600);
        loop {
            let active: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM workflow_instances WHERE status = 'active' AND state = 'waiting'",
            )
            .fetch_one(db.pool())
            .await?;
            if active == 0 || Instant::now() > wait_until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // How late each transition was written after its due time.
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT i.created_at, e.created_at FROM workflow_instances i \
             JOIN workflow_events e ON e.instance_id = i.id AND e.name = 'workflow.instance.transitioned' \
             JOIN workflow_definitions d ON d.id = i.definition_id AND d.key = 'timed'",
        )
        .fetch_all(db.pool())
        .await?;
        let due_ms = args.timer_after as i64 * 1000;
        let mut late: Vec<f64> = rows
            .iter()
            .map(|(created, fired)| ((fired - created - due_ms) as f64 / 1000.0).max(0.0))
            .collect();
        late.sort_by(f64::total_cmp);
        println!(
            "timer lateness: {} fired of {}, p50 {:.3} s, p99 {:.3} s, max {:.3} s",
            late.len(),
            args.timers,
            percentile(&late, 0.50),
            percentile(&late, 0.99),
            late.last().copied().unwrap_or(0.0)
        );
        json!({
            "pending": args.timers,
            "fired": late.len(),
            "after_seconds": args.timer_after,
            "started_in_seconds": start_secs,
            "lateness_p50_s": percentile(&late, 0.50),
            "lateness_p99_s": percentile(&late, 0.99),
            "lateness_max_s": late.last().copied().unwrap_or(0.0),
        })
    } else {
        Value::Null
    };

    let (steal_after, total_after) = steal_ticks();
    let steal = (steal_after - steal_before) as f64 / (total_after - total_before).max(1) as f64;
    println!("steal {:.1}% during the run", steal * 100.0);
    let summary = json!({
        "database": if args.postgres.is_some() { "postgres" } else { "sqlite" },
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "instances": args.instances,
        "clients": args.clients,
        "seconds": args.seconds,
        "workers": args.workers,
        "steal": steal,
        "transitions": transitions,
        "timers": timers,
    });
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&summary)? + "\n")?;
    }
    serving.stop().await;
    if let Some((_, (admin, name))) = database {
        drop(db);
        drop_postgres(&admin, &name).await?;
    }
    Ok(())
}

/// Stores and publishes a definition.
async fn publish(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    tenant: &str,
    definition: Value,
) -> anyhow::Result<()> {
    let made = api(
        client,
        base,
        token,
        Some(tenant),
        "/api/v1/workflow-definitions",
        definition,
    )
    .await?;
    let id = made["id"].as_str().context("a definition id")?;
    api(
        client,
        base,
        token,
        Some(tenant),
        &format!("/api/v1/workflow-definitions/{id}/versions"),
        json!({}),
    )
    .await?;
    Ok(())
}

/// Starts `n` instances of `key` with `clients` concurrent requests; their ids.
async fn start(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    tenant: &str,
    key: &str,
    n: usize,
    clients: usize,
) -> anyhow::Result<Vec<String>> {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, base, token, tenant, key) = (
            client.clone(),
            base.to_string(),
            token.to_string(),
            tenant.to_string(),
            key.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in (c..n).step_by(clients) {
                let made = api(
                    &client,
                    &base,
                    &token,
                    Some(&tenant),
                    "/api/v1/workflow-instances",
                    json!({ "definition": key }),
                )
                .await?;
                ids.push(made["id"].as_str().context("an instance id")?.to_string());
            }
            anyhow::Ok(ids)
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await??);
    }
    Ok(ids)
}
