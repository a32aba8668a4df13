//! `lungwatch analyze` on the three real covid-ct-md series (COVID-19, community-acquired
//! pneumonia, normal): plausible, stable figures, the same as the Python reference
//! pipeline's (`models/train/eval_series.py`, recorded in models/MODEL_CARD.md), and the
//! previews and masks written.

mod common;

use std::process::Command;

use lungwatch::report::SeriesReport;

/// Lung and lesion volumes (mL) and severity from the Python reference pipeline on the
/// same models and false-positive rules (MODEL_CARD.md, "Volumes from the full pipeline";
/// `eval_series.py`): right, left, lesion after the rules, severity.
const PYTHON_REFERENCE: [(&str, f64, f64, f64, u8); 3] = [
    ("covid19-P002", 2183.0, 1739.0, 84.2, 3),
    ("cap-cap002", 2367.0, 1646.0, 14.9, 2),
    ("normal-normal002", 2643.0, 1806.0, 0.7, 0),
];

#[test]
fn three_real_series_give_plausible_results_matching_the_reference() {
    let Some(data) = common::shared_data("analyze on covid-ct-md") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let series: Vec<_> = PYTHON_REFERENCE
        .iter()
        .map(|(s, ..)| data.join("covid-ct-md").join(s))
        .collect();
    let output = Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .arg("analyze")
        .args(&series)
        .args(["--json", "--per-slice", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reports: Vec<SeriesReport> =
        serde_json::from_slice(&output.stdout).expect("a JSON array of reports");
    assert_eq!(reports.len(), 3);
    let by_slices = |n: usize| {
        reports
            .iter()
            .find(|r| r.slice_count == n)
            .expect("series by slice count")
    };
    let (covid, cap, normal) = (by_slices(133), by_slices(131), by_slices(167));
    for (r, (name, right, left, lesion, severity)) in
        [covid, cap, normal].into_iter().zip(PYTHON_REFERENCE)
    {
        println!(
            "{name}: lungs R {:.0} / L {:.0} mL (Python {right:.0} / {left:.0}), lesion {:.1} mL (Python {lesion:.1}), affected {:.3} %, severity {} (Python {severity}), below threshold {:.1} mL in {} components, {} zones, p = {:.3} / {:.3} / {:.3}, {} ms",
            r.lung_volume_ml.right,
            r.lung_volume_ml.left,
            r.lesion_volume_ml,
            100.0 * r.affected_ratio.total,
            r.severity_score,
            r.below_threshold.lesion_ml,
            r.below_threshold.components,
            r.below_threshold.zones,
            r.probabilities.covid19,
            r.probabilities.other_pneumonia,
            r.probabilities.normal,
            r.timings_ms.total,
        );
        let total = r.lung_volume_ml.right + r.lung_volume_ml.left;
        assert!(
            (2500.0..8000.0).contains(&total),
            "{name}: lung volume {total}"
        );
        assert!(
            (r.lung_volume_ml.right - right).abs() / right < 0.02,
            "{name}: right lung vs Python"
        );
        assert!(
            (r.lung_volume_ml.left - left).abs() / left < 0.02,
            "{name}: left lung vs Python"
        );
        assert!(
            (r.lesion_volume_ml - lesion).abs() < (0.1 * lesion).max(1.5),
            "{name}: lesion vs Python"
        );
        assert!(
            (r.severity_score as i32 - severity as i32).abs() <= 1,
            "{name}: severity vs Python"
        );
        assert!(
            r.below_threshold.min_component_ml > 0.0,
            "{name}: the rules ran"
        );
        let p = r.probabilities;
        assert!((p.covid19 + p.other_pneumonia + p.normal - 1.0).abs() < 1e-4);
        // The manifest's low-burden caution (1 %): on a pneumonia call from a small burden.
        let cautioned = r
            .warnings
            .iter()
            .any(|w| w.starts_with("low lesion burden"));
        let low_burden = r.top_class.as_str() != "normal"
            && r.affected_ratio.total > 0.0
            && r.affected_ratio.total < 0.01;
        assert_eq!(
            cautioned, low_burden,
            "{name}: low-burden caution {:?}",
            r.warnings
        );
        assert_eq!(r.models.len(), 3);
        let per_slice = r.per_slice.as_ref().expect("--per-slice");
        assert_eq!(per_slice.len(), r.slice_count);
        assert!(
            per_slice.windows(2).all(|w| w[0].z_mm < w[1].z_mm),
            "slices inferior to superior"
        );
        // Areas × slice step add up to the volumes.
        let lung_from_slices: f64 =
            per_slice.iter().map(|s| s.lung_mm2).sum::<f64>() * r.spacing_mm[2] / 1000.0;
        assert!((lung_from_slices - total).abs() / total < 0.02);
        let dir = out.path().join(lungwatch::dicom::header::path_component(
            &r.series_instance_uid,
        ));
        for file in ["labels.nii.gz", "coronal.png", "axial-0.png", "report.json"] {
            assert!(dir.join(file).is_file(), "{name}: {file} written");
        }
    }
    // The targets for a normal scan after false-positive control.
    assert!(
        normal.affected_ratio.total < 0.001,
        "normal series: affected ratio under 0.1 %"
    );
    assert_eq!(normal.severity_score, 0, "normal series: severity 0");
    assert!(
        covid.affected_ratio.total > 2.0 * cap.affected_ratio.total,
        "P002 clearly above cap002"
    );
    assert_eq!(normal.top_class.as_str(), "normal");
    assert_eq!(covid.top_class.as_str(), "covid19");
}
