//! The CPU engine against the PyTorch golden vectors, for every case of tests/fixtures/golden, with the
//! shipped F16 weights, the same weights widened to F32, and the PyTorch checkpoint fixtures.

mod common;

use common::{fixtures, read_f32, read_png, shipped_tensors, write_safetensors};
use stylemill::engine::cpu::conv::Isa;
use stylemill::engine::cpu::CpuEngine;
use stylemill::engine::{quantize, Engine};
use stylemill::model::styles::load_style;
use stylemill::model::TransformerNet;

#[derive(serde::Deserialize)]
struct Manifest {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    input: String,
    style: String,
    output_f32: String,
    output_png: String,
}

fn manifest() -> Manifest {
    let text = std::fs::read_to_string(fixtures().join("golden/manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Max abs difference <= 0.01 and at least 99.9% of 8-bit pixels equal, as golden/README says.
fn assert_matches_golden(engine: &mut dyn Engine, case: &Case) {
    let dir = fixtures().join("golden");
    let frame = read_png(&dir.join(&case.input));
    let output = engine.forward(&frame).unwrap();
    let expected = read_f32(&dir.join(&case.output_f32));
    assert_eq!(output.len(), expected.len(), "{}", case.output_f32);
    let max_diff = output
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        max_diff <= 0.01,
        "{} with {}: max abs difference {max_diff}",
        case.input,
        case.style
    );
    let expected_png = read_png(&dir.join(&case.output_png));
    let ours = quantize(&output);
    let equal = ours
        .iter()
        .zip(&expected_png.data)
        .filter(|(a, b)| a == b)
        .count();
    let fraction = equal as f64 / ours.len() as f64;
    assert!(
        fraction >= 0.999,
        "{}: only {fraction} of 8-bit values equal",
        case.output_png
    );
}

#[test]
fn cpu_engine_matches_every_golden_case_with_shipped_f16_weights() {
    for case in manifest().cases {
        let net = load_style(&case.style).unwrap();
        assert_matches_golden(&mut CpuEngine::new(&net, None), &case);
    }
}

#[test]
fn portable_kernels_match_the_golden_vectors_too() {
    for case in manifest().cases.iter().filter(|c| c.style == "mosaic") {
        let net = load_style(&case.style).unwrap();
        assert_matches_golden(&mut CpuEngine::with_isa(&net, None, Isa::Portable), case);
    }
}

#[test]
fn f32_weights_match_the_golden_vectors() {
    let dir = tempfile::tempdir().unwrap();
    for style in ["candy", "udnie"] {
        let path = dir.path().join(format!("{style}_f32.safetensors"));
        write_safetensors(&shipped_tensors(style), &path);
        let net = TransformerNet::load(&path).unwrap();
        for case in manifest().cases.iter().filter(|c| c.style == style) {
            assert_matches_golden(&mut CpuEngine::new(&net, None), case);
        }
    }
}

#[test]
fn pytorch_checkpoints_give_the_same_output_as_udnie_safetensors() {
    let frame = read_png(&fixtures().join("golden/synthetic_67x53.png"));
    let reference = CpuEngine::new(&load_style("udnie").unwrap(), None)
        .forward(&frame)
        .unwrap();
    for fixture in ["udnie_zip.pth", "udnie_legacy.pth"] {
        let net =
            TransformerNet::load(&fixtures().join("models/pth-fixtures").join(fixture)).unwrap();
        let output = CpuEngine::new(&net, None).forward(&frame).unwrap();
        assert_eq!(output, reference, "{fixture}");
    }
}
