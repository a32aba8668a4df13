//! `models/manifest.toml`: which ONNX files to load, their checksums and the
//! preprocessing contract each one was trained with. Free-text fields (task, descriptions
//! of the contract in words) are for people and are not read here.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::report::Class;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: cannot read the model manifest: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid model manifest: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub manifest_version: u32,
    pub models: Models,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Models {
    pub lung_seg: ModelEntry,
    pub lesion_seg: ModelEntry,
    pub classifier: ModelEntry,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ModelEntry {
    pub file: String,
    pub version: String,
    pub sha256: String,
    pub input_shape: Vec<usize>,
    pub output_shape: Vec<usize>,
    pub labels: Vec<String>,
    #[serde(default)]
    pub preprocessing: Option<Preprocessing>,
    /// The numeric rules of `postprocessing` (the lesion model's false-positive control);
    /// the table's free-text fields are for people.
    #[serde(default)]
    pub postprocessing: Option<Postprocessing>,
    /// Classifier only: the input features, in order, by the names `quantify` knows.
    #[serde(default)]
    pub features: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Preprocessing {
    pub hu_clip: [f32; 2],
    pub size: usize,
    pub pad_hu: f32,
    /// Fixed frame pixel size (lung model: a frame centred on the image).
    #[serde(default)]
    pub pixel_mm: Option<f64>,
    /// Lung-box frame (lesion model): side = max(w, h) × box_scale + box_margin_mm.
    #[serde(default)]
    pub box_scale: Option<f64>,
    #[serde(default)]
    pub box_margin_mm: Option<f64>,
    /// 2.5D input (lesion model): the channels are the slices z-k, z, z+k, with
    /// k = max(1, round(context_mm / slice spacing)), clamped to the series.
    #[serde(default)]
    pub context_mm: Option<f64>,
}

impl Preprocessing {
    /// The input channels this preprocessing feeds: 3 with a slice context, else 1.
    pub fn channels(&self) -> usize {
        if self.context_mm.is_some() { 3 } else { 1 }
    }
}

/// The numeric rules of a segmentation model's `postprocessing` table: the lesion model's
/// false-positive control, the lung model's gas-pocket removal.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Postprocessing {
    /// 3D 6-connected lesion components under this volume are not reported.
    #[serde(default)]
    pub min_component_ml: Option<f64>,
    /// A zone scores in the severity score only from this lesion share on.
    #[serde(default)]
    pub zone_min_ratio: Option<f64>,
    /// A caution, not a rule: an affected ratio above 0 and under this, on a scan not
    /// called normal, is of the size seen as false positives on normal scans. Optional.
    #[serde(default)]
    pub low_burden_ratio: Option<f64>,
    /// Lung model: lung-labelled voxels below this HU are aerated.
    #[serde(default)]
    pub gas_pocket_aerated_below_hu: Option<f64>,
    /// Lung model: an aerated component under this share of the largest is a pocket...
    #[serde(default)]
    pub gas_pocket_max_share: Option<f64>,
    /// ...removed when it holds at least this volume.
    #[serde(default)]
    pub gas_pocket_min_ml: Option<f64>,
}

/// The lung model's gas-pocket rule, validated (see `Manifest::validate`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GasPocketRules {
    pub aerated_below_hu: i16,
    pub max_share: f64,
    pub min_ml: f64,
}

/// The lesion model's false-positive rules, validated (see `Manifest::validate`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LesionRules {
    pub min_component_ml: f64,
    pub zone_min_ratio: f64,
    /// 0 when the manifest gives no low-burden caution.
    pub low_burden_ratio: f64,
}

impl ModelEntry {
    /// The gas-pocket rule of the lung model's entry (validated at load).
    pub fn gas_pocket_rules(&self) -> GasPocketRules {
        let p = self.postprocessing.clone().unwrap_or_default();
        GasPocketRules {
            aerated_below_hu: p.gas_pocket_aerated_below_hu.expect("validated") as i16,
            max_share: p.gas_pocket_max_share.expect("validated"),
            min_ml: p.gas_pocket_min_ml.expect("validated"),
        }
    }

    /// The false-positive rules of the lesion model's entry (validated at load).
    pub fn lesion_rules(&self) -> LesionRules {
        let p = self.postprocessing.clone().unwrap_or_default();
        LesionRules {
            min_component_ml: p.min_component_ml.unwrap_or(0.0),
            zone_min_ratio: p.zone_min_ratio.unwrap_or(0.0),
            low_burden_ratio: p.low_burden_ratio.unwrap_or(0.0),
        }
    }
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |message: String| ManifestError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let manifest: Manifest = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if manifest.manifest_version != 1 {
            return Err(invalid(format!(
                "manifest_version {} is not supported (this lungwatch reads version 1)",
                manifest.manifest_version
            )));
        }
        manifest.validate().map_err(invalid)?;
        Ok(manifest)
    }

    /// The contract of each model: shapes and labels, preprocessing, post-processing
    /// rules, the classifier's features.
    fn validate(&self) -> Result<(), String> {
        let m = &self.models;
        validate_segmenters(m)?;
        validate_postprocessing(m)?;
        validate_classifier(&m.classifier)
    }
}

/// Both segmentation models' shapes, labels and preprocessing.
fn validate_segmenters(m: &Models) -> Result<(), String> {
    for (name, entry, classes) in [
        (
            "lung_seg",
            &m.lung_seg,
            &["background", "right_lung", "left_lung"][..],
        ),
        (
            "lesion_seg",
            &m.lesion_seg,
            &["background", "ground_glass", "consolidation"][..],
        ),
    ] {
        let p = entry
            .preprocessing
            .as_ref()
            .ok_or(format!("models.{name}.preprocessing is missing"))?;
        let n = p.size;
        if let Some(mm) = p.context_mm
            && !(name == "lesion_seg" && mm.is_finite() && (0.1..=20.0).contains(&mm))
        {
            return Err(format!(
                "models.{name}.preprocessing.context_mm: only the lesion model takes a slice context, of 0.1 to 20 mm"
            ));
        }
        let c = p.channels();
        if entry.input_shape != [1, c, n, n] {
            return Err(format!(
                "models.{name}.input_shape must be [1, {c}, {n}, {n}] (preprocessing.size; 3 channels with context_mm, else 1)"
            ));
        }
        if entry.output_shape != [1, classes.len(), n, n] {
            return Err(format!(
                "models.{name}.output_shape must be [1, {}, {n}, {n}]",
                classes.len()
            ));
        }
        if entry.labels != classes {
            return Err(format!("models.{name}.labels must be {classes:?}"));
        }
        if !(16..=1024).contains(&n) || p.hu_clip[0] >= p.hu_clip[1] {
            return Err(format!(
                "models.{name}.preprocessing: size or hu_clip out of range"
            ));
        }
    }
    let lung = m.lung_seg.preprocessing.as_ref().expect("checked above");
    if !lung.pixel_mm.is_some_and(|v| v > 0.0) {
        return Err("models.lung_seg.preprocessing.pixel_mm must be > 0".into());
    }
    let lesion = m.lesion_seg.preprocessing.as_ref().expect("checked above");
    if !(lesion.box_scale.is_some_and(|v| v > 0.0)
        && lesion.box_margin_mm.is_some_and(|v| v >= 0.0))
    {
        return Err(
            "models.lesion_seg.preprocessing needs box_scale > 0 and box_margin_mm >= 0".into(),
        );
    }
    Ok(())
}

/// The lung model's gas-pocket rule and the lesion model's false-positive rules.
fn validate_postprocessing(m: &Models) -> Result<(), String> {
    let lung_rules = m.lung_seg.postprocessing.clone().unwrap_or_default();
    for (key, value, range) in [
        (
            "gas_pocket_aerated_below_hu",
            lung_rules.gas_pocket_aerated_below_hu,
            -1000.0..=0.0,
        ),
        (
            "gas_pocket_max_share",
            lung_rules.gas_pocket_max_share,
            0.0..=1.0,
        ),
        (
            "gas_pocket_min_ml",
            lung_rules.gas_pocket_min_ml,
            0.0..=1000.0,
        ),
    ] {
        match value {
            Some(v) if range.contains(&v) => {}
            Some(_) => {
                return Err(format!(
                    "models.lung_seg.postprocessing.{key} must be in {range:?}"
                ));
            }
            None => {
                return Err(format!(
                    "models.lung_seg.postprocessing.{key} is missing (the gas-pocket rule)"
                ));
            }
        }
    }
    let rules = m.lesion_seg.postprocessing.as_ref();
    match rules.and_then(|r| r.min_component_ml) {
            Some(v) if v.is_finite() && (0.0..=100.0).contains(&v) => {}
            Some(_) => return Err("models.lesion_seg.postprocessing.min_component_ml must be in 0..=100 (mL)".into()),
            None => return Err("models.lesion_seg.postprocessing.min_component_ml is missing (the false-positive rule; 0 turns it off)".into()),
        }
    match rules.and_then(|r| r.zone_min_ratio) {
        Some(v) if v.is_finite() && (0.0..0.25).contains(&v) => {}
        Some(_) => {
            return Err(
                "models.lesion_seg.postprocessing.zone_min_ratio must be in 0..0.25".into(),
            );
        }
        None => {
            return Err(
                "models.lesion_seg.postprocessing.zone_min_ratio is missing (0 turns the rule off)"
                    .into(),
            );
        }
    }
    match rules.and_then(|r| r.low_burden_ratio) {
        Some(v) if !(v.is_finite() && (0.0..=0.1).contains(&v)) => {
            return Err(
                "models.lesion_seg.postprocessing.low_burden_ratio must be in 0..=0.1".into(),
            );
        }
        _ => {}
    }
    Ok(())
}

/// The classifier's input features (each one lungwatch computes) and its three classes.
fn validate_classifier(c: &ModelEntry) -> Result<(), String> {
    if c.input_shape != [1, c.features.len()] || c.features.is_empty() {
        return Err("models.classifier.input_shape must be [1, number of features]".into());
    }
    if let Some(unknown) = c
        .features
        .iter()
        .find(|f| !super::quantify::FEATURES.contains(&f.as_str()))
    {
        return Err(format!(
            "models.classifier.features: {unknown:?} is not a feature this lungwatch computes ({})",
            super::quantify::FEATURES.join(", ")
        ));
    }
    if c.output_shape != [1, 3] || c.labels != Class::ALL.map(Class::manifest_label) {
        return Err("models.classifier must output [1, 3]: covid19_pneumonia, common_pneumonia, normal_other".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> String {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/manifest.toml");
        std::fs::read_to_string(p).expect("the repository's models/manifest.toml")
    }

    fn load_text(text: &str, tag: &str) -> Result<Manifest, ManifestError> {
        let p = std::env::temp_dir().join(format!(
            "lungwatch-manifest-{}-{tag}.toml",
            std::process::id()
        ));
        std::fs::write(&p, text).unwrap();
        let r = Manifest::load(&p);
        let _ = std::fs::remove_file(&p);
        r
    }

    #[test]
    fn the_shipped_manifest_has_its_false_positive_rules() {
        let m = load_text(&shipped(), "ok").expect("shipped manifest is valid");
        let rules = m.models.lesion_seg.lesion_rules();
        assert!(rules.min_component_ml > 0.0);
        assert!(rules.zone_min_ratio > 0.0);
        assert!(rules.low_burden_ratio > 0.0);
        // The lung model's table holds the gas-pocket rule, not the lesion rules.
        assert_eq!(m.models.lung_seg.lesion_rules(), LesionRules::default());
        let gas = m.models.lung_seg.gas_pocket_rules();
        assert!(gas.aerated_below_hu < 0 && gas.max_share > 0.0 && gas.min_ml > 0.0);
    }

    #[test]
    fn a_missing_rule_or_an_unknown_feature_is_refused() {
        let text = shipped();
        let no_rule: String = text
            .lines()
            .filter(|l| !l.starts_with("min_component_ml"))
            .collect::<Vec<_>>()
            .join("\n");
        let e = load_text(&no_rule, "norule").unwrap_err().to_string();
        assert!(e.contains("min_component_ml is missing"), "{e}");
        let bad_ratio = text.replace("zone_min_ratio = 0.01", "zone_min_ratio = 0.5");
        assert_ne!(bad_ratio, text);
        assert!(load_text(&bad_ratio, "ratio").is_err());
        // The low-burden caution is optional, but a given value must make sense.
        let no_caution: String = text
            .lines()
            .filter(|l| !l.starts_with("low_burden_ratio"))
            .collect::<Vec<_>>()
            .join("\n");
        let m = load_text(&no_caution, "nocaution").expect("the caution is optional");
        assert_eq!(m.models.lesion_seg.lesion_rules().low_burden_ratio, 0.0);
        let bad_caution = text.replace("low_burden_ratio = 0.01", "low_burden_ratio = 1.0");
        assert_ne!(bad_caution, text);
        let e = load_text(&bad_caution, "caution").unwrap_err().to_string();
        assert!(e.contains("low_burden_ratio must be in"), "{e}");
        let unknown = text.replace("\"lung_base_ratio\"]", "\"vessel_count\"]");
        assert_ne!(unknown, text);
        let e = load_text(&unknown, "feature").unwrap_err().to_string();
        assert!(e.contains("\"vessel_count\" is not a feature"), "{e}");
    }
    /// The shipped manifest with the lesion model's channels and slice context set, and
    /// optionally a context on the lung model.
    fn with_context(lesion_channels: i64, context_mm: Option<f64>, lung_context: bool) -> String {
        let mut t: toml::Table = toml::from_str(&shipped()).unwrap();
        let models = t["models"].as_table_mut().unwrap();
        let lesion = models["lesion_seg"].as_table_mut().unwrap();
        lesion["input_shape"].as_array_mut().unwrap()[1] = lesion_channels.into();
        let pre = lesion["preprocessing"].as_table_mut().unwrap();
        pre.remove("context_mm");
        if let Some(mm) = context_mm {
            pre.insert("context_mm".into(), mm.into());
        }
        if lung_context {
            let lung = models["lung_seg"].as_table_mut().unwrap();
            lung["input_shape"].as_array_mut().unwrap()[1] = 3.into();
            let pre = lung["preprocessing"].as_table_mut().unwrap();
            pre.insert("context_mm".into(), 2.5.into());
        }
        toml::to_string(&t).unwrap()
    }

    #[test]
    fn a_slice_context_needs_three_input_channels_on_the_lesion_model_only() {
        let m = load_text(&with_context(3, Some(2.5), false), "ctx").expect("2.5D is valid");
        let p = m.models.lesion_seg.preprocessing.unwrap();
        assert_eq!((p.channels(), p.context_mm), (3, Some(2.5)));
        load_text(&with_context(1, None, false), "plain").expect("2D is valid");
        for (text, tag) in [
            (with_context(1, Some(2.5), false), "ctx1"),
            (with_context(3, None, false), "noctx"),
            (with_context(3, Some(0.0), false), "zero"),
            (with_context(3, Some(2.5), true), "lung"),
        ] {
            let e = load_text(&text, tag).unwrap_err().to_string();
            assert!(
                e.contains("input_shape") || e.contains("context_mm"),
                "{tag}: {e}"
            );
        }
    }
}
