//! The label mask as a gzip-compressed NIfTI-1 file (`labels.nii.gz`): one byte per voxel,
//! 0 background, 1 right lung, 2 left lung, 3 ground-glass, 4 consolidation, with the
//! scanner (RAS) affine, so it opens over the original series in 3D Slicer or ITK-SNAP.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::morphology::Dims;
use super::postprocess::{CONSOLIDATION, GROUND_GLASS};

pub const LABEL_GROUND_GLASS: u8 = 3;
pub const LABEL_CONSOLIDATION: u8 = 4;

/// Voxel grid placement in DICOM patient coordinates (LPS, mm).
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    pub origin: [f64; 3],
    /// Patient direction of increasing column index, row index and slice index.
    pub column_axis: [f64; 3],
    pub row_axis: [f64; 3],
    pub slice_axis: [f64; 3],
    /// Column, row and slice steps in mm.
    pub steps_mm: [f64; 3],
}

fn header(dims: Dims, place: &Placement) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    let put_i16 =
        |h: &mut Vec<u8>, at: usize, v: i16| h[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put_f32 =
        |h: &mut Vec<u8>, at: usize, v: f32| h[at..at + 4].copy_from_slice(&v.to_le_bytes());
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    h[38] = b'r';
    for (k, v) in [3, dims.columns, dims.rows, dims.slices, 1, 1, 1, 1]
        .iter()
        .enumerate()
    {
        put_i16(&mut h, 40 + 2 * k, *v as i16);
    }
    put_i16(&mut h, 70, 2); // DT_UNSIGNED_CHAR
    put_i16(&mut h, 72, 8);
    put_f32(&mut h, 76, 1.0);
    for k in 0..3 {
        put_f32(&mut h, 80 + 4 * k, place.steps_mm[k] as f32);
    }
    put_f32(&mut h, 108, 352.0);
    put_f32(&mut h, 112, 1.0);
    h[123] = 2; // millimetres
    put_f32(&mut h, 124, 4.0);
    let description = b"lungwatch labels: 1 R lung 2 L lung 3 GGO 4 consolidation";
    h[148..148 + description.len()].copy_from_slice(description);
    put_i16(&mut h, 254, 1); // sform: scanner coordinates
    // LPS → RAS negates x and y.
    let flip = [-1.0, -1.0, 1.0];
    let axes = [place.column_axis, place.row_axis, place.slice_axis];
    for row in 0..3 {
        for (col, axis) in axes.iter().enumerate() {
            let v = flip[row] * axis[row] * place.steps_mm[col];
            put_f32(&mut h, 280 + 16 * row + 4 * col, v as f32);
        }
        put_f32(
            &mut h,
            280 + 16 * row + 12,
            (flip[row] * place.origin[row]) as f32,
        );
    }
    h[344..348].copy_from_slice(b"n+1\0");
    h
}

/// The combined label of one voxel.
pub fn combined_label(lung: u8, lesion: u8) -> u8 {
    match lesion {
        GROUND_GLASS => LABEL_GROUND_GLASS,
        CONSOLIDATION => LABEL_CONSOLIDATION,
        _ => lung,
    }
}

/// Encodes the masks as `.nii.gz` bytes.
pub fn encode_labels(
    lung: &[u8],
    lesion: &[u8],
    dims: Dims,
    place: &Placement,
) -> std::io::Result<Vec<u8>> {
    // Level 1: the masks are mostly zeros, so the fastest level already shrinks them ~50×.
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&header(dims, place))?;
    let mut buffer = Vec::with_capacity(dims.plane());
    for z in 0..dims.slices {
        let range = z * dims.plane()..(z + 1) * dims.plane();
        buffer.clear();
        buffer.extend(
            lung[range.clone()]
                .iter()
                .zip(&lesion[range])
                .map(|(&l, &s)| combined_label(l, s)),
        );
        gz.write_all(&buffer)?;
    }
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn header_and_voxels_round_trip() {
        let dims = Dims {
            slices: 2,
            rows: 3,
            columns: 4,
        };
        let lung = vec![1u8; 24];
        let mut lesion = vec![0u8; 24];
        lesion[5] = CONSOLIDATION;
        let place = Placement {
            origin: [-100.0, -120.0, 30.0],
            column_axis: [1.0, 0.0, 0.0],
            row_axis: [0.0, 1.0, 0.0],
            slice_axis: [0.0, 0.0, 1.0],
            steps_mm: [0.7, 0.7, 2.0],
        };
        let gz = encode_labels(&lung, &lesion, dims, &place).unwrap();
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw.len(), 352 + 24);
        assert_eq!(i32::from_le_bytes(raw[0..4].try_into().unwrap()), 348);
        assert_eq!(&raw[344..348], b"n+1\0");
        assert_eq!(i16::from_le_bytes([raw[42], raw[43]]), 4, "nx = columns");
        // srow_x[3] = RAS x of the origin = -LPS x.
        assert_eq!(f32::from_le_bytes(raw[292..296].try_into().unwrap()), 100.0);
        assert_eq!(f32::from_le_bytes(raw[280..284].try_into().unwrap()), -0.7);
        assert_eq!(raw[352 + 5], LABEL_CONSOLIDATION);
        assert_eq!(raw[352], 1);
    }
}
