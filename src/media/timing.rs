//! The output's timestamps: every stylized frame keeps its input frame's timestamp, so variable
//! frame rate stays variable, a constant one stays exact (30000/1001 included), and the
//! picture stays where it was against the sound, whatever the ranks and chunks.
//!
//! Each chunk is encoded with its frames' timestamps (relative to the chunk's first frame) in
//! the input's own time base. The join places chunk k at its first frame's time, given to the
//! concat demuxer as whole microseconds that add up exactly (each file's duration is the
//! difference of two rounded start times, so rounding never accumulates), and the joined video
//! is shifted by the input's own delay of its first frame after the file's start, which the
//! audio, taken from the input, keeps too. Inputs without timestamps (raw elementary streams)
//! are timed at their frame rate.

use super::probe::VideoInfo;
use super::timeline::Timeline;
use std::ops::Range;

/// How the frames of one input are timed in the output.
pub struct Timing<'a> {
    info: &'a VideoInfo,
}

impl<'a> Timing<'a> {
    pub fn of(info: &'a VideoInfo) -> Timing<'a> {
        Timing { info }
    }

    /// Filters giving the frames of chunk `frames`, fed at any rate, their input timestamps
    /// relative to the chunk's first, in the input's time base; empty without a timeline.
    pub fn chunk_filters(&self, frames: Range<usize>) -> Vec<String> {
        let Some(timeline) = &self.info.timeline else {
            return Vec::new();
        };
        let first = timeline.pts[frames.start];
        let terms: Vec<String> = frames
            .clone()
            .enumerate()
            .map(|(n, frame)| format!("{}*eq(N\\,{n})", timeline.pts[frame] - first))
            .collect();
        vec![
            format!("settb={}", timeline.time_base),
            format!("setpts={}", terms.join("+")),
        ]
    }

    /// The time base the chunk encoder must keep (the input's), `None` without a timeline.
    pub fn encoder_time_base(&self) -> Option<String> {
        self.timeline().map(|t| t.time_base.to_string())
    }

    /// The concat demuxer's `duration` of the chunk starting at frame `start` when the next
    /// starts at frame `next`, in seconds; `None` without a timeline.
    pub fn chunk_duration(&self, start: usize, next: usize) -> Option<String> {
        self.timeline()?;
        let micros = self.micros_at(next) - self.micros_at(start);
        Some(format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000))
    }

    /// Seconds from the start of the input file to its first video frame: the joined video
    /// starts that late, as the input's does against its audio.
    pub fn video_delay(&self) -> f64 {
        match (self.timeline(), self.info.start_time) {
            (Some(timeline), Some(start)) => {
                (timeline.pts[0] as f64 * timeline.time_base.as_f64() - start).max(0.0)
            }
            _ => 0.0,
        }
    }

    /// Seconds from the first frame to the end of frame `frames - 1`: how long the output of
    /// the first `frames` frames lasts, for trimming the audio to them.
    pub fn duration_of_first(&self, frames: usize) -> f64 {
        match self.timeline() {
            Some(_) if frames < self.info.frames => self.micros_at(frames) as f64 / 1e6,
            _ => frames as f64 / self.info.frame_rate.as_f64(),
        }
    }

    fn timeline(&self) -> Option<&Timeline> {
        self.info.timeline.as_ref()
    }

    /// Whole microseconds from the first frame to frame `frame` (rounded down).
    fn micros_at(&self, frame: usize) -> i128 {
        let timeline = self.timeline().expect("a timeline");
        let ticks = i128::from(timeline.pts[frame] - timeline.pts[0]);
        let base = timeline.time_base;
        (ticks * i128::from(base.num) * 1_000_000).div_euclid(i128::from(base.den))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameSize;
    use crate::media::Rational;

    fn info(pts: Vec<i64>, time_base: Rational, start_time: f64) -> VideoInfo {
        VideoInfo {
            path: "in.mp4".into(),
            name: "in.mp4".into(),
            video_stream: 0,
            codec: "h264".into(),
            size: FrameSize {
                width: 8,
                height: 8,
            },
            picture: Default::default(),
            colour: Default::default(),
            pix_fmt: "yuv420p".into(),
            bit_depth: 8,
            frame_rate: Rational { num: 30, den: 1 },
            frames: pts.len(),
            audio: Vec::new(),
            extra_streams: Vec::new(),
            chapters: 0,
            start_time: Some(start_time),
            timeline: Some(Timeline {
                time_base,
                pts,
                seek_points: Vec::new(),
                indexed: true,
                open_gops: false,
            }),
        }
    }

    #[test]
    fn chunk_frames_get_their_own_timestamps_relative_to_the_chunk() {
        let input = info(
            vec![0, 512, 1024, 3072, 5120],
            Rational { num: 1, den: 15360 },
            0.0,
        );
        assert_eq!(
            Timing::of(&input).chunk_filters(2..5),
            [
                "settb=1/15360",
                "setpts=0*eq(N\\,0)+2048*eq(N\\,1)+4096*eq(N\\,2)"
            ]
        );
    }

    #[test]
    fn chunk_durations_add_up_to_exact_start_times() {
        // 30000/1001: a frame lasts 33366.66... microseconds.
        let pts: Vec<i64> = (0..100).map(|i| i * 1001).collect();
        let input = info(pts, Rational { num: 1, den: 30000 }, 0.0);
        let timing = Timing::of(&input);
        let total: i128 = (0..99)
            .step_by(7)
            .map(|start| {
                let next = (start + 7).min(99);
                let text = timing.chunk_duration(start, next).unwrap();
                let (seconds, micros) = text.split_once('.').unwrap();
                seconds.parse::<i128>().unwrap() * 1_000_000 + micros.parse::<i128>().unwrap()
            })
            .sum();
        // Frame 99 starts at 99 * 1001 / 30000 s = 3.3033 s.
        assert_eq!(total, 3_303_300);
    }

    #[test]
    fn the_video_starts_as_late_after_the_file_start_as_in_the_input() {
        let input = info(
            vec![45_000, 48_003],
            Rational {
                num: 1,
                den: 90_000,
            },
            0.4,
        );
        assert!((Timing::of(&input).video_delay() - 0.1).abs() < 1e-9);
    }
}
