//! Which requests a tap wants: `ObserveRequest.match`, checked once when
//! the tap opens and compiled into a tree that matches without allocating.

use std::net::{IpAddr, SocketAddr};

use linkerd2_proxy_api::http_types::{self, http_method, scheme};
use linkerd2_proxy_api::tap::observe_request::{Match, r#match as m};

/// How deeply `all`, `any` and `not` may nest. The tree is walked for every
/// request while the tap is open, so a client cannot make that walk costly.
const MAX_DEPTH: usize = 16;
/// How many matches a tap may hold in all.
const MAX_NODES: usize = 256;

/// A compiled `ObserveRequest.match`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matcher {
    /// No match given: every request.
    Everything,
    All(Vec<Matcher>),
    Any(Vec<Matcher>),
    Not(Box<Matcher>),
    Source(TcpMatch),
    Destination(TcpMatch),
    Scheme(String),
    Method(http::Method),
    Authority(StringMatch),
    Path(StringMatch),
    /// A label discovery gave the destination.
    DestinationLabel {
        key: String,
        value: String,
    },
    /// A route label: this proxy has no routes, so it matches nothing.
    RouteLabel,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpMatch {
    Net { ip: IpAddr, prefix: u8 },
    Ports { min: u16, max: u16 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
}

/// What a request offers to be matched on.
#[derive(Debug)]
pub struct RequestView<'a> {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub scheme: &'a str,
    pub method: &'a http::Method,
    pub authority: Option<&'a str>,
    pub path: &'a str,
    /// The labels discovery gave the destination, when it is known as the
    /// request arrives (a meshed endpoint's).
    pub labels: Option<&'a std::collections::BTreeMap<String, String>>,
}

// === impl Matcher ===

impl Matcher {
    /// Compiles a tap's match; the error says what is wrong with it.
    pub fn compile(m: Option<&Match>) -> Result<Matcher, String> {
        let mut nodes = 0;
        match m {
            None => Ok(Matcher::Everything),
            Some(m) => compile(m, 0, &mut nodes),
        }
    }

    pub fn matches(&self, r: &RequestView<'_>) -> bool {
        match self {
            Matcher::Everything => true,
            Matcher::All(ms) => ms.iter().all(|m| m.matches(r)),
            Matcher::Any(ms) => ms.iter().any(|m| m.matches(r)),
            Matcher::Not(m) => !m.matches(r),
            Matcher::Source(t) => t.matches(r.source),
            Matcher::Destination(t) => t.matches(r.destination),
            Matcher::Scheme(s) => r.scheme.eq_ignore_ascii_case(s),
            Matcher::Method(want) => r.method == want,
            Matcher::Authority(s) => r.authority.is_some_and(|a| s.matches(a)),
            Matcher::Path(s) => s.matches(r.path),
            Matcher::DestinationLabel { key, value } => r
                .labels
                .and_then(|l| l.get(key))
                .is_some_and(|v| v == value),
            Matcher::RouteLabel => false,
        }
    }
}

fn compile(m: &Match, depth: usize, nodes: &mut usize) -> Result<Matcher, String> {
    *nodes += 1;
    if depth > MAX_DEPTH {
        return Err(format!("the match nests deeper than {MAX_DEPTH} levels"));
    }
    if *nodes > MAX_NODES {
        return Err(format!("the match has more than {MAX_NODES} parts"));
    }
    let seq = |s: &m::Seq, nodes: &mut usize| -> Result<Vec<Matcher>, String> {
        s.matches
            .iter()
            .map(|m| compile(m, depth + 1, nodes))
            .collect()
    };
    match m.r#match.as_ref() {
        None => Err("a match with nothing in it".to_string()),
        Some(m::Match::All(s)) => Ok(Matcher::All(seq(s, nodes)?)),
        Some(m::Match::Any(s)) => Ok(Matcher::Any(seq(s, nodes)?)),
        Some(m::Match::Not(inner)) => Ok(Matcher::Not(Box::new(compile(inner, depth + 1, nodes)?))),
        Some(m::Match::Source(t)) => Ok(Matcher::Source(TcpMatch::compile(t, "source")?)),
        Some(m::Match::Destination(t)) => {
            Ok(Matcher::Destination(TcpMatch::compile(t, "destination")?))
        }
        Some(m::Match::Http(h)) => compile_http(h),
        Some(m::Match::DestinationLabel(l)) => {
            if l.key.is_empty() {
                return Err("a destination label match without a key".to_string());
            }
            Ok(Matcher::DestinationLabel {
                key: l.key.clone(),
                value: l.value.clone(),
            })
        }
        Some(m::Match::RouteLabel(_)) => Ok(Matcher::RouteLabel),
    }
}

fn compile_http(h: &m::Http) -> Result<Matcher, String> {
    use m::http::Match as H;
    match h.r#match.as_ref() {
        None => Err("an HTTP match with nothing in it".to_string()),
        Some(H::Scheme(s)) => scheme_name(s).map(Matcher::Scheme),
        Some(H::Method(method)) => method_of(method).map(Matcher::Method),
        Some(H::Authority(s)) => StringMatch::compile(s, "authority").map(Matcher::Authority),
        Some(H::Path(s)) => StringMatch::compile(s, "path").map(Matcher::Path),
    }
}

fn scheme_name(s: &http_types::Scheme) -> Result<String, String> {
    match s.r#type.as_ref() {
        Some(scheme::Type::Registered(r)) => match scheme::Registered::try_from(*r) {
            Ok(scheme::Registered::Http) => Ok("http".to_string()),
            Ok(scheme::Registered::Https) => Ok("https".to_string()),
            Err(_) => Err(format!("unknown registered scheme {r}")),
        },
        Some(scheme::Type::Unregistered(s)) if !s.is_empty() => Ok(s.to_ascii_lowercase()),
        _ => Err("a scheme match without a scheme".to_string()),
    }
}

fn method_of(m: &http_types::HttpMethod) -> Result<http::Method, String> {
    match m.r#type.as_ref() {
        Some(http_method::Type::Registered(r)) => http_method::Registered::try_from(*r)
            .map_err(|_| format!("unknown registered method {r}"))
            .and_then(|r| {
                http::Method::from_bytes(r.as_str_name().as_bytes()).map_err(|e| e.to_string())
            }),
        Some(http_method::Type::Unregistered(s)) => http::Method::from_bytes(s.as_bytes())
            .map_err(|_| format!("{s:?} is not an HTTP method")),
        None => Err("a method match without a method".to_string()),
    }
}

// === impl TcpMatch ===

impl TcpMatch {
    fn compile(t: &m::Tcp, side: &str) -> Result<TcpMatch, String> {
        match t.r#match.as_ref() {
            None => Err(format!("a {side} match with no netmask or ports")),
            Some(m::tcp::Match::Netmask(n)) => {
                let ip: IpAddr =
                    n.ip.ok_or_else(|| format!("a {side} netmask without an address"))?
                        .try_into()
                        .map_err(|_| format!("a {side} netmask with an invalid address"))?;
                let bits = if ip.is_ipv4() { 32 } else { 128 };
                let prefix = u8::try_from(n.mask)
                    .ok()
                    .filter(|m| u32::from(*m) <= bits)
                    .ok_or_else(|| format!("a {side} netmask of /{}: at most /{bits}", n.mask))?;
                Ok(TcpMatch::Net { ip, prefix })
            }
            Some(m::tcp::Match::Ports(p)) => {
                // A range with one end given is that one port.
                let (min, max) = match (p.min, p.max) {
                    (0, 0) => return Err(format!("a {side} port range with no ports")),
                    (0, x) | (x, 0) => (x, x),
                    (a, b) => (a, b),
                };
                let port = |v: u32| {
                    u16::try_from(v).map_err(|_| format!("{side} port {v} is out of range"))
                };
                let (min, max) = (port(min)?, port(max)?);
                if min > max {
                    return Err(format!("a {side} port range from {min} down to {max}"));
                }
                Ok(TcpMatch::Ports { min, max })
            }
        }
    }

    fn matches(&self, addr: SocketAddr) -> bool {
        match *self {
            TcpMatch::Ports { min, max } => (min..=max).contains(&addr.port()),
            TcpMatch::Net { ip, prefix } => in_net(crate::orig_dst::unmap(addr).ip(), ip, prefix),
        }
    }
}

fn in_net(addr: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

// === impl StringMatch ===

impl StringMatch {
    fn compile(s: &m::http::StringMatch, what: &str) -> Result<StringMatch, String> {
        use m::http::string_match::Match as S;
        match s.r#match.as_ref() {
            Some(S::Exact(v)) => Ok(StringMatch::Exact(v.clone())),
            Some(S::Prefix(v)) => Ok(StringMatch::Prefix(v.clone())),
            None => Err(format!("the {what} match has no exact value or prefix")),
        }
    }

    fn matches(&self, v: &str) -> bool {
        match self {
            StringMatch::Exact(s) => v == s,
            StringMatch::Prefix(p) => v.starts_with(p.as_str()),
        }
    }
}
