//! DICOM reading: tolerant parsing, header fields, pixel decoding and HU volumes.
//! Pure functions over bytes and structs; the only I/O is reading the files a caller names.

pub mod codestream;
pub mod header;
pub mod jpeg_lossless;
pub mod pixels;
pub mod read;
pub mod volume;

pub use header::InstanceHeader;

/// An error and all its sources, joined: dicom-rs nests the useful part deep.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}
