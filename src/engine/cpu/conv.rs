//! Convolution: weights packed once per engine, then a register-blocked micro-kernel per output
//! row, compiled for the best instruction set the processor has (AVX-512, AVX2+FMA, or portable
//! code) and chosen at run time.
//!
//! Two kernels cover the network:
//! - *broadcast*: a block of `MB` output pixels times `NB` output channels lives in registers;
//!   each step loads `NB` packed weights and broadcasts one input value per pixel. In HWC layout
//!   a kernel row (`k` pixels x `ci` channels) is contiguous, so the reduction runs over one flat
//!   run per kernel row, whatever the stride.
//! - *dot*: for the 3-channel output layer, where blocking over output channels would waste most
//!   lanes, each output is a dot product vectorised along that same flat run.
//!
//! Every output value is accumulated by one thread in a fixed order, so results do not depend
//! on the number of threads: ranks and runs produce identical bytes.

use super::activation::Activation;
use super::pad::{reflect_pad, Padded};
use super::simd::{Portable, Vector};
use crate::model::Conv;
use rayon::prelude::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{__m256, __m512};

/// The instruction set the kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2Fma,
    Portable,
}

impl Isa {
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2Fma;
            }
        }
        Isa::Portable
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2Fma => "avx2",
            Isa::Portable => "portable",
        }
    }

    /// (pixels, output channels) of a broadcast block; vector lanes of a dot product.
    fn blocking(self) -> (usize, usize, usize) {
        match self {
            Isa::Avx512 => (AVX512_MB, AVX512_NB, AVX512_LANES),
            Isa::Avx2Fma => (AVX2_MB, AVX2_NB, AVX2_LANES),
            Isa::Portable => (PORTABLE_MB, PORTABLE_NB, PORTABLE_LANES),
        }
    }
}

const AVX512_MB: usize = 12;
const AVX512_NB: usize = 32;
const AVX512_LANES: usize = 16;
const AVX2_MB: usize = 6;
const AVX2_NB: usize = 16;
const AVX2_LANES: usize = 8;
const PORTABLE_MB: usize = 4;
const PORTABLE_NB: usize = 8;
const PORTABLE_LANES: usize = 4;
/// Pixels per block of the dot kernel.
const DOT_MB: usize = 4;
/// Output channels of the dot kernel (the network's RGB output).
const DOT_CO: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Broadcast,
    Dot,
}

/// One convolution, its weights packed for the kernel that runs it.
pub struct ConvLayer {
    isa: Isa,
    kernel: Kernel,
    in_channels: usize,
    out_channels: usize,
    size: usize,
    stride: usize,
    pad: usize,
    upsample: bool,
    /// Length of one kernel row's reduction (k * ci), rounded up to whole vectors for `Dot`.
    run_len: usize,
    weights: Vec<f32>,
    bias: Vec<f32>,
}

/// What a row kernel needs; raw pointers keep the hot loops free of bounds checks.
struct RowArgs<'a> {
    input: &'a [f32],
    row_stride: usize,
    layer: &'a ConvLayer,
    out_width: usize,
}

impl ConvLayer {
    pub fn new(conv: &Conv, isa: Isa) -> ConvLayer {
        let (_, nb, lanes) = isa.blocking();
        let (ci, co, k) = (conv.in_channels, conv.out_channels, conv.kernel);
        let kernel = if co == DOT_CO {
            Kernel::Dot
        } else {
            Kernel::Broadcast
        };
        let oihw = |o: usize, i: usize, ky: usize, kx: usize| {
            conv.weight[((o * ci + i) * k + ky) * k + kx]
        };
        let (run_len, weights) = match kernel {
            Kernel::Broadcast => {
                // [block][ky][kx][ci][NB]
                let blocks = co.div_ceil(nb);
                let mut packed = vec![0.0; blocks * k * k * ci * nb];
                for o in 0..co {
                    for ky in 0..k {
                        for kx in 0..k {
                            for i in 0..ci {
                                let t = kx * ci + i;
                                packed[(((o / nb) * k + ky) * k * ci + t) * nb + o % nb] =
                                    oihw(o, i, ky, kx);
                            }
                        }
                    }
                }
                (k * ci, packed)
            }
            Kernel::Dot => {
                // [o][ky][kx][ci], each kernel row padded with zeros to whole vectors
                let run = (k * ci).div_ceil(lanes) * lanes;
                let mut packed = vec![0.0; co * k * run];
                for o in 0..co {
                    for ky in 0..k {
                        for kx in 0..k {
                            for i in 0..ci {
                                packed[(o * k + ky) * run + kx * ci + i] = oihw(o, i, ky, kx);
                            }
                        }
                    }
                }
                (run, packed)
            }
        };
        ConvLayer {
            isa,
            kernel,
            in_channels: ci,
            out_channels: co,
            size: k,
            stride: conv.stride,
            pad: conv.padding(),
            upsample: conv.upsample,
            run_len,
            weights,
            bias: conv.bias.clone(),
        }
    }

    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    /// Pads `input` into `padded` and convolves it into `output`.
    pub fn run(&self, input: &Activation, padded: &mut Vec<f32>, output: &mut Activation) {
        debug_assert_eq!(input.channels, self.in_channels);
        let factor = if self.upsample { 2 } else { 1 };
        let out_size = |n: usize| (n * factor + 2 * self.pad - self.size) / self.stride + 1;
        let (out_h, out_w) = (out_size(input.height), out_size(input.width));
        let block = match self.kernel {
            Kernel::Broadcast => self.isa.blocking().0,
            Kernel::Dot => DOT_MB,
        };
        // The last block reads `block` whole pixels' runs past its first pixel.
        let last_pixel = out_w.div_ceil(block) * block - 1;
        let floats_needed = last_pixel * self.stride * self.in_channels + self.run_len;
        let geometry: Padded = reflect_pad(
            input,
            self.pad,
            self.upsample,
            floats_needed.div_ceil(self.in_channels),
            padded,
        );
        output.reshape(out_h, out_w, self.out_channels);
        let args = RowArgs {
            input: padded,
            row_stride: geometry.row_pixels * self.in_channels,
            layer: self,
            out_width: out_w,
        };
        let row_len = output.row_len();
        output
            .data
            .par_chunks_mut(row_len)
            .enumerate()
            .for_each(|(oy, out_row)| self.run_row(&args, oy, out_row));
    }

    fn run_row(&self, args: &RowArgs, oy: usize, out: &mut [f32]) {
        // SAFETY: `run` sized the padded input so that every block's reads stay inside it, and
        // the kernels write only the `out_width * out_channels` floats of `out`; the
        // instruction-set variants are only chosen when `Isa::detect` found the features.
        unsafe {
            match (self.isa, self.kernel) {
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx512, Kernel::Broadcast) => broadcast_avx512(args, oy, out),
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx512, Kernel::Dot) => dot_avx512(args, oy, out),
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx2Fma, Kernel::Broadcast) => broadcast_avx2(args, oy, out),
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx2Fma, Kernel::Dot) => dot_avx2(args, oy, out),
                (_, Kernel::Broadcast) => {
                    broadcast_row::<Portable, PORTABLE_MB, { PORTABLE_NB / 4 }>(args, oy, out)
                }
                (_, Kernel::Dot) => dot_row::<Portable>(args, oy, out),
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn broadcast_avx512(args: &RowArgs, oy: usize, out: &mut [f32]) {
    broadcast_row::<__m512, AVX512_MB, { AVX512_NB / 16 }>(args, oy, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn dot_avx512(args: &RowArgs, oy: usize, out: &mut [f32]) {
    dot_row::<__m512>(args, oy, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn broadcast_avx2(args: &RowArgs, oy: usize, out: &mut [f32]) {
    broadcast_row::<__m256, AVX2_MB, { AVX2_NB / 8 }>(args, oy, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(args: &RowArgs, oy: usize, out: &mut [f32]) {
    dot_row::<__m256>(args, oy, out)
}

/// One output row with the broadcast kernel: `MB` pixels x `NV` vectors of output channels.
#[inline(always)]
unsafe fn broadcast_row<V: Vector, const MB: usize, const NV: usize>(
    args: &RowArgs,
    oy: usize,
    out: &mut [f32],
) {
    let layer = args.layer;
    let nb = NV * V::LANES;
    let (k, co, run) = (layer.size, layer.out_channels, layer.run_len);
    let step = layer.stride * layer.in_channels;
    let base = args.input.as_ptr().add(oy * layer.stride * args.row_stride);
    // Wide enough for the widest block (AVX-512: 32 channels).
    let mut lanes = [0.0f32; 64];
    for block in 0..co.div_ceil(nb) {
        let weights = layer.weights.as_ptr().add(block * k * run * nb);
        let channels = nb.min(co - block * nb);
        let bias = &layer.bias[block * nb..][..channels];
        for x0 in (0..args.out_width).step_by(MB) {
            let mut acc = [[V::splat(0.0); NV]; MB];
            for ky in 0..k {
                let row = base.add(ky * args.row_stride + x0 * step);
                let kernel_row = weights.add(ky * run * nb);
                for t in 0..run {
                    let w: [V; NV] =
                        std::array::from_fn(|v| V::load(kernel_row.add(t * nb + v * V::LANES)));
                    for (p, acc_p) in acc.iter_mut().enumerate() {
                        let x = V::splat(*row.add(p * step + t));
                        for (a, w) in acc_p.iter_mut().zip(&w) {
                            *a = x.mul_add(*w, *a);
                        }
                    }
                }
            }
            let pixels = MB.min(args.out_width - x0);
            for (p, acc_p) in acc.iter().enumerate().take(pixels) {
                for (v, vector) in acc_p.iter().enumerate() {
                    vector.store(lanes.as_mut_ptr().add(v * V::LANES));
                }
                let dst = &mut out[(x0 + p) * co + block * nb..][..channels];
                for ((d, sum), b) in dst.iter_mut().zip(&lanes).zip(bias) {
                    *d = sum + b;
                }
            }
        }
    }
}

/// One output row of the 3-channel layer: dot products vectorised along each kernel row.
#[inline(always)]
unsafe fn dot_row<V: Vector>(args: &RowArgs, oy: usize, out: &mut [f32]) {
    let layer = args.layer;
    let (k, run) = (layer.size, layer.run_len);
    let step = layer.stride * layer.in_channels;
    let base = args.input.as_ptr().add(oy * layer.stride * args.row_stride);
    let weights = layer.weights.as_ptr();
    let mut lanes = [0.0f32; 16];
    for x0 in (0..args.out_width).step_by(DOT_MB) {
        let mut acc = [[V::splat(0.0); DOT_CO]; DOT_MB];
        for ky in 0..k {
            let row = base.add(ky * args.row_stride + x0 * step);
            for t in (0..run).step_by(V::LANES) {
                let w: [V; DOT_CO] =
                    std::array::from_fn(|c| V::load(weights.add((c * k + ky) * run + t)));
                for (p, acc_p) in acc.iter_mut().enumerate() {
                    let x = V::load(row.add(p * step + t));
                    for c in 0..DOT_CO {
                        acc_p[c] = x.mul_add(w[c], acc_p[c]);
                    }
                }
            }
        }
        let pixels = DOT_MB.min(args.out_width - x0);
        for (p, acc_p) in acc.iter().enumerate().take(pixels) {
            for c in 0..DOT_CO {
                acc_p[c].store(lanes.as_mut_ptr());
                out[(x0 + p) * DOT_CO + c] = lanes[..V::LANES].iter().sum::<f32>() + layer.bias[c];
            }
        }
    }
}
