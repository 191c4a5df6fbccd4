//! `--other-proxy NAME=COMMAND`: any proxy binary, measured like nginx. The
//! command is split into words as a shell would (quotes, no expansion) and
//! its placeholders filled in per instance; it runs without a shell so that
//! the process measured is the proxy itself.

use anyhow::bail;

/// A proxy given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtherProxy {
    /// The scenario name, in the table and for `--scenarios`.
    pub name: String,
    /// The command's words, placeholders not yet filled in.
    words: Vec<String>,
}

const PLACEHOLDERS: [&str; 4] = ["{listen}", "{listen_port}", "{upstream}", "{upstream_port}"];

// === impl OtherProxy ===

impl OtherProxy {
    /// Parses `NAME=COMMAND` (clap's value parser for `--other-proxy`).
    pub fn parse(arg: &str) -> Result<OtherProxy, String> {
        let Some((name, template)) = arg.split_once('=') else {
            return Err(format!("{arg:?} is not NAME=COMMAND"));
        };
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(format!(
                "{name:?} is not a valid name (letters, digits, '-' and '_')"
            ));
        }
        let words = split_words(template).map_err(|e| e.to_string())?;
        if words.is_empty() {
            return Err(format!("the command for {name:?} is empty"));
        }
        let has = |ps: &[&str]| words.iter().any(|w| ps.iter().any(|p| w.contains(p)));
        if !has(&PLACEHOLDERS[..2]) || !has(&PLACEHOLDERS[2..]) {
            return Err(format!(
                "the command for {name:?} must say where to listen ({{listen}} or {{listen_port}}) \
                 and where to forward ({{upstream}} or {{upstream_port}})"
            ));
        }
        Ok(OtherProxy {
            name: name.to_string(),
            words,
        })
    }

    /// The command line of an instance listening on `0.0.0.0:listen` and
    /// forwarding to `127.0.0.1:upstream`.
    pub fn command_line(&self, listen: u16, upstream: u16) -> Vec<String> {
        let values = [
            format!("0.0.0.0:{listen}"),
            listen.to_string(),
            format!("127.0.0.1:{upstream}"),
            upstream.to_string(),
        ];
        self.words
            .iter()
            .map(|word| {
                PLACEHOLDERS
                    .iter()
                    .zip(&values)
                    .fold(word.clone(), |w, (p, v)| w.replace(p, v))
            })
            .collect()
    }
}

/// Splits `text` into words at unquoted whitespace; single quotes keep
/// everything literally, double quotes keep whitespace, a backslash outside
/// single quotes escapes the next character.
fn split_words(text: &str) -> anyhow::Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                words.extend(word.take());
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => bail!("unterminated ' in {text:?}"),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => w.extend(chars.next()),
                        Some(c) => w.push(c),
                        None => bail!("unterminated \" in {text:?}"),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(split_words("a  b\tc").unwrap(), ["a", "b", "c"]);
        assert_eq!(split_words("a 'b c' \"d e\"").unwrap(), ["a", "b c", "d e"]);
        assert_eq!(split_words("a\\ b ''").unwrap(), ["a b", ""]);
        assert_eq!(split_words("x=\"1 2\"3").unwrap(), ["x=1 23"]);
        assert!(split_words("a 'b").is_err());
        assert!(split_words("").unwrap().is_empty());
    }

    #[test]
    fn fills_in_placeholders() {
        let p =
            OtherProxy::parse("socat=socat TCP-LISTEN:{listen_port},fork,reuseaddr TCP:{upstream}")
                .unwrap();
        assert_eq!(p.name, "socat");
        assert_eq!(
            p.command_line(8083, 8080),
            [
                "socat",
                "TCP-LISTEN:8083,fork,reuseaddr",
                "TCP:127.0.0.1:8080"
            ]
        );
        let p = OtherProxy::parse("x=/opt/x --from '{listen}' --to {upstream_port}").unwrap();
        assert_eq!(
            p.command_line(8084, 9090),
            ["/opt/x", "--from", "0.0.0.0:8084", "--to", "9090"]
        );
    }

    #[test]
    fn rejects_bad_definitions() {
        assert!(OtherProxy::parse("noequals").is_err());
        assert!(OtherProxy::parse("=cmd {listen} {upstream}").is_err());
        assert!(OtherProxy::parse("a b=cmd {listen} {upstream}").is_err());
        assert!(OtherProxy::parse("x=").is_err());
        let err = OtherProxy::parse("x=cmd {listen}").unwrap_err();
        assert!(err.contains("where to forward"), "{err}");
    }
}
