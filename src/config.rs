//! Typed configuration with safe defaults and validation that names the offending key.
//!
//! The documented default file, `config/lungwatch.toml`, is embedded in the binary and a
//! user's file is laid over it key by key, so the defaults in the docs and in the code can
//! never disagree.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

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
    pub log: Log,
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

    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                problem: problem.into(),
            }
        }
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
        if self.decode.threads > 256 {
            return Err(invalid("decode.threads", "must be at most 256"));
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
    pub fn quiet_period(&self) -> Duration {
        Duration::from_secs(self.series.quiet_secs)
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
