//! `e2e.svg`: latency by percentile (end to end and acknowledgement) beside
//! webhooks and replies per second.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::{Latencies, Report, percentile_ms};

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn = Result<(), DrawingAreaErrorKind<std::io::Error>>;

const E2E: RGBColor = RGBColor(31, 119, 180);
const ACK: RGBColor = RGBColor(214, 39, 40);
const SENDS: RGBColor = RGBColor(44, 160, 44);

/// The picture, as SVG text.
pub fn svg(report: &Report, latencies: &Latencies) -> anyhow::Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1280, 520)).into_drawing_area();
        let drawn = (|| -> Drawn {
            root.fill(&WHITE)?;
            let (left, right) = root.split_horizontally(640);
            latency(&left, latencies)?;
            throughput(&right, report)?;
            root.present()
        })();
        drawn.map_err(|e| anyhow::anyhow!("drawing e2e.svg: {e}"))?;
    }
    Ok(out)
}

/// Percentiles on an axis of "nines" (x = -log10(1 - p)): p0, p90, p99
/// and p99.9 are evenly spaced, so the tail gets the room it deserves.
fn latency(area: &Area, l: &Latencies) -> Drawn {
    let steps = 300;
    let curve = |sorted: &[u64]| -> Vec<(f64, f64)> {
        if sorted.is_empty() {
            return Vec::new();
        }
        (0..=steps)
            .map(|i| {
                let x = 3.0 * i as f64 / steps as f64;
                (x, percentile_ms(sorted, 1.0 - 10f64.powf(-x)))
            })
            .collect()
    };
    let (e2e, ack) = (curve(&l.e2e), curve(&l.ack));
    let values = || e2e.iter().chain(&ack).map(|(_, y)| *y);
    let low = values().fold(f64::INFINITY, f64::min).clamp(0.01, 1.0) * 0.8;
    let high = values().fold(1.0, f64::max) * 1.5;
    let mut chart = ChartBuilder::on(area)
        .caption("Latency by percentile", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..3.0, (low..high).log_scale())?;
    chart
        .configure_mesh()
        // At most 4 labels over 0..3: the whole nines, p0 to p99.9.
        .x_labels(4)
        // Enough for a line at 1…9 of each decade over two decades (fewer
        // decades' worth falls back to powers of ten); labelled 1, 2, 5.
        .y_labels(20)
        .light_line_style(TRANSPARENT)
        .x_desc("percentile")
        .y_desc("ms (log scale)")
        .x_label_formatter(&|x| {
            let p = 100.0 * (1.0 - 10f64.powf(-x));
            if (p - p.round()).abs() < 0.05 {
                format!("p{p:.0}")
            } else {
                format!("p{p:.1}")
            }
        })
        .y_label_formatter(&|y| {
            let mantissa = y / 10f64.powf(y.log10().floor());
            if [1.0, 2.0, 5.0, 10.0]
                .iter()
                .any(|m| (mantissa - m).abs() < 0.01)
            {
                let text = format!("{y:.2}");
                text.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                String::new()
            }
        })
        .draw()?;
    let clamp = |points: Vec<(f64, f64)>| points.into_iter().map(move |(x, y)| (x, y.max(low)));
    chart
        .draw_series(LineSeries::new(clamp(e2e), E2E.stroke_width(2)))?
        .label("end to end (due → provider send)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], E2E.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(clamp(ack), ACK.stroke_width(2)))?
        .label("webhook acknowledged")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], ACK.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}

/// Webhooks acknowledged and replies received per second; the measured
/// window is shaded.
fn throughput(area: &Area, r: &Report) -> Drawn {
    let first = r.timeline.first().map(|s| s.second).unwrap_or(0) as f64;
    let last = r.timeline.last().map(|s| s.second + 1).unwrap_or(1) as f64;
    let top = r
        .timeline
        .iter()
        .map(|s| s.webhooks_acked.max(s.sends))
        .max()
        .unwrap_or(0)
        .max(10) as f64
        * 1.15;
    let window = r.config["duration_s"].as_f64().unwrap_or(0.0);
    let mut chart = ChartBuilder::on(area)
        .caption("Throughput", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(first..last.max(first + 1.0), 0.0..top)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("seconds (0 = start of the measured window)")
        .y_desc("per second")
        // Whole seconds only (a short run gets ticks every half second).
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-6 {
                format!("{}", x.round() as i64)
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    chart.draw_series(std::iter::once(Rectangle::new(
        [(0.0, 0.0), (window, top)],
        BLACK.mix(0.06).filled(),
    )))?;
    // Each second's count is drawn at its middle.
    let series = |f: fn(&crate::report::Second) -> u64| {
        r.timeline
            .iter()
            .map(move |s| (s.second as f64 + 0.5, f(s) as f64))
            .collect::<Vec<_>>()
    };
    chart
        .draw_series(LineSeries::new(
            series(|s| s.webhooks_acked),
            E2E.stroke_width(2),
        ))?
        .label("webhooks acknowledged/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], E2E.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(series(|s| s.sends), SENDS.stroke_width(2)))?
        .label("replies sent/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], SENDS.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::report::{Hook, Outcome, Run, analyze};
    use crate::webhooks::Channel;

    fn picture(hooks: &[Hook]) -> String {
        let t = Instant::now();
        let sends: Vec<crate::mock::Send> = hooks
            .iter()
            .map(|h| crate::mock::Send {
                at: h.done + Duration::from_millis(3),
                channel: h.channel,
                to: h.contact.clone(),
            })
            .collect();
        let (report, latencies) = analyze(&Run {
            config: serde_json::json!({"duration_s": 2}),
            hooks,
            sends: &sends,
            warmup_start: t,
            start: t + Duration::from_secs(1),
            end: t + Duration::from_secs(3),
            drained: t + Duration::from_secs(4),
            rss_samples: &[],
            peak_rss_kib: None,
            cpu_s: None,
            postgres_cpu_s: None,
            machine: None,
            machine_samples: &[],
            twilio_lookups: 0,
            unexpected_requests: 0,
        });
        svg(&report, &latencies).unwrap()
    }

    #[test]
    fn draws_with_and_without_data() {
        let t = Instant::now();
        let hooks: Vec<Hook> = (0..300u64)
            .map(|i| Hook {
                channel: Channel::Whatsapp,
                contact: format!("{}", i % 13),
                due: t + Duration::from_millis(i * 10),
                done: t + Duration::from_micros(i * 10_000 + 1_000 + (i * 7919) % 9_000),
                outcome: Outcome::Acked,
            })
            .collect();
        let full = picture(&hooks);
        assert!(full.starts_with("<svg") && full.contains("Latency by percentile"));
        assert!(picture(&[]).contains("Throughput"));
    }
}
