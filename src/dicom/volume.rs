//! A series of CT slices to one HU volume: geometry checks, ordering along the slice
//! normal, spacing analysis and parallel decoding.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::header::InstanceHeader;
use super::pixels::{self, DecodeError};
use super::read::{self, Extent, ParseError};

/// Positions closer than this along the normal are the same slice position.
const SAME_POSITION_MM: f64 = 0.01;
/// A step this many times the median step is a gap (missing slices).
const GAP_FACTOR: f64 = 1.5;
/// Steps that differ from the median by more than this fraction make spacing uneven.
const UNEVEN_TOLERANCE: f64 = 0.1;

/// One slice's geometry, taken from its header.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceGeometry {
    pub rows: u32,
    pub columns: u32,
    pub pixel_spacing: [f64; 2],
    pub orientation: [f64; 6],
    pub position: [f64; 3],
}

impl SliceGeometry {
    pub fn from_header(h: &InstanceHeader) -> Result<Self, GeometryError> {
        let missing = |what: &str| GeometryError::Missing(what.to_string());
        Ok(SliceGeometry {
            rows: h.rows.ok_or_else(|| missing("Rows"))?,
            columns: h.columns.ok_or_else(|| missing("Columns"))?,
            pixel_spacing: h.pixel_spacing.ok_or_else(|| missing("Pixel Spacing"))?,
            orientation: h
                .image_orientation
                .ok_or_else(|| missing("Image Orientation (Patient)"))?,
            position: h
                .image_position
                .ok_or_else(|| missing("Image Position (Patient)"))?,
        })
    }

    pub fn row_direction(&self) -> [f64; 3] {
        [
            self.orientation[0],
            self.orientation[1],
            self.orientation[2],
        ]
    }
    pub fn column_direction(&self) -> [f64; 3] {
        [
            self.orientation[3],
            self.orientation[4],
            self.orientation[5],
        ]
    }
    /// The unit slice normal, row × column.
    pub fn normal(&self) -> Option<[f64; 3]> {
        normalize(cross(self.row_direction(), self.column_direction()))
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GeometryError {
    #[error("missing {0}")]
    Missing(String),
    #[error("no slices")]
    Empty,
    #[error(
        "degenerate Image Orientation (Patient): row and column directions are parallel or zero"
    )]
    DegenerateOrientation,
    #[error("slices disagree on {0}")]
    Inconsistent(&'static str),
    #[error("{0} slices share a position with another slice")]
    DuplicatePositions(usize),
}

/// How the slice positions are spaced along the normal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpacingReport {
    /// The typical step between neighbouring slices, in mm.
    pub median_mm: f64,
    pub min_mm: f64,
    pub max_mm: f64,
    /// Indices (into the ordered slices) after which a step exceeds 1.5 × the median.
    pub gaps_after: Vec<usize>,
    /// Number of slices at the same position as their neighbour.
    pub duplicate_positions: usize,
    /// True when some step (not a gap) differs from the median by over 10 %.
    pub uneven: bool,
}

/// Orders slices by their position along the common slice normal (never by Instance
/// Number) and checks they share one grid. Returns the order and the sorted positions.
fn order_slices(slices: &[SliceGeometry]) -> Result<(Vec<usize>, Vec<f64>), GeometryError> {
    let first = slices.first().ok_or(GeometryError::Empty)?;
    let normal = first.normal().ok_or(GeometryError::DegenerateOrientation)?;
    for s in &slices[1..] {
        if (s.rows, s.columns) != (first.rows, first.columns) {
            return Err(GeometryError::Inconsistent("Rows/Columns"));
        }
        if !close(&s.pixel_spacing, &first.pixel_spacing, 1e-3) {
            return Err(GeometryError::Inconsistent("Pixel Spacing"));
        }
        if !close(&s.orientation, &first.orientation, 1e-3) {
            return Err(GeometryError::Inconsistent("Image Orientation (Patient)"));
        }
    }
    let along: Vec<f64> = slices.iter().map(|s| dot(s.position, normal)).collect();
    let mut order: Vec<usize> = (0..slices.len()).collect();
    order.sort_by(|&a, &b| along[a].total_cmp(&along[b]));
    let positions = order.iter().map(|&i| along[i]).collect();
    Ok((order, positions))
}

/// The slices of a series laid out along their normal.
pub struct SliceLayout {
    /// Indices into the slices, in order along the normal.
    pub order: Vec<usize>,
    /// Their positions along the normal, in that order.
    pub positions: Vec<f64>,
    /// None for a single slice.
    pub spacing: Option<SpacingReport>,
}

/// The geometry rule of a volume, kept here once for series selection and volume assembly
/// both: the slices share one grid ([`order_slices`]), and no two of them lie at the same
/// position (several acquisitions in one series, which no ordering can make one volume).
pub fn lay_out_slices(slices: &[SliceGeometry]) -> Result<SliceLayout, GeometryError> {
    let (order, positions) = order_slices(slices)?;
    let spacing = analyse_spacing(&positions);
    if let Some(report) = &spacing
        && report.duplicate_positions > 0
    {
        return Err(GeometryError::DuplicatePositions(
            report.duplicate_positions,
        ));
    }
    Ok(SliceLayout {
        order,
        positions,
        spacing,
    })
}

/// Analyses sorted positions; `None` for fewer than two slices.
fn analyse_spacing(sorted_positions: &[f64]) -> Option<SpacingReport> {
    if sorted_positions.len() < 2 {
        return None;
    }
    let steps: Vec<f64> = sorted_positions.windows(2).map(|w| w[1] - w[0]).collect();
    let duplicate_positions = steps.iter().filter(|&&d| d < SAME_POSITION_MM).count();
    let mut real: Vec<f64> = steps
        .iter()
        .copied()
        .filter(|&d| d >= SAME_POSITION_MM)
        .collect();
    if real.is_empty() {
        return Some(SpacingReport {
            median_mm: 0.0,
            min_mm: 0.0,
            max_mm: 0.0,
            gaps_after: vec![],
            duplicate_positions,
            uneven: false,
        });
    }
    real.sort_by(f64::total_cmp);
    let median = real[real.len() / 2];
    let gaps_after: Vec<usize> = steps
        .iter()
        .enumerate()
        .filter(|(_, d)| **d > GAP_FACTOR * median)
        .map(|(i, _)| i)
        .collect();
    let uneven = steps.iter().any(|&d| {
        d >= SAME_POSITION_MM
            && d <= GAP_FACTOR * median
            && (d - median).abs() > UNEVEN_TOLERANCE * median
    });
    Some(SpacingReport {
        median_mm: median,
        min_mm: real[0],
        max_mm: real[real.len() - 1],
        gaps_after,
        duplicate_positions,
        uneven,
    })
}

/// Voxel size in mm, by axis name: rows, columns (Pixel Spacing's two values, in that
/// order) and slices. Named so that no caller has to remember an axis order: NIfTI wants
/// (x = column, y = row, z), the reference Python (z, row, column), the report [row, column,
/// slice] (`to_array`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spacing {
    /// Distance between the centres of adjacent rows (Pixel Spacing, first value).
    pub row_mm: f64,
    /// Distance between the centres of adjacent columns (Pixel Spacing, second value).
    pub col_mm: f64,
    /// Distance between slice centres.
    pub slice_mm: f64,
}

impl Spacing {
    /// The stored order of reports and `lungwatch inspect`: [row, column, slice].
    pub fn to_array(self) -> [f64; 3] {
        [self.row_mm, self.col_mm, self.slice_mm]
    }

    pub fn voxel_ml(self) -> f64 {
        self.row_mm * self.col_mm * self.slice_mm / 1000.0
    }

    pub fn pixel_mm2(self) -> f64 {
        self.row_mm * self.col_mm
    }

    fn is_positive(self) -> bool {
        self.to_array().iter().all(|s| s.is_finite() && *s > 0.0)
    }
}

/// A CT volume in Hounsfield units.
#[derive(Debug, Clone)]
pub struct Volume {
    pub rows: usize,
    pub columns: usize,
    pub slices: usize,
    pub spacing_mm: Spacing,
    /// Image Position (Patient) of the first voxel of the first (lowest along the normal) slice.
    pub origin: [f64; 3],
    pub row_direction: [f64; 3],
    pub column_direction: [f64; 3],
    pub normal: [f64; 3],
    /// Slice-major, then row, then column.
    pub hu: Vec<i16>,
    /// Position of each slice along the normal, ascending.
    pub slice_positions_mm: Vec<f64>,
    pub instance_numbers: Vec<Option<i64>>,
    pub files: Vec<PathBuf>,
    pub spacing: Option<SpacingReport>,
}

impl Volume {
    /// Checks the invariants every consumer relies on; a volume built by `build_volume`
    /// from plausible headers always passes, so a failure is a bug or a hand-made volume.
    pub fn check_consistent(&self) -> Result<(), String> {
        if self.rows == 0 || self.columns == 0 || self.slices == 0 {
            return Err(format!(
                "empty volume ({} × {} × {})",
                self.rows, self.columns, self.slices
            ));
        }
        if !self.spacing_mm.is_positive() {
            return Err(format!(
                "voxel spacing {:?} mm is not positive",
                self.spacing_mm
            ));
        }
        let voxels = self.rows * self.columns * self.slices;
        if self.hu.len() != voxels
            || self.slice_positions_mm.len() != self.slices
            || self.instance_numbers.len() != self.slices
        {
            return Err(format!(
                "volume of {} × {} × {} holds {} values for {} slice positions",
                self.rows,
                self.columns,
                self.slices,
                self.hu.len(),
                self.slice_positions_mm.len()
            ));
        }
        Ok(())
    }

    pub fn slice(&self, index: usize) -> &[i16] {
        let n = self.rows * self.columns;
        &self.hu[index * n..(index + 1) * n]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: ParseError },
    #[error("{path}: {source}")]
    Decode { path: PathBuf, source: DecodeError },
    #[error("{path}: {problem}")]
    Unsupported { path: PathBuf, problem: String },
    #[error("geometry: {0}")]
    Geometry(#[from] GeometryError),
}

/// A decoded slice before ordering.
struct DecodedSlice {
    path: PathBuf,
    header: InstanceHeader,
    hu: Vec<i16>,
}

/// Reads, decodes and orders the slices of one series with `threads` decoding threads.
pub fn build_volume(paths: &[PathBuf], threads: usize) -> Result<Volume, VolumeError> {
    use rayon::prelude::*;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .expect("a rayon pool of a few threads can always be built");
    let decoded: Vec<DecodedSlice> = pool.install(|| {
        paths
            .par_iter()
            .map(|p| decode_slice(p))
            .collect::<Result<_, _>>()
    })?;
    assemble(decoded)
}

fn decode_slice(path: &Path) -> Result<DecodedSlice, VolumeError> {
    let bytes = std::fs::read(path).map_err(|source| VolumeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let obj = read::parse(&bytes, Extent::Full).map_err(|source| VolumeError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    drop(bytes);
    let header = InstanceHeader::from_object(&obj);
    let unsupported = |problem: String| VolumeError::Unsupported {
        path: path.to_path_buf(),
        problem,
    };
    if header.number_of_frames.unwrap_or(1) > 1 {
        return Err(unsupported(
            "multi-frame (enhanced) images are not supported; export the series as single-frame slices".into(),
        ));
    }
    if header.samples_per_pixel.unwrap_or(1) != 1 {
        return Err(unsupported("colour images are not CT slices".into()));
    }
    let stored = pixels::decode_stored(&obj).map_err(|source| VolumeError::Decode {
        path: path.to_path_buf(),
        source,
    })?;
    // The header's size is what the volume is assembled by: decoded pixels of another size
    // would shift every later slice.
    let declared = (header.rows.unwrap_or(0), header.columns.unwrap_or(0));
    if (stored.rows, stored.columns) != declared
        || stored.values.len() != declared.0 as usize * declared.1 as usize
    {
        return Err(unsupported(format!(
            "decoded {} values as {} × {}, but the header declares {} × {}",
            stored.values.len(),
            stored.rows,
            stored.columns,
            declared.0,
            declared.1
        )));
    }
    let mut hu = Vec::new();
    pixels::to_hounsfield(
        &stored.values,
        header.rescale_slope.unwrap_or(1.0),
        header.rescale_intercept.unwrap_or(0.0),
        &mut hu,
    );
    Ok(DecodedSlice {
        path: path.to_path_buf(),
        header,
        hu,
    })
}

fn assemble(slices: Vec<DecodedSlice>) -> Result<Volume, VolumeError> {
    let geometry: Vec<SliceGeometry> = slices
        .iter()
        .map(|s| SliceGeometry::from_header(&s.header))
        .collect::<Result<_, _>>()?;
    let SliceLayout {
        order,
        positions,
        spacing,
    } = lay_out_slices(&geometry)?;
    let first = &geometry[order[0]];
    let slice_step = spacing
        .as_ref()
        .map(|r| r.median_mm)
        .or(slices[order[0]].header.slice_thickness)
        .unwrap_or(1.0);
    let mut slots: Vec<Option<DecodedSlice>> = slices.into_iter().map(Some).collect();
    let mut hu = Vec::with_capacity(order.len() * first.rows as usize * first.columns as usize);
    let mut instance_numbers = Vec::with_capacity(order.len());
    let mut files = Vec::with_capacity(order.len());
    for &i in &order {
        let s = slots[i]
            .take()
            .expect("each index appears once in the order");
        hu.extend_from_slice(&s.hu);
        instance_numbers.push(s.header.instance_number);
        files.push(s.path);
    }
    Ok(Volume {
        rows: first.rows as usize,
        columns: first.columns as usize,
        slices: order.len(),
        spacing_mm: Spacing {
            row_mm: first.pixel_spacing[0],
            col_mm: first.pixel_spacing[1],
            slice_mm: slice_step,
        },
        origin: first.position,
        row_direction: first.row_direction(),
        column_direction: first.column_direction(),
        normal: first.normal().expect("checked by order_slices"),
        hu,
        slice_positions_mm: positions,
        instance_numbers,
        files,
        spacing,
    })
}

pub(crate) fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

pub(crate) fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn normalize(v: [f64; 3]) -> Option<[f64; 3]> {
    let n = dot(v, v).sqrt();
    (n > 1e-6).then(|| [v[0] / n, v[1] / n, v[2] / n])
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn axial(z: f64) -> SliceGeometry {
        SliceGeometry {
            rows: 4,
            columns: 4,
            pixel_spacing: [0.7, 0.7],
            orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            position: [-100.0, -100.0, z],
        }
    }

    #[test]
    fn orders_by_position_not_input_order() {
        let slices = vec![axial(5.0), axial(-5.0), axial(0.0)];
        let (order, pos) = order_slices(&slices).unwrap();
        assert_eq!(order, vec![1, 2, 0]);
        assert_eq!(pos, vec![-5.0, 0.0, 5.0]);
    }

    #[test]
    fn oblique_normal_projection_is_used() {
        // Gantry tilt: positions move in y as well as z; ordering follows the normal.
        let c = (10f64).to_radians().cos();
        let s = (10f64).to_radians().sin();
        let mk = |t: f64| SliceGeometry {
            orientation: [1.0, 0.0, 0.0, 0.0, c, -s],
            position: [0.0, s * t, c * t],
            ..axial(0.0)
        };
        let (order, pos) = order_slices(&[mk(2.0), mk(0.0), mk(1.0)]).unwrap();
        assert_eq!(order, vec![1, 2, 0]);
        assert!((pos[1] - pos[0] - 1.0).abs() < 1e-9, "{pos:?}");
    }

    #[test]
    fn inconsistent_grid_is_rejected() {
        let mut b = axial(1.0);
        b.pixel_spacing = [0.8, 0.8];
        assert_eq!(
            order_slices(&[axial(0.0), b]).unwrap_err(),
            GeometryError::Inconsistent("Pixel Spacing")
        );
    }

    #[test]
    fn spacing_detects_gaps_duplicates_and_unevenness() {
        let even = analyse_spacing(&[0.0, 2.0, 4.0, 6.0]).unwrap();
        assert_eq!(even.median_mm, 2.0);
        assert!(even.gaps_after.is_empty() && !even.uneven && even.duplicate_positions == 0);

        let gap = analyse_spacing(&[0.0, 2.0, 4.0, 10.0, 12.0]).unwrap();
        assert_eq!(gap.gaps_after, vec![2]);
        assert!(!gap.uneven);

        let dup = analyse_spacing(&[0.0, 2.0, 2.0, 4.0]).unwrap();
        assert_eq!(dup.duplicate_positions, 1);

        let uneven = analyse_spacing(&[0.0, 2.0, 4.0, 6.5, 8.5]).unwrap();
        assert!(uneven.uneven && uneven.gaps_after.is_empty());
    }

    proptest! {
        #[test]
        fn any_permutation_orders_the_same(mut zs in proptest::collection::vec(-500.0f64..500.0, 1..40)) {
            let slices: Vec<_> = zs.iter().map(|&z| axial(z)).collect();
            let (order, pos) = order_slices(&slices).unwrap();
            prop_assert!(pos.windows(2).all(|w| w[0] <= w[1]));
            let mut seen = order.clone();
            seen.sort();
            prop_assert_eq!(seen, (0..zs.len()).collect::<Vec<_>>());
            zs.sort_by(f64::total_cmp);
            prop_assert_eq!(pos, zs);
        }
    }
}
