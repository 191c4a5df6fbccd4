use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A Go duration (`time.ParseDuration`), as ServiceProfiles write route
/// timeouts and the retry budget's TTL: a sequence of decimal numbers, each
/// with an optional fraction and a unit `ns`, `us` (`µs`), `ms`, `s`, `m` or
/// `h`, such as `300ms`, `1.5s` or `1m30s`; `0` alone is zero. Kept as
/// written, so that a profile reads back as it was applied.
///
/// Gateway API's [`GatewayDuration`](crate::GatewayDuration) does not fit:
/// it refuses fractions, `ns` and `us`, which Linkerd users write.
/// Negative durations are refused: nothing in a profile may be negative.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoDuration {
    text: String,
    value: Duration,
}

/// Go's bound: a `time.Duration` is an `int64` of nanoseconds (~292 years).
const MAX_NANOS: u128 = i64::MAX as u128;

// === impl GoDuration ===

impl GoDuration {
    pub fn as_duration(&self) -> Duration {
        self.value
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// A duration written as `<secs>s`.
    pub fn from_secs(secs: u64) -> Self {
        Self {
            text: format!("{secs}s"),
            value: Duration::from_secs(secs),
        }
    }
}

impl FromStr for GoDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{text:?} is not a duration: use numbers with units ns, us, ms, s, m or h, \
                 e.g. \"300ms\", \"1.5s\", \"1m30s\""
            )
        };
        if text.starts_with('-') {
            return Err(format!("{text:?} is negative"));
        }
        let rest = text.strip_prefix('+').unwrap_or(text);
        if rest == "0" {
            return Ok(Self {
                text: text.to_string(),
                value: Duration::ZERO,
            });
        }
        if rest.is_empty() {
            return Err(bad());
        }
        let mut rest = rest;
        let mut nanos: u128 = 0;
        while !rest.is_empty() {
            let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let int = &rest[..int_len];
            rest = &rest[int_len..];
            let frac = match rest.strip_prefix('.') {
                Some(after) => {
                    let len = after.bytes().take_while(u8::is_ascii_digit).count();
                    rest = &after[len..];
                    &after[..len]
                }
                None => "",
            };
            if int.is_empty() && frac.is_empty() {
                return Err(bad());
            }
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let unit: u128 = match &rest[..unit_len] {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                "" => {
                    return Err(format!(
                        "{text:?} has a number without a unit (ns, us, ms, s, m or h)"
                    ));
                }
                other => {
                    return Err(format!(
                        "{text:?} has an unknown unit {other:?}: use ns, us, ms, s, m or h"
                    ));
                }
            };
            rest = &rest[unit_len..];
            let too_long = || format!("{text:?} is longer than Go's limit of about 292 years");
            let int: u128 = if int.is_empty() {
                0
            } else {
                int.parse().map_err(|_| too_long())?
            };
            // Go keeps what of the fraction fits; nanoseconds need 18 digits
            // at most (an hour is 3.6e12 ns).
            let frac = &frac[..frac.len().min(18)];
            let scale = 10u128.pow(u32::try_from(frac.len()).unwrap_or(18));
            let frac: u128 = if frac.is_empty() {
                0
            } else {
                frac.parse().map_err(|_| bad())?
            };
            nanos = int
                .checked_mul(unit)
                .and_then(|n| n.checked_add(frac * unit / scale))
                .and_then(|n| n.checked_add(nanos))
                .filter(|n| *n <= MAX_NANOS)
                .ok_or_else(too_long)?;
        }
        let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| bad())?;
        let sub = u32::try_from(nanos % 1_000_000_000).map_err(|_| bad())?;
        Ok(Self {
            text: text.to_string(),
            value: Duration::new(secs, sub),
        })
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(text) => text.parse().map_err(serde::de::Error::custom),
            Value::Number(n) => Err(serde::de::Error::custom(format!(
                "{n} has no unit: write a duration as a string such as \"{n}s\" or \"{n}ms\""
            ))),
            other => Err(serde::de::Error::custom(format!(
                "{other} is not a duration: write one as a string such as \"10s\" or \"300ms\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ok = |s: &str| s.parse::<GoDuration>().map(|d| d.as_duration());
        assert_eq!(ok("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(ok("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(ok("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(ok("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(ok(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(ok("2us"), Ok(Duration::from_micros(2)));
        assert_eq!(ok("2µs"), Ok(Duration::from_micros(2)));
        assert_eq!(ok("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(ok("0"), Ok(Duration::ZERO));
        assert_eq!(ok("+1s"), Ok(Duration::from_secs(1)));
        assert_eq!(ok("0.000000001s"), Ok(Duration::from_nanos(1)));
        for bad in ["", "1", "s", "1.s.", "-1s", "1d", "1s ", "9999999999h", "."] {
            assert!(ok(bad).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(
            ok("1.s"),
            Ok(Duration::from_secs(1)),
            "Go accepts a bare point"
        );
        assert_eq!(GoDuration::from_secs(10).as_str(), "10s");
    }
}
