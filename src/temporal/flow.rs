//! Dense optical flow between two frames, by OpenCV's DIS (Kroeger et al. 2016, "Fast Optical
//! Flow using Dense Inverse Search"), medium preset, on the frames' luma. A well-kept library
//! rather than a home-made one: the flow decides what the filter trusts and what the flicker
//! measure compares, so both must be what others can reproduce.

use super::TemporalError;
use crate::frame::FrameSize;

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
    use super::{Flow, TemporalError};
    use crate::frame::Frame;
    use opencv::core::{Mat, Ptr, Vec2f};
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

        /// The flow from `from` to `to` (frames of one size).
        pub fn flow(&mut self, from: &Frame, to: &Frame) -> Result<Flow, TemporalError> {
            assert_eq!(from.size, to.size, "flow between frames of one size");
            let (rows, cols) = (from.size.height as i32, from.size.width as i32);
            let (from_luma, to_luma) = (luma(from), luma(to));
            let from_mat = Mat::new_rows_cols_with_data(rows, cols, &from_luma).map_err(failed)?;
            let to_mat = Mat::new_rows_cols_with_data(rows, cols, &to_luma).map_err(failed)?;
            let mut flow = Mat::default();
            self.dis
                .calc(&from_mat, &to_mat, &mut flow)
                .map_err(failed)?;
            let vectors = flow
                .data_typed::<Vec2f>()
                .map_err(failed)?
                .iter()
                .map(|v| [v[0], v[1]])
                .collect();
            Ok(Flow {
                size: from.size,
                vectors,
            })
        }
    }

    /// The library and method, for the log, `doctor` and reports.
    pub fn method() -> String {
        let version = opencv::core::get_version_string().unwrap_or_else(|_| "?".into());
        format!("OpenCV {version} DIS optical flow (medium preset)")
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

        pub fn flow(&mut self, _from: &Frame, _to: &Frame) -> Result<Flow, TemporalError> {
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
    fn dis_finds_a_translation() {
        let size = FrameSize {
            width: 160,
            height: 120,
        };
        let flow = FlowEstimator::new()
            .unwrap()
            .flow(&textured(size, 0.0), &textured(size, 3.0))
            .unwrap();
        assert_eq!(flow.vectors.len(), size.width * size.height);
        let inner: Vec<[f32; 2]> = (20..100)
            .flat_map(|y| (20..140).map(move |x| (x, y)))
            .map(|(x, y)| flow.vectors[y * size.width + x])
            .collect();
        let mean_x = inner.iter().map(|v| v[0]).sum::<f32>() / inner.len() as f32;
        let mean_y = inner.iter().map(|v| v[1]).sum::<f32>() / inner.len() as f32;
        assert!(
            (mean_x - 3.0).abs() < 0.1 && mean_y.abs() < 0.1,
            "({mean_x}, {mean_y})"
        );
    }
}
