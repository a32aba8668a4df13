//! The fast lossless-JPEG decoder against jpeg-decoder (through dicom-pixeldata), bit for
//! bit, on every real process-14 file we have: the covid-ct-md exports, the conformance
//! files, and each of them cut short.

mod common;

use std::time::{Duration, Instant};

use dicom_dictionary_std::{tags, uids};
use dicom_pixeldata::PixelDecoder;
use lungwatch::dicom::jpeg_lossless;
use lungwatch::dicom::read::{Extent, parse};

#[test]
fn fast_decoder_matches_jpeg_decoder_on_every_real_lossless_file() {
    let Some(data) = common::shared_data("lossless JPEG against jpeg-decoder") else {
        return;
    };
    let mut files = common::files_under(&data.join("covid-ct-md"));
    files.extend(common::files_under(&data.join("dicom-conformance")));
    let (mut compared, mut truncated_refused) = (0, 0);
    let (mut reference_time, mut fast_time) = (Duration::ZERO, Duration::ZERO);
    for path in files {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Ok(obj) = parse(&bytes, Extent::Full) else {
            continue;
        };
        let syntax = obj
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0')
            .to_string();
        if syntax != uids::JPEG_LOSSLESS && syntax != uids::JPEG_LOSSLESS_SV1 {
            continue;
        }
        let Some(fragments) = obj
            .element(tags::PIXEL_DATA)
            .ok()
            .and_then(|e| e.value().fragments().map(|f| f.concat()))
        else {
            continue;
        };
        let started = Instant::now();
        let reference = obj.decode_pixel_data();
        reference_time += started.elapsed();
        let started = Instant::now();
        let fast = jpeg_lossless::decode(&fragments);
        fast_time += started.elapsed();
        let name = path.display();
        match (&reference, &fast) {
            (Ok(r), Ok(f)) => {
                let bytes_per_sample = r.bits_allocated() as usize / 8;
                let expected: Vec<u16> = r
                    .data()
                    .chunks_exact(bytes_per_sample)
                    .map(|c| {
                        if c.len() == 2 {
                            u16::from_le_bytes([c[0], c[1]])
                        } else {
                            c[0] as u16
                        }
                    })
                    .collect();
                assert_eq!(f.samples.len(), (r.rows() * r.columns()) as usize, "{name}");
                assert!(
                    f.samples == expected[..f.samples.len()],
                    "{name}: samples differ"
                );
                compared += 1;
            }
            // Where the fast path declines, the fallback decides; it must not accept what
            // jpeg-decoder refuses.
            (Err(_), Ok(_)) => panic!("{name}: fast decoder accepted what jpeg-decoder refuses"),
            _ => {}
        }
        // Cut short, the fast path must refuse (and so defer to the fallback).
        let cut = &fragments[..fragments.len() * 2 / 3];
        assert!(
            jpeg_lossless::decode(cut).is_err(),
            "{name}: accepted a truncated stream"
        );
        truncated_refused += 1;
    }
    println!(
        "{compared} lossless JPEG files decoded identically; {truncated_refused} truncated copies refused"
    );
    println!(
        "decode time, one thread: jpeg-decoder via dicom-pixeldata {:.0} ms, fast decoder {:.0} ms",
        reference_time.as_secs_f64() * 1e3,
        fast_time.as_secs_f64() * 1e3
    );
    assert!(compared >= 431, "only {compared} files compared");
}
