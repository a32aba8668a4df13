//! PEM files as the TLS edges read them: certificate chains, private keys and CA bundles,
//! shared by the web page's HTTPS (`web::tls`) and DICOM TLS (`dimse::tls`). Pure but for
//! [`read`]; errors name the config key the file came from.

use std::path::Path;

use crate::dicom::header::sha256;

/// Reads the file behind config key `key`.
pub fn read(path: &Path, key: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {key} {}: {e}", path.display()))
}

/// Standard base64 (RFC 4648, with or without padding); None on any invalid character.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
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

/// The DER bytes of every PEM block labelled `label`, in file order.
pub fn blocks(pem: &[u8], label: &str) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(pem);
    let (begin, end) = (
        format!("-----BEGIN {label}-----"),
        format!("-----END {label}-----"),
    );
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(&begin) {
        let body = &rest[start + begin.len()..];
        let Some(stop) = body.find(&end) else { break };
        let b64: String = body[..stop].split_whitespace().collect();
        if let Some(der) = base64_decode(&b64) {
            out.push(der);
        }
        rest = &body[stop + end.len()..];
    }
    out
}

/// The kinds of unencrypted private key a PEM file may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `PRIVATE KEY`: PKCS#8 (any algorithm).
    Pkcs8,
    /// `RSA PRIVATE KEY`: PKCS#1.
    Rsa,
    /// `EC PRIVATE KEY`: SEC1.
    Ec,
}

/// The first private key in `pem`, with its kind; None when there is none (or only an
/// `ENCRYPTED PRIVATE KEY`, which the appliance cannot unlock unattended).
pub fn private_key(pem: &[u8]) -> Option<(KeyKind, Vec<u8>)> {
    [
        (KeyKind::Pkcs8, "PRIVATE KEY"),
        (KeyKind::Rsa, "RSA PRIVATE KEY"),
        (KeyKind::Ec, "EC PRIVATE KEY"),
    ]
    .into_iter()
    .find_map(|(kind, label)| blocks(pem, label).into_iter().next().map(|der| (kind, der)))
}

/// SHA-256 of a DER certificate, as `AB:CD:...` (what `openssl x509 -fingerprint -sha256`
/// and browsers show).
pub fn fingerprint(der: &[u8]) -> String {
    sha256(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI").unwrap(), b"ab");
        assert!(base64_decode("a*b").is_none());
    }

    #[test]
    fn blocks_keys_and_fingerprints() {
        // "hello" and "world" as DER stand-ins.
        let pem = b"junk\n-----BEGIN CERTIFICATE-----\naGVs\nbG8=\n-----END CERTIFICATE-----\n\
                    -----BEGIN CERTIFICATE-----\nd29ybGQ=\n-----END CERTIFICATE-----\n";
        let found = blocks(pem, "CERTIFICATE");
        assert_eq!(found, vec![b"hello".to_vec(), b"world".to_vec()]);
        assert!(blocks(pem, "PRIVATE KEY").is_empty());
        assert_eq!(private_key(pem), None);
        let ec = b"-----BEGIN EC PRIVATE KEY-----\naGVsbG8=\n-----END EC PRIVATE KEY-----\n";
        assert_eq!(private_key(ec), Some((KeyKind::Ec, b"hello".to_vec())));
        let enc = b"-----BEGIN ENCRYPTED PRIVATE KEY-----\naGVsbG8=\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert_eq!(private_key(enc), None);
        // sha256("hello")
        assert!(fingerprint(b"hello").starts_with("2C:F2:4D:BA:5F:B0:A3:0E"));
    }
}
