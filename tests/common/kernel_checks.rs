//! The kernel checks run both on the CPU, through the kernels' own source built against
//! kernels/emulation.h (tests/kernels_cpu.rs, in CI), and on a GPU (tests/cuda.rs): the same
//! layers, the same comparisons with the CPU engine, the same tolerances. A backend says how it
//! runs one layer and which sizes it can afford (the emulation is slow; a GPU also takes sizes
//! that span many blocks).

use super::{max_relative_difference, noise};
use stylemill::engine::cpu;
use stylemill::engine::cuda::to_bf16;
use stylemill::model::{Conv, Norm, TransformerNet};

/// FP32 within 1e-5 of the CPU engine; BF16 operands within 2e-2.
pub const FP32_TOLERANCE: f32 = 1e-5;
pub const BF16_TOLERANCE: f32 = 2e-2;
pub const NORM_TOLERANCE: f32 = 1e-5;

/// Whatever runs the kernels.
pub trait KernelBackend {
    /// One convolution of an HWC map (batch 1): fp32 kernel, or tensor cores (BF16 operands).
    fn conv(
        &mut self,
        conv: &Conv,
        input: &[f32],
        height: usize,
        width: usize,
        tensor_cores: bool,
    ) -> (Vec<f32>, usize, usize);

    /// InstanceNorm of an HWC map with its ReLU, or with `residual` added: the f32 result, and
    /// the BF16 copy written for a tensor-core convolution after it.
    fn instance_norm(
        &mut self,
        norm: &Norm,
        input: &[f32],
        height: usize,
        width: usize,
        residual: Option<&[f32]>,
    ) -> (Vec<f32>, Vec<u16>);

    /// A convolution (tensor cores or fp32), then InstanceNorm on its output with a ReLU or
    /// `residual` added, taking its statistics from the convolution where that kernel sums its
    /// output (as the engine runs a layer): the convolution's output and the normalised map.
    fn conv_then_norm(
        &mut self,
        layer: (&Conv, &Norm),
        input: &[f32],
        size: (usize, usize),
        tensor_cores: bool,
        residual: Option<&[f32]>,
    ) -> (Vec<f32>, Vec<f32>);

    /// Sizes to run a convolution with `channels` input channels at.
    fn conv_sizes(&self, channels: usize) -> Vec<(usize, usize)>;

    /// Sizes to run InstanceNorm of `channels` channels at.
    fn norm_sizes(&self, channels: usize) -> Vec<(usize, usize)>;
}

/// One convolution of each kind in the network (first, downsampling, residual, upsampling,
/// last), with the largest difference from the CPU engine in each precision over the backend's
/// sizes: (name, fp32, bf16).
pub fn conv_differences(
    backend: &mut dyn KernelBackend,
    net: &TransformerNet,
) -> Vec<(String, f32, f32)> {
    let kind = |c: &Conv| {
        (
            c.in_channels,
            c.out_channels,
            c.kernel,
            c.stride,
            c.upsample,
        )
    };
    let mut kinds: Vec<&Conv> = Vec::new();
    for conv in net.convolutions() {
        if !kinds.iter().any(|k| kind(k) == kind(conv)) {
            kinds.push(conv);
        }
    }
    let mut differences = Vec::new();
    for conv in kinds {
        for (height, width) in backend.conv_sizes(conv.in_channels) {
            let input = noise(
                height * width * conv.in_channels,
                conv.out_channels as u64,
                50.0,
            );
            let (expected, eh, ew) = cpu::run_conv(conv, &input, height, width);
            let mut worst = [0.0f32; 2];
            for (i, tensor_cores) in [false, true].into_iter().enumerate() {
                let (got, gh, gw) = backend.conv(conv, &input, height, width, tensor_cores);
                assert_eq!((gh, gw), (eh, ew));
                worst[i] = max_relative_difference(&got, &expected);
            }
            let name = format!(
                "conv {}->{} k{} s{}{} at {height}x{width}",
                conv.in_channels,
                conv.out_channels,
                conv.kernel,
                conv.stride,
                if conv.upsample { " upsampled" } else { "" }
            );
            differences.push((name, worst[0], worst[1]));
        }
    }
    differences
}

/// Every kind of convolution within the tolerances of its precision.
pub fn assert_convolutions_match(backend: &mut dyn KernelBackend, net: &TransformerNet) {
    for (name, fp32, bf16) in conv_differences(backend, net) {
        assert!(fp32 <= FP32_TOLERANCE, "{name}: fp32 kernel off by {fp32}");
        assert!(
            bf16 <= BF16_TOLERANCE,
            "{name}: tensor-core kernel off by {bf16}"
        );
        eprintln!("{name}: fp32 {fp32:.1e}, bf16 {bf16:.1e}");
    }
}

/// InstanceNorm after each kind of convolution that has one (down, residual, up), in both
/// precisions, with the residual after the residual block's, against the CPU engine's
/// InstanceNorm of that convolution's output, where the GEMMs' epilogue has summed the output
/// for it: (name, largest relative difference).
pub fn norm_after_convolution_differences(
    backend: &mut dyn KernelBackend,
    net: &TransformerNet,
) -> Vec<(String, f32)> {
    let block = &net.res[0];
    let layers = [
        (&net.conv2, &net.in2, false),
        (&net.conv3, &net.in3, false),
        (&block.conv1, &block.in1, false),
        (&block.conv2, &block.in2, true),
        (&net.deconv1, &net.in4, false),
        (&net.deconv2, &net.in5, false),
    ];
    let mut differences = Vec::new();
    for (conv, norm, adds_residual) in layers {
        for (height, width) in backend.conv_sizes(conv.in_channels) {
            let input = noise(height * width * conv.in_channels, 11, 50.0);
            let (oh, ow) = (conv.output_size(height), conv.output_size(width));
            let residual = noise(oh * ow * conv.out_channels, 13, 10.0);
            let residual = adds_residual.then_some(residual.as_slice());
            for tensor_cores in [false, true] {
                let (convolved, normalised) = backend.conv_then_norm(
                    (conv, norm),
                    &input,
                    (height, width),
                    tensor_cores,
                    residual,
                );
                let expected = cpu::run_instance_norm(norm, &convolved, oh, ow, residual);
                differences.push((
                    format!(
                        "InstanceNorm after conv {}->{} at {height}x{width}, tensor cores {tensor_cores}",
                        conv.in_channels, conv.out_channels
                    ),
                    max_relative_difference(&normalised, &expected),
                ));
            }
        }
    }
    differences
}

/// Every InstanceNorm after a convolution within the norm's tolerance.
pub fn assert_norms_after_convolutions_match(
    backend: &mut dyn KernelBackend,
    net: &TransformerNet,
) {
    for (name, difference) in norm_after_convolution_differences(backend, net) {
        assert!(difference <= NORM_TOLERANCE, "{name}: {difference}");
    }
}

/// InstanceNorm with ReLU and with a residual, on the network's 32, 64 and 128 channels and on
/// counts that do not divide a block's 256 threads or exceed them, as a custom network may have;
/// its BF16 copy is exactly the f32 result rounded to nearest even.
pub fn assert_instance_norms_match(backend: &mut dyn KernelBackend, net: &TransformerNet) {
    let unusual = [96, 320].map(|channels| Norm {
        weight: noise(channels, 3, 2.0),
        bias: noise(channels, 4, 1.0),
    });
    for norm in [&net.in1, &net.in2, &net.in3, &unusual[0], &unusual[1]] {
        let channels = norm.weight.len();
        for (height, width) in backend.norm_sizes(channels) {
            let input = noise(height * width * channels, channels as u64, 30.0);
            let residual = noise(height * width * channels, 7, 10.0);
            for skip in [None, Some(residual.as_slice())] {
                let expected = cpu::run_instance_norm(norm, &input, height, width, skip);
                let (got, got_bf16) = backend.instance_norm(norm, &input, height, width, skip);
                let difference = max_relative_difference(&got, &expected);
                assert!(
                    difference <= NORM_TOLERANCE,
                    "{channels} channels at {height}x{width}, residual {}: {difference}",
                    skip.is_some()
                );
                assert!(
                    got_bf16 == to_bf16(&got),
                    "{channels} channels at {height}x{width}, residual {}: the BF16 copy is not the result rounded",
                    skip.is_some()
                );
            }
        }
    }
}
