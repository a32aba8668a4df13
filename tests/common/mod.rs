//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/data`, or None (with a message saying the test is skipped) when absent:
/// a user's fresh clone does not have the shared data.
pub fn shared_data(test: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if dir.join("README.md").exists() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED {test}: ../shared/data is not present (it holds the real DICOM test data)"
        );
        None
    }
}
