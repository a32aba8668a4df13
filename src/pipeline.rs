//! From a series' files to a finished analysis: the one path that the worker and
//! `lungwatch analyze` both call (decode → analyse → artifacts), with every failure
//! classified and every panic caught.
//!
//! A panic in one series is a bug, but it must not stop the queue behind it: it becomes a
//! failure of kind `InternalError` with the panic's message, and the caller goes on.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::analysis::{self, Analyser, Analysis};
use crate::db::FailureKind;
use crate::dicom::InstanceHeader;
use crate::dicom::volume::build_volume;

/// Why a series could not be analysed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl Failure {
    fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

/// Decodes the files into a volume and analyses it. `header` is any instance's header
/// (patient and study identity).
pub fn analyse_files(
    paths: &[PathBuf],
    header: &InstanceHeader,
    analyser: &Analyser,
    decode_threads: usize,
    per_slice: bool,
) -> Result<Analysis, Failure> {
    guarded(|| {
        let started = Instant::now();
        let volume = build_volume(paths, decode_threads)
            .map_err(|e| Failure::new(FailureKind::UnusableSeries, e.to_string()))?;
        let decode_ms = started.elapsed().as_millis() as u64;
        analyser
            .analyse(volume, header, decode_ms, per_slice)
            .map_err(|e| Failure::new(FailureKind::AnalysisError, format!("{e:#}")))
    })
}

/// Writes the previews and the label mask under `dir`, durably; returns the file names.
pub fn write_artifacts(analysis: &Analysis, dir: &Path) -> Result<Vec<String>, Failure> {
    guarded(|| {
        analysis::write_artifacts(analysis, dir).map_err(|e| {
            Failure::new(
                FailureKind::ArtifactError,
                format!("cannot write the results to {}: {e}", dir.display()),
            )
        })
    })
}

/// Runs `work`, turning a panic into an `InternalError` failure with its message.
pub fn guarded<T>(work: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string());
        Err(Failure::new(
            FailureKind::InternalError,
            format!("internal error: {message} (a bug in lungwatch; please report it)"),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_internal_error() {
        let v: Vec<u8> = Vec::new();
        let index = v.len() + 3;
        let failure = guarded(|| -> Result<u8, Failure> { Ok(v[index]) }).unwrap_err();
        assert_eq!(failure.kind, FailureKind::InternalError);
        assert!(
            failure
                .message
                .starts_with("internal error: index out of bounds")
        );
        let failure = guarded(|| -> Result<(), Failure> { panic!("boom {}", 7) }).unwrap_err();
        assert!(failure.message.contains("boom 7"));
    }

    #[test]
    fn errors_pass_through_unchanged() {
        let failure = guarded(|| -> Result<(), Failure> {
            Err(Failure::new(FailureKind::UnusableSeries, "no pixels"))
        })
        .unwrap_err();
        assert_eq!(
            failure,
            Failure::new(FailureKind::UnusableSeries, "no pixels")
        );
    }
}
