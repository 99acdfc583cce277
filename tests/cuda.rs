//! The CUDA engine on a real GPU: every kernel against the CPU engine's layer on random inputs of
//! several sizes (odd ones included), the whole network against every golden case, a video run
//! with `--device cuda`, and `mpirun -np 2` sharing one GPU giving the same bytes as `-np 1`.
//!
//! These need an NVIDIA GPU and driver: run them with
//! `cargo test --release --test cuda -- --ignored` (NVRTC from the CUDA toolkit, or
//! `STYLEMILL_NVRTC_DIR=target/cuda-tools/nvidia/cuda_nvrtc/lib` after scripts/test-tools.sh).

mod common;

use common::*;
use stylemill::engine::cpu::{self, CpuEngine};
use stylemill::engine::cuda::CudaEngine;
use stylemill::engine::{quantize, Engine, Precision};
use stylemill::frame::FrameSize;
use stylemill::model::styles::load_style;
use stylemill::model::TransformerNet;

fn nvrtc() {
    if std::env::var_os("STYLEMILL_NVRTC_DIR").is_none() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/cuda-tools/nvidia/cuda_nvrtc/lib");
        // SAFETY: set before the engine's threads start.
        unsafe { std::env::set_var("STYLEMILL_NVRTC_DIR", dir) };
    }
}

fn gpu(net: &TransformerNet, precision: Precision) -> CudaEngine {
    nvrtc();
    CudaEngine::new(net, 0, precision, 4).expect("a CUDA GPU")
}

#[test]
#[ignore = "needs a CUDA GPU: run with cargo test --release --test cuda -- --ignored"]
fn every_convolution_kernel_matches_the_cpu_layer() {
    let net = load_style("mosaic").unwrap();
    for (precision, tolerance) in [(Precision::Fp32, 1e-5), (Precision::Fast, 2e-2)] {
        let mut engine = gpu(&net, precision);
        for conv in net.convolutions() {
            for (height, width) in [(16, 16), (21, 33), (53, 67), (120, 160)] {
                let input = noise(
                    height * width * conv.in_channels,
                    (height * width) as u64,
                    50.0,
                );
                let (expected, eh, ew) = cpu::run_conv(conv, &input, height, width);
                let (got, gh, gw) = engine.run_conv(conv, &input, height, width).unwrap();
                assert_eq!((gh, gw), (eh, ew));
                let difference = max_relative_difference(&got, &expected);
                assert!(
                    difference <= tolerance,
                    "{precision:?} conv {}->{} k{} s{} up{} at {height}x{width}: {difference}",
                    conv.in_channels,
                    conv.out_channels,
                    conv.kernel,
                    conv.stride,
                    conv.upsample
                );
            }
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run with cargo test --release --test cuda -- --ignored"]
fn instance_norm_kernels_match_the_cpu_layer() {
    let net = load_style("candy").unwrap();
    let mut engine = gpu(&net, Precision::Fp32);
    for norm in [&net.in1, &net.in2, &net.in3] {
        let channels = norm.weight.len();
        for (height, width) in [(5, 7), (53, 67), (270, 480)] {
            let input = noise(height * width * channels, channels as u64, 30.0);
            let residual = noise(height * width * channels, 7, 10.0);
            for skip in [None, Some(residual.as_slice())] {
                let expected = cpu::run_instance_norm(norm, &input, height, width, skip);
                let got = engine
                    .run_instance_norm(norm, &input, height, width, skip)
                    .unwrap();
                let difference = max_relative_difference(&got, &expected);
                assert!(
                    difference <= 1e-5,
                    "{channels} channels at {height}x{width}, residual {}: {difference}",
                    skip.is_some()
                );
            }
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run with cargo test --release --test cuda -- --ignored"]
fn frame_kernels_and_the_whole_network_match_every_golden_case() {
    let dir = fixtures().join("golden");
    for case in golden_manifest().cases {
        let net = load_style(&case.style).unwrap();
        let frame = read_png(&dir.join(&case.input));
        let mut fp32 = gpu(&net, Precision::Fp32);
        assert_matches_golden(&mut fp32, &case);
        let output = fp32.forward(&frame).unwrap();
        let golden_png = read_png(&dir.join(&case.output_png));
        let stylized = gpu(&net, Precision::Fp32).stylize(&frame).unwrap();
        assert_eq!(
            stylized.data,
            quantize(&output),
            "the GPU's 8-bit conversion rounds like the CPU's"
        );
        let fast = gpu(&net, Precision::Fast).stylize(&frame).unwrap();
        let quality = psnr(&fast.data, &golden_png.data);
        assert!(
            quality >= 40.0,
            "{} {}: fast mode PSNR {quality:.1} dB",
            case.input,
            case.style
        );
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run with cargo test --release --test cuda -- --ignored"]
fn batches_give_the_same_frames_as_single_frames_even_after_a_larger_frame() {
    let net = load_style("udnie").unwrap();
    let input = media("rabbit320_h264_aac.mp4");
    let frames = decode(
        &input,
        FrameSize {
            width: 320,
            height: 240,
        },
        false,
    );
    let mut engine = gpu(&net, Precision::Fp32);
    // A larger single frame first: the batch of more, smaller frames must not reuse buffers
    // sized for it that cannot hold the batch.
    let large = decode(
        &input,
        FrameSize {
            width: 1280,
            height: 720,
        },
        true,
    );
    engine.stylize(&large[0]).unwrap();
    let batched = engine.stylize_batch(&frames[..6]).unwrap();
    for (frame, stylized) in frames[..6].iter().zip(&batched) {
        assert_eq!(engine.stylize(frame).unwrap(), *stylized);
    }
    let cpu_frame = CpuEngine::new(&net, None).stylize(&frames[0]).unwrap();
    let equal = cpu_frame
        .data
        .iter()
        .zip(&batched[0].data)
        .filter(|(a, b)| a == b)
        .count();
    assert!(equal as f64 / cpu_frame.data.len() as f64 >= 0.999);
}

#[test]
#[ignore = "needs a CUDA GPU: run with cargo test --release --test cuda -- --ignored"]
fn a_video_runs_on_the_gpu_and_mpirun_sharing_one_gpu_gives_the_same_bytes() {
    nvrtc();
    let dir = tempfile::tempdir().unwrap();
    let input = media("rabbit320_h264_aac.mp4");
    let single = dir.path().join("np1.mp4");
    let extra = ["--device", "cuda", "--limit", "40", "--chunk-frames", "8"];
    let (ok, _, stderr) = stylemill(&run_args(&input, &single, "candy", &extra));
    assert!(ok, "{stderr}");
    assert!(stderr.contains("rank 0: cuda:0"), "{stderr}");
    assert_eq!(video_stream(&probe(&single)).frames(), 40);
    let shared = dir.path().join("np2.mp4");
    let run = mpirun(2, &run_args(&input, &shared, "candy", &extra));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("rank 1: cuda:0"),
        "both ranks share GPU 0:\n{stderr}"
    );
    assert!(std::fs::read(&single).unwrap() == std::fs::read(&shared).unwrap());
}
