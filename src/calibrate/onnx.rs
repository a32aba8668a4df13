//! A fitted classifier as ONNX bytes: the shipped classifier's graph (Gemm then Softmax
//! over axis 1, opset 17, IR 8), written with the protobuf types tract itself reads.

use prost::Message;
use tract_onnx::pb;

use super::fit::Fitted;

const FLOAT: i32 = pb::tensor_proto::DataType::Float as i32;

fn value_info(name: &str, dims: &[i64]) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: FLOAT,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| pb::tensor_shape_proto::Dimension {
                            value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tensor(name: &str, dims: &[i64], values: &[f64]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: FLOAT,
        float_data: values.iter().map(|&v| v as f32).collect(),
        ..Default::default()
    }
}

/// The model's bytes; `input` and `output` are the manifest's tensor names.
pub fn encode(model: &Fitted, input: &str, output: &str, producer_version: &str) -> Vec<u8> {
    let (f, k) = (model.features as i64, model.classes as i64);
    let node = |op: &str, inputs: &[&str], out: &str, attribute| pb::NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![out.into()],
        attribute,
        ..Default::default()
    };
    let axis = pb::AttributeProto {
        name: "axis".into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: 1,
        ..Default::default()
    };
    let graph = pb::GraphProto {
        name: "lungwatch_pattern_classifier".into(),
        node: vec![
            node("Gemm", &[input, "W", "b"], "logits", vec![]),
            node("Softmax", &["logits"], output, vec![axis]),
        ],
        initializer: vec![tensor("W", &[f, k], &model.w), tensor("b", &[k], &model.b)],
        input: vec![value_info(input, &[1, f])],
        output: vec![value_info(output, &[1, k])],
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        producer_name: "lungwatch-calibrate".into(),
        producer_version: producer_version.into(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::prelude::*;

    #[test]
    fn tract_runs_the_export_as_the_rust_model_predicts() {
        let model = Fitted {
            w: (0..12 * 3)
                .map(|i| ((i * 37 % 11) as f64 - 5.0) * 0.3)
                .collect(),
            b: vec![0.4, -0.1, -0.3],
            features: 12,
            classes: 3,
            iterations: 0,
        };
        let bytes = encode(&model, "features", "probabilities", "test");
        let plan = tract_onnx::onnx()
            .model_for_read(&mut bytes.as_slice())
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        for row in 0..5 {
            let x: Vec<f64> = (0..12)
                .map(|j| ((row * 13 + j * 7) % 9) as f64 * 0.2 - 0.6)
                .collect();
            let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let input = tract_ndarray::Array2::from_shape_vec((1, 12), xf).unwrap();
            let out = plan.run(tvec!(Tensor::from(input).into())).unwrap();
            let got = out[0].to_plain_array_view::<f32>().unwrap();
            let want = model.predict(&x);
            for k in 0..3 {
                assert!(
                    (got[[0, k]] as f64 - want[k]).abs() < 1e-5,
                    "{got:?} vs {want:?}"
                );
            }
        }
    }
}
