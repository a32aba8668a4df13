//! Slice-by-slice inference of the two segmentation networks over a canonical volume,
//! on a rayon pool: each worker thread owns a tract session and its buffers, and writes
//! the argmax labels of its slices straight into the label volume.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use super::models::Network;
use super::morphology::Dims;
use super::resample::{Frame, Grid, Normalise, argmax_to_native, sample_frame};

/// Thread-time spent in each stage, in nanoseconds, summed over worker threads.
#[derive(Debug, Default)]
pub struct StageClock {
    pub preprocess: AtomicU64,
    pub inference: AtomicU64,
    pub postprocess: AtomicU64,
}

impl StageClock {
    fn add(counter: &AtomicU64, since: Instant) -> Instant {
        let now = Instant::now();
        counter.fetch_add((now - since).as_nanos() as u64, Ordering::Relaxed);
        now
    }
}

/// Half-open native row and column ranges of the pixels to label on one slice.
pub type Window = (std::ops::Range<usize>, std::ops::Range<usize>);

/// The HU volume the networks read: canonical orientation, slice-major.
pub struct CtSlices<'a> {
    pub hu: &'a [i16],
    pub dims: Dims,
    pub grid: Grid,
}

fn normalisation(network: &Network) -> Normalise {
    let p = network.preprocessing();
    Normalise { hu_min: p.hu_clip[0], hu_max: p.hu_clip[1], pad_hu: p.pad_hu }
}

/// Runs `network` on the slices for which `window(z)` is Some, with the frame `frame`,
/// and writes argmax classes into `labels` (one byte per voxel) inside each window.
/// Other voxels are left as they are.
pub fn label_slices(
    network: &Network,
    ct: &CtSlices,
    frame: Frame,
    window: impl Fn(usize) -> Option<Window> + Sync,
    labels: &mut [u8],
    clock: &StageClock,
) -> anyhow::Result<()> {
    let norm = normalisation(network);
    let classes = network.entry.output_shape[1];
    let plane = ct.dims.plane();
    labels
        .par_chunks_mut(plane)
        .enumerate()
        .try_for_each_init(
            || (network.session(), vec![0f32; network.input_len()], Vec::new()),
            |(session, input, logits), (z, out)| -> anyhow::Result<()> {
                let Some((rows, cols)) = window(z) else {
                    return Ok(());
                };
                let t = Instant::now();
                sample_frame(&ct.hu[z * plane..(z + 1) * plane], ct.grid, frame, norm, input);
                let t = StageClock::add(&clock.preprocess, t);
                session.run(input, logits)?;
                let t = StageClock::add(&clock.inference, t);
                argmax_to_native(logits, classes, ct.grid, frame, rows, cols, out);
                StageClock::add(&clock.postprocess, t);
                Ok(())
            },
        )
}

/// The lung model's frame: fixed pixel size, centred on the image centre.
pub fn lung_frame(network: &Network, grid: Grid) -> Frame {
    let p = network.preprocessing();
    Frame {
        n: p.size,
        center_row: (grid.rows as f64 - 1.0) / 2.0,
        center_col: (grid.columns as f64 - 1.0) / 2.0,
        pixel_mm: p.pixel_mm.expect("validated with the manifest"),
    }
}

/// The lesion model's frame: the square lung box (union over slices of the in-plane
/// bounding box of the lung) with the manifest's scale and margin. None without lung.
pub fn lesion_frame(network: &Network, grid: Grid, lung_box: Option<Window>) -> Option<Frame> {
    let (rows, cols) = lung_box?;
    let p = network.preprocessing();
    let (r0, r1) = (rows.start as f64, (rows.end - 1) as f64);
    let (c0, c1) = (cols.start as f64, (cols.end - 1) as f64);
    let height_mm = (r1 - r0 + 1.0) * grid.row_mm;
    let width_mm = (c1 - c0 + 1.0) * grid.col_mm;
    let side_mm = height_mm.max(width_mm) * p.box_scale.expect("validated")
        + p.box_margin_mm.expect("validated");
    Some(Frame {
        n: p.size,
        center_row: (r0 + r1) / 2.0,
        center_col: (c0 + c1) / 2.0,
        pixel_mm: side_mm / p.size as f64,
    })
}
