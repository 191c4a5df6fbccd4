//! A parser for the Prometheus text exposition format: what
//! prometheus-client emits, plus what other exporters emit (comments,
//! `# HELP`/`# TYPE`, escaped label values, timestamps, `+Inf`/`-Inf`/`NaN`,
//! blank lines, OpenMetrics' `# EOF`, exemplars and quoted UTF-8 names).
//!
//! The input is untrusted (any pod can serve anything on its admin port), so
//! the parser is bounded: the caller gives the input size limit, a line may
//! not exceed [`MAX_LINE_BYTES`] and a sample may not carry more than
//! [`MAX_LABELS`] labels. It works on bytes and never panics; an error names
//! the line and what is wrong with it.

use std::borrow::Cow;

/// The longest line accepted, in bytes (without its newline). A proxy's
/// longest line is a few hundred bytes (a histogram bucket with two
/// identities); 64 KiB leaves room for any sane exporter.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The most labels one sample may carry. Linkerd's proxy emits at most 16.
pub const MAX_LABELS: usize = 64;

/// One sample line, borrowing from the input where no unescaping was needed.
#[derive(Clone, Debug, PartialEq)]
pub struct TextSample<'a> {
    /// The metric name, e.g. `response_latency_ms_bucket`.
    pub name: Cow<'a, str>,
    /// The labels in the order written; names are unique.
    pub labels: Vec<Label<'a>>,
    /// The value, possibly `NaN` or infinite.
    pub value: f64,
    /// The sample's own timestamp in milliseconds since the epoch, when it
    /// has one (OpenMetrics' seconds are converted).
    pub timestamp_ms: Option<i64>,
}

/// One `name="value"` pair, unescaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label<'a> {
    /// The label's name, e.g. `direction`.
    pub name: Cow<'a, str>,
    /// Its value with `\\`, `\"` and `\n` unescaped.
    pub value: Cow<'a, str>,
}

/// Why an exposition was rejected. Nothing of a rejected exposition should
/// be used, as Prometheus drops a whole scrape that fails to parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The input is over the caller's limit (both in bytes).
    #[error("the exposition is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    /// A line is too long or malformed; `line` counts from 1.
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
}

/// What `# TYPE` may say: Prometheus text 0.0.4 and OpenMetrics types.
const METRIC_TYPES: [&str; 9] = [
    "counter",
    "gauge",
    "histogram",
    "summary",
    "untyped",
    "unknown",
    "info",
    "stateset",
    "gaugehistogram",
];

/// A cursor over one line.
struct Cursor<'a> {
    line: &'a [u8],
    /// The same line when it is valid UTF-8 (nearly always): names and
    /// values are sliced from it instead of being validated one by one.
    text: Option<&'a str>,
    pos: usize,
}

/// Parses `input` into its samples.
pub fn parse(input: &[u8], max_bytes: usize) -> Result<Vec<TextSample<'_>>, ParseError> {
    let mut out = Vec::new();
    for_each(input, max_bytes, |s| out.push(s))?;
    Ok(out)
}

/// Parses `input`, handing each sample to `f` in input order. On an error,
/// `f` has seen the samples before the bad line; callers that must not keep
/// a partial exposition collect first and commit after `Ok`.
pub fn for_each<'a>(
    input: &'a [u8],
    max_bytes: usize,
    f: impl FnMut(TextSample<'a>),
) -> Result<(), ParseError> {
    for_each_wanted(input, max_bytes, |_| true, f)
}

/// [`for_each`] for the samples whose metric name is `wanted`: the others
/// are skipped once their name is read (a valid name, but the rest of the
/// line is not checked), which makes reading a few families out of a large
/// exposition cheap.
pub fn for_each_wanted<'a>(
    input: &'a [u8],
    max_bytes: usize,
    wanted: impl Fn(&str) -> bool,
    mut f: impl FnMut(TextSample<'a>),
) -> Result<(), ParseError> {
    if input.len() > max_bytes {
        return Err(ParseError::TooLarge {
            size: input.len(),
            limit: max_bytes,
        });
    }
    for (i, raw) in input.split(|b| *b == b'\n').enumerate() {
        let line = i + 1;
        let err = |reason: String| ParseError::Line { line, reason };
        if raw.len() > MAX_LINE_BYTES {
            return Err(err(format!(
                "the line is {} bytes, over the {MAX_LINE_BYTES}-byte limit",
                raw.len()
            )));
        }
        // Tolerate CRLF line endings from exporters running on Windows.
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let mut cur = Cursor {
            line: raw,
            text: std::str::from_utf8(raw).ok(),
            pos: 0,
        };
        cur.skip_blanks();
        match cur.peek() {
            None => continue,
            Some(b'#') => {
                if comment(&mut cur).map_err(err)? == Comment::Eof {
                    return Ok(());
                }
            }
            Some(b'{') => f(sample(&mut cur).map_err(err)?),
            Some(_) => {
                let mut name = Cursor {
                    line: cur.line,
                    text: cur.text,
                    pos: cur.pos,
                };
                if wanted(name.metric_name().map_err(err)?) {
                    f(sample(&mut cur).map_err(err)?);
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Comment {
    Eof,
    Other,
}

/// `# HELP name text`, `# TYPE name type`, `# EOF` or any other comment.
fn comment(cur: &mut Cursor<'_>) -> Result<Comment, String> {
    cur.pos += 1;
    cur.skip_blanks();
    let keyword = cur.take_while(|b| !is_blank(b));
    match keyword {
        b"EOF" if cur.rest_is_blank() => Ok(Comment::Eof),
        b"HELP" | b"TYPE" => {
            let keyword = if keyword == b"HELP" { "HELP" } else { "TYPE" };
            cur.skip_blanks();
            if cur.peek().is_none() {
                return Err(format!("# {keyword} without a metric name"));
            }
            let name = cur.metric_name_or_quoted()?;
            if keyword == "TYPE" {
                cur.skip_blanks();
                let ty = cur.take_while(|b| !is_blank(b));
                let known = METRIC_TYPES.iter().any(|t| t.as_bytes() == ty);
                if !known || !cur.rest_is_blank() {
                    return Err(format!(
                        "# TYPE {name}: unknown type {:?}",
                        String::from_utf8_lossy(ty)
                    ));
                }
            }
            Ok(Comment::Other)
        }
        _ => Ok(Comment::Other),
    }
}

/// `name{labels} value [timestamp] [# exemplar]`, or `{"name", labels} ...`.
fn sample<'a>(cur: &mut Cursor<'a>) -> Result<TextSample<'a>, String> {
    let mut name = if cur.peek() == Some(b'{') {
        None
    } else {
        Some(Cow::Borrowed(cur.metric_name()?))
    };
    let mut labels = Vec::new();
    let mut blank = cur.skip_blanks();
    if cur.peek() == Some(b'{') {
        cur.pos += 1;
        label_set(cur, &mut name, &mut labels)?;
        blank = cur.skip_blanks();
    }
    let Some(name) = name else {
        return Err("a sample without a metric name".into());
    };
    if !blank || cur.peek().is_none() {
        return Err(match cur.peek() {
            None => format!("{name}: no value"),
            Some(b) => format!(
                "{name}: unexpected {:?} after the metric name",
                char::from(b)
            ),
        });
    }
    let value = cur.take_while(|b| !is_blank(b));
    let value = parse_float(value)
        .ok_or_else(|| format!("{name}: invalid value {:?}", String::from_utf8_lossy(value)))?;
    cur.skip_blanks();
    let mut timestamp_ms = None;
    if let Some(b) = cur.peek()
        && b != b'#'
    {
        let ts = cur.take_while(|b| !is_blank(b));
        timestamp_ms = Some(parse_timestamp(ts).ok_or_else(|| {
            format!(
                "{name}: invalid timestamp {:?}",
                String::from_utf8_lossy(ts)
            )
        })?);
        cur.skip_blanks();
    }
    // What may follow is an OpenMetrics exemplar (`# {trace_id="..."} 1`),
    // which is of no use here.
    match cur.peek() {
        None | Some(b'#') => Ok(TextSample {
            name,
            labels,
            value,
            timestamp_ms,
        }),
        Some(_) => Err(format!(
            "{name}: unexpected {:?} after the value",
            String::from_utf8_lossy(&cur.line[cur.pos..])
        )),
    }
}

/// The inside of `{...}`, after the `{`; consumes the `}`.
fn label_set<'a>(
    cur: &mut Cursor<'a>,
    name: &mut Option<Cow<'a, str>>,
    labels: &mut Vec<Label<'a>>,
) -> Result<(), String> {
    loop {
        cur.skip_blanks();
        match cur.peek() {
            Some(b'}') => {
                cur.pos += 1;
                return Ok(());
            }
            None => return Err("a label set without its closing '}'".into()),
            Some(_) => {}
        }
        let key = if cur.peek() == Some(b'"') {
            cur.pos += 1;
            cur.quoted()?
        } else {
            Cow::Borrowed(cur.label_name()?)
        };
        cur.skip_blanks();
        if cur.peek() == Some(b'=') {
            cur.pos += 1;
            cur.skip_blanks();
            if cur.peek() != Some(b'"') {
                return Err(format!("label {key}: the value is not quoted"));
            }
            cur.pos += 1;
            let value = cur.quoted()?;
            if labels.iter().any(|l: &Label<'_>| l.name == key) {
                return Err(format!("label {key} appears twice"));
            }
            if labels.len() == MAX_LABELS {
                return Err(format!("more than {MAX_LABELS} labels"));
            }
            labels.push(Label { name: key, value });
        } else if name.is_none() && labels.is_empty() {
            // `{"metric.name", ...}`: a UTF-8 metric name in the braces.
            *name = Some(key);
        } else {
            return Err(format!("expected '=' after label name {key}"));
        }
        cur.skip_blanks();
        match cur.peek() {
            Some(b',') => cur.pos += 1,
            Some(b'}') => {}
            None => return Err("a label set without its closing '}'".into()),
            Some(b) => {
                return Err(format!("unexpected {:?} in the label set", char::from(b)));
            }
        }
    }
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Splits a line into its text up to the value (a sample's name and
/// labels, which stay the same from one scrape to the next) and its value
/// token, without checking either: a blank line, a comment, or a line with
/// no value is all head. The full parser ([`for_each`]) says what is wrong
/// with a line.
pub fn split_sample(raw: &[u8]) -> (&[u8], Option<&[u8]>) {
    let start = raw.iter().position(|b| !is_blank(*b)).unwrap_or(raw.len());
    if raw.get(start) == Some(&b'#') {
        return (raw, None);
    }
    // A value or timestamp never holds '}', so the last one ends the labels.
    let end = match raw.iter().rposition(|b| *b == b'}') {
        Some(i) => i + 1,
        None => raw[start..]
            .iter()
            .position(|b| is_blank(*b))
            .map_or(raw.len(), |i| start + i),
    };
    let rest = &raw[end..];
    let v_start = rest
        .iter()
        .position(|b| !is_blank(*b))
        .unwrap_or(rest.len());
    let v_len = rest[v_start..]
        .iter()
        .position(|b| is_blank(*b))
        .unwrap_or(rest.len() - v_start);
    let value = &rest[v_start..v_start + v_len];
    (&raw[..end], (!value.is_empty()).then_some(value))
}

/// A sample's value, as the full parser reads it.
pub fn parse_value(value: &[u8]) -> Option<f64> {
    parse_float(value)
}

/// Go's `strconv.ParseFloat` spellings that matter: decimals, exponents,
/// `+Inf`, `-Inf`, `NaN` (any case), which Rust's parser also accepts.
fn parse_float(s: &[u8]) -> Option<f64> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Milliseconds (text 0.0.4) or, when it has a fraction, seconds
/// (OpenMetrics).
fn parse_timestamp(s: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(s).ok()?;
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    let secs: f64 = s.parse().ok()?;
    let ms = (secs * 1000.0).round();
    // `as` saturates; reject what it would clamp.
    (ms.is_finite() && ms.abs() < 9.0e18).then_some(ms as i64)
}

// === impl Cursor ===

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.line.get(self.pos).copied()
    }

    /// Skips spaces and tabs; whether there were any.
    fn skip_blanks(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(is_blank) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn rest_is_blank(&self) -> bool {
        self.line[self.pos.min(self.line.len())..]
            .iter()
            .all(|b| is_blank(*b))
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let line = self.line;
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &line[start..self.pos]
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`
    fn metric_name(&mut self) -> Result<&'a str, String> {
        self.ident(true)
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`
    fn label_name(&mut self) -> Result<&'a str, String> {
        self.ident(false)
    }

    fn metric_name_or_quoted(&mut self) -> Result<Cow<'a, str>, String> {
        if self.peek() == Some(b'"') {
            self.pos += 1;
            self.quoted()
        } else {
            self.metric_name().map(Cow::Borrowed)
        }
    }

    fn ident(&mut self, colons: bool) -> Result<&'a str, String> {
        let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || (colons && b == b':');
        let first = self.peek();
        let what = if colons { "metric" } else { "label" };
        match first {
            Some(b) if ok(b) && !b.is_ascii_digit() => {}
            Some(b) => {
                return Err(format!(
                    "a {what} name cannot start with {:?}",
                    char::from(b)
                ));
            }
            None => return Err(format!("a {what} name is missing")),
        }
        let start = self.pos;
        let name = self.take_while(ok);
        // Only ASCII was taken, so this cannot fail; no panic either way.
        match self.text.and_then(|t| t.get(start..self.pos)) {
            Some(name) => Ok(name),
            None => std::str::from_utf8(name).map_err(|e| e.to_string()),
        }
    }

    /// A quoted string's contents after its opening `"`; consumes the
    /// closing one. `\\`, `\"` and `\n` are unescaped; any other escape is
    /// kept as written, as Prometheus's own parser does.
    fn quoted(&mut self) -> Result<Cow<'a, str>, String> {
        let line = self.line;
        let start = self.pos;
        let mut escaped = false;
        loop {
            match self.peek() {
                None => return Err("a quoted string without its closing '\"'".into()),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 2;
                }
                Some(_) => self.pos += 1,
            }
        }
        let raw = &line[start..self.pos];
        let end = self.pos;
        self.pos += 1;
        let text = match self.text.and_then(|t| t.get(start..end)) {
            Some(text) => text,
            None => std::str::from_utf8(raw)
                .map_err(|_| "a quoted string is not valid UTF-8".to_string())?,
        };
        if !escaped {
            return Ok(Cow::Borrowed(text));
        }
        let mut out = String::with_capacity(text.len());
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some('n') => out.push('\n'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        }
        Ok(Cow::Owned(out))
    }
}

#[cfg(test)]
mod tests;
