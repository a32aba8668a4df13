//! `lungwatch calibrate` with the real binary, on phantom series written as DICOM (no
//! shared data needed):
//! - the refusals, each before anything is written: a class under 10 series, a non-empty
//!   `--out`, `--out` pointing at the models in use;
//! - the whole path on 30 series (10 per class, phantoms of different sizes so their
//!   features differ): the table, a complete models folder that `check --models` accepts,
//!   and `analyze --models` reporting the new classifier version.
//!
//! The phantoms' classes are arbitrary, so nothing here judges the refit's accuracy; the
//! solver's correctness is tested on data with a known answer in `src/calibrate/fit.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::phantom::{self, PhantomSpec};

const CLASSES: [&str; 3] = ["covid19", "other_pneumonia", "normal"];

fn lungwatch(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// Writes `per_class[k]` phantom series of class k and the labels CSV naming them.
fn labelled_phantoms(root: &Path, per_class: [usize; 3]) -> PathBuf {
    let mut csv = String::from("path,class,slice_labels,mask\n");
    let mut n = 0u32;
    for (class, &count) in CLASSES.iter().zip(&per_class) {
        for _ in 0..count {
            n += 1;
            let mut spec = PhantomSpec::small(n);
            // Different pixel sizes and lengths give different lung volumes and ratios.
            spec.pixel_mm = 2.2 + 0.03 * n as f64;
            spec.slices = 14 + (n as usize % 5);
            let folder = root.join(format!("series-{n}"));
            phantom::write(&folder, &phantom::slices(&spec));
            csv.push_str(&format!("series-{n},{class},,\n"));
        }
    }
    let labels = root.join("labels.csv");
    std::fs::write(&labels, csv).unwrap();
    // Phantoms are short series: let selection take them.
    std::fs::write(root.join("config.toml"), "[selection]\nmin_slices = 4\n").unwrap();
    labels
}

fn config_of(root: &Path) -> String {
    root.join("config.toml").to_str().unwrap().to_string()
}

#[test]
fn refusals_come_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let labels = labelled_phantoms(dir.path(), [10, 3, 10]);
    let models = models_dir();
    let models_arg = models.to_str().unwrap();
    let out = dir.path().join("calibrated");
    let run = |out: &Path| {
        lungwatch(&[
            "calibrate",
            labels.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--models",
            models_arg,
            "--config",
            &config_of(dir.path()),
        ])
    };

    let small = run(&out);
    let stderr = String::from_utf8_lossy(&small.stderr);
    assert!(!small.status.success());
    assert!(
        stderr.contains("other_pneumonia has 3") && stderr.contains("at least 10"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing may be written when refused");

    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "a site's file").unwrap();
    let busy = run(&out);
    assert!(!busy.status.success());
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "a site's file"
    );

    let shipped = run(&models);
    assert!(!shipped.status.success());
    let stderr = String::from_utf8_lossy(&shipped.stderr);
    assert!(stderr.contains("models"), "{stderr}");
}

#[test]
fn a_calibrated_models_folder_is_accepted_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let labels = labelled_phantoms(dir.path(), [10, 10, 10]);
    let out = dir.path().join("calibrated");
    let models = models_dir();
    let run = lungwatch(&[
        "calibrate",
        labels.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--models",
        models.to_str().unwrap(),
        "--config",
        &config_of(dir.path()),
        "--json",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["cases_per_class"], serde_json::json!([10, 10, 10]));
    for side in ["before", "after"] {
        let accuracy = report[side]["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&accuracy), "{side}: {accuracy}");
        assert!(report[side]["brier"].as_f64().unwrap().is_finite());
    }
    let new_version = report["new_version"].as_str().unwrap().to_string();
    assert!(new_version.contains("-site."), "{new_version}");

    // Segmentation models copied unchanged; a new classifier and manifest beside them.
    for entry in std::fs::read_dir(&models).unwrap() {
        let name = entry.unwrap().file_name();
        let name = name.to_str().unwrap();
        if name.ends_with(".onnx") && name != "classifier.onnx" {
            assert_eq!(
                std::fs::read(models.join(name)).unwrap(),
                std::fs::read(out.join(name)).unwrap(),
                "{name} must be copied unchanged"
            );
        }
    }
    assert_ne!(
        std::fs::read(models.join("classifier.onnx")).unwrap(),
        std::fs::read(out.join("classifier.onnx")).unwrap()
    );
    let manifest = std::fs::read_to_string(out.join("manifest.toml")).unwrap();
    assert!(manifest.contains(&new_version));

    let check = lungwatch(&["check", "--models", out.to_str().unwrap()]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "{said}");
    assert!(said.contains(&new_version), "{said}");

    let analysed = lungwatch(&[
        "analyze",
        "--json",
        "--models",
        out.to_str().unwrap(),
        "--config",
        &config_of(dir.path()),
        dir.path().join("series-1").to_str().unwrap(),
    ]);
    assert!(
        analysed.status.success(),
        "{}",
        String::from_utf8_lossy(&analysed.stderr)
    );
    let reports: serde_json::Value = serde_json::from_slice(&analysed.stdout).unwrap();
    let classifier = reports[0]["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "classifier")
        .expect("the report names the classifier")
        .clone();
    assert_eq!(classifier["version"], new_version.as_str());
}
