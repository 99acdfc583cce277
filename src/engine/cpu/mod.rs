//! The CPU engine: the whole network in hand-written Rust, multi-threaded with rayon, with every
//! buffer kept between frames so that a video's frames after the first allocate nothing.

mod activation;
pub mod conv;
mod norm;
mod pad;
mod simd;

use super::{check_frame_size, Engine, EngineError};
use crate::frame::Frame;
use crate::model::{Norm, TransformerNet};
use activation::Activation;
use conv::{ConvLayer, Isa};
use norm::{instance_norm, Then};

struct Residual {
    conv1: ConvLayer,
    in1: Norm,
    conv2: ConvLayer,
    in2: Norm,
}

/// The network's layers packed for one instruction set, and the buffers reused across frames.
struct PackedNet {
    conv1: (ConvLayer, Norm),
    conv2: (ConvLayer, Norm),
    conv3: (ConvLayer, Norm),
    residuals: Vec<Residual>,
    deconv1: (ConvLayer, Norm),
    deconv2: (ConvLayer, Norm),
    deconv3: ConvLayer,
    input: Activation,
    a: Activation,
    b: Activation,
    c: Activation,
    padded: Vec<f32>,
}

pub struct CpuEngine {
    isa: Isa,
    pool: rayon::ThreadPool,
    net: PackedNet,
}

impl CpuEngine {
    /// Packs the network for this processor; `threads` defaults to the cores this process may use.
    pub fn new(net: &TransformerNet, threads: Option<usize>) -> CpuEngine {
        Self::with_isa(net, threads, Isa::detect())
    }

    /// As [`CpuEngine::new`] with a given instruction set (tests compare them).
    pub fn with_isa(net: &TransformerNet, threads: Option<usize>, isa: Isa) -> CpuEngine {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.unwrap_or(0))
            .build()
            .expect("a rayon thread pool can always be built");
        let layer = |conv| ConvLayer::new(conv, isa);
        let packed = PackedNet {
            conv1: (layer(&net.conv1), net.in1.clone()),
            conv2: (layer(&net.conv2), net.in2.clone()),
            conv3: (layer(&net.conv3), net.in3.clone()),
            residuals: net
                .res
                .iter()
                .map(|r| Residual {
                    conv1: layer(&r.conv1),
                    in1: r.in1.clone(),
                    conv2: layer(&r.conv2),
                    in2: r.in2.clone(),
                })
                .collect(),
            deconv1: (layer(&net.deconv1), net.in4.clone()),
            deconv2: (layer(&net.deconv2), net.in5.clone()),
            deconv3: layer(&net.deconv3),
            input: Activation::default(),
            a: Activation::default(),
            b: Activation::default(),
            c: Activation::default(),
            padded: Vec::new(),
        };
        CpuEngine {
            isa,
            pool,
            net: packed,
        }
    }
}

impl PackedNet {
    fn run(&mut self, frame: &Frame) -> Vec<f32> {
        let (height, width) = (frame.size.height, frame.size.width);
        let PackedNet {
            input,
            a,
            b,
            c,
            padded,
            ..
        } = self;
        input.reshape(height, width, 3);
        for (dst, &src) in input.data.iter_mut().zip(&frame.data) {
            *dst = src as f32;
        }
        let stage = |(conv, norm): &(ConvLayer, Norm),
                     src: &Activation,
                     dst: &mut Activation,
                     padded: &mut Vec<f32>| {
            conv.run(src, padded, dst);
            instance_norm(dst, norm, Then::Relu);
        };
        stage(&self.conv1, input, a, padded);
        stage(&self.conv2, a, b, padded);
        stage(&self.conv3, b, a, padded);
        for block in &self.residuals {
            block.conv1.run(a, padded, b);
            instance_norm(b, &block.in1, Then::Relu);
            block.conv2.run(b, padded, c);
            instance_norm(c, &block.in2, Then::AddTo(a));
            std::mem::swap(a, c);
        }
        stage(&self.deconv1, a, b, padded);
        stage(&self.deconv2, b, a, padded);
        self.deconv3.run(a, padded, c);
        crop(c, height, width)
    }
}

/// One convolution on an HWC map, for checking other engines' kernels layer by layer.
pub fn run_conv(
    conv: &crate::model::Conv,
    input: &[f32],
    height: usize,
    width: usize,
) -> (Vec<f32>, usize, usize) {
    let layer = ConvLayer::new(conv, Isa::detect());
    let source = Activation {
        height,
        width,
        channels: conv.in_channels,
        data: input.to_vec(),
    };
    let mut output = Activation::default();
    layer.run(&source, &mut Vec::new(), &mut output);
    (output.data, output.height, output.width)
}

/// InstanceNorm followed by a ReLU, or by adding `residual`, on an HWC map, for checking other
/// engines' kernels.
pub fn run_instance_norm(
    norm: &Norm,
    input: &[f32],
    height: usize,
    width: usize,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let channels = norm.weight.len();
    let mut map = Activation {
        height,
        width,
        channels,
        data: input.to_vec(),
    };
    let skip = residual.map(|r| Activation {
        height,
        width,
        channels,
        data: r.to_vec(),
    });
    let then = match &skip {
        Some(skip) => Then::AddTo(skip),
        None => Then::Relu,
    };
    instance_norm(&mut map, norm, then);
    map.data
}

/// The top-left `height` x `width` of a 3-channel map (the network rounds sizes up to 4).
fn crop(map: &Activation, height: usize, width: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(height * width * 3);
    for row in map.data.chunks_exact(map.row_len()).take(height) {
        out.extend_from_slice(&row[..width * 3]);
    }
    out
}

impl Engine for CpuEngine {
    fn describe(&self) -> String {
        format!(
            "cpu ({}, {} threads)",
            self.isa.name(),
            self.pool.current_num_threads()
        )
    }

    fn forward(&mut self, frame: &Frame) -> Result<Vec<f32>, EngineError> {
        check_frame_size(frame.size)?;
        let net = &mut self.net;
        Ok(self.pool.install(|| net.run(frame)))
    }
}
