//! From a HU volume to the clinical result: model loading (tract), preprocessing,
//! inference, post-processing, quantification, classification, previews and masks.
//!
//! `Analyser::analyse` is pure computation on a decoded volume; `write_artifacts` is the
//! only function here that touches the disk.

pub mod manifest;
pub mod models;
pub mod morphology;
pub mod nifti;
pub mod orient;
pub mod postprocess;
pub mod preview;
pub mod quantify;
pub mod resample;
pub mod segment;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rayon::prelude::*;

use crate::dicom::InstanceHeader;
use crate::dicom::volume::Volume;
use crate::report::{
    self, AffectedRatio, BelowThreshold, Class, Probabilities, SeriesReport, Sides, SliceFigures,
    Timings, ZoneScores, Zones,
};
use models::ModelSet;
use morphology::Dims;
use quantify::{Quantities, Side};
use resample::Grid;
use segment::{CtSlices, StageClock, Window};

/// The lesion network runs on slices at most this far apart; thinner series infer on
/// every k-th slice and interpolate the logits in between (`segment::label_slices`).
/// 2.5 mm keeps every slice of the usual 2–5 mm reconstructions and halves the work on
/// 1 mm ones. The lung network samples z as coarsely as its own in-plane pixel (3 mm):
/// the lung boundary is smooth at that scale, and finer z sampling would only add cost.
pub const MAX_INFERENCE_SPACING_MM: f64 = 2.5;

/// Runs the pipeline on a shared, loaded model set with its own thread pool.
pub struct Analyser {
    models: Arc<ModelSet>,
    pool: rayon::ThreadPool,
}

/// A finished analysis: the report and what the previews and masks are made from.
pub struct Analysis {
    pub report: SeriesReport,
    /// The volume in canonical orientation (see `orient`).
    pub volume: Volume,
    pub dims: Dims,
    /// 0 / right lung / left lung per voxel.
    pub lung: Vec<u8>,
    /// 0 / ground-glass / consolidation per voxel, only inside the lung.
    pub lesion: Vec<u8>,
    pub quantities: Quantities,
}

impl Analyser {
    /// `threads` worker threads each run whole slices single-threaded: on two cores that
    /// beat tract's multithreaded matmul (see README, benchmarks).
    pub fn new(models: Arc<ModelSet>, threads: usize) -> Self {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("analysis-{i}"))
            .build()
            .expect("a small rayon pool can always be built");
        Analyser { models, pool }
    }

    /// The same analysis on other models, with a pool of the same size.
    pub fn with_models(&self, models: Arc<ModelSet>) -> Self {
        Analyser::new(models, self.pool.current_num_threads())
    }

    pub fn models(&self) -> &ModelSet {
        &self.models
    }

    /// Analyses one decoded series. `header` is any instance's header (patient and study
    /// identity); `decode_ms` is reported as the decode stage.
    pub fn analyse(
        &self,
        volume: Volume,
        header: &InstanceHeader,
        decode_ms: u64,
        per_slice: bool,
    ) -> anyhow::Result<Analysis> {
        volume
            .check_consistent()
            .map_err(|e| anyhow::anyhow!("the volume cannot be analysed: {e}"))?;
        self.pool
            .install(|| self.analyse_in_pool(volume, header, decode_ms, per_slice))
    }

    fn analyse_in_pool(
        &self,
        mut volume: Volume,
        header: &InstanceHeader,
        decode_ms: u64,
        per_slice: bool,
    ) -> anyhow::Result<Analysis> {
        let started = Instant::now();
        let mut warnings = canonical_geometry(&mut volume);
        let orient_ns = started.elapsed().as_nanos() as u64;
        let dims = Dims {
            slices: volume.slices,
            rows: volume.rows,
            columns: volume.columns,
        };
        let grid = Grid {
            rows: dims.rows,
            columns: dims.columns,
            row_mm: volume.spacing_mm.row_mm,
            col_mm: volume.spacing_mm.col_mm,
        };
        let voxel_ml = volume.spacing_mm.voxel_ml();
        let ct = CtSlices {
            hu: &volume.hu,
            dims,
            grid,
            slice_mm: volume.spacing_mm.slice_mm,
        };
        let clock = StageClock::default();
        let models = &self.models;

        // 1. Lungs on every slice, then the gas-pocket and largest-component clean-up.
        let segment_started = Instant::now();
        let lungs = segment_lungs(models, &ct, voxel_ml, &clock)?;
        let mut cleanup_ns = lungs.cleanup_ns;
        // 2. Lesions on the slices that hold lung, only where the lung is.
        let mut lesion = vec![0u8; dims.voxels()];
        if let Some(frame) = segment::lesion_frame(&models.lesion, grid, lungs.lung_box.clone()) {
            segment::label_slices(
                &models.lesion,
                &ct,
                frame,
                |z| lungs.boxes[z].clone(),
                segment::slice_step(volume.spacing_mm.slice_mm, MAX_INFERENCE_SPACING_MM),
                &mut lesion,
                &clock,
            )?;
        } else {
            warnings.push("no lung was found in this series".to_string());
        }
        let segment_wall = segment_started.elapsed().as_nanos() as u64 - cleanup_ns;
        let measure_started = Instant::now();
        let lung = lungs.lung;
        let rules = models.lesion.entry.lesion_rules();
        let suppressed =
            confine_lesions(&mut lesion, &lung, dims, voxel_ml, rules.min_component_ml);

        // 3. Measurements, features and the classifier.
        let q = quantify::measure(&lung, &lesion, dims, volume.spacing_mm);
        cleanup_ns += measure_started.elapsed().as_nanos() as u64;
        let classify_started = Instant::now();
        let probabilities = classify(models, &q)?;
        let classify_ns = classify_started.elapsed().as_nanos() as u64;
        warnings.extend(low_burden_caution(
            q.affected_ratio(),
            top_class(probabilities),
            rules.low_burden_ratio,
        ));
        let lung_ml = q.lung_total() as f64 * q.voxel_ml;
        if q.lung_total() > 0 && !(1000.0..=12000.0).contains(&lung_ml) {
            warnings.push(format!(
                "implausible total lung volume {lung_ml:.0} mL: check the segmentation previews"
            ));
        }
        let timings = StageTimes {
            decode_ms,
            orient_ns,
            segment_wall_ns: segment_wall,
            cleanup_ns,
            classify_ns,
            analysis_ns: started.elapsed().as_nanos() as u64,
        }
        .timings(&clock);
        let below = BelowThreshold {
            lesion_ml: suppressed.voxels as f64 * voxel_ml,
            components: suppressed.components,
            min_component_ml: rules.min_component_ml,
            zones: q.zones_below(rules.zone_min_ratio),
            zone_min_ratio: rules.zone_min_ratio,
        };
        let report = build_report(
            &volume,
            header,
            &q,
            below,
            probabilities,
            models,
            timings,
            warnings,
            per_slice,
        );
        Ok(Analysis {
            report,
            dims,
            lung,
            lesion,
            quantities: q,
            volume,
        })
    }
}

/// The in-plane bounding box of a slice's nonzero pixels.
pub(crate) fn bounding_box(slice: &[u8], columns: usize) -> Option<Window> {
    let (mut r0, mut r1, mut c0, mut c1) = (usize::MAX, 0, usize::MAX, 0);
    for (r, row) in slice.chunks_exact(columns).enumerate() {
        if let Some(first) = row.iter().position(|&v| v != 0) {
            let last = row
                .iter()
                .rposition(|&v| v != 0)
                .expect("a first implies a last");
            r0 = r0.min(r);
            r1 = r;
            c0 = c0.min(first);
            c1 = c1.max(last);
        }
    }
    (r0 != usize::MAX).then(|| (r0..r1 + 1, c0..c1 + 1))
}

/// Puts `volume` in the trained orientation; returns the warnings its geometry calls for.
fn canonical_geometry(volume: &mut Volume) -> Vec<String> {
    let mut warnings = Vec::new();
    let orientation = orient::to_canonical(volume);
    if orientation.transposed_in_plane {
        warnings.push("rows of this series run left-right (rotated in-plane orientation): the left/right lung assignment may be swapped".to_string());
    }
    if let Some(spacing) = &volume.spacing {
        if !spacing.gaps_after.is_empty() {
            warnings.push(format!(
                "{} gap(s) between slices: volumes are underestimated",
                spacing.gaps_after.len()
            ));
        }
        if spacing.duplicate_positions > 0 {
            warnings.push(format!(
                "{} slice(s) share a position with a neighbour",
                spacing.duplicate_positions
            ));
        }
    }
    warnings
}

/// The lung labels after clean-up, with each slice's lung bounding box and their union.
struct Lungs {
    lung: Vec<u8>,
    boxes: Vec<Option<Window>>,
    lung_box: Option<Window>,
    /// Time spent in the clean-up, which is not inference.
    cleanup_ns: u64,
}

fn segment_lungs(
    models: &ModelSet,
    ct: &CtSlices,
    voxel_ml: f64,
    clock: &StageClock,
) -> anyhow::Result<Lungs> {
    let dims = ct.dims;
    let mut lung = vec![0u8; dims.voxels()];
    let whole = Some((0..dims.rows, 0..dims.columns));
    let lung_frame = segment::lung_frame(&models.lung, ct.grid);
    let lung_step = segment::slice_step(
        ct.slice_mm,
        lung_frame.pixel_mm.max(MAX_INFERENCE_SPACING_MM),
    );
    segment::label_slices(
        &models.lung,
        ct,
        lung_frame,
        |_| whole.clone(),
        lung_step,
        &mut lung,
        clock,
    )?;
    let cleanup_started = Instant::now();
    postprocess::remove_gas_pockets(
        &mut lung,
        ct.hu,
        dims,
        voxel_ml,
        models.lung.entry.gas_pocket_rules(),
    );
    postprocess::keep_largest_per_lung(&mut lung, dims);
    let boxes: Vec<Option<Window>> = lung
        .par_chunks(dims.plane())
        .map(|s| bounding_box(s, dims.columns))
        .collect();
    let lung_box = boxes.iter().flatten().cloned().reduce(|a, b| {
        (
            a.0.start.min(b.0.start)..a.0.end.max(b.0.end),
            a.1.start.min(b.1.start)..a.1.end.max(b.1.end),
        )
    });
    Ok(Lungs {
        lung,
        boxes,
        lung_box,
        cleanup_ns: cleanup_started.elapsed().as_nanos() as u64,
    })
}

/// Lesion only inside the lung, then the false-positive rule: components under the
/// manifest's minimum volume go (what went is returned).
fn confine_lesions(
    lesion: &mut [u8],
    lung: &[u8],
    dims: Dims,
    voxel_ml: f64,
    min_component_ml: f64,
) -> postprocess::Suppressed {
    lesion
        .par_iter_mut()
        .zip(lung.par_iter())
        .for_each(|(s, &l)| {
            if l == 0 {
                *s = 0;
            }
        });
    postprocess::suppress_small_lesions(lesion, dims, voxel_ml, min_component_ml)
}

/// Where one analysis spent its time, before the split into the report's stages.
struct StageTimes {
    decode_ms: u64,
    orient_ns: u64,
    segment_wall_ns: u64,
    cleanup_ns: u64,
    classify_ns: u64,
    analysis_ns: u64,
}

impl StageTimes {
    /// The segmentation loops interleave the stages on every thread: their wall time is
    /// split in proportion to the thread-time each stage took.
    fn timings(&self, clock: &StageClock) -> Timings {
        let (pre, inf, post) = (
            clock.preprocess.load(Ordering::Relaxed),
            clock.inference.load(Ordering::Relaxed),
            clock.postprocess.load(Ordering::Relaxed),
        );
        let busy = (pre + inf + post).max(1) as f64;
        let share = |ns: u64| (self.segment_wall_ns as f64 * ns as f64 / busy) as u64;
        let ms = |ns: u64| ns / 1_000_000;
        Timings {
            decode: self.decode_ms,
            preprocess: ms(self.orient_ns + share(pre)),
            inference: ms(share(inf) + self.classify_ns),
            postprocess: ms(share(post) + self.cleanup_ns),
            total: self.decode_ms + ms(self.analysis_ns),
        }
    }
}

fn classify(models: &ModelSet, q: &Quantities) -> anyhow::Result<[f64; 3]> {
    let names = &models.classifier.entry.features;
    let features = names
        .iter()
        .map(|name| {
            q.feature(name).map(|v| v as f32).ok_or_else(|| {
                anyhow::anyhow!(
                    "the classifier needs feature {name:?}, which this lungwatch does not compute"
                )
            })
        })
        .collect::<anyhow::Result<Vec<f32>>>()?;
    let mut output = Vec::new();
    models.classifier.session().run(&features, &mut output)?;
    anyhow::ensure!(
        output.len() == 3,
        "the classifier returned {} values, not 3",
        output.len()
    );
    Ok([output[0] as f64, output[1] as f64, output[2] as f64])
}

/// The class with the highest probability (the first of equals).
fn top_class(p: [f64; 3]) -> Class {
    Class::ALL[(0..3).fold(0, |best, k| if p[k] > p[best] { k } else { best })]
}

/// The manifest's low-burden caution: a scan called COVID-19 or other pneumonia on an
/// affected ratio above 0 and under `limit` rests on findings of the size the lesion model
/// has produced on normal scans, so the report says so. `limit` 0 turns it off.
fn low_burden_caution(affected_ratio: f64, top: Class, limit: f64) -> Option<String> {
    (top != Class::Normal && affected_ratio > 0.0 && affected_ratio < limit).then(|| {
        format!(
            "low lesion burden ({:.2} % of the lung, under {} %): false positives of this size \
             have been seen on normal scans from scanners the lesion model was not trained on, \
             most often along the diaphragm at the lung bases (model card); check the lesions \
             in the previews before relying on the class call",
            affected_ratio * 100.0,
            limit * 100.0
        )
    })
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    volume: &Volume,
    header: &InstanceHeader,
    q: &Quantities,
    below: BelowThreshold,
    p: [f64; 3],
    models: &ModelSet,
    timings: Timings,
    warnings: Vec<String>,
    per_slice: bool,
) -> SeriesReport {
    let ml = |voxels: u64| voxels as f64 * q.voxel_ml;
    let zones = Zones {
        right_lower: q.zone_ratio.right[0],
        right_middle: q.zone_ratio.right[1],
        right_upper: q.zone_ratio.right[2],
        left_lower: q.zone_ratio.left[0],
        left_middle: q.zone_ratio.left[1],
        left_upper: q.zone_ratio.left[2],
    };
    let features = models
        .classifier
        .entry
        .features
        .iter()
        .map(|name| (name.clone(), q.feature(name).unwrap_or(f64::NAN)))
        .collect();
    let slices = per_slice.then(|| {
        q.per_slice
            .iter()
            .enumerate()
            .map(|(z, c)| SliceFigures {
                instance_number: volume.instance_numbers[z],
                z_mm: volume.slice_positions_mm[z],
                lung_mm2: c.lung_total() as f64 * q.pixel_mm2,
                lesion_mm2: c.lesion_total() as f64 * q.pixel_mm2,
            })
            .collect()
    });
    SeriesReport {
        series_instance_uid: header.series_instance_uid.clone().unwrap_or_default(),
        study_instance_uid: header.study_instance_uid.clone(),
        patient_id: header.patient_id.clone(),
        patient_name: header.patient_name.clone(),
        study_date: header.study_date.clone(),
        accession_number: header.accession_number.clone(),
        series_description: header.series_description.clone(),
        slice_count: volume.slices,
        spacing_mm: volume.spacing_mm.to_array(),
        probabilities: Probabilities {
            covid19: p[0],
            other_pneumonia: p[1],
            normal: p[2],
        },
        top_class: top_class(p),
        lung_volume_ml: Sides {
            right: ml(q.lung.right),
            left: ml(q.lung.left),
        },
        lesion_volume_ml: ml(q.lesion_total()),
        ggo_volume_ml: ml(q.ground_glass),
        consolidation_volume_ml: ml(q.consolidation),
        affected_ratio: AffectedRatio {
            total: q.affected_ratio(),
            right: q.side_ratio(Side::Right),
            left: q.side_ratio(Side::Left),
        },
        ggo_share: q.lesion_share(q.ground_glass),
        consolidation_share: q.lesion_share(q.consolidation),
        bilateral: q.bilateral(),
        peripheral_share: q.lesion_share(q.peripheral_lesion),
        peripheral_mm: quantify::PERIPHERAL_MM,
        zone_scores: ZoneScores::of(&zones, below.zone_min_ratio),
        zones,
        severity_score: q.severity_score(below.zone_min_ratio),
        below_threshold: below,
        features,
        models: models.references(),
        timings_ms: timings,
        warnings,
        per_slice: slices,
    }
}

/// The key axial slices (canonical slice index) rendered as previews: the lung window with
/// the lungs outlined and the lesions filled. The PNG previews and the DICOM key images
/// are both these rasters.
pub fn key_images(analysis: &Analysis) -> Vec<(usize, preview::Rgb)> {
    let (v, dims) = (&analysis.volume, analysis.dims);
    let q = &analysis.quantities;
    let lung_per_slice: Vec<u64> = q.per_slice.iter().map(|c| c.lung_total()).collect();
    let lesion_per_slice: Vec<u64> = q.per_slice.iter().map(|c| c.lesion_total()).collect();
    preview::key_slices(&lung_per_slice, &lesion_per_slice)
        .into_par_iter()
        .map(|z| {
            (
                z,
                preview::axial(&v.hu, &analysis.lung, &analysis.lesion, dims, z),
            )
        })
        .collect()
}

/// Writes the previews (`axial-<k>.png`, `coronal.png`) and the label mask
/// (`labels.nii.gz`) into `dir`, each through a temporary name and a rename, and returns
/// the file names written.
pub fn write_artifacts(analysis: &Analysis, dir: &Path) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let (v, dims) = (&analysis.volume, analysis.dims);
    let mut files: Vec<(String, Vec<u8>)> = key_images(analysis)
        .into_par_iter()
        .enumerate()
        .map(|(k, (_, raster))| (report::axial_preview_name(k), raster.to_png()))
        .map(|(name, png)| {
            png.map(|bytes| (name, bytes))
                .map_err(std::io::Error::other)
        })
        .collect::<std::io::Result<_>>()?;
    let row = preview::coronal_row(&analysis.lung, dims);
    let coronal = preview::coronal(
        &v.hu,
        &analysis.lung,
        &analysis.lesion,
        dims,
        v.spacing_mm,
        row,
    );
    files.push((
        report::CORONAL_PREVIEW.to_string(),
        coronal.to_png().map_err(std::io::Error::other)?,
    ));
    let slice_step = if v.slices > 1 {
        (v.slice_positions_mm[v.slices - 1] - v.slice_positions_mm[0]) / (v.slices - 1) as f64
    } else {
        v.spacing_mm.slice_mm
    };
    let placement = nifti::Placement {
        origin: v.origin,
        column_axis: v.row_direction,
        row_axis: v.column_direction,
        slice_axis: v.normal,
        steps_mm: [v.spacing_mm.col_mm, v.spacing_mm.row_mm, slice_step],
    };
    files.push((
        report::LABELS_FILE.to_string(),
        nifti::encode_labels(&analysis.lung, &analysis.lesion, dims, &placement)?,
    ));
    // Durable before the caller commits the result row that points at them, as store
    // files are: a power cut after the commit must not leave a result without its images.
    let mut names = Vec::new();
    for (name, bytes) in files {
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut file, &bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(&name))?;
        names.push(name);
    }
    std::fs::File::open(dir)?.sync_all()?;
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_class_is_the_most_probable_and_the_first_of_equals() {
        assert_eq!(top_class([0.2, 0.7, 0.1]), Class::OtherPneumonia);
        assert_eq!(top_class([0.1, 0.1, 0.8]), Class::Normal);
        assert_eq!(top_class([0.4, 0.4, 0.2]), Class::Covid19);
    }

    #[test]
    fn a_pneumonia_call_on_a_low_burden_is_cautioned() {
        let caution = low_burden_caution(0.0048, Class::Covid19, 0.01).expect("cautioned");
        assert!(
            caution.contains("0.48 % of the lung, under 1 %"),
            "{caution}"
        );
        assert!(low_burden_caution(0.0048, Class::OtherPneumonia, 0.01).is_some());
        // Not for a normal call, nothing found, a burden at or over the limit, or no limit.
        assert_eq!(low_burden_caution(0.0048, Class::Normal, 0.01), None);
        assert_eq!(low_burden_caution(0.0, Class::Covid19, 0.01), None);
        assert_eq!(low_burden_caution(0.01, Class::Covid19, 0.01), None);
        assert_eq!(low_burden_caution(0.0048, Class::Covid19, 0.0), None);
    }
}
