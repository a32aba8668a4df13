//! A synthetic chest CT series written as real DICOM files (CT Image Storage, explicit VR
//! little endian, 12-bit unsigned with intercept -1024): an elliptic body, two lungs at
//! -850 HU with noise and one ground-glass sphere. It needs no shared data, so tests that
//! only need *a* chest CT through the real file path run on every clone.

use std::path::{Path, PathBuf};

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileDicomObject, FileMetaTableBuilder, InMemDicomObject};

pub struct PhantomSpec {
    pub rows: usize,
    pub columns: usize,
    pub slices: usize,
    pub pixel_mm: f64,
    pub slice_mm: f64,
    pub patient_id: String,
    pub study_uid: String,
    pub series_uid: String,
}

impl PhantomSpec {
    /// A small series: quick to decode and analyse (the models see 128×128 frames).
    pub fn small(n: u32) -> PhantomSpec {
        PhantomSpec {
            rows: 128,
            columns: 128,
            slices: 16,
            pixel_mm: 2.6,
            slice_mm: 5.0,
            patient_id: format!("PHANTOM-{n}"),
            study_uid: format!("1.2.826.0.1.3680043.10.1005.2.{n}"),
            series_uid: format!("1.2.826.0.1.3680043.10.1005.3.{n}"),
        }
    }
}

/// One file object per slice, in slice order.
pub fn slices(spec: &PhantomSpec) -> Vec<FileDicomObject<InMemDicomObject>> {
    let fov_x = spec.columns as f64 * spec.pixel_mm;
    let fov_y = spec.rows as f64 * spec.pixel_mm;
    let depth = spec.slices as f64 * spec.slice_mm;
    // Body and lungs scaled to the field of view; x to the patient's left, y posterior.
    let body = [0.46 * fov_x, 0.36 * fov_y];
    let lungs = [
        (
            [-0.2 * fov_x, 0.0, depth / 2.0],
            [0.15 * fov_x, 0.22 * fov_y, 0.6 * depth],
        ),
        (
            [0.2 * fov_x, 0.0, depth / 2.0],
            [0.14 * fov_x, 0.21 * fov_y, 0.58 * depth],
        ),
    ];
    let sphere = ([-0.25 * fov_x, 0.08 * fov_y, depth / 2.0], 0.05 * fov_x);
    let mut noise: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..spec.slices)
        .map(|z| {
            let mut stored = Vec::with_capacity(spec.rows * spec.columns * 2);
            for r in 0..spec.rows {
                for c in 0..spec.columns {
                    let p = [
                        (c as f64 - spec.columns as f64 / 2.0) * spec.pixel_mm,
                        (r as f64 - spec.rows as f64 / 2.0) * spec.pixel_mm,
                        z as f64 * spec.slice_mm,
                    ];
                    noise = noise
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let jitter = ((noise >> 33) % 41) as i32 - 20;
                    let inside = |center: [f64; 3], semi: [f64; 3]| {
                        (0..3)
                            .map(|k| ((p[k] - center[k]) / semi[k]).powi(2))
                            .sum::<f64>()
                            <= 1.0
                    };
                    let hu = if (p[0] / body[0]).powi(2) + (p[1] / body[1]).powi(2) > 1.0 {
                        -1000
                    } else if lungs.iter().any(|(c, s)| inside(*c, *s)) {
                        if inside(sphere.0, [sphere.1; 3]) {
                            -500 + jitter
                        } else {
                            -850 + jitter
                        }
                    } else {
                        40 + jitter
                    };
                    let value = (hu + 1024).clamp(0, 4095) as u16;
                    stored.extend_from_slice(&value.to_le_bytes());
                }
            }
            slice_object(spec, z, stored)
        })
        .collect()
}

fn slice_object(
    spec: &PhantomSpec,
    z: usize,
    pixels: Vec<u8>,
) -> FileDicomObject<InMemDicomObject> {
    let sop_uid = format!("{}.{}", spec.series_uid, z + 1);
    let mut obj = InMemDicomObject::new_empty();
    let text = |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
    let short = |tag, value: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(value));
    obj.put(text(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE));
    obj.put(text(tags::SOP_INSTANCE_UID, VR::UI, &sop_uid));
    obj.put(text(tags::STUDY_INSTANCE_UID, VR::UI, &spec.study_uid));
    obj.put(text(tags::SERIES_INSTANCE_UID, VR::UI, &spec.series_uid));
    obj.put(text(tags::PATIENT_ID, VR::LO, &spec.patient_id));
    obj.put(text(tags::PATIENT_NAME, VR::PN, "PHANTOM^CHEST"));
    obj.put(text(tags::STUDY_DATE, VR::DA, "20260101"));
    obj.put(text(tags::MODALITY, VR::CS, "CT"));
    obj.put(text(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\AXIAL"));
    obj.put(text(tags::INSTANCE_NUMBER, VR::IS, &(z + 1).to_string()));
    obj.put(short(tags::ROWS, spec.rows as u16));
    obj.put(short(tags::COLUMNS, spec.columns as u16));
    obj.put(text(
        tags::PIXEL_SPACING,
        VR::DS,
        &format!("{}\\{}", spec.pixel_mm, spec.pixel_mm),
    ));
    obj.put(text(
        tags::SLICE_THICKNESS,
        VR::DS,
        &spec.slice_mm.to_string(),
    ));
    let (x0, y0) = (
        -(spec.columns as f64) / 2.0 * spec.pixel_mm,
        -(spec.rows as f64) / 2.0 * spec.pixel_mm,
    );
    obj.put(text(
        tags::IMAGE_POSITION_PATIENT,
        VR::DS,
        &format!("{x0}\\{y0}\\{}", z as f64 * spec.slice_mm),
    ));
    obj.put(text(
        tags::IMAGE_ORIENTATION_PATIENT,
        VR::DS,
        "1\\0\\0\\0\\1\\0",
    ));
    obj.put(text(tags::RESCALE_SLOPE, VR::DS, "1"));
    obj.put(text(tags::RESCALE_INTERCEPT, VR::DS, "-1024"));
    obj.put(short(tags::SAMPLES_PER_PIXEL, 1));
    obj.put(text(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    ));
    obj.put(short(tags::BITS_ALLOCATED, 16));
    obj.put(short(tags::BITS_STORED, 12));
    obj.put(short(tags::HIGH_BIT, 11));
    obj.put(short(tags::PIXEL_REPRESENTATION, 0));
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::from(pixels),
    ));
    obj.with_meta(
        FileMetaTableBuilder::new()
            .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .media_storage_sop_class_uid(uids::CT_IMAGE_STORAGE)
            .media_storage_sop_instance_uid(&sop_uid),
    )
    .expect("a complete file meta group")
}

/// Writes the objects as `dir/0001.dcm`, … and returns the paths.
pub fn write(dir: &Path, objects: &[FileDicomObject<InMemDicomObject>]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    objects
        .iter()
        .enumerate()
        .map(|(i, obj)| {
            let path = dir.join(format!("{:04}.dcm", i + 1));
            obj.write_to_file(&path).unwrap();
            path
        })
        .collect()
}
