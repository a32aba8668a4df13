//! Secondary Capture key images: a preview raster (lung window, the lungs outlined and the
//! lesions filled, as `analysis::preview` draws them) as an RGB Secondary Capture Image in
//! lungwatch's result series of the source study. The overlay is burned in, so the image
//! is marked derived with Burned In Annotation YES, and it references the slice it shows.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, VR, dicom_value};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;

use super::{
    DISCLAIMER, PatientStudy, SourceRef, element, equipment, result_instance, to_part10, us,
};
use crate::analysis::preview::Rgb;

/// Secondary Capture Image Storage.
pub const SOP_CLASS_UID: &str = uids::SECONDARY_CAPTURE_IMAGE_STORAGE;

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

pub const SERIES_DESCRIPTION: &str = "lungwatch key images and summary (decision support only)";

/// The Part 10 bytes of one key image.
pub fn key_image(study: &PatientStudy, series: &ResultSeries, image: &KeyImage) -> Vec<u8> {
    let description = format!(
        "Axial slice in a lung window (level -600 HU, width 1500 HU), lungs outlined \
         (right green, left blue), lesions filled (ground-glass yellow, consolidation \
         red) by lungwatch {}. {DISCLAIMER}",
        env!("CARGO_PKG_VERSION")
    );
    secondary_capture(
        study,
        series,
        &image.sop_instance_uid,
        image.instance_number,
        image.raster,
        Some(image.source),
        &description,
    )
}

/// The Part 10 bytes of the summary image: the figures and the disclaimer as burned-in
/// text (`summary::render`), after the key images in the same series.
pub fn summary_image(
    study: &PatientStudy,
    series: &ResultSeries,
    sop_instance_uid: &str,
    instance_number: u32,
    raster: &Rgb,
) -> Vec<u8> {
    let description = format!(
        "Summary of the lungwatch {} analysis, burned in as text. {DISCLAIMER}",
        env!("CARGO_PKG_VERSION")
    );
    secondary_capture(
        study,
        series,
        sop_instance_uid,
        instance_number,
        raster,
        None,
        &description,
    )
}

fn secondary_capture(
    study: &PatientStudy,
    series: &ResultSeries,
    sop_instance_uid: &str,
    instance_number: u32,
    r: &Rgb,
    source: Option<&SourceRef>,
    description: &str,
) -> Vec<u8> {
    let mut pixels = r.data.clone();
    if pixels.len() % 2 == 1 {
        pixels.push(0);
    }
    let mut elements = result_instance(
        SOP_CLASS_UID,
        sop_instance_uid,
        "OT",
        series,
        SERIES_DESCRIPTION,
        instance_number,
    );
    elements.extend([
        DataElement::new(
            tags::IMAGE_TYPE,
            VR::CS,
            dicom_value!(Strs, ["DERIVED", "SECONDARY"]),
        ),
        // An unpaired body part: dciodvfy then wants Laterality absent, not empty.
        element(tags::BODY_PART_EXAMINED, VR::CS, "CHEST"),
        element(tags::CONVERSION_TYPE, VR::CS, "WSD"),
        element(tags::DERIVATION_DESCRIPTION, VR::ST, description),
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
    ]);
    match source {
        // A key image is an axial slice in the trained orientation: patient left on the
        // image right, posterior down; it references the slice it shows.
        Some(source) => {
            elements.push(DataElement::new(
                tags::PATIENT_ORIENTATION,
                VR::CS,
                dicom_value!(Strs, ["L", "P"]),
            ));
            let item = InMemDicomObject::from_element_iter([
                element(
                    tags::REFERENCED_SOP_CLASS_UID,
                    VR::UI,
                    &source.sop_class_uid,
                ),
                element(
                    tags::REFERENCED_SOP_INSTANCE_UID,
                    VR::UI,
                    &source.sop_instance_uid,
                ),
            ]);
            elements.push(DataElement::new(
                tags::SOURCE_IMAGE_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(vec![item]),
            ));
        }
        // Text has no patient orientation (Type 2: empty).
        None => elements.push(element(tags::PATIENT_ORIENTATION, VR::CS, "")),
    }
    elements.extend(study.elements());
    elements.extend(equipment());
    to_part10(
        InMemDicomObject::from_element_iter(elements),
        SOP_CLASS_UID,
        sop_instance_uid,
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

    #[test]
    fn the_summary_image_is_a_secondary_capture_without_source() {
        let (study, series, _, _) = sample();
        let raster = crate::objects::summary::render(&crate::objects::sr::tests::sample_report());
        let bytes = summary_image(&study, &series, "2.25.98", 4, &raster);
        let obj = parse(&bytes, Extent::Full).unwrap();
        assert!(obj.element(tags::SOURCE_IMAGE_SEQUENCE).is_err());
        assert_eq!(
            obj.element(tags::BURNED_IN_ANNOTATION)
                .unwrap()
                .to_str()
                .unwrap()
                .trim(),
            "YES"
        );
        assert_eq!(
            obj.element(tags::ROWS).unwrap().to_int::<u16>().unwrap() as usize,
            raster.height
        );
        dciodvfy(&bytes, "summary image");
    }

    /// dciodvfy (dicom3tools) finds no error in the IOD; skipped without it.
    fn dciodvfy(bytes: &[u8], what: &str) {
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
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sc.dcm");
        std::fs::write(&path, bytes).unwrap();
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
        assert!(errors.is_empty(), "dciodvfy on the {what}:\n{report}");
        println!("dciodvfy on the {what}:\n{report}");
    }

    #[test]
    fn dciodvfy_finds_no_error() {
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
        dciodvfy(&bytes, "key image");
    }
}
