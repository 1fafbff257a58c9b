//! `integro-bench e2e`: the whole message loop under load. Runs `integro
//! serve` on a fresh data directory against the built-in mock provider,
//! sets up a tenant, a bot (one keyword rule, a fallback reply) and one
//! account per channel, posts signed webhooks at a fixed rate and measures
//! from when each was due until its reply reached the provider.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::mock::{self, Mock};
use crate::process::{self, Integro, MachineCpu};
use crate::report::{self, Hook, Outcome, Run};
use crate::webhooks::{self, Account, Channel, Inbound};

#[derive(Parser, Clone)]
pub struct E2eArgs {
    /// The `integro` binary to run.
    #[arg(long)]
    integro: PathBuf,
    /// Webhooks per second (open loop: latency counts from when a webhook was due).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds to measure, after the warm-up.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Seconds of load before measuring (connections open, caches fill).
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Seconds to wait, after the load, for replies still due.
    #[arg(long, default_value_t = 10)]
    drain: u64,
    /// Share of each channel, as weights.
    #[arg(long, default_value = "twilio=50,whatsapp=30,instagram=20")]
    mix: String,
    /// Contacts that keep writing (the ongoing conversations).
    #[arg(long, default_value_t = 2000)]
    contacts: u64,
    /// Share of webhooks from a contact never seen before.
    #[arg(long, default_value_t = 0.2)]
    new_share: f64,
    /// Where the report goes (created): e2e.json, summary.md, e2e.svg,
    /// integro.log, and Integro's `/metrics` at the end (metrics.txt).
    #[arg(long)]
    out: PathBuf,
    /// Also write latencies.csv: each webhook's due time, ack and reply
    /// latency, channel and contact (to find where a tail comes from).
    #[arg(long)]
    raw: bool,
    /// An empty PostgreSQL database for Integro (default: SQLite in a fresh
    /// temporary data directory).
    #[arg(long)]
    database_url: Option<String>,
    /// INTEGRO_WORKERS: jobs Integro runs at once (default: Integro's).
    #[arg(long)]
    workers: Option<usize>,
    /// Run the jobs in this many `integro worker` processes (each with
    /// `--workers` slots) and none in `serve` (PostgreSQL only). CPU then
    /// counts every Integro process.
    #[arg(long, default_value_t = 0)]
    worker_processes: usize,
    /// Seconds before a webhook request counts as timed out.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// More settings for Integro, as KEY=VALUE (e.g. INTEGRO_DB_MAX_CONNECTIONS=32);
    /// nothing else of the caller's INTEGRO_* environment reaches it.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    extra_env: Vec<String>,
}

/// Channels and their shares (summing to 1), from `twilio=50,whatsapp=30`.
pub fn parse_mix(text: &str) -> anyhow::Result<Vec<(Channel, f64)>> {
    let mut mix: Vec<(Channel, f64)> = Vec::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
        let channel = Channel::parse(name).with_context(|| {
            format!("--mix: unknown channel `{name}` (twilio, whatsapp, instagram)")
        })?;
        let weight: f64 = weight
            .trim()
            .parse()
            .ok()
            .filter(|w: &f64| w.is_finite() && *w >= 0.0)
            .with_context(|| format!("--mix: `{part}` needs a weight ≥ 0"))?;
        if mix.iter().any(|(c, _)| *c == channel) {
            bail!("--mix names {} twice", channel.name());
        }
        if weight > 0.0 {
            mix.push((channel, weight));
        }
    }
    let total: f64 = mix.iter().map(|(_, w)| w).sum();
    if total <= 0.0 {
        bail!("--mix gives no channel a share");
    }
    Ok(mix.into_iter().map(|(c, w)| (c, w / total)).collect())
}

/// Who writes next, on which channel.
struct Plan {
    mix: Vec<(Channel, f64)>,
    contacts: u64,
    new_share: f64,
    next_new: AtomicU64,
}

impl Plan {
    fn channel_at(&self, u: f64) -> Channel {
        let mut acc = 0.0;
        for (channel, share) in &self.mix {
            acc += share;
            if u < acc {
                return *channel;
            }
        }
        self.mix[self.mix.len() - 1].0
    }

    /// A contact number and its channel. Ongoing contacts keep their channel
    /// (spread by the golden ratio, so the shares hold for any count); new
    /// ones are numbered after them and never repeat.
    fn pick(&self) -> (Channel, u64) {
        if self.contacts == 0 || rand::random::<f64>() < self.new_share {
            let n = self.contacts + self.next_new.fetch_add(1, Ordering::Relaxed);
            (self.channel_at(rand::random::<f64>()), n)
        } else {
            let n = rand::random::<u64>() % self.contacts;
            let u = (n as f64 * 0.618_033_988_749_894_9).fract();
            (self.channel_at(u), n)
        }
    }
}

/// Contact `n`'s address on `channel`, as the provider writes it in webhooks.
fn address(channel: Channel, n: u64) -> String {
    match channel {
        Channel::Twilio => format!("+1555{n:07}"),
        Channel::Whatsapp => format!("4915{n:08}"),
        Channel::Instagram => (6_000_000_000_000_000 + n).to_string(),
    }
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

fn random_digits(n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rand::random::<u8>() % 10))
        .collect()
}

/// What the setup made.
struct Setup {
    bot: String,
    api_key: String,
    accounts: Vec<Account>,
}

/// A tenant, a bot, an API key and one account per channel of the mix,
/// through the CLI (as an operator would). Credentials are new each run, so
/// a PostgreSQL database used before cannot mix its accounts in.
fn setup(integro: &Integro, mix: &[(Channel, f64)], base: &str) -> anyhow::Result<Setup> {
    let id = |v: &Value, what: &str| -> anyhow::Result<String> {
        v.pointer(what)
            .and_then(Value::as_str)
            .map(String::from)
            .with_context(|| format!("the CLI answered no {what}: {v}"))
    };
    integro.migrate()?;
    let tenant = id(&integro.cli(&["tenant", "create", "E2E bench"])?, "/id")?;
    let bot = id(
        &integro.cli(&[
            "bot",
            "create",
            "--tenant",
            &tenant,
            "--name",
            "E2E",
            "--fallback-reply",
            "Thanks for your message! Someone from our team will answer soon.",
        ])?,
        "/id",
    )?;
    let api_key = id(
        &integro.cli(&[
            "apikey", "create", "--tenant", &tenant, "--name", "e2e", "--role", "admin",
        ])?,
        "/key",
    )?;
    let mut accounts = Vec::new();
    for (channel, _) in mix {
        let secret = random_hex(16);
        let (external_id, account_sid, credentials) = match channel {
            Channel::Twilio => {
                let number = format!("+1415{}", random_digits(7));
                let sid = format!("AC{}", random_hex(16));
                let creds = vec![
                    format!("account_sid={sid}"),
                    format!("auth_token={secret}"),
                    format!("phone_number={number}"),
                ];
                (number, sid, creds)
            }
            Channel::Whatsapp | Channel::Instagram => {
                let (field, external) = if *channel == Channel::Whatsapp {
                    ("phone_number_id", format!("1065{}", random_digits(11)))
                } else {
                    ("ig_user_id", format!("1784{}", random_digits(13)))
                };
                let creds = vec![
                    format!("{field}={external}"),
                    format!("access_token=EAAG{}", random_hex(24)),
                    format!("app_secret={secret}"),
                    format!("verify_token={}", random_hex(8)),
                ];
                (external, String::new(), creds)
            }
        };
        let mut args = vec![
            "account",
            "add",
            "--tenant",
            &tenant,
            "--bot",
            &bot,
            "--kind",
            channel.kind(),
            "--name",
            channel.name(),
        ];
        for c in &credentials {
            args.extend(["--credential", c.as_str()]);
        }
        let account_id = id(&integro.cli(&args)?, "/account/id")?;
        accounts.push(Account {
            channel: *channel,
            external_id,
            secret,
            account_sid,
            url: format!("{base}/webhooks/{}/{account_id}", channel.name()),
        });
    }
    Ok(Setup {
        bot,
        api_key,
        accounts,
    })
}

/// Through the API, what the CLI does not set: a per-contact rate limit that
/// lets ongoing contacts write this often (the default, 20 a minute, would
/// silence them: at 1,000/s over 2,000 contacts each writes ~24 a minute),
/// and one keyword rule, so that replies come from rules and the fallback.
async fn configure_bot(client: &reqwest::Client, base: &str, s: &Setup) -> anyhow::Result<()> {
    let calls = [
        (
            reqwest::Method::PATCH,
            format!("{base}/api/v1/bots/{}", s.bot),
            json!({"settings": {"rate_limit_messages": 1_000_000}}),
        ),
        (
            reqwest::Method::POST,
            format!("{base}/api/v1/bots/{}/rules", s.bot),
            json!({"name": "prices", "match": "any_keyword", "keywords": ["price", "prices", "plan"],
                   "reply": "Hi {{contact.name}}! Our plans start at 9 EUR a month per person; nonprofits get 50% off."}),
        ),
    ];
    for (method, url, body) in calls {
        let res = client
            .request(method, &url)
            .bearer_auth(&s.api_key)
            .json(&body)
            .send()
            .await?;
        if !res.status().is_success() {
            bail!(
                "{url}: {} {}",
                res.status(),
                res.text().await.unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// The generator's side of the run.
struct Load {
    client: reqwest::Client,
    accounts: Vec<Account>,
    plan: Plan,
    seq: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    hooks: Mutex<Vec<Hook>>,
}

impl Load {
    /// Posts one webhook due at `due`, and records how it went.
    async fn fire(&self, due: Instant) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (channel, n) = self.plan.pick();
        let Some(account) = self.accounts.iter().find(|a| a.channel == channel) else {
            return;
        };
        let from = address(channel, n);
        let id = webhooks::message_id(channel);
        let text = webhooks::text(seq);
        let signed = account.webhook(&Inbound {
            id: &id,
            from: &from,
            name: webhooks::name(n),
            text: &text,
        });
        let res = self
            .client
            .post(&account.url)
            .header(reqwest::header::CONTENT_TYPE, signed.content_type)
            .header(signed.signature_header, signed.signature)
            .body(signed.body)
            .send()
            .await;
        let outcome = match res {
            Ok(r) => {
                let status = r.status();
                // Read the answer, so that the connection is reused.
                match r.bytes().await {
                    Ok(_) if status.is_success() => Outcome::Acked,
                    Ok(_) => Outcome::Refused(status.as_u16()),
                    Err(e) if e.is_timeout() => Outcome::Timeout,
                    Err(_) => Outcome::Transport,
                }
            }
            Err(e) if e.is_timeout() => Outcome::Timeout,
            Err(_) => Outcome::Transport,
        };
        let done = Instant::now();
        if outcome == Outcome::Acked {
            self.acked.fetch_add(1, Ordering::Relaxed);
        } else {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.hooks.lock().unwrap().push(Hook {
            channel,
            contact: mock::contact_key(&from).to_string(),
            due,
            done,
            outcome,
        });
    }
}

/// Posts at `rate` from `start` until `end`, then waits for the requests in flight.
async fn generate(load: Arc<Load>, start: Instant, end: Instant, rate: u64) {
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut n: u64 = 0;
    loop {
        // Latency counts from when the request was due, not when it left:
        // a stalled server cannot hide its queue (no coordinated omission).
        let due = start + interval.mul_f64(n as f64);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let load = load.clone();
        in_flight.spawn(async move { load.fire(due).await });
        while in_flight.try_join_next().is_some() {}
        n += 1;
    }
    while in_flight.join_next().await.is_some() {}
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} s  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// What `monitor` read every 250 ms.
#[derive(Default)]
struct Samples {
    /// Integro's resident memory (KiB).
    rss: Vec<(Instant, u64)>,
    /// The machine's CPU counters.
    machine: Vec<(Instant, MachineCpu)>,
}

/// Samples Integro's resident memory and the machine's CPU every 250 ms and
/// keeps the progress bar current.
fn monitor(
    pid: u32,
    load: Arc<Load>,
    mock: Mock,
    bar: ProgressBar,
    warmup_start: Instant,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Samples> {
    tokio::spawn(async move {
        let mut samples = Samples::default();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let now = Instant::now();
            let rss = process::rss_kib(pid);
            if let Some(kib) = rss {
                samples.rss.push((now, kib));
            }
            if let Some(cpu) = MachineCpu::now() {
                samples.machine.push((now, cpu));
            }
            bar.set_prefix(if now < start { "warm-up" } else { "measure" });
            bar.set_position(now.saturating_duration_since(warmup_start).as_secs());
            bar.set_message(format!(
                "{} acked, {} errors, {} replies, RSS {} MiB",
                load.acked.load(Ordering::Relaxed),
                load.errors.load(Ordering::Relaxed),
                mock.count(),
                rss.map(|k| k / 1024).unwrap_or_default()
            ));
        }
        samples
    })
}

pub async fn run(args: E2eArgs) -> anyhow::Result<()> {
    let mix = parse_mix(&args.mix)?;
    if !(0.0..=1.0).contains(&args.new_share) {
        bail!("--new-share must be between 0 and 1");
    }
    if args.rate == 0 || args.duration == 0 {
        bail!("--rate and --duration must be at least 1");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let integro_binary = std::fs::canonicalize(&args.integro)
        .with_context(|| format!("--integro {}", args.integro.display()))?;

    let mock = Mock::new(true);
    let mock_url = mock.start().await?;
    let data = tempfile::Builder::new().prefix("integro-e2e-").tempdir()?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut env: Vec<(String, String)> = vec![
        ("INTEGRO_DATA_DIR".into(), data.path().display().to_string()),
        ("INTEGRO_LISTEN".into(), format!("127.0.0.1:{port}")),
        ("INTEGRO_PUBLIC_URL".into(), base.clone()),
        // Quiet unless asked (INTEGRO_LOG=sqlx::query=debug shows every statement).
        (
            "INTEGRO_LOG".into(),
            std::env::var("INTEGRO_LOG").unwrap_or_else(|_| "warn".into()),
        ),
        ("INTEGRO_ADMIN_EMAIL".into(), "e2e@integro.test".into()),
        (
            "INTEGRO_ADMIN_PASSWORD".into(),
            format!("e2e-{}", random_hex(12)),
        ),
        ("INTEGRO_TWILIO_API_BASE".into(), mock_url.clone()),
        (
            "INTEGRO_GRAPH_API_BASE".into(),
            format!("{mock_url}{}", mock::GRAPH_PREFIX),
        ),
        (
            "INTEGRO_INSTAGRAM_API_BASE".into(),
            format!("{mock_url}{}", mock::INSTAGRAM_PREFIX),
        ),
    ];
    if let Some(url) = &args.database_url {
        env.push(("INTEGRO_DATABASE_URL".into(), url.clone()));
    }
    if args.worker_processes > 0 {
        if args.database_url.is_none() {
            bail!("--worker-processes needs PostgreSQL (--database-url)");
        }
        // `serve` only stores webhooks; the worker processes get their own.
        env.push(("INTEGRO_WORKERS".into(), "0".into()));
    } else if let Some(w) = args.workers {
        env.push(("INTEGRO_WORKERS".into(), w.to_string()));
    }
    for setting in &args.extra_env {
        let (key, value) = setting
            .split_once('=')
            .with_context(|| format!("--env {setting}: expected KEY=VALUE"))?;
        env.push((key.into(), value.into()));
    }
    let integro = Integro {
        binary: integro_binary.clone(),
        env,
    };

    eprintln!("setting up Integro in {}", data.path().display());
    let setup = setup(&integro, &mix, &base)?;
    let mut server = integro.serve(&args.out.join("integro.log"))?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout))
        .pool_max_idle_per_host(1024)
        .build()?;
    server.wait_ready(&client, &base).await?;
    configure_bot(&client, &base, &setup).await?;
    let pid = server.pid();
    let mut workers = Vec::new();
    for n in 0..args.worker_processes {
        let probes = format!("127.0.0.1:{}", free_port()?);
        let mut worker = integro.spawn(
            "worker",
            &args.out.join(format!("worker-{n}.log")),
            &[
                ("INTEGRO_WORKER_LISTEN", probes.clone()),
                ("INTEGRO_WORKERS", args.workers.unwrap_or(16).to_string()),
            ],
        )?;
        worker
            .wait_ready(&client, &format!("http://{probes}"))
            .await?;
        workers.push(worker);
    }
    let pids: Vec<u32> = std::iter::once(pid)
        .chain(workers.iter().map(|w| w.pid()))
        .collect();
    let cpu_seconds = || -> Option<f64> {
        pids.iter()
            .map(|p| process::cpu_seconds(*p))
            .sum::<Option<f64>>()
    };

    let load = Arc::new(Load {
        client: client.clone(),
        accounts: setup.accounts.clone(),
        plan: Plan {
            mix: mix.clone(),
            contacts: args.contacts,
            new_share: args.new_share,
            next_new: AtomicU64::new(0),
        },
        seq: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        hooks: Mutex::new(Vec::new()),
    });
    let warmup_start = Instant::now() + Duration::from_millis(20);
    let start = warmup_start + Duration::from_secs(args.warmup);
    let end = start + Duration::from_secs(args.duration);
    let bar = progress_bar(args.warmup + args.duration);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = monitor(
        pid,
        load.clone(),
        mock.clone(),
        bar.clone(),
        warmup_start,
        start,
        stop.clone(),
    );
    let generator = tokio::spawn(generate(load.clone(), warmup_start, end, args.rate));
    tokio::time::sleep_until(start.into()).await;
    let postgres = args.database_url.is_some();
    let postgres_cpu = || postgres.then(process::postgres_cpu_seconds).flatten();
    let (cpu_start, pg_start, machine_start) = (cpu_seconds(), postgres_cpu(), MachineCpu::now());
    tokio::time::sleep_until(end.into()).await;
    let (cpu_end, pg_end, machine_end) = (cpu_seconds(), postgres_cpu(), MachineCpu::now());
    generator.await?;

    // Wait for the replies still due; then a moment more, within the same
    // budget, for late duplicates.
    bar.set_prefix("drain");
    let deadline = Instant::now() + Duration::from_secs(args.drain);
    let mut all_answered: Option<Instant> = None;
    while Instant::now() < deadline {
        let missing = {
            let hooks = load.hooks.lock().unwrap();
            report::correlate(&hooks, &mock.sends()).missing
        };
        bar.set_message(format!("waiting for {missing} replies"));
        match (missing, all_answered) {
            (0, None) => all_answered = Some(Instant::now()),
            (0, Some(t)) if t.elapsed() >= Duration::from_secs(1) => break,
            (0, Some(_)) => {}
            _ => all_answered = None,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained = Instant::now();
    let peak_rss_kib = process::peak_rss_kib(pid);
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.await?;
    bar.finish_and_clear();
    // Integro's own view of the run (commit and job durations, checkpoints,
    // queue depth), for finding where a tail came from.
    let metrics = match client.get(format!("{base}/metrics")).send().await {
        Ok(r) if r.status().is_success() => r.text().await.ok(),
        _ => None,
    };
    server.stop().await;
    for worker in workers {
        worker.stop().await;
    }
    if let Some(text) = metrics {
        std::fs::write(args.out.join("metrics.txt"), text)?;
    }

    let hooks = std::mem::take(&mut *load.hooks.lock().unwrap());
    let sends = mock.sends();
    let config = json!({
        "rate": args.rate,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "drain_s": args.drain,
        "mix": mix.iter().map(|(c, s)| format!("{}={:.0}", c.name(), s * 100.0)).collect::<Vec<_>>().join(","),
        "contacts": args.contacts,
        "new_share": args.new_share,
        "database": if args.database_url.is_some() { "postgres" } else { "sqlite" },
        "workers": args.workers,
        "worker_processes": args.worker_processes,
        "timeout_s": args.timeout,
        "integro": integro_binary.display().to_string(),
    });
    let (report, latencies) = report::analyze(&Run {
        config,
        hooks: &hooks,
        sends: &sends,
        warmup_start,
        start,
        end,
        drained,
        rss_samples: &samples.rss,
        peak_rss_kib,
        cpu_s: cpu_start.zip(cpu_end).map(|(a, b)| b - a),
        postgres_cpu_s: pg_start.zip(pg_end).map(|(a, b)| b - a),
        machine: machine_start
            .zip(machine_end)
            .and_then(|(a, b)| a.shares_until(&b)),
        machine_samples: &samples.machine,
        twilio_lookups: mock.lookups(),
        unexpected_requests: mock.unexpected(),
    });
    if args.raw {
        std::fs::write(
            args.out.join("latencies.csv"),
            report::latencies_csv(&hooks, &sends, start),
        )?;
    }
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(args.out.join("e2e.json"), &json)?;
    std::fs::write(args.out.join("summary.md"), report::markdown(&report))?;
    std::fs::write(
        args.out.join("e2e.svg"),
        crate::plot::svg(&report, &latencies)?,
    )?;
    println!("{json}");
    eprintln!(
        "{}: report in {}",
        if report.pass { "PASS" } else { "FAIL" },
        args.out.display()
    );
    // A FAIL is the process's failure too: scripts and CI see it in the
    // exit status (bench/run.sh keeps going past it on purpose).
    if !report.pass {
        let missed: Vec<String> = report
            .targets
            .iter()
            .filter(|t| !t.pass)
            .map(|t| format!("{}: {} (target {})", t.name, t.value, t.limit))
            .collect();
        anyhow::bail!("targets missed: {}", missed.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_are_normalised_and_checked() {
        let mix = parse_mix("twilio=50,whatsapp=30,instagram=20").unwrap();
        assert_eq!(
            mix,
            vec![
                (Channel::Twilio, 0.5),
                (Channel::Whatsapp, 0.3),
                (Channel::Instagram, 0.2)
            ]
        );
        assert_eq!(
            parse_mix("instagram").unwrap(),
            vec![(Channel::Instagram, 1.0)]
        );
        assert_eq!(
            parse_mix("twilio=1,whatsapp=0").unwrap(),
            vec![(Channel::Twilio, 1.0)]
        );
        assert!(parse_mix("telegram=1").is_err());
        assert!(parse_mix("twilio=0").is_err());
        assert!(parse_mix("twilio=1,twilio=2").is_err());
    }

    #[test]
    fn contacts_keep_their_channel_and_the_shares_hold() {
        let plan = Plan {
            mix: parse_mix("twilio=50,whatsapp=30,instagram=20").unwrap(),
            contacts: 2000,
            new_share: 0.2,
            next_new: AtomicU64::new(0),
        };
        let mut seen = std::collections::HashMap::new();
        let mut per_channel = std::collections::HashMap::new();
        let mut new = 0;
        for _ in 0..20_000 {
            let (channel, n) = plan.pick();
            *per_channel.entry(channel).or_insert(0) += 1;
            if n >= 2000 {
                new += 1;
            }
            assert_eq!(*seen.entry(n).or_insert(channel), channel);
        }
        assert!((3_400..4_600).contains(&new), "new contacts: {new}");
        let share = |c| per_channel[&c] as f64 / 20_000.0;
        assert!((share(Channel::Twilio) - 0.5).abs() < 0.03);
        assert!((share(Channel::Whatsapp) - 0.3).abs() < 0.03);
        assert!((share(Channel::Instagram) - 0.2).abs() < 0.03);
    }
}
