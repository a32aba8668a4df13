//! Every shipped ONNX model loads in tract and reproduces onnxruntime's output on the
//! reference input recorded next to it (`models/fixtures/<name>.{input,output}.bin`, raw
//! little-endian f32, written by `models/train` with onnxruntime).

use std::path::{Path, PathBuf};

use tract_onnx::prelude::*;

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn models() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.retain(|p| p.extension().is_some_and(|e| e == "onnx"));
    out.sort();
    out
}

#[test]
fn every_model_matches_onnxruntime_on_its_fixture() {
    let models = models();
    if models.is_empty() {
        eprintln!("SKIPPED model parity: no ONNX models in models/ yet");
        return;
    }
    for model_path in models {
        let name = model_path
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let fixtures = model_path.parent().unwrap().join("fixtures");
        let input_path = fixtures.join(format!("{name}.input.bin"));
        let output_path = fixtures.join(format!("{name}.output.bin"));
        assert!(
            input_path.exists(),
            "{name}: no parity fixture {}",
            input_path.display()
        );
        let model = tract_onnx::onnx()
            .model_for_path(&model_path)
            .unwrap_or_else(|e| panic!("{name}: tract cannot load it: {e:?}"))
            .into_optimized()
            .unwrap_or_else(|e| panic!("{name}: tract cannot optimise it: {e:?}"))
            .into_runnable()
            .unwrap();
        let fact = model.model().input_fact(0).unwrap().clone();
        let shape: Vec<usize> = fact
            .shape
            .as_concrete()
            .unwrap_or_else(|| panic!("{name}: input shape is not fixed: {:?}", fact.shape))
            .to_vec();
        let input = read_f32(&input_path);
        assert_eq!(
            input.len(),
            shape.iter().product::<usize>(),
            "{name}: fixture size vs {shape:?}"
        );
        let tensor = tract_ndarray::ArrayD::from_shape_vec(shape, input).unwrap();
        let outputs = model.run(tvec!(Tensor::from(tensor).into())).unwrap();
        let ours: Vec<f32> = outputs[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        let reference = read_f32(&output_path);
        assert_eq!(ours.len(), reference.len(), "{name}: output size");
        let max_diff = ours
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let scale = reference
            .iter()
            .map(|v| v.abs())
            .fold(0f32, f32::max)
            .max(1.0);
        println!("{name}: max |tract - onnxruntime| = {max_diff:.3e} (output scale {scale:.2})");
        assert!(
            max_diff <= 1e-4 * scale,
            "{name}: tract differs from onnxruntime by {max_diff}"
        );
    }
}
