//! A small PromQL lexer and checker: enough to find what a dashboard's
//! query reads (metrics, labels, functions, ranges) and to catch
//! unbalanced brackets, selectors without a metric or matchers, and range
//! functions without a range.

use std::collections::BTreeSet;

/// Words that are neither metrics nor functions.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
];

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    /// The inside of `[...]`.
    Range(String),
    /// `= != =~ !~ == / * + - > <` ...
    Op(String),
    Punct(char),
}

fn lex(expr: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() || c == '.' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            out.push(Tok::Num(chars[start..i].iter().collect()));
        } else if c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("unterminated string in {expr}")),
                    Some('"') => break,
                    Some('\\') => {
                        s.push(*chars.get(i + 1).ok_or("dangling escape")?);
                        i += 2;
                    }
                    Some(c) => {
                        s.push(*c);
                        i += 1;
                    }
                }
            }
            i += 1;
            out.push(Tok::Str(s));
        } else if c == '[' {
            let end = chars[i..]
                .iter()
                .position(|c| *c == ']')
                .ok_or(format!("unclosed [ in {expr}"))?;
            out.push(Tok::Range(chars[i + 1..i + end].iter().collect()));
            i += end + 1;
        } else if "=!~<>+-*/^%".contains(c) {
            let start = i;
            while i < chars.len() && "=!~<>".contains(chars[i]) && i - start < 2 {
                i += 1;
            }
            if i == start {
                i += 1;
            }
            out.push(Tok::Op(chars[start..i].iter().collect()));
        } else if "(){},".contains(c) {
            out.push(Tok::Punct(c));
            i += 1;
        } else {
            return Err(format!("unexpected {c:?} in {expr}"));
        }
    }
    Ok(out)
}

/// What a PromQL expression reads.
#[derive(Debug, Default)]
pub(super) struct Reads {
    pub metrics: BTreeSet<String>,
    pub functions: BTreeSet<String>,
    pub labels: BTreeSet<String>,
    pub ranges: Vec<String>,
}

/// Walks `expr`'s tokens: checks the brackets balance, that every
/// selector has a metric name and well-formed matchers, and that every
/// range function has a range; collects what it reads.
pub(super) fn check_promql(expr: &str) -> Result<Reads, String> {
    #[derive(PartialEq)]
    enum Ctx {
        Paren,
        Labels,
    }
    let toks = lex(expr)?;
    let mut reads = Reads::default();
    let mut stack = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let next = toks.get(i + 1);
        match &toks[i] {
            Tok::Ident(id) if KEYWORDS.contains(&id.as_str()) => {
                if ["by", "without", "on", "ignoring"].contains(&id.as_str()) {
                    if next != Some(&Tok::Punct('(')) {
                        return Err(format!("{id} without a label list in {expr}"));
                    }
                    stack.push(Ctx::Labels);
                    i += 1;
                }
            }
            Tok::Ident(id) if stack.last() == Some(&Ctx::Labels) => {
                reads.labels.insert(id.clone());
            }
            Tok::Ident(id)
                if next == Some(&Tok::Punct('('))
                    || matches!(next, Some(Tok::Ident(k)) if k == "by" || k == "without") =>
            {
                reads.functions.insert(id.clone());
                if ["rate", "irate", "increase"].contains(&id.as_str()) {
                    // f(metric{...}[range])
                    let close = (i + 2..toks.len()).find(|j| toks[*j] == Tok::Punct(')'));
                    match close.map(|j| &toks[j - 1]) {
                        Some(Tok::Range(_)) => {}
                        _ => return Err(format!("{id} without a range in {expr}")),
                    }
                }
            }
            Tok::Ident(id) => {
                reads.metrics.insert(id.clone());
                if next == Some(&Tok::Punct('{')) {
                    i += 2;
                    let mut matchers = 0;
                    loop {
                        match (toks.get(i), toks.get(i + 1), toks.get(i + 2)) {
                            (Some(Tok::Ident(l)), Some(Tok::Op(op)), Some(Tok::Str(_)))
                                if ["=", "!=", "=~", "!~"].contains(&op.as_str()) =>
                            {
                                reads.labels.insert(l.clone());
                                matchers += 1;
                                i += 3;
                            }
                            _ => return Err(format!("a bad matcher in {expr}")),
                        }
                        match toks.get(i) {
                            Some(Tok::Punct(',')) => i += 1,
                            Some(Tok::Punct('}')) => break,
                            _ => return Err(format!("an unclosed selector in {expr}")),
                        }
                    }
                    if matchers == 0 {
                        return Err(format!("an empty selector in {expr}"));
                    }
                }
            }
            Tok::Punct('{') => return Err(format!("a selector without a metric in {expr}")),
            Tok::Punct('}') => return Err(format!("an unbalanced }} in {expr}")),
            Tok::Punct('(') => stack.push(Ctx::Paren),
            Tok::Punct(')') => {
                if stack.pop().is_none() {
                    return Err(format!("an unbalanced ) in {expr}"));
                }
            }
            Tok::Range(r) => {
                if r.is_empty() {
                    return Err(format!("an empty range in {expr}"));
                }
                reads.ranges.push(r.clone());
            }
            Tok::Str(_) => return Err(format!("a string outside a selector in {expr}")),
            Tok::Num(_) | Tok::Op(_) | Tok::Punct(_) => {}
        }
        i += 1;
    }
    if !stack.is_empty() {
        return Err(format!("an unclosed ( in {expr}"));
    }
    Ok(reads)
}

pub(super) fn is_duration(s: &str) -> bool {
    let mut rest = s;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
        parts += 1;
    }
    parts > 0
}

#[test]
fn the_promql_checker_catches_mistakes() {
    let ok = r#"sum by (le) (irate(response_latency_ms_bucket{direction="inbound"}[1m]))"#;
    let reads = check_promql(ok).expect("valid");
    assert!(reads.metrics.contains("response_latency_ms_bucket"));
    assert!(reads.labels.contains("le") && reads.labels.contains("direction"));
    for bad in [
        "sum(rate(response_total{}[1m]))",
        r#"sum(rate({direction="inbound"}[1m]))"#,
        r#"sum(rate(response_total{direction="inbound"}[1m])"#,
        r#"sum(rate(response_total{direction="inbound"}[1m])))"#,
        r#"sum(rate(response_total{direction="inbound"}))"#,
        r#"sum(rate(response_total{direction="inbound",}[1m]))"#,
        r#"sum(rate(response_total{direction="inbound}[1m]))"#,
        "sum(rate(response_total[]))",
    ] {
        assert!(check_promql(bad).is_err(), "accepted {bad}");
    }
    assert!(is_duration("1m") && is_duration("1m30s") && is_duration("1500ms"));
    assert!(!is_duration("") && !is_duration("1") && !is_duration("m") && !is_duration("1q"));
}
