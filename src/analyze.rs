//! `lungwatch analyze`: the whole pipeline on files or folders named on the command line,
//! without the store or the database.

use std::path::{Path, PathBuf};

use crate::analysis::Analyser;
use crate::config::Config;
use crate::dicom::header::path_component;
use crate::report::SeriesReport;
use crate::series::{RejectedFile, SeriesFiles, collect_series};
use crate::{pipeline, series};

/// What happened to each series found under the paths.
pub struct AnalyzeOutcome {
    pub analysed: Vec<SeriesReport>,
    /// Series not analysed, with why (selection rules, undecodable volume, pipeline error).
    pub not_analysed: Vec<(String, String)>,
    pub rejected: Vec<RejectedFile>,
}

pub struct AnalyzeOptions {
    pub per_slice: bool,
    /// Write previews, masks and report.json under `<out>/<series>/`.
    pub out: Option<PathBuf>,
}

pub fn analyze(
    paths: &[PathBuf],
    config: &Config,
    analyser: &Analyser,
    options: &AnalyzeOptions,
) -> anyhow::Result<AnalyzeOutcome> {
    let (groups, rejected) = collect_series(paths, config)?;
    let mut outcome = AnalyzeOutcome {
        analysed: Vec::new(),
        not_analysed: Vec::new(),
        rejected,
    };
    for SeriesFiles {
        series_uid,
        headers,
        paths,
    } in groups
    {
        let refs: Vec<_> = headers.iter().collect();
        if let Err(reason) = series::select(&refs, &config.selection) {
            outcome.not_analysed.push((series_uid, reason));
            continue;
        }
        match analyse_series(&paths, &headers[0], config, analyser, options) {
            Ok(report) => outcome.analysed.push(report),
            Err(e) => outcome.not_analysed.push((series_uid, format!("{e:#}"))),
        }
    }
    Ok(outcome)
}

/// Decodes and analyses one series; with `--out`, writes its artifacts.
pub fn analyse_series(
    paths: &[PathBuf],
    header: &crate::dicom::InstanceHeader,
    config: &Config,
    analyser: &Analyser,
    options: &AnalyzeOptions,
) -> anyhow::Result<SeriesReport> {
    let analysis = pipeline::analyse_files(
        paths,
        header,
        analyser,
        config.decode_threads(),
        options.per_slice,
    )?;
    if let Some(out) = &options.out {
        let dir = out.join(path_component(&analysis.report.series_instance_uid));
        pipeline::write_artifacts(&analysis, &dir)?;
        write_report(&analysis.report, &dir)?;
    }
    Ok(analysis.report)
}

fn write_report(report: &SeriesReport, dir: &Path) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("report.json"), json)
}

/// The human-readable summary of one report.
pub fn summary(r: &SeriesReport) -> String {
    let p = &r.probabilities;
    let mut text = format!(
        "{uid}\n  patient {pid}, study date {date}, {n} slices\n  \
         probabilities: COVID-19 {c:.3}, other pneumonia {o:.3}, normal {nrm:.3}  → {top}\n  \
         lungs: right {lr:.0} mL, left {ll:.0} mL; lesion {les:.1} mL (ground-glass {g:.0} %, consolidation {k:.0} %)\n  \
         affected: total {at:.2} %, right {ar:.2} %, left {al:.2} %; bilateral {bi}; peripheral {pe:.0} %; severity {sev}/24\n  \
         timings (ms): decode {td}, preprocess {tp}, inference {ti}, postprocess {tq}, total {tt}",
        uid = r.series_instance_uid,
        pid = r.patient_id.as_deref().unwrap_or("-"),
        date = r.study_date.as_deref().unwrap_or("-"),
        n = r.slice_count,
        c = p.covid19,
        o = p.other_pneumonia,
        nrm = p.normal,
        top = r.top_class,
        lr = r.lung_volume_ml.right,
        ll = r.lung_volume_ml.left,
        les = r.lesion_volume_ml,
        g = 100.0 * r.ggo_share,
        k = 100.0 * r.consolidation_share,
        at = 100.0 * r.affected_ratio.total,
        ar = 100.0 * r.affected_ratio.right,
        al = 100.0 * r.affected_ratio.left,
        bi = if r.bilateral { "yes" } else { "no" },
        pe = 100.0 * r.peripheral_share,
        sev = r.severity_score,
        td = r.timings_ms.decode,
        tp = r.timings_ms.preprocess,
        ti = r.timings_ms.inference,
        tq = r.timings_ms.postprocess,
        tt = r.timings_ms.total,
    );
    if let Some(line) = r.below_threshold.line() {
        text.push_str(&format!("\n  {line}"));
    }
    for w in &r.warnings {
        text.push_str(&format!("\n  warning: {w}"));
    }
    text
}
