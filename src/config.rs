//! Typed configuration with safe defaults and validation that names the offending key.
//!
//! The documented default file, `config/lungwatch.toml`, is embedded in the binary and a
//! user's file is laid over it key by key, so the defaults in the docs and in the code can
//! never disagree.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The documented default configuration, as shipped.
pub const DEFAULT_TOML: &str = include_str!("../config/lungwatch.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}` {problem}")]
    Invalid { key: &'static str, problem: String },
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub paths: Paths,
    pub watch: Watch,
    pub series: Series,
    pub selection: Selection,
    pub decode: Decode,
    pub analysis: AnalysisLimits,
    pub log: Log,
    pub models: Models,
    pub web: WebConfig,
    pub audit: AuditConfig,
    pub dicom: DicomConfig,
    /// DICOM nodes lungwatch sends its objects to (and `lungwatch echo NAME` checks).
    #[serde(default)]
    pub destinations: Vec<Destination>,
    pub outbox: OutboxConfig,
}

/// The kinds of object lungwatch writes for an analysed series, as destinations name them.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// The binary Segmentation.
    Seg,
    /// The TID 1500 Measurement Report.
    Sr,
    /// The Secondary Capture key images and summary image.
    Sc,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 3] = [ObjectKind::Seg, ObjectKind::Sr, ObjectKind::Sc];

    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Seg => "seg",
            ObjectKind::Sr => "sr",
            ObjectKind::Sc => "sc",
        }
    }
}

fn all_object_kinds() -> Vec<ObjectKind> {
    ObjectKind::ALL.to_vec()
}

/// The name the folder outbox (`outbox.folder`) has in the outbox table, beside the
/// `[[destinations]]`; no destination may take it.
pub const FOLDER_DESTINATION: &str = "folder";

/// A DICOM node lungwatch associates with as a client.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// How commands name it.
    pub name: String,
    /// Its (called) AE title.
    pub ae_title: String,
    pub host: String,
    pub port: u16,
    /// What is sent to it; all kinds when left out.
    #[serde(default = "all_object_kinds")]
    pub objects: Vec<ObjectKind>,
    /// DICOM TLS (PS3.15 B.1): the association runs over TLS 1.2/1.3 and the destination's
    /// certificate must be valid for `host` and signed by `tls_ca` (or a system root).
    #[serde(default)]
    pub tls: bool,
    /// PEM CA bundle the destination's certificate must chain to (the site CA); absent:
    /// the system's roots. Only with `tls = true`.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
}

/// A config problem under `key`.
fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

impl Destination {
    /// One `[[destinations]]` element on its own (names used twice are the caller's).
    fn validate(&self) -> Result<(), ConfigError> {
        let name = &self.name;
        if name.trim().is_empty() {
            return Err(invalid("destinations.name", "must not be empty"));
        }
        if let Err(why) = check_ae_title(&self.ae_title) {
            return Err(invalid(
                "destinations.ae_title",
                format!("of {name:?}: {why}"),
            ));
        }
        if self.host.trim().is_empty() {
            return Err(invalid(
                "destinations.host",
                format!("of {name:?} must not be empty"),
            ));
        }
        if self.port == 0 {
            return Err(invalid(
                "destinations.port",
                format!("of {name:?} must be between 1 and 65535"),
            ));
        }
        if let Some(ca) = &self.tls_ca {
            if ca.as_os_str().is_empty() {
                return Err(invalid(
                    "destinations.tls_ca",
                    format!("of {name:?} must not be empty (leave it out instead)"),
                ));
            }
            if !self.tls {
                return Err(invalid(
                    "destinations.tls_ca",
                    format!("of {name:?} is set but tls is not true"),
                ));
            }
        }
        if name == FOLDER_DESTINATION {
            return Err(invalid(
                "destinations.name",
                format!("{FOLDER_DESTINATION:?} is the folder outbox's name (outbox.folder)"),
            ));
        }
        Ok(())
    }
}

/// Delivery of the objects: the folder outbox and the retry back-off.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// A folder that receives a copy of every object (one sub-folder per study), for sites
    /// that import files; absent: none.
    #[serde(default)]
    pub folder: Option<PathBuf>,
    /// What the folder receives; all kinds when left out.
    #[serde(default = "all_object_kinds")]
    pub folder_objects: Vec<ObjectKind>,
    /// The wait after a first failed attempt; it doubles with each further one…
    pub retry_min_secs: u64,
    /// …up to this.
    pub retry_max_secs: u64,
}

impl OutboxConfig {
    /// How long to wait before the next attempt after `attempts` failed ones (at least 1).
    pub fn retry_after(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        let secs = self
            .retry_min_secs
            .saturating_mul(1u64 << doublings)
            .min(self.retry_max_secs);
        Duration::from_secs(secs)
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Paths {
    pub incoming: PathBuf,
    pub data: PathBuf,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Watch {
    pub rescan_secs: u64,
    pub stable_secs: u64,
    pub truncated_grace_secs: u64,
    pub ignore_suffixes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Series {
    pub quiet_secs: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    pub modalities: Vec<String>,
    pub max_axial_tilt_deg: f64,
    pub min_slices: usize,
    pub max_slice_thickness_mm: f64,
    pub excluded_image_types: Vec<String>,
    /// Rows × columns × slices above which a series is skipped (memory bound).
    pub max_voxels: u64,
}

/// How the worker treats jobs that fail, crash or hang.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AnalysisLimits {
    /// A job is failed after being started this many times without finishing.
    pub max_attempts: u32,
    /// A job running longer than this makes `/healthz` unhealthy.
    pub stall_secs: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Decode {
    pub threads: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub level: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Models {
    /// Folder holding the ONNX files and their manifest. Unset: see `Config::models_dir`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

/// The local web page: where it listens, who may read it, what list pages show.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// `IP:port`; port 0 picks a free port (tests).
    pub listen: String,
    /// On list pages, show patient IDs as `ABC***` and no names.
    pub mask_patient_ids: bool,
    /// Bearer token for Prometheus scrapes (also accepted as the password of HTTP basic
    /// auth with any user name; such requests are audited as user `token`).
    #[serde(default)]
    pub token: Option<String>,
    /// Named people who may log in (HTTP basic auth), each with an Argon2id hash.
    #[serde(default)]
    pub users: Vec<WebUser>,
    /// PEM certificate chain; with `tls_key`, the page is served over HTTPS only.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8 or RSA) of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Allows a non-loopback `listen` without TLS (authentication is still required): a
    /// warning at every start and on the status page.
    #[serde(default)]
    pub allow_plain_http: bool,
}

/// What a logged-in person may do.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads every page except the audit trail.
    #[default]
    Viewer,
    /// Also reads the audit trail (`/audit`).
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }
}

/// One `[[web.users]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebUser {
    pub name: String,
    /// PHC string made by `lungwatch passwd`: `$argon2id$v=19$m=...,t=...,p=...$salt$hash`.
    pub password_hash: String,
    #[serde(default)]
    pub role: Role,
}

/// The audit trail of patient-data reads and failed logins.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Record requests. Off only to measure what auditing costs (`bench/audit.sh`).
    pub enabled: bool,
    /// Rows older than this many days are deleted.
    pub retention_days: u32,
}

/// The DICOM node: a C-STORE (and C-ECHO) receiver inside `serve`. Off unless `listen` is set.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DicomConfig {
    /// `IP:port`; absent: no DICOM receiver. Port 0 picks a free port (tests).
    #[serde(default)]
    pub listen: Option<String>,
    /// The called AE title a peer must use.
    pub ae_title: String,
    /// Calling AE titles allowed to associate; empty: any.
    pub allowed_calling_aes: Vec<String>,
    /// IP addresses allowed to connect; empty: any. AE titles are sent in clear and are
    /// easy to copy: the address is the stronger check.
    #[serde(default)]
    pub allowed_peers: Vec<String>,
    /// Associations served at once; more are rejected as transient (the peer retries).
    pub max_associations: usize,
    /// An association that sends nothing for this long is aborted.
    pub idle_timeout_secs: u64,
    /// An association open longer than this is aborted (its current instance is not stored).
    pub max_association_secs: u64,
    /// Root of the UIDs of the objects lungwatch writes (series, instances).
    pub uid_root: String,
    /// PEM certificate chain of this node; with `tls_key`, the receiver speaks DICOM TLS
    /// only, and destinations with `tls = true` are offered it as the client certificate.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, RSA or EC, unencrypted) of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: when set, peers of the receiver must present a client certificate
    /// signed by it (mutual TLS).
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
}

/// The longest accepted `dicom.uid_root`: a UID is at most 64 characters, and the unique
/// part after the root needs at least 23 digits.
pub const MAX_UID_ROOT_LEN: usize = 40;

impl DicomConfig {
    /// Whether `peer` may connect (`allowed_peers` empty: anyone).
    pub fn peer_allowed(&self, peer: std::net::IpAddr) -> bool {
        self.allowed_peers.is_empty()
            || self
                .allowed_peers
                .iter()
                .any(|p| p.parse::<std::net::IpAddr>() == Ok(peer))
    }

    /// True when this node has a certificate: the receiver speaks TLS only.
    pub fn tls_configured(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// The listening address, when the receiver is on.
    pub fn listen_addr(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        let Some(listen) = &self.listen else {
            return Ok(None);
        };
        listen.parse().map(Some).map_err(|_| ConfigError::Invalid {
            key: "dicom.listen",
            problem: format!(
                "must be an IP address and port such as \"0.0.0.0:11112\", got {listen:?}"
            ),
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, problem: String| ConfigError::Invalid { key, problem };
        self.listen_addr()?;
        if let Err(why) = check_ae_title(&self.ae_title) {
            return Err(invalid("dicom.ae_title", why));
        }
        for ae in &self.allowed_calling_aes {
            if let Err(why) = check_ae_title(ae) {
                return Err(invalid(
                    "dicom.allowed_calling_aes",
                    format!("entry {ae:?}: {why}"),
                ));
            }
        }
        for peer in &self.allowed_peers {
            if peer.parse::<std::net::IpAddr>().is_err() {
                return Err(invalid(
                    "dicom.allowed_peers",
                    format!("entry {peer:?} is not an IP address such as \"10.1.2.3\""),
                ));
            }
        }
        if !(1..=64).contains(&self.max_associations) {
            return Err(invalid(
                "dicom.max_associations",
                format!("must be between 1 and 64, got {}", self.max_associations),
            ));
        }
        if self.idle_timeout_secs == 0 {
            return Err(invalid(
                "dicom.idle_timeout_secs",
                "must be at least 1".into(),
            ));
        }
        let root_ok = self.uid_root.len() <= MAX_UID_ROOT_LEN
            && self.uid_root.split('.').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_digit())
                    && (c == "0" || !c.starts_with('0'))
            });
        if !root_ok {
            return Err(invalid(
                "dicom.uid_root",
                format!(
                    "must be a UID root such as \"2.25\" or \"1.2.826.0.1.3680043.10.1234\" \
                     (digits and dots, no leading zeros, at most {MAX_UID_ROOT_LEN} characters), got {:?}",
                    self.uid_root
                ),
            ));
        }
        if self.max_association_secs < self.idle_timeout_secs {
            return Err(invalid(
                "dicom.max_association_secs",
                "must be at least dicom.idle_timeout_secs".into(),
            ));
        }
        for (key, path) in [
            ("dicom.tls_cert", &self.tls_cert),
            ("dicom.tls_key", &self.tls_key),
            ("dicom.tls_ca", &self.tls_ca),
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(invalid(
                    key,
                    "must not be empty (leave it out instead)".into(),
                ));
            }
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(invalid(
                    "dicom.tls_key",
                    "must be set when dicom.tls_cert is (both or neither)".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "dicom.tls_cert",
                    "must be set when dicom.tls_key is (both or neither)".into(),
                ));
            }
            _ => {}
        }
        if self.tls_ca.is_some() && !self.tls_configured() {
            return Err(invalid(
                "dicom.tls_ca",
                "needs dicom.tls_cert and dicom.tls_key: client certificates are checked only \
                 by a receiver that speaks TLS"
                    .into(),
            ));
        }
        Ok(())
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
    pub fn max_association(&self) -> Duration {
        Duration::from_secs(self.max_association_secs)
    }
}

/// An AE title (PS3.5 AE value representation): 1 to 16 characters of printable ASCII
/// without backslash, not only spaces. Compared after trimming spaces, as peers pad them.
pub fn check_ae_title(ae: &str) -> Result<(), String> {
    let trimmed = ae.trim();
    if trimmed.is_empty() {
        return Err("must not be empty or only spaces".into());
    }
    if ae.len() > 16 {
        return Err(format!("must be at most 16 characters, got {}", ae.len()));
    }
    if !ae.chars().all(|c| c.is_ascii_graphic() || c == ' ') || ae.contains('\\') {
        return Err("must be printable ASCII without backslash".into());
    }
    Ok(())
}

/// The shortest accepted `web.token`: shorter tokens are guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// How to make a password hash, for error messages.
const PASSWD_HINT: &str = "make one with `lungwatch passwd` and add it as \
     [[web.users]] name = \"...\", password_hash = \"$argon2id$...\", role = \"admin\" or \"viewer\"";

impl WebConfig {
    pub fn listen_addr(&self) -> Result<std::net::SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| ConfigError::Invalid {
            key: "web.listen",
            problem: format!(
                "must be an IP address and port such as \"127.0.0.1:8080\", got {:?}",
                self.listen
            ),
        })
    }

    /// True when a token or at least one user is configured.
    pub fn auth_configured(&self) -> bool {
        self.token.is_some() || !self.users.is_empty()
    }

    /// True when the page is served over HTTPS.
    pub fn tls_configured(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// The warning shown at every start and on the status page when the page is reachable
    /// from the network in clear text (`allow_plain_http`), else None.
    pub fn plain_http_warning(&self) -> Option<String> {
        let addr = self.listen_addr().ok()?;
        if addr.ip().is_loopback() || self.tls_configured() {
            return None;
        }
        Some(format!(
            "the web page listens on {addr} over plain HTTP (web.allow_plain_http = true): \
             passwords and patient data cross the network unencrypted"
        ))
    }

    /// Checks the web keys. Refuses to expose the page beyond this machine without
    /// authentication and TLS: patient data must not be readable by anyone on the network,
    /// nor cross it in clear text.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, problem: String| ConfigError::Invalid { key, problem };
        let addr = self.listen_addr()?;
        if let Some(t) = &self.token
            && t.chars().count() < MIN_TOKEN_LEN
        {
            return Err(invalid(
                "web.token",
                format!("must be at least {MIN_TOKEN_LEN} characters"),
            ));
        }
        for (i, u) in self.users.iter().enumerate() {
            if u.name.is_empty() || u.name.contains(':') || u.name.chars().any(char::is_control) {
                return Err(invalid(
                    "web.users.name",
                    format!(
                        "{:?} must be non-empty, without ':' or control characters",
                        u.name
                    ),
                ));
            }
            if u.name == "token" {
                return Err(invalid(
                    "web.users.name",
                    "\"token\" is reserved: the audit trail names web.token requests so".into(),
                ));
            }
            if self.users[..i].iter().any(|o| o.name == u.name) {
                return Err(invalid(
                    "web.users.name",
                    format!("{:?} appears twice", u.name),
                ));
            }
            let phc = argon2::password_hash::PasswordHash::new(&u.password_hash);
            if !phc.is_ok_and(|h| h.algorithm.as_str() == "argon2id" && h.hash.is_some()) {
                return Err(invalid(
                    "web.users.password_hash",
                    format!(
                        "of user {:?} is not an Argon2id PHC string; {PASSWD_HINT}",
                        u.name
                    ),
                ));
            }
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(invalid(
                    "web.tls_key",
                    "must be set when web.tls_cert is".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "web.tls_cert",
                    "must be set when web.tls_key is".into(),
                ));
            }
            _ => {}
        }
        // Authentication is required on the network in every case: allow_plain_http
        // waives only TLS (for a TLS-terminating proxy), never the password.
        if !addr.ip().is_loopback() && !self.auth_configured() {
            return Err(invalid(
                "web.listen",
                format!(
                    "is {addr}, which is reachable from other machines, but no authentication \
                     is configured: add [[web.users]] ({PASSWD_HINT}) or web.token, and \
                     web.tls_cert/web.tls_key, or listen on 127.0.0.1"
                ),
            ));
        }
        if !addr.ip().is_loopback() && !self.tls_configured() && !self.allow_plain_http {
            return Err(invalid(
                "web.listen",
                format!(
                    "is {addr}, which is reachable from other machines, but TLS is not \
                     configured: set web.tls_cert and web.tls_key (install.sh makes a \
                     self-signed pair in /etc/lungwatch/tls/), or listen on 127.0.0.1, or \
                     set web.allow_plain_http = true to accept clear text on the network"
                ),
            ));
        }
        Ok(())
    }
}

/// Keys of earlier versions that are refused with instructions rather than ignored: a
/// site upgrading must not end up with an open page or a silently dropped password.
fn reject_retired_keys(user: &toml::Table) -> Result<(), ConfigError> {
    let Some(toml::Value::Table(web)) = user.get("web") else {
        return Ok(());
    };
    for key in ["basic_user", "basic_password_sha256"] {
        if web.contains_key(key) {
            return Err(ConfigError::Invalid {
                key: if key == "basic_user" {
                    "web.basic_user"
                } else {
                    "web.basic_password_sha256"
                },
                problem: format!(
                    "is no longer accepted: unsalted SHA-256 password hashes are cracked in \
                     seconds. Replace web.basic_user and web.basic_password_sha256 with named \
                     users with Argon2id hashes: {PASSWD_HINT}"
                ),
            });
        }
    }
    Ok(())
}

impl AuditConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.retention_days == 0 {
            return Err(ConfigError::Invalid {
                key: "audit.retention_days",
                problem: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// Where models are installed by install.sh.
pub const INSTALLED_MODELS_DIR: &str = "/usr/share/lungwatch/models";

impl Default for Config {
    fn default() -> Self {
        Config::from_toml(DEFAULT_TOML, Path::new("<embedded default>"))
            .expect("the embedded default config is valid")
    }
}

/// Lays `user` over `base` key by key, so a config file only needs the keys it changes.
fn merge_tables(base: &mut toml::Table, user: toml::Table) {
    for (key, value) in user {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(u)) => merge_tables(b, u),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

impl Config {
    /// Parses and validates a config from TOML text. `origin` only labels errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let parse_error = |message: String| ConfigError::Parse {
            path: origin.to_path_buf(),
            message,
        };
        let user: toml::Table = toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;
        reject_retired_keys(&user)?;
        let mut merged: toml::Table =
            toml::from_str(DEFAULT_TOML).expect("the embedded default config is TOML");
        merge_tables(&mut merged, user);
        let config: Config = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Loads `path` when given, otherwise the embedded default.
    pub fn load_or_default(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            Some(p) => Self::load(p),
            None => Self::from_toml(DEFAULT_TOML, Path::new("<embedded default>")),
        }
    }

    /// Checks every key, section by section; the first problem is named by its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_paths()?;
        self.validate_watch_and_selection()?;
        self.validate_analysis()?;
        self.web.validate()?;
        self.audit.validate()?;
        self.dicom.validate()?;
        for (i, d) in self.destinations.iter().enumerate() {
            if self.destinations[..i].iter().any(|o| o.name == d.name) {
                return Err(invalid(
                    "destinations.name",
                    format!("{:?} is used twice", d.name),
                ));
            }
            d.validate()?;
        }
        self.validate_outbox_and_log()
    }

    fn validate_paths(&self) -> Result<(), ConfigError> {
        if self.paths.incoming.as_os_str().is_empty() {
            return Err(invalid("paths.incoming", "must not be empty"));
        }
        if self.paths.data.as_os_str().is_empty() {
            return Err(invalid("paths.data", "must not be empty"));
        }
        if self.paths.data.starts_with(&self.paths.incoming)
            || self.paths.incoming.starts_with(&self.paths.data)
        {
            return Err(invalid(
                "paths.data",
                "must not be inside paths.incoming or contain it (the watcher would ingest its own store)",
            ));
        }
        Ok(())
    }

    fn validate_watch_and_selection(&self) -> Result<(), ConfigError> {
        if self.watch.rescan_secs == 0 {
            return Err(invalid("watch.rescan_secs", "must be at least 1"));
        }
        if self.watch.ignore_suffixes.iter().any(|s| s.is_empty()) {
            return Err(invalid(
                "watch.ignore_suffixes",
                "must not contain an empty string (it would ignore every file)",
            ));
        }
        if self.selection.modalities.is_empty() {
            return Err(invalid(
                "selection.modalities",
                "must list at least one modality",
            ));
        }
        let tilt = self.selection.max_axial_tilt_deg;
        if !(0.0..=90.0).contains(&tilt) {
            return Err(invalid(
                "selection.max_axial_tilt_deg",
                format!("must be between 0 and 90, got {tilt}"),
            ));
        }
        if self.selection.min_slices == 0 {
            return Err(invalid("selection.min_slices", "must be at least 1"));
        }
        let thick = self.selection.max_slice_thickness_mm;
        if !(thick.is_finite() && thick > 0.0) {
            return Err(invalid(
                "selection.max_slice_thickness_mm",
                format!("must be a positive number of mm, got {thick}"),
            ));
        }
        if self.selection.max_voxels < 1_000_000 {
            return Err(invalid(
                "selection.max_voxels",
                "must be at least 1000000 (a few slices of 512 × 512)",
            ));
        }
        Ok(())
    }

    fn validate_analysis(&self) -> Result<(), ConfigError> {
        if self.analysis.max_attempts == 0 {
            return Err(invalid("analysis.max_attempts", "must be at least 1"));
        }
        if self.analysis.stall_secs < 60 {
            return Err(invalid(
                "analysis.stall_secs",
                "must be at least 60 (a large series takes tens of seconds on a small box)",
            ));
        }
        if self.decode.threads > 256 {
            return Err(invalid("decode.threads", "must be at most 256"));
        }
        if let Some(dir) = &self.models.dir
            && dir.as_os_str().is_empty()
        {
            return Err(invalid(
                "models.dir",
                "must not be empty (leave it out instead)",
            ));
        }
        Ok(())
    }

    fn validate_outbox_and_log(&self) -> Result<(), ConfigError> {
        if let Some(folder) = &self.outbox.folder
            && folder.as_os_str().is_empty()
        {
            return Err(invalid(
                "outbox.folder",
                "must not be empty (leave it out instead)",
            ));
        }
        if self.outbox.retry_min_secs == 0 {
            return Err(invalid("outbox.retry_min_secs", "must be at least 1"));
        }
        if self.outbox.retry_max_secs < self.outbox.retry_min_secs {
            return Err(invalid(
                "outbox.retry_max_secs",
                "must be at least outbox.retry_min_secs",
            ));
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log.level.as_str()) {
            return Err(invalid(
                "log.level",
                format!(
                    "must be one of error, warn, info, debug, trace; got {:?}",
                    self.log.level
                ),
            ));
        }
        Ok(())
    }

    pub fn stable_after(&self) -> Duration {
        Duration::from_secs(self.watch.stable_secs)
    }
    pub fn truncated_grace(&self) -> Duration {
        Duration::from_secs(self.watch.truncated_grace_secs)
    }
    pub fn rescan_every(&self) -> Duration {
        Duration::from_secs(self.watch.rescan_secs)
    }
    pub fn store_dir(&self) -> PathBuf {
        self.paths.data.join("store")
    }
    pub fn quarantine_dir(&self) -> PathBuf {
        self.paths.data.join("quarantine")
    }
    pub fn database_path(&self) -> PathBuf {
        self.paths.data.join("lungwatch.sqlite")
    }
    /// Scratch space for copies in flight; on the store's filesystem so rename is atomic.
    pub fn staging_dir(&self) -> PathBuf {
        self.paths.data.join("staging")
    }
    /// The models folder: `models.dir` when set; else the first of these that holds a
    /// `manifest.toml`: the installed `/usr/share/lungwatch/models`, `models/` in the
    /// current folder (a checkout), `models/` of the checkout the executable was built in
    /// (`target/release/lungwatch`). When none does, the installed path, so errors name it.
    pub fn models_dir(&self) -> PathBuf {
        if let Some(dir) = &self.models.dir {
            return dir.clone();
        }
        let mut candidates = vec![PathBuf::from(INSTALLED_MODELS_DIR), PathBuf::from("models")];
        if let Ok(exe) = std::env::current_exe()
            && let Some(root) = exe.parent().and_then(Path::parent).and_then(Path::parent)
        {
            candidates.push(root.join("models"));
        }
        candidates
            .into_iter()
            .find(|c| c.join("manifest.toml").is_file())
            .unwrap_or_else(|| PathBuf::from(INSTALLED_MODELS_DIR))
    }
    pub fn decode_threads(&self) -> usize {
        if self.decode.threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            self.decode.threads
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_complete() {
        let c = Config::load_or_default(None).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.selection.modalities, vec!["CT".to_string()]);
    }

    #[test]
    fn missing_sections_take_defaults() {
        let c = Config::from_toml(
            "[paths]\nincoming = \"/a\"\ndata = \"/b\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(c.watch, Config::default().watch);
        assert_eq!(c.paths.incoming, PathBuf::from("/a"));
    }

    #[test]
    fn unknown_key_is_an_error_that_names_it() {
        let err = Config::from_toml(
            "[paths]\nincoming = \"/a\"\ndata = \"/b\"\n[watch]\nrescan_sec = 5\n",
            Path::new("t.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("rescan_sec"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let base = "[paths]\nincoming = \"/a\"\ndata = \"/b\"\n";
        for (extra, key) in [
            ("[watch]\nrescan_secs = 0\n", "watch.rescan_secs"),
            (
                "[selection]\nmax_slice_thickness_mm = -1.0\n",
                "selection.max_slice_thickness_mm",
            ),
            ("[selection]\nmodalities = []\n", "selection.modalities"),
            ("[log]\nlevel = \"loud\"\n", "log.level"),
        ] {
            let err = Config::from_toml(&format!("{base}{extra}"), Path::new("t.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{err} should name {key}");
        }
        let err = Config::from_toml(
            "[paths]\nincoming = \"/a\"\ndata = \"/a/data\"\n",
            Path::new("t.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("paths.data"), "{err}");
    }

    fn web(extra: &str) -> Result<Config, ConfigError> {
        Config::from_toml(
            &format!("[paths]\nincoming = \"/a\"\ndata = \"/b\"\n[web]\n{extra}"),
            Path::new("t.toml"),
        )
    }

    #[test]
    fn web_defaults_to_loopback_without_auth() {
        let c = Config::default();
        assert_eq!(c.web.listen, "127.0.0.1:8080");
        assert!(!c.web.mask_patient_ids);
        assert!(!c.web.auth_configured());
        assert!(c.web.listen_addr().unwrap().ip().is_loopback());
        web("listen = \"[::1]:9000\"\n").unwrap();
    }

    #[test]
    fn non_loopback_listen_without_auth_is_refused() {
        for addr in ["0.0.0.0:8080", "192.168.1.20:80", "[::]:8080"] {
            let err = web(&format!("listen = {addr:?}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("web.listen"), "{err}");
            assert!(err.contains("no authentication"), "{err}");
        }
        let tls = "tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n";
        web(&format!(
            "listen = \"0.0.0.0:8080\"\ntoken = \"0123456789abcdef0123\"\n{tls}"
        ))
        .unwrap();
        let hash = crate::web::hash_password("pw").unwrap();
        web(&format!(
            "listen = \"0.0.0.0:8080\"\n{tls}[[web.users]]\nname = \"it\"\npassword_hash = {hash:?}\n"
        ))
        .unwrap();
    }

    #[test]
    fn non_loopback_without_tls_needs_allow_plain_http() {
        let auth = "listen = \"0.0.0.0:8080\"\ntoken = \"0123456789abcdef0123\"\n";
        let err = web(auth).unwrap_err().to_string();
        assert!(err.contains("web.listen") && err.contains("TLS"), "{err}");
        let c = web(&format!("{auth}allow_plain_http = true\n")).unwrap();
        assert!(c.web.plain_http_warning().unwrap().contains("plain HTTP"));
        // It never waives authentication.
        let err = web("listen = \"0.0.0.0:8080\"\nallow_plain_http = true\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no authentication"), "{err}");
        // Loopback needs neither, and is not warned about.
        assert!(Config::default().web.plain_http_warning().is_none());
    }

    #[test]
    fn users_need_argon2id_hashes_and_default_to_viewer() {
        let hash = crate::web::hash_password("pw").unwrap();
        let c = web(&format!(
            "[[web.users]]\nname = \"a\"\npassword_hash = {hash:?}\nrole = \"admin\"\n\
             [[web.users]]\nname = \"b\"\npassword_hash = {hash:?}\n"
        ))
        .unwrap();
        assert_eq!(c.web.users[0].role, Role::Admin);
        assert_eq!(c.web.users[1].role, Role::Viewer);
        let sha = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$UlRVd3ZXh8oFkRHiCgyvbQ";
        for (user, key) in [
            (
                format!("name = \"a\"\npassword_hash = {sha:?}\n"),
                "web.users.password_hash",
            ),
            (
                format!("name = \"a\"\npassword_hash = {argon2i:?}\n"),
                "web.users.password_hash",
            ),
            (
                format!("name = \"a:b\"\npassword_hash = {hash:?}\n"),
                "web.users.name",
            ),
            (
                format!("name = \"token\"\npassword_hash = {hash:?}\n"),
                "web.users.name",
            ),
            (
                format!("name = \"a\"\npassword_hash = {hash:?}\nrole = \"root\"\n"),
                "role",
            ),
        ] {
            let err = web(&format!("[[web.users]]\n{user}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{err} should name {key}");
        }
        let twice = format!("[[web.users]]\nname = \"a\"\npassword_hash = {hash:?}\n");
        let err = web(&format!("{twice}{twice}")).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn retired_sha256_keys_are_refused_with_instructions() {
        let hash = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
        for extra in [
            format!("basic_user = \"it\"\nbasic_password_sha256 = {hash:?}\n"),
            format!("basic_password_sha256 = {hash:?}\n"),
            "basic_user = \"it\"\n".to_string(),
        ] {
            let err = web(&extra).unwrap_err().to_string();
            assert!(err.contains("web.basic_"), "{err}");
            assert!(err.contains("lungwatch passwd"), "{err}");
            assert!(err.contains("[[web.users]]"), "{err}");
        }
    }

    #[test]
    fn bad_web_keys_are_named() {
        for (extra, key) in [
            ("listen = \"localhost\"\n", "web.listen"),
            ("token = \"short\"\n", "web.token"),
            ("tls_cert = \"/c.pem\"\n", "web.tls_key"),
            ("tls_key = \"/k.pem\"\n", "web.tls_cert"),
            ("listen_on = \"x\"\n", "listen_on"),
        ] {
            let err = web(extra).unwrap_err().to_string();
            assert!(err.contains(key), "{err} should name {key}");
        }
        let err = Config::from_toml(
            "[paths]\nincoming = \"/a\"\ndata = \"/b\"\n[audit]\nretention_days = 0\n",
            Path::new("t.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("audit.retention_days"), "{err}");
        assert_eq!(Config::default().audit.retention_days, 365);
        assert!(Config::default().audit.enabled);
    }

    fn dicom(extra: &str) -> Result<Config, ConfigError> {
        Config::from_toml(
            &format!("[paths]\nincoming = \"/a\"\ndata = \"/b\"\n[dicom]\n{extra}"),
            Path::new("t.toml"),
        )
    }

    #[test]
    fn dicom_receiver_is_off_by_default() {
        let c = Config::default();
        assert_eq!(c.dicom.listen, None);
        assert_eq!(c.dicom.listen_addr().unwrap(), None);
        assert_eq!(c.dicom.ae_title, "LUNGWATCH");
        assert!(c.dicom.allowed_calling_aes.is_empty());
        assert!(c.dicom.peer_allowed("10.0.0.9".parse().unwrap()));
        let only = dicom("allowed_peers = [\"10.0.0.8\"]\n").unwrap();
        assert!(only.dicom.peer_allowed("10.0.0.8".parse().unwrap()));
        assert!(!only.dicom.peer_allowed("10.0.0.9".parse().unwrap()));
        assert!(
            dicom("allowed_peers = [\"pacs.local\"]\n")
                .unwrap_err()
                .to_string()
                .contains("dicom.allowed_peers")
        );
        assert_eq!(c.dicom.max_associations, 8);
        assert_eq!(c.dicom.uid_root, "2.25");
        let on = dicom("listen = \"0.0.0.0:11112\"\nallowed_calling_aes = [\"PACS\"]\n").unwrap();
        assert_eq!(on.dicom.listen_addr().unwrap().unwrap().port(), 11112);
        assert!(!c.dicom.tls_configured());
        let tls =
            dicom("tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\ntls_ca = \"/ca.pem\"\n").unwrap();
        assert!(tls.dicom.tls_configured());
        assert_eq!(tls.dicom.tls_ca.as_deref(), Some(Path::new("/ca.pem")));
    }

    #[test]
    fn bad_dicom_keys_are_named() {
        for (extra, key) in [
            ("listen = \"localhost\"\n", "dicom.listen"),
            ("ae_title = \"\"\n", "dicom.ae_title"),
            ("ae_title = \"   \"\n", "dicom.ae_title"),
            ("ae_title = \"SEVENTEEN-CHARSXX\"\n", "dicom.ae_title"),
            ("ae_title = \"A\\\\B\"\n", "dicom.ae_title"),
            (
                "allowed_calling_aes = [\"OK\", \"\"]\n",
                "dicom.allowed_calling_aes",
            ),
            ("max_associations = 0\n", "dicom.max_associations"),
            ("idle_timeout_secs = 0\n", "dicom.idle_timeout_secs"),
            (
                "idle_timeout_secs = 60\nmax_association_secs = 10\n",
                "dicom.max_association_secs",
            ),
            ("port = 104\n", "port"),
            ("uid_root = \"1.2.03\"\n", "dicom.uid_root"),
            ("uid_root = \"1.2.\"\n", "dicom.uid_root"),
            ("uid_root = \"org.example\"\n", "dicom.uid_root"),
            ("tls_cert = \"/c.pem\"\n", "dicom.tls_key"),
            ("tls_key = \"/k.pem\"\n", "dicom.tls_cert"),
            ("tls_ca = \"/ca.pem\"\n", "dicom.tls_ca"),
            ("tls_cert = \"\"\ntls_key = \"/k.pem\"\n", "dicom.tls_cert"),
            ("tls = true\n", "tls"),
        ] {
            let err = dicom(extra).unwrap_err().to_string();
            assert!(err.contains(key), "{err} should name {key}");
        }
    }

    #[test]
    fn destinations_are_parsed_and_checked() {
        assert!(Config::default().destinations.is_empty());
        let base = "[paths]\nincoming = \"/a\"\ndata = \"/b\"\n";
        let one = "[[destinations]]\nname = \"pacs\"\nae_title = \"ORTHANC\"\nhost = \"127.0.0.1\"\nport = 4242\n";
        let c = Config::from_toml(&format!("{base}{one}"), Path::new("t.toml")).unwrap();
        assert_eq!(c.destinations[0].port, 4242);
        assert_eq!(c.destinations[0].objects, ObjectKind::ALL.to_vec());
        let only_sr = format!("{base}{one}objects = [\"sr\"]\n");
        let c = Config::from_toml(&only_sr, Path::new("t.toml")).unwrap();
        assert_eq!(c.destinations[0].objects, vec![ObjectKind::Sr]);
        assert!(!c.destinations[0].tls && c.destinations[0].tls_ca.is_none());
        let tls = format!("{base}{one}tls = true\ntls_ca = \"/etc/lungwatch/tls/site-ca.pem\"\n");
        let c = Config::from_toml(&tls, Path::new("t.toml")).unwrap();
        assert!(c.destinations[0].tls);
        assert_eq!(
            c.destinations[0].tls_ca.as_deref(),
            Some(Path::new("/etc/lungwatch/tls/site-ca.pem"))
        );
        for (toml, key) in [
            (format!("{one}{one}"), "destinations.name"),
            (one.replace("ORTHANC", ""), "destinations.ae_title"),
            (one.replace("127.0.0.1", " "), "destinations.host"),
            (one.replace("4242", "0"), "destinations.port"),
            (one.replace("\"pacs\"", "\"folder\""), "destinations.name"),
            (format!("{one}objects = [\"nifti\"]\n"), "objects"),
            (
                format!("{one}tls_ca = \"/ca.pem\"\n"),
                "destinations.tls_ca",
            ),
            (
                format!("{one}tls = true\ntls_ca = \"\"\n"),
                "destinations.tls_ca",
            ),
            (format!("{one}tls = \"yes\"\n"), "tls"),
            (
                "[outbox]\nretry_min_secs = 0\n".to_string(),
                "outbox.retry_min_secs",
            ),
            (
                "[outbox]\nretry_max_secs = 1\n".to_string(),
                "outbox.retry_max_secs",
            ),
            ("[outbox]\nfolder = \"\"\n".to_string(), "outbox.folder"),
        ] {
            let err = Config::from_toml(&format!("{base}{toml}"), Path::new("t.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{err} should name {key}");
        }
    }

    #[test]
    fn outbox_back_off_doubles_up_to_its_limit() {
        let outbox = Config::default().outbox;
        assert_eq!(outbox.folder, None);
        let waits: Vec<u64> = (1..=12).map(|a| outbox.retry_after(a).as_secs()).collect();
        assert_eq!(
            waits[..3],
            [
                outbox.retry_min_secs,
                2 * outbox.retry_min_secs,
                4 * outbox.retry_min_secs
            ]
        );
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*waits.last().unwrap(), outbox.retry_max_secs);
        assert_eq!(
            outbox.retry_after(u32::MAX).as_secs(),
            outbox.retry_max_secs
        );
    }

    #[test]
    fn models_dir_prefers_the_configured_value() {
        let c = Config::from_toml(
            "[paths]\nincoming = \"/a\"\ndata = \"/b\"\n[models]\ndir = \"/srv/m\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(c.models_dir(), PathBuf::from("/srv/m"));
        // Unset: a folder with a manifest (this checkout's), or the installed path.
        let d = Config::default().models_dir();
        assert!(
            d.join("manifest.toml").is_file() || d == Path::new(INSTALLED_MODELS_DIR),
            "{d:?}"
        );
    }

    #[test]
    fn wrong_type_reports_the_key() {
        let err = Config::from_toml(
            "[paths]\nincoming = \"/a\"\ndata = \"/b\"\n[series]\nquiet_secs = \"soon\"\n",
            Path::new("t.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("quiet_secs"), "{err}");
    }
}
