//! Loading the ONNX models with tract: checksum first, then a typed, optimised plan with
//! the manifest's fixed input shape. A loaded `ModelSet` is immutable and shared by every
//! job; each worker thread runs it through its own `Session` (tract state).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::prelude::*;

use super::manifest::{Manifest, ManifestError, ModelEntry, Preprocessing};
use crate::dicom::header::{hex, sha256};
use crate::report::ModelRef;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("model {name}: cannot read {path}: {source}")]
    Io {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "model {name}: {path} has sha256 {actual}, but the manifest says {expected}: the file was changed or replaced without updating models/manifest.toml"
    )]
    Checksum {
        name: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("model {name}: tract cannot load {path}: {message}")]
    Load {
        name: String,
        path: PathBuf,
        message: String,
    },
}

type Plan = Arc<TypedRunnableModel>;

/// One loaded network with its manifest entry.
pub struct Network {
    pub name: String,
    pub entry: ModelEntry,
    plan: Plan,
}

impl Network {
    fn load(dir: &Path, name: &str, entry: &ModelEntry) -> Result<Self, ModelError> {
        let path = dir.join(&entry.file);
        let bytes = std::fs::read(&path).map_err(|source| ModelError::Io {
            name: name.into(),
            path: path.clone(),
            source,
        })?;
        let actual = hex(&sha256(&bytes));
        if !actual.eq_ignore_ascii_case(&entry.sha256) {
            return Err(ModelError::Checksum {
                name: name.into(),
                path,
                expected: entry.sha256.clone(),
                actual,
            });
        }
        let load_error = |e: TractError| ModelError::Load {
            name: name.into(),
            path: path.clone(),
            message: format!("{e:#}"),
        };
        // The input fact is fixed before optimisation: tract then plans for that shape,
        // which is about twice as fast as a symbolic batch dimension.
        let plan = tract_onnx::onnx()
            .model_for_read(&mut bytes.as_slice())
            .and_then(|m| m.with_input_fact(0, f32::fact(&entry.input_shape).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(load_error)?;
        let output = plan.model().output_fact(0).map_err(load_error)?.clone();
        let shape = output.shape.as_concrete().map(|s| s.to_vec());
        if shape.as_deref() != Some(&entry.output_shape[..]) {
            return Err(ModelError::Load {
                name: name.into(),
                path,
                message: format!(
                    "output shape {:?} differs from the manifest's {:?}",
                    output.shape, entry.output_shape
                ),
            });
        }
        Ok(Network {
            name: name.into(),
            entry: entry.clone(),
            plan,
        })
    }

    pub fn preprocessing(&self) -> &Preprocessing {
        self.entry
            .preprocessing
            .as_ref()
            .expect("validated with the manifest")
    }

    pub fn input_len(&self) -> usize {
        self.entry.input_shape.iter().product()
    }

    /// A per-thread executor of this network.
    pub fn session(&self) -> Session {
        Session {
            state: None,
            plan: self.plan.clone(),
            shape: self.entry.input_shape.clone(),
        }
    }

    pub fn reference(&self) -> ModelRef {
        ModelRef {
            name: self.name.clone(),
            version: self.entry.version.clone(),
            sha256: self.entry.sha256.to_ascii_lowercase(),
        }
    }
}

/// Runs one network on one thread, reusing tract's state (its buffers) between calls.
pub struct Session {
    state: Option<TypedSimpleState>,
    plan: Plan,
    shape: Vec<usize>,
}

impl Session {
    /// Runs the network on `input` (the manifest's input shape, row-major) and copies the
    /// first output into `output`.
    pub fn run(&mut self, input: &[f32], output: &mut Vec<f32>) -> anyhow::Result<()> {
        let state = match &mut self.state {
            Some(state) => state,
            None => self.state.insert(self.plan.spawn()?),
        };
        let tensor = Tensor::from_shape(&self.shape, input)?;
        let result = state.run(tvec!(tensor.into()))?;
        let view = result[0].to_plain_array_view::<f32>()?;
        output.clear();
        match view.as_slice() {
            Some(contiguous) => output.extend_from_slice(contiguous),
            None => output.extend(view.iter().copied()),
        }
        Ok(())
    }
}

/// The three models of the pipeline, loaded once.
pub struct ModelSet {
    pub dir: PathBuf,
    pub lung: Network,
    pub lesion: Network,
    pub classifier: Network,
}

impl ModelSet {
    /// Reads `dir/manifest.toml`, verifies every checksum and loads every model.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let manifest = Manifest::load(&dir.join("manifest.toml"))?;
        let m = &manifest.models;
        Ok(ModelSet {
            dir: dir.to_path_buf(),
            lung: Network::load(dir, "lung_seg", &m.lung_seg)?,
            lesion: Network::load(dir, "lesion_seg", &m.lesion_seg)?,
            classifier: Network::load(dir, "classifier", &m.classifier)?,
        })
    }

    pub fn references(&self) -> Vec<ModelRef> {
        vec![
            self.lung.reference(),
            self.lesion.reference(),
            self.classifier.reference(),
        ]
    }
}
