//! Reading a reference lesion mask (NIfTI-1, `.nii` or `.nii.gz`) and laying it on the
//! analysed volume through its affine, so that a mask in any voxel order (flipped,
//! reversed slices, as 3D Slicer or ITK-SNAP write them) is compared voxel for voxel with
//! the same patient positions. A mask must be on the series grid: the same number of
//! columns, rows and slices.

use std::io::Read;
use std::path::Path;

use crate::dicom::volume::{Spacing, Volume};

/// A label map and its voxel → RAS (mm) affine.
#[derive(Debug, Clone)]
pub struct Mask {
    /// i (fastest), j, k.
    pub dims: [usize; 3],
    pub labels: Vec<u8>,
    /// Rows of the 3×4 voxel → RAS matrix.
    pub affine: [[f64; 4]; 3],
}

/// Largest mask accepted (voxels): beyond any CT series lungwatch analyses.
const MAX_VOXELS: usize = 1 << 30;

pub fn read(path: &Path) -> Result<Mask, String> {
    let raw = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .take(MAX_VOXELS as u64 * 8 + 1024)
            .read_to_end(&mut out)
            .map_err(|e| format!("{}: not a readable .nii.gz: {e}", path.display()))?;
        out
    } else {
        raw
    };
    parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn parse(b: &[u8]) -> Result<Mask, String> {
    if b.len() < 352 {
        return Err("not a NIfTI-1 file (shorter than its header)".into());
    }
    let little = i32::from_le_bytes([b[0], b[1], b[2], b[3]]) == 348;
    if !little && i32::from_be_bytes([b[0], b[1], b[2], b[3]]) != 348 {
        return Err("not a NIfTI-1 file (sizeof_hdr is not 348)".into());
    }
    if &b[344..347] != b"n+1" && &b[344..347] != b"ni1" {
        return Err("not a NIfTI-1 file (no n+1 magic)".into());
    }
    let i16_at = |at: usize| {
        let v = [b[at], b[at + 1]];
        if little {
            i16::from_le_bytes(v)
        } else {
            i16::from_be_bytes(v)
        }
    };
    let f32_at = |at: usize| {
        let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        f64::from(if little {
            f32::from_le_bytes(v)
        } else {
            f32::from_be_bytes(v)
        })
    };
    let ndim = i16_at(40);
    if !(3..=7).contains(&ndim) {
        return Err(format!("{ndim} dimensions; a label map has 3"));
    }
    let dims: Vec<usize> = (1..=ndim as usize)
        .map(|k| usize::try_from(i16_at(40 + 2 * k)).unwrap_or(0))
        .collect();
    if dims[3..].iter().any(|&d| d > 1) || dims[..3].contains(&0) {
        return Err(format!("dimensions {dims:?}; a label map is one 3D volume"));
    }
    let dims = [dims[0], dims[1], dims[2]];
    let voxels = dims[0] * dims[1] * dims[2];
    if voxels > MAX_VOXELS {
        return Err(format!("{voxels} voxels is larger than any CT series"));
    }
    let (datatype, offset) = (i16_at(70), f32_at(108).max(352.0) as usize);
    let size = match datatype {
        2 | 256 => 1,      // uint8, int8
        4 | 512 => 2,      // int16, uint16
        8 | 768 | 16 => 4, // int32, uint32, float32
        64 => 8,           // float64
        other => return Err(format!("unsupported NIfTI datatype {other}")),
    };
    let data = b
        .get(offset..offset + voxels * size)
        .ok_or("the voxel data is shorter than the header's dimensions")?;
    let labels = data
        .chunks_exact(size)
        .map(|c| {
            let value = match (datatype, size) {
                (16, _) => f64::from(f32::from_bits(word(c, little) as u32)),
                (64, _) => f64::from_bits(word(c, little)),
                (256, _) => f64::from(c[0] as i8),
                (4, _) => f64::from(word(c, little) as u16 as i16),
                (8, _) => f64::from(word(c, little) as u32 as i32),
                _ => word(c, little) as f64,
            };
            value.round().clamp(0.0, 255.0) as u8
        })
        .collect();
    let affine = if i16_at(254) > 0 {
        let row = |at: usize| [f32_at(at), f32_at(at + 4), f32_at(at + 8), f32_at(at + 12)];
        [row(280), row(296), row(312)]
    } else if i16_at(252) > 0 {
        qform(&f32_at, [f32_at(80), f32_at(84), f32_at(88)], f32_at(76))
    } else {
        return Err(
            "no orientation (neither sform nor qform is set), so the mask cannot be \
                    laid on the series"
                .into(),
        );
    };
    Ok(Mask {
        dims,
        labels,
        affine,
    })
}

fn word(c: &[u8], little: bool) -> u64 {
    let mut v = 0u64;
    for (i, &byte) in c.iter().enumerate() {
        let shift = if little { 8 * i } else { 8 * (c.len() - 1 - i) };
        v |= u64::from(byte) << shift;
    }
    v
}

/// The qform (quaternion) affine of NIfTI-1 "method 2".
fn qform(f32_at: &dyn Fn(usize) -> f64, pixdim: [f64; 3], qfac: f64) -> [[f64; 4]; 3] {
    let (b, c, d) = (f32_at(256), f32_at(260), f32_at(264));
    let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
    let r = [
        [
            a * a + b * b - c * c - d * d,
            2.0 * (b * c - a * d),
            2.0 * (b * d + a * c),
        ],
        [
            2.0 * (b * c + a * d),
            a * a + c * c - b * b - d * d,
            2.0 * (c * d - a * b),
        ],
        [
            2.0 * (b * d - a * c),
            2.0 * (c * d + a * b),
            a * a + d * d - b * b - c * c,
        ],
    ];
    let q = if qfac < 0.0 { -1.0 } else { 1.0 };
    let scale = [pixdim[0], pixdim[1], q * pixdim[2]];
    let offset = [f32_at(268), f32_at(272), f32_at(276)];
    let mut m = [[0.0; 4]; 3];
    for row in 0..3 {
        for col in 0..3 {
            m[row][col] = r[row][col] * scale[col];
        }
        m[row][3] = offset[row];
    }
    m
}

/// The mask's label at each voxel of `volume` (slice, row, column order), by the
/// patient position of each voxel. Refuses a mask that is not on the series grid.
pub fn lay_on(mask: &Mask, volume: &Volume) -> Result<Vec<u8>, String> {
    if mask.dims != [volume.columns, volume.rows, volume.slices] {
        return Err(format!(
            "the mask is {} × {} × {} voxels, the series {} × {} × {} (columns × rows × slices)",
            mask.dims[0], mask.dims[1], mask.dims[2], volume.columns, volume.rows, volume.slices
        ));
    }
    let inverse = invert(&mask.affine).ok_or("the mask's affine is singular")?;
    let Spacing { row_mm, col_mm, .. } = volume.spacing_mm;
    let z0 = volume.slice_positions_mm[0];
    let mut out = vec![0u8; volume.rows * volume.columns * volume.slices];
    let mut outside = 0usize;
    for z in 0..volume.slices {
        let along = volume.slice_positions_mm[z] - z0;
        for r in 0..volume.rows {
            for c in 0..volume.columns {
                // DICOM patient position (LPS) of the voxel, then RAS.
                let p: [f64; 3] = std::array::from_fn(|k| {
                    volume.origin[k]
                        + c as f64 * col_mm * volume.row_direction[k]
                        + r as f64 * row_mm * volume.column_direction[k]
                        + along * volume.normal[k]
                });
                let ras = [-p[0], -p[1], p[2]];
                let mut index = [0usize; 3];
                let mut inside = true;
                for row in 0..3 {
                    let v = (0..3).map(|col| inverse[row][col] * ras[col]).sum::<f64>()
                        + inverse[row][3];
                    let i = v.round();
                    inside &= i >= 0.0 && (i as usize) < mask.dims[row];
                    index[row] = i.max(0.0) as usize;
                }
                if inside {
                    out[(z * volume.rows + r) * volume.columns + c] =
                        mask.labels[(index[2] * mask.dims[1] + index[1]) * mask.dims[0] + index[0]];
                } else {
                    outside += 1;
                }
            }
        }
    }
    // On the series grid, every voxel centre maps inside; a few at the edge may round out.
    if outside > out.len() / 100 {
        return Err(format!(
            "{outside} of {} series voxels fall outside the mask: its affine does not place it \
             on this series",
            out.len()
        ));
    }
    Ok(out)
}

/// Inverse of a 3×4 affine (rotation-scale plus translation).
fn invert(m: &[[f64; 4]; 3]) -> Option<[[f64; 4]; 3]> {
    let a = |r: usize, c: usize| m[r][c];
    let det = a(0, 0) * (a(1, 1) * a(2, 2) - a(1, 2) * a(2, 1))
        - a(0, 1) * (a(1, 0) * a(2, 2) - a(1, 2) * a(2, 0))
        + a(0, 2) * (a(1, 0) * a(2, 1) - a(1, 1) * a(2, 0));
    if det.abs() < 1e-12 || !det.is_finite() {
        return None;
    }
    let mut inv = [[0.0; 4]; 3];
    for r in 0..3 {
        for c in 0..3 {
            // Cofactor of (c, r) over the determinant.
            let (r1, r2) = ([1, 0, 0][c], [2, 2, 1][c]);
            let (c1, c2) = ([1, 0, 0][r], [2, 2, 1][r]);
            let minor = a(r1, c1) * a(r2, c2) - a(r1, c2) * a(r2, c1);
            let sign = if (r + c) % 2 == 0 { 1.0 } else { -1.0 };
            inv[r][c] = sign * minor / det;
        }
    }
    for row in &mut inv {
        row[3] = -(0..3).map(|c| row[c] * m[c][3]).sum::<f64>();
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::morphology::Dims;
    use crate::analysis::nifti::{self, Placement};

    fn volume() -> Volume {
        Volume {
            rows: 3,
            columns: 4,
            slices: 2,
            spacing_mm: Spacing {
                row_mm: 0.7,
                col_mm: 0.8,
                slice_mm: 2.0,
            },
            origin: [-100.0, -120.0, 30.0],
            row_direction: [1.0, 0.0, 0.0],
            column_direction: [0.0, 1.0, 0.0],
            normal: [0.0, 0.0, 1.0],
            hu: vec![0; 24],
            slice_positions_mm: vec![30.0, 32.0],
            instance_numbers: vec![Some(1), Some(2)],
            files: vec![],
            spacing: None,
        }
    }

    #[test]
    fn lungwatchs_own_labels_lay_back_voxel_for_voxel() {
        let v = volume();
        let lung: Vec<u8> = (0..24).map(|i| (i % 3) as u8).collect();
        let lesion = vec![0u8; 24];
        let place = Placement {
            origin: v.origin,
            column_axis: v.row_direction,
            row_axis: v.column_direction,
            slice_axis: v.normal,
            steps_mm: [v.spacing_mm.col_mm, v.spacing_mm.row_mm, 2.0],
        };
        let dims = Dims {
            slices: 2,
            rows: 3,
            columns: 4,
        };
        let gz = nifti::encode_labels(&lung, &lesion, dims, &place).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.nii.gz");
        std::fs::write(&path, gz).unwrap();
        let mask = read(&path).unwrap();
        assert_eq!(mask.dims, [4, 3, 2]);
        assert_eq!(lay_on(&mask, &v).unwrap(), lung);
    }

    #[test]
    fn a_flipped_mask_is_unflipped_by_its_affine() {
        let v = volume();
        // The same labels stored with columns reversed and an affine that says so.
        let truth: Vec<u8> = (0..24).map(|i| (i % 5) as u8).collect();
        let mut flipped = truth.clone();
        for row in flipped.chunks_exact_mut(4) {
            row.reverse();
        }
        let step = [0.8, 0.7, 2.0];
        let mask = Mask {
            dims: [4, 3, 2],
            labels: flipped,
            // i runs to the patient's right: RAS x grows with i; origin at the last column.
            affine: [
                [step[0], 0.0, 0.0, -(v.origin[0] + 3.0 * step[0])],
                [0.0, -step[1], 0.0, -v.origin[1]],
                [0.0, 0.0, step[2], v.origin[2]],
            ],
        };
        assert_eq!(lay_on(&mask, &v).unwrap(), truth);
    }

    #[test]
    fn wrong_size_and_garbage_are_refused() {
        let v = volume();
        let mask = Mask {
            dims: [4, 3, 3],
            labels: vec![0; 36],
            affine: [
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0],
            ],
        };
        assert!(
            lay_on(&mask, &v)
                .unwrap_err()
                .contains("the mask is 4 × 3 × 3 voxels")
        );
        for len in [0, 10, 351, 400] {
            assert!(parse(&vec![0u8; len]).is_err());
        }
    }
}
