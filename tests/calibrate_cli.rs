//! `lungwatch calibrate` with the real binary, on phantom series written as DICOM (no
//! shared data needed):
//! - the refusals, each before anything is written: a class under 10 series, a non-empty
//!   `--out`, `--out` pointing at the models in use;
//! - the whole path on 30 series (10 per class, phantoms of different sizes so their
//!   features differ): the table, a complete models folder that `check --models` accepts,
//!   the figures' 95 % intervals in `--json`, and `analyze --models` reporting the new
//!   classifier version;
//! - the same on real series (skipped without `../shared/data`): the three covid-ct-md
//!   exports, each re-identified into 10 cases of its class (new patient, study, series and
//!   SOP Instance UIDs; a different window of contiguous slices each, so the features
//!   vary), and the refusal when one of them is left out.
//!
//! The phantoms' classes are arbitrary, so nothing here judges the refit's accuracy; the
//! solver's correctness is tested on data with a known answer in `src/calibrate/fit.rs`.

mod common;

use std::path::{Path, PathBuf};

use common::lungwatch;
use common::phantom::{self, PhantomSpec};

const CLASSES: [&str; 3] = ["covid19", "other_pneumonia", "normal"];

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

/// A `[lo, hi]` interval from the JSON report.
fn interval(v: &serde_json::Value) -> [f64; 2] {
    let pair = v.as_array().unwrap_or_else(|| panic!("no interval: {v}"));
    assert_eq!(pair.len(), 2, "{v}");
    [pair[0].as_f64().unwrap(), pair[1].as_f64().unwrap()]
}

fn config_of(root: &Path) -> String {
    root.join("config.toml").to_str().unwrap().to_string()
}

/// `check --models OUT` accepts the calibrated folder and names `new_version`, and
/// `analyze --models OUT` on `root/series` reports that classifier version.
fn assert_models_in_service(out: &Path, root: &Path, series: &str, new_version: &str) {
    let check = lungwatch(&["check", "--models", out.to_str().unwrap()]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "{said}");
    assert!(said.contains(new_version), "{said}");

    let analysed = lungwatch(&[
        "analyze",
        "--json",
        "--models",
        out.to_str().unwrap(),
        "--config",
        &config_of(root),
        root.join(series).to_str().unwrap(),
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
    assert_eq!(classifier["version"], new_version);
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
        // The 95 % intervals: accuracy's brackets it; one per class AUC, each bracketing it.
        let [lo, hi] = interval(&report[side]["accuracy_ci95"]);
        assert!(lo <= accuracy && accuracy <= hi, "{side}: {lo}–{hi}");
        let aucs = report[side]["auc"].as_array().unwrap();
        let intervals = report[side]["auc_ci95"].as_array().unwrap();
        assert_eq!((aucs.len(), intervals.len()), (3, 3));
        for (auc, ci) in aucs.iter().zip(intervals) {
            let (auc, [lo, hi]) = (auc.as_f64().unwrap(), interval(ci));
            assert!(
                0.0 <= lo && lo <= auc && auc <= hi && hi <= 1.0,
                "{side}: {lo}–{hi}"
            );
        }
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

    assert_models_in_service(&out, dir.path(), "series-1", &new_version);
}

/// The covid-ct-md series and their class.
const REAL: [(&str, &str); 3] = [
    ("covid19-P002", "covid19"),
    ("cap-cap002", "other_pneumonia"),
    ("normal-normal002", "normal"),
];
/// Contiguous slices per re-identified case (2 mm each): short, so 30 cases run in
/// reasonable time on two cores, and long enough for the lungs and their lesions.
const WINDOW: usize = 24;

/// Ten cases per real series, each a window of `WINDOW` slices at its own offset within
/// the middle of the scan (where the lungs are), re-identified into `root/<series>-<k>`;
/// returns the labels CSV's rows (`path,class,,`), ten per class.
fn real_cases(data: &Path, root: &Path) -> Vec<String> {
    let mut rows = Vec::new();
    for (s, (source, class)) in REAL.iter().enumerate() {
        let mut files = common::files_under(&data.join("covid-ct-md").join(source));
        files.sort_by_key(|f| instance_number(f));
        let (first, last) = (files.len() / 5, files.len() * 4 / 5 - WINDOW);
        for k in 0..10 {
            let start = first + k * (last - first) / 9;
            let who = common::Identity {
                patient_id: format!("LW-CAL-{s}{k}"),
                study_date: "20200401",
                study_uid: format!("2.25.8120{s}{k}1"),
                series_uid: format!("2.25.8120{s}{k}2"),
                accession: format!("CAL{s}{k}"),
            };
            let folder = format!("{source}-{k}");
            let written =
                common::reidentify(&files[start..start + WINDOW], &who, &root.join(&folder));
            assert_eq!(written, WINDOW);
            rows.push(format!("{folder},{class},,\n"));
        }
    }
    rows
}

fn instance_number(file: &Path) -> i64 {
    use lungwatch::dicom::read::{Extent, parse};
    let obj = parse(&std::fs::read(file).unwrap(), Extent::Full).unwrap();
    obj.element(dicom_dictionary_std::tags::INSTANCE_NUMBER)
        .unwrap()
        .to_int::<i64>()
        .unwrap()
}

/// `0.733 (0.600–0.867)` → (0.733, Some([0.600, 0.867])); `-` → None.
fn figure_with_interval(cell: &str) -> Option<(f64, Option<[f64; 2]>)> {
    if cell == "-" {
        return None;
    }
    let (value, rest) = cell.split_once(' ').map_or((cell, ""), |(v, r)| (v, r));
    let interval = rest
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split_once('–')
        .map(|(lo, hi)| [lo.parse().unwrap(), hi.parse().unwrap()]);
    Some((value.parse().unwrap(), interval))
}

#[test]
fn calibrate_on_real_series_reidentified() {
    let Some(data) = common::shared_data("calibrate on real series") else {
        return;
    };
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let rows = real_cases(&data, dir.path());
    std::fs::write(
        dir.path().join("config.toml"),
        "[selection]\nmin_slices = 4\n",
    )
    .unwrap();
    let labels = dir.path().join("labels.csv");
    std::fs::write(
        &labels,
        format!("path,class,slice_labels,mask\n{}", rows.concat()),
    )
    .unwrap();
    let models = models_dir();
    let out = dir.path().join("calibrated");
    let calibrate = |labels: &Path| {
        lungwatch(&[
            "calibrate",
            labels.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--models",
            models.to_str().unwrap(),
            "--config",
            &config_of(dir.path()),
        ])
    };

    // One normal case fewer: refused, naming the class, before anything is analysed.
    let nine = dir.path().join("nine-normal.csv");
    std::fs::write(
        &nine,
        format!("path,class,slice_labels,mask\n{}", rows[..29].concat()),
    )
    .unwrap();
    let refused = calibrate(&nine);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("normal has 9"), "{stderr}");
    assert!(!out.exists(), "nothing may be written when refused");

    let run = calibrate(&labels);
    let table = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    println!("{table}");
    assert!(
        table.contains("covid19 10, other_pneumonia 10, normal 10; 0 failed"),
        "{table}"
    );
    let manifest: toml::Table = std::fs::read_to_string(out.join("manifest.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let classifier = &manifest["models"]["classifier"];
    let new_version = classifier["version"].as_str().unwrap().to_string();
    let provenance = &classifier["provenance"];
    let shipped: toml::Table = std::fs::read_to_string(models.join("manifest.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let shipped_version = shipped["models"]["classifier"]["version"].as_str().unwrap();
    assert!(
        new_version.starts_with(&format!("{shipped_version}-site.")),
        "{new_version}"
    );
    for class in ["covid19", "other_pneumonia", "normal"] {
        assert_eq!(provenance[&format!("cases_{class}")].as_integer(), Some(10));
    }

    // The table: a before column (the shipped version) and an after column, and in each
    // the figure and its interval, agreeing with the provenance the manifest records.
    let header = table
        .lines()
        .find(|l| l.contains(&format!("before {shipped_version}")))
        .unwrap_or_else(|| panic!("no before column in\n{table}"));
    assert!(header.contains("after (refit)"), "{table}");
    let cells = |name: &str| -> Vec<String> {
        let line = table
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row in\n{table}"));
        let rest = line.trim_start()[name.len()..].trim();
        // Two cells: each a figure with an optional "(lo–hi)", or "-".
        let mut cells = Vec::new();
        let mut words = rest.split_whitespace().peekable();
        while let Some(w) = words.next() {
            match words.peek() {
                Some(next) if next.starts_with('(') => {
                    cells.push(format!("{w} {}", words.next().unwrap()))
                }
                _ => cells.push(w.to_string()),
            }
        }
        assert_eq!(cells.len(), 2, "{name}: {line}");
        cells
    };
    let close = |shown: f64, recorded: &toml::Value| {
        (shown - recorded.as_float().unwrap()).abs() <= 0.0005 + 1e-9
    };
    for (side, cell) in ["before", "after"].iter().zip(cells("accuracy")) {
        let (accuracy, interval) = figure_with_interval(&cell).unwrap();
        let [lo, hi] = interval.unwrap_or_else(|| panic!("{side} accuracy without interval"));
        assert!(
            0.0 <= lo && lo <= accuracy && accuracy <= hi && hi <= 1.0,
            "{side}: {cell}"
        );
        assert!(
            close(accuracy, &provenance[&format!("cv_{side}_accuracy")]),
            "{side}: {cell}"
        );
        let recorded = provenance[&format!("cv_{side}_accuracy_ci95")]
            .as_array()
            .unwrap();
        assert!(
            close(lo, &recorded[0]) && close(hi, &recorded[1]),
            "{side}: {cell} vs {recorded:?}"
        );
    }
    for class in ["covid19", "other_pneumonia", "normal"] {
        for (side, cell) in ["before", "after"]
            .iter()
            .zip(cells(&format!("AUC {class}")))
        {
            // Ten positives and twenty negatives: every AUC and interval exists.
            let (auc, interval) =
                figure_with_interval(&cell).unwrap_or_else(|| panic!("{side} AUC {class} missing"));
            let [lo, hi] =
                interval.unwrap_or_else(|| panic!("{side} AUC {class} without interval"));
            assert!(
                0.0 <= lo && lo <= auc && auc <= hi && hi <= 1.0,
                "{side} {class}: {cell}"
            );
            assert!(
                close(auc, &provenance[&format!("cv_{side}_auc_{class}")]),
                "{side} {class}"
            );
        }
    }
    for name in ["Brier (lower better)", "ECE (lower better)"] {
        assert_eq!(cells(name).len(), 2);
    }

    assert_models_in_service(&out, dir.path(), "covid19-P002-4", &new_version);
    println!(
        "calibrate on 30 re-identified real series: {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
}
