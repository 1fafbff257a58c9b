//! `integro-bench ingest`: signed Twilio WhatsApp webhooks at maximum
//! concurrency or at a fixed rate; throughput and acknowledgement latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;

use crate::process::{MachineCpu, MachineShares};
use crate::report::Percentiles;
use crate::webhooks::{self, Channel, Inbound};

/// The account `bench/run.sh` registers.
const ACCOUNT_SID: &str = "AC0000000000000000000000000000acc0";
const BOT_NUMBER: &str = "+14155238886";

#[derive(Parser, Clone)]
pub struct IngestArgs {
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
    /// Contacts in a scrambled order instead of one after the other:
    /// consecutive webhooks of real traffic seldom come from neighbouring
    /// numbers, and neighbours share the leaves of any index on the sender.
    #[arg(long)]
    random_contacts: bool,
    /// A label for the result.
    #[arg(long, default_value = "run")]
    label: String,
}

#[derive(Serialize)]
pub struct Report {
    label: String,
    mode: String,
    duration_s: f64,
    requests: u64,
    ok: u64,
    errors: u64,
    throughput_rps: f64,
    latency_ms: Percentiles,
    /// The whole machine over the measured phase (steal: taken by the host).
    machine: Option<MachineShares>,
}

/// A realistic Twilio WhatsApp inbound form (about 700 bytes), signed:
/// the body and the signature.
fn webhook(seq: u64, args: &IngestArgs, sign_url: &str) -> (Vec<u8>, String) {
    let sid = webhooks::message_id(Channel::Twilio);
    let n = if args.random_contacts {
        scramble(seq)
    } else {
        seq
    };
    let contact = 14155550000 + n % args.contacts.max(1);
    let text = webhooks::text(seq);
    let params = webhooks::twilio_params(
        ACCOUNT_SID,
        BOT_NUMBER,
        &Inbound {
            id: &sid,
            from: &format!("+{contact}"),
            name: "Ada Lovelace",
            text: &text,
        },
    );
    let signed = webhooks::twilio_signed(&args.token, sign_url, params);
    (signed.body, signed.signature)
}

/// SplitMix64's finalizer: a fixed permutation of the integers that spreads
/// neighbours apart (the same sequence in every run).
fn scramble(seq: u64) -> u64 {
    let mut z = seq.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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
    let (body, signature) = webhook(seq, &shared.args, &shared.sign_url);
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

pub async fn ingest(args: IngestArgs) -> anyhow::Result<Report> {
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
    let (started, machine_start) = (Instant::now(), MachineCpu::now());
    let mut latencies = run_phase(&shared, Duration::from_secs(args.duration)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let machine = machine_start
        .zip(MachineCpu::now())
        .and_then(|(a, b)| a.shares_until(&b));
    latencies.sort_unstable();
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
        latency_ms: Percentiles::of(&latencies),
        machine,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> IngestArgs {
        let base = ["ingest", "--url", "https://h/x", "--token", "tok"];
        IngestArgs::parse_from(base.iter().chain(extra))
    }

    /// The sender's number of the `seq`th webhook.
    fn sender(seq: u64, args: &IngestArgs) -> String {
        let (body, _) = webhook(seq, args, "https://h/x");
        let params = integro_channels::twilio::parse_form(&body);
        let from = params.iter().find(|(k, _)| k == "From").unwrap();
        from.1.to_string()
    }

    #[test]
    fn webhooks_are_signed_realistic_and_unique() {
        let args = args(&[]);
        let (a, sig) = webhook(1, &args, "https://h/x");
        let (b, _) = webhook(1, &args, "https://h/x");
        assert_ne!(a, b, "a new message id every time");
        assert!(
            (600..900).contains(&a.len()),
            "about 700 bytes: {}",
            a.len()
        );
        let params = integro_channels::twilio::parse_form(&a);
        assert!(integro_channels::twilio::verify_signature(
            "tok",
            "https://h/x",
            &params,
            &sig
        ));
    }

    #[test]
    fn random_contacts_come_in_a_scrambled_but_fixed_order() {
        let (ordered, scrambled) = (args(&[]), args(&["--random-contacts"]));
        let senders = |a: &IngestArgs| (0..20).map(|n| sender(n, a)).collect::<Vec<_>>();
        let in_order = senders(&ordered);
        assert_eq!(in_order[0], "whatsapp:+14155550000");
        assert_eq!(in_order[1], "whatsapp:+14155550001");
        let random = senders(&scrambled);
        assert_ne!(random, in_order);
        assert_eq!(random, senders(&scrambled), "the same order in every run");
        assert!(random.iter().all(|s| {
            let n: u64 = s.trim_start_matches("whatsapp:+").parse().unwrap();
            (14155550000..14155550500).contains(&n)
        }));
    }
}
