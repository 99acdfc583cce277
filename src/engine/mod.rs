//! Engines run the style network on frames. One trait, one implementation per kind of hardware
//! (the CPU engine in Rust, the CUDA engine with stylemill's own kernels), so the job pipeline
//! never knows which it drives; `select` picks one for `--device`.

pub mod cpu;
pub mod cuda;
pub mod select;

use crate::frame::{Frame, FrameSize};
use crate::model::MIN_FRAME_SIDE;

pub use select::{create_engine, Device, Precision};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("frames of {size} are too small for the style network, which needs at least {min}x{min} pixels; use a larger input, or a smaller --scale or none")]
    FrameTooSmall { size: FrameSize, min: usize },
    #[error("frames of {size} do not fit in the free memory of GPU {ordinal}; the largest that fits is about {largest}: use --scale, a smaller --batch or another GPU")]
    FrameTooLarge {
        size: FrameSize,
        ordinal: usize,
        largest: FrameSize,
    },
    #[error("--device {requested}: {reason}")]
    CudaUnavailable { requested: String, reason: String },
    #[error("CUDA error on GPU {ordinal}: {detail}")]
    Cuda { ordinal: usize, detail: String },
    #[error(transparent)]
    Kernels(#[from] cuda::kernels::KernelError),
}

/// Runs one style network on frames.
pub trait Engine: Send {
    /// A short description for logs ("cpu (avx512, 2 threads)", "cuda:0 (NVIDIA H200, ...)").
    fn describe(&self) -> String;

    /// The network's float output for one frame: HxWx3 interleaved RGB on the 0..255 scale,
    /// unclamped, cropped to the frame's size. This is what the golden vectors hold.
    fn forward(&mut self, frame: &Frame) -> Result<Vec<f32>, EngineError>;

    /// Stylizes one frame into an 8-bit frame of the same size (clamped, rounded to nearest).
    fn stylize(&mut self, frame: &Frame) -> Result<Frame, EngineError> {
        let output = self.forward(frame)?;
        Ok(Frame::new(frame.size, quantize(&output)))
    }

    /// How many frames `stylize_batch` takes at once to its advantage.
    fn batch_size(&self) -> usize {
        1
    }

    /// Stylizes several frames; engines that gain from batching override it.
    fn stylize_batch(&mut self, frames: &[Frame]) -> Result<Vec<Frame>, EngineError> {
        frames.iter().map(|frame| self.stylize(frame)).collect()
    }
}

/// Clamps to 0..255 and rounds to nearest, as the reference implementation saves images.
pub fn quantize(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .map(|v| v.clamp(0.0, 255.0).round() as u8)
        .collect()
}

/// Refuses frames the network cannot take (reflection padding needs more pixels than it pads).
pub fn check_frame_size(size: FrameSize) -> Result<(), EngineError> {
    if size.width < MIN_FRAME_SIDE || size.height < MIN_FRAME_SIDE {
        return Err(EngineError::FrameTooSmall {
            size,
            min: MIN_FRAME_SIDE,
        });
    }
    Ok(())
}
