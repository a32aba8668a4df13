//! What the receiver negotiates: the SOP classes it accepts and the transfer syntaxes it
//! offers for them.

/// Image storage SOP classes a PACS sends with a chest CT study: the CT images (classic,
/// enhanced and legacy-converted multi-frame), the secondary captures that travel with them
/// (dose screens, reformats exported as images) and PET of a PET/CT; and the Segmentation
/// and Comprehensive SR classes of lungwatch's own objects, so that a PACS routing
/// everything back has them stored (and never analysed) rather than refused. Other
/// non-image objects (PDF, presentation states, other SR classes) are not accepted: the
/// peer learns that at association time instead of getting a failure per instance; a
/// foreign SR without Pixel Data is quarantined as `missing-pixel-data`.
pub const STORAGE_SOP_CLASSES: &[(&str, &str)] = &[
    ("1.2.840.10008.5.1.4.1.1.66.4", "Segmentation Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.33", "Comprehensive SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.2", "CT Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.2.1", "Enhanced CT Image Storage"),
    (
        "1.2.840.10008.5.1.4.1.1.2.2",
        "Legacy Converted Enhanced CT Image Storage",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.7",
        "Secondary Capture Image Storage",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.7.1",
        "Multi-frame Single Bit Secondary Capture Image Storage",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.7.2",
        "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.7.3",
        "Multi-frame Grayscale Word Secondary Capture Image Storage",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.7.4",
        "Multi-frame True Color Secondary Capture Image Storage",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.128",
        "Positron Emission Tomography Image Storage",
    ),
    ("1.2.840.10008.5.1.4.1.1.130", "Enhanced PET Image Storage"),
];

/// Every transfer syntax lungwatch decodes (README, "Transfer syntaxes"), offered for each
/// storage class. The peer's order of preference decides among them, so a PACS sends what
/// it holds without recompressing. The 12-bit lossy JPEG processes are left out on
/// purpose: the decoder refuses them, so accepting them would only fill the quarantine.
pub const TRANSFER_SYNTAXES: &[(&str, &str)] = &[
    ("1.2.840.10008.1.2.1", "Explicit VR Little Endian"),
    ("1.2.840.10008.1.2", "Implicit VR Little Endian"),
    ("1.2.840.10008.1.2.2", "Explicit VR Big Endian"),
    (
        "1.2.840.10008.1.2.1.99",
        "Deflated Explicit VR Little Endian",
    ),
    ("1.2.840.10008.1.2.5", "RLE Lossless"),
    ("1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)"),
    (
        "1.2.840.10008.1.2.4.57",
        "JPEG Lossless, Non-Hierarchical (Process 14)",
    ),
    (
        "1.2.840.10008.1.2.4.70",
        "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 SV1)",
    ),
    ("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless"),
    ("1.2.840.10008.1.2.4.81", "JPEG-LS Lossy (Near-Lossless)"),
    ("1.2.840.10008.1.2.4.90", "JPEG 2000 (Lossless Only)"),
    ("1.2.840.10008.1.2.4.91", "JPEG 2000"),
    (
        "1.2.840.10008.1.2.4.201",
        "High-Throughput JPEG 2000 (Lossless Only)",
    ),
    (
        "1.2.840.10008.1.2.4.202",
        "High-Throughput JPEG 2000 with RPCL Options (Lossless Only)",
    ),
    ("1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000"),
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
