//! The models' input frames: sampling a native slice into an N×N model frame and mapping
//! the model's logits back onto the native grid. The formulas are the manifest's contract,
//! identical to `models/train/common.py` (`plane_coords`, `bilinear`) and
//! `models/train/pipeline.py` (`back_to_native`).

/// A square model frame laid on a slice: N×N pixels of `pixel_mm`, centred on
/// (`center_row`, `center_col`) in native pixel indices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    pub n: usize,
    pub center_row: f64,
    pub center_col: f64,
    pub pixel_mm: f64,
}

/// Native slice geometry: rows, columns and the row/column spacing in mm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    pub rows: usize,
    pub columns: usize,
    pub row_mm: f64,
    pub col_mm: f64,
}

/// The clip-and-scale normalisation of the manifest: (clip(HU, lo, hi) - lo) / (hi - lo).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalise {
    pub hu_min: f32,
    pub hu_max: f32,
    /// Value read by bilinear taps that fall outside the image.
    pub pad_hu: f32,
}

impl Normalise {
    fn apply(&self, hu: f32) -> f32 {
        (hu.clamp(self.hu_min, self.hu_max) - self.hu_min) / (self.hu_max - self.hu_min)
    }
}

/// One axis of the frame → native sampling: the integer tap and its weight for each
/// output index.
fn taps(n: usize, center: f64, pixel_mm: f64, native_mm: f64) -> Vec<(i64, f32)> {
    (0..n)
        .map(|i| {
            let x = center + (i as f64 + 0.5 - n as f64 / 2.0) * pixel_mm / native_mm;
            let x0 = x.floor();
            (x0 as i64, (x - x0) as f32)
        })
        .collect()
}

/// Samples `slice` (HU, row-major on `grid`) into the frame and normalises it. Bilinear,
/// each of the four taps outside the image reading `norm.pad_hu`, then clipped and scaled.
pub fn sample_frame(slice: &[i16], grid: Grid, frame: Frame, norm: Normalise, out: &mut [f32]) {
    debug_assert_eq!(slice.len(), grid.rows * grid.columns);
    debug_assert_eq!(out.len(), frame.n * frame.n);
    let rows = taps(frame.n, frame.center_row, frame.pixel_mm, grid.row_mm);
    let cols = taps(frame.n, frame.center_col, frame.pixel_mm, grid.col_mm);
    let read = |r: i64, c: i64| -> f32 {
        if r >= 0 && c >= 0 && (r as usize) < grid.rows && (c as usize) < grid.columns {
            slice[r as usize * grid.columns + c as usize] as f32
        } else {
            norm.pad_hu
        }
    };
    for (i, &(r0, fr)) in rows.iter().enumerate() {
        let line = &mut out[i * frame.n..(i + 1) * frame.n];
        for (o, &(c0, fc)) in line.iter_mut().zip(&cols) {
            let top = (1.0 - fc) * read(r0, c0) + fc * read(r0, c0 + 1);
            let bottom = (1.0 - fc) * read(r0 + 1, c0) + fc * read(r0 + 1, c0 + 1);
            // Same association as the reference: sum of the four weighted taps.
            let hu = (1.0 - fr) * top + fr * bottom;
            *o = norm.apply(hu);
        }
    }
}

/// The native → frame coordinate of each native index along one axis, clamped to the
/// frame (edge values repeat), as (lower tap, weight) with the lower tap ≤ N-2.
fn back_taps(
    len: usize,
    center: f64,
    native_mm: f64,
    pixel_mm: f64,
    n: usize,
) -> Vec<(usize, f32)> {
    (0..len)
        .map(|i| {
            let u = ((i as f64 - center) * native_mm / pixel_mm + n as f64 / 2.0 - 0.5)
                .clamp(0.0, (n - 1) as f64);
            let u0 = (u.floor() as usize).min(n - 2);
            (u0, (u - u0 as f64) as f32)
        })
        .collect()
}

/// Maps K class logits (K×N×N, frame layout) back to the native grid by bilinear
/// interpolation and writes the argmax class of each native pixel of the window
/// `rows × cols` (half-open native index ranges) into `out` (row-major on the full grid).
/// Pixels outside the window are left untouched.
///
/// Bilinear weights are non-negative, so where one class leads all others at the four
/// frame pixels around a native pixel it leads there too: those pixels (all but the
/// class boundaries) take the class without interpolating. The lead must exceed
/// `CLEAR_LEAD` so float rounding cannot flip it; the result is identical to
/// interpolating everywhere (property-tested below).
pub fn argmax_to_native(
    logits: &[f32],
    classes: usize,
    grid: Grid,
    frame: Frame,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    out: &mut [u8],
) {
    let n = frame.n;
    debug_assert_eq!(logits.len(), classes * n * n);
    let row_taps = back_taps(grid.rows, frame.center_row, grid.row_mm, frame.pixel_mm, n);
    let col_taps = back_taps(
        grid.columns,
        frame.center_col,
        grid.col_mm,
        frame.pixel_mm,
        n,
    );
    let cells = uniform_cells(logits, classes, n);
    let plane = |k: usize| &logits[k * n * n..(k + 1) * n * n];
    for r in rows {
        let (u0, fu) = row_taps[r];
        let cell_row = &cells[u0 * (n - 1)..(u0 + 1) * (n - 1)];
        let line = &mut out[r * grid.columns + cols.start..r * grid.columns + cols.end];
        for (o, c) in line.iter_mut().zip(cols.clone()) {
            let (v0, fv) = col_taps[c];
            let uniform = cell_row[v0];
            if uniform != MIXED {
                *o = uniform;
                continue;
            }
            // First maximum wins, as numpy's argmax.
            let mut best = 0;
            let mut best_value = f32::NEG_INFINITY;
            for k in 0..classes {
                let p = plane(k);
                let (upper, lower) = (&p[u0 * n..(u0 + 1) * n], &p[(u0 + 1) * n..(u0 + 2) * n]);
                // Same association as the reference: columns first, then rows.
                let top = (1.0 - fv) * upper[v0] + fv * upper[v0 + 1];
                let bottom = (1.0 - fv) * lower[v0] + fv * lower[v0 + 1];
                let value = (1.0 - fu) * top + fu * bottom;
                if value > best_value {
                    best = k;
                    best_value = value;
                }
            }
            *o = best as u8;
        }
    }
}

/// A cell whose four corner pixels do not share one clearly leading class.
const MIXED: u8 = u8::MAX;

/// How far (relative to the logit's size, at least absolute 1e-3) the leading class must
/// be ahead at a frame pixel for a cell to skip interpolation: orders of magnitude above
/// the rounding of the three-term bilinear sums.
const CLEAR_LEAD: f32 = 1e-3;

/// For each (N-1)×(N-1) cell between four frame pixels: the class that clearly leads at
/// all four, or `MIXED`.
fn uniform_cells(logits: &[f32], classes: usize, n: usize) -> Vec<u8> {
    let plane = n * n;
    let leader: Vec<u8> = (0..plane)
        .map(|p| {
            let mut best = 0;
            for k in 1..classes {
                if logits[k * plane + p] > logits[best * plane + p] {
                    best = k;
                }
            }
            let lead = logits[best * plane + p];
            let margin = CLEAR_LEAD * lead.abs().max(1.0);
            let clear = (0..classes).all(|k| k == best || logits[k * plane + p] < lead - margin);
            if clear { best as u8 } else { MIXED }
        })
        .collect();
    let mut cells = Vec::with_capacity((n - 1) * (n - 1));
    for u in 0..n - 1 {
        for v in 0..n - 1 {
            let corners = [
                leader[u * n + v],
                leader[u * n + v + 1],
                leader[(u + 1) * n + v],
                leader[(u + 1) * n + v + 1],
            ];
            let same = corners.iter().all(|&c| c == corners[0]);
            cells.push(if same { corners[0] } else { MIXED });
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    const NORM: Normalise = Normalise {
        hu_min: -1024.0,
        hu_max: 400.0,
        pad_hu: -1024.0,
    };

    #[test]
    fn identity_frame_reproduces_the_slice() {
        // A frame with the native pixel size, centred like the lung frame, is the image.
        let grid = Grid {
            rows: 8,
            columns: 8,
            row_mm: 1.0,
            col_mm: 1.0,
        };
        let slice: Vec<i16> = (0..64).map(|i| (i * 10 - 300) as i16).collect();
        let frame = Frame {
            n: 8,
            center_row: 3.5,
            center_col: 3.5,
            pixel_mm: 1.0,
        };
        let mut out = vec![0f32; 64];
        sample_frame(&slice, grid, frame, NORM, &mut out);
        for (o, &hu) in out.iter().zip(&slice) {
            assert!((o - NORM.apply(hu as f32)).abs() < 1e-6);
        }
    }

    #[test]
    fn outside_the_image_reads_the_pad_value() {
        let grid = Grid {
            rows: 4,
            columns: 4,
            row_mm: 1.0,
            col_mm: 1.0,
        };
        let slice = vec![400i16; 16];
        // Twice the field of view: the border of the frame lies outside the image.
        let frame = Frame {
            n: 8,
            center_row: 1.5,
            center_col: 1.5,
            pixel_mm: 1.0,
        };
        let mut out = vec![0f32; 64];
        sample_frame(&slice, grid, frame, NORM, &mut out);
        assert_eq!(out[0], 0.0);
        assert_eq!(out[3 * 8 + 3], 1.0);
    }

    #[test]
    fn back_to_native_argmax_follows_the_dominant_class() {
        // Class 1 dominates the left half of the frame, class 2 the right half.
        let n = 4;
        let mut logits = vec![0f32; 3 * n * n];
        for r in 0..n {
            for c in 0..n {
                logits[n * n + r * n + c] = if c < 2 { 5.0 } else { -5.0 };
                logits[2 * n * n + r * n + c] = if c < 2 { -5.0 } else { 5.0 };
            }
        }
        let grid = Grid {
            rows: 8,
            columns: 8,
            row_mm: 0.5,
            col_mm: 0.5,
        };
        let frame = Frame {
            n,
            center_row: 3.5,
            center_col: 3.5,
            pixel_mm: 1.0,
        };
        let mut out = vec![9u8; 64];
        argmax_to_native(&logits, 3, grid, frame, 0..8, 0..8, &mut out);
        for r in 0..8 {
            assert_eq!(&out[r * 8..r * 8 + 8], &[1, 1, 1, 1, 2, 2, 2, 2]);
        }
    }

    /// The plain formula: interpolate every class at every pixel, first maximum wins.
    fn argmax_everywhere(logits: &[f32], classes: usize, grid: Grid, frame: Frame) -> Vec<u8> {
        let n = frame.n;
        let rows = back_taps(grid.rows, frame.center_row, grid.row_mm, frame.pixel_mm, n);
        let cols = back_taps(
            grid.columns,
            frame.center_col,
            grid.col_mm,
            frame.pixel_mm,
            n,
        );
        let mut out = vec![0u8; grid.rows * grid.columns];
        for (r, &(u0, fu)) in rows.iter().enumerate() {
            for (c, &(v0, fv)) in cols.iter().enumerate() {
                let mut best = (0, f32::NEG_INFINITY);
                for k in 0..classes {
                    let at = |u: usize, v: usize| logits[k * n * n + u * n + v];
                    let top = (1.0 - fv) * at(u0, v0) + fv * at(u0, v0 + 1);
                    let bottom = (1.0 - fv) * at(u0 + 1, v0) + fv * at(u0 + 1, v0 + 1);
                    let value = (1.0 - fu) * top + fu * bottom;
                    if value > best.1 {
                        best = (k, value);
                    }
                }
                out[r * grid.columns + c] = best.0 as u8;
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn skipping_clear_cells_changes_no_pixel(
            n in 2usize..9,
            native in 3usize..40,
            native_mm in 0.3f64..3.0,
            pixel_mm in 0.5f64..4.0,
            offset in -5.0f64..5.0,
            // Few distinct values make ties and near-ties common.
            seeds in proptest::collection::vec(0u8..6, 3 * 81),
            scale in proptest::prop_oneof![proptest::strategy::Just(1.0f32), 1e-4f32..100.0],
        ) {
            let classes = 3;
            let logits: Vec<f32> = seeds[..classes * n * n]
                .iter()
                .map(|&s| (s as f32 - 2.5) * scale)
                .collect();
            let grid = Grid { rows: native, columns: native + 1, row_mm: native_mm, col_mm: native_mm };
            let frame = Frame {
                n,
                center_row: native as f64 / 2.0 + offset,
                center_col: native as f64 / 2.0,
                pixel_mm,
            };
            let mut fast = vec![0u8; grid.rows * grid.columns];
            argmax_to_native(&logits, classes, grid, frame, 0..grid.rows, 0..grid.columns, &mut fast);
            proptest::prop_assert_eq!(fast, argmax_everywhere(&logits, classes, grid, frame));
        }
    }
}
