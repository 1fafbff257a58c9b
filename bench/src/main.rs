//! `integro-bench`: a load generator for webhook ingest. It signs every
//! request (each with a new message id, so nothing is a duplicate), posts
//! Twilio WhatsApp webhooks of realistic size at maximum concurrency or at a
//! fixed rate, and reports throughput and acknowledgement latency. The same
//! generator runs against Integro and against the reference servers, so
//! figures can be stated as ratios. `mock-provider` stands in for Twilio's
//! API when Integro's workers run during a benchmark.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "integro-bench",
    about = "Load generator for Integro's webhook ingest"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Post signed Twilio webhooks and measure.
    Ingest(IngestArgs),
    /// Answer Twilio "create message" calls with 201, counting them.
    MockProvider {
        #[arg(long, default_value = "127.0.0.1:3999")]
        listen: String,
    },
}

#[derive(Parser, Clone)]
struct IngestArgs {
    /// Where to post.
    #[arg(long)]
    url: String,
    /// The URL the signature covers (Integro's public URL + path).
    #[arg(long)]
    sign_url: Option<String>,
    /// The account's Twilio auth token.
    #[arg(long, default_value = "0123456789abcdef0123456789abcdef")]
    token: String,
    /// Seconds to measure (after a warm-up of 2 s).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Requests in flight at once (closed loop), when no --rate is given.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Requests per second (open loop: latency counts from when a request was due).
    #[arg(long)]
    rate: Option<u64>,
    /// Distinct contacts the messages come from.
    #[arg(long, default_value_t = 500)]
    contacts: u64,
    /// A label for the result.
    #[arg(long, default_value = "run")]
    label: String,
}

#[derive(Serialize)]
struct Report {
    label: String,
    mode: String,
    duration_s: f64,
    requests: u64,
    ok: u64,
    errors: u64,
    throughput_rps: f64,
    latency_ms: Percentiles,
}

#[derive(Serialize)]
struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match cli.command {
            Command::Ingest(args) => {
                let report = ingest(args).await?;
                println!("{}", serde_json::to_string(&report)?);
                Ok(())
            }
            Command::MockProvider { listen } => mock_provider(&listen).await,
        }
    })
}

/// A realistic Twilio WhatsApp inbound form (about 700 bytes), signed.
fn webhook(seq: u64, contacts: u64, token: &str, sign_url: &str) -> (String, String) {
    let sid = format!("SM{:016x}{:016x}", rand::random::<u64>(), seq);
    let contact = 14155550000 + seq % contacts.max(1);
    let text = if seq.is_multiple_of(2) {
        format!(
            "Hi! What is the price of the annual plan for a team of {} people, and do you offer a discount for nonprofits? Thanks a lot.",
            3 + seq % 40
        )
    } else {
        format!(
            "Hello, can you tell me your support hours on weekends and whether order #{:05} has shipped already? Thank you so much.",
            1000 + seq % 90000
        )
    };
    let params: Vec<(String, String)> = [
        ("SmsMessageSid", sid.as_str()),
        ("NumMedia", "0"),
        ("ProfileName", "Ada Lovelace"),
        ("MessageType", "text"),
        ("SmsSid", sid.as_str()),
        ("WaId", &contact.to_string()),
        ("SmsStatus", "received"),
        ("Body", text.as_str()),
        ("To", "whatsapp:+14155238886"),
        ("NumSegments", "1"),
        ("ReferralNumMedia", "0"),
        ("MessageSid", sid.as_str()),
        ("AccountSid", "AC0000000000000000000000000000acc0"),
        ("From", &format!("whatsapp:+{contact}")),
        (
            "ChannelMetadata",
            r#"{"type":"whatsapp","data":{"context":{"ProfileName":"Ada Lovelace","WaId":"14155550100"}}}"#,
        ),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let signature = integro_channels::twilio::sign(token, sign_url, &params);
    let body = form_body(&params);
    (body, signature)
}

fn form_body(params: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&encode(k));
        out.push('=');
        out.push_str(&encode(v));
    }
    out
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

struct Shared {
    args: IngestArgs,
    sign_url: String,
    client: reqwest::Client,
    seq: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
}

async fn post(shared: &Shared) -> bool {
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
    let (body, signature) = webhook(
        seq,
        shared.args.contacts,
        &shared.args.token,
        &shared.sign_url,
    );
    let res = shared
        .client
        .post(&shared.args.url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", signature)
        .body(body)
        .send()
        .await;
    let ok = matches!(res, Ok(r) if r.status().is_success());
    if ok {
        shared.ok.fetch_add(1, Ordering::Relaxed);
    } else {
        shared.errors.fetch_add(1, Ordering::Relaxed);
    }
    ok
}

async fn ingest(args: IngestArgs) -> anyhow::Result<Report> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(64))
        .timeout(Duration::from_secs(10))
        .build()?;
    let shared = Arc::new(Shared {
        sign_url: args.sign_url.clone().unwrap_or_else(|| args.url.clone()),
        args: args.clone(),
        client,
        seq: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    // Warm-up: connections open, caches fill; not measured.
    run_phase(&shared, Duration::from_secs(2)).await;
    shared.ok.store(0, Ordering::Relaxed);
    shared.errors.store(0, Ordering::Relaxed);
    let started = Instant::now();
    let mut latencies = run_phase(&shared, Duration::from_secs(args.duration)).await;
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i] as f64 / 1000.0
    };
    let ok = shared.ok.load(Ordering::Relaxed);
    let errors = shared.errors.load(Ordering::Relaxed);
    Ok(Report {
        label: args.label.clone(),
        mode: match args.rate {
            Some(r) => format!("rate {r}/s"),
            None => format!("concurrency {}", args.concurrency),
        },
        duration_s: elapsed,
        requests: ok + errors,
        ok,
        errors,
        throughput_rps: ok as f64 / elapsed,
        latency_ms: Percentiles {
            p50: pct(0.50),
            p90: pct(0.90),
            p99: pct(0.99),
            p999: pct(0.999),
            max: latencies.last().map(|l| *l as f64 / 1000.0).unwrap_or(0.0),
        },
    })
}

/// Runs for `length`; returns each request's latency in microseconds.
async fn run_phase(shared: &Arc<Shared>, length: Duration) -> Vec<u64> {
    let deadline = Instant::now() + length;
    match shared.args.rate {
        None => {
            let tasks: Vec<_> = (0..shared.args.concurrency)
                .map(|_| {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let mut lat = Vec::new();
                        while Instant::now() < deadline {
                            let t = Instant::now();
                            post(&shared).await;
                            lat.push(t.elapsed().as_micros() as u64);
                        }
                        lat
                    })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap_or_default());
            }
            all
        }
        Some(rate) => {
            let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let start = Instant::now();
            let mut n: u64 = 0;
            loop {
                // Latency counts from when the request was due, not when it left:
                // a stalled server cannot hide its queue (no coordinated omission).
                let due = start + interval.mul_f64(n as f64);
                if due >= deadline {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let (shared, tx) = (shared.clone(), tx.clone());
                tokio::spawn(async move {
                    post(&shared).await;
                    let _ = tx.send(due.elapsed().as_micros() as u64);
                });
                n += 1;
            }
            drop(tx);
            let mut all = Vec::new();
            while let Some(l) = rx.recv().await {
                all.push(l);
            }
            all
        }
    }
}

async fn mock_provider(listen: &str) -> anyhow::Result<()> {
    use axum::routing::{get, post};
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let app = axum::Router::new()
        .route(
            "/2010-04-01/Accounts/{sid}/Messages.json",
            post(move || {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                async move {
                    (
                        axum::http::StatusCode::CREATED,
                        [("content-type", "application/json")],
                        format!(r#"{{"sid":"SMmock{n:024}","status":"queued"}}"#),
                    )
                }
            }),
        )
        .route(
            "/count",
            get(move || async move { sent.load(Ordering::Relaxed).to_string() }),
        );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("mock provider on {listen}");
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_are_signed_realistic_and_unique() {
        let (a, sig) = webhook(1, 500, "tok", "https://h/x");
        let (b, _) = webhook(1, 500, "tok", "https://h/x");
        assert_ne!(a, b, "a new message id every time");
        assert!(
            (600..900).contains(&a.len()),
            "about 700 bytes: {}",
            a.len()
        );
        let params = integro_channels::twilio::parse_form(a.as_bytes());
        assert!(integro_channels::twilio::verify_signature(
            "tok",
            "https://h/x",
            &params,
            &sig
        ));
    }
}
