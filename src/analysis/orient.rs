//! Puts a volume in the orientation the models were trained on: the usual radiological
//! display (patient right on the image left, anterior up) with slices from inferior to
//! superior. Axial series are almost always stored this way; the rare flipped export is
//! mirrored here instead of silently swapping left and right lungs.

use crate::dicom::volume::{Spacing, Volume};

/// What was changed to reach the canonical orientation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reorientation {
    pub mirrored_columns: bool,
    pub mirrored_rows: bool,
    pub reversed_slices: bool,
    /// The in-plane axes are swapped (rows run left-right): left/right cannot be trusted.
    pub transposed_in_plane: bool,
}

/// Reorients `volume` in place. Geometry fields (directions, origin) are updated so that
/// voxel (slice, row, column) keeps its patient position.
pub fn to_canonical(volume: &mut Volume) -> Reorientation {
    let (rows, columns, slices) = (volume.rows, volume.columns, volume.slices);
    let Spacing { row_mm, col_mm, .. } = volume.spacing_mm;
    let mut change = Reorientation {
        // Row direction is the patient direction of increasing column index: it should
        // point to the patient's left (+x in DICOM's LPS).
        transposed_in_plane: volume.row_direction[0].abs() < volume.row_direction[1].abs(),
        ..Default::default()
    };
    if change.transposed_in_plane {
        return change;
    }
    change.mirrored_columns = volume.row_direction[0] < 0.0;
    change.mirrored_rows = volume.column_direction[1] < 0.0;
    change.reversed_slices = volume.normal[2] < 0.0;
    let plane = rows * columns;
    if change.mirrored_columns || change.mirrored_rows {
        for z in 0..slices {
            let slice = &mut volume.hu[z * plane..(z + 1) * plane];
            if change.mirrored_columns {
                slice
                    .chunks_exact_mut(columns)
                    .for_each(|row| row.reverse());
            }
            if change.mirrored_rows {
                for r in 0..rows / 2 {
                    let (top, bottom) = slice.split_at_mut((rows - 1 - r) * columns);
                    top[r * columns..(r + 1) * columns].swap_with_slice(&mut bottom[..columns]);
                }
            }
        }
    }
    // The new first voxel is where the old voxel at the mirrored corner was.
    let along = |v: [f64; 3], k: f64| [v[0] * k, v[1] * k, v[2] * k];
    let add = |a: [f64; 3], b: [f64; 3]| [a[0] + b[0], a[1] + b[1], a[2] + b[2]];
    let mut origin = volume.origin;
    if change.mirrored_columns {
        origin = add(
            origin,
            along(volume.row_direction, (columns as f64 - 1.0) * col_mm),
        );
        volume.row_direction = along(volume.row_direction, -1.0);
    }
    if change.mirrored_rows {
        origin = add(
            origin,
            along(volume.column_direction, (rows as f64 - 1.0) * row_mm),
        );
        volume.column_direction = along(volume.column_direction, -1.0);
    }
    if change.reversed_slices && slices > 1 {
        let extent = volume.slice_positions_mm[slices - 1] - volume.slice_positions_mm[0];
        origin = add(origin, along(volume.normal, extent));
        let mut reversed = Vec::with_capacity(volume.hu.len());
        for z in (0..slices).rev() {
            reversed.extend_from_slice(&volume.hu[z * plane..(z + 1) * plane]);
        }
        volume.hu = reversed;
        volume.slice_positions_mm.reverse();
        volume.instance_numbers.reverse();
        volume.files.reverse();
        volume.normal = along(volume.normal, -1.0);
        for p in &mut volume.slice_positions_mm {
            *p = -*p;
        }
    }
    volume.origin = origin;
    change
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(row_dir: [f64; 3], col_dir: [f64; 3], normal: [f64; 3]) -> Volume {
        Volume {
            rows: 2,
            columns: 3,
            slices: 2,
            spacing_mm: Spacing {
                row_mm: 1.0,
                col_mm: 1.0,
                slice_mm: 2.0,
            },
            origin: [0.0, 0.0, 0.0],
            row_direction: row_dir,
            column_direction: col_dir,
            normal,
            hu: (0..12).collect(),
            slice_positions_mm: vec![0.0, 2.0],
            instance_numbers: vec![Some(1), Some(2)],
            files: vec!["a".into(), "b".into()],
            spacing: None,
        }
    }

    #[test]
    fn standard_axial_is_untouched() {
        let mut v = volume([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]);
        assert_eq!(to_canonical(&mut v), Reorientation::default());
        assert_eq!(v.hu, (0..12).collect::<Vec<i16>>());
    }

    #[test]
    fn flipped_export_is_mirrored_back_and_keeps_patient_positions() {
        // Columns run to the patient's right, rows to anterior, slices superior → inferior.
        let mut v = volume([-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]);
        // Patient position of each old voxel.
        let pos = |v: &Volume, z: usize, r: usize, c: usize| {
            let p = v.slice_positions_mm[z] - v.slice_positions_mm[0];
            [
                v.origin[0]
                    + v.row_direction[0] * c as f64
                    + v.column_direction[0] * r as f64
                    + v.normal[0] * p,
                v.origin[1]
                    + v.row_direction[1] * c as f64
                    + v.column_direction[1] * r as f64
                    + v.normal[1] * p,
                v.origin[2]
                    + v.row_direction[2] * c as f64
                    + v.column_direction[2] * r as f64
                    + v.normal[2] * p,
            ]
        };
        let before: Vec<([f64; 3], i16)> = (0..2)
            .flat_map(|z| (0..2).flat_map(move |r| (0..3).map(move |c| (z, r, c))))
            .map(|(z, r, c)| (pos(&v, z, r, c), v.hu[(z * 2 + r) * 3 + c]))
            .collect();
        let change = to_canonical(&mut v);
        assert!(change.mirrored_columns && change.mirrored_rows && change.reversed_slices);
        for z in 0..2 {
            for r in 0..2 {
                for c in 0..3 {
                    let p = pos(&v, z, r, c);
                    let value = v.hu[(z * 2 + r) * 3 + c];
                    let (_, old) = before
                        .iter()
                        .find(|(q, _)| (0..3).all(|i| (q[i] - p[i]).abs() < 1e-9))
                        .expect("every new voxel is an old voxel");
                    assert_eq!(*old, value, "voxel {z},{r},{c}");
                }
            }
        }
        // Now columns go to patient left, rows to posterior, slices upwards.
        assert!(v.row_direction[0] > 0.0 && v.column_direction[1] > 0.0);
        assert!(pos(&v, 1, 0, 0)[2] > pos(&v, 0, 0, 0)[2]);
        assert_eq!(v.instance_numbers, vec![Some(2), Some(1)]);
    }
}
