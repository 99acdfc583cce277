//! The CUDA engine on a real GPU: every kernel against the CPU engine's layer with the checks
//! tests/kernels_cpu.rs runs on the CPU emulation (tests/common/kernel_checks.rs), here on
//! sizes that span many blocks too, the whole network against every golden case, batches (of
//! 1080p frames in chunks whose copies overlap the kernels, too) against single frames, a video run
//! with `--device cuda`, and `mpirun -np 2` sharing one GPU giving the same bytes as `-np 1`.
//!
//! These need an NVIDIA GPU and driver: run them with
//! `cargo test --release --test cuda -- --ignored` (NVRTC from the CUDA toolkit, or
//! `STYLEMILL_NVRTC_DIR=target/cuda-tools/nvidia/cuda_nvrtc/lib` after scripts/test-tools.sh).

mod common;

use common::kernel_checks::*;
use common::*;
use stylemill::engine::cpu::CpuEngine;
use stylemill::engine::cuda::CudaEngine;
use stylemill::engine::{quantize, Engine, Precision};
use stylemill::frame::{Frame, FrameSize};
use stylemill::model::styles::load_style;
use stylemill::model::{Conv, Norm, TransformerNet};

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

/// The kernels on the GPU, an engine for each precision.
struct Device {
    fp32: CudaEngine,
    fast: CudaEngine,
}

impl Device {
    fn new(net: &TransformerNet) -> Device {
        Device {
            fp32: gpu(net, Precision::Fp32),
            fast: gpu(net, Precision::Fast),
        }
    }
}

impl KernelBackend for Device {
    fn conv(
        &mut self,
        conv: &Conv,
        input: &[f32],
        height: usize,
        width: usize,
        tensor_cores: bool,
    ) -> (Vec<f32>, usize, usize) {
        let engine = if tensor_cores {
            &mut self.fast
        } else {
            &mut self.fp32
        };
        engine.run_conv(conv, input, height, width).unwrap()
    }

    fn instance_norm(
        &mut self,
        norm: &Norm,
        input: &[f32],
        height: usize,
        width: usize,
        residual: Option<&[f32]>,
    ) -> (Vec<f32>, Vec<u16>) {
        self.fp32
            .run_instance_norm(norm, input, height, width, residual)
            .unwrap()
    }

    fn conv_then_norm(
        &mut self,
        (conv, norm): (&Conv, &Norm),
        input: &[f32],
        (height, width): (usize, usize),
        tensor_cores: bool,
        residual: Option<&[f32]>,
    ) -> (Vec<f32>, Vec<f32>) {
        let engine = if tensor_cores {
            &mut self.fast
        } else {
            &mut self.fp32
        };
        let (convolved, normalised) = engine
            .run_conv_then_norm(conv, Some(norm), input, height, width, residual)
            .unwrap();
        (convolved, normalised.expect("a norm was given"))
    }

    // The emulation's small odd sizes and sizes that span many blocks.
    fn conv_sizes(&self, _channels: usize) -> Vec<(usize, usize)> {
        vec![(7, 9), (13, 11), (21, 33), (53, 67), (120, 160)]
    }

    fn norm_sizes(&self, _channels: usize) -> Vec<(usize, usize)> {
        vec![(5, 7), (47, 53), (270, 480)]
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run with cargo test --release --test cuda -- --ignored"]
fn every_kind_of_convolution_matches_the_cpu_engine_in_both_precisions() {
    let net = load_style("mosaic").unwrap();
    assert_convolutions_match(&mut Device::new(&net), &net);
}

#[test]
#[ignore = "needs a CUDA GPU: run with cargo test --release --test cuda -- --ignored"]
fn instance_norm_after_each_convolution_matches_the_cpu_engine_with_its_statistics_from_the_convolution(
) {
    let net = load_style("mosaic").unwrap();
    assert_norms_after_convolutions_match(&mut Device::new(&net), &net);
}

#[test]
#[ignore = "needs a CUDA GPU: run with cargo test --release --test cuda -- --ignored"]
fn instance_norm_matches_the_cpu_engine_with_relu_and_with_a_residual() {
    let net = load_style("candy").unwrap();
    assert_instance_norms_match(&mut Device::new(&net), &net);
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

/// `frame` enlarged to `size` by repeating its pixels.
fn enlarged(frame: &Frame, size: FrameSize) -> Frame {
    let source = frame.size;
    let data = (0..size.height)
        .flat_map(|y| (0..size.width).map(move |x| (x, y)))
        .flat_map(|(x, y)| {
            let at = (y * source.height / size.height * source.width
                + x * source.width / size.width)
                * 3;
            frame.data[at..at + 3].to_vec()
        })
        .collect();
    Frame::new(size, data)
}

#[test]
#[ignore = "needs a CUDA GPU: run with cargo test --release --test cuda -- --ignored"]
fn a_batch_of_1080p_frames_in_overlapping_chunks_gives_the_same_frames_as_one_at_a_time() {
    let net = load_style("candy").unwrap();
    let small = decode(
        &media("rabbit320_h264_aac.mp4"),
        FrameSize {
            width: 320,
            height: 240,
        },
        false,
    );
    let hd = FrameSize {
        width: 1920,
        height: 1080,
    };
    // Five different frames: chunks of two, two and one, uploaded, computed and downloaded on
    // three streams at once.
    let frames: Vec<Frame> = small
        .iter()
        .step_by(40)
        .take(5)
        .map(|f| enlarged(f, hd))
        .collect();
    assert_eq!(frames.len(), 5);
    for precision in [Precision::Fast, Precision::Fp32] {
        nvrtc();
        let mut engine = CudaEngine::new(&net, 0, precision, 5).expect("a CUDA GPU");
        let batched = engine.stylize_batch(&frames).unwrap();
        assert_eq!(batched.len(), frames.len());
        for (frame, stylized) in frames.iter().zip(&batched) {
            assert_eq!(engine.stylize(frame).unwrap(), *stylized, "{precision:?}");
        }
        assert_ne!(batched[0], batched[1]);
    }
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
