//! The summary image: the analysis's figures and the disclaimer as text burned into a
//! raster, for viewers that show neither SR nor SEG. Pure: a report in, pixels out.

use super::font;
use crate::analysis::preview::Rgb;
use crate::report::SeriesReport;

const WIDTH: usize = 1024;
const HEIGHT: usize = 576;
/// Font pixels are drawn as SCALE × SCALE image pixels; a character cell is one column and
/// two rows wider than its glyph.
const SCALE: usize = 2;
const CELL_W: usize = (font::WIDTH + 1) * SCALE;
const LINE_H: usize = (font::HEIGHT + 4) * SCALE;
const MARGIN: usize = 24;
const WHITE: [u8; 3] = [235, 235, 235];
const YELLOW: [u8; 3] = [255, 205, 0];

/// The text of the summary, line by line, with the colour of each line.
pub fn lines(r: &SeriesReport) -> Vec<(String, [u8; 3])> {
    let pct = |f: f64| format!("{:.1}%", f * 100.0);
    let ml = |v: f64| format!("{v:.0} ml");
    let date = r
        .study_date
        .as_deref()
        .filter(|d| d.len() == 8)
        .map(|d| format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..]))
        .unwrap_or_else(|| "unknown".into());
    let z = &r.zones;
    let models: Vec<String> = r
        .models
        .iter()
        .map(|m| format!("{} {}", m.name, m.version))
        .collect();
    vec![
        (
            format!(
                "LUNGWATCH {} - DECISION SUPPORT, NOT A DIAGNOSIS",
                env!("CARGO_PKG_VERSION")
            ),
            YELLOW,
        ),
        (String::new(), WHITE),
        (
            format!(
                "Patient ID: {}   Study date: {date}   Accession: {}",
                r.patient_id.as_deref().unwrap_or("-"),
                r.accession_number.as_deref().unwrap_or("-")
            ),
            WHITE,
        ),
        (
            format!(
                "Series: {} ({} slices)",
                r.series_description.as_deref().unwrap_or("-"),
                r.slice_count
            ),
            WHITE,
        ),
        (String::new(), WHITE),
        (
            format!(
                "Probabilities: COVID-19 {}   other pneumonia {}   normal/other {}",
                pct(r.probabilities.covid19),
                pct(r.probabilities.other_pneumonia),
                pct(r.probabilities.normal)
            ),
            WHITE,
        ),
        (
            format!(
                "Lung volume: right {}   left {}   total {}",
                ml(r.lung_volume_ml.right),
                ml(r.lung_volume_ml.left),
                ml(r.lung_volume_ml.right + r.lung_volume_ml.left)
            ),
            WHITE,
        ),
        (
            format!(
                "Lesion volume: {} (ground-glass {}, consolidation {})",
                ml(r.lesion_volume_ml),
                pct(r.ggo_share),
                pct(r.consolidation_share)
            ),
            WHITE,
        ),
        (
            format!(
                "Affected ratio: total {}   right {}   left {}",
                pct(r.affected_ratio.total),
                pct(r.affected_ratio.right),
                pct(r.affected_ratio.left)
            ),
            WHITE,
        ),
        (
            format!(
                "Zones, right upper/middle/lower: {} {} {}",
                pct(z.right_upper),
                pct(z.right_middle),
                pct(z.right_lower)
            ),
            WHITE,
        ),
        (
            format!(
                "Zones, left upper/middle/lower: {} {} {}",
                pct(z.left_upper),
                pct(z.left_middle),
                pct(z.left_lower)
            ),
            WHITE,
        ),
        (format!("Severity score: {} of 24", r.severity_score), WHITE),
        (String::new(), WHITE),
        (format!("Models: {}", models.join(", ")), WHITE),
        (
            "The models are not clinically validated.".to_string(),
            WHITE,
        ),
        (String::new(), WHITE),
        ("Decision support, not a diagnosis.".to_string(), YELLOW),
    ]
}

/// The summary of `r` as an RGB raster (white and yellow text on black).
pub fn render(r: &SeriesReport) -> Rgb {
    let mut img = Rgb {
        width: WIDTH,
        height: HEIGHT,
        data: vec![0; WIDTH * HEIGHT * 3],
    };
    let max_chars = (WIDTH - 2 * MARGIN) / CELL_W;
    for (row, (text, colour)) in lines(r).iter().enumerate() {
        let y0 = MARGIN + row * LINE_H;
        if y0 + font::HEIGHT * SCALE > HEIGHT {
            break;
        }
        for (col, c) in text.chars().take(max_chars).enumerate() {
            draw(&mut img, MARGIN + col * CELL_W, y0, c, *colour);
        }
    }
    img
}

fn draw(img: &mut Rgb, x0: usize, y0: usize, c: char, colour: [u8; 3]) {
    for (gy, bits) in font::glyph(c).iter().enumerate() {
        for gx in 0..font::WIDTH {
            if bits & (0x10 >> gx) == 0 {
                continue;
            }
            for dy in 0..SCALE {
                for dx in 0..SCALE {
                    let (x, y) = (x0 + gx * SCALE + dx, y0 + gy * SCALE + dy);
                    let i = (y * img.width + x) * 3;
                    img.data[i..i + 3].copy_from_slice(&colour);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_figures_and_the_disclaimer_are_written() {
        let r = crate::objects::sr::tests::sample_report();
        let text: Vec<String> = lines(&r).into_iter().map(|(t, _)| t).collect();
        let all = text.join("\n");
        for expected in [
            "DECISION SUPPORT, NOT A DIAGNOSIS",
            "COVID-19 70.0%",
            "right 2500 ml",
            "total 10.0%",
            "Severity score: 9 of 24",
            "lung_seg 0.1.0",
        ] {
            assert!(all.contains(expected), "{expected} in\n{all}");
        }
        let max_chars = (WIDTH - 2 * MARGIN) / CELL_W;
        assert!(text.iter().all(|l| l.chars().count() <= max_chars), "{all}");
        let img = render(&r);
        assert_eq!(img.data.len(), WIDTH * HEIGHT * 3);
        // The first glyph, 'L', has its full-height left stroke at the first column.
        for gy in 0..font::HEIGHT * SCALE {
            let i = ((MARGIN + gy) * WIDTH + MARGIN) * 3;
            assert_eq!(&img.data[i..i + 3], &YELLOW, "row {gy}");
        }
        if let Ok(dir) = std::env::var("LUNGWATCH_SUMMARY_PNG") {
            std::fs::write(dir, img.to_png().unwrap()).unwrap();
        }
    }
}
