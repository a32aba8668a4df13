//! Access control: a bearer token, or HTTP basic auth checked against a SHA-256 hash.
//! Secrets are compared as SHA-256 digests in constant time.

use sha2::{Digest, Sha256};

use crate::config::WebConfig;

/// Constant-time equality of two digests.
fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn hex_to_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Standard base64 (RFC 4648, with or without padding); None on any invalid character.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Whether a request with this `Authorization` header value may read the page.
/// Always true when no authentication is configured (loopback only, see
/// `WebConfig::validate`).
pub fn authorized(config: &WebConfig, authorization: Option<&str>) -> bool {
    if !config.auth_configured() {
        return true;
    }
    let Some(value) = authorization.map(str::trim) else {
        return false;
    };
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    let credentials = credentials.trim();
    let token_ok = |candidate: &[u8]| {
        config
            .token
            .as_ref()
            .is_some_and(|t| digest_eq(&sha256(candidate), &sha256(t.as_bytes())))
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        return token_ok(credentials.as_bytes());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Some(decoded) = base64_decode(credentials) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return false;
    };
    let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
    // The token also works as the password of the browser's login prompt.
    if token_ok(password) {
        return true;
    }
    match (&config.basic_user, &config.basic_password_sha256) {
        (Some(u), Some(h)) => {
            let Some(expected) = hex_to_digest(&h.to_ascii_lowercase()) else {
                return false;
            };
            // Evaluate both comparisons, so timing does not reveal which one failed.
            let user_ok = digest_eq(&sha256(user), &sha256(u.as_bytes()));
            let password_ok = digest_eq(&sha256(password), &expected);
            user_ok & password_ok
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(token: Option<&str>, basic: Option<(&str, &str)>) -> WebConfig {
        WebConfig {
            listen: "0.0.0.0:8080".into(),
            mask_patient_ids: false,
            token: token.map(Into::into),
            basic_user: basic.map(|b| b.0.into()),
            basic_password_sha256: basic.map(|b| {
                Sha256::digest(b.1.as_bytes())
                    .iter()
                    .map(|x| format!("{x:02x}"))
                    .collect()
            }),
        }
    }

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI").unwrap(), b"ab");
        assert!(base64_decode("a*b").is_none());
    }

    #[test]
    fn open_without_auth_configured() {
        let mut c = config(None, None);
        c.listen = "127.0.0.1:8080".into();
        assert!(authorized(&c, None));
    }

    #[test]
    fn token_as_bearer_or_basic_password() {
        let c = config(Some("0123456789abcdef-token"), None);
        assert!(!authorized(&c, None));
        assert!(authorized(&c, Some("Bearer 0123456789abcdef-token")));
        assert!(!authorized(&c, Some("Bearer 0123456789abcdef-tokeN")));
        assert!(!authorized(&c, Some("Bearer ")));
        // "anyone:0123456789abcdef-token"
        let basic = "YW55b25lOjAxMjM0NTY3ODlhYmNkZWYtdG9rZW4=";
        assert!(authorized(&c, Some(&format!("Basic {basic}"))));
        assert!(!authorized(&c, Some("Digest x")));
    }

    #[test]
    fn basic_auth_checks_user_and_hashed_password() {
        let c = config(None, Some(("user", "pass")));
        assert!(authorized(&c, Some("Basic dXNlcjpwYXNz")));
        assert!(authorized(&c, Some("basic   dXNlcjpwYXNz")));
        // "user:wrong", "other:pass", no colon
        assert!(!authorized(&c, Some("Basic dXNlcjp3cm9uZw==")));
        assert!(!authorized(&c, Some("Basic b3RoZXI6cGFzcw==")));
        assert!(!authorized(&c, Some("Basic dXNlcg==")));
        assert!(!authorized(&c, Some("Bearer pass")));
    }
}
