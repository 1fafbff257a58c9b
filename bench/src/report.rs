//! From what the generator and the mock recorded to figures: replies matched
//! to webhooks, percentiles, a per-second timeline, the targets, and the
//! report's JSON and Markdown.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::mock::Send;
use crate::process::{MachineCpu, MachineShares};
use crate::webhooks::Channel;

/// Nearest-rank percentiles, in milliseconds.
#[derive(Serialize, Clone, Copy, Default, Debug)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// `sorted`: microseconds, ascending.
    pub fn of(sorted: &[u64]) -> Percentiles {
        Percentiles {
            p50: percentile_ms(sorted, 0.50),
            p90: percentile_ms(sorted, 0.90),
            p99: percentile_ms(sorted, 0.99),
            p999: percentile_ms(sorted, 0.999),
            max: sorted.last().map(|l| *l as f64 / 1000.0).unwrap_or(0.0),
        }
    }
}

/// `sorted`: microseconds, ascending; `p` in 0..=1.
pub fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// How a webhook request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: Integro stored it.
    Acked,
    /// Another status: Integro refused it (a provider would deliver again).
    Refused(u16),
    /// No answer in time: Integro may or may not have stored it.
    Timeout,
    /// The connection failed: the same doubt.
    Transport,
}

/// One webhook the generator posted.
#[derive(Clone, Debug)]
pub struct Hook {
    pub channel: Channel,
    /// As [`crate::mock::contact_key`] writes it.
    pub contact: String,
    /// When it was due (open loop: latency counts from here).
    pub due: Instant,
    /// When its answer came (or the request failed).
    pub done: Instant,
    pub outcome: Outcome,
}

/// Which send answered which webhook.
#[derive(Debug, Default)]
pub struct Correlation {
    /// Per webhook (by index): when its reply arrived.
    pub reply_at: Vec<Option<Instant>>,
    /// Acknowledged webhooks that got no reply.
    pub missing: usize,
    /// Sends beyond the webhooks of their contact.
    pub duplicated: usize,
    /// Sends beyond the acknowledged webhooks of their contact that webhooks
    /// without an answer (timeouts) account for: Integro may have stored those.
    pub answered_unacknowledged: usize,
}

/// Matches each send to the oldest unanswered acknowledged webhook of the
/// same contact that was already due. Every reply text is alike (a rule or
/// the fallback), but Integro sends a contact's replies in order, so the
/// order is the match.
pub fn correlate(hooks: &[Hook], sends: &[Send]) -> Correlation {
    let mut acked: Vec<usize> = (0..hooks.len())
        .filter(|&i| hooks[i].outcome == Outcome::Acked)
        .collect();
    acked.sort_by_key(|&i| hooks[i].due);
    let mut queues: HashMap<(Channel, &str), VecDeque<usize>> = HashMap::new();
    for i in acked {
        queues
            .entry((hooks[i].channel, hooks[i].contact.as_str()))
            .or_default()
            .push_back(i);
    }
    let mut doubtful: HashMap<(Channel, &str), usize> = HashMap::new();
    for h in hooks {
        if matches!(h.outcome, Outcome::Timeout | Outcome::Transport) {
            *doubtful.entry((h.channel, h.contact.as_str())).or_default() += 1;
        }
    }
    let mut c = Correlation {
        reply_at: vec![None; hooks.len()],
        ..Correlation::default()
    };
    for s in sends {
        let key = (s.channel, s.to.as_str());
        let queue = queues.get_mut(&key);
        match queue {
            Some(q) if q.front().is_some_and(|&i| hooks[i].due <= s.at) => {
                let i = q.pop_front().unwrap_or_default();
                c.reply_at[i] = Some(s.at);
            }
            _ => match doubtful.get_mut(&key) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    c.answered_unacknowledged += 1;
                }
                _ => c.duplicated += 1,
            },
        }
    }
    c.missing = queues.values().map(VecDeque::len).sum();
    c
}

/// One line per webhook: due (ms from the measured start; negative in the
/// warm-up), ack and reply latency in ms (empty when none), channel, contact.
pub fn latencies_csv(hooks: &[Hook], sends: &[Send], start: Instant) -> String {
    let c = correlate(hooks, sends);
    let ms = |from: Instant, to: Instant| {
        if to >= from {
            to.duration_since(from).as_secs_f64() * 1000.0
        } else {
            -(from.duration_since(to).as_secs_f64() * 1000.0)
        }
    };
    let mut out = String::from("due_ms,ack_ms,reply_ms,channel,contact\n");
    for (hook, reply) in hooks.iter().zip(&c.reply_at) {
        let ack = (hook.outcome == Outcome::Acked).then(|| ms(hook.due, hook.done));
        let reply = reply.map(|at| ms(hook.due, at));
        let cell = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
        out.push_str(&format!(
            "{:.3},{},{},{},{}\n",
            ms(start, hook.due),
            cell(ack),
            cell(reply),
            hook.channel.name(),
            hook.contact
        ));
    }
    out
}

/// Steal from this share on is named under the summary's table.
const STEAL_WORTH_SAYING_PCT: f64 = 5.0;

/// Everything one run recorded.
pub struct Run<'a> {
    pub config: serde_json::Value,
    pub hooks: &'a [Hook],
    pub sends: &'a [Send],
    pub warmup_start: Instant,
    /// The measured window.
    pub start: Instant,
    pub end: Instant,
    /// When the wait for outstanding replies ended.
    pub drained: Instant,
    /// Integro's resident memory every 250 ms (KiB).
    pub rss_samples: &'a [(Instant, u64)],
    /// VmHWM at the end (KiB).
    pub peak_rss_kib: Option<u64>,
    /// Integro's CPU time over the measured window.
    pub cpu_s: Option<f64>,
    /// PostgreSQL's (every process of it) over the measured window.
    pub postgres_cpu_s: Option<f64>,
    /// The whole machine's CPU over the measured window (steal: the host's).
    pub machine: Option<MachineShares>,
    /// The machine's CPU counters every 250 ms, for steal by second.
    pub machine_samples: &'a [(Instant, MachineCpu)],
    pub twilio_lookups: u64,
    pub unexpected_requests: u64,
}

#[derive(Serialize)]
pub struct Report {
    pub config: serde_json::Value,
    pub webhooks: Webhooks,
    pub ack_latency_ms: Percentiles,
    pub e2e_latency_ms: Percentiles,
    pub sends: Sends,
    pub integro: Process,
    /// PostgreSQL's CPU, when it is the database.
    pub postgres: Option<Process>,
    /// The whole machine over the measured window: what else took its CPUs.
    pub machine: Option<MachineShares>,
    pub targets: Vec<Target>,
    pub pass: bool,
    pub timeline: Vec<Second>,
    pub rss_samples: Vec<RssSample>,
}

#[derive(Serialize)]
pub struct Webhooks {
    /// Due in the measured window.
    pub sent: u64,
    pub acked: u64,
    pub acked_per_s: f64,
    pub errors: u64,
    /// Refusals by HTTP status.
    pub refused: BTreeMap<u16, u64>,
    pub timeouts: u64,
    pub transport_errors: u64,
    pub by_channel: BTreeMap<&'static str, ChannelCount>,
}

#[derive(Serialize, Default)]
pub struct ChannelCount {
    pub sent: u64,
    pub acked: u64,
}

#[derive(Serialize)]
pub struct Sends {
    /// Sends that arrived in the measured window.
    pub in_window: u64,
    pub per_s: f64,
    /// Over the whole run (warm-up included).
    pub total: u64,
    pub missing: u64,
    pub duplicated: u64,
    pub answered_unacknowledged: u64,
    /// How long the wait for outstanding replies took.
    pub drain_s: f64,
    pub twilio_lookups: u64,
    pub unexpected_requests: u64,
}

#[derive(Serialize)]
pub struct Process {
    pub peak_rss_mib: Option<f64>,
    pub max_sampled_rss_mib: Option<f64>,
    pub cpu_s: Option<f64>,
    /// CPU time over wall time of the measured window (100 = one core).
    pub cpu_percent: Option<f64>,
    /// CPU time per send in the measured window (ms).
    pub cpu_ms_per_send: Option<f64>,
}

#[derive(Serialize)]
pub struct Target {
    pub name: &'static str,
    pub limit: String,
    pub value: String,
    pub pass: bool,
}

/// One second of the run, counted from the start of the measured window
/// (negative: warm-up).
#[derive(Serialize, Clone)]
pub struct Second {
    pub second: i64,
    /// Acknowledgements that came in this second.
    pub webhooks_acked: u64,
    pub errors: u64,
    /// Sends the mock received in this second.
    pub sends: u64,
    /// p99 end-to-end latency of the webhooks due in this second.
    pub e2e_p99_ms: Option<f64>,
    /// p99 acknowledgement latency of the webhooks due in this second: a
    /// slow second here is ingest's; slow end to end alone is the worker's.
    pub ack_p99_ms: Option<f64>,
    /// Share of the machine's CPU time the host gave to others (steal).
    pub steal_pct: Option<f64>,
}

#[derive(Serialize)]
pub struct RssSample {
    pub t_s: f64,
    pub rss_mib: f64,
}

/// The latencies behind the percentiles, sorted (µs), for the picture.
pub struct Latencies {
    pub ack: Vec<u64>,
    pub e2e: Vec<u64>,
}

const MIB: f64 = 1024.0;

fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

pub fn analyze(run: &Run) -> (Report, Latencies) {
    let window = run.end.saturating_duration_since(run.start).as_secs_f64();
    let measured = |h: &Hook| h.due >= run.start && h.due < run.end;
    let relative = |t: Instant| -> f64 {
        if t >= run.start {
            (t - run.start).as_secs_f64()
        } else {
            -(run.start - t).as_secs_f64()
        }
    };
    let c = correlate(run.hooks, run.sends);

    let mut w = Webhooks {
        sent: 0,
        acked: 0,
        acked_per_s: 0.0,
        errors: 0,
        refused: BTreeMap::new(),
        timeouts: 0,
        transport_errors: 0,
        by_channel: BTreeMap::new(),
    };
    let (mut ack, mut e2e) = (Vec::new(), Vec::new());
    for (i, h) in run.hooks.iter().enumerate().filter(|(_, h)| measured(h)) {
        w.sent += 1;
        let per_channel = w.by_channel.entry(h.channel.name()).or_default();
        per_channel.sent += 1;
        match h.outcome {
            Outcome::Acked => {
                w.acked += 1;
                per_channel.acked += 1;
            }
            Outcome::Refused(status) => *w.refused.entry(status).or_default() += 1,
            Outcome::Timeout => w.timeouts += 1,
            Outcome::Transport => w.transport_errors += 1,
        }
        ack.push(micros(h.done.saturating_duration_since(h.due)));
        if let Some(at) = c.reply_at[i] {
            e2e.push(micros(at.saturating_duration_since(h.due)));
        }
    }
    w.errors = w.sent - w.acked;
    w.acked_per_s = w.acked as f64 / window.max(1e-9);
    ack.sort_unstable();
    e2e.sort_unstable();

    let in_window = run
        .sends
        .iter()
        .filter(|s| s.at >= run.start && s.at < run.end)
        .count() as u64;
    let sends = Sends {
        in_window,
        per_s: in_window as f64 / window.max(1e-9),
        total: run.sends.len() as u64,
        missing: c.missing as u64,
        duplicated: c.duplicated as u64,
        answered_unacknowledged: c.answered_unacknowledged as u64,
        drain_s: run.drained.saturating_duration_since(run.end).as_secs_f64(),
        twilio_lookups: run.twilio_lookups,
        unexpected_requests: run.unexpected_requests,
    };

    // The timeline: from the warm-up to the last thing that happened.
    let first = relative(run.warmup_start).floor() as i64;
    let last_event = run
        .hooks
        .iter()
        .map(|h| h.done)
        .chain(run.sends.iter().map(|s| s.at))
        .chain(std::iter::once(run.drained))
        .max()
        .unwrap_or(run.end);
    let last = relative(last_event).floor() as i64;
    let mut timeline: Vec<Second> = (first..=last)
        .map(|second| Second {
            second,
            webhooks_acked: 0,
            errors: 0,
            sends: 0,
            e2e_p99_ms: None,
            ack_p99_ms: None,
            steal_pct: None,
        })
        .collect();
    let slot = |t: Instant| -> usize {
        (relative(t).floor() as i64 - first).clamp(0, last - first) as usize
    };
    let mut e2e_by_second: Vec<Vec<u64>> = vec![Vec::new(); timeline.len()];
    let mut ack_by_second: Vec<Vec<u64>> = vec![Vec::new(); timeline.len()];
    for (i, h) in run.hooks.iter().enumerate() {
        if h.outcome == Outcome::Acked {
            timeline[slot(h.done)].webhooks_acked += 1;
            ack_by_second[slot(h.due)].push(micros(h.done.saturating_duration_since(h.due)));
        } else {
            timeline[slot(h.done)].errors += 1;
        }
        if let Some(at) = c.reply_at[i] {
            e2e_by_second[slot(h.due)].push(micros(at.saturating_duration_since(h.due)));
        }
    }
    for s in run.sends {
        timeline[slot(s.at)].sends += 1;
    }
    let p99_ms = |mut lat: Vec<u64>| {
        lat.sort_unstable();
        (!lat.is_empty()).then(|| percentile_ms(&lat, 0.99))
    };
    for ((second, e2e), ack) in timeline.iter_mut().zip(e2e_by_second).zip(ack_by_second) {
        second.e2e_p99_ms = p99_ms(e2e);
        second.ack_p99_ms = p99_ms(ack);
    }
    // Each stretch between two samples of the machine's counters counts in
    // the second it ends in.
    let mut machine_by_second = vec![MachineCpu::default(); timeline.len()];
    for pair in run.machine_samples.windows(2) {
        let ((_, a), (t, b)) = (pair[0], pair[1]);
        machine_by_second[slot(t)] += b.spent_since(&a);
    }
    for (second, spent) in timeline.iter_mut().zip(machine_by_second) {
        second.steal_pct = spent.shares().map(|s| s.steal_pct);
    }

    let in_measure = |t: Instant| t >= run.start && t < run.end;
    let max_sampled = run
        .rss_samples
        .iter()
        .filter(|(t, _)| in_measure(*t))
        .map(|(_, kib)| *kib)
        .max();
    let per_send = |cpu_s: Option<f64>| {
        cpu_s
            .filter(|_| in_window > 0)
            .map(|s| 1000.0 * s / in_window as f64)
    };
    let integro = Process {
        peak_rss_mib: run.peak_rss_kib.map(|k| k as f64 / MIB),
        max_sampled_rss_mib: max_sampled.map(|k| k as f64 / MIB),
        cpu_s: run.cpu_s,
        cpu_percent: run.cpu_s.map(|s| 100.0 * s / window.max(1e-9)),
        cpu_ms_per_send: per_send(run.cpu_s),
    };
    let postgres = run.postgres_cpu_s.map(|s| Process {
        peak_rss_mib: None,
        max_sampled_rss_mib: None,
        cpu_s: Some(s),
        cpu_percent: Some(100.0 * s / window.max(1e-9)),
        cpu_ms_per_send: per_send(Some(s)),
    });

    let ack_p = Percentiles::of(&ack);
    let e2e_p = Percentiles::of(&e2e);
    let problems = w.errors + sends.missing + sends.duplicated;
    let answered = !e2e.is_empty();
    let targets = vec![
        Target {
            name: "e2e p50",
            limit: "< 15 ms".into(),
            value: format!("{:.1} ms", e2e_p.p50),
            pass: answered && e2e_p.p50 < 15.0,
        },
        Target {
            name: "e2e p99",
            limit: "< 50 ms".into(),
            value: format!("{:.1} ms", e2e_p.p99),
            pass: answered && e2e_p.p99 < 50.0,
        },
        Target {
            name: "no error (webhook errors + missing + duplicated sends)",
            limit: "0".into(),
            value: problems.to_string(),
            pass: answered && problems == 0,
        },
        Target {
            name: "peak RSS",
            limit: "< 64 MiB".into(),
            value: integro
                .peak_rss_mib
                .map(|m| format!("{m:.1} MiB"))
                .unwrap_or_else(|| "unknown".into()),
            pass: integro.peak_rss_mib.is_some_and(|m| m < 64.0),
        },
    ];
    let report = Report {
        config: run.config.clone(),
        webhooks: w,
        ack_latency_ms: ack_p,
        e2e_latency_ms: e2e_p,
        sends,
        integro,
        postgres,
        machine: run.machine,
        pass: targets.iter().all(|t| t.pass),
        targets,
        timeline,
        rss_samples: run
            .rss_samples
            .iter()
            .map(|(t, kib)| RssSample {
                t_s: (relative(*t) * 1000.0).round() / 1000.0,
                rss_mib: *kib as f64 / MIB,
            })
            .collect(),
    };
    (report, Latencies { ack, e2e })
}

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "FAIL" }
}

fn or_unknown(v: Option<f64>, unit: &str) -> String {
    v.map(|v| format!("{v:.1}{unit}"))
        .unwrap_or_else(|| "unknown".into())
}

/// The short Markdown summary.
pub fn markdown(r: &Report) -> String {
    let cfg = &r.config;
    let w = &r.webhooks;
    let target = |name: &str| r.targets.iter().find(|t| t.name.starts_with(name));
    let check = |name: &str| {
        target(name)
            .map(|t| format!("{} {}", t.limit, verdict(t.pass)))
            .unwrap_or_default()
    };
    let mut errors = vec![];
    for (status, n) in &w.refused {
        errors.push(format!("{n} × HTTP {status}"));
    }
    if w.timeouts > 0 {
        errors.push(format!("{} timeouts", w.timeouts));
    }
    if w.transport_errors > 0 {
        errors.push(format!("{} connection errors", w.transport_errors));
    }
    let rows: Vec<(String, String, String)> = vec![
        (
            "rate".into(),
            format!("{}/s ({})", cfg["rate"], cfg["mix"].as_str().unwrap_or("")),
            String::new(),
        ),
        (
            "duration".into(),
            format!(
                "{} s (after {} s of warm-up), {}",
                cfg["duration_s"],
                cfg["warmup_s"],
                cfg["database"].as_str().unwrap_or("")
            ),
            String::new(),
        ),
        (
            "webhooks acked".into(),
            format!("{} of {} ({:.0}/s)", w.acked, w.sent, w.acked_per_s),
            String::new(),
        ),
        (
            "webhook errors".into(),
            if errors.is_empty() {
                "0".into()
            } else {
                format!("{} ({})", w.errors, errors.join(", "))
            },
            String::new(),
        ),
        (
            "ack p50 / p99".into(),
            format!(
                "{:.1} / {:.1} ms",
                r.ack_latency_ms.p50, r.ack_latency_ms.p99
            ),
            String::new(),
        ),
        (
            "e2e p50".into(),
            format!("{:.1} ms", r.e2e_latency_ms.p50),
            check("e2e p50"),
        ),
        (
            "e2e p90".into(),
            format!("{:.1} ms", r.e2e_latency_ms.p90),
            String::new(),
        ),
        (
            "e2e p99".into(),
            format!("{:.1} ms", r.e2e_latency_ms.p99),
            check("e2e p99"),
        ),
        (
            "e2e p99.9 / max".into(),
            format!(
                "{:.1} / {:.1} ms",
                r.e2e_latency_ms.p999, r.e2e_latency_ms.max
            ),
            String::new(),
        ),
        (
            "sends/s".into(),
            format!("{:.0}", r.sends.per_s),
            String::new(),
        ),
        (
            "missing sends".into(),
            r.sends.missing.to_string(),
            String::new(),
        ),
        (
            "duplicated sends".into(),
            r.sends.duplicated.to_string(),
            String::new(),
        ),
        (
            "no error".into(),
            target("no error")
                .map(|t| t.value.clone())
                .unwrap_or_default(),
            check("no error"),
        ),
        (
            "peak RSS (VmHWM)".into(),
            or_unknown(r.integro.peak_rss_mib, " MiB"),
            check("peak RSS"),
        ),
        (
            "CPU".into(),
            format!(
                "{} ({} of one core), {} per send",
                or_unknown(r.integro.cpu_s, " s"),
                or_unknown(r.integro.cpu_percent, "%"),
                or_unknown(r.integro.cpu_ms_per_send, " ms")
            ),
            String::new(),
        ),
        (
            "PostgreSQL's CPU".into(),
            r.postgres.as_ref().map_or("—".into(), |p| {
                format!(
                    "{} ({} of one core), {} per send",
                    or_unknown(p.cpu_s, " s"),
                    or_unknown(p.cpu_percent, "%"),
                    or_unknown(p.cpu_ms_per_send, " ms")
                )
            }),
            String::new(),
        ),
        (
            "the machine's CPUs: busy / idle / iowait / taken by the host (steal)".into(),
            r.machine.map_or("unknown".into(), |m| {
                format!(
                    "{:.0}% / {:.0}% / {:.0}% / {:.0}%",
                    m.busy_pct, m.idle_pct, m.iowait_pct, m.steal_pct
                )
            }),
            String::new(),
        ),
    ];
    let mut out = String::new();
    let _ = writeln!(out, "# End to end: {}\n", verdict(r.pass));
    let _ = writeln!(out, "| figure | value | target |\n|---|---|---|");
    for (name, value, target) in rows {
        let _ = writeln!(out, "| {name} | {value} | {target} |");
    }
    let _ = writeln!(
        out,
        "\nLatencies count from when a webhook was due (open loop). e2e: due → the mock \
         provider received the reply. Missing and duplicated count the whole run, warm-up included."
    );
    if let Some(m) = r.machine.filter(|m| m.steal_pct >= STEAL_WORTH_SAYING_PCT) {
        let _ = writeln!(
            out,
            "\nThe host took {:.0}% of this virtual machine's CPU time during the measure \
             (steal): the run measured a smaller machine than its cores say. The seconds \
             in `e2e.json` (`timeline`, `steal_pct`) show when.",
            m.steal_pct
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    fn hook(base: Instant, contact: &str, due_ms: u64, outcome: Outcome) -> Hook {
        Hook {
            channel: Channel::Twilio,
            contact: contact.into(),
            due: at(base, due_ms),
            done: at(base, due_ms + 2),
            outcome,
        }
    }

    fn send(base: Instant, to: &str, ms: u64) -> Send {
        Send {
            at: at(base, ms),
            channel: Channel::Twilio,
            to: to.into(),
        }
    }

    #[test]
    fn replies_match_the_oldest_unanswered_webhook_of_their_contact() {
        let t = Instant::now();
        let hooks = vec![
            hook(t, "a", 0, Outcome::Acked),
            hook(t, "b", 1, Outcome::Acked),
            hook(t, "a", 5, Outcome::Acked),
            hook(t, "c", 6, Outcome::Acked), // never answered
        ];
        let sends = vec![
            send(t, "b", 8),
            send(t, "a", 10),
            send(t, "a", 20),
            send(t, "a", 21), // a third reply to two webhooks
        ];
        let c = correlate(&hooks, &sends);
        assert_eq!(
            c.reply_at,
            vec![Some(at(t, 10)), Some(at(t, 8)), Some(at(t, 20)), None]
        );
        assert_eq!(
            (c.missing, c.duplicated, c.answered_unacknowledged),
            (1, 1, 0)
        );
    }

    #[test]
    fn a_send_before_its_webhook_was_due_is_a_duplicate_and_timeouts_absorb_extra_sends() {
        let t = Instant::now();
        let hooks = vec![
            hook(t, "a", 0, Outcome::Acked),
            hook(t, "a", 100, Outcome::Acked),
            hook(t, "b", 0, Outcome::Timeout),
            hook(t, "c", 0, Outcome::Refused(503)),
        ];
        let sends = vec![
            send(t, "a", 10),
            send(t, "a", 20), // the first one again, before the second was even posted
            send(t, "a", 110),
            send(t, "b", 5), // the timed-out webhook had been stored after all
            send(t, "c", 5), // a refused webhook is never answered: a duplicate
        ];
        let c = correlate(&hooks, &sends);
        assert_eq!(c.reply_at[0], Some(at(t, 10)));
        assert_eq!(c.reply_at[1], Some(at(t, 110)));
        assert_eq!(
            (c.missing, c.duplicated, c.answered_unacknowledged),
            (0, 2, 1)
        );
    }

    #[test]
    fn analysis_counts_the_window_and_judges_the_targets() {
        let t = Instant::now();
        let start = at(t, 1000);
        let hooks: Vec<Hook> = (0..100)
            .map(|i| hook(t, &format!("c{}", i % 7), 500 + i * 20, Outcome::Acked))
            .collect();
        let sends: Vec<Send> = hooks
            .iter()
            .map(|h| Send {
                at: h.due + Duration::from_millis(4),
                channel: h.channel,
                to: h.contact.clone(),
            })
            .collect();
        let samples = vec![(at(t, 1500), 40 * 1024)];
        let run = Run {
            config: serde_json::json!({"rate": 50, "mix": "twilio=100", "duration_s": 1, "warmup_s": 0.5, "database": "sqlite"}),
            hooks: &hooks,
            sends: &sends,
            warmup_start: at(t, 500),
            start,
            end: at(t, 2000),
            drained: at(t, 2600),
            rss_samples: &samples,
            peak_rss_kib: Some(50 * 1024),
            cpu_s: Some(0.5),
            postgres_cpu_s: None,
            machine: None,
            machine_samples: &[],
            twilio_lookups: 0,
            unexpected_requests: 0,
        };
        let (r, lat) = analyze(&run);
        assert_eq!((r.webhooks.sent, r.webhooks.acked), (50, 50));
        assert_eq!(lat.e2e.len(), 50);
        assert!((r.e2e_latency_ms.p50 - 4.0).abs() < 0.01);
        assert!((r.ack_latency_ms.p99 - 2.0).abs() < 0.01);
        assert_eq!(r.sends.in_window, 50);
        assert_eq!((r.sends.missing, r.sends.duplicated), (0, 0));
        assert_eq!(r.timeline.first().map(|s| s.second), Some(-1));
        assert_eq!(
            r.timeline.iter().map(|s| s.webhooks_acked).sum::<u64>(),
            100
        );
        assert!(r.pass, "{}", markdown(&r));
        assert!(markdown(&r).contains("| e2e p99 | 4.0 ms | < 50 ms PASS |"));
        assert!(!markdown(&r).contains("The host took"));
    }

    #[test]
    fn the_host_s_share_of_the_cpus_is_shown_by_second_and_named_when_large() {
        let t = Instant::now();
        let hooks = vec![hook(t, "c", 1100, Outcome::Acked)];
        let counters = |busy, steal| MachineCpu {
            busy,
            idle: 0,
            iowait: 0,
            steal,
        };
        // Second 0 (from 1000 ms): 60 ticks busy and 40 stolen; second 1: none stolen.
        let samples = [
            (at(t, 1100), counters(100, 10)),
            (at(t, 1600), counters(160, 50)),
            (at(t, 2200), counters(260, 50)),
        ];
        let run = Run {
            config: serde_json::json!({"rate": 1, "duration_s": 2, "database": "sqlite"}),
            hooks: &hooks,
            sends: &[],
            warmup_start: at(t, 1000),
            start: at(t, 1000),
            end: at(t, 3000),
            drained: at(t, 3000),
            rss_samples: &[],
            peak_rss_kib: None,
            cpu_s: None,
            postgres_cpu_s: None,
            machine: counters(100, 10).shares_until(&counters(260, 50)),
            machine_samples: &samples,
            twilio_lookups: 0,
            unexpected_requests: 0,
        };
        let (r, _) = analyze(&run);
        let steal: Vec<_> = r.timeline.iter().map(|s| (s.second, s.steal_pct)).collect();
        assert_eq!(steal, [(0, Some(40.0)), (1, Some(0.0)), (2, None)]);
        let summary = markdown(&r);
        assert!(summary.contains("| 80% / 0% / 0% / 20% |"), "{summary}");
        assert!(summary.contains("The host took 20%"), "{summary}");
    }
}
