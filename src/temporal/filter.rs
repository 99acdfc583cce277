//! The recursive filter of `--temporal`: each output frame is the network's frame with the
//! previous output, carried along the input's optical flow, blended in where the flow is
//! reliable (visible, and the input itself matches after warping: no occlusion, no lighting
//! change, no scene cut). New content is left to the network.
//!
//! The recursion restarts at the first frame of every chunk, from the warm-up frames before it
//! (see [`TemporalSettings::warmup_frames`]), so a chunk's bytes are the same whichever rank
//! computes it and whatever it computed before. The network's frames of the warm-up are kept,
//! so a restart inside a run of chunks only replays the blending.

use super::flow::FlowEstimator;
use super::motion::Motion;
use super::{TemporalError, TemporalSettings};
use crate::frame::Frame;
use rayon::prelude::*;
use std::collections::VecDeque;

/// Mean RGB difference (0 to 255) between an input frame and its warped predecessor up to which
/// the flow is fully trusted, and from which not at all.
const MATCH_TRUSTED: f32 = 8.0;
const MATCH_REJECTED: f32 = 24.0;

/// Below this share of trusted pixels the frame is taken for a scene cut: nothing is blended.
const CUT_BELOW: f64 = 0.5;

/// How a frame takes in the output before it.
struct Blend {
    motion: Motion,
    /// Per pixel, the weight of the warped previous output (0 to the strength).
    weights: Vec<f32>,
}

/// One frame of the recursion: the network's output and how it blends onto its predecessor
/// (`None` at a scene cut or the video's first frame).
struct Step {
    stylized: Frame,
    blend: Option<Blend>,
}

pub struct TemporalFilter {
    settings: TemporalSettings,
    flows: FlowEstimator,
    previous_input: Option<Frame>,
    /// The last frames pushed (at most the warm-up), for a restart.
    history: VecDeque<Step>,
    previous_output: Option<Frame>,
}

impl TemporalFilter {
    pub fn new(settings: TemporalSettings) -> Result<TemporalFilter, TemporalError> {
        Ok(TemporalFilter {
            settings,
            flows: FlowEstimator::new()?,
            previous_input: None,
            history: VecDeque::new(),
            previous_output: None,
        })
    }

    /// Takes the next input frame and the network's output for it and returns the frame to
    /// show. With `restart` (a chunk's first frame) the recursion starts again from the oldest
    /// frame held, as if the frames before it had never been seen.
    pub fn push(
        &mut self,
        input: Frame,
        stylized: Frame,
        restart: bool,
    ) -> Result<Frame, TemporalError> {
        let blend = match self.previous_input.take() {
            Some(previous) => self.blend_between(&previous, &input)?,
            None => None,
        };
        self.previous_input = Some(input);
        let step = Step { stylized, blend };
        let output = if restart {
            let mut held = self.history.iter().chain(std::iter::once(&step));
            let first = held.next().expect("the new step").stylized.clone();
            held.fold(first, |previous, step| self.apply(step, &previous))
        } else {
            match &self.previous_output {
                Some(previous) => self.apply(&step, previous),
                None => step.stylized.clone(),
            }
        };
        self.history.push_back(step);
        while self.history.len() > self.settings.warmup_frames() {
            self.history.pop_front();
        }
        self.previous_output = Some(output.clone());
        Ok(output)
    }

    /// How the output for `current` takes in the one for `previous` (input frames), or `None`
    /// at a scene cut.
    fn blend_between(
        &mut self,
        previous: &Frame,
        current: &Frame,
    ) -> Result<Option<Blend>, TemporalError> {
        let motion = Motion::between(&mut self.flows, previous, current)?;
        let warped = motion.warp(previous);
        let strength = self.settings.strength;
        let weights: Vec<f32> = warped
            .par_iter()
            .zip(current.data.par_chunks_exact(3))
            .zip(motion.visible.par_iter())
            .map(|((warped, actual), &visible)| {
                let difference = (0..3)
                    .map(|c| (warped[c] - f32::from(actual[c])).abs())
                    .sum::<f32>()
                    / 3.0;
                let trust = ((MATCH_REJECTED - difference) / (MATCH_REJECTED - MATCH_TRUSTED))
                    .clamp(0.0, 1.0);
                if visible {
                    strength * trust
                } else {
                    0.0
                }
            })
            .collect();
        let trusted = weights.iter().filter(|&&w| w > 0.0).count() as f64 / weights.len() as f64;
        if trusted < CUT_BELOW {
            log::debug!(
                "scene cut: {:.0}% of the pixels follow the flow",
                100.0 * trusted
            );
            return Ok(None);
        }
        Ok(Some(Blend { motion, weights }))
    }

    /// The output of `step` given the output before it.
    fn apply(&self, step: &Step, previous_output: &Frame) -> Frame {
        let Some(blend) = &step.blend else {
            return step.stylized.clone();
        };
        let warped = blend.motion.warp(previous_output);
        let data = step
            .stylized
            .data
            .par_chunks_exact(3)
            .zip(warped.par_iter())
            .zip(blend.weights.par_iter())
            .flat_map_iter(|((own, carried), &weight)| {
                (0..3).map(move |c| {
                    let own = f32::from(own[c]);
                    (own + weight * (carried[c] - own))
                        .round()
                        .clamp(0.0, 255.0) as u8
                })
            })
            .collect();
        Frame::new(step.stylized.size, data)
    }
}

#[cfg(all(test, feature = "temporal"))]
mod tests {
    use super::*;
    use crate::frame::FrameSize;
    use crate::temporal::textured;

    const SIZE: FrameSize = FrameSize {
        width: 96,
        height: 64,
    };

    /// What a network might paint: the input with texture that changes from frame to frame.
    fn shimmering(input: &Frame, frame: usize) -> Frame {
        let data = input
            .data
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let noise = ((i * 7919 + frame * 104_729) % 41) as i32 - 20;
                (i32::from(v) + noise).clamp(0, 255) as u8
            })
            .collect();
        Frame::new(input.size, data)
    }

    fn mean_change(a: &Frame, b: &Frame) -> f64 {
        a.data
            .iter()
            .zip(&b.data)
            .map(|(&x, &y)| f64::from(x.abs_diff(y)))
            .sum::<f64>()
            / a.data.len() as f64
    }

    fn settings() -> TemporalSettings {
        TemporalSettings::new(0.5).unwrap()
    }

    /// Pushes frames `frames` of a scene panning one pixel per frame, restarting at `restarts`.
    fn filtered(frames: std::ops::Range<usize>, restarts: &[usize]) -> Vec<Frame> {
        let mut filter = TemporalFilter::new(settings()).unwrap();
        frames
            .map(|t| {
                let input = textured(SIZE, t as f32);
                let stylized = shimmering(&input, t);
                filter.push(input, stylized, restarts.contains(&t)).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_chunk_restarted_from_its_warmup_matches_whatever_came_before() {
        let chunk_start = 10;
        let warmup_start = chunk_start - settings().warmup_frames();
        let whole = filtered(0..16, &[0, chunk_start]);
        let from_warmup = filtered(warmup_start..16, &[warmup_start, chunk_start]);
        assert_eq!(
            whole[chunk_start..],
            from_warmup[chunk_start - warmup_start..]
        );
        let unbroken = filtered(0..16, &[0]);
        assert_ne!(
            whole[chunk_start], unbroken[chunk_start],
            "the restart must change something for this test to mean anything"
        );
    }

    #[test]
    fn the_shimmer_of_a_steady_scene_is_damped() {
        let mut filter = TemporalFilter::new(settings()).unwrap();
        let input = textured(SIZE, 0.0);
        let stylized: Vec<Frame> = (0..8).map(|t| shimmering(&input, t)).collect();
        let outputs: Vec<Frame> = stylized
            .iter()
            .map(|s| filter.push(input.clone(), s.clone(), false).unwrap())
            .collect();
        let raw_change = mean_change(&stylized[6], &stylized[7]);
        let filtered_change = mean_change(&outputs[6], &outputs[7]);
        assert!(
            filtered_change < 0.6 * raw_change,
            "{filtered_change} against {raw_change}"
        );
    }

    #[test]
    fn a_scene_cut_keeps_the_network_frame() {
        let mut filter = TemporalFilter::new(settings()).unwrap();
        let first = textured(SIZE, 0.0);
        filter
            .push(first.clone(), shimmering(&first, 0), false)
            .unwrap();
        let other_scene = Frame::new(SIZE, first.data.iter().map(|&v| 255 - v / 2).collect());
        let stylized = shimmering(&other_scene, 1);
        let output = filter.push(other_scene, stylized.clone(), false).unwrap();
        assert_eq!(output, stylized);
    }
}
