//! Parsing vote-bot's flags and encoding its query values.

use std::time::Duration;

/// The highest `--rps`: far above what a demo needs, and a tick period
/// (100 µs) tokio's timer still keeps.
const MAX_RPS: f64 = 10_000.0;

/// `--rps`: a positive, finite number no larger than [`MAX_RPS`].
pub(super) fn parse_rps(s: &str) -> Result<f64, String> {
    let rps: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if !(rps > 0.0 && rps <= MAX_RPS) {
        return Err(format!("must be more than 0 and at most {MAX_RPS}"));
    }
    Ok(rps)
}

/// `--duration`: a number with a unit (`ms`, `s`, `m`, `h`), or bare
/// seconds, such as `500ms`, `90s`, `1.5m`, `30`.
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 90s, 5m or 1h"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("{unit:?} is not a unit: use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a positive duration"))
}

/// Percent-encodes a query value, keeping RFC 3986's unreserved characters
/// and `:` (legal in a query) so shortcodes read as themselves in logs.
pub(super) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rps() {
        assert_eq!(parse_rps("10"), Ok(10.0));
        assert_eq!(parse_rps("0.5"), Ok(0.5));
        for bad in ["0", "-1", "NaN", "inf", "x", "", "10001"] {
            assert!(parse_rps(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["", "s", "0s", "3d", "-1s", "1..2s", "1e3"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn encodes() {
        assert_eq!(encode(":doughnut:"), ":doughnut:");
        assert_eq!(encode(":+1:"), ":%2B1:");
        assert_eq!(encode("🍩"), "%F0%9F%8D%A9");
    }
}
