//! What the receiver negotiates: the SOP classes it accepts and the transfer syntaxes it
//! offers for them.

use dicom_dictionary_std::uids;

/// Image storage SOP classes a PACS sends with a chest CT study: the CT images (classic,
/// enhanced and legacy-converted multi-frame), the secondary captures that travel with them
/// (dose screens, reformats exported as images) and PET of a PET/CT; and the Segmentation
/// and Comprehensive SR classes of lungwatch's own objects, so that a PACS routing
/// everything back has them stored (and never analysed) rather than refused. Other
/// non-image objects (PDF, presentation states, other SR classes) are not accepted: the
/// peer learns that at association time instead of getting a failure per instance; a
/// foreign SR without Pixel Data is quarantined as `missing-pixel-data`.
pub const STORAGE_SOP_CLASSES: &[(&str, &str)] = &[
    (uids::SEGMENTATION_STORAGE, "Segmentation Storage"),
    (uids::COMPREHENSIVE_SR_STORAGE, "Comprehensive SR Storage"),
    (uids::CT_IMAGE_STORAGE, "CT Image Storage"),
    (uids::ENHANCED_CT_IMAGE_STORAGE, "Enhanced CT Image Storage"),
    (
        uids::LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE,
        "Legacy Converted Enhanced CT Image Storage",
    ),
    (
        uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
        "Secondary Capture Image Storage",
    ),
    (
        uids::MULTI_FRAME_SINGLE_BIT_SECONDARY_CAPTURE_IMAGE_STORAGE,
        "Multi-frame Single Bit Secondary Capture Image Storage",
    ),
    (
        uids::MULTI_FRAME_GRAYSCALE_BYTE_SECONDARY_CAPTURE_IMAGE_STORAGE,
        "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    ),
    (
        uids::MULTI_FRAME_GRAYSCALE_WORD_SECONDARY_CAPTURE_IMAGE_STORAGE,
        "Multi-frame Grayscale Word Secondary Capture Image Storage",
    ),
    (
        uids::MULTI_FRAME_TRUE_COLOR_SECONDARY_CAPTURE_IMAGE_STORAGE,
        "Multi-frame True Color Secondary Capture Image Storage",
    ),
    (
        uids::POSITRON_EMISSION_TOMOGRAPHY_IMAGE_STORAGE,
        "Positron Emission Tomography Image Storage",
    ),
    (
        uids::ENHANCED_PET_IMAGE_STORAGE,
        "Enhanced PET Image Storage",
    ),
];

/// Every transfer syntax lungwatch decodes (README, "Transfer syntaxes"), offered for each
/// storage class. The peer's order of preference decides among them, so a PACS sends what
/// it holds without recompressing. The 12-bit lossy JPEG processes are left out on
/// purpose: the decoder refuses them, so accepting them would only fill the quarantine.
pub const TRANSFER_SYNTAXES: &[(&str, &str)] = &[
    (uids::EXPLICIT_VR_LITTLE_ENDIAN, "Explicit VR Little Endian"),
    (uids::IMPLICIT_VR_LITTLE_ENDIAN, "Implicit VR Little Endian"),
    // Retired from the standard, and still sent by older modalities and archives.
    #[allow(deprecated)]
    (uids::EXPLICIT_VR_BIG_ENDIAN, "Explicit VR Big Endian"),
    (
        uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        "Deflated Explicit VR Little Endian",
    ),
    (uids::RLE_LOSSLESS, "RLE Lossless"),
    (uids::JPEG_BASELINE8_BIT, "JPEG Baseline (Process 1)"),
    (
        uids::JPEG_LOSSLESS,
        "JPEG Lossless, Non-Hierarchical (Process 14)",
    ),
    (
        uids::JPEG_LOSSLESS_SV1,
        "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 SV1)",
    ),
    (uids::JPEGLS_LOSSLESS, "JPEG-LS Lossless"),
    (uids::JPEGLS_NEAR_LOSSLESS, "JPEG-LS Lossy (Near-Lossless)"),
    (uids::JPEG2000_LOSSLESS, "JPEG 2000 (Lossless Only)"),
    (uids::JPEG2000, "JPEG 2000"),
    (
        uids::HTJ2K_LOSSLESS,
        "High-Throughput JPEG 2000 (Lossless Only)",
    ),
    (
        uids::HTJ2K_LOSSLESS_RPCL,
        "High-Throughput JPEG 2000 with RPCL Options (Lossless Only)",
    ),
    (uids::HTJ2K, "High-Throughput JPEG 2000"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_encoding::TransferSyntaxIndex;
    use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

    #[test]
    fn every_offered_transfer_syntax_is_read_and_decoded() {
        // The same conditions as `ingest::examine` and dicom-ul's own check: an offered
        // syntax that ingest would refuse would turn a success into a quarantine.
        for (uid, name) in TRANSFER_SYNTAXES {
            let ts = TransferSyntaxRegistry
                .get(uid)
                .unwrap_or_else(|| panic!("{name} ({uid}) is not registered"));
            assert!(!ts.is_unsupported(), "{name}: data set not readable");
            assert!(ts.can_decode_all(), "{name}: no pixel decoder");
            assert!(dicom_ul::association::server::is_supported(uid), "{name}");
        }
    }

    #[test]
    fn uids_are_unique() {
        let mut all: Vec<&str> = STORAGE_SOP_CLASSES
            .iter()
            .chain(TRANSFER_SYNTAXES)
            .map(|(uid, _)| *uid)
            .collect();
        all.sort_unstable();
        let n = all.len();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
