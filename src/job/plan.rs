//! The plan of a job: what to read, at what size, how many frames, where to write, the fixed
//! grid of chunks the frames are encoded in, and how chunks go to ranks. Made once by rank 0
//! and broadcast as data.

use crate::frame::FrameSize;
use crate::media::output::OutputSpec;
use crate::media::probe::VideoInfo;
use crate::storage::FileIdentity;
use crate::temporal::TemporalSettings;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// How chunks are handed to ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
pub enum Schedule {
    /// Each rank takes a contiguous run of the chunks, split evenly, decided up front.
    #[default]
    Static,
    /// Rank 0 hands out chunks as ranks ask for them (mixed GPUs, stragglers).
    Dynamic,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub input: VideoInfo,
    /// The input file as rank 0 reads it, so that other ranks recognise it on a shared path.
    pub input_identity: FileIdentity,
    /// Frames of the output: the input's, or fewer with `--limit`.
    pub frames: usize,
    /// Size of the stylized frames (the input's, or smaller with `--scale`).
    pub size: FrameSize,
    pub output: OutputSpec,
    /// Frames per encoded chunk; the chunk grid is the same for any number of ranks.
    pub chunk_frames: usize,
    /// Chunks still to compute, in order (the others were checkpointed by an earlier run).
    pub todo_chunks: Vec<usize>,
    pub schedule: Schedule,
    pub ranks: usize,
    /// `--temporal`: the recursion restarts at every chunk after its warm-up frames.
    pub temporal: Option<TemporalSettings>,
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

    /// The chunk frame `frame` belongs to.
    pub fn chunk_of(&self, frame: usize) -> usize {
        frame / self.chunk_frames
    }

    /// How many frames this run stylizes (the rest come from checkpoints).
    pub fn frames_to_compute(&self) -> usize {
        self.todo_chunks.iter().map(|&c| self.chunk(c).len()).sum()
    }

    /// Rank `rank`'s chunks under the static schedule: a contiguous run of the chunks still to
    /// compute, the runs' lengths within one of each other.
    pub fn static_share(&self, rank: usize) -> Vec<usize> {
        self.todo_chunks[split(self.todo_chunks.len(), self.ranks)[rank].clone()].to_vec()
    }

    /// Frames stylized before a run of chunks starting at `frame` only to start the temporal
    /// recursion (none without `--temporal`).
    pub fn warmup_before(&self, frame: usize) -> usize {
        self.temporal.map_or(0, |t| t.warmup_frames()).min(frame)
    }

    /// The frames of `chunks` (ascending) as runs of consecutive frames, one decode each.
    pub fn frame_runs(&self, chunks: &[usize]) -> Vec<Range<usize>> {
        let mut runs: Vec<Range<usize>> = Vec::new();
        for frames in chunks.iter().map(|&c| self.chunk(c)) {
            match runs.last_mut() {
                Some(last) if last.end == frames.start => last.end = frames.end,
                _ => runs.push(frames),
            }
        }
        runs
    }
}

/// Splits `items` into `ranks` contiguous ranges whose lengths differ by at most one: the
/// first `items % ranks` ranks take one more. Nothing is dropped; a rank may get none.
pub fn split(items: usize, ranks: usize) -> Vec<Range<usize>> {
    let (base, extra) = (items / ranks, items % ranks);
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
            name: "in.mp4".into(),
            video_stream: 0,
            codec: "h264".into(),
            size,
            picture: Default::default(),
            colour: Default::default(),
            pix_fmt: "yuv420p".into(),
            bit_depth: 8,
            frame_rate: crate::media::Rational { num: 30, den: 1 },
            frames,
            constant_rate: true,
            audio: Vec::new(),
            extra_streams: Vec::new(),
            chapters: 0,
            start_time: None,
            timeline: None,
        };
        Plan {
            input,
            input_identity: FileIdentity {
                bytes: 1,
                hash: "0".into(),
            },
            frames,
            size,
            output: OutputSpec::parse(std::path::Path::new("out.mp4"), 18, None).unwrap(),
            chunk_frames,
            todo_chunks: todo,
            schedule: Schedule::Static,
            ranks,
            temporal: None,
        }
    }

    #[test]
    fn temporal_runs_start_with_their_warmup_but_never_before_the_first_frame() {
        let mut plan = plan(100, 10, (0..10).collect(), 2);
        assert_eq!(plan.warmup_before(40), 0);
        plan.temporal = Some(TemporalSettings::new(0.5).unwrap());
        let warmup = plan.temporal.unwrap().warmup_frames();
        assert!(warmup > 0);
        assert_eq!(plan.warmup_before(40), warmup);
        assert_eq!(plan.warmup_before(2), 2);
        assert_eq!(plan.warmup_before(0), 0);
    }

    #[test]
    fn a_fresh_plan_gives_each_rank_a_contiguous_run_of_chunks() {
        let plan = plan(10, 2, vec![0, 1, 2, 3, 4], 3);
        assert_eq!(plan.static_share(0), vec![0, 1]);
        assert_eq!(plan.static_share(1), vec![2, 3]);
        assert_eq!(plan.static_share(2), vec![4]);
        assert_eq!(plan.frame_runs(&plan.static_share(0)), vec![0..4]);
        assert_eq!(plan.frame_runs(&plan.static_share(2)), vec![8..10]);
    }

    #[test]
    fn a_resumed_plan_splits_only_the_missing_chunks() {
        let plan = plan(20, 4, vec![1, 3, 4], 2);
        assert_eq!(plan.frames_to_compute(), 12);
        assert_eq!(plan.static_share(0), vec![1, 3]);
        assert_eq!(plan.frame_runs(&plan.static_share(0)), vec![4..8, 12..16]);
        assert_eq!(plan.frame_runs(&plan.static_share(1)), vec![16..20]);
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
