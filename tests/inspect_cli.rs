//! `lungwatch inspect --json` on the real covid-ct-md exports and on quirky variants.

mod common;

use std::process::Command;

fn inspect_json(args: &[&std::path::Path]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .arg("inspect")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn covid_ct_md_series_build_complete_volumes() {
    let Some(data) = common::shared_data("inspect covid-ct-md") else {
        return;
    };
    let root = data.join("covid-ct-md");
    let folders = ["covid19-P002", "cap-cap002", "normal-normal002"].map(|f| root.join(f));
    let report = inspect_json(&[&folders[0], &folders[1], &folders[2]]);
    let series = report["series"].as_array().unwrap();
    assert_eq!(series.len(), 3, "{report:#}");
    assert!(
        report["rejected"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    let mut slices: Vec<u64> = series
        .iter()
        .map(|s| s["slices"].as_u64().unwrap())
        .collect();
    slices.sort();
    assert_eq!(slices, vec![131, 133, 167]);
    for s in series {
        let uid = s["series_instance_uid"].as_str().unwrap();
        assert_eq!(s["modality"], "CT");
        assert_eq!(s["selected"], true, "{s:#}");
        assert_eq!(
            (s["rows"].as_u64(), s["columns"].as_u64()),
            (Some(512), Some(512))
        );
        let spacing = s["spacing_mm"].as_array().unwrap();
        assert!(
            (spacing[2].as_f64().unwrap() - 2.0).abs() < 1e-6,
            "{uid}: {spacing:?}"
        );
        assert!(spacing[0].as_f64().unwrap() > 0.4 && spacing[0].as_f64().unwrap() < 1.0);
        // Air outside the body and bone inside it: a real CT range in HU.
        assert!(s["hu_min"].as_i64().unwrap() <= -1000, "{s:#}");
        assert!(s["hu_max"].as_i64().unwrap() >= 500, "{s:#}");
        let mean = s["hu_mean"].as_f64().unwrap();
        assert!((-900.0..0.0).contains(&mean), "{uid}: mean {mean}");
        assert_eq!(s["spacing"]["gaps_after"].as_array().unwrap().len(), 0);
        assert_eq!(s["spacing"]["uneven"], false);
    }
}

#[test]
fn a_missing_slice_is_reported_as_a_gap_and_quirky_files_still_read() {
    let Some(data) = common::shared_data("inspect gap and quirks") else {
        return;
    };
    let src = data.join("covid-ct-md/cap-cap002");
    let dir = tempfile::tempdir().unwrap();
    let files = common::files_under(&src);
    for (i, f) in files.iter().enumerate() {
        if i == 60 {
            continue; // a slice lost in transfer
        }
        let bytes = std::fs::read(f).unwrap();
        // Every third file without its 128-byte preamble, as some exporters write them.
        let bytes = if i % 3 == 0 {
            bytes[128..].to_vec()
        } else {
            bytes
        };
        std::fs::write(dir.path().join(format!("f{i:03}")), bytes).unwrap();
    }
    std::fs::write(dir.path().join("garbage.dcm"), b"not dicom at all").unwrap();
    let report = inspect_json(&[dir.path()]);
    let s = &report["series"][0];
    assert_eq!(s["slices"], files.len() as u64 - 1);
    assert_eq!(
        s["spacing"]["gaps_after"].as_array().unwrap().len(),
        1,
        "{s:#}"
    );
    let rejected = report["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not-dicom")
    );
}
