//! DICOM TLS (PS3.15 B.1, the BCP 195 profiles' TLS 1.2 and 1.3) on rustls, which dicom-ul
//! speaks: the receiver's `ServerConfig` from `dicom.tls_cert` / `dicom.tls_key`, with
//! client certificates required and checked against `dicom.tls_ca` when it is set; a
//! destination's `ClientConfig`, trusting its `tls_ca` (or the system's roots) and
//! offering this node's certificate when it has one. Every file problem names its key.
//! `in_service.rs` holds the ones `serve` uses and replaces them on SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};

use crate::config::{Destination, DicomConfig};
use crate::pem::{self, KeyKind};

/// TLS 1.3 and 1.2 only (rustls has no older versions).
const VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The system's CA bundles, in the places the usual distributions keep them.
const SYSTEM_ROOTS: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of PEM file `path` (config key `key`); at least one.
fn certificates(path: &Path, key: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let bytes = pem::read(path, key)?;
    let certs: Vec<CertificateDer<'static>> = pem::blocks(&bytes, "CERTIFICATE")
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    anyhow::ensure!(
        !certs.is_empty(),
        "{key} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        path.display()
    );
    Ok(certs)
}

/// The private key of PEM file `path` (config key `key`).
fn private_key(path: &Path, key: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    let bytes = pem::read(path, key)?;
    let Some((kind, der)) = pem::private_key(&bytes) else {
        anyhow::bail!(
            "{key} {} holds no unencrypted private key in PEM (PKCS#8, RSA or EC); decrypt \
             one with `openssl pkcs8 -topk8 -nocrypt -in KEY -out key.pem`",
            path.display()
        );
    };
    Ok(match kind {
        KeyKind::Pkcs8 => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)),
        KeyKind::Rsa => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)),
        KeyKind::Ec => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)),
    })
}

/// A root store of the CA certificates in `path` (config key `key`).
fn roots(path: &Path, key: &str) -> anyhow::Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    for (i, cert) in certificates(path, key)?.into_iter().enumerate() {
        store.add(cert).with_context(|| {
            format!(
                "{key} {}: certificate {} is not a usable CA certificate",
                path.display(),
                i + 1
            )
        })?;
    }
    Ok(store)
}

/// The system's CA bundle: the first of [`SYSTEM_ROOTS`] that is there.
pub fn system_bundle() -> Option<PathBuf> {
    SYSTEM_ROOTS.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// The system's trusted roots, from the first CA bundle found.
fn system_roots() -> anyhow::Result<RootCertStore> {
    let path = system_bundle()
        .context("no system CA bundle (ca-certificates) is installed: set tls_ca")?;
    let path = path.as_path();
    let bytes = pem::read(path, "the system CA bundle")?;
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(
        pem::blocks(&bytes, "CERTIFICATE")
            .into_iter()
            .map(CertificateDer::from),
    );
    anyhow::ensure!(
        !store.is_empty(),
        "the system CA bundle {} holds no usable certificate: set tls_ca",
        path.display()
    );
    Ok(store)
}

/// This node's certificate chain and key, when `dicom.tls_cert` / `dicom.tls_key` are set.
fn identity(
    config: &DicomConfig,
) -> anyhow::Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    Ok(Some((
        certificates(cert, "dicom.tls_cert")?,
        private_key(key, "dicom.tls_key")?,
    )))
}

/// The receiver's TLS configuration and its certificate's SHA-256 fingerprint, or None when
/// `dicom.tls_cert` is not set (plain TCP).
pub fn server_config(config: &DicomConfig) -> anyhow::Result<Option<(Arc<ServerConfig>, String)>> {
    let Some((chain, key)) = identity(config)? else {
        return Ok(None);
    };
    let fingerprint = pem::fingerprint(&chain[0]);
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .context("TLS 1.2/1.3 with the ring provider")?;
    let builder = match &config.tls_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca, "dicom.tls_ca")?),
                provider(),
            )
            .build()
            .with_context(|| format!("dicom.tls_ca {}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(chain, key).context(
        "dicom.tls_key does not fit dicom.tls_cert (or the certificate or key is unusable)",
    )?;
    Ok(Some((Arc::new(config), fingerprint)))
}

/// The SHA-256 fingerprint of the receiver's certificate, when it has one (for
/// `lungwatch check`); checks the whole TLS configuration on the way.
pub fn check_server(config: &DicomConfig) -> anyhow::Result<Option<String>> {
    Ok(server_config(config)?.map(|(_, fingerprint)| fingerprint))
}

/// The TLS configuration for associations with `destination` (`tls = true`): its
/// certificate must chain to `tls_ca` (or a system root) and name its `host`; this node's
/// certificate, when it has one, is offered as the client certificate.
pub fn client_config(
    local: &DicomConfig,
    destination: &Destination,
) -> anyhow::Result<Arc<ClientConfig>> {
    let roots = match &destination.tls_ca {
        Some(ca) => roots(ca, "destinations.tls_ca")
            .with_context(|| format!("destination {:?}", destination.name))?,
        None => system_roots().with_context(|| format!("destination {:?}", destination.name))?,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .context("TLS 1.2/1.3 with the ring provider")?
        .with_root_certificates(roots);
    let config = match identity(local)? {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).context(
            "dicom.tls_key does not fit dicom.tls_cert (or the certificate or key is unusable)",
        )?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// An error and its causes on one line (dicom-ul's TLS errors say little on their own).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_files_are_named_by_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, ca) = (
            dir.path().join("cert.pem"),
            dir.path().join("key.pem"),
            dir.path().join("ca.pem"),
        );
        let mut c = crate::config::Config::default().dicom;
        assert!(server_config(&c).unwrap().is_none());
        assert!(check_server(&c).unwrap().is_none());
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
        let err = format!("{:#}", server_config(&c).err().unwrap());
        assert!(err.contains("cannot read dicom.tls_cert"), "{err}");
        std::fs::write(&cert, "not a certificate").unwrap();
        let err = format!("{:#}", server_config(&c).err().unwrap());
        assert!(
            err.contains("dicom.tls_cert") && err.contains("no PEM"),
            "{err}"
        );
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(
            &key,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA==\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = format!("{:#}", server_config(&c).err().unwrap());
        assert!(
            err.contains("dicom.tls_key") && err.contains("pkcs8"),
            "{err}"
        );
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        c.tls_ca = Some(ca.clone());
        let err = format!("{:#}", server_config(&c).err().unwrap());
        assert!(err.contains("cannot read dicom.tls_ca"), "{err}");
        let destination = crate::config::Destination {
            name: "pacs".into(),
            ae_title: "PACS".into(),
            host: "127.0.0.1".into(),
            port: 2762,
            objects: crate::config::ObjectKind::ALL.to_vec(),
            tls: true,
            tls_ca: Some(ca),
        };
        let err = format!("{:#}", client_config(&c, &destination).err().unwrap());
        assert!(
            err.contains("destination \"pacs\"") && err.contains("destinations.tls_ca"),
            "{err}"
        );
    }
}
