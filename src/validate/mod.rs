//! `lungwatch validate`: the whole pipeline on a site's labelled series, and the figures a
//! site needs before clinical use (class calls, calibration, slice detection, lesion
//! Dice), as a table and as JSON. It reads the series where they are and writes only to
//! `--out`: never into the store or the database of a running `serve`.
//!
//! Every row of the labels file is checked first (files exist, each folder holds one
//! analysable series, masks are on its grid); one bad row stops the run before anything
//! is analysed or written. A series that then fails to analyse is reported and the rest
//! go on.

mod plot;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::analysis::Analyser;
use crate::analysis::postprocess::{CONSOLIDATION, GROUND_GLASS};
use crate::config::Config;
use crate::labelled::metrics::{
    self, CLASSES, Called, ClassReport, DiceSummary, Overlap, SliceReport,
};
use crate::labelled::{Prepared, fmt, labels, mask, prepare};
use crate::pipeline;
use crate::report::{Class, ModelRef};

/// Slices are called infected at this lesion area: the threshold `eval_series.py` fixed
/// before any evaluation, so the two agree.
pub const DEFAULT_SLICE_THRESHOLD_MM2: f64 = 100.0;

/// One series' row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesRow {
    pub line: u64,
    pub path: PathBuf,
    pub truth: Class,
    /// The call, or None when the analysis failed (`error` says why).
    pub call: Option<Class>,
    pub probabilities: Option<[f64; 3]>,
    pub affected_ratio: Option<f64>,
    pub severity_score: Option<u8>,
    pub slice_count: Option<usize>,
    pub total_ms: Option<u64>,
    pub warnings: Vec<String>,
    pub error: Option<String>,
    pub lesion_dice: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub labels_file: PathBuf,
    pub models: Vec<ModelRef>,
    pub series: Vec<SeriesRow>,
    pub analysed: usize,
    pub failed: usize,
    pub classes: Option<ClassReport>,
    pub slices: Option<SliceReport>,
    pub lesion_dice: Option<DiceSummary>,
    pub ggo_dice: Option<DiceSummary>,
    pub consolidation_dice: Option<DiceSummary>,
}

/// What one analysed series adds to the pooled figures.
#[derive(Default)]
struct Pooled {
    called: Vec<Called>,
    slice_areas: Vec<f64>,
    slice_truth: Vec<bool>,
    lesion: Vec<Overlap>,
    ggo: Vec<Overlap>,
    consolidation: Vec<Overlap>,
}

/// Runs the validation. `progress` is told after each series (for a progress bar).
pub fn validate(
    labels_file: &Path,
    config: &Config,
    analyser: &Analyser,
    slice_threshold_mm2: f64,
    mut progress: impl FnMut(usize, usize, &Path),
) -> Result<Report, Vec<String>> {
    let rows = labels::read(labels_file)?;
    let prepared = prepare(rows, config)?;
    let mut pooled = Pooled::default();
    let mut table = Vec::new();
    let total = prepared.len();
    for (done, p) in prepared.iter().enumerate() {
        progress(done, total, &p.label.path);
        table.push(run_one(p, analyser, config, &mut pooled));
    }
    progress(total, total, Path::new(""));
    let failed = table.iter().filter(|r| r.error.is_some()).count();
    Ok(Report {
        labels_file: labels_file.to_path_buf(),
        models: analyser.models().references(),
        analysed: table.len() - failed,
        failed,
        series: table,
        classes: metrics::class_report(&pooled.called),
        slices: (!pooled.slice_truth.is_empty()).then(|| {
            metrics::slice_report(
                &pooled.slice_areas,
                &pooled.slice_truth,
                slice_threshold_mm2,
            )
        }),
        lesion_dice: (!pooled.lesion.is_empty()).then(|| metrics::dice_summary(&pooled.lesion)),
        ggo_dice: (!pooled.ggo.is_empty()).then(|| metrics::dice_summary(&pooled.ggo)),
        consolidation_dice: (!pooled.consolidation.is_empty())
            .then(|| metrics::dice_summary(&pooled.consolidation)),
    })
}

fn run_one(p: &Prepared, analyser: &Analyser, config: &Config, pooled: &mut Pooled) -> SeriesRow {
    let mut row = SeriesRow {
        line: p.label.line,
        path: p.label.path.clone(),
        truth: CLASSES[p.label.class],
        call: None,
        probabilities: None,
        affected_ratio: None,
        severity_score: None,
        slice_count: None,
        total_ms: None,
        warnings: Vec::new(),
        error: None,
        lesion_dice: None,
    };
    let analysis =
        match pipeline::analyse_files(&p.paths, &p.header, analyser, config.decode_threads(), true)
        {
            Ok(a) => a,
            Err(failure) => {
                row.error = Some(failure.message);
                return row;
            }
        };
    let r = &analysis.report;
    let probabilities = [
        r.probabilities.covid19,
        r.probabilities.other_pneumonia,
        r.probabilities.normal,
    ];
    let called = Called {
        truth: p.label.class,
        probabilities,
    };
    row.call = Some(CLASSES[called.call()]);
    row.probabilities = Some(probabilities);
    row.affected_ratio = Some(r.affected_ratio.total);
    row.severity_score = Some(r.severity_score);
    row.slice_count = Some(r.slice_count);
    row.total_ms = Some(r.timings_ms.total);
    row.warnings = r.warnings.clone();
    pooled.called.push(called);
    if let (Some(labels), Some(slices)) = (&p.label.slice_labels, &r.per_slice) {
        for s in slices {
            if let Some(infected) = s.instance_number.and_then(|n| labels.get(&n)) {
                pooled.slice_areas.push(s.lesion_mm2);
                pooled.slice_truth.push(*infected);
            }
        }
    }
    if let Some(path) = &p.label.mask {
        match mask::read(path).and_then(|m| mask::lay_on(&m, &analysis.volume)) {
            Ok(truth) => {
                let predicted: Vec<bool> = analysis.lesion.iter().map(|&v| v != 0).collect();
                let reference: Vec<bool> = truth.iter().map(|&v| v != 0).collect();
                let lesion = metrics::overlap(&predicted, &reference);
                row.lesion_dice = metrics::dice(&predicted, &reference);
                pooled.lesion.push(lesion);
                // Two-class masks (a 2 somewhere) also give the ground-glass and
                // consolidation Dice.
                if truth.contains(&2) {
                    let of = |mask: &[u8], v: u8| mask.iter().map(|&x| x == v).collect::<Vec<_>>();
                    pooled.ggo.push(metrics::overlap(
                        &of(&analysis.lesion, GROUND_GLASS),
                        &of(&truth, 1),
                    ));
                    pooled.consolidation.push(metrics::overlap(
                        &of(&analysis.lesion, CONSOLIDATION),
                        &of(&truth, 2),
                    ));
                }
            }
            Err(e) => row.warnings.push(format!("mask not compared: {e}")),
        }
    }
    row
}

/// Writes `report.json` and `reliability.png` under `dir`.
pub fn write_outputs(report: &Report, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("report.json"), json)?;
    if let Some(classes) = &report.classes {
        let png = plot::reliability_png(&classes.reliability).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("reliability.png"), png)?;
    }
    Ok(())
}

/// The report as text tables.
pub fn render_text(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "lungwatch validate: {}", r.labels_file.display());
    for m in &r.models {
        let _ = writeln!(o, "  model {} {} sha256 {}", m.name, m.version, m.sha256);
    }
    let _ = writeln!(
        o,
        "\n{:<5} {:<16} {:<16} {:>7} {:>7} {:>7} {:>9} {:>4} {:>8}  series",
        "line", "truth", "call", "p_covid", "p_other", "p_norm", "affected", "sev", "ms"
    );
    for s in &r.series {
        let p = s.probabilities.unwrap_or([f64::NAN; 3]);
        let _ = writeln!(
            o,
            "{:<5} {:<16} {:<16} {:>7.3} {:>7.3} {:>7.3} {:>8.2}% {:>4} {:>8}  {}{}",
            s.line,
            s.truth,
            s.call.map_or("FAILED", Class::as_str),
            p[0],
            p[1],
            p[2],
            100.0 * s.affected_ratio.unwrap_or(f64::NAN),
            s.severity_score.map_or("-".into(), |v| v.to_string()),
            s.total_ms.map_or("-".into(), |v| v.to_string()),
            s.path.display(),
            s.error
                .as_ref()
                .map_or(String::new(), |e| format!("  error: {e}")),
        );
    }
    let _ = writeln!(o, "\n{} analysed, {} failed", r.analysed, r.failed);
    if let Some(c) = &r.classes {
        let _ = writeln!(o, "\naccuracy {:.3} over {} series", c.accuracy, c.series);
        let _ = writeln!(o, "confusion (rows: truth, columns: call)");
        let _ = writeln!(
            o,
            "  {:<16} {:>8} {:>8} {:>8}",
            "", "covid19", "other", "normal"
        );
        for (k, row) in c.confusion.iter().enumerate() {
            let _ = writeln!(
                o,
                "  {:<16} {:>8} {:>8} {:>8}",
                CLASSES[k], row[0], row[1], row[2]
            );
        }
        let _ = writeln!(
            o,
            "\n  {:<16} {:>6} {:>8} {:>8} {:>7}  {:<15}",
            "class", "series", "sens", "spec", "AUC", "AUC 95% CI"
        );
        for f in &c.per_class {
            let ci = f
                .auc_ci95
                .map_or("-".to_string(), |[a, b]| format!("{a:.3}–{b:.3}"));
            let _ = writeln!(
                o,
                "  {:<16} {:>6} {:>8} {:>8} {:>7}  {ci}",
                f.class,
                f.series,
                fmt(f.sensitivity),
                fmt(f.specificity),
                fmt(f.auc)
            );
        }
        let _ = writeln!(o, "\ncalibration: Brier {:.4}, ECE {:.4}", c.brier, c.ece);
    }
    if let Some(s) = &r.slices {
        let _ = writeln!(
            o,
            "\nslices: {} labelled ({} infected), lesion ≥ {} mm²: sensitivity {}, specificity {}, AUC {}",
            s.slices,
            s.infected,
            s.threshold_mm2,
            fmt(s.sensitivity),
            fmt(s.specificity),
            fmt(s.auc)
        );
    }
    for (name, d) in [
        ("lesion", &r.lesion_dice),
        ("ground-glass", &r.ggo_dice),
        ("consolidation", &r.consolidation_dice),
    ] {
        if let Some(d) = d {
            let _ = writeln!(
                o,
                "{name} Dice over {} series: mean {}, median {}, pooled {}",
                d.series,
                fmt(d.mean),
                fmt(d.median),
                fmt(d.pooled)
            );
        }
    }
    o.push_str(
        "\nThese figures hold for these series only. Do not use lungwatch clinically before \
         it has been validated on enough of your own studies.\n",
    );
    o
}
