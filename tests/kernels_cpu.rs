//! The CUDA kernels' own source, run on the CPU in CI without a GPU: kernels/*.cu built as C++
//! against kernels/emulation.h (blocks one at a time, a block's threads as real threads taking
//! turns at every barrier; `mma.sync`, `ldmatrix` and `cp.async` through common.cuh's CPU
//! twins of their fragment layouts and completion rules), launched with the engine's own
//! launch shapes, and compared with the CPU engine's layers: every kind of convolution in both
//! precisions, InstanceNorm with ReLU and with a residual, alone and after each convolution
//! (with the statistics the GEMMs sum in their epilogue), and the frame conversion. Five
//! mutants of conv.cu (a wrong fragment index, a tile read before its asynchronous copies land,
//! the last layer's window read before its copies land, statistics summed over half the rows, a
//! missing barrier) must fail the same comparisons, and
//! the kernels' accesses must stay inside their buffers under AddressSanitizer. The build needs
//! a C++20 compiler (`c++`, or `CXX`) with its AddressSanitizer runtime.

mod common;

use common::kernel_checks::*;
use common::*;
use libloading::{Library, Symbol};
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use stylemill::engine::cpu::CpuEngine;
use stylemill::engine::cuda::{
    conv_launch, norm_launch, norm_partials, to_bf16, LaunchShape, PackedWeights,
};
use stylemill::engine::{Engine, EngineError, Precision};
use stylemill::frame::{Frame, FrameSize};
use stylemill::model::styles::load_style;
use stylemill::model::{Conv, Norm, TransformerNet};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Set in the child process of the AddressSanitizer test, which preloads its runtime: the
/// harness is built with AddressSanitizer there.
const SANITIZE: &str = "STYLEMILL_HARNESS_SANITIZE";

fn sanitized() -> bool {
    std::env::var_os(SANITIZE).is_some()
}

fn compiler() -> String {
    std::env::var("CXX").unwrap_or_else(|_| "c++".into())
}

/// Builds the harness against the kernel sources in `kernels` into `library`.
fn build(kernels: &Path, library: &Path) -> Library {
    let compiler = compiler();
    let sanitizer: &[&str] = if sanitized() {
        &["-fsanitize=address", "-fno-omit-frame-pointer"]
    } else {
        &[]
    };
    let output = std::process::Command::new(&compiler)
        .args(["-std=c++20", "-O2", "-shared", "-fPIC", "-pthread"])
        .args(sanitizer)
        .args(["-Wno-unknown-pragmas", "-Wno-sign-compare"])
        .args([
            "-fvisibility=hidden",
            "-fvisibility-inlines-hidden",
            "-Wl,-Bsymbolic",
        ])
        .arg(format!("-I{}", kernels.display()))
        .arg(root().join("tests/harness/kernels_cpu.cpp"))
        .arg("-o")
        .arg(library)
        .output()
        .unwrap_or_else(|e| panic!("{compiler} (a C++20 compiler) runs: {e}"));
    assert!(
        output.status.success(),
        "the kernels do not build for the CPU:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // SAFETY: the library is the harness just built; its initialisers are the C++ runtime's.
    unsafe { Library::new(library) }.unwrap()
}

/// The harness built from the shipped kernels, once per test run.
fn shipped() -> &'static Library {
    static LIBRARY: OnceLock<Library> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let dir = root().join("target/kernel-harness");
        std::fs::create_dir_all(&dir).unwrap();
        let name = if sanitized() {
            "shipped-asan.so"
        } else {
            "shipped.so"
        };
        build(&root().join("kernels"), &dir.join(name))
    })
}

/// The harness built from the kernels with `conv.cu` edited by replacing `from` with `to`.
fn mutant(dir: &Path, from: &str, to: &str) -> Library {
    let kernels = dir.join("kernels");
    std::fs::create_dir_all(&kernels).unwrap();
    for entry in std::fs::read_dir(root().join("kernels")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, kernels.join(path.file_name().unwrap())).unwrap();
    }
    let conv = std::fs::read_to_string(kernels.join("conv.cu")).unwrap();
    assert_eq!(conv.matches(from).count(), 1, "`{from}` once in conv.cu");
    std::fs::write(kernels.join("conv.cu"), conv.replacen(from, to, 1)).unwrap();
    build(&kernels, &dir.join("mutant.so"))
}

/// Input and weights as the kernel reads them (`ConvKernel::reads_bf16`, `PackedWeights`); the
/// GEMMs also write InstanceNorm partial sums unless given null.
type ConvEntry = unsafe extern "C" fn(
    i32,
    u32,
    u32,
    u32,
    *const c_void,
    *const c_void,
    *const f32,
    *mut f32,
    *mut f64,
    *const i32,
) -> ();

/// The kernels as the harness runs them on the CPU.
#[derive(Clone, Copy)]
struct Emulated<'a>(&'a Library);

impl Emulated<'_> {
    /// One convolution of `batch` maps, writing InstanceNorm partial sums into `partial` where
    /// the kernel can: the output, its size, and the partial sums' segments per image if it
    /// wrote them.
    fn convolve(
        &self,
        conv: &Conv,
        (input, batch): (&[f32], usize),
        (height, width): (usize, usize),
        tensor_cores: bool,
        partial: Option<&mut [f64]>,
    ) -> (Vec<f32>, usize, usize, Option<usize>) {
        let plan = conv_launch(conv, batch, height, width, tensor_cores);
        let (oh, ow) = plan.out;
        // A tensor-core layer's input (but the first layer's) is BF16 in the engine, written by
        // the InstanceNorm before it as its f32 result rounded (checked exactly by the
        // InstanceNorm test).
        let bf16_input;
        let input: *const c_void = if plan.kernel.reads_bf16() {
            bf16_input = to_bf16(input);
            bf16_input.as_ptr().cast()
        } else {
            input.as_ptr().cast()
        };
        let packed = PackedWeights::for_kernel(plan.kernel, conv);
        let weights: *const c_void = match &packed {
            PackedWeights::F32(weights) => weights.as_ptr().cast(),
            PackedWeights::Bf16(weights) => weights.as_ptr().cast(),
        };
        let summed = plan.statistics_segments.filter(|_| partial.is_some());
        let partial = partial.map_or(std::ptr::null_mut(), |p| p.as_mut_ptr());
        let mut output = vec![f32::NAN; batch * oh * ow * conv.out_channels];
        // SAFETY: the entry point's signature is ConvEntry; the buffers hold the launch's shapes.
        unsafe {
            let run: Symbol<ConvEntry> = self.0.get(b"emu_conv2d").unwrap();
            run(
                plan.kernel as i32,
                plan.shape.grid.0,
                plan.shape.grid.1,
                plan.shape.threads,
                input,
                weights,
                conv.bias.as_ptr(),
                output.as_mut_ptr(),
                partial,
                plan.ints.as_ptr(),
            );
        }
        (output, oh, ow, summed)
    }

    /// InstanceNorm of `x` with its ReLU or `residual` added: the partial sums from the
    /// convolution before (`summed`: them and their segments per image), or norm_partial_sums'.
    fn normalise(
        &self,
        norm: &Norm,
        mut x: Vec<f32>,
        (height, width): (usize, usize),
        residual: Option<&[f32]>,
        summed: Option<(Vec<f64>, usize)>,
    ) -> (Vec<f32>, Vec<u16>) {
        let channels = norm.weight.len();
        let plan = norm_launch(1, height, width, channels);
        let (hw, c) = ((height * width) as i32, channels as i32);
        let mut scale_shift = vec![f32::NAN; 2 * channels];
        let mut bf16 = vec![0xffffu16; x.len()];
        let mode = if residual.is_some() { 2 } else { 1 };
        // SAFETY: the entry points' signatures are these types; buffers fit the plan.
        unsafe {
            let (partial, segments) = summed.unwrap_or_else(|| {
                let mut partial = vec![f64::NAN; plan.segments * 2 * channels];
                let sums: Symbol<SumsEntry> = self.0.get(b"emu_norm_partial_sums").unwrap();
                let LaunchShape { grid, threads } = plan.sums;
                sums(
                    grid.0,
                    grid.1,
                    threads,
                    x.as_ptr(),
                    partial.as_mut_ptr(),
                    hw,
                    c,
                    plan.segment_pixels as i32,
                );
                (partial, plan.segments)
            });
            let finalize: Symbol<FinalizeEntry> = self.0.get(b"emu_norm_finalize").unwrap();
            let apply: Symbol<ApplyEntry> = self.0.get(b"emu_norm_apply").unwrap();
            finalize(
                plan.finalize.grid.0,
                plan.finalize.threads,
                partial.as_ptr(),
                norm.weight.as_ptr(),
                norm.bias.as_ptr(),
                scale_shift.as_mut_ptr(),
                1,
                segments as i32,
                hw,
                c,
            );
            apply(
                plan.apply.grid.0,
                plan.apply.grid.1,
                plan.apply.threads,
                x.as_mut_ptr(),
                scale_shift.as_ptr(),
                residual.unwrap_or(&scale_shift).as_ptr(),
                bf16.as_mut_ptr(),
                plan.image_quads as i32,
                c,
                mode,
                1,
            );
        }
        (x, bf16)
    }
}

impl KernelBackend for Emulated<'_> {
    fn conv(
        &mut self,
        conv: &Conv,
        input: &[f32],
        height: usize,
        width: usize,
        tensor_cores: bool,
    ) -> (Vec<f32>, usize, usize) {
        let (output, oh, ow, _) =
            self.convolve(conv, (input, 1), (height, width), tensor_cores, None);
        (output, oh, ow)
    }

    fn instance_norm(
        &mut self,
        norm: &Norm,
        input: &[f32],
        height: usize,
        width: usize,
        residual: Option<&[f32]>,
    ) -> (Vec<f32>, Vec<u16>) {
        self.normalise(norm, input.to_vec(), (height, width), residual, None)
    }

    fn conv_then_norm(
        &mut self,
        (conv, norm): (&Conv, &Norm),
        input: &[f32],
        (height, width): (usize, usize),
        tensor_cores: bool,
        residual: Option<&[f32]>,
    ) -> (Vec<f32>, Vec<f32>) {
        let mut partial = vec![f64::NAN; norm_partials(conv, 1, height, width, tensor_cores)];
        let (convolved, oh, ow, summed) = self.convolve(
            conv,
            (input, 1),
            (height, width),
            tensor_cores,
            Some(&mut partial),
        );
        let summed = summed.map(|segments| (partial, segments));
        let (normalised, _) = self.normalise(norm, convolved.clone(), (oh, ow), residual, summed);
        (convolved, normalised)
    }

    // Small odd sizes, as the emulation runs every thread of every block; the narrow layers
    // also on several partial tiles of the direct kernels' 16x16.
    fn conv_sizes(&self, channels: usize) -> Vec<(usize, usize)> {
        if channels >= 64 {
            vec![(7, 9)]
        } else {
            vec![(13, 11), (37, 21)]
        }
    }

    // One partial-sum segment (65536 elements), and several.
    fn norm_sizes(&self, _channels: usize) -> Vec<(usize, usize)> {
        vec![(5, 7), (47, 53)]
    }
}

#[test]
fn every_kind_of_convolution_matches_the_cpu_engine_in_both_precisions() {
    let net = load_style("mosaic").unwrap();
    assert_convolutions_match(&mut Emulated(shipped()), &net);
}

/// The kernels read and write only inside their buffers: the convolution, InstanceNorm and frame
/// checks again, in a child process with the harness built under AddressSanitizer. A read past
/// an input whose values feed no output, which the comparisons cannot see, fails here (the
/// direct kernels' wide tiles once read outside small images this way).
#[test]
fn the_kernels_stay_inside_their_buffers_under_address_sanitizer() {
    let compiler = compiler();
    let runtime = std::process::Command::new(&compiler)
        .arg("-print-file-name=libasan.so")
        .output()
        .unwrap();
    let runtime = PathBuf::from(String::from_utf8_lossy(&runtime.stdout).trim());
    assert!(
        runtime.is_absolute() && runtime.exists(),
        "{compiler} has no AddressSanitizer runtime ({}): install its libasan (Debian's g++ brings it)",
        runtime.display()
    );
    let checks = [
        "every_kind_of_convolution_matches_the_cpu_engine_in_both_precisions",
        "instance_norm_matches_the_cpu_engine_with_relu_and_with_a_residual",
        "instance_norm_after_each_convolution_matches_the_cpu_engine_with_its_statistics_from_the_convolution",
        "frames_convert_to_floats_and_back_cropped_and_rounded_as_the_cpu_engine_does",
        "a_batch_through_the_gemms_gives_each_image_its_own_output_and_statistics",
    ];
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(checks)
        .args(["--exact", "--test-threads=1"])
        .env(SANITIZE, "1")
        .env("LD_PRELOAD", &runtime)
        // The emulation's fibers switch stacks (swapcontext), which AddressSanitizer's fake
        // stacks do not follow.
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=0:detect_stack_use_after_return=0",
        )
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&child.stdout).into_owned()
        + &String::from_utf8_lossy(&child.stderr);
    assert!(
        child.status.success() && !printed.contains("ERROR: AddressSanitizer"),
        "{printed}"
    );
    assert_eq!(
        printed.matches(" ... ok").count(),
        checks.len(),
        "{printed}"
    );
}

#[test]
fn a_wrong_fragment_index_a_tile_read_before_it_lands_short_statistics_and_a_missing_barrier_are_caught(
) {
    let net = load_style("mosaic").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Whether the harness built with `from` replaced by `to` in conv.cu fails `check`.
    let caught = |name: &str, from: &str, to: &str, check: &dyn Fn(&mut Emulated) -> bool| {
        let library = mutant(&dir.path().join(name), from, to);
        check(&mut Emulated(&library))
    };
    let tensor_cores_off = |kernels: &mut Emulated| {
        conv_differences(kernels, &net)
            .iter()
            .any(|(_, _, bf16)| *bf16 > BF16_TOLERANCE)
    };
    let fp32_off = |kernels: &mut Emulated| {
        conv_differences(kernels, &net)
            .iter()
            .any(|(_, fp32, _)| *fp32 > FP32_TOLERANCE)
    };
    let norm_off = |kernels: &mut Emulated| {
        norm_after_convolution_differences(kernels, &net)
            .iter()
            .any(|(_, difference)| *difference > NORM_TOLERANCE)
    };
    // B's second fragment register holds k 8..15 of its channels: read k 0..7 again instead.
    assert!(
        caught(
            "fragment",
            "b_lane_k = (lane / 8 % 2) * 8;",
            "b_lane_k = 0;",
            &tensor_cores_off
        ),
        "a wrong B fragment index went unnoticed"
    );
    // Waiting for one cp.async group too few: a tile is read before its copies have landed.
    assert!(
        caught(
            "early-read",
            "cp_async_wait<TC_STAGES - 2>();",
            "cp_async_wait<TC_STAGES - 1>();",
            &tensor_cores_off
        ),
        "a tile read before its cp.async copies landed went unnoticed"
    );
    // The last layer's direct kernel on the tensor cores reading its window without waiting
    // for the window's copies.
    assert!(
        caught(
            "early-window",
            "    cp_async_commit();\n    cp_async_wait<0>();\n    __syncthreads();\n    // ldmatrix's",
            "    cp_async_commit();\n    __syncthreads();\n    // ldmatrix's",
            &tensor_cores_off
        ),
        "a window read before its cp.async copies landed went unnoticed"
    );
    // The statistics the GEMMs' epilogue sums for InstanceNorm, missing the last step of the
    // warp's butterfly: each column's sum holds half of its rows.
    assert!(
        caught(
            "statistics",
            "for (int lanes = ROW_LANES; lanes < 32; lanes *= 2) {",
            "for (int lanes = ROW_LANES; lanes < 16; lanes *= 2) {",
            &norm_off
        ),
        "InstanceNorm statistics from half the rows went unnoticed"
    );
    // The fp32 kernel without the barrier between staging a tile and reading it.
    assert!(
        caught(
            "barrier",
            "        __syncthreads();\n#pragma unroll\n        for (int t = 0; t < TILE_K; ++t) {",
            "#pragma unroll\n        for (int t = 0; t < TILE_K; ++t) {",
            &fp32_off
        ),
        "a missing __syncthreads went unnoticed"
    );
}

type SumsEntry = unsafe extern "C" fn(u32, u32, u32, *const f32, *mut f64, i32, i32, i32);
type FinalizeEntry = unsafe extern "C" fn(
    u32,
    u32,
    *const f64,
    *const f32,
    *const f32,
    *mut f32,
    i32,
    i32,
    i32,
    i32,
);
type ApplyEntry = unsafe extern "C" fn(
    u32,
    u32,
    u32,
    *mut f32,
    *const f32,
    *const f32,
    *mut u16,
    i32,
    i32,
    i32,
    i32,
);

#[test]
fn instance_norm_after_each_convolution_matches_the_cpu_engine_with_its_statistics_from_the_convolution(
) {
    let net = load_style("mosaic").unwrap();
    assert_norms_after_convolutions_match(&mut Emulated(shipped()), &net);
}

/// The GEMMs' blocks never span two images, so a batch gives each image the bytes and the
/// InstanceNorm partial sums it gets alone, at sizes that leave a partial block at every image's
/// end.
#[test]
fn a_batch_through_the_gemms_gives_each_image_its_own_output_and_statistics() {
    let net = load_style("mosaic").unwrap();
    let library = Emulated(shipped());
    for (conv, tensor_cores) in [
        (&net.conv2, false),
        (&net.conv2, true),
        (&net.deconv2, false),
        (&net.deconv2, true),
    ] {
        let (height, width) = (7, 9);
        let image = height * width * conv.in_channels;
        let batch = noise(3 * image, 5, 50.0);
        let partials = |frames| norm_partials(conv, frames, height, width, tensor_cores);
        let mut partial = vec![f64::NAN; partials(3)];
        let (output, _, _, summed) = library.convolve(
            conv,
            (&batch, 3),
            (height, width),
            tensor_cores,
            Some(&mut partial),
        );
        assert!(summed.is_some(), "a GEMM sums its output");
        for (i, input) in batch.chunks_exact(image).enumerate() {
            let mut alone = vec![f64::NAN; partials(1)];
            let (expected, _, _, _) = library.convolve(
                conv,
                (input, 1),
                (height, width),
                tensor_cores,
                Some(&mut alone),
            );
            let per_image = expected.len();
            assert!(
                output[i * per_image..(i + 1) * per_image] == expected[..],
                "conv {}->{} tensor cores {tensor_cores}: image {i} of the batch differs from it alone",
                conv.in_channels,
                conv.out_channels
            );
            assert!(
                partial[i * alone.len()..(i + 1) * alone.len()] == alone[..],
                "conv {}->{} tensor cores {tensor_cores}: image {i}'s partial sums differ from its own",
                conv.in_channels,
                conv.out_channels
            );
        }
    }
}

#[test]
fn instance_norm_matches_the_cpu_engine_with_relu_and_with_a_residual() {
    let net = load_style("candy").unwrap();
    assert_instance_norms_match(&mut Emulated(shipped()), &net);
}

type ToFloatEntry = unsafe extern "C" fn(u32, u32, *const u8, *mut f32, usize);
type ToBytesEntry = unsafe extern "C" fn(u32, u32, *const f32, *mut u8, i32, i32, i32, i32, i32);

#[test]
fn frames_convert_to_floats_and_back_cropped_and_rounded_as_the_cpu_engine_does() {
    let library = shipped();
    let (height, width, padded_h, padded_w) = (5usize, 7usize, 8usize, 8usize);
    let bytes: Vec<u8> = (0..height * width * 3)
        .map(|i| (i * 37 % 256) as u8)
        .collect();
    let mut floats = vec![f32::NAN; bytes.len()];
    let network_output: Vec<f32> = noise(padded_h * padded_w * 3, 3, 300.0)
        .iter()
        .map(|v| v + 128.0)
        .collect();
    let mut frame = vec![0u8; height * width * 3];
    // SAFETY: the entry points' signatures are these types; the buffers hold the shapes.
    unsafe {
        let to_float: Symbol<ToFloatEntry> = library.get(b"emu_rgb8_to_f32").unwrap();
        let shape = LaunchShape::elementwise(bytes.len());
        to_float(
            shape.grid.0,
            shape.threads,
            bytes.as_ptr(),
            floats.as_mut_ptr(),
            bytes.len(),
        );
        let to_bytes: Symbol<ToBytesEntry> = library.get(b"emu_f32_to_rgb8").unwrap();
        let shape = LaunchShape::elementwise(frame.len());
        to_bytes(
            shape.grid.0,
            shape.threads,
            network_output.as_ptr(),
            frame.as_mut_ptr(),
            1,
            padded_h as i32,
            padded_w as i32,
            height as i32,
            width as i32,
        );
    }
    assert!(floats.iter().zip(&bytes).all(|(f, b)| *f == f32::from(*b)));
    let cropped: Vec<f32> = (0..height)
        .flat_map(|y| {
            let row = &network_output[y * padded_w * 3..];
            row[..width * 3].to_vec()
        })
        .collect();
    assert_eq!(frame, stylemill::engine::quantize(&cropped));
}

/// The whole network through the emulated kernels, in the order and precisions the CUDA engine
/// runs them (the frame conversion is a cast, checked exactly above).
struct EmulatedNetwork {
    kernels: Emulated<'static>,
    net: TransformerNet,
    precision: Precision,
}

impl EmulatedNetwork {
    fn new(style: &str, precision: Precision) -> EmulatedNetwork {
        EmulatedNetwork {
            kernels: Emulated(shipped()),
            net: load_style(style).unwrap(),
            precision,
        }
    }

    /// A convolution, then its InstanceNorm with a ReLU or with `residual` added, taking its
    /// statistics from the convolution where that sums its output, as the engine does.
    fn stage(
        &self,
        (conv, norm): (&Conv, Option<&Norm>),
        (x, h, w): (&[f32], usize, usize),
        residual: Option<&[f32]>,
    ) -> (Vec<f32>, usize, usize) {
        let mut kernels = self.kernels;
        let tensor_cores = self.precision == Precision::Fast;
        let (oh, ow) = (conv.output_size(h), conv.output_size(w));
        match norm {
            Some(norm) => {
                let (_, y) =
                    kernels.conv_then_norm((conv, norm), x, (h, w), tensor_cores, residual);
                (y, oh, ow)
            }
            None => kernels.conv(conv, x, h, w, tensor_cores),
        }
    }
}

impl Engine for EmulatedNetwork {
    fn describe(&self) -> String {
        format!(
            "the CUDA kernels emulated on the CPU ({:?})",
            self.precision
        )
    }

    fn forward(&mut self, frame: &Frame) -> Result<Vec<f32>, EngineError> {
        let (h, w) = (frame.size.height, frame.size.width);
        let input: Vec<f32> = frame.data.iter().map(|&b| b as f32).collect();
        let net = &self.net;
        let mut x = self.stage((&net.conv1, Some(&net.in1)), (&input, h, w), None);
        x = self.stage((&net.conv2, Some(&net.in2)), (&x.0, x.1, x.2), None);
        x = self.stage((&net.conv3, Some(&net.in3)), (&x.0, x.1, x.2), None);
        for block in &net.res {
            let t = self.stage((&block.conv1, Some(&block.in1)), (&x.0, x.1, x.2), None);
            x = self.stage(
                (&block.conv2, Some(&block.in2)),
                (&t.0, t.1, t.2),
                Some(&x.0),
            );
        }
        x = self.stage((&net.deconv1, Some(&net.in4)), (&x.0, x.1, x.2), None);
        x = self.stage((&net.deconv2, Some(&net.in5)), (&x.0, x.1, x.2), None);
        // Odd sides come back a little larger (halved twice, doubled twice): crop the top left.
        let (output, oh, ow) = self.stage((&net.deconv3, None), (&x.0, x.1, x.2), None);
        assert!(oh >= h && ow >= w);
        Ok(output
            .chunks_exact(ow * 3)
            .take(h)
            .flat_map(|row| &row[..w * 3])
            .copied()
            .collect())
    }
}

#[test]
fn the_whole_network_through_the_emulated_kernels_matches_the_golden_vectors_in_fp32() {
    // The synthetic frames of every style (odd sides among them); the 320x240 frame, 45 s of
    // emulation per style, is left to the GPU test.
    for case in golden_manifest()
        .cases
        .iter()
        .filter(|c| c.input.starts_with("synthetic"))
    {
        assert_matches_golden(
            &mut EmulatedNetwork::new(&case.style, Precision::Fp32),
            case,
        );
    }
}

/// The middle 160x120 of the golden 320x240 frame: real content, a quarter of the emulation.
fn golden_frame_middle() -> Frame {
    let frame = read_png(&fixtures().join("golden/rabbit_frame0_320x240.png"));
    let (width, height) = (160, 120);
    let data = frame
        .data
        .chunks_exact(frame.size.width * 3)
        .skip(60)
        .take(height)
        .flat_map(|row| &row[80 * 3..(80 + width) * 3])
        .copied()
        .collect();
    Frame::new(FrameSize { width, height }, data)
}

#[test]
fn fast_mode_through_the_emulated_kernels_stays_within_each_styles_noise_floor() {
    let frame = golden_frame_middle();
    // +-1 LSB on every value, in a fixed pattern.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noisy_data = frame
        .data
        .iter()
        .map(|&v| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if state & 1 == 0 {
                v.saturating_add(1)
            } else {
                v.saturating_sub(1)
            }
        })
        .collect();
    let noisy = Frame::new(frame.size, noisy_data);
    for style in ["candy", "mosaic", "rain_princess", "udnie", "pointilism"] {
        let mut cpu = CpuEngine::new(&load_style(style).unwrap(), None);
        let reference = cpu.stylize(&frame).unwrap();
        let floor = psnr(&cpu.stylize(&noisy).unwrap().data, &reference.data);
        let fast = EmulatedNetwork::new(style, Precision::Fast)
            .stylize(&frame)
            .unwrap();
        let quality = psnr(&fast.data, &reference.data);
        eprintln!(
            "{style}: fast mode {quality:.1} dB against fp32; fp32 on +-1 LSB noise {floor:.1} dB{}",
            if quality >= 40.0 { "; 40 dB or more" } else { "" }
        );
        assert!(
            quality >= floor - 1.0,
            "{style}: fast mode {quality:.1} dB, below the noise floor of {floor:.1} dB less 1 dB"
        );
    }
}
