//! Bar charts drawn on the server as SVG (`templates/chart.html`): one
//! column per day, each series stacked on the one before. The figures are
//! also given as a table beside the drawing, for screen readers and for
//! copying.

/// A chart's drawing area, in SVG user units (the SVG scales to its box).
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 200.0;
/// Room for the axis labels: left of the bars and below them.
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 8.0;

pub struct Series {
    pub name: &'static str,
}

pub struct Rect {
    pub x: String,
    pub y: String,
    pub width: String,
    pub height: String,
    /// The series' colour (`s0`, `s1`, …).
    pub class: String,
    /// Shown on hover: the day, the series and the value.
    pub title: String,
}

pub struct Label {
    pub x: String,
    pub y: String,
    pub text: String,
}

pub struct Chart {
    /// Unique on the page: names the title the SVG is labelled by.
    pub id: &'static str,
    pub title: &'static str,
    pub series: Vec<(Series, String)>,
    pub rects: Vec<Rect>,
    pub x_labels: Vec<Label>,
    pub y_labels: Vec<Label>,
    pub grid: Vec<String>,
    pub width: f64,
    pub height: f64,
    pub left: f64,
    /// The data table: the days, then each series' values on that day.
    pub rows: Vec<(String, Vec<String>)>,
}

/// The smallest 1, 2 or 5 × 10ⁿ at least `v`: an axis maximum people read.
fn round_up(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|m| *m >= v)
        .unwrap_or(10.0 * magnitude)
}

/// A value as the axis and table show it: whole numbers, or one decimal.
fn show(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

fn at(v: f64) -> String {
    format!("{v:.1}")
}

impl Chart {
    /// `days` are the column labels (`YYYY-MM-DD`); `values[s][d]` is series
    /// `s` on day `d`.
    pub fn stacked(
        id: &'static str,
        title: &'static str,
        series: Vec<Series>,
        days: &[String],
        values: &[Vec<f64>],
    ) -> Chart {
        let totals: Vec<f64> = (0..days.len())
            .map(|d| {
                values
                    .iter()
                    .map(|s| s.get(d).copied().unwrap_or(0.0))
                    .sum()
            })
            .collect();
        let max = round_up(totals.iter().copied().fold(0.0, f64::max));
        let plot_height = HEIGHT - TOP - BOTTOM;
        let column = (WIDTH - LEFT) / days.len().max(1) as f64;
        let bar = (column * 0.7).max(1.0);
        let scale = |v: f64| v / max * plot_height;
        let mut rects = Vec::new();
        for (d, day) in days.iter().enumerate() {
            let x = LEFT + column * d as f64 + (column - bar) / 2.0;
            let mut base = HEIGHT - BOTTOM;
            for (s, (values, serie)) in values.iter().zip(&series).enumerate() {
                let v = values.get(d).copied().unwrap_or(0.0);
                if v <= 0.0 {
                    continue;
                }
                let h = scale(v);
                base -= h;
                rects.push(Rect {
                    x: at(x),
                    y: at(base),
                    width: at(bar),
                    height: at(h),
                    class: format!("s{s}"),
                    title: format!("{day}: {} {}", show(v), serie.name),
                });
            }
        }
        // A label under every column when they fit, else under about ten.
        let every = days.len().div_ceil(10).max(1);
        let x_labels = days
            .iter()
            .enumerate()
            .filter(|(d, _)| d % every == 0)
            .map(|(d, day)| Label {
                x: at(LEFT + column * (d as f64 + 0.5)),
                y: at(HEIGHT - 6.0),
                text: day.get(5..).unwrap_or(day).to_string(),
            })
            .collect();
        let ticks = [0.0, 0.25, 0.5, 0.75, 1.0];
        let y_of = |f: f64| HEIGHT - BOTTOM - f * plot_height;
        let y_labels = ticks
            .iter()
            .map(|f| Label {
                x: at(LEFT - 6.0),
                y: at(y_of(*f) + 4.0),
                text: show(max * f),
            })
            .collect();
        let grid = ticks.iter().map(|f| at(y_of(*f))).collect();
        let rows = days
            .iter()
            .enumerate()
            .map(|(d, day)| {
                let cells = values
                    .iter()
                    .map(|s| show(s.get(d).copied().unwrap_or(0.0)))
                    .collect();
                (day.clone(), cells)
            })
            .collect();
        Chart {
            id,
            title,
            series: series
                .into_iter()
                .enumerate()
                .map(|(s, serie)| (serie, format!("s{s}")))
                .collect(),
            rects,
            x_labels,
            y_labels,
            grid,
            width: WIDTH,
            height: HEIGHT,
            left: LEFT,
            rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_a_round_number() {
        assert_eq!(round_up(0.0), 1.0);
        assert_eq!(round_up(3.0), 5.0);
        assert_eq!(round_up(11.0), 20.0);
        assert_eq!(round_up(100.0), 100.0);
        assert_eq!(round_up(0.3), 0.5);
    }

    #[test]
    fn series_stack_and_every_value_is_in_the_table() {
        let days = vec!["2026-12-01".to_string(), "2026-12-02".to_string()];
        let chart = Chart::stacked(
            "messages",
            "Messages",
            vec![Series { name: "in" }, Series { name: "out" }],
            &days,
            &[vec![3.0, 0.0], vec![2.0, 1.0]],
        );
        // Nothing drawn for a zero; the second series sits on the first.
        assert_eq!(chart.rects.len(), 3);
        let first: f64 = chart.rects[0].y.parse().unwrap();
        let second: f64 = chart.rects[1].y.parse().unwrap();
        let second_height: f64 = chart.rects[1].height.parse().unwrap();
        assert!((second + second_height - first).abs() < 0.2);
        assert_eq!(chart.rects[1].title, "2026-12-01: 2 out");
        assert_eq!(
            chart.rows[1],
            ("2026-12-02".into(), vec!["0".into(), "1".into()])
        );
        assert_eq!(chart.y_labels.last().unwrap().text, "5");
        assert_eq!(chart.x_labels[0].text, "12-01");
    }
}
