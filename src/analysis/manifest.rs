//! `models/manifest.toml`: which ONNX files to load, their checksums and the
//! preprocessing contract each one was trained with. Free-text fields (task, descriptions
//! of the contract in words) are for people and are not read here.

use std::path::{Path, PathBuf};

use serde::Deserialize;

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

    fn validate(&self) -> Result<(), String> {
        let m = &self.models;
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
            if entry.input_shape != [1, 1, n, n] {
                return Err(format!(
                    "models.{name}.input_shape must be [1, 1, {n}, {n}] (preprocessing.size)"
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
            if !(n >= 16 && n <= 1024) || p.hu_clip[0] >= p.hu_clip[1] {
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
        let c = &m.classifier;
        if c.input_shape != [1, c.features.len()] || c.features.is_empty() {
            return Err("models.classifier.input_shape must be [1, number of features]".into());
        }
        if c.output_shape != [1, 3]
            || c.labels != ["covid19_pneumonia", "common_pneumonia", "normal_other"]
        {
            return Err("models.classifier must output [1, 3]: covid19_pneumonia, common_pneumonia, normal_other".into());
        }
        Ok(())
    }
}
