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
    /// Distance between slice centres, for a 2.5D network's context.
    pub slice_mm: f64,
}

fn normalisation(network: &Network) -> Normalise {
    let p = network.preprocessing();
    Normalise {
        hu_min: p.hu_clip[0],
        hu_max: p.hu_clip[1],
        pad_hu: p.pad_hu,
    }
}

/// Runs `network` on the slices for which `window(z)` is Some, with the frame `frame`,
/// and writes argmax classes into `labels` (one byte per voxel) inside each window.
/// Other voxels are left as they are.
///
/// With `step` > 1 the network runs on every `step`-th of those slices (and the last);
/// the slices between take the logits interpolated linearly between their two inferred
/// neighbours, in the frame, before the same back-mapping and argmax.
///
/// A 2.5D network (3 input channels) reads slices z-k, z, z+k for slice z, with k from
/// `context_step`, clamped to the series.
pub fn label_slices(
    network: &Network,
    ct: &CtSlices,
    frame: Frame,
    window: impl Fn(usize) -> Option<Window> + Sync,
    step: usize,
    labels: &mut [u8],
    clock: &StageClock,
) -> anyhow::Result<()> {
    let norm = normalisation(network);
    let classes = network.entry.output_shape[1];
    let plane = ct.dims.plane();
    let channels = network.preprocessing().channels();
    let context = network
        .preprocessing()
        .context_mm
        .map_or(0, |mm| context_step(ct.slice_mm, mm));
    let frame_len = frame.n * frame.n;
    let wanted: Vec<usize> = (0..ct.dims.slices)
        .filter(|&z| window(z).is_some())
        .collect();
    let Some(&last) = wanted.last() else {
        return Ok(());
    };
    let inferred: Vec<usize> = wanted
        .iter()
        .enumerate()
        .filter(|&(k, &z)| k % step.max(1) == 0 || z == last)
        .map(|(_, &z)| z)
        .collect();
    let inference_before = clock.inference.load(Ordering::Relaxed);
    // 1. Inference on the chosen slices, keeping their frame logits.
    let logits: Vec<Vec<f32>> = inferred
        .par_iter()
        .map_init(
            || (network.session(), vec![0f32; network.input_len()]),
            |(session, input), &z| -> anyhow::Result<Vec<f32>> {
                let t = Instant::now();
                for (c, channel) in input.chunks_exact_mut(frame_len).enumerate() {
                    let zc = channel_slice(z, c, channels, context, ct.dims.slices);
                    sample_frame(
                        &ct.hu[zc * plane..(zc + 1) * plane],
                        ct.grid,
                        frame,
                        norm,
                        channel,
                    );
                }
                let t = StageClock::add(&clock.preprocess, t);
                let mut output = Vec::new();
                session.run(input, &mut output)?;
                StageClock::add(&clock.inference, t);
                Ok(output)
            },
        )
        .collect::<anyhow::Result<_>>()?;
    let per_run =
        (clock.inference.load(Ordering::Relaxed) - inference_before) / inferred.len() as u64;
    log::debug!(
        "{}: {} of {} slices inferred, {:.1} ms of inference per slice",
        network.name,
        inferred.len(),
        wanted.len(),
        per_run as f64 / 1e6
    );
    // 2. Back to the native grid, interpolating the slices in between.
    labels
        .par_chunks_mut(plane)
        .enumerate()
        .for_each_init(Vec::new, |blend, (z, out)| {
            let Some((rows, cols)) = window(z) else {
                return;
            };
            let t = Instant::now();
            let above = inferred.partition_point(|&s| s < z);
            let frame_logits: &[f32] = if inferred.get(above) == Some(&z) {
                &logits[above]
            } else {
                // Between inferred slices `above - 1` and `above` (both exist: the first and
                // last wanted slices are inferred).
                let (z0, z1) = (inferred[above - 1], inferred[above]);
                let w = (z - z0) as f32 / (z1 - z0) as f32;
                blend.clear();
                blend.extend(
                    logits[above - 1]
                        .iter()
                        .zip(&logits[above])
                        .map(|(a, b)| (1.0 - w) * a + w * b),
                );
                blend
            };
            argmax_to_native(frame_logits, classes, ct.grid, frame, rows, cols, out);
            StageClock::add(&clock.postprocess, t);
        });
    Ok(())
}

/// The slice step at which to infer so that inferred slices are at most `max_mm` apart.
pub fn slice_step(slice_mm: f64, max_mm: f64) -> usize {
    if slice_mm <= 0.0 {
        1
    } else {
        ((max_mm / slice_mm).floor() as usize).max(1)
    }
}

/// The slice that input channel `c` of `channels` reads for slice `z`: z + (c -
/// channels/2) * k, clamped to the `slices` of the series (the ends repeat their slice).
fn channel_slice(z: usize, c: usize, channels: usize, k: usize, slices: usize) -> usize {
    (z + c * k).saturating_sub(channels / 2 * k).min(slices - 1)
}

/// k, the slice offset of a 2.5D network's neighbour channels: the whole number of slices
/// nearest to `context_mm` (halves round up), at least 1 (`common.context_step`).
pub fn context_step(slice_mm: f64, context_mm: f64) -> usize {
    if slice_mm <= 0.0 {
        1
    } else {
        ((context_mm / slice_mm + 0.5).floor() as usize).max(1)
    }
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

#[cfg(test)]
mod tests {
    use super::{context_step, slice_step};

    #[test]
    fn channels_read_the_neighbours_clamped_to_the_series() {
        use super::channel_slice;
        let of = |z, k| [0, 1, 2].map(|c| channel_slice(z, c, 3, k, 10));
        assert_eq!(of(5, 2), [3, 5, 7]);
        assert_eq!(of(0, 2), [0, 0, 2]);
        assert_eq!(of(1, 2), [0, 1, 3]);
        assert_eq!(of(9, 1), [8, 9, 9]);
        // A 2D network reads slice z only.
        assert_eq!(channel_slice(4, 0, 1, 0, 10), 4);
    }

    #[test]
    fn context_is_the_nearest_whole_slice_count() {
        assert_eq!(context_step(2.0, 2.5), 1);
        assert_eq!(context_step(1.25, 2.5), 2);
        assert_eq!(context_step(1.0, 2.5), 3);
        assert_eq!(context_step(0.625, 2.5), 4);
        assert_eq!(context_step(5.0, 2.5), 1);
        assert_eq!(context_step(0.0, 2.5), 1);
    }

    #[test]
    fn thin_series_infer_on_fewer_slices() {
        assert_eq!(slice_step(2.0, 2.5), 1);
        assert_eq!(slice_step(5.0, 2.5), 1);
        assert_eq!(slice_step(1.25, 2.5), 2);
        assert_eq!(slice_step(0.887, 2.5), 2);
        assert_eq!(slice_step(0.625, 2.5), 4);
        assert_eq!(slice_step(0.0, 2.5), 1);
    }
}
