//! Dense optical flow between two frames, by OpenCV's DIS (Kroeger et al. 2016, "Fast Optical
//! Flow using Dense Inverse Search"), medium preset, on the frames' luma; frames wider than
//! [`FLOW_WIDTH`] are shrunk by a whole factor for it (a 1080p flow costs 4 times less at half
//! size, and motion at that scale is smooth), and the flow is scaled back up. A well-kept library
//! rather than a home-made one: the flow decides what the filter trusts and what the flicker
//! measure compares, so both must be what others can reproduce.

use super::TemporalError;
use crate::frame::FrameSize;

/// The widest frame the flow is computed on at full size.
pub const FLOW_WIDTH: usize = 960;

/// For every pixel of the first frame, how far it moved (in pixels, x then y) to reach the
/// second frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub size: FrameSize,
    /// Rows top to bottom.
    pub vectors: Vec<[f32; 2]>,
}

#[cfg(feature = "temporal")]
mod opencv_dis {
    use super::{Flow, TemporalError, FLOW_WIDTH};
    use crate::frame::Frame;
    use opencv::core::{Mat, Ptr, Size, Vec2f};
    use opencv::imgproc::{resize, INTER_AREA, INTER_LINEAR};
    use opencv::prelude::*;
    use opencv::video::{DISOpticalFlow, DISOpticalFlow_PRESET_MEDIUM};

    /// Luma (BT.601, rounded) of an RGB8 frame: what the flow is computed on.
    fn luma(frame: &Frame) -> Vec<u8> {
        frame
            .data
            .chunks_exact(3)
            .map(|p| {
                ((77 * u32::from(p[0]) + 150 * u32::from(p[1]) + 29 * u32::from(p[2]) + 128) >> 8)
                    as u8
            })
            .collect()
    }

    fn failed(error: opencv::Error) -> TemporalError {
        TemporalError::OpenCv(error.to_string())
    }

    /// OpenCV's DIS, set up once and used for every pair of frames.
    pub struct FlowEstimator {
        dis: Ptr<DISOpticalFlow>,
    }

    impl FlowEstimator {
        pub fn new() -> Result<FlowEstimator, TemporalError> {
            let dis = DISOpticalFlow::create(DISOpticalFlow_PRESET_MEDIUM).map_err(failed)?;
            Ok(FlowEstimator { dis })
        }

        /// The flows between `earlier` and `later` (frames of one size), forward (earlier to
        /// later) and backward; each frame's luma is prepared once for both.
        pub fn both_ways(
            &mut self,
            earlier: &Frame,
            later: &Frame,
        ) -> Result<(Flow, Flow), TemporalError> {
            assert_eq!(earlier.size, later.size, "flow between frames of one size");
            let size = earlier.size;
            let full = Size::new(size.width as i32, size.height as i32);
            let shrink = size.width.div_ceil(FLOW_WIDTH);
            let working = Size::new(
                (size.width / shrink) as i32,
                (size.height / shrink).max(1) as i32,
            );
            let prepared = |frame: &Frame| -> Result<Mat, TemporalError> {
                let luma = luma(frame);
                let mat =
                    Mat::new_rows_cols_with_data(full.height, full.width, &luma).map_err(failed)?;
                let mut shrunk = Mat::default();
                resize(&mat, &mut shrunk, working, 0.0, 0.0, INTER_AREA).map_err(failed)?;
                Ok(shrunk)
            };
            let (earlier, later) = (prepared(earlier)?, prepared(later)?);
            let mut flow = |from: &Mat, to: &Mat| -> Result<Flow, TemporalError> {
                let mut flow = Mat::default();
                self.dis.calc(from, to, &mut flow).map_err(failed)?;
                let mut full_flow = Mat::default();
                resize(&flow, &mut full_flow, full, 0.0, 0.0, INTER_LINEAR).map_err(failed)?;
                let (scale_x, scale_y) = (
                    full.width as f32 / working.width as f32,
                    full.height as f32 / working.height as f32,
                );
                let vectors = full_flow
                    .data_typed::<Vec2f>()
                    .map_err(failed)?
                    .iter()
                    .map(|v| [v[0] * scale_x, v[1] * scale_y])
                    .collect();
                Ok(Flow { size, vectors })
            };
            Ok((flow(&earlier, &later)?, flow(&later, &earlier)?))
        }
    }

    /// The library and method, for the log, `doctor` and reports.
    pub fn method() -> String {
        let version = opencv::core::get_version_string().unwrap_or_else(|_| "?".into());
        format!(
            "OpenCV {version} DIS optical flow (medium preset, at most {FLOW_WIDTH} pixels wide)"
        )
    }
}

#[cfg(feature = "temporal")]
pub use opencv_dis::{method, FlowEstimator};

/// Without OpenCV there is no flow: asking for it says how to get it.
#[cfg(not(feature = "temporal"))]
mod without_opencv {
    use super::{Flow, TemporalError};
    use crate::frame::Frame;

    pub struct FlowEstimator;

    impl FlowEstimator {
        pub fn new() -> Result<FlowEstimator, TemporalError> {
            Err(TemporalError::NotBuilt)
        }

        pub fn both_ways(
            &mut self,
            _earlier: &Frame,
            _later: &Frame,
        ) -> Result<(Flow, Flow), TemporalError> {
            Err(TemporalError::NotBuilt)
        }
    }

    pub fn method() -> String {
        "none (built without the `temporal` feature)".into()
    }
}

#[cfg(not(feature = "temporal"))]
pub use without_opencv::{method, FlowEstimator};

#[cfg(all(test, feature = "temporal"))]
mod tests {
    use super::*;
    use crate::temporal::textured;

    #[test]
    fn dis_finds_a_translation_at_full_and_at_shrunk_size() {
        let mut flows = FlowEstimator::new().unwrap();
        for (width, height) in [(160, 120), (2 * FLOW_WIDTH + 40, 120)] {
            let size = FrameSize { width, height };
            let (flow, _) = flows
                .both_ways(&textured(size, 0.0), &textured(size, 3.0))
                .unwrap();
            assert_eq!(flow.vectors.len(), width * height);
            let inner: Vec<[f32; 2]> = (20..height - 20)
                .flat_map(|y| (20..width - 20).map(move |x| (x, y)))
                .map(|(x, y)| flow.vectors[y * width + x])
                .collect();
            let mean_x = inner.iter().map(|v| v[0]).sum::<f32>() / inner.len() as f32;
            let mean_y = inner.iter().map(|v| v[1]).sum::<f32>() / inner.len() as f32;
            assert!(
                (mean_x - 3.0).abs() < 0.1 && mean_y.abs() < 0.1,
                "{size}: ({mean_x}, {mean_y})"
            );
        }
    }
}
