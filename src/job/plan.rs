//! The plan of a job: what to read, at what size, how many frames, where to write, and which
//! contiguous range of frames each rank stylizes. Made once by rank 0 and broadcast as data.

use crate::frame::FrameSize;
use crate::media::output::OutputSpec;
use crate::media::probe::VideoInfo;
use serde::{Deserialize, Serialize};
use std::ops::Range;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub input: VideoInfo,
    /// Frames to stylize: the input's, or fewer with `--limit`.
    pub frames: usize,
    /// Size of the stylized frames (the input's, or smaller with `--scale`).
    pub size: FrameSize,
    pub output: OutputSpec,
    /// Frames of each rank, by rank.
    pub ranges: Vec<Range<usize>>,
    /// Frames per encoded chunk; the chunk grid is the same for any number of ranks.
    pub chunk_frames: usize,
}

impl Plan {
    pub fn chunks(&self) -> usize {
        self.frames.div_ceil(self.chunk_frames)
    }

    /// Frames of chunk `index`.
    pub fn chunk(&self, index: usize) -> Range<usize> {
        let start = index * self.chunk_frames;
        start..(start + self.chunk_frames).min(self.frames)
    }
}

/// Splits `frames` into `ranks` contiguous ranges whose lengths differ by at most one: the
/// first `frames % ranks` ranks take one more. No frame is dropped; a rank may get none.
pub fn split(frames: usize, ranks: usize) -> Vec<Range<usize>> {
    let (base, extra) = (frames / ranks, frames % ranks);
    let mut start = 0;
    (0..ranks)
        .map(|rank| {
            let length = base + usize::from(rank < extra);
            let range = start..start + length;
            start += length;
            range
        })
        .collect()
}

/// The frame size after `--scale` (a divisor, as pytorch/examples' `--content-scale`).
pub fn scaled_size(size: FrameSize, scale: Option<f64>) -> FrameSize {
    match scale {
        Some(factor) => FrameSize {
            width: (size.width as f64 / factor) as usize,
            height: (size.height as f64 / factor) as usize,
        },
        None => size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_every_frame_once_with_lengths_within_one() {
        for frames in [0, 1, 2, 7, 234, 1000] {
            for ranks in 1..=9 {
                let ranges = split(frames, ranks);
                assert_eq!(ranges.len(), ranks);
                assert_eq!(ranges[0].start, 0);
                assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
                assert_eq!(ranges.last().unwrap().end, frames);
                for r in &ranges {
                    assert!(r.len() == frames / ranks || r.len() == frames.div_ceil(ranks));
                }
            }
        }
    }

    #[test]
    fn more_ranks_than_frames_leaves_some_ranks_idle() {
        let ranges = split(2, 5);
        let lengths: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
        assert_eq!(lengths, vec![1, 1, 0, 0, 0]);
    }

    #[test]
    fn scale_divides_the_size_like_content_scale() {
        let size = FrameSize {
            width: 320,
            height: 240,
        };
        assert_eq!(
            scaled_size(size, Some(2.0)),
            FrameSize {
                width: 160,
                height: 120
            }
        );
        assert_eq!(
            scaled_size(size, Some(3.0)),
            FrameSize {
                width: 106,
                height: 80
            }
        );
        assert_eq!(scaled_size(size, None), size);
    }
}
