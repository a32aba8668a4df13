//! The labels file of a site validation: a CSV with one row per series.
//!
//! ```csv
//! path,class,slice_labels,mask
//! exports/patient-017,covid19,exports/patient-017-slices.csv,
//! exports/patient-018,normal,,
//! /mnt/study/p19,other_pneumonia,,masks/p19.nii.gz
//! ```
//!
//! `path` is a folder of one series' DICOM files; `class` one of `covid19`,
//! `other_pneumonia`, `normal`; `slice_labels` an optional CSV of
//! `instance_number,infected` (0 or 1); `mask` an optional NIfTI label map on the series
//! grid (0 background, 1 lesion; or 1 ground-glass, 2 consolidation). Relative paths are
//! relative to the labels file. Every problem names its line and column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::metrics::CLASSES;
use crate::report::Class;

/// One labelled series, its files checked to exist.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledSeries {
    /// Line of the labels file (the header is line 1).
    pub line: u64,
    pub path: PathBuf,
    /// Index into `CLASSES`.
    pub class: usize,
    /// Instance Number → infected.
    pub slice_labels: Option<BTreeMap<i64, bool>>,
    pub mask: Option<PathBuf>,
}

/// Reads and checks the whole labels file. Every bad row is reported, not only the first.
pub fn read(labels: &Path) -> Result<Vec<LabelledSeries>, Vec<String>> {
    let name = labels.display().to_string();
    let base = labels.parent().unwrap_or(Path::new("."));
    let mut reader = match csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_path(labels)
    {
        Ok(r) => r,
        Err(e) => return Err(vec![format!("{name}: cannot read: {e}")]),
    };
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(vec![format!("{name}: cannot read the header line: {e}")]),
    };
    let column = |wanted: &str| headers.iter().position(|h| h == wanted);
    let (Some(path_col), Some(class_col)) = (column("path"), column("class")) else {
        let missing: Vec<&str> = ["path", "class"]
            .into_iter()
            .filter(|c| column(c).is_none())
            .collect();
        return Err(vec![format!(
            "{name}: line 1: missing column {} (the header must name at least path and class)",
            missing.join(" and ")
        )]);
    };
    let slices_col = column("slice_labels");
    let mask_col = column("mask");
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("{name}: {e}"));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let at = |col: &str| format!("{name}: line {line}, column {col}");
        let field = |i: Option<usize>| i.and_then(|i| record.get(i)).filter(|v| !v.is_empty());
        let resolve = |v: &str| {
            let p = PathBuf::from(v);
            if p.is_absolute() { p } else { base.join(p) }
        };
        let mut bad = false;
        let path = match field(Some(path_col)) {
            Some(v) if resolve(v).is_dir() => resolve(v),
            Some(v) => {
                errors.push(format!("{}: {v:?} is not a folder", at("path")));
                bad = true;
                PathBuf::new()
            }
            None => {
                errors.push(format!("{}: empty", at("path")));
                bad = true;
                PathBuf::new()
            }
        };
        let class = match field(Some(class_col)) {
            Some(v) => match Class::parse(v) {
                Some(class) => class.index(),
                None => {
                    errors.push(format!(
                        "{}: unknown class {v:?} (expected {})",
                        at("class"),
                        CLASSES.map(Class::as_str).join(", ")
                    ));
                    bad = true;
                    0
                }
            },
            None => {
                errors.push(format!("{}: empty", at("class")));
                bad = true;
                0
            }
        };
        let slice_labels = match field(slices_col) {
            Some(v) => match read_slice_labels(&resolve(v)) {
                Ok(map) => Some(map),
                Err(e) => {
                    errors.push(format!("{}: {e}", at("slice_labels")));
                    bad = true;
                    None
                }
            },
            None => None,
        };
        let mask = match field(mask_col) {
            Some(v) if resolve(v).is_file() => Some(resolve(v)),
            Some(v) => {
                errors.push(format!("{}: {v:?} is not a file", at("mask")));
                bad = true;
                None
            }
            None => None,
        };
        if !bad {
            rows.push(LabelledSeries {
                line,
                path,
                class,
                slice_labels,
                mask,
            });
        }
    }
    if rows.is_empty() && errors.is_empty() {
        errors.push(format!("{name}: no series listed"));
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

/// `instance_number,infected` rows (a header line is optional).
fn read_slice_labels(path: &Path) -> Result<BTreeMap<i64, bool>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut map = BTreeMap::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("{}: {e}", path.display()))?;
        let (Some(n), Some(v)) = (record.get(0), record.get(1)) else {
            return Err(format!(
                "{} line {}: expected instance_number,infected",
                path.display(),
                i + 1
            ));
        };
        if i == 0 && n.parse::<i64>().is_err() {
            continue; // a header line
        }
        let number: i64 = n.parse().map_err(|_| {
            format!(
                "{} line {}: instance number {n:?} is not an integer",
                path.display(),
                i + 1
            )
        })?;
        let infected = match v {
            "1" => true,
            "0" => false,
            other => {
                return Err(format!(
                    "{} line {}: infected must be 0 or 1, got {other:?}",
                    path.display(),
                    i + 1
                ));
            }
        };
        if map.insert(number, infected).is_some() {
            return Err(format!(
                "{} line {}: instance number {number} is listed twice",
                path.display(),
                i + 1
            ));
        }
    }
    if map.is_empty() {
        return Err(format!("{} lists no slices", path.display()));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn good_rows_resolve_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("s1")).unwrap();
        write(dir.path(), "s1.csv", "instance_number,infected\n1,0\n2,1\n");
        write(dir.path(), "m.nii", "x");
        let labels = write(
            dir.path(),
            "labels.csv",
            "path,class,slice_labels,mask\ns1,covid19,s1.csv,m.nii\ns1,normal,,\n",
        );
        let rows = read(&labels).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].path, dir.path().join("s1"));
        assert_eq!(rows[0].class, 0);
        assert!(rows[0].slice_labels.as_ref().unwrap()[&2]);
        assert_eq!(rows[0].mask, Some(dir.path().join("m.nii")));
        assert_eq!((rows[1].line, rows[1].class), (3, 2));
    }

    #[test]
    fn each_bad_row_names_its_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("s1")).unwrap();
        write(dir.path(), "bad.csv", "1,maybe\n");
        let labels = write(
            dir.path(),
            "labels.csv",
            "path,class,slice_labels\ns1,covid,,\nnowhere,normal,\ns1,normal,bad.csv\n",
        );
        let errors = read(&labels).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].contains("line 2, column class: unknown class \"covid\""));
        assert!(errors[1].contains("line 3, column path: \"nowhere\" is not a folder"));
        assert!(errors[2].contains("line 4, column slice_labels") && errors[2].contains("0 or 1"));

        let no_class = write(dir.path(), "l2.csv", "path,label\ns1,normal\n");
        let e = read(&no_class).unwrap_err();
        assert!(e[0].contains("missing column class"), "{e:?}");
    }
}
