//! Clean-up of the lung labels, as the manifest's `postprocessing` specifies: remove gas
//! pockets under the diaphragm, then keep the largest 3D component of each lung.

use super::manifest::GasPocketRules;
use super::morphology::{Components, Dims, Run, components};

pub const RIGHT_LUNG: u8 = 1;
pub const LEFT_LUNG: u8 = 2;
pub const GROUND_GLASS: u8 = 1;
pub const CONSOLIDATION: u8 = 2;

/// Marks pocket voxels while the dense components next to them are found.
const POCKET_MARK: u8 = 0x80;

fn paint(labels: &mut [u8], dims: Dims, run: &Run, value: u8) {
    let start = run.start(dims);
    labels[start..start + run.len() as usize].fill(value);
}

/// Bowel and stomach gas that the lung model takes for lung: aerated components much
/// smaller than the lungs, with every dense lung-labelled component touching them (their
/// content). The thresholds are the manifest's (`models.lung_seg.postprocessing`): voxels
/// below `aerated_below_hu` are aerated; an aerated component under `max_share` of the
/// largest and of at least `min_ml` is a pocket. Returns the voxels removed.
pub fn remove_gas_pockets(
    labels: &mut [u8],
    hu: &[i16],
    dims: Dims,
    voxel_ml: f64,
    rules: GasPocketRules,
) -> u64 {
    let aerated_below_hu = rules.aerated_below_hu;
    let aerated = components(dims, |i| labels[i] != 0 && hu[i] < aerated_below_hu);
    let Some(largest) = aerated.largest() else {
        return 0;
    };
    if aerated.sizes.len() < 2 {
        return 0;
    }
    let largest_size = aerated.sizes[largest as usize] as f64;
    let is_pocket = |size: u64| {
        (size as f64) < rules.max_share * largest_size && size as f64 * voxel_ml >= rules.min_ml
    };
    let mut removed = 0;
    for (run, id) in aerated.labelled_runs() {
        if is_pocket(aerated.sizes[id as usize]) {
            paint(labels, dims, run, POCKET_MARK);
            removed += run.len();
        }
    }
    if removed == 0 {
        return 0;
    }
    let dense = components(dims, |i| {
        labels[i] != 0 && labels[i] != POCKET_MARK && hu[i] >= aerated_below_hu
    });
    let touching = touching_components(&dense, dims, |i| labels[i] == POCKET_MARK);
    for (run, id) in dense.labelled_runs() {
        if touching[id as usize] {
            paint(labels, dims, run, 0);
            removed += run.len();
        }
    }
    for l in labels.iter_mut() {
        if *l == POCKET_MARK {
            *l = 0;
        }
    }
    removed
}

/// For each component, whether one of its voxels has a 6-neighbour where `marked` holds.
fn touching_components(
    comps: &Components,
    dims: Dims,
    marked: impl Fn(usize) -> bool,
) -> Vec<bool> {
    let mut touching = vec![false; comps.sizes.len()];
    for (run, id) in comps.labelled_runs() {
        if touching[id as usize] {
            continue;
        }
        let (z, r) = (run.slice as usize, run.row as usize);
        let (c0, c1) = (run.c0 as usize, run.c1 as usize);
        let row_start = |z: usize, r: usize| (z * dims.rows + r) * dims.columns;
        let mut hit = (c0 > 0 && marked(row_start(z, r) + c0 - 1))
            || (c1 < dims.columns && marked(row_start(z, r) + c1));
        let mut neighbours = Vec::with_capacity(4);
        if r > 0 {
            neighbours.push(row_start(z, r - 1))
        }
        if r + 1 < dims.rows {
            neighbours.push(row_start(z, r + 1))
        }
        if z > 0 {
            neighbours.push(row_start(z - 1, r))
        }
        if z + 1 < dims.slices {
            neighbours.push(row_start(z + 1, r))
        }
        hit = hit || neighbours.iter().any(|&s| (c0..c1).any(|c| marked(s + c)));
        touching[id as usize] = hit;
    }
    touching
}

/// What the minimum-component rule took out of the lesion mask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Suppressed {
    pub voxels: u64,
    pub components: u64,
}

/// The false-positive rule `min_component_ml` of the manifest: every 3D 6-connected
/// component of lesion voxels (ground-glass and consolidation together) smaller than
/// `min_ml` is set to background. Returns what was removed, for the report.
pub fn suppress_small_lesions(
    lesion: &mut [u8],
    dims: Dims,
    voxel_ml: f64,
    min_ml: f64,
) -> Suppressed {
    let mut out = Suppressed::default();
    if min_ml <= 0.0 {
        return out;
    }
    let comps = components(dims, |i| lesion[i] != 0);
    let small: Vec<bool> = comps
        .sizes
        .iter()
        .map(|&s| (s as f64) * voxel_ml < min_ml)
        .collect();
    out.components = small.iter().filter(|&&s| s).count() as u64;
    for (run, id) in comps.labelled_runs() {
        if small[id as usize] {
            paint(lesion, dims, run, 0);
            out.voxels += run.len();
        }
    }
    out
}

/// Keeps only the largest 6-connected component of each lung label.
pub fn keep_largest_per_lung(labels: &mut [u8], dims: Dims) {
    for side in [RIGHT_LUNG, LEFT_LUNG] {
        let comps = components(dims, |i| labels[i] == side);
        let Some(largest) = comps.largest() else {
            continue;
        };
        for (run, id) in comps.labelled_runs() {
            if id != largest {
                paint(labels, dims, run, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pocket_and_its_content_go_lungs_stay() {
        // One 10×10×10 lung of air, a separate 2×2×2 gas pocket with fluid beside it.
        let dims = Dims {
            slices: 12,
            rows: 12,
            columns: 20,
        };
        let mut labels = vec![0u8; dims.voxels()];
        let mut hu = vec![0i16; dims.voxels()];
        let idx = |z: usize, r: usize, c: usize| (z * dims.rows + r) * dims.columns + c;
        for z in 0..10 {
            for r in 0..10 {
                for c in 0..10 {
                    labels[idx(z, r, c)] = LEFT_LUNG;
                    hu[idx(z, r, c)] = -850;
                }
            }
        }
        for z in 0..2 {
            for r in 0..2 {
                for c in 14..16 {
                    labels[idx(z, r, c)] = LEFT_LUNG;
                    hu[idx(z, r, c)] = -950;
                }
            }
        }
        for z in 0..2 {
            for r in 0..2 {
                for c in 16..18 {
                    labels[idx(z, r, c)] = LEFT_LUNG;
                    hu[idx(z, r, c)] = 20;
                }
            }
        }
        // The shipped manifest's rule, which this geometry is laid out around.
        let rules = GasPocketRules {
            aerated_below_hu: -500,
            max_share: 0.1,
            min_ml: 2.0,
        };
        // Voxels of 1 mL: the pocket (8 mL) is removed.
        let removed = remove_gas_pockets(&mut labels, &hu, dims, 1.0, rules);
        assert_eq!(removed, 16);
        assert_eq!(labels.iter().filter(|&&l| l == LEFT_LUNG).count(), 1000);
        // With tiny voxels the pocket is under 2 mL and stays.
        let before = labels.clone();
        assert_eq!(remove_gas_pockets(&mut labels, &hu, dims, 0.0001, rules), 0);
        assert_eq!(labels, before);
    }

    #[test]
    fn lesion_components_under_the_minimum_volume_go() {
        // A 2-voxel speck (ground-glass + consolidation touching), a 1-voxel speck and a
        // 6-voxel lesion, in voxels of 0.1 mL: with a 0.25 mL minimum only the lesion stays.
        let dims = Dims {
            slices: 2,
            rows: 1,
            columns: 10,
        };
        let mut lesion = vec![
            1, 2, 0, 1, 0, 0, 1, 1, 1, 0, //
            0, 0, 0, 0, 0, 0, 2, 2, 2, 0,
        ];
        let removed = suppress_small_lesions(&mut lesion, dims, 0.1, 0.25);
        assert_eq!(
            removed,
            Suppressed {
                voxels: 3,
                components: 2
            }
        );
        assert_eq!(lesion.iter().filter(|&&v| v != 0).count(), 6);
        assert_eq!(&lesion[0..4], &[0, 0, 0, 0]);
        // 0 turns the rule off.
        let mut again = vec![1u8; 20];
        assert_eq!(
            suppress_small_lesions(&mut again, dims, 0.001, 0.0),
            Suppressed::default()
        );
    }

    #[test]
    fn only_the_largest_component_of_each_lung_stays() {
        let dims = Dims {
            slices: 1,
            rows: 1,
            columns: 9,
        };
        let mut labels = vec![1, 1, 1, 0, 1, 0, 2, 0, 2];
        keep_largest_per_lung(&mut labels, dims);
        assert_eq!(labels, vec![1, 1, 1, 0, 0, 0, 2, 0, 0]);
    }
}
