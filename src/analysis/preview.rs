//! Preview images for the reader: key axial slices and one coronal reformat in a lung
//! window, with the lung contour and the lesions overlaid. Pure: produces RGB rasters and
//! PNG bytes; the caller writes them.

use super::morphology::Dims;
use super::postprocess::{CONSOLIDATION, GROUND_GLASS, LEFT_LUNG, RIGHT_LUNG};
use crate::dicom::volume::Spacing;

/// Lung window: level -600 HU, width 1500 HU.
const WINDOW_LOW_HU: f32 = -1350.0;
const WINDOW_HIGH_HU: f32 = 150.0;
const RIGHT_CONTOUR: [u8; 3] = [40, 210, 120];
const LEFT_CONTOUR: [u8; 3] = [70, 150, 255];
const GROUND_GLASS_FILL: [u8; 3] = [255, 205, 0];
const CONSOLIDATION_FILL: [u8; 3] = [235, 45, 45];
const FILL_ALPHA: f32 = 0.45;

/// An 8-bit RGB raster.
#[derive(Debug, Clone)]
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Rgb {
    pub fn to_png(&self) -> Result<Vec<u8>, png::EncodingError> {
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&self.data)?;
        writer.finish()?;
        Ok(bytes)
    }
}

fn window(hu: f32) -> u8 {
    (((hu - WINDOW_LOW_HU) / (WINDOW_HIGH_HU - WINDOW_LOW_HU)).clamp(0.0, 1.0) * 255.0).round()
        as u8
}

fn blend(grey: u8, colour: [u8; 3], alpha: f32) -> [u8; 3] {
    colour.map(|c| (grey as f32 * (1.0 - alpha) + c as f32 * alpha).round() as u8)
}

/// Renders a 2D plane: `hu`, `lung` and `lesion` are width×height row-major.
fn render_plane(hu: &[f32], lung: &[u8], lesion: &[u8], width: usize, height: usize) -> Rgb {
    let mut data = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let i = y * width + x;
            let grey = window(hu[i]);
            let mut pixel = match lesion[i] {
                GROUND_GLASS => blend(grey, GROUND_GLASS_FILL, FILL_ALPHA),
                CONSOLIDATION => blend(grey, CONSOLIDATION_FILL, FILL_ALPHA),
                _ => [grey; 3],
            };
            let side = lung[i];
            if side != 0 {
                let edge = (x == 0 || lung[i - 1] != side)
                    || (x + 1 == width || lung[i + 1] != side)
                    || (y == 0 || lung[i - width] != side)
                    || (y + 1 == height || lung[i + width] != side);
                if edge {
                    pixel = if side == RIGHT_LUNG {
                        RIGHT_CONTOUR
                    } else if side == LEFT_LUNG {
                        LEFT_CONTOUR
                    } else {
                        pixel
                    };
                }
            }
            data.extend_from_slice(&pixel);
        }
    }
    Rgb {
        width,
        height,
        data,
    }
}

/// One axial slice, as stored (canonical orientation: patient right on the image left).
pub fn axial(hu: &[i16], lung: &[u8], lesion: &[u8], dims: Dims, z: usize) -> Rgb {
    let plane = dims.plane();
    let range = z * plane..(z + 1) * plane;
    let hu: Vec<f32> = hu[range.clone()].iter().map(|&v| v as f32).collect();
    render_plane(
        &hu,
        &lung[range.clone()],
        &lesion[range],
        dims.columns,
        dims.rows,
    )
}

/// A coronal reformat through `row`, superior at the top, stretched along z so that
/// millimetres are square (HU linear between slices, labels from the nearest slice).
pub fn coronal(
    hu: &[i16],
    lung: &[u8],
    lesion: &[u8],
    dims: Dims,
    spacing: Spacing,
    row: usize,
) -> Rgb {
    let Spacing {
        col_mm, slice_mm, ..
    } = spacing;
    let width = dims.columns;
    let extent_mm = (dims.slices.saturating_sub(1)) as f64 * slice_mm;
    let height = ((extent_mm / col_mm).round() as usize + 1).clamp(1, 4 * dims.slices.max(1));
    let at = |z: usize, c: usize| (z * dims.rows + row) * dims.columns + c;
    let (mut plane_hu, mut plane_lung, mut plane_lesion) = (
        vec![0f32; width * height],
        vec![0u8; width * height],
        vec![0u8; width * height],
    );
    for y in 0..height {
        // y = 0 is the most superior slice.
        let t = if height > 1 {
            (height - 1 - y) as f64 / (height - 1) as f64
        } else {
            0.0
        };
        let zf = t * (dims.slices.saturating_sub(1)) as f64;
        let z0 = zf.floor() as usize;
        let z1 = (z0 + 1).min(dims.slices - 1);
        let f = (zf - z0 as f64) as f32;
        let nearest = if f < 0.5 { z0 } else { z1 };
        for c in 0..width {
            let i = y * width + c;
            plane_hu[i] = hu[at(z0, c)] as f32 * (1.0 - f) + hu[at(z1, c)] as f32 * f;
            plane_lung[i] = lung[at(nearest, c)];
            plane_lesion[i] = lesion[at(nearest, c)];
        }
    }
    render_plane(&plane_hu, &plane_lung, &plane_lesion, width, height)
}

/// Key axial slices, inferior to superior: the middle of each third of the lung's extent,
/// and the slice with the most lesion when it is not next to one of those.
pub fn key_slices(lung_per_slice: &[u64], lesion_per_slice: &[u64]) -> Vec<usize> {
    let with_lung: Vec<usize> = (0..lung_per_slice.len())
        .filter(|&z| lung_per_slice[z] > 0)
        .collect();
    let (Some(&first), Some(&last)) = (with_lung.first(), with_lung.last()) else {
        return vec![lung_per_slice.len() / 2];
    };
    let span = (last - first + 1) as f64;
    let mut keys: Vec<usize> = [1.0, 3.0, 5.0]
        .iter()
        .map(|k| first + (span * k / 6.0) as usize)
        .collect();
    if let Some((z, &most)) = lesion_per_slice
        .iter()
        .enumerate()
        .max_by_key(|&(z, v)| (*v, std::cmp::Reverse(z)))
        && most > 0
        && keys.iter().all(|&k| k.abs_diff(z) > 2)
    {
        keys.push(z);
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The row with the most lung pixels over the whole volume (for the coronal view).
pub fn coronal_row(lung: &[u8], dims: Dims) -> usize {
    let mut per_row = vec![0u64; dims.rows];
    for (i, &l) in lung.iter().enumerate() {
        if l != 0 {
            per_row[(i / dims.columns) % dims.rows] += 1;
        }
    }
    per_row
        .iter()
        .enumerate()
        .max_by_key(|&(r, v)| (*v, std::cmp::Reverse(r)))
        .map_or(dims.rows / 2, |(r, _)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slices_cover_the_thirds_and_the_worst_slice() {
        let lung = [0, 0, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 0, 0];
        let mut lesion = [0u64; 16];
        assert_eq!(key_slices(&lung, &lesion), vec![4, 8, 12]);
        lesion[10] = 3;
        assert_eq!(
            key_slices(&lung, &lesion),
            vec![4, 8, 12],
            "next to a third's slice"
        );
        let mut lung = [5u64; 30];
        lung[0] = 0;
        let mut lesion = [0u64; 30];
        lesion[10] = 9;
        assert_eq!(key_slices(&lung, &lesion), vec![5, 10, 15, 25]);
    }

    #[test]
    fn a_rendered_slice_shows_contour_and_lesion_colours() {
        let dims = Dims {
            slices: 1,
            rows: 5,
            columns: 5,
        };
        let hu = vec![-850i16; 25];
        let mut lung = vec![0u8; 25];
        let mut lesion = vec![0u8; 25];
        for r in 1..4 {
            for c in 1..4 {
                lung[r * 5 + c] = RIGHT_LUNG;
            }
        }
        lesion[2 * 5 + 2] = CONSOLIDATION;
        let img = axial(&hu, &lung, &lesion, dims, 0);
        let px = |r: usize, c: usize| &img.data[(r * 5 + c) * 3..(r * 5 + c) * 3 + 3];
        assert_eq!(px(1, 1), RIGHT_CONTOUR);
        assert!(px(2, 2)[0] > px(2, 2)[1], "consolidation is red");
        assert_eq!(px(0, 0)[0], px(0, 0)[1], "outside is grey");
        let png = img.to_png().unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
