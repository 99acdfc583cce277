//! What the optical flow between two input frames says about each pixel of the later one: where
//! it was in the earlier frame, and whether that is to be trusted (inside the frame and not
//! occluded, by the forward-backward check of Ruder et al. 2016, "Artistic style transfer for
//! videos"). Both the `--temporal` filter and the flicker measure warp along it.

use super::flow::{Flow, FlowEstimator};
use super::TemporalError;
use crate::frame::{Frame, FrameSize};
use rayon::prelude::*;

/// How the pixels of a frame relate to those of the frame before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Motion {
    pub size: FrameSize,
    /// For each pixel of the later frame, its position in the earlier one (x, y).
    pub sources: Vec<[f32; 2]>,
    /// Whether that position is inside the earlier frame and the flows agree on it.
    pub visible: Vec<bool>,
}

/// Bilinear interpolation of a per-pixel quantity at (x, y), clamped to the frame's edges.
fn bilinear<const N: usize>(
    size: FrameSize,
    x: f32,
    y: f32,
    pixel: impl Fn(usize) -> [f32; N],
) -> [f32; N] {
    let x = x.clamp(0.0, (size.width - 1) as f32);
    let y = y.clamp(0.0, (size.height - 1) as f32);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(size.width - 1), (y0 + 1).min(size.height - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let corners = [
        (pixel(y0 * size.width + x0), (1.0 - fx) * (1.0 - fy)),
        (pixel(y0 * size.width + x1), fx * (1.0 - fy)),
        (pixel(y1 * size.width + x0), (1.0 - fx) * fy),
        (pixel(y1 * size.width + x1), fx * fy),
    ];
    std::array::from_fn(|c| {
        corners
            .iter()
            .map(|(value, weight)| value[c] * weight)
            .sum()
    })
}

fn rgb(frame: &Frame) -> impl Fn(usize) -> [f32; 3] + '_ {
    move |i| std::array::from_fn(|c| f32::from(frame.data[3 * i + c]))
}

impl Motion {
    /// The motion from `previous` to `current` (input frames of one size): two flows, one each
    /// way.
    pub fn between(
        flows: &mut FlowEstimator,
        previous: &Frame,
        current: &Frame,
    ) -> Result<Motion, TemporalError> {
        let (forward, backward) = flows.both_ways(previous, current)?;
        Ok(Motion::from_flows(&backward, &forward))
    }

    /// From the flow of the later frame back to the earlier one and the flow forward: a pixel is
    /// occluded where following one and then the other does not come back near where it began,
    /// `|f + b|^2 > 0.01 (|f|^2 + |b|^2) + 0.5`.
    pub fn from_flows(backward: &Flow, forward: &Flow) -> Motion {
        assert_eq!(backward.size, forward.size, "flows of one frame size");
        let size = backward.size;
        let (sources, visible) = (0..size.width * size.height)
            .into_par_iter()
            .map(|i| {
                let b = backward.vectors[i];
                let (x, y) = (
                    (i % size.width) as f32 + b[0],
                    (i / size.width) as f32 + b[1],
                );
                let inside = x >= 0.0
                    && y >= 0.0
                    && x <= (size.width - 1) as f32
                    && y <= (size.height - 1) as f32;
                let f = bilinear(size, x, y, |j| forward.vectors[j]);
                let round_trip = (f[0] + b[0]).powi(2) + (f[1] + b[1]).powi(2);
                let lengths = f[0] * f[0] + f[1] * f[1] + b[0] * b[0] + b[1] * b[1];
                ([x, y], inside && round_trip <= 0.01 * lengths + 0.5)
            })
            .unzip();
        Motion {
            size,
            sources,
            visible,
        }
    }

    /// `previous` (a frame of this size) carried onto the later frame: RGB per pixel, from 0
    /// to 255, sampled bilinearly at each pixel's source.
    pub fn warp(&self, previous: &Frame) -> Vec<[f32; 3]> {
        assert_eq!(
            previous.size, self.size,
            "warp a frame of the motion's size"
        );
        self.sources
            .par_iter()
            .map(|&[x, y]| bilinear(self.size, x, y, rgb(previous)))
            .collect()
    }

    /// The share of pixels whose source is visible.
    pub fn visible_fraction(&self) -> f64 {
        self.visible.iter().filter(|&&v| v).count() as f64 / self.visible.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: FrameSize = FrameSize {
        width: 8,
        height: 6,
    };

    fn uniform_flow(dx: f32, dy: f32) -> Flow {
        Flow {
            size: SIZE,
            vectors: vec![[dx, dy]; SIZE.width * SIZE.height],
        }
    }

    fn ramp() -> Frame {
        let data = (0..SIZE.width * SIZE.height)
            .flat_map(|i| {
                [
                    (10 * (i % SIZE.width)) as u8,
                    (20 * (i / SIZE.width)) as u8,
                    7,
                ]
            })
            .collect();
        Frame::new(SIZE, data)
    }

    #[test]
    fn a_shift_warps_each_pixel_from_its_neighbour_and_hides_what_came_from_outside() {
        // The scene moved one pixel right: each pixel was one to its left before.
        let motion = Motion::from_flows(&uniform_flow(-1.0, 0.0), &uniform_flow(1.0, 0.0));
        let warped = motion.warp(&ramp());
        for y in 0..SIZE.height {
            for x in 1..SIZE.width {
                let i = y * SIZE.width + x;
                assert!(motion.visible[i]);
                assert_eq!(warped[i], [(10 * (x - 1)) as f32, (20 * y) as f32, 7.0]);
            }
            assert!(
                !motion.visible[y * SIZE.width],
                "column 0 came from outside"
            );
        }
        assert!((motion.visible_fraction() - 7.0 / 8.0).abs() < 1e-9);
    }

    #[test]
    fn a_half_pixel_shift_interpolates() {
        let motion = Motion::from_flows(&uniform_flow(0.0, -0.5), &uniform_flow(0.0, 0.5));
        let warped = motion.warp(&ramp());
        assert_eq!(warped[2 * SIZE.width + 3], [30.0, 30.0, 7.0]);
    }

    #[test]
    fn flows_that_disagree_mark_occlusion() {
        // Backward says "came from the left", forward says "stayed": an occluded region.
        let motion = Motion::from_flows(&uniform_flow(-3.0, 0.0), &uniform_flow(0.0, 0.0));
        assert_eq!(motion.visible_fraction(), 0.0);
        let agreeing = Motion::from_flows(&uniform_flow(-3.0, 0.0), &uniform_flow(2.9, 0.1));
        assert!(agreeing.visible_fraction() > 0.5);
    }
}
