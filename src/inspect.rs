//! `lungwatch inspect`: group files into series, judge them and build their volumes,
//! without touching the store or the database.

use std::path::PathBuf;

use serde::Serialize;

use crate::config::Config;
use crate::dicom::InstanceHeader;
use crate::dicom::volume::{SpacingReport, build_volume};
use crate::series::{self, RejectedFile, SeriesFiles, collect_series};

#[derive(Debug, Serialize)]
pub struct Report {
    pub series: Vec<SeriesReport>,
    pub rejected: Vec<RejectedFile>,
}

#[derive(Debug, Serialize)]
pub struct SeriesReport {
    pub series_instance_uid: String,
    pub study_instance_uid: Option<String>,
    pub patient_id: Option<String>,
    pub modality: Option<String>,
    pub slices: usize,
    pub rows: Option<usize>,
    pub columns: Option<usize>,
    /// Row spacing, column spacing and slice step, in mm.
    pub spacing_mm: Option<[f64; 3]>,
    pub hu_min: Option<i16>,
    pub hu_max: Option<i16>,
    pub hu_mean: Option<f64>,
    pub selected: bool,
    pub skip_reason: Option<String>,
    /// Gaps, duplicated positions and uneven steps along the slice normal.
    pub spacing: Option<SpacingReport>,
    pub decode_ms: Option<u128>,
}

pub fn inspect(paths: &[PathBuf], config: &Config) -> std::io::Result<Report> {
    let threads = config.decode_threads();
    let (groups, rejected) = collect_series(paths, config)?;
    let mut reports = Vec::new();
    for SeriesFiles {
        series_uid,
        headers,
        paths: member_paths,
    } in groups
    {
        let refs: Vec<&InstanceHeader> = headers.iter().collect();
        let verdict = series::select(&refs, &config.selection);
        let first = &headers[0];
        let mut report = SeriesReport {
            series_instance_uid: series_uid,
            study_instance_uid: first.study_instance_uid.clone(),
            patient_id: first.patient_id.clone(),
            modality: first.modality.clone(),
            slices: headers.len(),
            rows: None,
            columns: None,
            spacing_mm: None,
            hu_min: None,
            hu_max: None,
            hu_mean: None,
            selected: verdict.is_ok(),
            skip_reason: verdict.err(),
            spacing: None,
            decode_ms: None,
        };
        let started = std::time::Instant::now();
        match build_volume(&member_paths, threads) {
            Ok(v) => {
                report.decode_ms = Some(started.elapsed().as_millis());
                report.rows = Some(v.rows);
                report.columns = Some(v.columns);
                report.spacing_mm = Some(v.spacing_mm.to_array());
                report.hu_min = v.hu.iter().min().copied();
                report.hu_max = v.hu.iter().max().copied();
                report.hu_mean = (!v.hu.is_empty()).then(|| {
                    v.hu.iter().map(|&x| x as i64).sum::<i64>() as f64 / v.hu.len() as f64
                });
                report.spacing = v.spacing;
            }
            Err(e) => {
                if report.selected {
                    report.selected = false;
                    report.skip_reason = Some(format!("volume cannot be built: {e}"));
                }
            }
        }
        reports.push(report);
    }
    Ok(Report {
        series: reports,
        rejected,
    })
}
