//! Measurements of the lung and lesion masks, and the classifier's features. The feature
//! definitions are the manifest's (`models.classifier.feature_definitions`), identical to
//! `models/train/pipeline.py::features`.

use rayon::prelude::*;

use super::morphology::{Dims, components, distance_to_outside};
use super::postprocess::{CONSOLIDATION, GROUND_GLASS, LEFT_LUNG, RIGHT_LUNG};
use crate::dicom::volume::Spacing;
use crate::report::zone_score;

/// Lesion within this in-plane distance of a non-lung pixel counts as peripheral.
pub const PERIPHERAL_MM: f64 = 20.0;
/// A zone (a third of one lung) is involved when at least this share of it is lesion.
pub const ZONE_INVOLVED_RATIO: f64 = 0.01;
/// Each lung must hold at least this share of lesion for the pattern to be bilateral.
pub const BILATERAL_MIN_RATIO: f64 = 0.01;

/// Every classifier feature this lungwatch computes (`Quantities::feature`), by its
/// manifest name. The manifest's `models.classifier.features` must be drawn from these.
pub const FEATURES: [&str; 12] = [
    "affected_ratio",
    "log_affected_pct",
    "bilateral_balance",
    "peripheral_share",
    "ggo_share",
    "lower_zone_share",
    "zones_involved",
    "largest_component_share",
    "lesion_components_log",
    "bilateral_components_log",
    "largest_component_consolidation_share",
    "lung_base_ratio",
];

/// One lung, by the patient's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Right,
    Left,
}

impl Side {
    pub const BOTH: [Side; 2] = [Side::Right, Side::Left];

    /// This lung's label in the lung mask.
    pub fn lung_label(self) -> u8 {
        match self {
            Side::Right => RIGHT_LUNG,
            Side::Left => LEFT_LUNG,
        }
    }

    pub fn of_lung_label(label: u8) -> Option<Side> {
        match label {
            RIGHT_LUNG => Some(Side::Right),
            LEFT_LUNG => Some(Side::Left),
            _ => None,
        }
    }
}

/// One value per lung, indexed by `Side`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PerSide<T> {
    pub right: T,
    pub left: T,
}

impl<T> std::ops::Index<Side> for PerSide<T> {
    type Output = T;
    fn index(&self, side: Side) -> &T {
        match side {
            Side::Right => &self.right,
            Side::Left => &self.left,
        }
    }
}

impl<T> std::ops::IndexMut<Side> for PerSide<T> {
    fn index_mut(&mut self, side: Side) -> &mut T {
        match side {
            Side::Right => &mut self.right,
            Side::Left => &mut self.left,
        }
    }
}

impl PerSide<u64> {
    pub fn total(&self) -> u64 {
        self.right + self.left
    }
}

/// Voxel counts of one slice.
#[derive(Debug, Clone, Copy, Default)]
pub struct SliceCounts {
    pub lung: PerSide<u64>,
    pub lesion: PerSide<u64>,
    pub ground_glass: u64,
    pub consolidation: u64,
}

impl SliceCounts {
    pub fn lung_total(&self) -> u64 {
        self.lung.total()
    }
    pub fn lesion_total(&self) -> u64 {
        self.lesion.total()
    }
}

/// Everything measured on one series.
#[derive(Debug, Clone)]
pub struct Quantities {
    pub voxel_ml: f64,
    pub pixel_mm2: f64,
    pub per_slice: Vec<SliceCounts>,
    pub lung: PerSide<u64>,
    /// Lesion voxels in each lung.
    pub lesion: PerSide<u64>,
    pub ground_glass: u64,
    pub consolidation: u64,
    /// Lesion / lung voxels in each zone: per lung, [lower, middle, upper] third.
    pub zone_ratio: PerSide<[f64; 3]>,
    /// Lesion voxels in the lower third of their own lung.
    pub lower_zone_lesion: u64,
    pub peripheral_lesion: u64,
    pub largest_lesion_component: u64,
    /// Consolidation voxels in the largest lesion component.
    pub largest_component_consolidation: u64,
    /// 3D 6-connected components of lesion voxels within each lung.
    pub components: PerSide<u64>,
    /// Lung voxels of the lower thirds of both lungs.
    pub lower_zone_lung: u64,
}

/// `lung` holds 0 / RIGHT_LUNG / LEFT_LUNG and `lesion` 0 / GROUND_GLASS / CONSOLIDATION
/// per voxel (lesion only inside the lung).
pub fn measure(lung: &[u8], lesion: &[u8], dims: Dims, spacing: Spacing) -> Quantities {
    let plane = dims.plane();
    let Spacing {
        row_mm,
        col_mm,
        slice_mm,
    } = spacing;
    let per_slice: Vec<(SliceCounts, u64)> = (0..dims.slices)
        .into_par_iter()
        .map(|z| {
            let lung = &lung[z * plane..(z + 1) * plane];
            let lesion = &lesion[z * plane..(z + 1) * plane];
            let mut counts = SliceCounts::default();
            for (&l, &s) in lung.iter().zip(lesion) {
                if let Some(side) = Side::of_lung_label(l) {
                    counts.lung[side] += 1;
                    if s != 0 {
                        counts.lesion[side] += 1;
                        counts.ground_glass += (s == GROUND_GLASS) as u64;
                        counts.consolidation += (s == CONSOLIDATION) as u64;
                    }
                }
            }
            let mut peripheral = 0;
            if counts.lesion_total() > 0 {
                peripheral =
                    peripheral_pixels(lung, lesion, dims.rows, dims.columns, row_mm, col_mm);
            }
            (counts, peripheral)
        })
        .collect();
    let mut q = Quantities {
        voxel_ml: row_mm * col_mm * slice_mm / 1000.0,
        pixel_mm2: row_mm * col_mm,
        per_slice: per_slice.iter().map(|(c, _)| *c).collect(),
        lung: PerSide::default(),
        lesion: PerSide::default(),
        ground_glass: 0,
        consolidation: 0,
        zone_ratio: PerSide::default(),
        lower_zone_lesion: 0,
        peripheral_lesion: per_slice.iter().map(|(_, p)| p).sum(),
        largest_lesion_component: 0,
        largest_component_consolidation: 0,
        components: PerSide::default(),
        lower_zone_lung: 0,
    };
    for c in &q.per_slice {
        for side in Side::BOTH {
            q.lung[side] += c.lung[side];
            q.lesion[side] += c.lesion[side];
        }
        q.ground_glass += c.ground_glass;
        q.consolidation += c.consolidation;
    }
    for side in Side::BOTH {
        let with_lung: Vec<usize> = (0..dims.slices)
            .filter(|&z| q.per_slice[z].lung[side] > 0)
            .collect();
        let (Some(&first), Some(&last)) = (with_lung.first(), with_lung.last()) else {
            continue;
        };
        let (z0, z1) = (first as f64, (last + 1) as f64);
        let edge = |i: usize| ((z0 + (z1 - z0) * i as f64 / 3.0) - 1e-9).ceil() as usize;
        for third in 0..3 {
            let (mut lung_voxels, mut lesion_voxels) = (0, 0);
            for c in &q.per_slice[edge(third)..edge(third + 1)] {
                lung_voxels += c.lung[side];
                lesion_voxels += c.lesion[side];
            }
            if third == 0 {
                q.lower_zone_lesion += lesion_voxels;
                q.lower_zone_lung += lung_voxels;
            }
            q.zone_ratio[side][third] = if lung_voxels > 0 {
                lesion_voxels as f64 / lung_voxels as f64
            } else {
                0.0
            };
        }
    }
    if q.lesion_total() > 0 {
        let comps = components(dims, |i| lesion[i] != 0);
        if let Some(largest) = comps.largest() {
            q.largest_lesion_component = comps.sizes[largest as usize];
            for (run, id) in comps.labelled_runs() {
                if id == largest {
                    let start = run.start(dims);
                    q.largest_component_consolidation += lesion[start..start + run.len() as usize]
                        .iter()
                        .filter(|&&v| v == CONSOLIDATION)
                        .count() as u64;
                }
            }
        }
        for side in Side::BOTH {
            let label = side.lung_label();
            if q.lesion[side] > 0 {
                q.components[side] = components(dims, |i| lesion[i] != 0 && lung[i] == label)
                    .sizes
                    .len() as u64;
            }
        }
    }
    q
}

/// Lesion pixels of one slice within `PERIPHERAL_MM` of a non-lung pixel. The distance
/// transform runs on the lung's bounding box grown by one pixel: that ring is all
/// non-lung, so it holds every lung pixel's nearest non-lung pixel and the crop is exact.
fn peripheral_pixels(
    lung: &[u8],
    lesion: &[u8],
    rows: usize,
    columns: usize,
    row_mm: f64,
    col_mm: f64,
) -> u64 {
    let (Some((lung_rows, lung_cols)), Some((lesion_rows, lesion_cols))) = (
        super::bounding_box(lung, columns),
        super::bounding_box(lesion, columns),
    ) else {
        return 0;
    };
    // The lung box grown by one pixel (a virtual non-lung ring where it meets the image
    // border), cut down to the lesion box plus PERIPHERAL_MM: any non-lung pixel within
    // PERIPHERAL_MM of a lesion lies in that window, so the verdict is the same as on the
    // whole box, for a fraction of the transform.
    let reach = |mm: f64| (PERIPHERAL_MM / mm).ceil() as i64 + 1;
    let r0 = (lung_rows.start as i64 - 1).max(lesion_rows.start as i64 - reach(row_mm));
    let r1 = (lung_rows.end as i64).min(lesion_rows.end as i64 - 1 + reach(row_mm));
    let c0 = (lung_cols.start as i64 - 1).max(lesion_cols.start as i64 - reach(col_mm));
    let c1 = (lung_cols.end as i64).min(lesion_cols.end as i64 - 1 + reach(col_mm));
    let (h, w) = ((r1 - r0 + 1) as usize, (c1 - c0 + 1) as usize);
    let index = |r: usize, c: usize| -> Option<usize> {
        let (rr, cc) = (r0 + r as i64, c0 + c as i64);
        (rr >= 0 && cc >= 0 && (rr as usize) < rows && (cc as usize) < columns)
            .then(|| rr as usize * columns + cc as usize)
    };
    let mut inside = vec![false; h * w];
    for r in 0..h {
        for c in 0..w {
            inside[r * w + c] = index(r, c).is_some_and(|i| lung[i] != 0);
        }
    }
    let distance = distance_to_outside(&inside, h, w, row_mm, col_mm);
    let mut count = 0;
    for r in 0..h {
        for c in 0..w {
            if let Some(i) = index(r, c)
                && lesion[i] != 0
                && lung[i] != 0
                && distance[r * w + c] <= PERIPHERAL_MM
            {
                count += 1;
            }
        }
    }
    count
}

impl Quantities {
    pub fn lung_total(&self) -> u64 {
        self.lung.total()
    }
    pub fn lesion_total(&self) -> u64 {
        self.lesion.total()
    }
    pub fn affected_ratio(&self) -> f64 {
        ratio(self.lesion_total(), self.lung_total())
    }
    /// Affected ratio of one lung.
    pub fn side_ratio(&self, side: Side) -> f64 {
        ratio(self.lesion[side], self.lung[side])
    }
    /// Share of lesion voxels of one class (0 without lesion).
    pub fn lesion_share(&self, voxels: u64) -> f64 {
        ratio(voxels, self.lesion_total())
    }
    pub fn bilateral(&self) -> bool {
        Side::BOTH
            .iter()
            .all(|&side| self.side_ratio(side) >= BILATERAL_MIN_RATIO)
    }
    /// Sum of the six zone scores; zones under `zone_min_ratio` score 0.
    pub fn severity_score(&self, zone_min_ratio: f64) -> u8 {
        self.zone_ratios()
            .map(|r| zone_score(r, zone_min_ratio))
            .sum()
    }

    /// Zones that hold lesion but less than `zone_min_ratio` (they score 0).
    pub fn zones_below(&self, zone_min_ratio: f64) -> u8 {
        self.zone_ratios()
            .filter(|&r| r > 0.0 && r < zone_min_ratio)
            .count() as u8
    }

    /// The six zones' lesion ratios, right lung first.
    fn zone_ratios(&self) -> impl Iterator<Item = f64> + '_ {
        Side::BOTH
            .into_iter()
            .flat_map(|side| self.zone_ratio[side])
    }

    /// A classifier feature by its manifest name; None for a name this version lacks.
    pub fn feature(&self, name: &str) -> Option<f64> {
        let (right, left) = (self.side_ratio(Side::Right), self.side_ratio(Side::Left));
        Some(match name {
            "affected_ratio" => self.affected_ratio(),
            "log_affected_pct" => (100.0 * self.affected_ratio() + 0.1).log10(),
            "bilateral_balance" => {
                let max = right.max(left);
                if max > 0.0 {
                    right.min(left) / max
                } else {
                    0.0
                }
            }
            "peripheral_share" => self.lesion_share(self.peripheral_lesion),
            "ggo_share" => self.lesion_share(self.ground_glass),
            "lower_zone_share" => self.lesion_share(self.lower_zone_lesion),
            "zones_involved" => {
                let involved = self
                    .zone_ratios()
                    .filter(|&r| r >= ZONE_INVOLVED_RATIO)
                    .count();
                involved as f64 / 6.0
            }
            "largest_component_share" => self.lesion_share(self.largest_lesion_component),
            "lesion_components_log" => ((1 + self.components.total()) as f64).log10(),
            "bilateral_components_log" => {
                ((1 + self.components.right.min(self.components.left)) as f64).log10()
            }
            "largest_component_consolidation_share" => ratio(
                self.largest_component_consolidation,
                self.largest_lesion_component,
            ),
            "lung_base_ratio" => ratio(self.lower_zone_lesion, self.lower_zone_lung),
            _ => return None,
        })
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each lesion pixel's distance to the nearest non-lung pixel of the slice's lung box
    /// grown by one (positions beyond the image count as non-lung), by brute force.
    fn peripheral_brute_force(
        lung: &[u8],
        lesion: &[u8],
        rows: usize,
        columns: usize,
        row_mm: f64,
        col_mm: f64,
    ) -> u64 {
        let Some((rr, cc)) = super::super::bounding_box(lung, columns) else {
            return 0;
        };
        let lung_at = |r: i64, c: i64| {
            r >= 0
                && c >= 0
                && (r as usize) < rows
                && (c as usize) < columns
                && lung[r as usize * columns + c as usize] != 0
        };
        let mut count = 0;
        for p in 0..rows * columns {
            if lesion[p] == 0 || lung[p] == 0 {
                continue;
            }
            let (pr, pc) = ((p / columns) as f64, (p % columns) as f64);
            let mut nearest = f64::INFINITY;
            for r in rr.start as i64 - 1..=rr.end as i64 {
                for c in cc.start as i64 - 1..=cc.end as i64 {
                    if !lung_at(r, c) {
                        let d = (((r as f64 - pr) * row_mm).powi(2)
                            + ((c as f64 - pc) * col_mm).powi(2))
                        .sqrt();
                        nearest = nearest.min(d);
                    }
                }
            }
            count += (nearest <= PERIPHERAL_MM) as u64;
        }
        count
    }

    proptest::proptest! {
        #[test]
        fn peripheral_pixels_equal_brute_force(
            rows in 1usize..48,
            columns in 1usize..48,
            row_mm in 0.4f64..4.0,
            col_mm in 0.4f64..4.0,
            seed in proptest::collection::vec(0u8..64, 48 * 48),
            focus in (0.0f64..1.0, 0.0f64..1.0, 0.0f64..0.5),
            ellipse in (0.2f64..0.8, 0.2f64..0.8, 0.1f64..0.7, 0.1f64..0.7),
        ) {
            // Lung: an ellipse with rare holes, so distances to its edge get large; lesion
            // on part of it, inside a focal square, so that the transform window is often
            // smaller than the lung box.
            let n = rows * columns;
            let (er, ec, ar, ac) = ellipse;
            let lung: Vec<u8> = (0..n)
                .map(|p| {
                    let (r, c) = ((p / columns) as f64 / rows as f64, (p % columns) as f64 / columns as f64);
                    (((r - er) / ar).powi(2) + ((c - ec) / ac).powi(2) <= 1.0 && seed[p] != 0) as u8
                })
                .collect();
            let (fr, fc, half) = focus;
            let near = |p: usize| {
                let (r, c) = ((p / columns) as f64 / rows as f64, (p % columns) as f64 / columns as f64);
                (r - fr).abs() <= half && (c - fc).abs() <= half
            };
            let lesion: Vec<u8> = (0..n)
                .map(|p| (lung[p] != 0 && seed[p] >= 16 && near(p)) as u8)
                .collect();
            proptest::prop_assert_eq!(
                peripheral_pixels(&lung, &lesion, rows, columns, row_mm, col_mm),
                peripheral_brute_force(&lung, &lesion, rows, columns, row_mm, col_mm)
            );
        }
    }

    #[test]
    fn zone_scores_follow_the_quartiles() {
        assert_eq!(
            [0.0, 0.01, 0.25, 0.5, 0.75, 1.0].map(|r| zone_score(r, 0.0)),
            [0, 1, 2, 3, 4, 4]
        );
        // Under the manifest's minimum a zone scores 0.
        assert_eq!(
            [0.005, 0.0099, 0.01, 0.3].map(|r| zone_score(r, 0.01)),
            [0, 0, 1, 2]
        );
    }

    #[test]
    fn counts_zones_and_features_on_a_block_phantom() {
        // Two lungs of 6 slices; lesion fills the lowest two slices of the right lung.
        let dims = Dims {
            slices: 6,
            rows: 4,
            columns: 8,
        };
        let mut lung = vec![0u8; dims.voxels()];
        let mut lesion = vec![0u8; dims.voxels()];
        for z in 0..6 {
            for r in 1..3 {
                for c in 1..3 {
                    lung[(z * 4 + r) * 8 + c] = RIGHT_LUNG;
                    if z < 2 {
                        lesion[(z * 4 + r) * 8 + c] = GROUND_GLASS;
                    }
                }
                for c in 5..7 {
                    lung[(z * 4 + r) * 8 + c] = LEFT_LUNG;
                }
            }
        }
        let unit = Spacing {
            row_mm: 1.0,
            col_mm: 1.0,
            slice_mm: 1.0,
        };
        let q = measure(&lung, &lesion, dims, unit);
        assert_eq!([q.lung.right, q.lung.left], [24, 24]);
        assert_eq!([q.lesion.right, q.lesion.left], [8, 0]);
        assert_eq!(q.zone_ratio[Side::Right], [1.0, 0.0, 0.0]);
        assert_eq!(q.severity_score(0.0), 4);
        assert_eq!(q.severity_score(0.01), 4);
        assert_eq!(q.zones_below(0.01), 0);
        assert_eq!([q.components.right, q.components.left], [1, 0]);
        assert_eq!(q.lower_zone_lung, 16);
        assert_eq!(q.feature("lesion_components_log"), Some(2f64.log10()));
        assert_eq!(q.feature("bilateral_components_log"), Some(0.0));
        assert_eq!(
            q.feature("largest_component_consolidation_share"),
            Some(0.0)
        );
        assert_eq!(q.feature("lung_base_ratio"), Some(0.5));
        assert!(!q.bilateral());
        assert_eq!(q.feature("lower_zone_share"), Some(1.0));
        assert_eq!(q.feature("ggo_share"), Some(1.0));
        assert_eq!(q.feature("largest_component_share"), Some(1.0));
        assert_eq!(q.feature("zones_involved"), Some(1.0 / 6.0));
        // Every lesion pixel is within 20 mm of the lung edge.
        assert_eq!(q.feature("peripheral_share"), Some(1.0));
        assert_eq!(q.feature("no_such_feature"), None);
        for name in FEATURES {
            assert!(q.feature(name).is_some_and(f64::is_finite), "{name}");
        }
    }
}
