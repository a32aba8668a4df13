//! Fuzzing past ingest: a real DICOM series (the phantom, written as files) with its header
//! values and pixel data mutated — zero, negative, NaN, huge, inconsistent across slices —
//! then taken through the daemon's own path: `ingest::examine` per file, `series::select`,
//! then decode, the whole analysis with the shipped models, and the artifacts.
//!
//! Nothing may panic, not even inside the pipeline's guard (a caught panic is a failure of
//! kind `internal-error`, which this test refuses): every case must end as a result, a
//! skip reason or a failure reason, and a result must hold finite, bounded figures.
//!
//! CI runs a fixed seed and case count. Longer by hand:
//! `LUNGWATCH_FUZZ_CASES=5000 LUNGWATCH_FUZZ_SEED=7 cargo test --release --test series_fuzz -- --nocapture`

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::Rng;
use common::phantom::{self, PhantomSpec};
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};
use lungwatch::analysis::Analyser;
use lungwatch::analysis::models::ModelSet;
use lungwatch::config::Config;
use lungwatch::db::FailureKind;
use lungwatch::{ingest, pipeline, series};

/// Values a decimal-string field may be given.
const DECIMALS: &[&str] = &[
    "0", "-1", "-0.7", "NaN", "inf", "-inf", "1e308", "1e-300", "0.0001", "99999", "", "abc",
    "0.7", "2.5", "1",
];
/// Values an unsigned-short field may be given.
const SHORTS: &[u16] = &[
    0, 1, 2, 3, 7, 8, 12, 15, 16, 17, 32, 64, 255, 511, 4096, 65535,
];

#[derive(Debug, Clone, Copy)]
enum Field {
    Short(Tag),
    /// A multi-valued DS of `n` values.
    Decimals(Tag, usize),
    PixelData,
    DropSlices,
    DuplicateSlice,
}

const FIELDS: &[Field] = &[
    Field::Short(tags::ROWS),
    Field::Short(tags::COLUMNS),
    Field::Short(tags::BITS_ALLOCATED),
    Field::Short(tags::BITS_STORED),
    Field::Short(tags::HIGH_BIT),
    Field::Short(tags::PIXEL_REPRESENTATION),
    Field::Short(tags::SAMPLES_PER_PIXEL),
    Field::Decimals(tags::PIXEL_SPACING, 2),
    Field::Decimals(tags::IMAGE_POSITION_PATIENT, 3),
    Field::Decimals(tags::IMAGE_ORIENTATION_PATIENT, 6),
    Field::Decimals(tags::SLICE_THICKNESS, 1),
    Field::Decimals(tags::RESCALE_SLOPE, 1),
    Field::Decimals(tags::RESCALE_INTERCEPT, 1),
    Field::Decimals(tags::NUMBER_OF_FRAMES, 1),
    Field::PixelData,
    Field::DropSlices,
    Field::DuplicateSlice,
];

/// Applies one mutation to every slice or to one of them; returns its description.
fn mutate(rng: &mut Rng, slices: &mut Vec<FileDicomObject<InMemDicomObject>>) -> String {
    let field = *rng.pick(FIELDS);
    let all = rng.below(2) == 0;
    let target = rng.below(slices.len());
    let chosen: Vec<usize> = if all {
        (0..slices.len()).collect()
    } else {
        vec![target]
    };
    let scope = if all {
        "all slices".to_string()
    } else {
        format!("slice {target}")
    };
    match field {
        Field::Short(tag) => {
            let value = *rng.pick(SHORTS);
            for &i in &chosen {
                slices[i].put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
            }
            format!("{tag} = {value} on {scope}")
        }
        Field::Decimals(tag, n) => {
            let values: Vec<&str> = (0..n).map(|_| *rng.pick(DECIMALS)).collect();
            let text = values.join("\\");
            let vr = if tag == tags::NUMBER_OF_FRAMES {
                VR::IS
            } else {
                VR::DS
            };
            for &i in &chosen {
                slices[i].put(DataElement::new(
                    tag,
                    vr,
                    PrimitiveValue::from(text.as_str()),
                ));
            }
            format!("{tag} = {text:?} on {scope}")
        }
        Field::PixelData => {
            let how = rng.below(4);
            for &i in &chosen {
                let mut bytes = slices[i]
                    .element(tags::PIXEL_DATA)
                    .unwrap()
                    .to_bytes()
                    .unwrap()
                    .into_owned();
                match how {
                    0 => bytes.truncate(bytes.len() / 3),
                    1 => bytes.extend(std::iter::repeat_n(0xA5, bytes.len())),
                    2 => bytes.iter_mut().for_each(|b| *b = 0xFF),
                    _ => bytes.truncate(2),
                }
                slices[i].put(DataElement::new(
                    tags::PIXEL_DATA,
                    VR::OW,
                    PrimitiveValue::from(bytes),
                ));
            }
            let what = ["cut to a third", "doubled", "all 0xFF", "two bytes"][how];
            format!("Pixel Data {what} on {scope}")
        }
        Field::DropSlices => {
            let keep = 1 + rng.below(slices.len());
            slices.truncate(keep);
            format!("only {keep} slices")
        }
        Field::DuplicateSlice => {
            let copy = slices[target].clone();
            slices.push(copy);
            format!("slice {target} twice")
        }
    }
}

/// How one case ended.
#[derive(Debug, Default)]
struct Tally {
    cases: usize,
    files_quarantined: usize,
    skipped: usize,
    failed: usize,
    analysed: usize,
}

#[test]
fn mutated_series_end_as_a_result_or_a_reason_never_a_panic() {
    let cases: usize = std::env::var("LUNGWATCH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let seed: u64 = std::env::var("LUNGWATCH_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261202);
    let models_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let analyser = Analyser::new(Arc::new(ModelSet::load(&models_dir).unwrap()), 2);
    let mut config = Config::default();
    config.selection.min_slices = 4;
    let base = phantom::slices(&PhantomSpec::small(1));
    let scratch = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    for case in 0..cases {
        let mut slices = base.clone();
        let mutations: Vec<String> = (0..1 + rng.below(3))
            .map(|_| mutate(&mut rng, &mut slices))
            .collect();
        let what = format!("case {case} (seed {seed}): {}", mutations.join("; "));
        let dir = scratch.path().join(format!("case-{case}"));
        let files = phantom::write(&dir, &slices);
        tally.cases += 1;

        // 1. Ingest's verdict on each file, as the daemon makes it.
        let mut accepted = Vec::new();
        for path in &files {
            let bytes = std::fs::read(path).unwrap();
            match ingest::examine(&bytes) {
                Ok(header) => accepted.push((header, path.clone())),
                Err(rejection) => {
                    assert!(!rejection.to_string().is_empty(), "{what}");
                    tally.files_quarantined += 1;
                }
            }
        }
        if accepted.is_empty() {
            continue;
        }
        // 2. Selection on the accepted headers, as series completion does.
        let headers: Vec<_> = accepted.iter().map(|(h, _)| h).collect();
        if let Err(reason) = series::select(&headers, &config.selection) {
            assert!(!reason.is_empty(), "{what}");
            tally.skipped += 1;
            continue;
        }
        // 3. Decode, analyse, write the artifacts, as the worker does.
        let paths: Vec<PathBuf> = accepted.iter().map(|(_, p)| p.clone()).collect();
        let outcome = pipeline::analyse_files(&paths, &accepted[0].0, &analyser, 2, false)
            .and_then(|analysis| {
                pipeline::write_artifacts(&analysis, &dir.join("results"))?;
                Ok(analysis.report)
            });
        match outcome {
            Ok(report) => {
                tally.analysed += 1;
                let p = &report.probabilities;
                let sum = p.covid19 + p.other_pneumonia + p.normal;
                assert!((sum - 1.0).abs() < 1e-3, "{what}: probabilities {p:?}");
                for v in [
                    report.affected_ratio.total,
                    report.affected_ratio.left,
                    report.affected_ratio.right,
                    report.ggo_share,
                    report.peripheral_share,
                ] {
                    assert!((0.0..=1.0).contains(&v), "{what}: ratio {v}");
                }
                assert!(
                    report.lesion_volume_ml.is_finite() && report.lesion_volume_ml >= 0.0,
                    "{what}: lesion volume {}",
                    report.lesion_volume_ml
                );
                assert!(report.severity_score <= 24, "{what}");
            }
            Err(failure) => {
                assert_ne!(
                    failure.kind,
                    FailureKind::InternalError,
                    "{what}: a panic inside the pipeline: {}",
                    failure.message
                );
                assert!(!failure.message.is_empty(), "{what}");
                tally.failed += 1;
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    println!("series fuzz, seed {seed}: {tally:?}");
    assert_eq!(tally.cases, cases);
    // The mutations must reach every stage, or the test proves less than it says.
    assert!(tally.skipped > 0 && tally.analysed > 0, "{tally:?}");
}
