//! Engines run the style network on frames. One trait, one implementation per kind of hardware,
//! so the job pipeline never knows which it drives.

pub mod cpu;

use crate::frame::{Frame, FrameSize};
use crate::model::MIN_FRAME_SIDE;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("frames of {size} are too small for the style network, which needs at least {min}x{min} pixels; use a larger input, or a smaller --scale or none")]
    FrameTooSmall { size: FrameSize, min: usize },
}

/// Runs one style network on frames.
pub trait Engine: Send {
    /// A short description for logs ("cpu (avx512, 2 threads)").
    fn describe(&self) -> String;

    /// The network's float output for one frame: HxWx3 interleaved RGB on the 0..255 scale,
    /// unclamped, cropped to the frame's size. This is what the golden vectors hold.
    fn forward(&mut self, frame: &Frame) -> Result<Vec<f32>, EngineError>;

    /// Stylizes one frame into an 8-bit frame of the same size (clamped, rounded to nearest).
    fn stylize(&mut self, frame: &Frame) -> Result<Frame, EngineError> {
        let output = self.forward(frame)?;
        Ok(Frame::new(frame.size, quantize(&output)))
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
