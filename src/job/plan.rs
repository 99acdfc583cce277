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
    /// Frames of the output: the input's, or fewer with `--limit`.
    pub frames: usize,
    /// Size of the stylized frames (the input's, or smaller with `--scale`).
    pub size: FrameSize,
    pub output: OutputSpec,
    /// Frames per encoded chunk; the chunk grid is the same for any number of ranks.
    pub chunk_frames: usize,
    /// Chunks still to compute, in order (the others were checkpointed by an earlier run).
    pub todo_chunks: Vec<usize>,
    /// Each rank's share: a contiguous run of positions in the sequence of frames still to
    /// compute, split evenly.
    pub shares: Vec<Range<usize>>,
}

impl Plan {
    /// Makes the plan of a job whose chunks `todo_chunks` remain, for `ranks` ranks.
    pub fn new(
        input: VideoInfo,
        frames: usize,
        size: FrameSize,
        output: OutputSpec,
        chunk_frames: usize,
        todo_chunks: Vec<usize>,
        ranks: usize,
    ) -> Plan {
        let mut plan = Plan {
            input,
            frames,
            size,
            output,
            chunk_frames,
            todo_chunks,
            shares: Vec::new(),
        };
        plan.shares = split(plan.frames_to_compute(), ranks);
        plan
    }

    pub fn chunks(&self) -> usize {
        self.frames.div_ceil(self.chunk_frames)
    }

    /// Frames of chunk `index`.
    pub fn chunk(&self, index: usize) -> Range<usize> {
        let start = index * self.chunk_frames;
        start..(start + self.chunk_frames).min(self.frames)
    }

    /// How many frames this run stylizes (the rest come from checkpoints).
    pub fn frames_to_compute(&self) -> usize {
        self.todo_chunks.iter().map(|&c| self.chunk(c).len()).sum()
    }

    /// The frames of rank `rank`'s share, in order.
    pub fn frames_of(&self, rank: usize) -> Vec<usize> {
        let share = &self.shares[rank];
        self.todo_chunks
            .iter()
            .flat_map(|&c| self.chunk(c))
            .skip(share.start)
            .take(share.len())
            .collect()
    }

    /// The frames of rank `rank`'s share as contiguous intervals (for its decoder).
    pub fn intervals_of(&self, rank: usize) -> Vec<Range<usize>> {
        let mut intervals: Vec<Range<usize>> = Vec::new();
        for frame in self.frames_of(rank) {
            match intervals.last_mut() {
                Some(last) if last.end == frame => last.end += 1,
                _ => intervals.push(frame..frame + 1),
            }
        }
        intervals
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

    fn plan(frames: usize, chunk_frames: usize, todo: Vec<usize>, ranks: usize) -> Plan {
        let size = FrameSize {
            width: 8,
            height: 8,
        };
        let input = VideoInfo {
            path: "in.mp4".into(),
            video_stream: 0,
            codec: "h264".into(),
            size,
            frame_rate: crate::media::Rational { num: 30, den: 1 },
            frames,
            audio: Vec::new(),
        };
        let output = OutputSpec::parse(std::path::Path::new("out.mp4"), 18, None).unwrap();
        Plan::new(input, frames, size, output, chunk_frames, todo, ranks)
    }

    #[test]
    fn a_fresh_plan_gives_each_rank_one_contiguous_range() {
        let plan = plan(10, 4, vec![0, 1, 2], 3);
        assert_eq!(plan.intervals_of(0), vec![0..4]);
        assert_eq!(plan.intervals_of(1), vec![4..7]);
        assert_eq!(plan.intervals_of(2), vec![7..10]);
    }

    #[test]
    fn a_resumed_plan_splits_only_the_missing_chunks() {
        let plan = plan(20, 4, vec![1, 3, 4], 2);
        assert_eq!(plan.frames_to_compute(), 12);
        assert_eq!(plan.intervals_of(0), vec![4..8, 12..14]);
        assert_eq!(plan.intervals_of(1), vec![14..20]);
        let all: Vec<usize> = (0..2).flat_map(|r| plan.frames_of(r)).collect();
        assert_eq!(all, [4, 5, 6, 7, 12, 13, 14, 15, 16, 17, 18, 19]);
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
