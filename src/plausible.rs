//! Are the header values that the volume and the analysis use plausible for CT?
//!
//! A PACS export that parses but carries odd values (Pixel Spacing `0\0`, Rows 0, a
//! rescale slope of 0) is far more common than a broken file. Each value the pipeline
//! computes with is checked here, once, before any pixel is decoded, and a series that
//! fails gets a skip reason that IT staff can act on, instead of a panic or silent
//! garbage further down. Pure functions over headers. Samples per pixel and frames are
//! `series::select`'s own rules, checked there before these.

use crate::dicom::InstanceHeader;

/// In-plane matrix bounds. Below 32 there is nothing to segment (the models work on
/// 128×128 frames); above 4096 no CT scanner reconstructs, and a bigger value is a
/// corrupt field that would make the decoder allocate gigabytes.
const MATRIX_RANGE: std::ops::RangeInclusive<u32> = 32..=4096;
/// Pixel spacing bounds, mm. Clinical CT reconstructs at about 0.2–1.5 mm; 0.1–5 mm
/// leaves room for micro-FOV and heavily downsampled exports, and refuses 0 or metres.
const PIXEL_SPACING_MM: std::ops::RangeInclusive<f64> = 0.1..=5.0;
/// Slice Thickness, when given, mm. Thicker than 50 mm is no cross-section.
const SLICE_THICKNESS_MM: std::ops::RangeInclusive<f64> = 0.01..=50.0;
/// Patient coordinates beyond this are not a position on a table (mm).
const MAX_POSITION_MM: f64 = 100_000.0;
/// Direction cosines must be unit vectors and orthogonal within this tolerance.
const COSINE_TOLERANCE: f64 = 0.01;
/// The stored range mapped through the rescale must reach air and soft tissue: an image
/// that cannot hold -900 HU or +100 HU is not in Hounsfield units.
const HU_MUST_REACH: (f64, f64) = (-900.0, 100.0);
/// |slope| beyond these, the rescale is a corrupt field (CT uses 1, sometimes 0.5 or 2).
const SLOPE_RANGE: std::ops::RangeInclusive<f64> = 1e-3..=1e3;
const MAX_ABS_INTERCEPT: f64 = 1e5;

/// Checks one instance's header; `Err` is the skip reason.
pub fn check_instance(h: &InstanceHeader) -> Result<(), String> {
    let (rows, columns) = match (h.rows, h.columns) {
        (Some(r), Some(c)) => (r, c),
        (None, _) => return Err("Rows is missing".into()),
        (_, None) => return Err("Columns is missing".into()),
    };
    if !MATRIX_RANGE.contains(&rows) || !MATRIX_RANGE.contains(&columns) {
        return Err(format!(
            "image size {rows} × {columns} is outside {}–{} pixels",
            MATRIX_RANGE.start(),
            MATRIX_RANGE.end()
        ));
    }
    check_bits(h)?;
    let spacing = h
        .pixel_spacing
        .ok_or("Pixel Spacing is missing or not numeric")?;
    if !spacing.iter().all(|s| PIXEL_SPACING_MM.contains(s)) {
        return Err(format!(
            "Pixel Spacing {}\\{} mm is not plausible for CT ({}–{} mm)",
            spacing[0],
            spacing[1],
            PIXEL_SPACING_MM.start(),
            PIXEL_SPACING_MM.end()
        ));
    }
    if let Some(t) = h.slice_thickness
        && !SLICE_THICKNESS_MM.contains(&t)
    {
        return Err(format!(
            "Slice Thickness {t} mm is not plausible ({}–{} mm)",
            SLICE_THICKNESS_MM.start(),
            SLICE_THICKNESS_MM.end()
        ));
    }
    let position = h
        .image_position
        .ok_or("Image Position (Patient) is missing or not numeric")?;
    if position.iter().any(|p| p.abs() > MAX_POSITION_MM) {
        return Err(format!(
            "Image Position (Patient) {position:?} is beyond {MAX_POSITION_MM} mm"
        ));
    }
    let orientation = h
        .image_orientation
        .ok_or("Image Orientation (Patient) is missing or not numeric")?;
    check_orientation(&orientation)?;
    check_rescale(h)
}

fn check_bits(h: &InstanceHeader) -> Result<(), String> {
    let allocated = h.bits_allocated.ok_or("Bits Allocated is missing")?;
    if !matches!(allocated, 8 | 16 | 32) {
        return Err(format!(
            "Bits Allocated {allocated} is not 8, 16 or 32 (CT stores 16)"
        ));
    }
    let stored = h.bits_stored.unwrap_or(allocated);
    if stored == 0 || stored > allocated {
        return Err(format!(
            "Bits Stored {stored} does not fit in Bits Allocated {allocated}"
        ));
    }
    Ok(())
}

fn check_orientation(o: &[f64; 6]) -> Result<(), String> {
    let row = [o[0], o[1], o[2]];
    let column = [o[3], o[4], o[5]];
    let dot = |a: [f64; 3], b: [f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    let unit = |v: [f64; 3]| (dot(v, v).sqrt() - 1.0).abs() <= COSINE_TOLERANCE;
    if !unit(row) || !unit(column) || dot(row, column).abs() > COSINE_TOLERANCE {
        return Err(format!(
            "Image Orientation (Patient) {o:?} is not two orthogonal unit vectors"
        ));
    }
    Ok(())
}

fn check_rescale(h: &InstanceHeader) -> Result<(), String> {
    let slope = h.rescale_slope.unwrap_or(1.0);
    let intercept = h.rescale_intercept.unwrap_or(0.0);
    if !SLOPE_RANGE.contains(&slope.abs()) {
        return Err(format!("Rescale Slope {slope} is not usable"));
    }
    if intercept.abs() > MAX_ABS_INTERCEPT {
        return Err(format!("Rescale Intercept {intercept} is not usable"));
    }
    let stored = u32::from(h.bits_stored.or(h.bits_allocated).unwrap_or(16).min(32));
    let (lo, hi) = if h.pixel_representation == Some(1) {
        (
            -(2f64.powi(stored as i32 - 1)),
            2f64.powi(stored as i32 - 1) - 1.0,
        )
    } else {
        (0.0, 2f64.powi(stored as i32) - 1.0)
    };
    let (a, b) = (lo * slope + intercept, hi * slope + intercept);
    let (hu_lo, hu_hi) = (a.min(b), a.max(b));
    if hu_lo > HU_MUST_REACH.0 || hu_hi < HU_MUST_REACH.1 {
        return Err(format!(
            "stored values map to {hu_lo:.0}…{hu_hi:.0} HU (slope {slope}, intercept {intercept}): \
             not Hounsfield units, which must reach {} and +{} HU",
            HU_MUST_REACH.0, HU_MUST_REACH.1
        ));
    }
    Ok(())
}

/// Checks that a series of `slices` slices of `rows` × `columns` fits the memory limit.
pub fn check_size(rows: u32, columns: u32, slices: usize, max_voxels: u64) -> Result<(), String> {
    let voxels = u64::from(rows) * u64::from(columns) * slices as u64;
    if voxels > max_voxels {
        return Err(format!(
            "{slices} slices of {rows} × {columns} are {:.0} M voxels, over the limit of \
             {:.0} M (selection.max_voxels); export a thicker reconstruction (1–2.5 mm) or \
             raise the limit if the box has the memory",
            voxels as f64 / 1e6,
            max_voxels as f64 / 1e6
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> InstanceHeader {
        InstanceHeader {
            rows: Some(512),
            columns: Some(512),
            pixel_spacing: Some([0.7, 0.7]),
            slice_thickness: Some(2.0),
            image_position: Some([-180.0, -180.0, 10.0]),
            image_orientation: Some([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
            rescale_slope: Some(1.0),
            rescale_intercept: Some(-1024.0),
            bits_allocated: Some(16),
            bits_stored: Some(12),
            pixel_representation: Some(0),
            samples_per_pixel: Some(1),
            ..Default::default()
        }
    }

    fn reason(edit: impl FnOnce(&mut InstanceHeader)) -> String {
        let mut h = good();
        edit(&mut h);
        check_instance(&h).expect_err("should be refused")
    }

    #[test]
    fn a_usual_ct_header_passes() {
        assert_eq!(check_instance(&good()), Ok(()));
        let mut signed = good();
        signed.pixel_representation = Some(1);
        signed.bits_stored = Some(16);
        signed.rescale_intercept = Some(0.0);
        assert_eq!(check_instance(&signed), Ok(()));
    }

    #[test]
    fn each_absurd_value_has_its_reason() {
        assert!(reason(|h| h.pixel_spacing = Some([0.0, 0.0])).contains("Pixel Spacing 0\\0"));
        assert!(reason(|h| h.pixel_spacing = Some([-0.7, 0.7])).contains("Pixel Spacing"));
        assert!(reason(|h| h.pixel_spacing = None).contains("Pixel Spacing is missing"));
        assert!(reason(|h| h.rows = Some(0)).contains("image size 0 × 512"));
        assert!(reason(|h| h.columns = Some(65535)).contains("image size"));
        assert!(reason(|h| h.bits_allocated = Some(12)).contains("Bits Allocated 12"));
        assert!(reason(|h| h.bits_stored = Some(17)).contains("Bits Stored 17"));
        assert!(reason(|h| h.slice_thickness = Some(-2.0)).contains("Slice Thickness -2"));
        assert!(reason(|h| h.image_position = Some([0.0, 0.0, 1e9])).contains("beyond"));
        assert!(
            reason(|h| h.image_orientation = Some([0.0; 6])).contains("orthogonal unit vectors")
        );
        assert!(
            reason(|h| h.image_orientation = Some([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]))
                .contains("orthogonal")
        );
        assert!(reason(|h| h.rescale_slope = Some(0.0)).contains("Rescale Slope 0"));
        assert!(reason(|h| h.rescale_intercept = Some(1e9)).contains("Rescale Intercept"));
        // 12-bit unsigned with intercept +1000: 1000…5095 HU, no air.
        assert!(reason(|h| h.rescale_intercept = Some(1000.0)).contains("not Hounsfield"));
    }

    #[test]
    fn size_limit_names_the_key() {
        assert_eq!(check_size(512, 512, 300, 200_000_000), Ok(()));
        let e = check_size(512, 512, 1000, 200_000_000).unwrap_err();
        assert!(e.contains("selection.max_voxels"), "{e}");
    }
}
