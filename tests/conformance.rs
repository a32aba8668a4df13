//! Every file of the DICOM conformance corpus, decoded and checked against an independent
//! reference decoder (`../shared/data/dicom-conformance/reference.json`).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use lungwatch::dicom::header::{hex, sha256};
use lungwatch::dicom::pixels::{StoredPixels, decode_stored};
use lungwatch::dicom::read::{Extent, parse};
use serde::Deserialize;

#[derive(Deserialize, Debug)]
struct Reference {
    decoded_by_reference: Option<bool>,
    lossy: Option<bool>,
    min: Option<serde_json::Number>,
    max: Option<serde_json::Number>,
    sum: Option<serde_json::Number>,
    sha256_i64le: Option<String>,
    photometric: Option<String>,
}

/// Files the reference decodes and lungwatch refuses, each with the reason it must give.
/// None of them is a CT acquisition a PACS would send for analysis except the 12-bit lossy
/// JPEG pair, a codec gap stated in the README.
const KNOWN_REJECTIONS: &[(&str, &str)] = &[
    (
        "cornerstone/CT0012.fragmented_no_bot_jpeg_baseline.51.dcm",
        "12-bit lossy JPEG",
    ),
    (
        "cornerstone/CTImage.dcm_JPEGProcess2_4TransferSyntax_1.2.840.10008.1.2.4.51.dcm",
        "12-bit lossy JPEG",
    ),
    ("pydicom-data/JLSL_RGB_ILV0.dcm", "decoded"),
    ("pydicom-data/JLSL_RGB_ILV1.dcm", "decoded"),
    ("pydicom-data/JLSL_RGB_ILV2.dcm", "decoded"),
    ("pydicom-data/JLSN_RGB_ILV0.dcm", "decoded"),
    ("pydicom-data/liver_j2k.dcm", "compressed 1-bit"),
    (
        "pydicom-data/liver_nonbyte_aligned_j2k.dcm",
        "compressed 1-bit",
    ),
    ("pydicom-data/parametric_map_float.dcm", "Float Pixel Data"),
];

fn decode(path: &Path) -> Result<StoredPixels, String> {
    let bytes = std::fs::read(path).unwrap();
    let obj = parse(&bytes, Extent::Full).map_err(|e| e.to_string())?;
    decode_stored(&obj).map_err(|e| e.to_string())
}

fn digest(values: &[i64]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    hex(&sha256(&bytes))
}

/// The reference reports YBR images converted to RGB (pydicom's default); apply the same
/// full-range ITU-R BT.601 conversion to our stored values so the two can be compared.
fn ybr_full_to_rgb(values: &[i64]) -> Vec<i64> {
    let m = [
        [1.0f32, 1.0, 1.0],
        [0.0, -0.114 * 1.772 / 0.587, 1.772],
        [1.402, -0.299 * 1.402 / 0.587, 0.0],
    ];
    values
        .chunks_exact(3)
        .flat_map(|p| {
            let v = [p[0] as f32, p[1] as f32 - 128.0, p[2] as f32 - 128.0];
            (0..3).map(move |c| {
                let x = v[0] * m[0][c] + v[1] * m[1][c] + v[2] * m[2][c] + 0.5;
                (x.floor() as i64).clamp(0, 255)
            })
        })
        .collect()
}

/// The lossless file the same image was made from, where the corpus has one.
fn lossless_twin(name: &str, refs: &BTreeMap<String, Reference>) -> Option<String> {
    let candidates = [
        name.replace("_too_short", ""),
        name.replace("_deflate", ""),
        name.split(".dcm_")
            .next()
            .map(|s| format!("{s}.dcm"))
            .unwrap_or_default(),
    ];
    candidates.into_iter().find(|c| {
        c != name
            && refs
                .get(c)
                .is_some_and(|r| r.decoded_by_reference == Some(true) && r.lossy == Some(false))
    })
}

fn as_i64(n: &Option<serde_json::Number>) -> i64 {
    n.as_ref()
        .and_then(|n| n.as_i64())
        .expect("integer reference statistic")
}

#[test]
fn every_reference_file_decodes_exactly_or_is_rejected_with_its_reason() {
    let Some(data) = common::shared_data("conformance") else {
        return;
    };
    let root = data.join("dicom-conformance");
    let refs: BTreeMap<String, Reference> =
        serde_json::from_str(&std::fs::read_to_string(root.join("reference.json")).unwrap())
            .unwrap();
    let mut failures = Vec::new();
    let (mut exact, mut lossy_ok, mut rejected) = (0, 0, 0);
    for (name, r) in &refs {
        let outcome = decode(&root.join(name));
        let known = KNOWN_REJECTIONS
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, why)| *why);
        match (r.decoded_by_reference, outcome, known) {
            (_, Err(e), Some(why)) => {
                rejected += 1;
                if !e.contains(why) {
                    failures.push(format!(
                        "{name}: rejected with {e:?}, expected a reason mentioning {why:?}"
                    ));
                }
            }
            (_, Ok(_), Some(_)) => failures.push(format!(
                "{name}: now decodes; check it and drop it from KNOWN_REJECTIONS"
            )),
            (Some(true), Err(e), None) => {
                failures.push(format!("{name}: reference decodes it, we reject: {e}"))
            }
            (Some(true), Ok(px), None) => {
                let values = if r
                    .photometric
                    .as_deref()
                    .is_some_and(|p| p.starts_with("YBR_FULL"))
                {
                    ybr_full_to_rgb(&px.values)
                } else {
                    px.values
                };
                if Some(digest(&values)) == r.sha256_i64le {
                    exact += 1;
                } else if r.lossy == Some(true) {
                    // Lossy codecs may round differently from the reference's decoder.
                    let (min, max, sum) = (as_i64(&r.min), as_i64(&r.max), as_i64(&r.sum));
                    let range = (max - min).max(1) as f64;
                    let mean_ref = sum as f64 / values.len() as f64;
                    let mean = values.iter().sum::<i64>() as f64 / values.len() as f64;
                    let ours = (
                        values.iter().min().copied().unwrap(),
                        values.iter().max().copied().unwrap(),
                    );
                    if (mean - mean_ref).abs() > 0.005 * range
                        || (ours.0 - min).abs() as f64 > 0.02 * range
                        || (ours.1 - max).abs() as f64 > 0.02 * range
                    {
                        failures.push(format!("{name}: lossy decode too far from reference: mean {mean} vs {mean_ref}, min/max {ours:?} vs {min}/{max}"));
                    } else {
                        lossy_ok += 1;
                    }
                } else {
                    failures.push(format!(
                        "{name}: lossless decode differs from the reference"
                    ));
                }
            }
            (_, Err(_), None) => rejected += 1,
            (_, Ok(px), None) => match lossless_twin(name, &refs) {
                // The reference could not decode it; we did, so we must agree with its twin.
                Some(twin) => {
                    let twin_px = decode(&root.join(&twin)).expect("twin decodes");
                    if twin_px.values != px.values {
                        failures.push(format!(
                            "{name}: decoded, but differs from its lossless twin {twin}"
                        ));
                    } else {
                        exact += 1;
                    }
                }
                None if name.ends_with("OT-PAL-8-face.dcm") => {
                    // No transfer syntax in its meta; the data set reads as implicit VR LE and
                    // holds plain 8-bit palette indices. Check the shape rather than trusting it.
                    if px.values.len() != 640 * 480
                        || px.values.iter().any(|&v| !(0..=255).contains(&v))
                    {
                        failures.push(format!("{name}: implausible palette indices"));
                    }
                }
                None => failures.push(format!("{name}: decoded with nothing to check it against")),
            },
        }
    }
    println!("{exact} exact, {lossy_ok} lossy within tolerance, {rejected} rejected with a reason");
    assert!(
        failures.is_empty(),
        "conformance failures:\n{}",
        failures.join("\n")
    );
    assert!(exact >= 90, "only {exact} exact matches");
}

#[test]
fn every_lossless_ct_image_variant_decodes_to_the_same_values() {
    let Some(data) = common::shared_data("conformance") else {
        return;
    };
    let dir = data.join("dicom-conformance/cornerstone");
    let base = decode(&dir.join("CTImage.dcm")).unwrap();
    let lossless_uids = [
        "1.2.840.10008.1.2.dcm",
        "1.2.840.10008.1.2.1.dcm",
        "1.2.840.10008.1.2.2.dcm",
        "1.2.840.10008.1.2.1.99.dcm",
        "1.2.840.10008.1.2.5.dcm",
        "1.2.840.10008.1.2.4.57.dcm",
        "1.2.840.10008.1.2.4.70.dcm",
        "1.2.840.10008.1.2.4.80.dcm",
        "1.2.840.10008.1.2.4.90.dcm",
    ];
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with("CTImage.dcm_")
            && lossless_uids
                .iter()
                .any(|u| name.ends_with(&format!("_{u}")))
        {
            let px = decode(&dir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(px.values, base.values, "{name}");
            checked += 1;
        }
    }
    assert_eq!(checked, lossless_uids.len());
}

/// A compressed frame whose header claims another size than the codestream is refused
/// before decoding, for every codec family (a lying Rows must not reshape the image or
/// size a decoder's buffer).
#[test]
fn codestreams_that_disagree_with_rows_and_columns_are_refused() {
    let Some(data) = common::shared_data("codestream size check") else {
        return;
    };
    let dir = data.join("dicom-conformance/cornerstone");
    for syntax in [
        "JPEGProcess1TransferSyntax_1.2.840.10008.1.2.4.50",
        "JPEGProcess14SV1TransferSyntax_1.2.840.10008.1.2.4.70",
        "JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80",
        "JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90",
    ] {
        let path = dir.join(format!("CTImage.dcm_{syntax}.dcm"));
        let bytes = std::fs::read(&path).unwrap();
        let mut obj = parse(&bytes, Extent::Full).unwrap();
        assert!(decode_stored(&obj).is_ok(), "{syntax} decodes as shipped");
        obj.put(dicom_core::DataElement::new(
            dicom_dictionary_std::tags::ROWS,
            dicom_core::VR::US,
            dicom_core::PrimitiveValue::from(1u16),
        ));
        let e = decode_stored(&obj).expect_err("a 1-row header over a full image");
        let text = e.to_string();
        assert!(
            text.contains(
                "the compressed image is 512 × 512 pixels, but the header declares 512 × 1"
            ),
            "{syntax}: refused, but with {text:?}"
        );
    }
}
