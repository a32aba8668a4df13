//! lungwatch's SEG and SR read by the reference Python libraries (`tests/python/
//! check_objects.py`): highdicom's SEG pixels equal `labels.nii.gz` voxel for voxel once
//! mapped onto the source slices, and pydicom's SR measurements equal the report. Runs on
//! a phantom series and, when ../shared/data is present, on a real covid-ct-md series.
//!
//! Needs a Python with pydicom, highdicom and numpy: `LUNGWATCH_PYTHON`, or the venv
//! `.ci/run` makes at `target/pyenv`; skipped with a message without one.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Daemon;
use common::phantom::{self, PhantomSpec};
use lungwatch::db::ReadQueries;

fn python(test: &str) -> Option<PathBuf> {
    let candidate = std::env::var_os("LUNGWATCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python"));
    let ok = Command::new(&candidate)
        .args(["-c", "import highdicom, pydicom, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIPPED {test}: no Python with highdicom, pydicom and numpy at {} \
             (python3 -m venv target/pyenv && target/pyenv/bin/pip install pydicom highdicom numpy, \
             or set LUNGWATCH_PYTHON)",
            candidate.display()
        );
    }
    ok.then_some(candidate)
}

/// Runs the checks on every result the daemon stored; returns the script's output.
fn check_results(d: &Daemon, python: &Path) -> String {
    let db = d.db();
    let results = db.all_results().unwrap();
    assert!(!results.is_empty());
    let mut out = String::new();
    for r in results {
        let dir = d.data.join(&r.artifacts_dir);
        let report = dir.join("checked-report.json");
        std::fs::write(&report, serde_json::to_string(&r.report).unwrap()).unwrap();
        let sources: Vec<(String, PathBuf)> = db
            .series_instances(&r.report.series_instance_uid)
            .unwrap()
            .into_iter()
            .map(|i| (i.sop_instance_uid, d.data.join("store").join(i.store_path)))
            .collect();
        let sources_json = dir.join("checked-sources.json");
        std::fs::write(&sources_json, serde_json::to_string(&sources).unwrap()).unwrap();
        let run = Command::new(python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/check_objects.py"))
            .arg(dir.join("dicom/seg.dcm"))
            .arg(dir.join("dicom/sr.dcm"))
            .arg(dir.join("labels.nii.gz"))
            .arg(&report)
            .arg(&sources_json)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(
            run.status.success(),
            "series {}:\n{text}",
            r.report.series_instance_uid
        );
        out.push_str(&text);
    }
    out
}

#[test]
fn highdicom_and_pydicom_read_the_seg_and_sr_as_the_analysis_wrote_them() {
    let Some(python) = python("SEG/SR read by highdicom and pydicom") else {
        return;
    };
    let mut d = Daemon::new("[selection]\nmin_slices = 4\n");
    d.start();
    let spec = PhantomSpec::small(21);
    let staging = d.root.path().join("phantom");
    for (i, path) in phantom::write(&staging, &phantom::slices(&spec))
        .iter()
        .enumerate()
    {
        common::drop_file(path, &d.incoming, &format!("p-{i}.dcm"));
    }
    let mut expected_done = 1;
    if let Some(data) = common::shared_data("SEG/SR on a real series") {
        for (i, (folder, path)) in common::covid_series(&data).iter().enumerate() {
            if folder == "cap-cap002" {
                common::drop_file(path, &d.incoming, &format!("real-{i}.dcm"));
            }
        }
        expected_done += 1;
    }
    d.wait_for(300, "the analyses", |c| c.jobs_done == expected_done);
    let out = check_results(&d, &python);
    eprintln!("{out}");
    assert_eq!(
        out.matches("equal labels.nii.gz").count(),
        expected_done as usize
    );
}
