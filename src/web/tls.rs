//! The HTTPS certificate and key: read from `web.tls_cert` / `web.tls_key`, checked before
//! tiny_http sees them (its rustls backend panics on a key it cannot parse), fingerprinted
//! for the log, and digested so that a SIGHUP notices a replaced file with unchanged keys.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::config::WebConfig;
use crate::pem::{self, blocks as pem_blocks, read};

/// The PEM bytes of a certificate chain and its key, as loaded.
pub struct TlsFiles {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    paths: (PathBuf, PathBuf),
}

impl TlsFiles {
    /// Loads and checks the pair, or None when TLS is not configured.
    pub fn load(config: &WebConfig) -> anyhow::Result<Option<TlsFiles>> {
        let (Some(cert_path), Some(key_path)) = (&config.tls_cert, &config.tls_key) else {
            return Ok(None);
        };
        let cert = read(cert_path, "web.tls_cert")?;
        let key = read(key_path, "web.tls_key")?;
        if pem_blocks(&cert, "CERTIFICATE").is_empty() {
            anyhow::bail!(
                "web.tls_cert {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                cert_path.display()
            );
        }
        let usable = !pem_blocks(&key, "PRIVATE KEY").is_empty()
            || !pem_blocks(&key, "RSA PRIVATE KEY").is_empty();
        if !usable {
            anyhow::bail!(
                "web.tls_key {} holds no unencrypted PKCS#8 or RSA private key in PEM; convert \
                 an EC or encrypted key with `openssl pkcs8 -topk8 -nocrypt -in KEY -out key.pem`",
                key_path.display()
            );
        }
        Ok(Some(TlsFiles {
            cert,
            key,
            paths: (cert_path.clone(), key_path.clone()),
        }))
    }

    /// The SHA-256 fingerprint of the first (the server's) certificate.
    pub fn fingerprint(&self) -> String {
        pem_blocks(&self.cert, "CERTIFICATE")
            .first()
            .map(|der| pem::fingerprint(der))
            .unwrap_or_default()
    }

    /// A digest of both files' bytes.
    pub fn digest(&self) -> [u8; 32] {
        digest(&self.cert, &self.key)
    }

    /// True when either file now differs from what was loaded (or cannot be read).
    pub fn changed_on_disk(&self, loaded: &[u8; 32]) -> bool {
        match (std::fs::read(&self.paths.0), std::fs::read(&self.paths.1)) {
            (Ok(c), Ok(k)) => &digest(&c, &k) != loaded,
            _ => true,
        }
    }
}

fn digest(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((cert.len() as u64).to_le_bytes());
    h.update(cert);
    h.update(key);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_files_are_refused_by_key_name() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(
            &key,
            "-----BEGIN EC PRIVATE KEY-----\nAA==\n-----END EC PRIVATE KEY-----\n",
        )
        .unwrap();
        let mut c = crate::config::Config::default().web;
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
        let err = TlsFiles::load(&c).err().unwrap().to_string();
        assert!(err.contains("web.tls_cert"), "{err}");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = TlsFiles::load(&c).err().unwrap().to_string();
        assert!(
            err.contains("web.tls_key") && err.contains("pkcs8"),
            "{err}"
        );
        std::fs::remove_file(&key).unwrap();
        let err = TlsFiles::load(&c).err().unwrap().to_string();
        assert!(err.contains("cannot read web.tls_key"), "{err}");
        c.tls_cert = None;
        c.tls_key = None;
        assert!(TlsFiles::load(&c).unwrap().is_none());
    }
}
