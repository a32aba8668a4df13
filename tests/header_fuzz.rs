//! Property tests of the header path: garbage, mutations and truncations of real files
//! never panic, and a damaged file is never accepted with different pixels.

mod common;

use lungwatch::dicom::pixels::decode_stored;
use lungwatch::dicom::read::{Extent, parse};
use lungwatch::ingest::{RejectionCode, examine};
use proptest::prelude::*;

fn decode(bytes: &[u8]) -> Option<Vec<i64>> {
    decode_stored(&parse(bytes, Extent::Full).ok()?)
        .ok()
        .map(|p| p.values)
}

/// Small real files of different encodings (native, JPEG lossless, J2K, RLE, big endian).
fn seeds() -> Vec<Vec<u8>> {
    let Some(data) = common::shared_data("header fuzz seeds") else {
        return vec![];
    };
    [
        "covid-ct-md/cap-cap002/IM0001.dcm",
        "dicom-conformance/pydicom-data/emri_small_RLE.dcm",
        "dicom-conformance/pydicom-data/emri_small_big_endian.dcm",
        "dicom-conformance/pydicom-data/MR2_J2KR.dcm",
        "dicom-conformance/cornerstone/CTImage.dcm",
        "dicom-conformance/pydicom-data/JLSL_16_15_1_1F.dcm",
    ]
    .iter()
    .map(|p| std::fs::read(data.join(p)).unwrap())
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = examine(&bytes);
    }

    #[test]
    fn dicm_prefixed_garbage_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut bytes = vec![0u8; 128];
        bytes.extend_from_slice(b"DICM");
        bytes.extend_from_slice(&tail);
        let _ = examine(&bytes);
    }
}

#[test]
fn truncations_of_real_files_are_rejected_or_decode_identically() {
    let seeds = seeds();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 120,
        ..Default::default()
    });
    for seed in &seeds {
        let original = decode(seed).expect("seed decodes");
        runner
            .run(&(0usize..seed.len()), |cut| {
                let cut_bytes = &seed[..cut];
                if examine(cut_bytes).is_ok() {
                    // Accepted: then it must be whole where it matters.
                    prop_assert!(
                        decode(cut_bytes).as_ref() == Some(&original),
                        "cut at {} accepted with different pixels",
                        cut
                    );
                }
                Ok(())
            })
            .unwrap();
    }
}

#[test]
fn byte_mutations_of_real_files_never_panic() {
    let seeds = seeds();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 150,
        ..Default::default()
    });
    for seed in &seeds {
        // Mutate the first 2 KiB, where the header and the element lengths live.
        let strategy = proptest::collection::vec((0usize..seed.len().min(2048), any::<u8>()), 1..8);
        runner
            .run(&strategy, |edits| {
                let mut bytes = seed.clone();
                for (i, b) in edits {
                    bytes[i] = b;
                }
                if examine(&bytes).is_ok() {
                    let _ = decode(&bytes);
                }
                Ok(())
            })
            .unwrap();
    }
}

#[test]
fn every_decodable_conformance_file_passes_the_completeness_check() {
    let Some(data) = common::shared_data("completeness check") else {
        return;
    };
    let mut checked = 0;
    let mut wrongly_truncated = Vec::new();
    for path in common::files_under(&data.join("dicom-conformance")) {
        if path.extension().is_some_and(|e| e == "json") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        if decode(&bytes).is_some() {
            if let Err(r) = examine(&bytes)
                && r.code == RejectionCode::Truncated
            {
                wrongly_truncated.push(format!("{}: {r}", path.display()));
            }
            checked += 1;
        }
    }
    assert!(wrongly_truncated.is_empty(), "{wrongly_truncated:#?}");
    assert!(checked > 80, "{checked}");
}
