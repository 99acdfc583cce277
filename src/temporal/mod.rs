//! Temporal stability of a stylized video. A feed-forward style network paints each frame on its
//! own, so small changes between input frames change the texture it paints and the output
//! shimmers. This module owns the optical flow between input frames ([`flow`]), what that flow
//! says about each pixel's origin and whether to trust it ([`motion`]), the recursive filter of
//! `--temporal` that carries the previous output along the flow ([`filter`]), and the warping
//! error of Lai et al. 2018 that measures the shimmer (`stylemill flicker`, [`flicker`]).

pub mod filter;
pub mod flicker;
pub mod flow;
pub mod motion;

use crate::media::MediaError;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TemporalError {
    #[error("this stylemill was built without optical flow (the `temporal` feature); rebuild it with `cargo build --release --features temporal` after installing OpenCV (Debian: apt-get install libopencv-video-dev)")]
    NotBuilt,
    #[error("OpenCV failed computing optical flow: {0}")]
    OpenCv(String),
    #[error("--temporal-strength {0} is outside 0 to 1; give a value such as 0.5 (0 keeps the per-frame output)")]
    BadStrength(f32),
    #[error("{styled} has {styled_frames} frames but {input} only {input_frames}: give the input the stylized video was made from")]
    MoreFramesThanInput {
        styled: String,
        styled_frames: usize,
        input: String,
        input_frames: usize,
    },
    #[error("{path} has {frames} frame(s); measuring flicker needs at least 2")]
    TooFewFrames { path: String, frames: usize },
    #[error("cannot write the flicker report {path}: {detail}")]
    ReportWrite { path: String, detail: String },
    #[error(transparent)]
    Media(#[from] MediaError),
}

/// The settings of `--temporal`, part of the plan (and of a checkpoint's identity).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TemporalSettings {
    /// How much of the previous output, carried along the flow, goes into each reliable pixel:
    /// 0 keeps the network's frame, 1 would freeze the first frame.
    pub strength: f32,
}

/// The strength when `--temporal` is given without `--temporal-strength`.
pub const DEFAULT_STRENGTH: f32 = 0.5;

/// The longest warm-up: frames stylized before a chunk to start its recursion.
const MAX_WARMUP: usize = 32;

impl TemporalSettings {
    pub fn new(strength: f32) -> Result<TemporalSettings, TemporalError> {
        if (0.0..1.0).contains(&strength) {
            Ok(TemporalSettings { strength })
        } else {
            Err(TemporalError::BadStrength(strength))
        }
    }

    /// Frames stylized before each chunk so that its recursion, restarted there, has forgotten
    /// its start: the previous output's weight falls as `strength^n`, and after these frames it
    /// is below 2% (one level in 50 of the last frame's), whichever rank computes the chunk.
    pub fn warmup_frames(&self) -> usize {
        if self.strength <= 0.0 {
            return 0;
        }
        let frames = (0.02f64.ln() / f64::from(self.strength).ln()).ceil();
        (frames as usize).clamp(1, MAX_WARMUP)
    }
}

/// A smooth textured grey frame (something optical flow can follow), its content shifted right
/// by `shift` pixels.
#[cfg(all(test, feature = "temporal"))]
pub(crate) fn textured(size: crate::frame::FrameSize, shift: f32) -> crate::frame::Frame {
    let mut data = Vec::with_capacity(size.rgb_bytes());
    for y in 0..size.height {
        for x in 0..size.width {
            let (u, v) = (x as f32 - shift, y as f32);
            let value =
                128.0 + 60.0 * (u * 0.21).sin() * (v * 0.17).cos() + 40.0 * ((u + v) * 0.07).sin();
            data.extend([value as u8; 3]);
        }
    }
    crate::frame::Frame::new(size, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strength_must_lie_in_zero_to_one() {
        assert!(TemporalSettings::new(0.0).is_ok());
        assert!(TemporalSettings::new(0.95).is_ok());
        for bad in [-0.1, 1.0, 2.0, f32::NAN] {
            assert!(TemporalSettings::new(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn warmup_lets_the_start_fade_below_two_percent() {
        for strength in [0.3f32, 0.6, 0.8] {
            let warmup = TemporalSettings::new(strength).unwrap().warmup_frames();
            assert!(strength.powi(warmup as i32) <= 0.02, "{strength}: {warmup}");
            assert!(
                strength.powi(warmup as i32 - 1) > 0.02,
                "{strength}: {warmup}"
            );
        }
        assert_eq!(TemporalSettings::new(0.0).unwrap().warmup_frames(), 0);
        assert_eq!(
            TemporalSettings::new(0.99).unwrap().warmup_frames(),
            MAX_WARMUP
        );
    }
}
