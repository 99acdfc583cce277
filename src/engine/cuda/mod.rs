//! The CUDA engine: the style network on NVIDIA GPUs with stylemill's own kernels (no cuDNN,
//! no cuBLAS), loaded with cudarc. Activations stay NHWC on the device; convolutions are
//! implicit GEMMs, or direct for the image-facing 9x9 layers (fp32, or BF16 tensor cores for
//! `--precision fast`, which read BF16 activations and weights packed once at load), InstanceNorm is a deterministic two-stage
//! reduction (its first stage in the convolution's epilogue after a GEMM) fused with its ReLU
//! or residual add (and writing the next tensor-core layer's BF16 input), and frames are
//! converted to and from 8-bit on the GPU. Frames are processed in batches through pinned host
//! buffers, in chunks whose copies run on streams of their own, overlapping the kernels
//! (`overlap`).

mod clock;
pub mod kernels;
pub mod nvrtc;
mod overlap;
pub mod sass;

use super::{check_frame_size, EngineError, Precision};
use crate::frame::{Frame, FrameSize};
use crate::model::{Conv, Norm, TransformerNet};
use clock::KernelClock;
pub use clock::KernelTime;
use cudarc::driver::{
    sys::CUevent_flags, CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, CudaViewMut,
    LaunchConfig, PinnedHostSlice, PushKernelArg,
};
use overlap::Streams;
use rayon::prelude::*;
use std::ops::Range;
use std::sync::Arc;

/// Channels of the widest activation (the full-resolution 32-channel maps).
const WIDEST_CHANNELS: usize = 32;
/// Elements (pixels x channels) of an InstanceNorm partial-sum segment, each summed by one block
/// of norm_partial_sums: 2048 pixels of 32 channels, 512 of 128, so that the smaller maps of
/// more channels get as many blocks (a fixed 2048 pixels left 64 blocks for a 1080p frame's
/// 128-channel maps, 5% of an H100's memory bandwidth).
const NORM_SEGMENT_ELEMENTS: usize = 65536;
const NORM_THREADS: u32 = 256;
/// Threads that sum one (image, channel)'s segments in norm_finalize (FINALIZE_LANES in norm.cu).
const FINALIZE_LANES: usize = 32;
/// Rows of a direct convolution's block, and threads per row (DIRECT_TILE in conv.cu).
const DIRECT_TILE: usize = 16;
/// Rows and columns of a tensor-core direct convolution's block (TC_DIRECT_TILE in conv.cu).
const TC_DIRECT_TILE: usize = 16;
const ELEMENTWISE_THREADS: u32 = 256;

fn cuda_error(ordinal: usize) -> impl Fn(cudarc::driver::DriverError) -> EngineError {
    move |e| EngineError::Cuda {
        ordinal,
        detail: e.to_string(),
    }
}

struct Functions {
    /// The convolution kernels, indexed by [`ConvKernel`].
    convolutions: Vec<CudaFunction>,
    norm_partial_sums: CudaFunction,
    norm_finalize: CudaFunction,
    norm_apply: CudaFunction,
    rgb8_to_f32: CudaFunction,
    f32_to_rgb8: CudaFunction,
    crop_f32: CudaFunction,
}

struct DeviceConv {
    conv: Conv,
    weights: DeviceWeights,
    bias: CudaSlice<f32>,
    /// Whether the precision asks for tensor cores (the layer gets them if its kernel has them).
    tensor_cores: bool,
}

/// A convolution's weights, packed once at load as its kernel reads them
/// ([`PackedWeights`]).
enum DeviceWeights {
    F32(CudaSlice<f32>),
    Bf16(CudaSlice<u16>),
}

impl DeviceConv {
    fn new(
        stream: &Arc<CudaStream>,
        conv: &Conv,
        tensor_cores: bool,
    ) -> Result<DeviceConv, cudarc::driver::DriverError> {
        let weights =
            match PackedWeights::for_kernel(ConvKernel::for_layer(conv, tensor_cores), conv) {
                PackedWeights::F32(packed) => DeviceWeights::F32(stream.clone_htod(&packed)?),
                PackedWeights::Bf16(packed) => DeviceWeights::Bf16(stream.clone_htod(&packed)?),
            };
        Ok(DeviceConv {
            conv: conv.clone(),
            weights,
            bias: stream.clone_htod(&conv.bias)?,
            tensor_cores,
        })
    }

    fn kernel(&self) -> ConvKernel {
        ConvKernel::for_layer(&self.conv, self.tensor_cores)
    }
}

/// A convolution's input, NHWC: f32, or BF16 for the tensor-core GEMMs.
#[derive(Clone, Copy)]
enum Activations<'a> {
    F32(&'a CudaSlice<f32>),
    Bf16(&'a CudaSlice<u16>),
}

/// Where an InstanceNorm's result goes: back into its input (f32), and as BF16 into a buffer.
struct NormOutput<'a> {
    in_place: bool,
    bf16: Option<&'a mut CudaSlice<u16>>,
}

struct DeviceNorm {
    gamma: CudaSlice<f32>,
    beta: CudaSlice<f32>,
}

impl DeviceNorm {
    fn new(
        stream: &Arc<CudaStream>,
        norm: &Norm,
    ) -> Result<DeviceNorm, cudarc::driver::DriverError> {
        Ok(DeviceNorm {
            gamma: stream.clone_htod(&norm.weight)?,
            beta: stream.clone_htod(&norm.bias)?,
        })
    }
}

/// Device buffers, reallocated only when a batch needs more than they hold.
struct Work {
    capacity: Capacity,
    frames_u8: CudaSlice<u8>,
    input: CudaSlice<f32>,
    a: CudaSlice<f32>,
    b: CudaSlice<f32>,
    c: CudaSlice<f32>,
    /// The tensor-core convolutions' BF16 inputs: the one the next reads, and the one the
    /// InstanceNorm before it writes (empty in fp32 mode).
    bf16: [CudaSlice<u16>; 2],
    partial: CudaSlice<f64>,
    scale_shift: CudaSlice<f32>,
    host_in: PinnedHostSlice<u8>,
    host_out: PinnedHostSlice<u8>,
}

/// The InstanceNorm layers' widest channel count: the scale and shift buffer holds this many
/// per frame.
const NORM_CHANNELS: usize = 128;

/// How many elements the work buffers of a batch need. Buffers are reused for a later batch
/// only if they hold as many of every kind: a batch of more, smaller frames needs fewer pixels
/// but more per-frame norm parameters and more host bytes per frame than a large single frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Capacity {
    /// Pixels of the batch, each frame padded to multiples of 4.
    pixels: usize,
    /// InstanceNorm partial sums (f64).
    partial: usize,
    /// InstanceNorm scale and shift per frame and channel (f32).
    scale_shift: usize,
    /// Host staging bytes, in and out each.
    host_bytes: usize,
}

impl Capacity {
    /// `partials_per_frame`: the most InstanceNorm partial sums one frame's norms need
    /// (`CudaEngine::norm_partials_per_frame`).
    fn for_batch(size: FrameSize, frames: usize, partials_per_frame: usize) -> Capacity {
        let padded = size.width.div_ceil(4) * 4 * size.height.div_ceil(4) * 4;
        Capacity {
            pixels: frames * padded,
            partial: frames * partials_per_frame,
            scale_shift: frames * 2 * NORM_CHANNELS,
            host_bytes: frames * size.rgb_bytes(),
        }
    }

    fn holds(&self, needed: &Capacity) -> bool {
        self.pixels >= needed.pixels
            && self.partial >= needed.partial
            && self.scale_shift >= needed.scale_shift
            && self.host_bytes >= needed.host_bytes
    }
}

/// Which InstanceNorm epilogue runs (the `mode` of `norm_apply`).
#[derive(Clone, Copy)]
enum Then {
    Relu = 1,
    AddResidual = 2,
}

pub struct CudaEngine {
    ordinal: usize,
    description: String,
    ctx: Arc<CudaContext>,
    /// The kernels' stream.
    stream: Arc<CudaStream>,
    /// Copies of frames to and from the device, on streams of their own so that they overlap
    /// the kernels (in the order `overlap` issues them).
    upload_stream: Arc<CudaStream>,
    download_stream: Arc<CudaStream>,
    functions: Functions,
    layers: Vec<(DeviceConv, Option<DeviceNorm>)>,
    work: Option<Work>,
    batch: usize,
    /// GPU time per kernel, when asked for with [`CudaEngine::time_kernels`].
    clock: Option<KernelClock>,
}

/// How a kernel is launched: its grid of blocks and the threads of each block. The engine and
/// the CPU-side kernel harness (tests/kernels_cpu.rs) launch with the same shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchShape {
    pub grid: (u32, u32, u32),
    pub threads: u32,
}

impl LaunchShape {
    /// One thread per element.
    pub fn elementwise(count: usize) -> LaunchShape {
        LaunchShape {
            grid: (blocks(count, ELEMENTWISE_THREADS), 1, 1),
            threads: ELEMENTWISE_THREADS,
        }
    }

    fn config(self) -> LaunchConfig {
        LaunchConfig {
            grid_dim: self.grid,
            block_dim: (self.threads, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

/// The kernel a convolution runs with (the discriminant is the CPU harness's kernel number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKernel {
    /// Implicit GEMM in fp32 (64x64 tiles).
    Gemm = 0,
    /// Implicit GEMM on BF16 tensor cores.
    GemmTensorCores = 1,
    /// Direct, one thread per pixel: the first layer (3 -> 32, 9x9).
    DirectTo32 = 2,
    /// Direct, one thread per pixel: the last layer (32 -> 3, 9x9).
    DirectTo3 = 3,
    /// The fp32 GEMM with 32-wide channel tiles, for layers of at most 32 output channels.
    GemmN32 = 4,
    /// The tensor-core GEMM with 32-wide channel tiles.
    GemmTensorCoresN32 = 5,
    /// Direct on the tensor cores: the last layer (32 -> 3, 9x9) in fast mode.
    DirectTo3TensorCores = 6,
    /// Direct on the tensor cores: the first layer (3 -> 32, 9x9) in fast mode.
    DirectTo32TensorCores = 7,
}

impl ConvKernel {
    /// Every kernel, in the order of their numbers.
    pub const ALL: [ConvKernel; 8] = [
        ConvKernel::Gemm,
        ConvKernel::GemmTensorCores,
        ConvKernel::DirectTo32,
        ConvKernel::DirectTo3,
        ConvKernel::GemmN32,
        ConvKernel::GemmTensorCoresN32,
        ConvKernel::DirectTo3TensorCores,
        ConvKernel::DirectTo32TensorCores,
    ];

    /// The kernel for `conv`: a direct one where the layer is one of the image-facing shapes
    /// they are written for, else the GEMM, each in the precision asked for where the layer
    /// fits a tensor-core kernel (the GEMM's k-tiles are 32 channels of one tap).
    pub fn for_layer(conv: &Conv, tensor_cores: bool) -> ConvKernel {
        let direct = conv.kernel == 9 && conv.stride == 1 && !conv.upsample;
        let gemm_tensor_cores = tensor_cores && conv.in_channels.is_multiple_of(32);
        match (conv.in_channels, conv.out_channels) {
            (3, 32) if direct && tensor_cores => ConvKernel::DirectTo32TensorCores,
            (3, 32) if direct => ConvKernel::DirectTo32,
            (32, 3) if direct && tensor_cores => ConvKernel::DirectTo3TensorCores,
            (ci, 3) if direct && ci % 4 == 0 => ConvKernel::DirectTo3,
            (_, co) => match (gemm_tensor_cores, co <= 32) {
                (true, true) => ConvKernel::GemmTensorCoresN32,
                (true, false) => ConvKernel::GemmTensorCores,
                (false, true) => ConvKernel::GemmN32,
                (false, false) => ConvKernel::Gemm,
            },
        }
    }

    pub fn uses_tensor_cores(self) -> bool {
        self.reads_bf16() || self == ConvKernel::DirectTo32TensorCores
    }

    /// Whether its input activations are BF16 (written so by the InstanceNorm before it): the
    /// tensor-core kernels' but the first layer's, which reads the frame in f32.
    pub fn reads_bf16(self) -> bool {
        matches!(
            self,
            ConvKernel::GemmTensorCores
                | ConvKernel::GemmTensorCoresN32
                | ConvKernel::DirectTo3TensorCores
        )
    }

    /// Threads per block.
    pub fn threads(self) -> u32 {
        match self {
            ConvKernel::Gemm | ConvKernel::GemmN32 => 256,
            ConvKernel::GemmTensorCores
            | ConvKernel::GemmTensorCoresN32
            | ConvKernel::DirectTo3TensorCores
            | ConvKernel::DirectTo32TensorCores => 128,
            ConvKernel::DirectTo32 | ConvKernel::DirectTo3 => (DIRECT_TILE * DIRECT_TILE) as u32,
        }
    }

    /// The output rows and columns of a direct kernel's block: DIRECT_TILE rows of
    /// DIRECT_TILE times PIXELS (adjacent pixels per thread) for the fp32 ones, TC_DIRECT_TILE
    /// square on the tensor cores (conv.cu).
    pub fn direct_tile(self) -> Option<(usize, usize)> {
        match self {
            ConvKernel::DirectTo32 => Some((DIRECT_TILE, DIRECT_TILE * 2)),
            ConvKernel::DirectTo3 => Some((DIRECT_TILE, DIRECT_TILE * 4)),
            ConvKernel::DirectTo3TensorCores | ConvKernel::DirectTo32TensorCores => {
                Some((TC_DIRECT_TILE, TC_DIRECT_TILE))
            }
            _ => None,
        }
    }

    /// The output pixels and channels of a GEMM block, and its k-tile (TILE_M or TC_TILE_M,
    /// TILE_N, and TILE_K or TC_K in conv.cu); none for the direct kernels.
    pub fn gemm_tile(self) -> Option<GemmTile> {
        let tile = |pixels, channels, reduction| {
            Some(GemmTile {
                pixels,
                channels,
                reduction,
            })
        };
        match self {
            ConvKernel::Gemm => tile(64, 64, 16),
            ConvKernel::GemmN32 => tile(64, 32, 16),
            ConvKernel::GemmTensorCores => tile(128, 64, 32),
            ConvKernel::GemmTensorCoresN32 => tile(128, 32, 32),
            ConvKernel::DirectTo32
            | ConvKernel::DirectTo3
            | ConvKernel::DirectTo3TensorCores
            | ConvKernel::DirectTo32TensorCores => None,
        }
    }

    /// Its name in kernels/conv.cu.
    pub fn name(self) -> &'static str {
        match self {
            ConvKernel::Gemm => "conv2d_f32",
            ConvKernel::GemmTensorCores => "conv2d_bf16_tc",
            ConvKernel::DirectTo32 => "conv2d_direct_to32",
            ConvKernel::DirectTo3 => "conv2d_direct_to3",
            ConvKernel::GemmN32 => "conv2d_f32_n32",
            ConvKernel::GemmTensorCoresN32 => "conv2d_bf16_tc_n32",
            ConvKernel::DirectTo3TensorCores => "conv2d_direct_to3_tc",
            ConvKernel::DirectTo32TensorCores => "conv2d_direct_to32_tc",
        }
    }
}

/// The block tile of a GEMM kernel: output pixels x output channels, and the reduction
/// elements one step of its main loop covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmTile {
    pub pixels: usize,
    pub channels: usize,
    pub reduction: usize,
}

/// The launch of one convolution of `batch` NHWC maps of `h` x `w`.
pub struct ConvLaunch {
    pub kernel: ConvKernel,
    pub shape: LaunchShape,
    /// batch, in_h, in_w, ci, out_h, out_w, co, k, stride, pad, upsample: the kernels' integer
    /// arguments.
    pub ints: [i32; 11],
    /// The output's height and width.
    pub out: (usize, usize),
    /// Blocks per image, for a kernel that sums each output channel over each of its blocks
    /// for the InstanceNorm after it (the GEMMs): norm_finalize's segments.
    pub statistics_segments: Option<usize>,
}

pub fn conv_launch(
    conv: &Conv,
    batch: usize,
    h: usize,
    w: usize,
    tensor_cores: bool,
) -> ConvLaunch {
    let (oh, ow) = (conv.output_size(h), conv.output_size(w));
    let ints = [
        batch,
        h,
        w,
        conv.in_channels,
        oh,
        ow,
        conv.out_channels,
        conv.kernel,
        conv.stride,
        conv.padding(),
        conv.upsample as usize,
    ]
    .map(|v| v as i32);
    let kernel = ConvKernel::for_layer(conv, tensor_cores);
    // The GEMMs' blocks never span two images.
    let statistics_segments = kernel
        .gemm_tile()
        .map(|tile| (oh * ow).div_ceil(tile.pixels));
    let grid = match (kernel.gemm_tile(), statistics_segments) {
        (Some(tile), Some(per_image)) => (
            (batch * per_image) as u32,
            conv.out_channels.div_ceil(tile.channels) as u32,
            1,
        ),
        _ => {
            let (rows, columns) = kernel
                .direct_tile()
                .expect("a kernel that is not a GEMM is direct");
            (
                (oh.div_ceil(rows) * ow.div_ceil(columns)) as u32,
                batch as u32,
                1,
            )
        }
    };
    let shape = LaunchShape {
        grid,
        threads: kernel.threads(),
    };
    ConvLaunch {
        kernel,
        shape,
        ints,
        out: (oh, ow),
        statistics_segments,
    }
}

/// The launches of InstanceNorm over `batch` NHWC maps of `h` x `w` x `channels`.
pub struct NormLaunch {
    /// Pixel segments per image, each summed by one block.
    pub segments: usize,
    pub segment_pixels: usize,
    pub sums: LaunchShape,
    pub finalize: LaunchShape,
    pub apply: LaunchShape,
    /// Groups of 4 channels per image, one per thread of norm_apply.
    pub image_quads: usize,
}

/// The launches of InstanceNorm; `channels` is a multiple of 4 (the network's 32, 64 and 128),
/// as norm_apply takes 4 at a time.
pub fn norm_launch(batch: usize, h: usize, w: usize, channels: usize) -> NormLaunch {
    assert!(
        channels.is_multiple_of(4),
        "norm_apply takes channels 4 at a time, not {channels}"
    );
    let segment_pixels = (NORM_SEGMENT_ELEMENTS / channels).max(1);
    let segments = (h * w).div_ceil(segment_pixels);
    let image_quads = h * w * channels / 4;
    NormLaunch {
        segments,
        segment_pixels,
        sums: LaunchShape {
            grid: (segments as u32, batch as u32, 1),
            threads: NORM_THREADS,
        },
        finalize: LaunchShape {
            grid: (
                (batch * channels).div_ceil(NORM_THREADS as usize / FINALIZE_LANES) as u32,
                1,
                1,
            ),
            threads: NORM_THREADS,
        },
        apply: LaunchShape {
            grid: (blocks(image_quads, NORM_THREADS), batch as u32, 1),
            threads: NORM_THREADS,
        },
        image_quads,
    }
}

/// The InstanceNorm partial sums (f64) that the norm after `conv` (on `batch` maps of `h` x `w`)
/// needs: the convolution's blocks per image where it sums its output, else norm_partial_sums'
/// segments, times sums and squares of every channel.
pub fn norm_partials(conv: &Conv, batch: usize, h: usize, w: usize, tensor_cores: bool) -> usize {
    let plan = conv_launch(conv, batch, h, w, tensor_cores);
    let (oh, ow) = plan.out;
    let segments = plan
        .statistics_segments
        .unwrap_or(norm_launch(batch, oh, ow, conv.out_channels).segments);
    batch * segments * 2 * conv.out_channels
}

/// Launches one convolution of `batch` NHWC maps of `h` x `w`, writing the InstanceNorm partial
/// sums of its output into `partial` too where the kernel can.
#[allow(clippy::too_many_arguments)]
fn launch_conv(
    stream: &Arc<CudaStream>,
    f: &Functions,
    layer: &DeviceConv,
    src: Activations,
    dst: &mut CudaSlice<f32>,
    partial: Option<&mut CudaSlice<f64>>,
    batch: usize,
    h: usize,
    w: usize,
    ordinal: usize,
) -> Result<ConvDone, EngineError> {
    let plan = conv_launch(&layer.conv, batch, h, w, layer.tensor_cores);
    let function = &f.convolutions[plan.kernel as usize];
    let no_buffer: u64 = 0;
    let mut launch = stream.launch_builder(function);
    match src {
        Activations::F32(x) => launch.arg(x),
        Activations::Bf16(x) => launch.arg(x),
    };
    match &layer.weights {
        DeviceWeights::F32(weights) => launch.arg(weights),
        DeviceWeights::Bf16(weights) => launch.arg(weights),
    };
    launch.arg(&layer.bias).arg(dst);
    // The GEMMs take the partial sums' buffer after the output (null for none).
    let summed = partial.is_some();
    if plan.statistics_segments.is_some() {
        match partial {
            Some(partial) => launch.arg(partial),
            None => launch.arg(&no_buffer),
        };
    }
    for value in &plan.ints {
        launch.arg(value);
    }
    // SAFETY: the arguments match conv2d_*'s signature and the buffers hold the shapes.
    unsafe { launch.launch(plan.shape.config()) }.map_err(cuda_error(ordinal))?;
    Ok(ConvDone {
        out: plan.out,
        statistics_segments: plan.statistics_segments.filter(|_| summed),
    })
}

/// What a convolution launch leaves: its output's height and width, and, when it also summed
/// its output for the InstanceNorm after it, the segments per image it wrote.
struct ConvDone {
    out: (usize, usize),
    statistics_segments: Option<usize>,
}

/// Launches InstanceNorm (partial sums, finalize, apply) on `batch` NHWC maps, in place; the
/// partial sums only where the convolution before has not written them (`summed`: their
/// segments per image).
#[allow(clippy::too_many_arguments)]
fn launch_norm(
    stream: &Arc<CudaStream>,
    f: &Functions,
    norm: &DeviceNorm,
    x: &mut CudaSlice<f32>,
    residual: Option<&CudaSlice<f32>>,
    output: NormOutput,
    summed: Option<usize>,
    partial: &mut CudaSlice<f64>,
    scale_shift: &mut CudaSlice<f32>,
    batch: usize,
    h: usize,
    w: usize,
    channels: usize,
    ordinal: usize,
) -> Result<(), EngineError> {
    let error = cuda_error(ordinal);
    let hw = h * w;
    let plan = norm_launch(batch, h, w, channels);
    let (hw_i, c_i, seg_i, batch_i, segments_i) = (
        hw as i32,
        channels as i32,
        plan.segment_pixels as i32,
        batch as i32,
        summed.unwrap_or(plan.segments) as i32,
    );
    if summed.is_none() {
        let mut sums = stream.launch_builder(&f.norm_partial_sums);
        sums.arg(&*x)
            .arg(&mut *partial)
            .arg(&hw_i)
            .arg(&c_i)
            .arg(&seg_i);
        // SAFETY: argument lists match the kernels in norm.cu; buffers are sized for them.
        unsafe { sums.launch(plan.sums.config()) }.map_err(&error)?;
    }
    let mut finalize = stream.launch_builder(&f.norm_finalize);
    finalize
        .arg(&*partial)
        .arg(&norm.gamma)
        .arg(&norm.beta)
        .arg(&mut *scale_shift)
        .arg(&batch_i)
        .arg(&segments_i)
        .arg(&hw_i)
        .arg(&c_i);
    // SAFETY: as above.
    unsafe { finalize.launch(plan.finalize.config()) }.map_err(&error)?;
    let image_quads = plan.image_quads as i32;
    let mode = if residual.is_some() {
        Then::AddResidual
    } else {
        Then::Relu
    } as i32;
    let in_place = output.in_place as i32;
    let no_buffer: u64 = 0;
    let mut apply = stream.launch_builder(&f.norm_apply);
    apply
        .arg(&mut *x)
        .arg(&*scale_shift)
        .arg(residual.unwrap_or(&*scale_shift));
    match output.bf16 {
        Some(bf16) => apply.arg(bf16),
        None => apply.arg(&no_buffer),
    };
    apply.arg(&image_quads).arg(&c_i).arg(&mode).arg(&in_place);
    // SAFETY: as above.
    unsafe { apply.launch(plan.apply.config()) }.map_err(&error)?;
    Ok(())
}

/// Floats as BF16 bits, rounded to nearest even (as conv.cu's `to_bf16`).
pub fn to_bf16(values: &[f32]) -> Vec<u16> {
    values
        .iter()
        .map(|&v| half::bf16::from_f32(v).to_bits())
        .collect()
}

/// Packs OIHW weights as BF16 [co][ky][kx][ci], the tensor-core kernels' Co x K operand, with
/// zero rows up to a multiple of 8 output channels (an MMA's n: the last layer's 3 become 8).
pub fn pack_weights_bf16(conv: &Conv) -> Vec<u16> {
    let (ci, k) = (conv.in_channels, conv.kernel);
    let packed: Vec<f32> = (0..conv.out_channels.next_multiple_of(8))
        .flat_map(|o| {
            (0..k * k).flat_map(move |tap| {
                (0..ci).map(move |i| match o < conv.out_channels {
                    true => conv.weight[(o * ci + i) * k * k + tap],
                    false => 0.0,
                })
            })
        })
        .collect();
    to_bf16(&packed)
}

/// Packs OIHW weights of the first layer (3 -> 32, 9x9) as BF16 [co][ky][80], the Co x K
/// operand of its direct kernel on the tensor cores: a kernel row's 80 k are 5 steps of two taps
/// of 8 channels (kx = 2 step + k / 8 % 2, channel k % 8), zero for channels 3 to 7 and kx 9.
pub fn pack_first_layer_bf16(conv: &Conv) -> Vec<u16> {
    let (ci, k) = (conv.in_channels, conv.kernel);
    let packed: Vec<f32> = (0..conv.out_channels)
        .flat_map(|o| (0..k).flat_map(move |ky| (0..80).map(move |e| (o, ky, e))))
        .map(|(o, ky, e)| {
            let (kx, c) = (2 * (e / 16) + e / 8 % 2, e % 8);
            match kx < k && c < ci {
                true => conv.weight[((o * ci + c) * k + ky) * k + kx],
                false => 0.0,
            }
        })
        .collect();
    to_bf16(&packed)
}

/// A convolution's weights as its kernel reads them.
pub enum PackedWeights {
    F32(Vec<f32>),
    Bf16(Vec<u16>),
}

impl PackedWeights {
    pub fn for_kernel(kernel: ConvKernel, conv: &Conv) -> PackedWeights {
        match kernel {
            ConvKernel::DirectTo32TensorCores => PackedWeights::Bf16(pack_first_layer_bf16(conv)),
            kernel if kernel.uses_tensor_cores() => PackedWeights::Bf16(pack_weights_bf16(conv)),
            _ => PackedWeights::F32(pack_weights(conv)),
        }
    }
}

/// Packs OIHW weights as [ky][kx][ci][co], the fp32 GEMM's K x Co operand.
pub fn pack_weights(conv: &Conv) -> Vec<f32> {
    let (ci, co, k) = (conv.in_channels, conv.out_channels, conv.kernel);
    let mut packed = vec![0.0; k * k * ci * co];
    for o in 0..co {
        for i in 0..ci {
            for ky in 0..k {
                for kx in 0..k {
                    packed[((ky * k + kx) * ci + i) * co + o] =
                        conv.weight[((o * ci + i) * k + ky) * k + kx];
                }
            }
        }
    }
    packed
}

fn blocks(count: usize, threads: u32) -> u32 {
    count.div_ceil(threads as usize) as u32
}

/// Launches `f32_to_rgb8` or `crop_f32`: `batch` network outputs of `out` (height, width)
/// cropped to `size` from `src` into `dst`.
#[allow(clippy::too_many_arguments)]
fn launch_crop<T: cudarc::driver::DeviceRepr>(
    stream: &Arc<CudaStream>,
    function: &CudaFunction,
    src: &CudaSlice<f32>,
    mut dst: CudaViewMut<'_, T>,
    batch: usize,
    out: (usize, usize),
    size: FrameSize,
    ordinal: usize,
) -> Result<(), EngineError> {
    let ints = [batch, out.0, out.1, size.height, size.width].map(|v| v as i32);
    let mut launch = stream.launch_builder(function);
    launch.arg(src).arg(&mut dst);
    for value in &ints {
        launch.arg(value);
    }
    // SAFETY: matches (src, dst, batch, src_h, src_w, h, w) of both kernels in frame.cu.
    unsafe { launch.launch(LaunchShape::elementwise(batch * size.rgb_bytes()).config()) }
        .map_err(cuda_error(ordinal))?;
    Ok(())
}

impl CudaEngine {
    /// Loads the network on GPU `ordinal`, compiling (or loading cached) kernels for it.
    pub fn new(
        net: &TransformerNet,
        ordinal: usize,
        precision: Precision,
        batch: usize,
    ) -> Result<CudaEngine, EngineError> {
        let error = cuda_error(ordinal);
        let ctx = CudaContext::new(ordinal).map_err(&error)?;
        // SAFETY: nothing has been allocated in this context yet. cudarc's tracking would make
        // every use of a buffer wait for the last use of the whole buffer on another stream,
        // which would serialise the copies of one chunk of the frames' buffer behind the
        // kernels on another; the engine orders its streams itself with events (`overlap`),
        // and only the frames' staging buffers are used on more than one stream.
        unsafe { ctx.disable_event_tracking() };
        let (major, minor) = ctx.compute_capability().map_err(&error)?;
        let arch = format!("sm_{major}{minor}");
        let stream = ctx.default_stream();
        let upload_stream = ctx.new_stream().map_err(&error)?;
        let download_stream = ctx.new_stream().map_err(&error)?;
        let mut module_functions = std::collections::HashMap::new();
        for (file, source, names) in kernels::FAMILIES {
            let compiled = kernels::cached_module(file, source, &arch)?;
            let module = ctx.load_module(compiled.into_loadable()).map_err(&error)?;
            for name in names {
                module_functions.insert(*name, module.load_function(name).map_err(&error)?);
            }
        }
        let mut take = |name: &str| {
            module_functions
                .remove(name)
                .expect("every family's kernels are listed")
        };
        let functions = Functions {
            convolutions: ConvKernel::ALL.map(|kernel| take(kernel.name())).to_vec(),
            norm_partial_sums: take("norm_partial_sums"),
            norm_finalize: take("norm_finalize"),
            norm_apply: take("norm_apply"),
            rgb8_to_f32: take("rgb8_to_f32"),
            f32_to_rgb8: take("f32_to_rgb8"),
            crop_f32: take("crop_f32"),
        };
        let upload_conv = |conv: &Conv| -> Result<DeviceConv, EngineError> {
            DeviceConv::new(&stream, conv, precision == Precision::Fast).map_err(&error)
        };
        let upload_norm = |norm: &Norm| DeviceNorm::new(&stream, norm).map_err(&error);
        let mut layers = vec![
            (upload_conv(&net.conv1)?, Some(upload_norm(&net.in1)?)),
            (upload_conv(&net.conv2)?, Some(upload_norm(&net.in2)?)),
            (upload_conv(&net.conv3)?, Some(upload_norm(&net.in3)?)),
        ];
        for block in &net.res {
            layers.push((upload_conv(&block.conv1)?, Some(upload_norm(&block.in1)?)));
            layers.push((upload_conv(&block.conv2)?, Some(upload_norm(&block.in2)?)));
        }
        layers.push((upload_conv(&net.deconv1)?, Some(upload_norm(&net.in4)?)));
        layers.push((upload_conv(&net.deconv2)?, Some(upload_norm(&net.in5)?)));
        layers.push((upload_conv(&net.deconv3)?, None));
        let (free, total) = ctx.mem_get_info().map_err(&error)?;
        let description = format!(
            "cuda:{ordinal} ({}, {arch}, {:.1} GiB free of {:.1} GiB, {precision:?}, batch {batch})",
            ctx.name().map_err(&error)?,
            free as f64 / (1u64 << 30) as f64,
            total as f64 / (1u64 << 30) as f64,
        );
        Ok(CudaEngine {
            ordinal,
            description,
            ctx,
            stream,
            upload_stream,
            download_stream,
            functions,
            layers,
            work: None,
            batch: batch.max(1),
            clock: None,
        })
    }

    /// The most InstanceNorm partial sums any of the network's norms needs for one frame.
    fn norm_partials_per_frame(&self, size: FrameSize) -> usize {
        let (mut h, mut w) = (size.height, size.width);
        let mut most = 0;
        for (layer, norm) in &self.layers {
            if norm.is_some() {
                most = most.max(norm_partials(&layer.conv, 1, h, w, layer.tensor_cores));
            }
            (h, w) = (layer.conv.output_size(h), layer.conv.output_size(w));
        }
        most
    }

    /// Whether any layer runs on the tensor cores (then the BF16 activation buffers exist).
    fn any_tensor_cores(&self) -> bool {
        self.layers
            .iter()
            .any(|(layer, _)| layer.kernel().reads_bf16())
    }

    /// Device bytes a batch of `frames` frames of `size` needs.
    fn bytes_needed(&self, size: FrameSize, frames: usize) -> usize {
        let padded = size.width.div_ceil(4) * 4 * size.height.div_ceil(4) * 4;
        let f32_activations = 3 * padded * WIDEST_CHANNELS * 4;
        let bf16_activations = if self.any_tensor_cores() {
            2 * padded * WIDEST_CHANNELS * 2
        } else {
            0
        };
        let io = size.rgb_bytes() * (1 + 4);
        let norm_partials = self.norm_partials_per_frame(size) * 8;
        frames * (f32_activations + bf16_activations + io + norm_partials)
    }

    /// Makes sure the buffers hold a batch of `frames` frames of `size`, checking free memory
    /// first so that a frame too large gets a clear error instead of an allocation failure.
    fn reserve(&mut self, size: FrameSize, frames: usize) -> Result<(), EngineError> {
        let capacity = Capacity::for_batch(size, frames, self.norm_partials_per_frame(size));
        if self
            .work
            .as_ref()
            .is_some_and(|w| w.capacity.holds(&capacity))
        {
            return Ok(());
        }
        let error = cuda_error(self.ordinal);
        self.work = None;
        // The old buffers are freed on the stream: wait for that before asking what is free.
        self.ctx.synchronize().map_err(&error)?;
        let (free, _) = self.ctx.mem_get_info().map_err(&error)?;
        let needed = self.bytes_needed(size, frames);
        if needed > free {
            let scale = (free as f64 / needed as f64).sqrt();
            return Err(EngineError::FrameTooLarge {
                size,
                ordinal: self.ordinal,
                largest: FrameSize {
                    width: (size.width as f64 * scale) as usize / 4 * 4,
                    height: (size.height as f64 * scale) as usize / 4 * 4,
                },
            });
        }
        let activation = capacity.pixels * WIDEST_CHANNELS;
        let bf16_activation = if self.any_tensor_cores() {
            activation
        } else {
            1
        };
        let stream = &self.stream;
        // SAFETY: pinned buffers are plain bytes, fully written before they are read.
        let (host_in, host_out) = unsafe {
            (
                self.ctx
                    .alloc_pinned_with_flags::<u8>(capacity.host_bytes, 0),
                self.ctx
                    .alloc_pinned_with_flags::<u8>(capacity.host_bytes, 0),
            )
        };
        self.work = Some(Work {
            capacity,
            frames_u8: stream.alloc_zeros(capacity.pixels * 3).map_err(&error)?,
            input: stream.alloc_zeros(capacity.pixels * 3).map_err(&error)?,
            a: stream.alloc_zeros(activation).map_err(&error)?,
            b: stream.alloc_zeros(activation).map_err(&error)?,
            c: stream.alloc_zeros(activation).map_err(&error)?,
            bf16: [
                stream.alloc_zeros(bf16_activation).map_err(&error)?,
                stream.alloc_zeros(bf16_activation).map_err(&error)?,
            ],
            partial: stream.alloc_zeros(capacity.partial).map_err(&error)?,
            scale_shift: stream.alloc_zeros(capacity.scale_shift).map_err(&error)?,
            host_in: host_in.map_err(&error)?,
            host_out: host_out.map_err(&error)?,
        });
        // The buffers are allocated and zeroed on the compute stream; the copy streams must
        // not reach the frames' buffer before that is done.
        self.stream.synchronize().map_err(&error)
    }

    /// Runs the network on the frames already converted into `work.input`; the output (before
    /// cropping) is left in `work.c`. Returns its height and width.
    fn run_network(
        &mut self,
        batch: usize,
        size: FrameSize,
    ) -> Result<(usize, usize), EngineError> {
        let work = self.work.as_mut().expect("reserved");
        let Work {
            input,
            a,
            b,
            c,
            bf16,
            partial,
            scale_shift,
            ..
        } = work;
        let (stream, f, ordinal) = (&self.stream, &self.functions, self.ordinal);
        let clock = &mut self.clock;
        let layers = &self.layers;
        let n = layers.len();
        let reads_bf16 = |i: usize| i < n && layers[i].0.kernel().reads_bf16();
        // Layer i: a convolution of its input (f32 in `src`, or BF16 in bf16[0] for a
        // tensor-core layer), then its InstanceNorm (when the layer has one) followed by a ReLU,
        // or by adding `residual`. The normalised map is written back in f32 where a fp32
        // kernel reads it next or a residual add later (`residual_source`), and in BF16 into
        // bf16[1], then swapped into bf16[0], where a tensor-core layer reads it next.
        let mut stage = |i: usize,
                         src: &CudaSlice<f32>,
                         dst: &mut CudaSlice<f32>,
                         (h, w): (usize, usize),
                         residual: Option<&CudaSlice<f32>>,
                         residual_source: bool|
         -> Result<(usize, usize), EngineError> {
            let (layer, norm) = &layers[i];
            let conv = &layer.conv;
            let [current_bf16, next_bf16] = &mut *bf16;
            let input = if reads_bf16(i) {
                Activations::Bf16(current_bf16)
            } else {
                Activations::F32(src)
            };
            // A convolution that can sum its output for the InstanceNorm after it does.
            let statistics = norm.as_ref().map(|_| &mut *partial);
            let done = KernelClock::time(
                clock,
                stream,
                ordinal,
                || {
                    format!(
                        "{} {}->{} k{} s{}{} at {h}x{w}",
                        layer.kernel().name(),
                        conv.in_channels,
                        conv.out_channels,
                        conv.kernel,
                        conv.stride,
                        if conv.upsample { " up" } else { "" }
                    )
                },
                || {
                    launch_conv(
                        stream, f, layer, input, dst, statistics, batch, h, w, ordinal,
                    )
                },
            )?;
            let (oh, ow) = done.out;
            if let Some(norm) = norm {
                let to_bf16 = reads_bf16(i + 1);
                let output = NormOutput {
                    in_place: !to_bf16 || residual_source,
                    bf16: to_bf16.then_some(next_bf16),
                };
                KernelClock::time(
                    clock,
                    stream,
                    ordinal,
                    || {
                        format!(
                            "{}norm_finalize+apply {} ch at {oh}x{ow}",
                            match done.statistics_segments {
                                Some(_) => "",
                                None => "norm_partial_sums+",
                            },
                            conv.out_channels
                        )
                    },
                    || {
                        launch_norm(
                            stream,
                            f,
                            norm,
                            dst,
                            residual,
                            output,
                            done.statistics_segments,
                            partial,
                            scale_shift,
                            batch,
                            oh,
                            ow,
                            conv.out_channels,
                            ordinal,
                        )
                    },
                )?;
                if to_bf16 {
                    bf16.swap(0, 1);
                }
            }
            Ok((oh, ow))
        };
        let mut hw = stage(0, input, a, (size.height, size.width), None, false)?;
        hw = stage(1, a, b, hw, None, false)?;
        hw = stage(2, b, a, hw, None, true)?;
        // Residual blocks: a = a + in2(conv2(relu(in1(conv1(a))))).
        for first in (3..n - 3).step_by(2) {
            stage(first, a, b, hw, None, false)?;
            stage(first + 1, b, c, hw, Some(a), true)?;
            std::mem::swap(a, c);
        }
        hw = stage(n - 3, a, b, hw, None, false)?;
        hw = stage(n - 2, b, a, hw, None, false)?;
        stage(n - 1, a, c, hw, None, false)
    }

    /// Converts the uploaded 8-bit frames `frames` of the device's frame buffer to f32 in
    /// `work.input`, on the compute stream.
    fn convert_input(&mut self, frames: Range<usize>, size: FrameSize) -> Result<(), EngineError> {
        let error = cuda_error(self.ordinal);
        let work = self.work.as_mut().expect("reserved");
        let bytes = size.rgb_bytes();
        let count = frames.len() * bytes;
        let uploaded = work
            .frames_u8
            .slice(frames.start * bytes..frames.end * bytes);
        let mut launch = self.stream.launch_builder(&self.functions.rgb8_to_f32);
        launch.arg(&uploaded).arg(&mut work.input).arg(&count);
        KernelClock::time(
            &mut self.clock,
            &self.stream,
            self.ordinal,
            || "rgb8_to_f32".to_string(),
            || {
                // SAFETY: matches rgb8_to_f32(src, dst, count).
                unsafe { launch.launch(LaunchShape::elementwise(count).config()) }
                    .map_err(&error)?;
                Ok(())
            },
        )
    }

    /// Frames of one size through the network; 8-bit frames back. The batch goes in chunks
    /// whose copies overlap the kernels of the chunks before and after (`overlap`).
    fn stylize_same_size(&mut self, frames: &[&Frame]) -> Result<Vec<Frame>, EngineError> {
        let size = frames[0].size;
        check_frame_size(size)?;
        self.reserve(size, frames.len())?;
        let chunks = overlap::chunks(frames.len(), size.width * size.height);
        let mut batch = BatchOnStreams {
            engine: self,
            frames,
            size,
            stylized: Vec::with_capacity(frames.len()),
        };
        let outcome = overlap::run(&mut batch, &chunks);
        let stylized = batch.stylized;
        self.settled(outcome.map(|()| stylized))
    }

    /// The outcome of work issued on the streams, after a failure has let every stream finish:
    /// copies may still be running on the copy streams, and their buffers must not be freed or
    /// reused before they end. The error that stopped the work is the one reported.
    fn settled<T>(&self, outcome: Result<T, EngineError>) -> Result<T, EngineError> {
        if outcome.is_err() {
            if let Err(error) = self.ctx.synchronize() {
                log::warn!("GPU {}: after a failure: {error}", self.ordinal);
            }
        }
        outcome
    }

    /// The network's float output for one frame (`Engine::forward`), its copies on the same
    /// streams as a batch's.
    fn forward_on_streams(&mut self, frame: &Frame) -> Result<Vec<f32>, EngineError> {
        check_frame_size(frame.size)?;
        self.reserve(frame.size, 1)?;
        let mut batch = BatchOnStreams {
            engine: self,
            frames: &[frame],
            size: frame.size,
            stylized: Vec::new(),
        };
        batch.stage(0..1)?;
        let uploaded = batch.upload(0..1)?;
        self.stream
            .wait(&uploaded)
            .map_err(cuda_error(self.ordinal))?;
        self.convert_input(0..1, frame.size)?;
        let (out_h, out_w) = self.run_network(1, frame.size)?;
        let error = cuda_error(self.ordinal);
        let work = self.work.as_mut().expect("reserved");
        let count = frame.size.rgb_bytes();
        launch_crop(
            &self.stream,
            &self.functions.crop_f32,
            &work.c,
            work.input.as_view_mut(),
            1,
            (out_h, out_w),
            frame.size,
            self.ordinal,
        )?;
        self.stream
            .clone_dtoh(&work.input.slice(..count))
            .map_err(&error)
    }
}

impl Drop for CudaEngine {
    /// Buffers are freed on the kernels' stream, which does not wait for the copy streams: an
    /// engine dropped after a failure lets every stream finish first.
    fn drop(&mut self) {
        if let Err(error) = self.ctx.synchronize() {
            log::warn!("GPU {}: before freeing its buffers: {error}", self.ordinal);
        }
    }
}

/// Event that orders one step of a chunk before the next across streams (no timing).
fn step_event(stream: &CudaStream, ordinal: usize) -> Result<CudaEvent, EngineError> {
    stream
        .record_event(Some(CUevent_flags::CU_EVENT_DISABLE_TIMING))
        .map_err(cuda_error(ordinal))
}

/// A batch of frames of one size on its way through the engine's streams: each chunk of it
/// staged in its frames' region of the pinned input, uploaded into the same region of the
/// device's frame buffer, stylized back into that region, downloaded into that region of the
/// pinned output, and collected into `stylized`.
struct BatchOnStreams<'a> {
    engine: &'a mut CudaEngine,
    frames: &'a [&'a Frame],
    size: FrameSize,
    stylized: Vec<Frame>,
}

impl BatchOnStreams<'_> {
    /// The chunk's bytes in every staging buffer.
    fn region(&self, chunk: &Range<usize>) -> Range<usize> {
        let bytes = self.size.rgb_bytes();
        chunk.start * bytes..chunk.end * bytes
    }

    fn work(&mut self) -> &mut Work {
        self.engine.work.as_mut().expect("reserved")
    }
}

impl overlap::Streams for BatchOnStreams<'_> {
    type Event = CudaEvent;
    type Error = EngineError;

    fn stage(&mut self, chunk: Range<usize>) -> Result<(), EngineError> {
        let (region, bytes) = (self.region(&chunk), self.size.rgb_bytes());
        let frames = &self.frames[chunk];
        let error = cuda_error(self.engine.ordinal);
        let host = self.work().host_in.as_mut_slice().map_err(error)?;
        // One thread copying a batch of 1080p frames (50 MB) into the pinned staging buffer, and
        // out again, took a quarter of fast mode's time per frame on an H100 machine (5.2 of
        // 19.5 ms); the frames copy in parallel (0.9 ms).
        host[region]
            .par_chunks_mut(bytes)
            .zip(frames.par_iter())
            .for_each(|(staged, frame)| staged.copy_from_slice(&frame.data));
        Ok(())
    }

    fn upload(&mut self, chunk: Range<usize>) -> Result<CudaEvent, EngineError> {
        let region = self.region(&chunk);
        let (stream, ordinal) = (self.engine.upload_stream.clone(), self.engine.ordinal);
        let work = self.work();
        let host = work.host_in.as_slice().map_err(cuda_error(ordinal))?;
        stream
            .memcpy_htod(&host[region.clone()], &mut work.frames_u8.slice_mut(region))
            .map_err(cuda_error(ordinal))?;
        step_event(&stream, ordinal)
    }

    fn stylize(
        &mut self,
        chunk: Range<usize>,
        uploaded: &CudaEvent,
    ) -> Result<CudaEvent, EngineError> {
        let (size, region) = (self.size, self.region(&chunk));
        let engine = &mut *self.engine;
        let ordinal = engine.ordinal;
        engine.stream.wait(uploaded).map_err(cuda_error(ordinal))?;
        engine.convert_input(chunk.clone(), size)?;
        let out = engine.run_network(chunk.len(), size)?;
        let work = engine.work.as_mut().expect("reserved");
        KernelClock::time(
            &mut engine.clock,
            &engine.stream,
            ordinal,
            || "f32_to_rgb8".to_string(),
            || {
                launch_crop(
                    &engine.stream,
                    &engine.functions.f32_to_rgb8,
                    &work.c,
                    work.frames_u8.slice_mut(region),
                    chunk.len(),
                    out,
                    size,
                    ordinal,
                )
            },
        )?;
        step_event(&engine.stream, ordinal)
    }

    fn download(
        &mut self,
        chunk: Range<usize>,
        stylized: &CudaEvent,
    ) -> Result<CudaEvent, EngineError> {
        let region = self.region(&chunk);
        let (stream, ordinal) = (self.engine.download_stream.clone(), self.engine.ordinal);
        stream.wait(stylized).map_err(cuda_error(ordinal))?;
        let work = self.work();
        let host = work.host_out.as_mut_slice().map_err(cuda_error(ordinal))?;
        stream
            .memcpy_dtoh(&work.frames_u8.slice(region.clone()), &mut host[region])
            .map_err(cuda_error(ordinal))?;
        step_event(&stream, ordinal)
    }

    fn collect(&mut self, chunk: Range<usize>, downloaded: &CudaEvent) -> Result<(), EngineError> {
        let (region, size) = (self.region(&chunk), self.size);
        let ordinal = self.engine.ordinal;
        downloaded.synchronize().map_err(cuda_error(ordinal))?;
        let host = self
            .work()
            .host_out
            .as_slice()
            .map_err(cuda_error(ordinal))?;
        let frames: Vec<Frame> = host[region]
            .par_chunks_exact(size.rgb_bytes())
            .map(|data| Frame::new(size, data.to_vec()))
            .collect();
        self.stylized.extend(frames);
        Ok(())
    }
}

/// GPU time per kernel, for the GPU benchmark's table.
impl CudaEngine {
    /// Starts timing every kernel launch with CUDA events (from zero).
    pub fn time_kernels(&mut self) {
        self.clock = Some(KernelClock::default());
    }

    /// The time per kernel since [`CudaEngine::time_kernels`] (none if it was not called).
    pub fn kernel_times(&mut self) -> Result<Vec<KernelTime>, EngineError> {
        match &mut self.clock {
            Some(clock) => clock.totals(self.ordinal),
            None => Ok(Vec::new()),
        }
    }
}

/// Single layers on the GPU, for checking each kernel against the CPU engine's layer.
impl CudaEngine {
    /// One convolution of an HWC map (batch 1) with `conv`, in this engine's precision.
    pub fn run_conv(
        &mut self,
        conv: &Conv,
        input: &[f32],
        height: usize,
        width: usize,
    ) -> Result<(Vec<f32>, usize, usize), EngineError> {
        let (output, _) = self.run_conv_then_norm(conv, None, input, height, width, None)?;
        Ok((output, conv.output_size(height), conv.output_size(width)))
    }

    /// One convolution of an HWC map (batch 1) with `conv`, in this engine's precision, then,
    /// when given, InstanceNorm on its output with a ReLU or `residual` added, taking its
    /// statistics from the convolution where that sums its output (the GEMMs), as a
    /// layer of the network runs: the convolution's output, and the normalised map.
    pub fn run_conv_then_norm(
        &mut self,
        conv: &Conv,
        norm: Option<&Norm>,
        input: &[f32],
        height: usize,
        width: usize,
        residual: Option<&[f32]>,
    ) -> Result<(Vec<f32>, Option<Vec<f32>>), EngineError> {
        let error = cuda_error(self.ordinal);
        let stream = &self.stream;
        let layer = DeviceConv::new(stream, conv, self.layers[3].0.tensor_cores).map_err(&error)?;
        let (f32_source, bf16_source);
        let source = if layer.kernel().reads_bf16() {
            bf16_source = stream.clone_htod(&to_bf16(input)).map_err(&error)?;
            Activations::Bf16(&bf16_source)
        } else {
            f32_source = stream.clone_htod(input).map_err(&error)?;
            Activations::F32(&f32_source)
        };
        let (oh, ow) = (conv.output_size(height), conv.output_size(width));
        let mut output = stream
            .alloc_zeros::<f32>(oh * ow * conv.out_channels)
            .map_err(&error)?;
        // Partial sums only for a norm.
        let mut partial = norm
            .map(|_| {
                stream.alloc_zeros::<f64>(norm_partials(conv, 1, height, width, layer.tensor_cores))
            })
            .transpose()
            .map_err(&error)?;
        let done = launch_conv(
            stream,
            &self.functions,
            &layer,
            source,
            &mut output,
            partial.as_mut(),
            1,
            height,
            width,
            self.ordinal,
        )?;
        let convolved = stream.clone_dtoh(&output).map_err(&error)?;
        let normalised = match (norm, partial.as_mut()) {
            (Some(norm), Some(partial)) => {
                let device_norm = DeviceNorm::new(stream, norm).map_err(&error)?;
                let mut scale_shift = stream
                    .alloc_zeros::<f32>(2 * conv.out_channels)
                    .map_err(&error)?;
                let skip = residual
                    .map(|r| stream.clone_htod(r))
                    .transpose()
                    .map_err(&error)?;
                launch_norm(
                    stream,
                    &self.functions,
                    &device_norm,
                    &mut output,
                    skip.as_ref(),
                    NormOutput {
                        in_place: true,
                        bf16: None,
                    },
                    done.statistics_segments,
                    partial,
                    &mut scale_shift,
                    1,
                    oh,
                    ow,
                    conv.out_channels,
                    self.ordinal,
                )?;
                Some(stream.clone_dtoh(&output).map_err(&error)?)
            }
            _ => None,
        };
        Ok((convolved, normalised))
    }

    /// InstanceNorm with a ReLU, or with `residual` added, of an HWC map (batch 1): the result
    /// in f32, and in BF16 as a tensor-core convolution after it would read it.
    pub fn run_instance_norm(
        &mut self,
        norm: &Norm,
        input: &[f32],
        height: usize,
        width: usize,
        residual: Option<&[f32]>,
    ) -> Result<(Vec<f32>, Vec<u16>), EngineError> {
        let error = cuda_error(self.ordinal);
        let stream = &self.stream;
        let channels = norm.weight.len();
        let mut map = stream.clone_htod(input).map_err(&error)?;
        let skip = residual
            .map(|r| stream.clone_htod(r))
            .transpose()
            .map_err(&error)?;
        let device_norm = DeviceNorm::new(stream, norm).map_err(&error)?;
        let segments = norm_launch(1, height, width, channels).segments;
        let mut partial = stream
            .alloc_zeros::<f64>(segments * 2 * channels)
            .map_err(&error)?;
        let mut scale_shift = stream.alloc_zeros::<f32>(2 * channels).map_err(&error)?;
        let mut bf16 = stream.alloc_zeros::<u16>(input.len()).map_err(&error)?;
        launch_norm(
            stream,
            &self.functions,
            &device_norm,
            &mut map,
            skip.as_ref(),
            NormOutput {
                in_place: true,
                bf16: Some(&mut bf16),
            },
            None,
            &mut partial,
            &mut scale_shift,
            1,
            height,
            width,
            channels,
            self.ordinal,
        )?;
        Ok((
            stream.clone_dtoh(&map).map_err(&error)?,
            stream.clone_dtoh(&bf16).map_err(&error)?,
        ))
    }
}

impl super::Engine for CudaEngine {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn batch_size(&self) -> usize {
        self.batch
    }

    fn forward(&mut self, frame: &Frame) -> Result<Vec<f32>, EngineError> {
        let outcome = self.forward_on_streams(frame);
        self.settled(outcome)
    }

    fn stylize_batch(&mut self, frames: &[Frame]) -> Result<Vec<Frame>, EngineError> {
        let mut out = Vec::with_capacity(frames.len());
        for group in frames.chunk_by(|a, b| a.size == b.size) {
            let refs: Vec<&Frame> = group.iter().collect();
            out.extend(self.stylize_same_size(&refs)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(width: usize, height: usize) -> FrameSize {
        FrameSize { width, height }
    }

    #[test]
    fn every_layer_gets_the_kernel_shaped_for_its_channels() {
        let net = crate::model::styles::load_style("mosaic").unwrap();
        let chosen: Vec<(ConvKernel, ConvKernel)> = net
            .convolutions()
            .into_iter()
            .map(|conv| {
                (
                    ConvKernel::for_layer(conv, false),
                    ConvKernel::for_layer(conv, true),
                )
            })
            .collect();
        use ConvKernel::*;
        let expected = [
            (DirectTo32, DirectTo32TensorCores),
            (Gemm, GemmTensorCores),
            (Gemm, GemmTensorCores),
        ]
        .into_iter()
        .chain(std::iter::repeat_n((Gemm, GemmTensorCores), 10))
        .chain([
            (Gemm, GemmTensorCores),
            (GemmN32, GemmTensorCoresN32),
            (DirectTo3, DirectTo3TensorCores),
        ])
        .collect::<Vec<_>>();
        assert_eq!(chosen, expected);
    }

    #[test]
    fn buffers_of_one_large_frame_are_not_reused_for_more_smaller_frames_they_cannot_hold() {
        // Partial sums as many per frame as norm_partial_sums needs for 128 channels.
        let for_batch = |size: FrameSize, frames| {
            let segments = norm_launch(1, size.height, size.width, NORM_CHANNELS).segments;
            Capacity::for_batch(size, frames, segments * 2 * NORM_CHANNELS)
        };
        let one_hd = for_batch(size(1920, 1080), 1);
        let eight_small = for_batch(size(320, 240), 8);
        assert!(
            eight_small.pixels <= one_hd.pixels,
            "the pixels alone would fit"
        );
        assert!(eight_small.scale_shift > one_hd.scale_shift);
        assert!(!one_hd.holds(&eight_small));
        assert!(one_hd.holds(&for_batch(size(1280, 720), 1)));
        assert!(for_batch(size(320, 240), 8).holds(&for_batch(size(318, 238), 8)));
    }
}
