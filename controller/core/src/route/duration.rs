use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A Gateway API duration (GEP-2257): one to four parts, each a number of
/// at most five digits and a unit `h`, `m`, `s` or `ms`, such as `2s`,
/// `500ms` or `1m30s`. Kept as written, so that a route reads back as it
/// was applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayDuration {
    text: String,
    value: Duration,
}

/// GEP-2257's bounds: `^([0-9]{1,5}(h|m|s|ms)){1,4}$`.
const MAX_PARTS: usize = 4;
const MAX_DIGITS: usize = 5;

// === impl GatewayDuration ===

impl GatewayDuration {
    pub fn as_duration(&self) -> Duration {
        self.value
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for GatewayDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{text:?} is not a Gateway API duration: use one to four parts of at most \
                 five digits and a unit h, m, s or ms, e.g. \"2s\", \"500ms\", \"1m30s\""
            )
        };
        let mut rest = text.as_bytes();
        let mut value = Duration::ZERO;
        let mut parts = 0;
        while !rest.is_empty() {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 || digits > MAX_DIGITS {
                return Err(bad());
            }
            // At most five digits: always fits.
            let n: u64 = std::str::from_utf8(&rest[..digits])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)?;
            rest = &rest[digits..];
            let (unit, len) = match rest {
                [b'm', b's', ..] => (Duration::from_millis(1), 2),
                [b'h', ..] => (Duration::from_secs(3600), 1),
                [b'm', ..] => (Duration::from_secs(60), 1),
                [b's', ..] => (Duration::from_secs(1), 1),
                _ => return Err(bad()),
            };
            rest = &rest[len..];
            let n = u32::try_from(n).map_err(|_| bad())?;
            value += unit * n;
            parts += 1;
            if parts > MAX_PARTS {
                return Err(bad());
            }
        }
        if parts == 0 {
            return Err(bad());
        }
        Ok(Self {
            text: text.to_string(),
            value,
        })
    }
}

impl fmt::Display for GatewayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for GatewayDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for GatewayDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
