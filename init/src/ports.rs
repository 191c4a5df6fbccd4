//! Port lists as users write them (`25,587,3306-3310`) and as iptables'
//! `multiport` match takes them (`25,587,3306:3310`, at most 15 ports a rule).

use std::fmt;
use std::str::FromStr;

/// The most ports one `-m multiport` match may name; a range counts as two.
/// This is `XT_MULTI_PORTS` in the kernel's `xt_multiport.h`.
const MULTIPORT_LIMIT: usize = 15;

/// An inclusive range of TCP ports; a single port is a range of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange {
    /// The first port in the range.
    pub first: u16,
    /// The last port in the range (equal to `first` for a single port).
    pub last: u16,
}

/// A sorted list of port ranges with no overlaps, parsed from a
/// comma-separated list of ports and `first-last` ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortList(Vec<PortRange>);

/// Why a port list could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortError {
    /// An item is not a number in 1..=65535.
    #[error("{item:?} is not a port (expected a number from 1 to 65535)")]
    NotAPort {
        /// The offending item, as written.
        item: String,
    },
    /// A range ends before it starts.
    #[error("{item:?} is not a port range: {first} is greater than {last}")]
    Reversed {
        /// The offending item, as written.
        item: String,
        /// The first port written.
        first: u16,
        /// The last port written.
        last: u16,
    },
}

// === impl PortRange ===

impl PortRange {
    /// A range of one port.
    pub const fn single(port: u16) -> Self {
        PortRange {
            first: port,
            last: port,
        }
    }

    /// How many of multiport's 15 slots this range takes.
    fn slots(&self) -> usize {
        if self.first == self.last { 1 } else { 2 }
    }
}

impl fmt::Display for PortRange {
    /// Formats in iptables syntax: `25` or `3306:3310`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}:{}", self.first, self.last)
        }
    }
}

impl FromStr for PortRange {
    type Err = PortError;

    /// Parses `25` or `3306-3310`; surrounding whitespace is ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let item = s.trim();
        let port = |p: &str| -> Result<u16, PortError> {
            match p.trim().parse::<u16>() {
                Ok(0) | Err(_) => Err(PortError::NotAPort {
                    item: item.to_owned(),
                }),
                Ok(port) => Ok(port),
            }
        };
        match item.split_once('-') {
            None => port(item).map(PortRange::single),
            Some((first, last)) => {
                let (first, last) = (port(first)?, port(last)?);
                if first > last {
                    return Err(PortError::Reversed {
                        item: item.to_owned(),
                        first,
                        last,
                    });
                }
                Ok(PortRange { first, last })
            }
        }
    }
}

// === impl PortList ===

impl PortList {
    /// Builds a list from ranges in any order; overlapping ranges and
    /// duplicates are merged so that each port appears once.
    pub fn new(ranges: impl IntoIterator<Item = PortRange>) -> Self {
        let mut ranges: Vec<PortRange> = ranges.into_iter().collect();
        ranges.sort();
        let mut merged: Vec<PortRange> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(prev) if r.first <= prev.last => prev.last = prev.last.max(r.last),
                _ => merged.push(r),
            }
        }
        PortList(merged)
    }

    /// The ranges, sorted, without overlaps.
    pub fn ranges(&self) -> &[PortRange] {
        &self.0
    }

    /// Whether the list names no port.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// This list and `other` together.
    #[must_use]
    pub fn union(&self, other: &PortList) -> PortList {
        PortList::new(self.0.iter().chain(&other.0).copied())
    }

    /// The list split into `--dports` arguments that each fit one multiport
    /// match (`4190,4191`, `3306:3310`).
    pub fn multiport_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut current: Vec<String> = Vec::new();
        let mut used = 0;
        for r in &self.0 {
            if used + r.slots() > MULTIPORT_LIMIT {
                out.push(current.join(","));
                current.clear();
                used = 0;
            }
            current.push(r.to_string());
            used += r.slots();
        }
        if !current.is_empty() {
            out.push(current.join(","));
        }
        out
    }
}

impl FromStr for PortList {
    type Err = PortError;

    /// Parses a comma-separated list such as `25,587,3306-3310`. Empty items
    /// (a trailing comma, or an empty string) are skipped so that lists built
    /// by templates parse; every other item must be a port or a range.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ranges = s
            .split(',')
            .filter(|item| !item.trim().is_empty())
            .map(PortRange::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PortList::new(ranges))
    }
}

impl FromIterator<PortList> for PortList {
    fn from_iter<I: IntoIterator<Item = PortList>>(iter: I) -> Self {
        PortList::new(iter.into_iter().flat_map(|l| l.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> PortList {
        s.parse().expect("valid port list")
    }

    fn render(l: &PortList) -> Vec<String> {
        l.ranges().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn parses_ports_and_ranges() {
        assert_eq!(
            render(&list("25,587,3306-3310")),
            ["25", "587", "3306:3310"]
        );
        assert_eq!(render(&list(" 80 , 443 ")), ["80", "443"]);
        assert_eq!(render(&list("1-65535")), ["1:65535"]);
        assert_eq!(render(&list("8080-8080")), ["8080"]);
    }

    #[test]
    fn empty_items_are_skipped() {
        assert!(list("").is_empty());
        assert!(list(" , ").is_empty());
        assert_eq!(render(&list("25,,26,")), ["25", "26"]);
    }

    #[test]
    fn sorts_and_merges_overlaps() {
        assert_eq!(render(&list("4191,4190,4191")), ["4190", "4191"]);
        assert_eq!(render(&list("10-20,15-30,5")), ["5", "10:30"]);
        assert_eq!(render(&list("10-20,12")), ["10:20"]);
        // Adjacent ranges stay apart: merging them would not save a rule.
        assert_eq!(render(&list("10-20,21-30")), ["10:20", "21:30"]);
    }

    #[test]
    fn rejects_bad_items() {
        let not_a_port = |item: &str| PortError::NotAPort {
            item: item.to_owned(),
        };
        assert_eq!("0".parse::<PortList>(), Err(not_a_port("0")));
        assert_eq!("65536".parse::<PortList>(), Err(not_a_port("65536")));
        assert_eq!("80,http".parse::<PortList>(), Err(not_a_port("http")));
        assert_eq!("-5".parse::<PortList>(), Err(not_a_port("-5")));
        assert_eq!("5-".parse::<PortList>(), Err(not_a_port("5-")));
        assert_eq!("1-2-3".parse::<PortList>(), Err(not_a_port("1-2-3")));
        assert_eq!(
            "20-10".parse::<PortList>(),
            Err(PortError::Reversed {
                item: "20-10".into(),
                first: 20,
                last: 10
            })
        );
    }

    #[test]
    fn errors_read_well() {
        let e = "80,x".parse::<PortList>().expect_err("invalid");
        assert_eq!(
            e.to_string(),
            r#""x" is not a port (expected a number from 1 to 65535)"#
        );
    }

    #[test]
    fn union_merges() {
        assert_eq!(
            render(&list("4190,4191").union(&list("4191,22"))),
            ["22", "4190", "4191"]
        );
    }

    #[test]
    fn multiport_chunks_respect_the_limit() {
        assert!(PortList::default().multiport_args().is_empty());
        assert_eq!(list("4190,4191").multiport_args(), ["4190,4191"]);

        let ports: Vec<String> = (1..=16).map(|p| p.to_string()).collect();
        let l = list(&ports.join(","));
        assert_eq!(
            l.multiport_args(),
            ["1,2,3,4,5,6,7,8,9,10,11,12,13,14,15", "16"],
            "16 single ports need two rules"
        );

        // A range takes two slots: 14 singles + a range would be 16.
        let l = list("1,2,3,4,5,6,7,8,9,10,11,12,13,14,100-200");
        assert_eq!(
            l.multiport_args(),
            ["1,2,3,4,5,6,7,8,9,10,11,12,13,14", "100:200"]
        );
    }
}
