//! The DICOM TLS configurations in service in `serve`: the receiver's and one per
//! destination with `tls`, built at start by `tls.rs` and replaced on SIGHUP only by ones
//! whose new files load, so a bad file never takes a working configuration out of service.
//! An association takes the configuration of the moment when it starts and keeps it to its
//! end. Also what the status page and `lungwatch status` say of DICOM TLS.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use rustls::{ClientConfig, ServerConfig};
use serde::Serialize;

use super::tls;
use crate::config::{Destination, DicomConfig};
use crate::dicom::header::sha256;

/// What the receiver speaks, fixed for the life of the process: the listener is TLS only
/// or plain only, never both (a change of `dicom.tls_cert` to or from unset needs a
/// restart).
enum Receiver {
    /// `dicom.listen` is not set.
    Off,
    Plain,
    Tls(RwLock<ServerTls>),
}

struct ServerTls {
    config: Arc<ServerConfig>,
    fingerprint: String,
    /// `dicom.tls_ca` as loaded: client certificates must chain to it.
    client_ca: Option<PathBuf>,
    files: Files,
}

struct ClientTls {
    config: Arc<ClientConfig>,
    files: Files,
}

/// The files a configuration was built from and a digest of their bytes, so that a SIGHUP
/// rebuilds it only when a key names another file or a file's content changed.
#[derive(PartialEq, Eq)]
struct Files {
    paths: Vec<PathBuf>,
    /// None when one of them cannot be read: always a change.
    digest: Option<[u8; 32]>,
}

impl Files {
    fn read(paths: Vec<PathBuf>) -> Files {
        let mut all = Vec::new();
        for p in &paths {
            let Ok(bytes) = std::fs::read(p) else {
                return Files {
                    paths,
                    digest: None,
                };
            };
            all.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            all.extend_from_slice(&bytes);
        }
        Files {
            paths,
            digest: Some(sha256(&all)),
        }
    }

    fn of_server(config: &DicomConfig) -> Files {
        let keys = [&config.tls_cert, &config.tls_key, &config.tls_ca];
        Files::read(keys.into_iter().flatten().cloned().collect())
    }

    fn of_client(local: &DicomConfig, destination: &Destination) -> Files {
        let ca = destination.tls_ca.clone().or_else(tls::system_bundle);
        let keys = [local.tls_cert.clone(), local.tls_key.clone(), ca];
        Files::read(keys.into_iter().flatten().collect())
    }
}

/// One outcome of [`TlsConfigs::reload`], for the log (and the status page's errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// New files loaded; the next association uses them.
    Loaded(String),
    /// New files failed; what was in service stays (when there was one).
    Failed(String),
    /// A change that takes effect at the next restart.
    NeedsRestart(String),
}

/// The receiver's and the destinations' TLS configurations in service.
pub struct TlsConfigs {
    receiver: Receiver,
    /// By destination name, those with `tls` whose files have loaded.
    clients: Mutex<BTreeMap<String, ClientTls>>,
}

impl TlsConfigs {
    /// No receiver and nothing loaded yet: each destination's configuration is built at
    /// its first association (the one-shot commands, `lungwatch send`).
    pub fn clients_only() -> TlsConfigs {
        TlsConfigs {
            receiver: Receiver::Off,
            clients: Mutex::new(BTreeMap::new()),
        }
    }

    /// Builds what `serve` starts with. A receiver whose TLS files do not load is an
    /// error (it would accept nothing); a destination's problem is returned and tried again
    /// at each of its associations, as a fixed file may come before the next retry.
    pub fn load(
        config: &DicomConfig,
        destinations: &[Destination],
    ) -> anyhow::Result<(TlsConfigs, Vec<String>)> {
        let receiver = if config.listen.is_none() {
            Receiver::Off
        } else {
            // Digested before the build: a file replaced in between is a change at the next
            // SIGHUP, never taken for the one loaded.
            let files = Files::of_server(config);
            match tls::server_config(config)? {
                None => Receiver::Plain,
                Some((server, fingerprint)) => Receiver::Tls(RwLock::new(ServerTls {
                    fingerprint,
                    config: server,
                    client_ca: config.tls_ca.clone(),
                    files,
                })),
            }
        };
        let mut clients = BTreeMap::new();
        let mut problems = Vec::new();
        for d in destinations.iter().filter(|d| d.tls) {
            let files = Files::of_client(config, d);
            match tls::client_config(config, d) {
                Ok(client) => {
                    let client = ClientTls {
                        config: client,
                        files,
                    };
                    clients.insert(d.name.clone(), client);
                }
                Err(e) => problems.push(format!(
                    "DICOM TLS of destination {} cannot be used ({e:#}); each attempt to send \
                     to it tries again",
                    d.name
                )),
            }
        }
        Ok((
            TlsConfigs {
                receiver,
                clients: Mutex::new(clients),
            },
            problems,
        ))
    }

    /// The receiver's configuration now, or None on a plain receiver.
    pub fn server(&self) -> Option<Arc<ServerConfig>> {
        match &self.receiver {
            Receiver::Tls(s) => Some(s.read().unwrap_or_else(|e| e.into_inner()).config.clone()),
            Receiver::Off | Receiver::Plain => None,
        }
    }

    /// The SHA-256 fingerprint of the receiver's certificate in service.
    pub fn server_fingerprint(&self) -> Option<String> {
        match &self.receiver {
            Receiver::Tls(s) => Some(
                s.read()
                    .unwrap_or_else(|e| e.into_inner())
                    .fingerprint
                    .clone(),
            ),
            Receiver::Off | Receiver::Plain => None,
        }
    }

    /// The configuration for an association with `destination`: the one in service, or,
    /// when none has loaded yet, one built now from `local`'s and its files (kept in
    /// service once it loads).
    pub fn client(
        &self,
        local: &DicomConfig,
        destination: &Destination,
    ) -> anyhow::Result<Arc<ClientConfig>> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&destination.name) {
            return Ok(c.config.clone());
        }
        let files = Files::of_client(local, destination);
        let config = tls::client_config(local, destination)?;
        clients.insert(
            destination.name.clone(),
            ClientTls {
                config: config.clone(),
                files,
            },
        );
        Ok(config)
    }

    /// SIGHUP: the files `config` and `destinations` name now. Each configuration whose
    /// files changed is rebuilt; one that fails leaves the one in service. Associations
    /// in flight keep the configuration they started with.
    pub fn reload(&self, config: &DicomConfig, destinations: &[Destination]) -> Vec<Reloaded> {
        let mut out = Vec::new();
        match &self.receiver {
            Receiver::Off => {}
            Receiver::Plain if config.tls_configured() => out.push(Reloaded::NeedsRestart(
                "dicom.tls_cert is now set: the receiver stays plain TCP until the next restart"
                    .into(),
            )),
            Receiver::Plain => {}
            Receiver::Tls(_) if !config.tls_configured() => out.push(Reloaded::NeedsRestart(
                "dicom.tls_cert and dicom.tls_key are no longer set: the receiver stays TLS \
                 only, with the certificate in service, until the next restart"
                    .into(),
            )),
            Receiver::Tls(lock) => {
                let files = Files::of_server(config);
                let mut server = lock.write().unwrap_or_else(|e| e.into_inner());
                if files != server.files {
                    out.push(match reload_server(config, files) {
                        Ok(new) => {
                            let line = format!(
                                "DICOM TLS certificate reloaded, SHA-256 fingerprint {}; new \
                                 associations use it",
                                new.fingerprint
                            );
                            *server = new;
                            Reloaded::Loaded(line)
                        }
                        Err(e) => Reloaded::Failed(format!(
                            "new DICOM TLS files failed ({e:#}); the receiver keeps the \
                             certificate in service (SHA-256 fingerprint {})",
                            server.fingerprint
                        )),
                    });
                }
            }
        }
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        // Destinations removed, or no longer over TLS, have nothing in service.
        clients.retain(|name, _| destinations.iter().any(|d| d.tls && &d.name == name));
        for d in destinations.iter().filter(|d| d.tls) {
            let files = Files::of_client(config, d);
            let old = clients.get(&d.name);
            if old.is_some_and(|c| c.files == files) {
                continue;
            }
            match tls::client_config(config, d) {
                Ok(new) => {
                    if old.is_some() {
                        out.push(Reloaded::Loaded(format!(
                            "DICOM TLS of destination {} reloaded; its next association uses it",
                            d.name
                        )));
                    }
                    clients.insert(d.name.clone(), ClientTls { config: new, files });
                }
                Err(e) if old.is_some() => out.push(Reloaded::Failed(format!(
                    "new DICOM TLS files of destination {} failed ({e:#}); it keeps the \
                     configuration in service",
                    d.name
                ))),
                Err(e) => out.push(Reloaded::Failed(format!(
                    "DICOM TLS of destination {} cannot be used ({e:#}); each attempt to send \
                     to it tries again",
                    d.name
                ))),
            }
        }
        out
    }

    /// What the status page shows: [`describe`] of the config, with the receiver's
    /// certificate and client CA as in service and the address it is bound to.
    pub fn describe(
        &self,
        config: &DicomConfig,
        destinations: &[Destination],
        bound: Option<SocketAddr>,
    ) -> DicomSecurity {
        let mut view = describe(config, destinations);
        if let Some(r) = &mut view.receiver {
            if let Some(addr) = bound {
                r.listen = addr.to_string();
            }
            let server = match &self.receiver {
                Receiver::Tls(lock) => Some(lock.read().unwrap_or_else(|e| e.into_inner())),
                Receiver::Off | Receiver::Plain => None,
            };
            r.tls = server.is_some();
            r.fingerprint = server.as_ref().map(|s| s.fingerprint.clone());
            r.client_ca = server
                .as_ref()
                .and_then(|s| s.client_ca.as_ref())
                .map(|p| p.display().to_string());
            r.plain_on_network = !r.tls && !on_loopback(&r.listen);
        }
        view
    }
}

/// True when `listen` is a loopback address (only this machine can connect).
fn on_loopback(listen: &str) -> bool {
    listen
        .parse::<SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback())
}

fn reload_server(config: &DicomConfig, files: Files) -> anyhow::Result<ServerTls> {
    let (server, fingerprint) =
        tls::server_config(config)?.ok_or_else(|| anyhow::anyhow!("dicom.tls_cert is not set"))?;
    Ok(ServerTls {
        config: server,
        fingerprint,
        client_ca: config.tls_ca.clone(),
        files,
    })
}

/// DICOM TLS on the status page, `/api/status` and `lungwatch status`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DicomSecurity {
    /// None: no receiver (`dicom.listen` is not set).
    pub receiver: Option<ReceiverSecurity>,
    pub destinations: Vec<DestinationSecurity>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReceiverSecurity {
    pub ae_title: String,
    pub listen: String,
    /// DICOM TLS only; false: plain TCP only.
    pub tls: bool,
    /// The SHA-256 fingerprint of the certificate in service; only the running `serve`
    /// knows it (absent from `lungwatch status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The CA bundle a peer's client certificate must chain to; None: none is asked for.
    pub client_ca: Option<String>,
    /// Plain TCP on an address other machines reach: DICOM crosses the network in clear.
    pub plain_on_network: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DestinationSecurity {
    pub name: String,
    pub ae_title: String,
    pub address: String,
    pub tls: bool,
    /// With TLS, what its certificate must chain to: its `tls_ca`, or "system roots".
    pub trust: Option<String>,
}

/// DICOM TLS as `config` and `destinations` set it (without the running `serve`'s
/// certificate in service).
pub fn describe(config: &DicomConfig, destinations: &[Destination]) -> DicomSecurity {
    let receiver = config.listen.as_ref().map(|listen| {
        let tls = config.tls_configured();
        ReceiverSecurity {
            ae_title: config.ae_title.clone(),
            listen: listen.clone(),
            tls,
            fingerprint: None,
            client_ca: config
                .tls_ca
                .as_deref()
                .filter(|_| tls)
                .map(|p| p.display().to_string()),
            plain_on_network: !tls && !on_loopback(listen),
        }
    });
    let destinations = destinations
        .iter()
        .map(|d| DestinationSecurity {
            name: d.name.clone(),
            ae_title: d.ae_title.clone(),
            address: format!("{}:{}", d.host, d.port),
            tls: d.tls,
            trust: d.tls.then(|| {
                d.tls_ca
                    .as_deref()
                    .map_or("system roots".to_string(), |p| p.display().to_string())
            }),
        })
        .collect();
    DicomSecurity {
        receiver,
        destinations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ObjectKind};

    /// A self-signed EC certificate and its key (valid to 2126), as both this node's
    /// certificate and a CA bundle; `FINGERPRINT` is what `openssl x509 -fingerprint
    /// -sha256` says of it.
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBkjCCATmgAwIBAgIURp4aNq4Z5ByqF7m0dHhLuauSLeowCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTbHVuZ3dhdGNoIHVuaXQgdGVzdDAgFw0yNjEyMDMwOTE3Mjla
GA8yMTI2MTEwOTA5MTcyOVowHjEcMBoGA1UEAwwTbHVuZ3dhdGNoIHVuaXQgdGVz
dDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABD+Op0SMbCCaDlo7zMZtA8SclUF4
rEwLwqn/PkvUcYylIbckEZIzNrUz69tL1ouINfcWfhVkeqtSvrrJW0NRlxKjUzBR
MB0GA1UdDgQWBBS+NwUBBQ22g71MKlfoHmERNGaNDzAfBgNVHSMEGDAWgBS+NwUB
BQ22g71MKlfoHmERNGaNDzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cA
MEQCIDp4nriudALMPKHLXXnQwAixEwk15u8LcaLZeGZ5ZEKHAiByucuyRwc/uLqA
B4LOqcn7cn2VO9kTXDQmkAYSTdHiLQ==
-----END CERTIFICATE-----
";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgiBo9SwizbB1XVrIQ
rVnKkO7qIUprlrkqn2HF5K+nop+hRANCAAQ/jqdEjGwgmg5aO8zGbQPEnJVBeKxM
C8Kp/z5L1HGMpSG3JBGSMza1M+vbS9aLiDX3Fn4VZHqrUr66yVtDUZcS
-----END PRIVATE KEY-----
";
    const FINGERPRINT: &str = "07:BA:DF:2C:E7:30:47:54:A1:F0:FE:94:B3:49:53:0B:A0:36:CF:9C:B9:BA:F2:30:5F:A1:05:55:0E:80:FC:01";
    const GARBAGE: &str = "-----BEGIN CERTIFICATE-----\ngarbage\n";

    fn destination(name: &str, tls: bool, tls_ca: Option<PathBuf>) -> Destination {
        Destination {
            name: name.into(),
            ae_title: "PACS".into(),
            host: "127.0.0.1".into(),
            port: 2762,
            objects: ObjectKind::ALL.to_vec(),
            tls,
            tls_ca,
        }
    }

    #[test]
    fn the_receiver_reloads_changed_files_and_keeps_its_certificate_on_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, CERT).unwrap();
        std::fs::write(&key, KEY).unwrap();
        let mut c = Config::default().dicom;
        c.listen = Some("127.0.0.1:0".into());
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
        let (tls, problems) = TlsConfigs::load(&c, &[]).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert!(tls.server().is_some());
        assert_eq!(tls.server_fingerprint().as_deref(), Some(FINGERPRINT));
        // Nothing changed: nothing to say.
        assert_eq!(tls.reload(&c, &[]), []);

        std::fs::write(&cert, GARBAGE).unwrap();
        let out = tls.reload(&c, &[]);
        let [Reloaded::Failed(line)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert!(
            line.contains("dicom.tls_cert") && line.contains(FINGERPRINT),
            "{line}"
        );
        let before = tls.server().unwrap();
        assert_eq!(tls.server_fingerprint().as_deref(), Some(FINGERPRINT));

        // The same bytes as in service again: no rebuild.
        std::fs::write(&cert, CERT).unwrap();
        assert_eq!(tls.reload(&c, &[]), []);
        assert!(Arc::ptr_eq(&before, &tls.server().unwrap()));
        // The file named by another key is a change, and it loads.
        let moved = dir.path().join("renewed.pem");
        std::fs::write(&moved, CERT).unwrap();
        c.tls_cert = Some(moved);
        let out = tls.reload(&c, &[]);
        assert!(
            matches!(out.as_slice(), [Reloaded::Loaded(l)] if l.contains(FINGERPRINT)),
            "{out:?}"
        );
        assert!(!Arc::ptr_eq(&before, &tls.server().unwrap()));

        // TLS switched off: the listener stays TLS until a restart.
        c.tls_cert = None;
        c.tls_key = None;
        let out = tls.reload(&c, &[]);
        assert!(
            matches!(out.as_slice(), [Reloaded::NeedsRestart(_)]),
            "{out:?}"
        );
        assert!(tls.server().is_some());
        let view = tls.describe(&c, &[], None);
        let r = view.receiver.unwrap();
        assert!(r.tls && !r.plain_on_network);
        assert_eq!(r.fingerprint.as_deref(), Some(FINGERPRINT));
    }

    #[test]
    fn a_plain_receiver_stays_plain_until_a_restart() {
        let mut c = Config::default().dicom;
        c.listen = Some("0.0.0.0:11112".into());
        let (tls, _) = TlsConfigs::load(&c, &[]).unwrap();
        assert!(tls.server().is_none());
        c.tls_cert = Some("/nonexistent/cert.pem".into());
        c.tls_key = Some("/nonexistent/key.pem".into());
        let out = tls.reload(&c, &[]);
        assert!(
            matches!(out.as_slice(), [Reloaded::NeedsRestart(_)]),
            "{out:?}"
        );
        assert!(tls.server().is_none());
        let r = tls.describe(&c, &[], None).receiver.unwrap();
        assert!(
            !r.tls && r.plain_on_network && r.fingerprint.is_none(),
            "{r:?}"
        );
        let bound = "127.0.0.1:11112".parse().unwrap();
        let r = tls.describe(&c, &[], Some(bound)).receiver.unwrap();
        assert!(!r.tls && !r.plain_on_network, "{r:?}");
        assert_eq!(r.listen, "127.0.0.1:11112");
    }

    #[test]
    fn a_destination_keeps_its_configuration_when_a_new_file_fails() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, CERT).unwrap();
        let local = Config::default().dicom;
        let pacs = destination("pacs", true, Some(ca.clone()));
        let tls = TlsConfigs::clients_only();
        // A new destination that loads is put in service without a word.
        assert_eq!(tls.reload(&local, std::slice::from_ref(&pacs)), []);
        let in_service = tls.client(&local, &pacs).unwrap();

        std::fs::write(&ca, GARBAGE).unwrap();
        let out = tls.reload(&local, std::slice::from_ref(&pacs));
        let [Reloaded::Failed(line)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert!(
            line.contains("destination pacs failed") && line.contains("destinations.tls_ca"),
            "{line}"
        );
        assert!(Arc::ptr_eq(
            &in_service,
            &tls.client(&local, &pacs).unwrap()
        ));

        // No longer over TLS: nothing kept, and a later build reads the garbage file.
        let plain = destination("pacs", false, None);
        assert_eq!(tls.reload(&local, std::slice::from_ref(&plain)), []);
        let err = format!("{:#}", tls.client(&local, &pacs).err().unwrap());
        assert!(err.contains("destinations.tls_ca"), "{err}");
        // A TLS destination that never loaded is reported, with nothing kept.
        let out = tls.reload(&local, std::slice::from_ref(&pacs));
        assert!(
            matches!(out.as_slice(), [Reloaded::Failed(l)] if l.contains("cannot be used")),
            "{out:?}"
        );
    }

    #[test]
    fn describe_says_what_each_end_speaks() {
        let mut c = Config::default().dicom;
        let dests = [
            destination("a", true, Some("/site-ca.pem".into())),
            destination("b", true, None),
            destination("c", false, None),
        ];
        let view = describe(&c, &dests);
        assert!(view.receiver.is_none());
        let trust: Vec<Option<&str>> = view
            .destinations
            .iter()
            .map(|d| d.trust.as_deref())
            .collect();
        assert_eq!(trust, [Some("/site-ca.pem"), Some("system roots"), None]);
        assert_eq!(view.destinations[0].address, "127.0.0.1:2762");

        c.listen = Some("127.0.0.1:11112".into());
        assert!(!describe(&c, &[]).receiver.unwrap().plain_on_network);
        c.listen = Some("10.1.2.3:11112".into());
        assert!(describe(&c, &[]).receiver.unwrap().plain_on_network);
        c.tls_cert = Some("/c.pem".into());
        c.tls_key = Some("/k.pem".into());
        c.tls_ca = Some("/ca.pem".into());
        let r = describe(&c, &[]).receiver.unwrap();
        assert!(r.tls && !r.plain_on_network);
        assert_eq!(r.client_ca.as_deref(), Some("/ca.pem"));
        assert_eq!(r.fingerprint, None);
    }
}
