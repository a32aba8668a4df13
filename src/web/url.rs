//! Request-target handling: percent-decoding of path segments and query strings.

/// Decodes `%XX` escapes (and, when `plus_is_space`, `+` as a space, as HTML forms send
/// queries). Invalid escapes are kept literally; invalid UTF-8 is replaced.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                    std::str::from_utf8(h)
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                });
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes a string for use as one path segment (UIDs, patient IDs).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A request target split into decoded path segments and query pairs.
#[derive(Debug, PartialEq)]
pub struct Target {
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
}

impl Target {
    pub fn parse(url: &str) -> Target {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let segments = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode(s, false))
            .collect();
        let query = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k, true), percent_decode(v, true))
            })
            .collect();
        Target { segments, query }
    }

    /// The first value of a query parameter, trimmed; None when absent or empty.
    pub fn param(&self, name: &str) -> Option<String> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_segments_and_queries() {
        let t = Target::parse("/patients/PAT%2001%2F2/?q=a+b%26c&date=&x");
        assert_eq!(t.segments, ["patients", "PAT 01/2"]);
        assert_eq!(t.param("q").as_deref(), Some("a b&c"));
        assert_eq!(t.param("date"), None);
        assert_eq!(t.param("x"), None);
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%zz%4", false), "%zz%4");
        assert_eq!(percent_decode("a+b", false), "a+b");
    }

    #[test]
    fn encode_round_trips() {
        for s in ["1.2.840.113619.2.55", "PAT 01/<x>", "Ünïcode?&#"] {
            assert_eq!(percent_decode(&encode_segment(s), false), s);
        }
        assert_eq!(encode_segment("1.2.3"), "1.2.3");
    }
}
