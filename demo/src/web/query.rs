//! Query-string parsing for `/api/vote?choice=`: a browser's
//! `encodeURIComponent` sends `:doughnut:` as `%3Adoughnut%3A`, emojivoto's
//! vote-bot sends it raw; both must work.

/// The percent-decoded value of the first `key=value` pair in `query`.
pub(super) fn param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| decode(k) == key)
        .map(|(_, v)| decode(v))
}

/// Decodes `%XX` escapes and `+` (a space in form encoding); a malformed
/// escape is kept as it is, and invalid UTF-8 becomes U+FFFD.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                // `from_str_radix` alone would accept a sign, as in "%+1".
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params() {
        assert_eq!(param("choice=:joy:", "choice").as_deref(), Some(":joy:"));
        assert_eq!(
            param("x=1&choice=%3Adoughnut%3a&choice=:joy:", "choice").as_deref(),
            Some(":doughnut:")
        );
        assert_eq!(param("choice", "choice").as_deref(), Some(""));
        assert_eq!(param("choices=1", "choice"), None);
        assert_eq!(param("", "choice"), None);
        assert_eq!(param("c=a+b%20c", "c").as_deref(), Some("a b c"));
        assert_eq!(param("c=100%", "c").as_deref(), Some("100%"));
        assert_eq!(param("c=%zz%4", "c").as_deref(), Some("%zz%4"));
        assert_eq!(param("c=%+1", "c").as_deref(), Some("% 1"));
        assert_eq!(param("c=%F0%9F%8D%A9", "c").as_deref(), Some("🍩"));
    }
}
