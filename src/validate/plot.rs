//! The reliability diagram as a PNG: one bar per confidence bin (height: the share of
//! right calls in it), the bin's mean confidence as a dark tick, and the diagonal of a
//! perfectly calibrated model. Axes run 0–1 both ways; the figures are in the report.

use crate::labelled::metrics::ReliabilityBin;

const SIZE: usize = 320;
const MARGIN: usize = 20;

pub fn reliability_png(bins: &[ReliabilityBin]) -> Result<Vec<u8>, png::EncodingError> {
    let plot = SIZE - 2 * MARGIN;
    let mut rgb = vec![255u8; SIZE * SIZE * 3];
    let mut put = |x: usize, y: usize, c: [u8; 3]| {
        if x < SIZE && y < SIZE {
            let i = (y * SIZE + x) * 3;
            rgb[i..i + 3].copy_from_slice(&c);
        }
    };
    // y grows downwards in the image; value v ∈ [0, 1] sits at MARGIN + plot × (1 - v).
    let to_y = |v: f64| MARGIN + ((1.0 - v.clamp(0.0, 1.0)) * plot as f64).round() as usize;
    let to_x = |v: f64| MARGIN + (v.clamp(0.0, 1.0) * plot as f64).round() as usize;
    let width = plot / bins.len().max(1);
    for (i, bin) in bins.iter().enumerate() {
        let Some(accuracy) = bin.accuracy else {
            continue;
        };
        let (x0, top) = (MARGIN + i * width, to_y(accuracy));
        for x in x0 + 1..x0 + width.saturating_sub(1) {
            for y in top..=to_y(0.0) {
                put(x, y, [120, 160, 220]);
            }
        }
        if let Some(confidence) = bin.mean_confidence {
            let y = to_y(confidence);
            for x in x0 + 1..x0 + width.saturating_sub(1) {
                put(x, y, [20, 20, 20]);
                put(x, y + 1, [20, 20, 20]);
            }
        }
    }
    for k in 0..=plot {
        let v = k as f64 / plot as f64;
        put(to_x(v), to_y(v), [200, 60, 60]);
        put(MARGIN, MARGIN + k, [0, 0, 0]);
        put(MARGIN + k, SIZE - MARGIN, [0, 0, 0]);
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, SIZE as u32, SIZE as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&rgb)?;
    writer.finish()?;
    Ok(out)
}
