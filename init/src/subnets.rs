//! Subnets in CIDR notation (`10.0.0.0/8`, `fd00::/8`), as
//! `--subnets-to-ignore` takes them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::Family;

/// An IPv4 or IPv6 network: an address with its host bits cleared and a
/// prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// A comma-separated list of subnets, as one flag value carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubnetList(pub Vec<Cidr>);

/// Why a subnet could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubnetError {
    /// The part before `/` is not an IP address.
    #[error("{item:?} is not a subnet: expected an address such as 10.0.0.0/8 or fd00::/8")]
    NotAnAddress {
        /// The offending item, as written.
        item: String,
    },
    /// The prefix length is not a number or too long for the address family.
    #[error("{item:?} is not a subnet: the prefix length must be 0 to {max}")]
    BadPrefix {
        /// The offending item, as written.
        item: String,
        /// The longest prefix of the item's family (32 or 128).
        max: u8,
    },
}

// === impl Cidr ===

impl Cidr {
    /// The network `addr/prefix`, with host bits of `addr` cleared (as
    /// iptables itself does, so that the rules we print match what
    /// `iptables-save` shows).
    ///
    /// Returns `None` when `prefix` is longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let addr = match addr {
            IpAddr::V4(a) if prefix <= 32 => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) if prefix <= 128 => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
            _ => return None,
        };
        Some(Cidr { addr, prefix })
    }

    /// The family whose table this subnet belongs in.
    pub fn family(&self) -> Family {
        match self.addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = SubnetError;

    /// Parses `10.0.0.0/8`, `fd00::/8`, or a bare address (a /32 or /128).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let item = s.trim();
        let (addr, prefix) = match item.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (item, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| SubnetError::NotAnAddress {
            item: item.to_owned(),
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse().map_err(|_| SubnetError::BadPrefix {
                item: item.to_owned(),
                max,
            })?,
        };
        Cidr::new(addr, prefix).ok_or_else(|| SubnetError::BadPrefix {
            item: item.to_owned(),
            max,
        })
    }
}

// === impl SubnetList ===

impl FromStr for SubnetList {
    type Err = SubnetError;

    /// Parses a comma-separated list; empty items are skipped.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .filter(|item| !item.trim().is_empty())
            .map(Cidr::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(SubnetList)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> String {
        s.parse::<Cidr>().expect("valid subnet").to_string()
    }

    #[test]
    fn parses_both_families() {
        assert_eq!(cidr("10.0.0.0/8"), "10.0.0.0/8");
        assert_eq!(cidr(" 192.168.1.7 "), "192.168.1.7/32");
        assert_eq!(cidr("0.0.0.0/0"), "0.0.0.0/0");
        assert_eq!(cidr("fd00::/8"), "fd00::/8");
        assert_eq!(cidr("::1"), "::1/128");
        assert_eq!(cidr("::/0"), "::/0");
    }

    #[test]
    fn clears_host_bits() {
        assert_eq!(cidr("10.1.2.3/8"), "10.0.0.0/8");
        assert_eq!(cidr("10.1.2.3/31"), "10.1.2.2/31");
        assert_eq!(cidr("fd00:1:2::5/32"), "fd00:1::/32");
    }

    #[test]
    fn knows_its_family() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().map(|c| c.family()),
            Ok(Family::V4)
        );
        assert_eq!(
            "fd00::/8".parse::<Cidr>().map(|c| c.family()),
            Ok(Family::V6)
        );
    }

    #[test]
    fn rejects_bad_subnets() {
        assert_eq!(
            "10.0.0/8".parse::<Cidr>(),
            Err(SubnetError::NotAnAddress {
                item: "10.0.0/8".into()
            })
        );
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(SubnetError::BadPrefix {
                item: "10.0.0.0/33".into(),
                max: 32
            })
        );
        assert_eq!(
            "fd00::/129".parse::<Cidr>(),
            Err(SubnetError::BadPrefix {
                item: "fd00::/129".into(),
                max: 128
            })
        );
        assert_eq!(
            "10.0.0.0/x".parse::<Cidr>(),
            Err(SubnetError::BadPrefix {
                item: "10.0.0.0/x".into(),
                max: 32
            })
        );
        assert!("10.0.0.0/".parse::<Cidr>().is_err());
    }

    #[test]
    fn parses_lists() {
        let l: SubnetList = "10.0.0.0/8, fd00::/8,".parse().expect("valid list");
        let shown: Vec<String> = l.0.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "fd00::/8"]);
        assert_eq!("".parse::<SubnetList>(), Ok(SubnetList::default()));
        assert!("10.0.0.0/8,nope".parse::<SubnetList>().is_err());
    }
}
