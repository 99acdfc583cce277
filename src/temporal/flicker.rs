//! `stylemill flicker`: the temporal warping error of a stylized video against its input, as in
//! Lai et al. 2018 ("Learning Blind Video Temporal Consistency"). For each pair of consecutive
//! frames, the optical flow of the input carries stylized frame t-1 onto frame t; the error of
//! the pair is the squared RGB distance (values 0 to 1, summed over the channels) between the
//! two, averaged over the pixels visible in both (the forward-backward check); the video's
//! error is the mean over its pairs. Lower is steadier; a still video scores 0.

use super::flow::{method, FlowEstimator};
use super::motion::Motion;
use super::TemporalError;
use crate::frame::{Frame, FrameSize};
use crate::media::decode::Decoder;
use crate::media::picture::DeinterlaceChoice;
use crate::media::probe::probe;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlickerReport {
    pub input: String,
    pub styled: String,
    /// The optical flow used, library and method.
    pub flow: String,
    pub size: FrameSize,
    pub frames: usize,
    /// The mean of `per_frame` over the pairs that have visible pixels.
    pub warping_error: f64,
    /// The error of frame t against frame t-1, from t = 1; `None` where no pixel is visible in
    /// both (a scene cut the flow cannot follow).
    pub per_frame: Vec<Option<f64>>,
}

/// The warping error of `current` against `previous` (stylized frames) under the input's
/// `motion`, or `None` if no pixel is visible in both.
pub fn warping_error(motion: &Motion, previous: &Frame, current: &Frame) -> Option<f64> {
    let warped = motion.warp(previous);
    let (sum, visible) = warped
        .iter()
        .zip(current.data.chunks_exact(3))
        .zip(&motion.visible)
        .filter(|(_, &visible)| visible)
        .fold((0.0f64, 0usize), |(sum, count), ((carried, actual), _)| {
            let distance: f64 = (0..3)
                .map(|c| ((f64::from(carried[c]) - f64::from(actual[c])) / 255.0).powi(2))
                .sum();
            (sum + distance, count + 1)
        });
    (visible > 0).then(|| sum / visible as f64)
}

/// Measures `styled` against the `input` it was made from (decoded at the stylized video's
/// size, deinterlaced as `run` does by default). The stylized video may be shorter (a run with
/// `--limit`), not longer.
pub fn measure(input: &Path, styled: &Path) -> Result<FlickerReport, TemporalError> {
    let mut input_info = probe(input, &input.display().to_string())?;
    // The flow follows the frames as `run` stylized them: interlaced ones deinterlaced.
    input_info.picture.deinterlace(DeinterlaceChoice::Auto);
    let styled_info = probe(styled, &styled.display().to_string())?;
    let frames = styled_info.frames;
    if frames > input_info.frames {
        return Err(TemporalError::MoreFramesThanInput {
            styled: styled.display().to_string(),
            styled_frames: frames,
            input: input.display().to_string(),
            input_frames: input_info.frames,
        });
    }
    if frames < 2 {
        return Err(TemporalError::TooFewFrames {
            path: styled.display().to_string(),
            frames,
        });
    }
    let size = styled_info.size;
    let mut inputs = Decoder::open(&input_info, input, 0..frames, size)?;
    let mut outputs = Decoder::open(&styled_info, styled, 0..frames, size)?;
    let mut flows = FlowEstimator::new()?;
    let mut previous: Option<(Frame, Frame)> = None;
    let mut per_frame = Vec::with_capacity(frames - 1);
    while let (Some(input_frame), Some(styled_frame)) =
        (inputs.next_frame()?, outputs.next_frame()?)
    {
        if let Some((previous_input, previous_styled)) = &previous {
            let motion = Motion::between(&mut flows, previous_input, &input_frame)?;
            per_frame.push(warping_error(&motion, previous_styled, &styled_frame));
        }
        previous = Some((input_frame, styled_frame));
    }
    let measured: Vec<f64> = per_frame.iter().flatten().copied().collect();
    Ok(FlickerReport {
        input: input.display().to_string(),
        styled: styled.display().to_string(),
        flow: method(),
        size,
        frames,
        warping_error: measured.iter().sum::<f64>() / measured.len().max(1) as f64,
        per_frame,
    })
}

impl FlickerReport {
    pub fn write(&self, path: &Path) -> Result<(), TemporalError> {
        let json = serde_json::to_string_pretty(self).expect("the report serializes");
        std::fs::write(path, json).map_err(|e| TemporalError::ReportWrite {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_is_the_mean_squared_rgb_distance_over_visible_pixels() {
        let size = FrameSize {
            width: 2,
            height: 1,
        };
        let motion = Motion {
            size,
            sources: vec![[0.0, 0.0], [1.0, 0.0]],
            visible: vec![true, false],
        };
        let previous = Frame::new(size, vec![0, 0, 0, 0, 0, 0]);
        let current = Frame::new(size, vec![255, 0, 51, 255, 255, 255]);
        let error = warping_error(&motion, &previous, &current).unwrap();
        assert!((error - (1.0 + 0.04)).abs() < 1e-12, "{error}");
        let hidden = Motion {
            visible: vec![false, false],
            ..motion
        };
        assert_eq!(warping_error(&hidden, &previous, &current), None);
    }
}
