//! Secondary Capture key images: a preview raster (lung window, the lungs outlined and the
//! lesions filled, as `analysis::preview` draws them) as an RGB Secondary Capture Image in
//! lungwatch's result series of the source study. The overlay is burned in, so the image
//! is marked derived with Burned In Annotation YES, and it references the slice it shows.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, VR, dicom_value};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::{DISCLAIMER, PatientStudy, SourceRef, element, equipment, to_part10, us};
use crate::analysis::preview::Rgb;

/// Secondary Capture Image Storage.
pub const SOP_CLASS_UID: &str = "1.2.840.10008.5.1.4.1.1.7";

/// lungwatch's key-image series in the source study.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultSeries {
    pub series_instance_uid: String,
    pub series_number: i64,
}

/// One key image to write.
#[derive(Debug, Clone)]
pub struct KeyImage<'a> {
    pub sop_instance_uid: String,
    /// 1-based position among the key images.
    pub instance_number: u32,
    /// In the trained orientation: patient right on the image left, anterior up.
    pub raster: &'a Rgb,
    /// The source slice the raster shows.
    pub source: &'a SourceRef,
}

pub const SERIES_DESCRIPTION: &str = "lungwatch key images (decision support only)";

/// The Part 10 bytes of one key image.
pub fn key_image(study: &PatientStudy, series: &ResultSeries, image: &KeyImage) -> Vec<u8> {
    let r = image.raster;
    let mut pixels = r.data.clone();
    if pixels.len() % 2 == 1 {
        pixels.push(0);
    }
    let source_item = InMemDicomObject::from_element_iter([
        element(
            tags::REFERENCED_SOP_CLASS_UID,
            VR::UI,
            &image.source.sop_class_uid,
        ),
        element(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            &image.source.sop_instance_uid,
        ),
    ]);
    let mut elements = vec![
        element(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"),
        DataElement::new(
            tags::IMAGE_TYPE,
            VR::CS,
            dicom_value!(Strs, ["DERIVED", "SECONDARY"]),
        ),
        element(tags::SOP_CLASS_UID, VR::UI, SOP_CLASS_UID),
        element(tags::SOP_INSTANCE_UID, VR::UI, &image.sop_instance_uid),
        element(tags::MODALITY, VR::CS, "OT"),
        // An unpaired body part: dciodvfy then wants Laterality absent, not empty.
        element(tags::BODY_PART_EXAMINED, VR::CS, "CHEST"),
        element(tags::CONVERSION_TYPE, VR::CS, "WSD"),
        element(tags::SERIES_DESCRIPTION, VR::LO, SERIES_DESCRIPTION),
        element(
            tags::DERIVATION_DESCRIPTION,
            VR::ST,
            &format!(
                "Axial slice in a lung window (level -600 HU, width 1500 HU), lungs outlined \
                 (right green, left blue), lesions filled (ground-glass yellow, consolidation \
                 red) by lungwatch {}. {DISCLAIMER}",
                env!("CARGO_PKG_VERSION")
            ),
        ),
        DataElement::new(
            tags::SOURCE_IMAGE_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![source_item]),
        ),
        element(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            &series.series_instance_uid,
        ),
        element(
            tags::SERIES_NUMBER,
            VR::IS,
            &series.series_number.to_string(),
        ),
        element(
            tags::INSTANCE_NUMBER,
            VR::IS,
            &image.instance_number.to_string(),
        ),
        DataElement::new(
            tags::PATIENT_ORIENTATION,
            VR::CS,
            dicom_value!(Strs, ["L", "P"]),
        ),
        element(tags::IMAGE_COMMENTS, VR::LT, DISCLAIMER),
        us(tags::SAMPLES_PER_PIXEL, 3),
        element(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB"),
        us(tags::PLANAR_CONFIGURATION, 0),
        us(tags::ROWS, r.height as u16),
        us(tags::COLUMNS, r.width as u16),
        us(tags::BITS_ALLOCATED, 8),
        us(tags::BITS_STORED, 8),
        us(tags::HIGH_BIT, 7),
        us(tags::PIXEL_REPRESENTATION, 0),
        element(tags::BURNED_IN_ANNOTATION, VR::CS, "YES"),
        element(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00"),
        DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::U8(pixels.into())),
    ];
    elements.extend(study.elements());
    elements.extend(equipment());
    to_part10(
        InMemDicomObject::from_element_iter(elements),
        SOP_CLASS_UID,
        &image.sop_instance_uid,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicom::read::{Extent, parse};
    use crate::objects::UidMaker;

    fn sample() -> (PatientStudy, ResultSeries, Rgb, SourceRef) {
        let uids = UidMaker::new("2.25", "test");
        let study = PatientStudy {
            patient_name: Some("Doe^Jane".into()),
            patient_id: Some("P-1".into()),
            study_instance_uid: "1.2.3.4".into(),
            study_date: Some("20240101".into()),
            accession_number: Some("A1".into()),
            ..Default::default()
        };
        let series = ResultSeries {
            series_instance_uid: uids.uid("series"),
            series_number: 9001,
        };
        let raster = Rgb {
            width: 7,
            height: 5,
            data: (0..7 * 5 * 3).map(|i| i as u8).collect(),
        };
        let source = SourceRef {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            sop_instance_uid: "1.2.3.4.5.6".into(),
        };
        (study, series, raster, source)
    }

    #[test]
    fn a_key_image_reads_back_with_its_pixels_and_references() {
        let (study, series, raster, source) = sample();
        let bytes = key_image(
            &study,
            &series,
            &KeyImage {
                sop_instance_uid: "2.25.99".into(),
                instance_number: 1,
                raster: &raster,
                source: &source,
            },
        );
        let obj = parse(&bytes, Extent::Full).unwrap();
        let text = |tag| {
            obj.element(tag)
                .unwrap()
                .to_str()
                .unwrap()
                .trim()
                .to_string()
        };
        assert_eq!(text(tags::STUDY_INSTANCE_UID), "1.2.3.4");
        assert_eq!(text(tags::PATIENT_ID), "P-1");
        assert_eq!(text(tags::MANUFACTURER), "lungwatch");
        assert_eq!(text(tags::BURNED_IN_ANNOTATION), "YES");
        assert_eq!(text(tags::SERIES_INSTANCE_UID), series.series_instance_uid);
        let pixels = obj.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
        assert_eq!(&pixels[..raster.data.len()], &raster.data[..]);
        let item = &obj
            .element(tags::SOURCE_IMAGE_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()[0];
        assert_eq!(
            item.element(tags::REFERENCED_SOP_INSTANCE_UID)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches('\0'),
            "1.2.3.4.5.6"
        );
        // Ingest takes it like any image; selection recognises it as lungwatch's own.
        let header = crate::ingest::examine(&bytes).unwrap();
        let verdict =
            crate::series::select(&[&header], &crate::config::Config::default().selection);
        assert!(verdict.unwrap_err().contains("lungwatch's own"));
    }

    /// dciodvfy (dicom3tools) finds no error in the IOD; skipped without it.
    #[test]
    fn dciodvfy_finds_no_error() {
        if std::process::Command::new("dciodvfy")
            .arg("-version")
            .output()
            .is_err()
        {
            eprintln!(
                "SKIPPED dciodvfy check: dciodvfy is not installed (apt-get install dicom3tools)"
            );
            return;
        }
        let (study, series, raster, source) = sample();
        let bytes = key_image(
            &study,
            &series,
            &KeyImage {
                sop_instance_uid: "2.25.99".into(),
                instance_number: 1,
                raster: &raster,
                source: &source,
            },
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sc.dcm");
        std::fs::write(&path, &bytes).unwrap();
        let out = std::process::Command::new("dciodvfy")
            .arg(&path)
            .output()
            .unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("Error")).collect();
        assert!(errors.is_empty(), "dciodvfy:\n{report}");
        println!("dciodvfy on a key image:\n{report}");
    }
}
