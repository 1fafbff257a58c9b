//! Usage: messages in and out per day and channel, hand-off rate, bot reply
//! time, LLM calls, tokens, failures and latency, and delivery failures by
//! provider code, over a date range, as charts drawn on the server
//! (`chart.rs`). The figures are the API's (`/api/v1/usage/daily`).

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Query, State};
use integro_store::message_stats::{DayStats, Figures};
use integro_store::usage::LlmDay;
use serde::Deserialize;
use uuid::Uuid;

use super::chart::{Chart, Series};
use super::inbox::tenant_accounts;
use super::page::{Layout, PageResult, render, when};
use super::session::Acting;
use crate::api;
use crate::api::usage::DailyUsageParams;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct RangeQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

/// A headline figure.
pub struct Figure {
    pub label: &'static str,
    pub value: String,
}

/// A channel account's totals over the range.
pub struct ChannelRow {
    pub name: String,
    pub kind: String,
    pub inbound: i64,
    pub outbound: i64,
    pub handoffs: i64,
    pub failures: i64,
}

pub struct FailureRow {
    pub account: String,
    pub code: String,
    pub failures: i64,
}

#[derive(Template)]
#[template(path = "usage.html")]
struct UsagePage {
    layout: Layout,
    from: String,
    to: String,
    /// Why the asked range was not used.
    error: Option<String>,
    figures: Vec<Figure>,
    charts: Vec<Chart>,
    channels: Vec<ChannelRow>,
    failures: Vec<FailureRow>,
    counted_until: Option<String>,
}

/// Every day from `from` to `to`, as `YYYY-MM-DD`.
fn days_between(from: &str, to: &str) -> Vec<String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let (Ok(mut day), Ok(last)) = (
        time::Date::parse(from, format),
        time::Date::parse(to, format),
    ) else {
        return Vec::new();
    };
    let mut days = Vec::new();
    while day <= last {
        days.push(day.format(format).expect("a date formats"));
        match day.next_day() {
            Some(next) => day = next,
            None => break,
        }
    }
    days
}

fn percent(part: i64, whole: i64) -> String {
    if whole == 0 {
        "–".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

fn seconds(ms: i64, count: i64) -> String {
    if count == 0 {
        "–".into()
    } else {
        format!("{:.1} s", ms as f64 / count as f64 / 1000.0)
    }
}

/// A row of figures for one day.
trait Dated {
    fn day(&self) -> &str;
}

impl Dated for DayStats {
    fn day(&self) -> &str {
        &self.day
    }
}

impl Dated for LlmDay {
    fn day(&self) -> &str {
        &self.day
    }
}

/// Per day, the sum of `f` over the day's rows.
fn per_day<T: Dated>(days: &[String], rows: &[T], f: impl Fn(&T) -> f64) -> Vec<f64> {
    let mut sums: BTreeMap<&str, f64> = BTreeMap::new();
    for row in rows {
        *sums.entry(row.day()).or_default() += f(row);
    }
    days.iter()
        .map(|d| sums.get(d.as_str()).copied().unwrap_or(0.0))
        .collect()
}

/// A ratio per day (`part / whole × scale`), 0 where `whole` is 0.
fn ratio(part: &[f64], whole: &[f64], scale: f64) -> Vec<f64> {
    part.iter()
        .zip(whole)
        .map(|(p, w)| if *w > 0.0 { p / w * scale } else { 0.0 })
        .collect()
}

pub async fn usage(
    State(state): State<AppState>,
    acting: Acting,
    Query(q): Query<RangeQuery>,
) -> PageResult {
    let asked = api::usage::date_range(Some(q.from.clone()), Some(q.to.clone()));
    let (error, (from, to)) = match asked {
        Ok(range) => (None, range),
        Err(e) => {
            let why = e
                .errors
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message));
            let why = why.collect::<Vec<_>>().join("; ");
            (Some(why), api::usage::date_range(None, None)?)
        }
    };
    let usage = api::usage::get_daily_usage(
        State(state.clone()),
        acting.ctx.clone(),
        Query(DailyUsageParams {
            from: Some(from.clone()),
            to: Some(to.clone()),
        }),
    )
    .await?
    .0;
    let accounts = tenant_accounts(&state, acting.ctx.tenant_id).await?;
    let days = days_between(&from, &to);
    let stats = &usage.days;
    let llm = &usage.llm_days;
    let sum = |f: fn(&Figures) -> i64| stats.iter().map(|s| f(&s.figures)).sum::<i64>();
    let llm_sum = |f: fn(&LlmDay) -> i64| llm.iter().map(f).sum::<i64>();

    let inbound = per_day(&days, stats, |s| s.figures.inbound as f64);
    let bot = per_day(&days, stats, |s| s.figures.outbound_bot as f64);
    let human = per_day(&days, stats, |s| s.figures.outbound_human as f64);
    let conversations = per_day(&days, stats, |s| s.figures.conversations as f64);
    let handoffs = per_day(&days, stats, |s| s.figures.handoffs as f64);
    let replies = per_day(&days, stats, |s| s.figures.replies as f64);
    let reply_ms = per_day(&days, stats, |s| s.figures.reply_ms as f64);
    let calls = per_day(&days, llm, |u| u.requests as f64);
    let failed_calls = per_day(&days, llm, |u| u.failed_requests as f64);
    let input_tokens = per_day(&days, llm, |u| u.input_tokens as f64);
    let output_tokens = per_day(&days, llm, |u| u.output_tokens as f64);
    let llm_ms = per_day(&days, llm, |u| u.latency_ms as f64);
    let attempts: Vec<f64> = calls
        .iter()
        .zip(&failed_calls)
        .map(|(a, b)| a + b)
        .collect();

    let failures_total: i64 = usage.failures.iter().map(|f| f.failures).sum();
    let llm_calls = llm_sum(|u| u.requests);
    let llm_failed = llm_sum(|u| u.failed_requests);
    let figures = vec![
        Figure {
            label: "Messages in",
            value: sum(|s| s.inbound).to_string(),
        },
        Figure {
            label: "Messages out",
            value: (sum(|s| s.outbound_bot) + sum(|s| s.outbound_human)).to_string(),
        },
        Figure {
            label: "Conversations",
            value: sum(|s| s.conversations).to_string(),
        },
        Figure {
            label: "Hand-off rate",
            value: percent(sum(|s| s.handoffs), sum(|s| s.conversations)),
        },
        Figure {
            label: "Bot reply time (mean)",
            value: seconds(sum(|s| s.reply_ms), sum(|s| s.replies)),
        },
        Figure {
            label: "LLM calls",
            value: llm_calls.to_string(),
        },
        Figure {
            label: "Tokens",
            value: (llm_sum(|u| u.input_tokens) + llm_sum(|u| u.output_tokens)).to_string(),
        },
        Figure {
            label: "LLM failed attempts",
            value: llm_failed.to_string(),
        },
        Figure {
            label: "LLM latency (mean)",
            value: seconds(llm_sum(|u| u.latency_ms), llm_calls + llm_failed),
        },
        Figure {
            label: "Delivery failures",
            value: failures_total.to_string(),
        },
    ];
    let charts = vec![
        Chart::stacked(
            "messages",
            "Messages per day",
            vec![
                Series {
                    name: "from contacts",
                },
                Series {
                    name: "from the bot",
                },
                Series {
                    name: "from people",
                },
            ],
            &days,
            &[inbound, bot, human],
        ),
        Chart::stacked(
            "handoffs",
            "Hand-off rate per day (% of new conversations)",
            vec![Series {
                name: "hand-off rate %",
            }],
            &days,
            &[ratio(&handoffs, &conversations, 100.0)],
        ),
        Chart::stacked(
            "replies",
            "Bot reply time per day (mean, seconds)",
            vec![Series { name: "seconds" }],
            &days,
            &[ratio(&reply_ms, &replies, 0.001)],
        ),
        Chart::stacked(
            "llm-calls",
            "LLM calls per day",
            vec![
                Series { name: "answered" },
                Series {
                    name: "failed attempts",
                },
            ],
            &days,
            &[calls, failed_calls],
        ),
        Chart::stacked(
            "tokens",
            "LLM tokens per day",
            vec![Series { name: "input" }, Series { name: "output" }],
            &days,
            &[input_tokens, output_tokens],
        ),
        Chart::stacked(
            "llm-latency",
            "LLM latency per day (mean, seconds)",
            vec![Series { name: "seconds" }],
            &days,
            &[ratio(&llm_ms, &attempts, 0.001)],
        ),
    ];

    let name_of = |id: Uuid| {
        accounts
            .iter()
            .find(|a| a.id == id)
            .map(|a| (a.name.clone(), a.kind.as_str().to_string()))
            .unwrap_or_else(|| ("(deleted account)".into(), String::new()))
    };
    let mut by_account: BTreeMap<Uuid, ChannelRow> = BTreeMap::new();
    fn row_of(
        rows: &mut BTreeMap<Uuid, ChannelRow>,
        id: Uuid,
        name_of: impl Fn(Uuid) -> (String, String),
    ) -> &mut ChannelRow {
        rows.entry(id).or_insert_with(|| {
            let (name, kind) = name_of(id);
            ChannelRow {
                name,
                kind,
                inbound: 0,
                outbound: 0,
                handoffs: 0,
                failures: 0,
            }
        })
    }
    for s in &usage.accounts {
        let row = row_of(&mut by_account, s.account_id, name_of);
        row.inbound += s.figures.inbound;
        row.outbound += s.figures.outbound_bot + s.figures.outbound_human;
        row.handoffs += s.figures.handoffs;
    }
    for f in &usage.failures {
        row_of(&mut by_account, f.account_id, name_of).failures += f.failures;
    }
    let mut channels: Vec<ChannelRow> = by_account.into_values().collect();
    channels.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    let failures = usage
        .failures
        .iter()
        .map(|f| FailureRow {
            account: name_of(f.account_id).0,
            code: if f.code.is_empty() {
                "(none given)".into()
            } else {
                f.code.clone()
            },
            failures: f.failures,
        })
        .collect();
    Ok(render(&UsagePage {
        layout: Layout::of(&acting, "Usage", "usage"),
        from,
        to,
        error,
        figures,
        charts,
        channels,
        failures,
        counted_until: usage.counted_until.map(when),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_lists_every_day_across_a_month_end() {
        assert_eq!(
            days_between("2026-11-29", "2026-12-02"),
            ["2026-11-29", "2026-11-30", "2026-12-01", "2026-12-02"]
        );
        assert_eq!(
            days_between("2026-12-02", "2026-12-01"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn rates_say_nothing_rather_than_divide_by_zero() {
        assert_eq!(percent(1, 4), "25.0%");
        assert_eq!(percent(0, 0), "–");
        assert_eq!(seconds(3000, 2), "1.5 s");
        assert_eq!(ratio(&[1.0, 1.0], &[2.0, 0.0], 100.0), vec![50.0, 0.0]);
    }
}
