//! `lungwatch calibrate`: refits the pattern classifier on a site's labelled series and
//! writes a complete models folder beside the shipped one, never over it.
//!
//! The series and the labels file are those of `validate` (the same reader and checks, in
//! `crate::labelled`); the features are the ones the pipeline computed for the shipped
//! classifier, in the manifest's order, so the refitted model takes exactly the input the
//! pipeline gives it.
//! The figures are k-fold cross-validated (stratified, fixed seed): before = the shipped
//! classifier's probabilities on each series, after = the refitted model's out-of-fold
//! probabilities. Accuracy and the AUCs carry 95 % bootstrap intervals from
//! `labelled::metrics`, as validate's do (fixed seed, so before and after are resampled
//! alike). `fit.rs` is the math, `onnx.rs` the export; this file does the I/O.

pub mod fit;
pub mod onnx;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::analysis::Analyser;
use crate::config::Config;
use crate::dicom::header::{hex, sha256};
use crate::labelled::metrics::{self, CLASSES, Called};
use crate::labelled::{self, fmt, labels};
use crate::pipeline;

/// A class needs this many series before a refit is worth anything.
pub const MIN_PER_CLASS: usize = 10;
pub const DEFAULT_FOLDS: usize = 5;
/// The L2 weight on standardised features: strong enough that a few dozen series cannot
/// drive the weights to infinity, weak enough to let the data speak.
pub const L2: f64 = 1e-2;
const SEED: u64 = 0x6c75_6e67_7761_7463;

#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub accuracy: f64,
    /// 95 % bootstrap interval of the accuracy.
    pub accuracy_ci95: Option<[f64; 2]>,
    /// One-vs-rest AUC per class, in `CLASSES` order.
    pub auc: [Option<f64>; 3],
    /// 95 % bootstrap interval of each AUC, in `CLASSES` order.
    pub auc_ci95: [Option<[f64; 2]>; 3],
    pub brier: f64,
    pub ece: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub labels_file: PathBuf,
    pub labels_sha256: String,
    pub cases_per_class: [usize; 3],
    pub failed: Vec<String>,
    pub folds: usize,
    pub l2: f64,
    pub before: Figures,
    pub after: Figures,
    pub shipped_version: String,
    pub new_version: String,
    pub out: PathBuf,
}

/// The table's figures of one column; None without any series.
fn figures(called: &[Called]) -> Option<Figures> {
    let r = metrics::class_report(called)?;
    Some(Figures {
        accuracy: r.accuracy,
        accuracy_ci95: metrics::bootstrap_accuracy(called),
        auc: [0, 1, 2].map(|k| r.per_class[k].auc),
        auc_ci95: [0, 1, 2].map(|k| r.per_class[k].auc_ci95),
        brier: r.brier,
        ece: r.ece,
    })
}

fn counts(classes: impl Iterator<Item = usize>) -> [usize; 3] {
    let mut n = [0; 3];
    classes.for_each(|c| n[c] += 1);
    n
}

fn refuse_small(n: &[usize; 3], what: &str) -> anyhow::Result<()> {
    for (k, &count) in n.iter().enumerate() {
        if count < MIN_PER_CLASS {
            bail!(
                "class {} has {count} {what} series; calibration needs at least {MIN_PER_CLASS} \
                 per class. Nothing was written.",
                CLASSES[k]
            );
        }
    }
    Ok(())
}

/// Stratified fold of each row: each class's rows shuffled (fixed seed) and dealt out.
pub fn stratified_folds(y: &[usize], k: usize) -> Vec<usize> {
    let mut rng = metrics::SplitMix(SEED);
    let mut next = || rng.next();
    let mut fold = vec![0; y.len()];
    let mut dealt = 0;
    for class in 0..3 {
        let mut rows: Vec<usize> = (0..y.len()).filter(|&i| y[i] == class).collect();
        for i in (1..rows.len()).rev() {
            rows.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        // Continue dealing where the previous class stopped, so folds stay even in size.
        for r in rows {
            fold[r] = dealt % k;
            dealt += 1;
        }
    }
    fold
}

/// Out-of-fold probabilities of the refitted model.
pub fn cross_validate(x: &[Vec<f64>], y: &[usize], k: usize, l2: f64) -> Vec<[f64; 3]> {
    let fold = stratified_folds(y, k);
    let mut out = vec![[0.0; 3]; x.len()];
    for f in 0..k {
        let train: Vec<usize> = (0..x.len()).filter(|&i| fold[i] != f).collect();
        let tx: Vec<Vec<f64>> = train.iter().map(|&i| x[i].clone()).collect();
        let ty: Vec<usize> = train.iter().map(|&i| y[i]).collect();
        let model = fit::fit(&tx, &ty, 3, l2);
        for i in (0..x.len()).filter(|&i| fold[i] == f) {
            let p = model.predict(&x[i]);
            out[i] = [p[0], p[1], p[2]];
        }
    }
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&sha256(bytes))
}

/// `DIR` must not be the shipped models folder and must be absent or empty.
fn check_out(out: &Path, models_dir: &Path) -> anyhow::Result<()> {
    if let (Ok(a), Ok(b)) = (out.canonicalize(), models_dir.canonicalize())
        && a == b
    {
        bail!(
            "--out {} is the models folder in use; give a new folder",
            out.display()
        );
    }
    if out.exists() {
        let mut entries = std::fs::read_dir(out)
            .with_context(|| format!("cannot read --out {}", out.display()))?;
        if entries.next().is_some() {
            bail!(
                "--out {} is not empty; give a new or empty folder",
                out.display()
            );
        }
    }
    Ok(())
}

/// Runs the calibration and writes the models folder. `progress` is told after each series.
pub fn calibrate(
    labels_file: &Path,
    out: &Path,
    folds: usize,
    config: &Config,
    analyser: &Analyser,
    mut progress: impl FnMut(usize, usize, &Path),
) -> anyhow::Result<Report> {
    let models = analyser.models();
    check_out(out, &models.dir)?;
    if folds < 2 {
        bail!("--folds must be at least 2");
    }
    let problems = |errors: Vec<String>| {
        anyhow::anyhow!(
            "{}\n{} problem(s) in the labels; nothing was analysed or written",
            errors.join("\n"),
            errors.len()
        )
    };
    let rows = labels::read(labels_file).map_err(problems)?;
    refuse_small(&counts(rows.iter().map(|r| r.class)), "labelled")?;
    let prepared = labelled::prepare(rows, config).map_err(problems)?;

    let Analysed {
        x,
        y,
        before,
        failed,
    } = analyse_labelled(&prepared, analyser, config, &mut progress);
    let per_class = counts(y.iter().copied());
    refuse_small(&per_class, "analysed")?;
    if let Some(bad) = x.iter().position(|r| r.iter().any(|v| !v.is_finite())) {
        bail!("series {bad} has a feature that is not finite; nothing was written");
    }

    let after: Vec<Called> = cross_validate(&x, &y, folds, L2)
        .into_iter()
        .zip(&y)
        .map(|(probabilities, &truth)| Called {
            truth,
            probabilities,
        })
        .collect();
    let before = figures(&before).expect("at least 30 series");
    let after = figures(&after).expect("at least 30 series");
    let model = fit::fit(&x, &y, 3, L2);

    let entry = &models.classifier.entry;
    let labels_sha256 = sha256_hex(
        &std::fs::read(labels_file)
            .with_context(|| format!("cannot read {}", labels_file.display()))?,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (da, _) = crate::objects::date_time_utc(now);
    let date = format!("{}-{}-{}", &da[0..4], &da[4..6], &da[6..8]);
    let new_version = format!("{}-site.{}", entry.version, da);
    let report = Report {
        labels_file: labels_file.to_path_buf(),
        labels_sha256,
        cases_per_class: per_class,
        failed,
        folds,
        l2: L2,
        before,
        after,
        shipped_version: entry.version.clone(),
        new_version,
        out: out.to_path_buf(),
    };
    install_models(&models.dir, out, &model, &report, &date)?;
    Ok(report)
}

/// What the labelled series gave: each analysed one's features, true class and the
/// shipped classifier's call; the reasons of those that failed.
struct Analysed {
    x: Vec<Vec<f64>>,
    /// Class indices, in `CLASSES` order.
    y: Vec<usize>,
    before: Vec<Called>,
    failed: Vec<String>,
}

fn analyse_labelled(
    prepared: &[labelled::Prepared],
    analyser: &Analyser,
    config: &Config,
    progress: &mut impl FnMut(usize, usize, &Path),
) -> Analysed {
    let mut x = Vec::new();
    let mut y = Vec::new();
    let mut before = Vec::new();
    let mut failed = Vec::new();
    let total = prepared.len();
    for (done, p) in prepared.iter().enumerate() {
        progress(done, total, &p.label.path);
        match pipeline::analyse_files(
            &p.paths,
            &p.header,
            analyser,
            config.decode_threads(),
            false,
        ) {
            Ok(a) => {
                let r = &a.report;
                x.push(r.features.iter().map(|(_, v)| *v).collect::<Vec<f64>>());
                y.push(p.label.class);
                before.push(Called {
                    truth: p.label.class,
                    probabilities: [
                        r.probabilities.covid19,
                        r.probabilities.other_pneumonia,
                        r.probabilities.normal,
                    ],
                });
            }
            Err(f) => failed.push(format!(
                "line {} ({}): {}",
                p.label.line,
                p.label.path.display(),
                f.message
            )),
        }
    }
    progress(total, total, Path::new(""));
    Analysed {
        x,
        y,
        before,
        failed,
    }
}

/// Writes the new models folder beside `out` and renames it into place (onto an absent or
/// empty folder), so a failure midway never leaves a partial models folder where one is
/// expected.
fn install_models(
    shipped: &Path,
    out: &Path,
    model: &fit::Fitted,
    report: &Report,
    date: &str,
) -> anyhow::Result<()> {
    let name = out
        .file_name()
        .with_context(|| format!("--out {} names no folder", out.display()))?;
    let staging = out.with_file_name(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = write_models(shipped, &staging, model, report, date).and_then(|()| {
        std::fs::rename(&staging, out)
            .with_context(|| format!("cannot move the models into {}", out.display()))
    });
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    written
}

/// The shipped manifest with a new classifier entry; the segmentation models copied.
fn write_models(
    shipped: &Path,
    out: &Path,
    model: &fit::Fitted,
    report: &Report,
    date: &str,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(shipped.join("manifest.toml"))?;
    let mut manifest: toml::Table = text.parse()?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let models = manifest
        .get_mut("models")
        .and_then(|m| m.as_table_mut())
        .context("the shipped manifest has no [models]")?;
    for name in ["lung_seg", "lesion_seg"] {
        let file = models[name]["file"]
            .as_str()
            .context("a model without file")?;
        std::fs::copy(shipped.join(file), out.join(file))
            .with_context(|| format!("cannot copy {file}"))?;
    }
    let classifier = models["classifier"]
        .as_table_mut()
        .context("the shipped manifest has no classifier")?;
    // The tensor names the pipeline's manifest gives, so the new graph keeps the contract.
    let name = |key: &str| {
        classifier
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let onnx_bytes = &onnx::encode(
        model,
        &name("input_name"),
        &name("output_name"),
        env!("CARGO_PKG_VERSION"),
    );
    let file = "classifier.onnx";
    std::fs::write(out.join(file), onnx_bytes)?;
    classifier.insert("file".into(), file.into());
    classifier.insert("version".into(), report.new_version.clone().into());
    classifier.insert("sha256".into(), sha256_hex(onnx_bytes).into());
    let mut provenance = toml::Table::new();
    provenance.insert("method".into(), format!(
        "lungwatch calibrate {}: multinomial logistic regression, L2 {} on standardised features, \
         refitted from classifier {}",
        env!("CARGO_PKG_VERSION"), report.l2, report.shipped_version
    ).into());
    provenance.insert("date".into(), date.into());
    provenance.insert("labels_sha256".into(), report.labels_sha256.clone().into());
    for (k, n) in report.cases_per_class.iter().enumerate() {
        provenance.insert(format!("cases_{}", CLASSES[k]), (*n as i64).into());
    }
    provenance.insert("cv_folds".into(), (report.folds as i64).into());
    for (tag, f) in [("before", &report.before), ("after", &report.after)] {
        provenance.insert(format!("cv_{tag}_accuracy"), f.accuracy.into());
        if let Some(ci) = f.accuracy_ci95 {
            provenance.insert(format!("cv_{tag}_accuracy_ci95"), ci95_toml(ci));
        }
        provenance.insert(format!("cv_{tag}_brier"), f.brier.into());
        provenance.insert(format!("cv_{tag}_ece"), f.ece.into());
        for (k, auc) in f.auc.iter().enumerate() {
            if let Some(a) = auc {
                provenance.insert(format!("cv_{tag}_auc_{}", CLASSES[k]), (*a).into());
            }
            if let Some(ci) = f.auc_ci95[k] {
                provenance.insert(format!("cv_{tag}_auc_{}_ci95", CLASSES[k]), ci95_toml(ci));
            }
        }
    }
    classifier.insert("provenance".into(), provenance.into());
    let header = "# lungwatch model manifest, written by `lungwatch calibrate` from the shipped one:\n\
                  # the segmentation models unchanged, the classifier refitted on this site's series.\n\n";
    std::fs::write(
        out.join("manifest.toml"),
        format!("{header}{}", toml::to_string(&manifest)?),
    )?;
    Ok(())
}

fn ci95_toml([lo, hi]: [f64; 2]) -> toml::Value {
    toml::Value::Array(vec![lo.into(), hi.into()])
}

/// A figure and its 95 % interval, as the table shows them: `0.733 (0.600–0.867)`.
fn with_ci(v: Option<f64>, ci: Option<[f64; 2]>) -> String {
    match (v, ci) {
        (Some(_), Some([lo, hi])) => format!("{} ({lo:.3}–{hi:.3})", fmt(v)),
        _ => fmt(v),
    }
}

/// The before/after table.
pub fn render_text(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "lungwatch calibrate: {}", r.labels_file.display());
    let _ = writeln!(
        o,
        "series per class: covid19 {}, other_pneumonia {}, normal {}; {} failed",
        r.cases_per_class[0],
        r.cases_per_class[1],
        r.cases_per_class[2],
        r.failed.len()
    );
    for f in &r.failed {
        let _ = writeln!(o, "  failed {f}");
    }
    let _ = writeln!(
        o,
        "\n{}-fold cross-validated, same series (in parentheses: 95 % bootstrap interval):",
        r.folds
    );
    let _ = writeln!(
        o,
        "  {:<22} {:>21} {:>21}",
        "",
        format!("before {}", r.shipped_version),
        "after (refit)"
    );
    let row = |o: &mut String, name: &str, a: String, b: String| {
        let _ = writeln!(o, "  {name:<22} {a:>21} {b:>21}");
    };
    row(
        &mut o,
        "accuracy",
        with_ci(Some(r.before.accuracy), r.before.accuracy_ci95),
        with_ci(Some(r.after.accuracy), r.after.accuracy_ci95),
    );
    for (k, class) in CLASSES.iter().enumerate() {
        row(
            &mut o,
            &format!("AUC {class}"),
            with_ci(r.before.auc[k], r.before.auc_ci95[k]),
            with_ci(r.after.auc[k], r.after.auc_ci95[k]),
        );
    }
    row(
        &mut o,
        "Brier (lower better)",
        format!("{:.4}", r.before.brier),
        format!("{:.4}", r.after.brier),
    );
    row(
        &mut o,
        "ECE (lower better)",
        format!("{:.4}", r.before.ece),
        format!("{:.4}", r.after.ece),
    );
    let _ = writeln!(
        o,
        "\nwrote {} (classifier {}). Check it with `lungwatch check --models {}`, then point \
         models.dir at it and restart lungwatch serve.\nDo not use lungwatch clinically before it has been \
         validated on enough of your own studies.",
        r.out.display(),
        r.new_version,
        r.out.display()
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_stratified_and_cover_every_row() {
        let y: Vec<usize> = (0..37)
            .map(|i| {
                if i < 12 {
                    0
                } else if i < 25 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let f = stratified_folds(&y, 5);
        for fold in 0..5 {
            for class in 0..3 {
                let n = (0..y.len())
                    .filter(|&i| f[i] == fold && y[i] == class)
                    .count();
                assert!((2..=3).contains(&n), "fold {fold} class {class}: {n}");
            }
        }
        assert_eq!(f, stratified_folds(&y, 5));
    }

    /// 30 series, 10 per class; the first `wrong` of each class called as the next class.
    fn called(wrong: usize) -> Vec<Called> {
        (0..30)
            .map(|i| {
                let truth = i % 3;
                let mut probabilities = [0.1; 3];
                let call = if i / 3 < wrong {
                    (truth + 1) % 3
                } else {
                    truth
                };
                probabilities[call] = 0.8;
                Called {
                    truth,
                    probabilities,
                }
            })
            .collect()
    }

    #[test]
    fn figures_carry_the_bootstrap_intervals_of_validate() {
        let right = called(0);
        let f = figures(&right).unwrap();
        assert_eq!(f.accuracy, 1.0);
        assert_eq!(f.accuracy_ci95, Some([1.0, 1.0]));
        assert_eq!(f.auc_ci95, [Some([1.0, 1.0]); 3]);

        let some_wrong = called(3);
        let f = figures(&some_wrong).unwrap();
        assert!((f.accuracy - 0.7).abs() < 1e-12);
        let [lo, hi] = f.accuracy_ci95.unwrap();
        assert!(lo < 0.7 && 0.7 < hi && lo > 0.4 && hi < 0.95, "{lo}–{hi}");
        assert_eq!(f.accuracy_ci95, metrics::bootstrap_accuracy(&some_wrong));
        let report = metrics::class_report(&some_wrong).unwrap();
        for k in 0..3 {
            let [lo, hi] = f.auc_ci95[k].unwrap();
            let auc = f.auc[k].unwrap();
            assert!(
                lo <= auc && auc <= hi && lo < hi,
                "{k}: {lo}–{hi} around {auc}"
            );
            assert_eq!(f.auc_ci95[k], report.per_class[k].auc_ci95);
        }
        assert!(figures(&[]).is_none());
    }

    #[test]
    fn the_table_shows_both_columns_with_intervals() {
        let before = figures(&called(3)).unwrap();
        let mut after = figures(&called(1)).unwrap();
        after.auc[2] = None;
        after.auc_ci95[2] = None;
        let report = Report {
            labels_file: "labels.csv".into(),
            labels_sha256: String::new(),
            cases_per_class: [10, 10, 10],
            failed: vec![],
            folds: 5,
            l2: L2,
            before: before.clone(),
            after: after.clone(),
            shipped_version: "0.2.0".into(),
            new_version: "0.2.0-site.20260101".into(),
            out: "site".into(),
        };
        let text = render_text(&report);
        let header = text.lines().find(|l| l.contains("before 0.2.0")).unwrap();
        assert!(header.contains("after (refit)"), "{text}");
        let line = |name: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(name))
                .unwrap_or_else(|| panic!("no {name} row in\n{text}"))
                .to_string()
        };
        let [b0, b1] = before.accuracy_ci95.unwrap();
        let [a0, a1] = after.accuracy_ci95.unwrap();
        let accuracy = line("accuracy");
        assert!(
            accuracy.contains(&format!("0.700 ({b0:.3}–{b1:.3})"))
                && accuracy.contains(&format!("0.900 ({a0:.3}–{a1:.3})")),
            "{accuracy}"
        );
        let [c0, c1] = before.auc_ci95[0].unwrap();
        let covid = line("AUC covid19");
        assert!(
            covid.contains(&format!("{} ({c0:.3}–{c1:.3})", fmt(before.auc[0]))),
            "{covid}"
        );
        // No AUC, no interval: a dash.
        assert!(line("AUC normal").trim_end().ends_with(" -"), "{text}");
        // Columns line up: every row of the table is as wide as the header.
        for name in [
            "accuracy",
            "AUC covid19",
            "AUC other_pneumonia",
            "AUC normal",
        ] {
            assert_eq!(
                line(name).chars().count(),
                header.chars().count(),
                "{name}:\n{text}"
            );
        }
    }

    #[test]
    fn too_few_names_the_class_and_count() {
        let e = refuse_small(&[12, 9, 30], "labelled")
            .unwrap_err()
            .to_string();
        assert!(e.contains("other_pneumonia has 9"), "{e}");
        assert!(refuse_small(&[10, 10, 10], "labelled").is_ok());
    }
}
