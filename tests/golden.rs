//! The CPU engine against the PyTorch golden vectors, for every case of tests/fixtures/golden, with the
//! shipped F16 weights, the same weights widened to F32, and the PyTorch checkpoint fixtures.

mod common;

use common::{
    assert_matches_golden, fixtures, golden_manifest, read_png, shipped_tensors, write_safetensors,
};
use stylemill::engine::cpu::conv::Isa;
use stylemill::engine::cpu::CpuEngine;
use stylemill::engine::Engine;
use stylemill::model::styles::load_style;
use stylemill::model::TransformerNet;

#[test]
fn cpu_engine_matches_every_golden_case_with_shipped_f16_weights() {
    for case in golden_manifest().cases {
        let net = load_style(&case.style).unwrap();
        assert_matches_golden(&mut CpuEngine::new(&net, None), &case);
    }
}

#[test]
fn portable_kernels_match_the_golden_vectors_too() {
    for case in golden_manifest()
        .cases
        .iter()
        .filter(|c| c.style == "mosaic")
    {
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
        for case in golden_manifest().cases.iter().filter(|c| c.style == style) {
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
