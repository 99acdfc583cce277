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
