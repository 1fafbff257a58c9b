//! ISO 8601 durations (`PT4H`, `P2DT30M`, `P1W`) as milliseconds.
//!
//! Timers and SLAs need an exact length. Years and months have none (a
//! month is 28 to 31 days, and a "day" of business time is not 24 hours),
//! so they are refused with a message that says what to write instead.
//! Days are 24 hours of wall-clock time here; a business calendar measures
//! SLAs in its own open hours.

/// The longest duration accepted: 10 years of days. Keeps every sum of
/// durations and timestamps far from overflowing.
pub const MAX_DURATION_MS: i64 = 3650 * DAY_MS;

const SECOND_MS: i64 = 1000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
const WEEK_MS: i64 = 7 * DAY_MS;

/// Why a duration was refused; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a valid duration: {reason}")]
pub struct DurationError {
    /// The text as given (shortened when long).
    pub text: String,
    pub reason: String,
}

/// Parses `PnW` or `PnDTnHnMnS` (each part optional, at least one given,
/// seconds may have up to three decimals) into milliseconds. Zero and
/// negative durations are refused: a timer or SLA of no time is a mistake.
pub fn parse_duration(text: &str) -> Result<i64, DurationError> {
    let fail = |reason: &str| DurationError {
        text: crate::text::truncate_chars(text, 40),
        reason: reason.to_string(),
    };
    let Some(body) = text.strip_prefix('P') else {
        return Err(fail(
            "write it in ISO 8601 form, starting with P: PT30M (30 minutes), PT4H, P2D, P1W, P1DT12H",
        ));
    };
    if body.is_empty() || body == "T" {
        return Err(fail("give at least one number and unit, e.g. PT4H"));
    }
    let (date_part, time_part) = match body.split_once('T') {
        Some((_, "")) => {
            return Err(fail(
                "a T must be followed by hours, minutes or seconds, e.g. PT30M",
            ));
        }
        Some((d, t)) => (d, Some(t)),
        None => (body, None),
    };
    let mut total: i64 = 0;
    let mut add = |amount: i64, unit: i64| -> Result<(), DurationError> {
        total = amount
            .checked_mul(unit)
            .and_then(|ms| total.checked_add(ms))
            .filter(|t| *t <= MAX_DURATION_MS)
            .ok_or_else(|| fail("it is longer than 10 years"))?;
        Ok(())
    };
    for (amount, unit) in parts(date_part, "YMWD").map_err(|r| fail(&r))? {
        match unit {
            'W' => add(amount.whole, WEEK_MS)?,
            'D' => add(amount.whole, DAY_MS)?,
            'Y' => {
                return Err(fail(
                    "years have no fixed length: write days or weeks instead (P365D, P52W)",
                ));
            }
            'M' => {
                return Err(fail(
                    "months have no fixed length: write days or weeks instead (P30D, P4W); for minutes write PT…M",
                ));
            }
            _ => {
                return Err(fail(&format!(
                    "unknown unit `{unit}` before T: use W (weeks) or D (days)"
                )));
            }
        }
        if amount.millis != 0 {
            return Err(fail("only seconds may have decimals"));
        }
    }
    for (amount, unit) in parts(time_part.unwrap_or(""), "HMS").map_err(|r| fail(&r))? {
        match unit {
            'H' => add(amount.whole, HOUR_MS)?,
            'M' => add(amount.whole, MINUTE_MS)?,
            'S' => {
                add(amount.whole, SECOND_MS)?;
                add(amount.millis, 1)?;
            }
            _ => {
                return Err(fail(&format!(
                    "unknown unit `{unit}` after T: use H (hours), M (minutes) or S (seconds)"
                )));
            }
        }
        if amount.millis != 0 && unit != 'S' {
            return Err(fail("only seconds may have decimals"));
        }
    }
    if total <= 0 {
        return Err(fail("it must be longer than zero"));
    }
    Ok(total)
}

/// A number in a duration: whole units and, for seconds, milliseconds.
struct Amount {
    whole: i64,
    millis: i64,
}

/// Splits `3D` or `12H30M` into `(3, 'D')` or `(12, 'H'), (30, 'M')`; units
/// must not repeat and must come in `order`, so `PT5M1H` is refused.
fn parts(s: &str, order: &str) -> Result<Vec<(Amount, char)>, String> {
    let mut out: Vec<(Amount, char)> = Vec::new();
    let mut number = String::new();
    let mut last_rank: Option<usize> = None;
    for c in s.chars() {
        if c.is_ascii_digit() || c == '.' || c == ',' {
            if number.len() >= 12 {
                return Err("a number is too long".into());
            }
            number.push(if c == ',' { '.' } else { c });
            continue;
        }
        if number.is_empty() {
            return Err(format!("a number must come before `{c}`, e.g. PT4H"));
        }
        let amount = amount(&number)?;
        number.clear();
        // Unknown units are the caller's to explain.
        let rank = order.find(c).unwrap_or(usize::MAX);
        if last_rank.is_some_and(|last| rank <= last) {
            return Err("units must appear once each, largest first (P1DT2H30M)".into());
        }
        last_rank = Some(rank);
        out.push((amount, c));
    }
    if !number.is_empty() {
        return Err(format!("`{number}` has no unit: add one, e.g. PT{number}M"));
    }
    Ok(out)
}

fn amount(number: &str) -> Result<Amount, String> {
    let bad = || format!("`{number}` is not a number");
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || fraction.contains('.') {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    if fraction.len() > 3 || (number.contains('.') && fraction.is_empty()) {
        return Err("decimals are allowed to the millisecond only (PT0.5S)".into());
    }
    let millis = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<3}").parse().map_err(|_| bad())?
    };
    Ok(Amount { whole, millis })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_durations() {
        for (text, ms) in [
            ("PT4H", 4 * HOUR_MS),
            ("PT30M", 30 * MINUTE_MS),
            ("PT24H", DAY_MS),
            ("P2D", 2 * DAY_MS),
            ("P1W", WEEK_MS),
            ("P1DT12H", DAY_MS + 12 * HOUR_MS),
            ("PT1H30M15S", HOUR_MS + 30 * MINUTE_MS + 15 * SECOND_MS),
            ("PT0.5S", 500),
            ("PT1,25S", 1250),
            ("PT90M", 90 * MINUTE_MS),
            ("P3650D", MAX_DURATION_MS),
        ] {
            assert_eq!(parse_duration(text), Ok(ms), "{text}");
        }
    }

    #[test]
    fn years_and_months_are_refused_with_advice() {
        let err = parse_duration("P1M").unwrap_err().to_string();
        assert!(err.contains("months have no fixed length"), "{err}");
        assert!(err.contains("P30D"), "{err}");
        let err = parse_duration("P1Y").unwrap_err().to_string();
        assert!(err.contains("years have no fixed length"), "{err}");
    }

    #[test]
    fn malformed_durations() {
        for (text, says) in [
            ("4H", "starting with P"),
            ("", "starting with P"),
            ("P", "at least one"),
            ("PT", "at least one"),
            ("P1DT", "must be followed"),
            ("PT5", "has no unit"),
            ("PTH", "number must come before"),
            ("PT5M1H", "largest first"),
            ("PT1H1H", "largest first"),
            ("P1H", "unknown unit `H` before T"),
            ("PT1D", "unknown unit `D` after T"),
            ("PT0S", "longer than zero"),
            ("P0D", "longer than zero"),
            ("PT1.5H", "only seconds"),
            ("PT1.2345S", "millisecond"),
            ("PT1..2S", "not a number"),
            ("P3651D", "longer than 10 years"),
            ("PT99999999999H", "longer than 10 years"),
            ("PT9999999999999H", "too long"),
            ("pt4h", "starting with P"),
            ("P-1D", "number must come before"),
        ] {
            let err = parse_duration(text).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
