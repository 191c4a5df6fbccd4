//! Routes from a protobuf file (`strand profile --proto`): one per rpc of
//! every service, `POST /<package>.<Service>/<Method>` as gRPC calls it,
//! as `linkerd profile --proto` makes them.
//!
//! Not a protobuf compiler: it reads what routes need (the package, the
//! service blocks and their rpcs) and skips every other statement whole,
//! braces balanced, so messages, enums, options and imports may hold
//! anything well-formed. Comments and string literals are understood, so
//! neither can hide or fake a brace.

use super::literal_regex;
use anyhow::bail;
use std::fmt;
use strand_controller_core::{ProfileRoute, RequestMatch};

/// The method of every gRPC call.
const GRPC_METHOD: &str = "POST";

/// A service of the file and its rpcs' names, in file order.
#[derive(Debug, PartialEq, Eq)]
struct Service {
    name: String,
    rpcs: Vec<String>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Tok<'a> {
    /// Identifiers, dotted names and numbers.
    Word(&'a str),
    /// A string literal (its value does not matter here).
    Str,
    Punct(char),
}

#[derive(Copy, Clone, Debug)]
struct Token<'a> {
    tok: Tok<'a>,
    /// 1-based.
    line: usize,
}

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    at: usize,
}

/// The routes of every rpc of every service in the protobuf file `text`.
pub(super) fn routes(text: &str) -> anyhow::Result<Vec<ProfileRoute>> {
    let (package, services) = Parser::new(text)?.file()?;
    if services.is_empty() {
        bail!("no service is defined: a profile's routes are the rpcs of the file's services");
    }
    let mut routes = Vec::new();
    for service in &services {
        let full = match &package {
            Some(p) => format!("{p}.{}", service.name),
            None => service.name.clone(),
        };
        for rpc in &service.rpcs {
            let path = format!("/{full}/{rpc}");
            routes.push(ProfileRoute {
                name: format!("{GRPC_METHOD} {path}"),
                condition: RequestMatch {
                    method: Some(GRPC_METHOD.to_string()),
                    path_regex: Some(literal_regex(&path)),
                    ..RequestMatch::default()
                },
                response_classes: Vec::new(),
                is_retryable: None,
                timeout: None,
            });
        }
    }
    if routes.is_empty() {
        let names: Vec<_> = services.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "the file's services ({}) have no rpcs: there is nothing to make routes of",
            names.join(", ")
        );
    }
    Ok(routes)
}

/// Splits `text` into tokens, dropping whitespace and comments.
fn tokenize(text: &str) -> anyhow::Result<Vec<Token<'_>>> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        match b {
            b'\n' => {
                line += 1;
                i += 1;
            }
            _ if b.is_ascii_whitespace() => i += 1,
            b'/' if next == Some(b'/') => {
                i = memchr(b'\n', bytes, i).unwrap_or(bytes.len());
            }
            b'/' if next == Some(b'*') => {
                let Some(end) = text[i + 2..].find("*/") else {
                    bail!("line {line}: a /* comment is not closed");
                };
                let end = i + 2 + end + 2;
                line += bytes[i..end].iter().filter(|&&b| b == b'\n').count();
                i = end;
            }
            b'"' | b'\'' => {
                let start = line;
                i += 1;
                loop {
                    match bytes.get(i) {
                        None | Some(b'\n') => bail!("line {start}: a string is not closed"),
                        Some(b'\\') => i += 2,
                        Some(&c) if c == b => break,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
                tokens.push(Token {
                    tok: Tok::Str,
                    line: start,
                });
            }
            _ if is_word_byte(b) => {
                let len = bytes[i..].iter().take_while(|&&b| is_word_byte(b)).count();
                tokens.push(Token {
                    tok: Tok::Word(&text[i..i + len]),
                    line,
                });
                i += len;
            }
            _ => {
                let c = text[i..].chars().next().expect("i is within the text");
                tokens.push(Token {
                    tok: Tok::Punct(c),
                    line,
                });
                i += c.len_utf8();
            }
        }
    }
    Ok(tokens)
}

fn memchr(needle: u8, bytes: &[u8], from: usize) -> Option<usize> {
    bytes[from..]
        .iter()
        .position(|&b| b == needle)
        .map(|i| from + i)
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

/// A protobuf identifier: a letter or `_`, then letters, digits, `_`.
fn is_ident(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

// === impl Tok ===

impl fmt::Display for Tok<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Word(w) => write!(f, "`{w}`"),
            Tok::Str => f.write_str("a string"),
            Tok::Punct(c) => write!(f, "`{c}`"),
        }
    }
}

// === impl Parser ===

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> anyhow::Result<Self> {
        Ok(Self {
            tokens: tokenize(text)?,
            at: 0,
        })
    }

    /// The package (if any) and the services, wherever they are in the
    /// file: a package names everything in its file.
    fn file(&mut self) -> anyhow::Result<(Option<String>, Vec<Service>)> {
        let mut package: Option<(String, usize)> = None;
        let mut services = Vec::new();
        while let Some(t) = self.next() {
            match t.tok {
                Tok::Word("package") => {
                    let name = self.word("a package name after `package`")?;
                    if !name.split('.').all(is_ident) {
                        bail!("line {}: {name:?} is not a package name", t.line);
                    }
                    self.expect(';', "after the package name")?;
                    if let Some((_, first)) = package {
                        bail!(
                            "line {}: a second package statement (the first is on line {first})",
                            t.line
                        );
                    }
                    package = Some((name.to_string(), t.line));
                }
                Tok::Word("service") => services.push(self.service()?),
                Tok::Punct('}') => bail!("line {}: this `}}` closes nothing", t.line),
                _ => self.skip_statement(t)?,
            }
        }
        Ok((package.map(|(name, _)| name), services))
    }

    /// After `service`: `Name { rpc ...; option ...; }`.
    fn service(&mut self) -> anyhow::Result<Service> {
        let name = self.word("a service name after `service`")?;
        let line = self.line();
        if !is_ident(name) {
            bail!("line {line}: {name:?} is not a service name");
        }
        self.expect('{', &format!("after `service {name}`"))?;
        let mut rpcs = Vec::new();
        loop {
            let Some(t) = self.next() else {
                bail!("line {line}: service {name}'s `{{` is not closed");
            };
            match t.tok {
                Tok::Punct('}') => break,
                Tok::Word("rpc") => rpcs.push(self.rpc()?),
                _ => self.skip_statement(t)?,
            }
        }
        Ok(Service {
            name: name.to_string(),
            rpcs,
        })
    }

    /// After `rpc`: `Name ([stream] Request) returns ([stream] Response)`,
    /// then `;` or a block of options.
    fn rpc(&mut self) -> anyhow::Result<String> {
        let name = self.word("an rpc name after `rpc`")?;
        let line = self.line();
        if !is_ident(name) {
            bail!("line {line}: {name:?} is not an rpc name");
        }
        self.message_type(name, "request")?;
        match self.next() {
            Some(Token {
                tok: Tok::Word("returns"),
                ..
            }) => {}
            other => bail!(
                "line {}: expected `returns` after rpc {name}'s request type, found {}",
                self.line(),
                found(other)
            ),
        }
        self.message_type(name, "response")?;
        match self.next() {
            Some(Token {
                tok: Tok::Punct(';'),
                ..
            }) => {}
            Some(
                t @ Token {
                    tok: Tok::Punct('{'),
                    ..
                },
            ) => self.skip_statement(t)?,
            other => bail!(
                "line {}: expected `;` or `{{` after rpc {name}'s response type, found {}",
                self.line(),
                found(other)
            ),
        }
        Ok(name.to_string())
    }

    /// `( [stream] Type )`; a message may itself be called `stream`.
    fn message_type(&mut self, rpc: &str, which: &str) -> anyhow::Result<()> {
        self.expect('(', &format!("before rpc {rpc}'s {which} type"))?;
        let line = self.line();
        let mut words = Vec::new();
        loop {
            match self.next() {
                Some(Token {
                    tok: Tok::Word(w), ..
                }) => words.push(w),
                Some(Token {
                    tok: Tok::Punct(')'),
                    ..
                }) => break,
                other => bail!(
                    "line {}: expected `)` after rpc {rpc}'s {which} type, found {}",
                    self.line(),
                    found(other)
                ),
            }
        }
        match words[..] {
            [_] | ["stream", _] => Ok(()),
            _ => bail!(
                "line {line}: rpc {rpc}'s {which} type is `({})`: expected `(Type)` or \
                 `(stream Type)`",
                words.join(" ")
            ),
        }
    }

    /// Skips the statement that `first` starts: to its `;`, or to the end
    /// of its `{ ... }` block, braces balanced. A `}` that closes the
    /// enclosing block ends it too (and is left for the caller).
    fn skip_statement(&mut self, first: Token<'a>) -> anyhow::Result<()> {
        let mut depth = 0usize;
        let mut t = first;
        loop {
            match t.tok {
                Tok::Punct(';') if depth == 0 => return Ok(()),
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') if depth == 0 => {
                    self.at -= 1;
                    return Ok(());
                }
                Tok::Punct('}') => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => {}
            }
            t = match self.next() {
                Some(t) => t,
                None if depth > 0 => bail!(
                    "line {}: a `{{` in the statement starting here is not closed",
                    first.line
                ),
                None => bail!(
                    "line {}: the statement starting here has no `;` before the end of the file",
                    first.line
                ),
            };
        }
    }

    fn next(&mut self) -> Option<Token<'a>> {
        let t = self.tokens.get(self.at).copied();
        self.at += usize::from(t.is_some());
        t
    }

    /// The line of the last token read (or of the end of the file).
    fn line(&self) -> usize {
        let last = self.at.min(self.tokens.len()).checked_sub(1);
        last.and_then(|i| self.tokens.get(i)).map_or(1, |t| t.line)
    }

    fn word(&mut self, what: &str) -> anyhow::Result<&'a str> {
        match self.next() {
            Some(Token {
                tok: Tok::Word(w), ..
            }) => Ok(w),
            other => bail!(
                "line {}: expected {what}, found {}",
                self.line(),
                found(other)
            ),
        }
    }

    fn expect(&mut self, punct: char, context: &str) -> anyhow::Result<()> {
        match self.next() {
            Some(t) if t.tok == Tok::Punct(punct) => Ok(()),
            other => bail!(
                "line {}: expected `{punct}` {context}, found {}",
                self.line(),
                found(other)
            ),
        }
    }
}

fn found(t: Option<Token<'_>>) -> String {
    t.map_or_else(|| "the end of the file".to_string(), |t| t.tok.to_string())
}

#[cfg(test)]
mod tests;
