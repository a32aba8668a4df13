//! A site's labelled series, shared by `validate` and `calibrate` so that neither command
//! imports the other: the labels CSV (`labels.rs`), reference masks laid on the analysed
//! volume (`mask.rs`), the checks that each row names one analysable series (`prepare`),
//! and the figures against the labels (`metrics.rs`, pure).

pub mod labels;
pub mod mask;
pub mod metrics;

use std::path::PathBuf;

use crate::config::Config;
use crate::dicom::InstanceHeader;
use crate::series;
use labels::LabelledSeries;

/// A labelled series whose files were found and judged analysable.
pub(crate) struct Prepared {
    pub(crate) label: LabelledSeries,
    pub(crate) header: InstanceHeader,
    pub(crate) paths: Vec<PathBuf>,
}

/// Checks every row: the labels themselves, one analysable series per folder, masks on
/// its grid. All problems are returned together.
pub(crate) fn prepare(
    rows: Vec<LabelledSeries>,
    config: &Config,
) -> Result<Vec<Prepared>, Vec<String>> {
    let mut prepared = Vec::new();
    let mut errors = Vec::new();
    for label in rows {
        let at = format!("line {} ({})", label.line, label.path.display());
        let groups = match crate::series::collect_series(std::slice::from_ref(&label.path), config)
        {
            Ok((groups, _rejected)) => groups,
            Err(e) => {
                errors.push(format!("{at}: cannot read the folder: {e}"));
                continue;
            }
        };
        let mut usable: Vec<_> = groups
            .into_iter()
            .filter(|g| {
                let refs: Vec<_> = g.headers.iter().collect();
                series::select(&refs, &config.selection).is_ok()
            })
            .collect();
        let group = match usable.len() {
            1 => usable.remove(0),
            0 => {
                errors.push(format!(
                    "{at}: no series there passes selection (see `lungwatch inspect {}`)",
                    label.path.display()
                ));
                continue;
            }
            n => {
                errors.push(format!(
                    "{at}: {n} analysable series in one folder; give each its own row and folder"
                ));
                continue;
            }
        };
        let (rows_, columns) = (
            group.headers[0].rows.unwrap_or(0) as usize,
            group.headers[0].columns.unwrap_or(0) as usize,
        );
        if let Some(path) = &label.mask {
            match mask::read(path) {
                Ok(m) if m.dims != [columns, rows_, group.headers.len()] => errors.push(format!(
                    "{at}: mask {} is {} × {} × {} voxels, the series {columns} × {rows_} × {} \
                     (columns × rows × slices)",
                    path.display(),
                    m.dims[0],
                    m.dims[1],
                    m.dims[2],
                    group.headers.len()
                )),
                Ok(_) => {}
                Err(e) => errors.push(format!("{at}: mask: {e}")),
            }
        }
        if let Some(slices) = &label.slice_labels {
            let numbers: std::collections::BTreeSet<i64> = group
                .headers
                .iter()
                .filter_map(|h| h.instance_number)
                .collect();
            let unknown: Vec<i64> = slices
                .keys()
                .filter(|n| !numbers.contains(n))
                .copied()
                .collect();
            if !unknown.is_empty() {
                errors.push(format!(
                    "{at}: slice labels name instance numbers the series does not have: {:?}",
                    &unknown[..unknown.len().min(10)]
                ));
            }
        }
        prepared.push(Prepared {
            header: group.headers[0].clone(),
            paths: group.paths,
            label,
        });
    }
    if errors.is_empty() {
        Ok(prepared)
    } else {
        Err(errors)
    }
}

/// A figure to three decimals, `-` when it cannot be computed.
pub(crate) fn fmt(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.3}"))
}
