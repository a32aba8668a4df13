//! Who is asking: the bearer token, or HTTP basic auth against the named users' Argon2id
//! hashes (`[[web.users]]`). Secrets and names are compared in constant time.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};

use crate::config::{Role, WebConfig};
use crate::dicom::header::sha256;
use crate::pem::base64_decode;

/// The user name the audit trail records for requests authenticated by `web.token`.
pub const TOKEN_USER: &str = "token";

/// How long a verified (user, password) pair is trusted without running Argon2 again.
const CACHE_TTL: Duration = Duration::from_secs(300);
/// Upper bound of cached pairs, so a flood of distinct good logins cannot grow memory.
const CACHE_MAX: usize = 1024;

/// Constant-time equality of two digests.
fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An Argon2id PHC string for `password` with a fresh random salt and the crate's
/// defaults (m = 19 MiB, t = 2, p = 1: OWASP's recommended minimum).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    // The appliance is Linux; /dev/urandom is the kernel CSPRNG, no extra crate needed.
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut salt)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(hash.to_string())
}

fn argon2_verify(password: &[u8], phc: &str) -> bool {
    // The parameters (memory, passes, lanes) come from the PHC string itself, so hashes
    // made with stronger settings later still verify.
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password, &h).is_ok())
}

/// A hash nobody knows the password of, verified for unknown user names so that a wrong
/// name costs as long as a wrong password (timing does not reveal which names exist).
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    // Only fails when /dev/urandom cannot be read; an empty decoy then fails fast.
    DECOY.get_or_init(|| {
        hash_password("lungwatch decoy: no one logs in with this").unwrap_or_default()
    })
}

/// Who a request is, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No authentication is configured (loopback only, see `WebConfig::validate`).
    Open,
    Granted(Identity),
    /// No credentials sent: the browser is asked for them; not a failed login.
    Missing,
    /// Credentials sent and wrong: a failed login. `user` is the name typed, if any.
    Denied {
        user: Option<String>,
    },
}

/// Checks credentials, remembering recent successes.
///
/// Argon2id is slow and memory-hard on purpose (about 20-50 ms and 19 MiB per check), and a
/// browser resends the basic-auth password with every request, including each preview
/// image of a study page: verifying every time would make pages take seconds and let a few
/// clients exhaust memory. So a successful check is remembered for [`CACHE_TTL`], keyed by
/// SHA-256 of (user, password, stored hash): the plaintext is never kept, a changed hash
/// in the config no longer matches, and only successes are cached, so every wrong guess
/// still pays the full Argon2 cost.
#[derive(Default)]
pub struct Verifier {
    verified: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Verifier {
    pub fn check(&self, config: &WebConfig, authorization: Option<&str>) -> Outcome {
        if !config.auth_configured() {
            return Outcome::Open;
        }
        let Some(value) = authorization.map(str::trim).filter(|v| !v.is_empty()) else {
            return Outcome::Missing;
        };
        let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
        let credentials = credentials.trim();
        let token_ok = |candidate: &[u8]| {
            config
                .token
                .as_ref()
                .is_some_and(|t| digest_eq(&sha256(candidate), &sha256(t.as_bytes())))
        };
        let token_identity = || Identity {
            user: TOKEN_USER.into(),
            role: Role::Viewer,
        };
        if scheme.eq_ignore_ascii_case("bearer") {
            return if token_ok(credentials.as_bytes()) {
                Outcome::Granted(token_identity())
            } else {
                Outcome::Denied { user: None }
            };
        }
        let denied = Outcome::Denied { user: None };
        if !scheme.eq_ignore_ascii_case("basic") {
            return denied;
        }
        let Some(decoded) = base64_decode(credentials) else {
            return denied;
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return denied;
        };
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        let typed = String::from_utf8_lossy(user).into_owned();
        // The token also works as the password of the browser's login prompt.
        if token_ok(password) {
            return Outcome::Granted(token_identity());
        }
        // Compare the name against every user, in constant time, without stopping early.
        let user_digest = sha256(user);
        let mut found = None;
        for u in &config.users {
            if digest_eq(&user_digest, &sha256(u.name.as_bytes())) {
                found = Some(u);
            }
        }
        let Some(u) = found else {
            argon2_verify(password, decoy_hash());
            return Outcome::Denied { user: Some(typed) };
        };
        let key = {
            let mut h = Sha256::new();
            for part in [u.name.as_bytes(), password, u.password_hash.as_bytes()] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part);
            }
            <[u8; 32]>::from(h.finalize())
        };
        let identity = Identity {
            user: u.name.clone(),
            role: u.role,
        };
        let now = Instant::now();
        {
            let cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if cache
                .get(&key)
                .is_some_and(|at| now.duration_since(*at) < CACHE_TTL)
            {
                return Outcome::Granted(identity);
            }
        }
        // Argon2 runs without the lock: other requests go on meanwhile.
        if !argon2_verify(password, &u.password_hash) {
            return Outcome::Denied { user: Some(typed) };
        }
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, at| now.duration_since(*at) < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, now);
        Outcome::Granted(identity)
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.verified.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WebUser;

    fn config(token: Option<&str>, users: &[(&str, &str, Role)]) -> WebConfig {
        WebConfig {
            listen: "0.0.0.0:8080".into(),
            mask_patient_ids: false,
            token: token.map(Into::into),
            users: users
                .iter()
                .map(|(n, p, r)| WebUser {
                    name: n.to_string(),
                    password_hash: hash_password(p).unwrap(),
                    role: *r,
                })
                .collect(),
            tls_cert: None,
            tls_key: None,
            allow_plain_http: true,
        }
    }

    #[test]
    fn hashes_are_salted_argon2id() {
        let a = hash_password("same").unwrap();
        let b = hash_password("same").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(argon2_verify(b"same", &a) && argon2_verify(b"same", &b));
        assert!(!argon2_verify(b"Same", &a));
        assert!(!argon2_verify(b"same", "not a phc string"));
    }

    #[test]
    fn open_without_auth_configured() {
        let mut c = config(None, &[]);
        c.listen = "127.0.0.1:8080".into();
        assert_eq!(Verifier::default().check(&c, None), Outcome::Open);
    }

    #[test]
    fn token_as_bearer_or_basic_password() {
        let v = Verifier::default();
        let c = config(Some("0123456789abcdef-token"), &[]);
        let granted = Outcome::Granted(Identity {
            user: TOKEN_USER.into(),
            role: Role::Viewer,
        });
        assert_eq!(v.check(&c, None), Outcome::Missing);
        assert_eq!(v.check(&c, Some("Bearer 0123456789abcdef-token")), granted);
        assert!(matches!(
            v.check(&c, Some("Bearer 0123456789abcdef-tokeN")),
            Outcome::Denied { .. }
        ));
        assert!(matches!(
            v.check(&c, Some("Bearer ")),
            Outcome::Denied { .. }
        ));
        // "anyone:0123456789abcdef-token"
        let basic = "YW55b25lOjAxMjM0NTY3ODlhYmNkZWYtdG9rZW4=";
        assert_eq!(v.check(&c, Some(&format!("Basic {basic}"))), granted);
        assert!(matches!(
            v.check(&c, Some("Digest x")),
            Outcome::Denied { .. }
        ));
    }

    #[test]
    fn users_by_name_with_roles_and_a_cache_of_successes_only() {
        let v = Verifier::default();
        let c = config(
            None,
            &[
                ("user", "pass", Role::Viewer),
                ("boss", "pass", Role::Admin),
            ],
        );
        let user = Outcome::Granted(Identity {
            user: "user".into(),
            role: Role::Viewer,
        });
        assert_eq!(v.check(&c, Some("Basic dXNlcjpwYXNz")), user);
        assert_eq!(v.check(&c, Some("basic   dXNlcjpwYXNz")), user);
        assert_eq!(v.cached(), 1, "the second check came from the cache");
        // "boss:pass"
        assert_eq!(
            v.check(&c, Some("Basic Ym9zczpwYXNz")),
            Outcome::Granted(Identity {
                user: "boss".into(),
                role: Role::Admin
            })
        );
        // "user:wrong", "other:pass", no colon
        assert_eq!(
            v.check(&c, Some("Basic dXNlcjp3cm9uZw==")),
            Outcome::Denied {
                user: Some("user".into())
            }
        );
        assert_eq!(
            v.check(&c, Some("Basic b3RoZXI6cGFzcw==")),
            Outcome::Denied {
                user: Some("other".into())
            }
        );
        assert_eq!(
            v.check(&c, Some("Basic dXNlcg==")),
            Outcome::Denied { user: None }
        );
        assert!(matches!(
            v.check(&c, Some("Bearer pass")),
            Outcome::Denied { .. }
        ));
        assert_eq!(v.cached(), 2, "failures are never cached");
        // A new hash for the same user (password changed in the config): the cached
        // success of the old one does not carry over.
        let changed = config(None, &[("user", "new", Role::Viewer)]);
        assert!(matches!(
            v.check(&changed, Some("Basic dXNlcjpwYXNz")),
            Outcome::Denied { .. }
        ));
    }
}
