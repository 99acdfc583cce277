//! TransformerNet weights: the network's shape, loading weights from safetensors and PyTorch
//! checkpoints, and validating every tensor before any engine sees it.
//!
//! Engines never deal with files or key names: they receive a [`TransformerNet`] whose tensors
//! are known to have the shapes of the network described in `models/README.md`.

mod pickle;
pub mod pytorch;
pub mod safetensors_file;
pub mod styles;

use std::collections::BTreeMap;
use std::path::Path;

/// What can go wrong when reading a weights file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read weights file {path}: {source}; check the path and its permissions")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("weights file {path} is not a valid {format} file ({detail}); pass a safetensors file or a PyTorch checkpoint of the fast_neural_style TransformerNet")]
    Format {
        path: String,
        format: &'static str,
        detail: String,
    },
    #[error("weights file {path} has no tensor `{key}`; it is not a fast_neural_style TransformerNet checkpoint")]
    MissingKey { path: String, key: String },
    #[error("weights file {path}: tensor `{key}` has shape {found:?} but the network needs {expected:?}")]
    WrongShape {
        path: String,
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("weights file {path}: unexpected tensor `{key}`; it is not a fast_neural_style TransformerNet checkpoint")]
    UnexpectedKey { path: String, key: String },
    #[error("weights file {path}: tensor `{key}` has type {dtype}; only F16, BF16, F32 and F64 are supported")]
    UnsupportedDtype {
        path: String,
        key: String,
        dtype: String,
    },
    #[error(
        "weights file {path}: tensor `{key}` contains NaN or infinite values; the file is corrupt"
    )]
    NonFinite { path: String, key: String },
    #[error("unknown style `{name}`: the shipped styles are {known}; or pass the path of a .safetensors or .pth weights file")]
    UnknownStyle { name: String, known: String },
}

/// A tensor read from a file, converted to f32, in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A convolution with bias; weights in PyTorch's OIHW order.
#[derive(Debug, Clone)]
pub struct Conv {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    /// Nearest-neighbour 2x upsampling of the input before padding (the network's deconvs).
    pub upsample: bool,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Conv {
    /// Reflection padding on each side: every convolution of the network pads by k/2.
    pub fn padding(&self) -> usize {
        self.kernel / 2
    }

    /// Output height or width for an input of `size` (before upsampling).
    pub fn output_size(&self, size: usize) -> usize {
        let size = if self.upsample { 2 * size } else { size };
        (size + 2 * self.padding() - self.kernel) / self.stride + 1
    }
}

/// InstanceNorm affine parameters (per channel).
#[derive(Debug, Clone)]
pub struct Norm {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// `x + in2(conv2(relu(in1(conv1(x)))))`.
#[derive(Debug, Clone)]
pub struct ResidualBlock {
    pub conv1: Conv,
    pub in1: Norm,
    pub conv2: Conv,
    pub in2: Norm,
}

/// The fast_neural_style TransformerNet (Johnson et al. 2016), as in pytorch/examples.
#[derive(Debug, Clone)]
pub struct TransformerNet {
    pub conv1: Conv,
    pub in1: Norm,
    pub conv2: Conv,
    pub in2: Norm,
    pub conv3: Conv,
    pub in3: Norm,
    pub res: Vec<ResidualBlock>,
    pub deconv1: Conv,
    pub in4: Norm,
    pub deconv2: Conv,
    pub in5: Norm,
    pub deconv3: Conv,
}

/// Smallest frame side the network takes: conv1's reflection padding of 4 needs at least 5
/// pixels, and so does the residual stage at a quarter of the size (ceil(5/4) = 2 > padding 1).
pub const MIN_FRAME_SIDE: usize = 5;

/// (name, in, out, kernel, stride, upsample) of every convolution, in network order.
const CONVS: [(&str, usize, usize, usize, usize, bool); 6] = [
    ("conv1", 3, 32, 9, 1, false),
    ("conv2", 32, 64, 3, 2, false),
    ("conv3", 64, 128, 3, 2, false),
    ("deconv1", 128, 64, 3, 1, true),
    ("deconv2", 64, 32, 3, 1, true),
    ("deconv3", 32, 3, 9, 1, false),
];
const NORMS: [(&str, usize); 5] = [
    ("in1", 32),
    ("in2", 64),
    ("in3", 128),
    ("in4", 64),
    ("in5", 32),
];
const RESIDUAL_BLOCKS: usize = 5;
const RESIDUAL_CHANNELS: usize = 128;

/// Every key of the network with its shape, in the pytorch/examples `state_dict` naming.
pub fn expected_tensors() -> Vec<(String, Vec<usize>)> {
    let mut keys = Vec::new();
    let mut conv = |name: String, ci: usize, co: usize, k: usize| {
        keys.push((format!("{name}.conv2d.weight"), vec![co, ci, k, k]));
        keys.push((format!("{name}.conv2d.bias"), vec![co]));
    };
    for (name, ci, co, k, _, _) in CONVS {
        conv(name.to_string(), ci, co, k);
    }
    for block in 1..=RESIDUAL_BLOCKS {
        for conv_index in 1..=2 {
            conv(
                format!("res{block}.conv{conv_index}"),
                RESIDUAL_CHANNELS,
                RESIDUAL_CHANNELS,
                3,
            );
        }
    }
    let mut norm = |name: String, c: usize| {
        keys.push((format!("{name}.weight"), vec![c]));
        keys.push((format!("{name}.bias"), vec![c]));
    };
    for (name, c) in NORMS {
        norm(name.to_string(), c);
    }
    for block in 1..=RESIDUAL_BLOCKS {
        for norm_index in 1..=2 {
            norm(format!("res{block}.in{norm_index}"), RESIDUAL_CHANNELS);
        }
    }
    keys
}

impl TransformerNet {
    /// Loads weights from a `.safetensors` file or a PyTorch checkpoint (zip or legacy format),
    /// chosen by the file's content rather than its extension.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Loads weights from the bytes of a file; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, ModelError> {
        let tensors = if pytorch::looks_like_checkpoint(bytes) {
            pytorch::read(bytes, origin)?
        } else {
            safetensors_file::read(bytes, origin)?
        };
        Self::from_tensors(tensors, origin)
    }

    /// Validates every key and shape against the network and builds it.
    pub fn from_tensors(
        mut tensors: BTreeMap<String, Tensor>,
        origin: &str,
    ) -> Result<Self, ModelError> {
        let expected = expected_tensors();
        for (key, shape) in &expected {
            let tensor = tensors.get(key).ok_or_else(|| ModelError::MissingKey {
                path: origin.to_string(),
                key: key.clone(),
            })?;
            if &tensor.shape != shape {
                return Err(ModelError::WrongShape {
                    path: origin.to_string(),
                    key: key.clone(),
                    expected: shape.clone(),
                    found: tensor.shape.clone(),
                });
            }
            if tensor.data.iter().any(|v| !v.is_finite()) {
                return Err(ModelError::NonFinite {
                    path: origin.to_string(),
                    key: key.clone(),
                });
            }
        }
        if let Some(extra) = tensors
            .keys()
            .find(|k| !expected.iter().any(|(e, _)| e == *k))
        {
            return Err(ModelError::UnexpectedKey {
                path: origin.to_string(),
                key: extra.clone(),
            });
        }
        let mut take = |key: String| tensors.remove(&key).expect("validated above").data;
        let mut conv = |name: &str, ci, co, kernel, stride, upsample| Conv {
            in_channels: ci,
            out_channels: co,
            kernel,
            stride,
            upsample,
            weight: take(format!("{name}.conv2d.weight")),
            bias: take(format!("{name}.conv2d.bias")),
        };
        let mut convs: Vec<Conv> = CONVS
            .iter()
            .map(|&(name, ci, co, k, s, up)| conv(name, ci, co, k, s, up))
            .collect();
        let res_convs: Vec<[Conv; 2]> = (1..=RESIDUAL_BLOCKS)
            .map(|b| {
                let c = RESIDUAL_CHANNELS;
                [
                    conv(&format!("res{b}.conv1"), c, c, 3, 1, false),
                    conv(&format!("res{b}.conv2"), c, c, 3, 1, false),
                ]
            })
            .collect();
        let mut norm = |name: &str| Norm {
            weight: take(format!("{name}.weight")),
            bias: take(format!("{name}.bias")),
        };
        let mut norms: Vec<Norm> = NORMS.iter().map(|&(name, _)| norm(name)).collect();
        let res = res_convs
            .into_iter()
            .enumerate()
            .map(|(i, [conv1, conv2])| ResidualBlock {
                conv1,
                in1: norm(&format!("res{}.in1", i + 1)),
                conv2,
                in2: norm(&format!("res{}.in2", i + 1)),
            })
            .collect();
        let mut next_conv = || convs.remove(0);
        let mut next_norm = || norms.remove(0);
        Ok(TransformerNet {
            conv1: next_conv(),
            in1: next_norm(),
            conv2: next_conv(),
            in2: next_norm(),
            conv3: next_conv(),
            in3: next_norm(),
            res,
            deconv1: next_conv(),
            in4: next_norm(),
            deconv2: next_conv(),
            in5: next_norm(),
            deconv3: next_conv(),
        })
    }

    /// All convolutions in the order they run.
    pub fn convolutions(&self) -> Vec<&Conv> {
        let mut all = vec![&self.conv1, &self.conv2, &self.conv3];
        for block in &self.res {
            all.push(&block.conv1);
            all.push(&block.conv2);
        }
        all.extend([&self.deconv1, &self.deconv2, &self.deconv3]);
        all
    }

    /// Multiply-adds of one forward pass on a `height` x `width` frame (about 154k per pixel).
    pub fn multiply_adds(&self, height: usize, width: usize) -> u64 {
        let (mut h, mut w) = (height, width);
        let mut total = 0u64;
        for conv in self.convolutions() {
            (h, w) = (conv.output_size(h), conv.output_size(w));
            let per_pixel = conv.out_channels * conv.in_channels * conv.kernel * conv.kernel;
            total += (h * w * per_pixel) as u64;
        }
        total
    }

    /// The network's output size for a `height` x `width` input: 4*ceil(h/4) x 4*ceil(w/4).
    pub fn output_size(&self, height: usize, width: usize) -> (usize, usize) {
        let through = |size: usize| {
            self.convolutions()
                .iter()
                .fold(size, |s, conv| conv.output_size(s))
        };
        (through(height), through(width))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_costs_about_154k_multiply_adds_per_pixel() {
        let net = styles::load_style("mosaic").unwrap();
        let per_pixel = net.multiply_adds(1080, 1920) as f64 / (1920.0 * 1080.0);
        assert!((per_pixel - 153_792.0).abs() < 1.0, "{per_pixel}");
        assert_eq!(net.output_size(53, 67), (56, 68));
    }
}
