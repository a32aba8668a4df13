//! `lungwatch validate` with the real binary:
//! - on the three covid-ct-md series with their radiologists' slice labels: its slice-level
//!   figures must equal the ones computed here, independently, from `analyze --per-slice`
//!   and `slices.csv` (the definition `models/train/eval_series.py` uses: a slice is
//!   infected at ≥ 100 mm² of lesion, AUC on the lesion area); and its mask Dice must be 1
//!   for lungwatch's own label mask;
//! - bad labels files: each a clear error naming line and column, and nothing written.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::lungwatch;

const SERIES: [(&str, &str); 3] = [
    ("covid19-P002", "covid19"),
    ("cap-cap002", "other_pneumonia"),
    ("normal-normal002", "normal"),
];

/// instance number → infected, per series folder, from slices.csv (blank = not labelled).
fn slice_labels(data: &Path) -> BTreeMap<String, BTreeMap<i64, bool>> {
    let text = std::fs::read_to_string(data.join("covid-ct-md/slices.csv")).unwrap();
    let mut out: BTreeMap<String, BTreeMap<i64, bool>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if let (Some(folder), Some(n), Some(v)) = (f.first(), f.get(2), f.get(5))
            && let (Ok(n), "0" | "1") = (n.parse::<i64>(), v.trim())
        {
            out.entry(folder.to_string())
                .or_default()
                .insert(n, v.trim() == "1");
        }
    }
    out
}

fn brute_auc(scores: &[f64], positive: &[bool]) -> f64 {
    let (mut sum, mut pairs) = (0.0, 0.0);
    for (a, pa) in scores.iter().zip(positive) {
        for (b, pb) in scores.iter().zip(positive) {
            if *pa && !*pb {
                pairs += 1.0;
                sum += if a > b {
                    1.0
                } else if a == b {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    sum / pairs
}

#[test]
fn validate_agrees_with_an_independent_computation_on_the_real_series() {
    let Some(data) = common::shared_data("validate on covid-ct-md") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let labels = slice_labels(&data);
    let mut csv = String::from("path,class,slice_labels,mask\n");
    let mut areas = Vec::new();
    let mut truth = Vec::new();
    for (folder, class) in SERIES {
        let out = dir.path().join("analyze").join(folder);
        let series_dir = data.join("covid-ct-md").join(folder);
        // The independent side: analyze's per-slice areas against the labels.
        let o = lungwatch(&[
            "analyze",
            series_dir.to_str().unwrap(),
            "--json",
            "--per-slice",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let reports: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let report = &reports[0];
        let series_labels = labels.get(folder);
        for s in report["slices"].as_array().unwrap() {
            let n = s["instance_number"].as_i64().unwrap();
            if let Some(infected) = series_labels.and_then(|l| l.get(&n)) {
                areas.push(s["lesion_mm2"].as_f64().unwrap());
                truth.push(*infected);
            }
        }
        let mut slices_csv = String::from("instance_number,infected\n");
        if let Some(l) = series_labels {
            for (n, v) in l {
                slices_csv.push_str(&format!("{n},{}\n", u8::from(*v)));
            }
        }
        let slices_path = dir.path().join(format!("{folder}-slices.csv"));
        std::fs::write(&slices_path, slices_csv).unwrap();
        // lungwatch's own mask, laid back on the series, must give Dice 1 where it has
        // lesion (the normal series may have none).
        let mask = std::fs::read_dir(&out)
            .unwrap()
            .flatten()
            .map(|e| e.path().join("labels.nii.gz"))
            .next();
        let mask_field = mask
            .filter(|m| m.is_file())
            .map(|m| relabel_lesion_only(&m, dir.path(), folder))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let slices_field = if series_labels.is_some() {
            slices_path.to_string_lossy().into_owned()
        } else {
            String::new()
        };
        csv.push_str(&format!(
            "{},{class},{slices_field},{mask_field}\n",
            series_dir.display()
        ));
    }
    let labels_path = dir.path().join("labels.csv");
    std::fs::write(&labels_path, csv).unwrap();
    let report_dir = dir.path().join("report");
    let o = lungwatch(&[
        "validate",
        labels_path.to_str().unwrap(),
        "--json",
        "--out",
        report_dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    println!("{}", serde_json::to_string_pretty(&r["slices"]).unwrap());
    println!("{}", serde_json::to_string_pretty(&r["classes"]).unwrap());
    assert_eq!(r["analysed"], 3);
    // Slice-level figures: the same as computed here.
    let called: Vec<bool> = areas.iter().map(|&a| a >= 100.0).collect();
    let tp = called
        .iter()
        .zip(&truth)
        .filter(|(c, t)| **c && **t)
        .count() as f64;
    let positives = truth.iter().filter(|t| **t).count() as f64;
    let tn = called
        .iter()
        .zip(&truth)
        .filter(|(c, t)| !**c && !**t)
        .count() as f64;
    let negatives = truth.len() as f64 - positives;
    let s = &r["slices"];
    assert_eq!(s["slices"].as_u64().unwrap() as usize, truth.len());
    let close = |v: &serde_json::Value, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-9;
    assert!(close(&s["sensitivity"], tp / positives), "{s}");
    assert!(close(&s["specificity"], tn / negatives), "{s}");
    assert!(close(&s["auc"], brute_auc(&areas, &truth)), "{s}");
    // Class calls: confusion rows sum to one series each.
    let confusion = r["classes"]["confusion"].as_array().unwrap();
    for row in confusion {
        let n: u64 = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(n, 1);
    }
    // Lesion Dice of lungwatch's own mask against itself.
    if let Some(d) = r["lesion_dice"].as_object() {
        assert!(close(&d["pooled"], 1.0), "{d:?}");
    }
    assert!(report_dir.join("report.json").is_file());
    assert!(report_dir.join("reliability.png").is_file());
    // The models are named in the report.
    assert!(
        r["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "lesion_seg")
    );
}

/// lungwatch's labels.nii.gz holds lungs (1, 2) and lesions (3, 4); a reference mask holds
/// 0 / 1 lesion. Rewrites the voxels (the header, and so the affine, stays as written).
fn relabel_lesion_only(labels: &Path, dir: &Path, folder: &str) -> PathBuf {
    use std::io::{Read, Write};
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(labels).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    for v in &mut raw[352..] {
        *v = u8::from(*v >= 3);
    }
    let path = dir.join(format!("{folder}-lesion.nii.gz"));
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap();
    path
}

#[test]
fn bad_labels_files_name_the_problem_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let series = dir.path().join("series");
    std::fs::create_dir(&series).unwrap();
    let out = dir.path().join("out");
    let cases = [
        ("path,diagnosis\nseries,normal\n", "missing column class"),
        (
            "path,class\nseries,covid\n",
            "line 2, column class: unknown class \"covid\"",
        ),
        (
            "path,class\nnowhere,normal\n",
            "line 2, column path: \"nowhere\" is not a folder",
        ),
        (
            "path,class,mask\nseries,normal,missing.nii.gz\n",
            "line 2, column mask: \"missing.nii.gz\" is not a file",
        ),
        // A folder without an analysable series.
        (
            "path,class\nseries,normal\n",
            "no series there passes selection",
        ),
    ];
    for (text, expected) in cases {
        let labels = dir.path().join("labels.csv");
        std::fs::write(&labels, text).unwrap();
        let o = lungwatch(&[
            "validate",
            labels.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{text:?} was accepted");
        assert!(stderr.contains(expected), "{text:?}: {stderr}");
        assert!(
            stderr.contains("nothing was analysed or written"),
            "{stderr}"
        );
        assert!(!out.exists(), "{text:?}: something was written");
    }
}

#[test]
fn a_mask_of_the_wrong_size_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let series = dir.path().join("series");
    let spec = common::phantom::PhantomSpec {
        slices: 40,
        ..common::phantom::PhantomSpec::small(1)
    };
    common::phantom::write(&series, &common::phantom::slices(&spec));
    // A valid NIfTI label map of 4 × 4 × 4 voxels: not this series' 128 × 128 × 40 grid.
    let mut nii = vec![0u8; 352];
    nii[0..4].copy_from_slice(&348i32.to_le_bytes());
    for (k, v) in [3i16, 4, 4, 4, 1, 1, 1, 1].iter().enumerate() {
        nii[40 + 2 * k..42 + 2 * k].copy_from_slice(&v.to_le_bytes());
    }
    nii[70..72].copy_from_slice(&2i16.to_le_bytes());
    nii[108..112].copy_from_slice(&352f32.to_le_bytes());
    nii[254..256].copy_from_slice(&1i16.to_le_bytes());
    for row in 0..3 {
        let at = 280 + 16 * row + 4 * row;
        nii[at..at + 4].copy_from_slice(&1f32.to_le_bytes());
    }
    nii[344..348].copy_from_slice(b"n+1\0");
    nii.extend(std::iter::repeat_n(0u8, 64));
    std::fs::write(dir.path().join("mask.nii"), nii).unwrap();
    let labels = dir.path().join("labels.csv");
    std::fs::write(&labels, "path,class,mask\nseries,covid19,mask.nii\n").unwrap();
    let out = dir.path().join("out");
    let o = lungwatch(&[
        "validate",
        labels.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("is 4 × 4 × 4 voxels, the series 128 × 128 × 40"),
        "{stderr}"
    );
    assert!(!out.exists());
}
