use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// A Kubernetes quantity, as a ServiceProfile writes a `dstOverrides`
/// weight, read in milli-units as Linkerd's destination service does
/// (`Quantity.MilliValue()`): `1` is 1000, `500m` is 500, `0.5` is 500.
///
/// Only the forms weights use are read: a whole number, a decimal with at
/// most three places, or milli-units (`<n>m`); a YAML number is taken as
/// the same text. Suffixes such as `k` or `Ki` are refused (a weight of a
/// thousand is `1000`). Kept as written; served in milli-units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quantity {
    text: String,
    milli: u32,
}

// === impl Quantity ===

impl Quantity {
    /// The value in thousandths (what `WeightedDst.weight` carries).
    pub fn milli(&self) -> u32 {
        self.milli
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn from_milli(milli: u32) -> Self {
        Self {
            text: format!("{milli}m"),
            milli,
        }
    }
}

impl FromStr for Quantity {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{text:?} is not a weight: use a whole number (\"1\"), a decimal with at most \
                 three places (\"0.5\") or milli-units (\"500m\")"
            )
        };
        if text.starts_with('-') {
            return Err(format!("{text:?} is negative: a weight is 0 or more"));
        }
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let too_big = || {
            format!(
                "{text:?} is too large: at most {} (in milli-units)",
                u32::MAX
            )
        };
        let milli: u64 = if let Some(m) = text.strip_suffix('m') {
            if !digits(m) {
                return Err(bad());
            }
            m.parse().map_err(|_| too_big())?
        } else {
            let (int, frac) = text.split_once('.').unwrap_or((text, ""));
            if !digits(int) || (text.contains('.') && !digits(frac)) {
                return Err(bad());
            }
            if frac.len() > 3 {
                return Err(format!(
                    "{text:?} has more than three decimal places: weights are read in milli-units"
                ));
            }
            let int: u64 = int.parse().map_err(|_| too_big())?;
            let frac: u64 = if frac.is_empty() {
                0
            } else {
                let padded = format!("{frac:0<3}");
                padded.parse().map_err(|_| bad())?
            };
            int.checked_mul(1000)
                .and_then(|n| n.checked_add(frac))
                .ok_or_else(too_big)?
        };
        let milli = u32::try_from(milli).map_err(|_| too_big())?;
        Ok(Self {
            text: text.to_string(),
            milli,
        })
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Always a string, as Kubernetes writes quantities.
impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = match Value::deserialize(d)? {
            Value::String(text) => text,
            // `1`, `0.5`, `-1`: the number as written.
            Value::Number(n) => n.to_string(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "{other} is not a weight: use a number such as 1 or a quantity such as \"500m\""
                )));
            }
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        let milli = |s: &str| s.parse::<Quantity>().map(|q| q.milli());
        assert_eq!(milli("1"), Ok(1000));
        assert_eq!(milli("500m"), Ok(500));
        assert_eq!(milli("0.5"), Ok(500));
        assert_eq!(milli("0.25"), Ok(250));
        assert_eq!(milli("0"), Ok(0));
        assert_eq!(milli("100"), Ok(100_000));
        for bad in ["", "m", "1.", ".5", "1e3", "1Ki", "-5m", "0x10", "1.5m"] {
            assert!(milli(bad).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(Quantity::from_milli(250).as_str(), "250m");
    }
}
