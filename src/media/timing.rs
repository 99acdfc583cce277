//! The output's timestamps: every stylized frame keeps its input frame's timestamp, so variable
//! frame rate stays variable, a constant one stays exact (30000/1001 included), and the
//! picture stays where it was against the sound, whatever the ranks and chunks.
//!
//! Each chunk is encoded with its frames' timestamps (relative to the chunk's first frame) in
//! the input's own time base, or, when the frames fall on the grid of a constant rate (within
//! the rounding of the container's ticks, as Matroska's milliseconds round 15 frames/s), at
//! exactly that rate. The join places chunk k at its first frame's time, given to the
//! concat demuxer as whole microseconds that add up exactly (each file's duration is the
//! difference of two rounded start times, so rounding never accumulates), and the joined video
//! is shifted by the input's own delay of its first frame after the file's start, which the
//! audio, taken from the input, keeps too. Inputs without timestamps (raw elementary streams)
//! are timed at their frame rate.

use super::probe::VideoInfo;
use super::timeline::Timeline;
use super::Rational;
use std::ops::Range;

/// How the frames of one input are timed in the output.
pub struct Timing<'a> {
    info: &'a VideoInfo,
}

/// Where the output's frames fall: ticks of `time_base` after the first frame.
enum Clock<'a> {
    /// A constant rate: frame i at i ticks of 1/rate, exactly, even where the container could
    /// only hold rounded timestamps.
    Constant { time_base: Rational },
    /// The input's own timestamps (variable frame rate).
    Stamps(&'a Timeline),
}

impl Clock<'_> {
    fn time_base(&self) -> Rational {
        match self {
            Clock::Constant { time_base } => *time_base,
            Clock::Stamps(timeline) => timeline.time_base,
        }
    }

    fn ticks(&self, frame: usize) -> i64 {
        match self {
            Clock::Constant { .. } => frame as i64,
            Clock::Stamps(timeline) => timeline.pts[frame] - timeline.pts[0],
        }
    }
}

impl<'a> Timing<'a> {
    pub fn of(info: &'a VideoInfo) -> Timing<'a> {
        Timing { info }
    }

    /// The output's clock; `None` for an input without timestamps, timed by its frame rate.
    fn clock(&self) -> Option<Clock<'a>> {
        let timeline = self.info.timeline.as_ref()?;
        Some(match self.info.constant_rate {
            true => Clock::Constant {
                time_base: Rational {
                    num: self.info.frame_rate.den,
                    den: self.info.frame_rate.num,
                },
            },
            false => Clock::Stamps(timeline),
        })
    }

    /// Filters giving the frames of chunk `frames`, fed at any rate, their output times
    /// relative to the chunk's first; empty without timestamps.
    pub fn chunk_filters(&self, frames: Range<usize>) -> Vec<String> {
        let Some(clock) = self.clock() else {
            return Vec::new();
        };
        let times = match clock {
            Clock::Constant { .. } => "N".to_string(),
            Clock::Stamps(_) => {
                let first = clock.ticks(frames.start);
                let terms: Vec<String> = frames
                    .clone()
                    .enumerate()
                    .map(|(n, frame)| format!("{}*eq(N\\,{n})", clock.ticks(frame) - first))
                    .collect();
                terms.join("+")
            }
        };
        vec![
            format!("settb={}", clock.time_base()),
            format!("setpts={times}"),
        ]
    }

    /// The time base the chunk encoder must keep, `None` without timestamps.
    pub fn encoder_time_base(&self) -> Option<String> {
        self.clock().map(|clock| clock.time_base().to_string())
    }

    /// The concat demuxer's `duration` of the chunk starting at frame `start` when the next
    /// starts at frame `next`, in seconds; `None` without timestamps.
    pub fn chunk_duration(&self, start: usize, next: usize) -> Option<String> {
        let clock = self.clock()?;
        let micros = micros_at(&clock, next) - micros_at(&clock, start);
        Some(format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000))
    }

    /// Seconds from the start of the input file to its first video frame: the joined video
    /// starts that late, as the input's does against its audio.
    pub fn video_delay(&self) -> f64 {
        match (&self.info.timeline, self.info.start_time) {
            (Some(timeline), Some(start)) => {
                (timeline.pts[0] as f64 * timeline.time_base.as_f64() - start).max(0.0)
            }
            _ => 0.0,
        }
    }

    /// Seconds from the first frame to the end of frame `frames - 1`: how long the output of
    /// the first `frames` frames lasts, for trimming the audio to them.
    pub fn duration_of_first(&self, frames: usize) -> f64 {
        match self.clock() {
            Some(clock) if frames < self.info.frames => micros_at(&clock, frames) as f64 / 1e6,
            _ => frames as f64 / self.info.frame_rate.as_f64(),
        }
    }
}

/// Whole microseconds from the first frame to frame `frame` (rounded down).
fn micros_at(clock: &Clock, frame: usize) -> i128 {
    let base = clock.time_base();
    (i128::from(clock.ticks(frame)) * i128::from(base.num) * 1_000_000)
        .div_euclid(i128::from(base.den))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameSize;
    use crate::media::Rational;

    fn info(pts: Vec<i64>, time_base: Rational, start_time: f64) -> VideoInfo {
        info_at(pts, time_base, start_time, Rational { num: 30, den: 1 })
    }

    fn info_at(
        pts: Vec<i64>,
        time_base: Rational,
        start_time: f64,
        frame_rate: Rational,
    ) -> VideoInfo {
        let timeline = Timeline {
            time_base,
            pts,
            seek_points: Vec::new(),
            indexed: true,
            open_gops: false,
        };
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
            frame_rate,
            frames: timeline.pts.len(),
            constant_rate: timeline.follows_rate(frame_rate),
            audio: Vec::new(),
            extra_streams: Vec::new(),
            chapters: 0,
            start_time: Some(start_time),
            timeline: Some(timeline),
        }
    }

    #[test]
    fn a_constant_rate_rounded_by_its_container_is_kept_exact() {
        // 15 frames/s in Matroska's milliseconds.
        let fifteen = Rational { num: 15, den: 1 };
        let rounded = info_at(
            vec![0, 67, 133, 200, 267],
            Rational { num: 1, den: 1000 },
            0.0,
            fifteen,
        );
        let timing = Timing::of(&rounded);
        assert_eq!(timing.chunk_filters(2..5), ["settb=1/15", "setpts=N"]);
        assert_eq!(timing.chunk_duration(0, 3).as_deref(), Some("0.200000"));
        let variable = info_at(
            vec![0, 67, 133, 300, 367],
            Rational { num: 1, den: 1000 },
            0.0,
            fifteen,
        );
        assert_eq!(Timing::of(&variable).chunk_filters(0..2)[0], "settb=1/1000");
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
