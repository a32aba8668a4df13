//! Series assembly and selection: which complete series are chest CTs worth analysing.
//!
//! The rules are pure functions over headers. They only need what is read before Pixel
//! Data, so a series can be judged from the index alone, without decoding a single pixel.
//! `collect.rs` is the one part with I/O: it gathers files named on the command line into
//! series for the commands that run without the store.

mod collect;

pub use collect::{RejectedFile, SeriesFiles, collect_series, expand_paths};

use std::collections::BTreeMap;

use crate::config::Selection;
use crate::dicom::InstanceHeader;
use crate::dicom::volume::{GeometryError, SliceGeometry, lay_out_slices};
use crate::plausible;

/// Instances, each header with what it was read from.
pub type Instances<T> = Vec<(InstanceHeader, T)>;

/// Groups headers by Series Instance UID; headers without one are returned apart.
pub fn group_by_series<T>(items: Instances<T>) -> (BTreeMap<String, Instances<T>>, Instances<T>) {
    let mut groups: BTreeMap<String, Instances<T>> = BTreeMap::new();
    let mut orphans = Vec::new();
    for (header, item) in items {
        match header.series_instance_uid.clone() {
            Some(uid) => groups.entry(uid).or_default().push((header, item)),
            None => orphans.push((header, item)),
        }
    }
    (groups, orphans)
}

/// Checks a complete series against the selection rules; `Err` carries the skip reason.
/// What the series is comes first, then whether its values are plausible, then its
/// geometry: a series gets the reason of the first rule it breaks in that order.
pub fn select(headers: &[&InstanceHeader], rules: &Selection) -> Result<(), String> {
    let first = headers.first().ok_or("the series has no instances")?;
    select_kind(first, headers, rules)?;
    // Every value the volume and the analysis compute with, before any geometry is used.
    for h in headers {
        plausible::check_instance(h).map_err(|e| match h.instance_number {
            Some(n) => format!("instance {n}: {e}"),
            None => e,
        })?;
    }
    plausible::check_size(
        first.rows.unwrap_or(0),
        first.columns.unwrap_or(0),
        headers.len(),
        rules.max_voxels,
    )?;
    select_geometry(first, headers, rules)
}

/// Whether the series is an axial-capable CT stack at all: not lungwatch's own objects,
/// one selected modality, no localizer, single-frame greyscale images. `first` is
/// `headers[0]`, as for `select_geometry`.
fn select_kind(
    first: &InstanceHeader,
    headers: &[&InstanceHeader],
    rules: &Selection,
) -> Result<(), String> {
    // A PACS that routes everything back must not make a loop: lungwatch's own objects
    // are stored, never analysed (nor, later, sent again).
    if headers
        .iter()
        .any(|h| h.manufacturer.as_deref() == Some(crate::objects::MANUFACTURER))
    {
        return Err(format!(
            "lungwatch's own result objects (Manufacturer \"{}\"): stored, never analysed",
            crate::objects::MANUFACTURER
        ));
    }

    let modality = first.modality.clone().unwrap_or_default();
    if headers
        .iter()
        .any(|h| h.modality.clone().unwrap_or_default() != modality)
    {
        return Err("instances disagree on Modality".into());
    }
    if !rules
        .modalities
        .iter()
        .any(|m| m.eq_ignore_ascii_case(&modality))
    {
        let shown = if modality.is_empty() {
            "missing"
        } else {
            &modality
        };
        return Err(format!(
            "modality {shown} is not one of {}",
            rules.modalities.join(", ")
        ));
    }

    for h in headers {
        if let Some(t) = h.image_type.iter().find(|t| {
            rules
                .excluded_image_types
                .iter()
                .any(|x| x.eq_ignore_ascii_case(t))
        }) {
            return Err(format!(
                "ImageType contains {t} (localizer/scout, not a volume)"
            ));
        }
    }

    if headers.iter().any(|h| h.number_of_frames.unwrap_or(1) > 1) {
        return Err("multi-frame images are not supported; export single-frame slices".into());
    }
    if headers
        .iter()
        .any(|h| h.samples_per_pixel.unwrap_or(1) != 1)
    {
        return Err("colour images are not CT slices".into());
    }
    Ok(())
}

/// One grid without duplicate positions, axial within the tilt limit, enough slices, thin
/// enough.
fn select_geometry(
    first: &InstanceHeader,
    headers: &[&InstanceHeader],
    rules: &Selection,
) -> Result<(), String> {
    let geometry: Vec<SliceGeometry> = headers
        .iter()
        .map(|h| SliceGeometry::from_header(h))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("inconsistent geometry: {e}"))?;
    // One grid and no two slices at one position, as the volume will be assembled. A
    // series with duplicate positions is told so before its tilt: the first slice's normal
    // says little about a series that holds several acquisitions.
    let layout = lay_out_slices(&geometry).map_err(|e| match e {
        GeometryError::DuplicatePositions(n) => {
            format!(
                "{n} slices share a position with another (several acquisitions in one series?)"
            )
        }
        e => format!("inconsistent geometry: {e}"),
    })?;

    let normal = geometry[0].normal().ok_or("degenerate orientation")?;
    let tilt = normal[2].abs().clamp(0.0, 1.0).acos().to_degrees();
    if tilt > rules.max_axial_tilt_deg {
        return Err(format!(
            "not axial: slice normal is {tilt:.0}° from the head-feet axis (limit {:.0}°)",
            rules.max_axial_tilt_deg
        ));
    }

    if headers.len() < rules.min_slices {
        return Err(format!(
            "only {} slices (at least {} required)",
            headers.len(),
            rules.min_slices
        ));
    }

    let thickness = first
        .slice_thickness
        .or_else(|| layout.spacing.as_ref().map(|s| s.median_mm));
    match thickness {
        Some(t) if t > rules.max_slice_thickness_mm => {
            return Err(format!(
                "slice thickness {t:.2} mm exceeds {:.2} mm",
                rules.max_slice_thickness_mm
            ));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn slice(z: f64) -> InstanceHeader {
        InstanceHeader {
            series_instance_uid: Some("S".into()),
            modality: Some("CT".into()),
            image_type: vec!["ORIGINAL".into(), "PRIMARY".into(), "AXIAL".into()],
            rows: Some(512),
            columns: Some(512),
            pixel_spacing: Some([0.7, 0.7]),
            slice_thickness: Some(2.0),
            image_position: Some([-180.0, -180.0, z]),
            image_orientation: Some([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
            bits_allocated: Some(16),
            bits_stored: Some(12),
            rescale_intercept: Some(-1024.0),
            ..Default::default()
        }
    }

    fn series(n: usize) -> Vec<InstanceHeader> {
        (0..n).map(|i| slice(i as f64 * 2.0)).collect()
    }

    fn judge(headers: &[InstanceHeader]) -> Result<(), String> {
        let refs: Vec<&InstanceHeader> = headers.iter().collect();
        select(&refs, &Config::default().selection)
    }

    #[test]
    fn a_plain_axial_ct_passes() {
        assert_eq!(judge(&series(100)), Ok(()));
    }

    #[test]
    fn each_rule_gives_its_reason() {
        let mut mr = series(100);
        mr.iter_mut().for_each(|h| h.modality = Some("MR".into()));
        assert!(judge(&mr).unwrap_err().contains("modality MR"));

        let mut scout = series(100);
        scout[3].image_type = vec!["ORIGINAL".into(), "PRIMARY".into(), "LOCALIZER".into()];
        assert!(judge(&scout).unwrap_err().contains("LOCALIZER"));

        assert!(judge(&series(10)).unwrap_err().contains("only 10 slices"));

        let mut thick = series(100);
        thick.iter_mut().for_each(|h| h.slice_thickness = Some(8.0));
        assert!(judge(&thick).unwrap_err().contains("thickness"));

        let mut coronal = series(100);
        for (i, h) in coronal.iter_mut().enumerate() {
            h.image_orientation = Some([1.0, 0.0, 0.0, 0.0, 0.0, -1.0]);
            h.image_position = Some([0.0, i as f64, 0.0]);
        }
        assert!(judge(&coronal).unwrap_err().contains("not axial"));

        let mut mixed = series(100);
        mixed[50].rows = Some(256);
        assert!(judge(&mixed).unwrap_err().contains("Rows/Columns"));

        let mut dup = series(100);
        dup[1].image_position = dup[0].image_position;
        assert!(judge(&dup).unwrap_err().contains("share a position"));

        // Two faults: the duplicate positions are named, as volume assembly would.
        let mut tilted_twice = coronal.clone();
        tilted_twice[1].image_position = tilted_twice[0].image_position;
        assert!(
            judge(&tilted_twice)
                .unwrap_err()
                .contains("share a position")
        );

        let mut no_pos = series(100);
        no_pos[7].image_position = None;
        assert!(judge(&no_pos).unwrap_err().contains("Image Position"));

        let mut colour = series(100);
        colour[2].samples_per_pixel = Some(3);
        assert!(judge(&colour).unwrap_err().contains("colour"));

        let mut zero_spacing = series(100);
        zero_spacing[4].pixel_spacing = Some([0.0, 0.0]);
        zero_spacing[4].instance_number = Some(5);
        let reason = judge(&zero_spacing).unwrap_err();
        assert!(
            reason.starts_with("instance 5: Pixel Spacing 0\\0"),
            "{reason}"
        );

        let huge = series(2000);
        assert!(judge(&huge).unwrap_err().contains("selection.max_voxels"));
        // Even a CT-looking series is never analysed when lungwatch wrote it.
        let mut own = series(100);
        own.iter_mut()
            .for_each(|h| h.manufacturer = Some("lungwatch".into()));
        assert!(judge(&own).unwrap_err().contains("lungwatch's own"));
        let mut other = series(100);
        other[0].manufacturer = Some("SIEMENS".into());
        assert_eq!(judge(&other), Ok(()));
    }

    #[test]
    fn grouping_separates_series_and_orphans() {
        let mut a = slice(0.0);
        a.series_instance_uid = Some("A".into());
        let mut none = slice(0.0);
        none.series_instance_uid = None;
        let (groups, orphans) = group_by_series(vec![(a, 1), (slice(2.0), 2), (none, 3)]);
        assert_eq!(groups.len(), 2);
        assert_eq!(orphans.len(), 1);
    }
}
