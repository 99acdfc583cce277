//! Decoding one range of frames of the input's video stream as RGB8, streamed one frame at a
//! time (never the whole video in memory), optionally resized for `--scale`.
//!
//! The decoder seeks to the keyframe the timeline names for the range's first frame and
//! identifies each frame it produces by its timestamp (ffmpeg's `showinfo` reports it), so a
//! rank decodes its own range plus at most the frames between that keyframe and the range,
//! whatever the GOP structure, edit list or start time. Every frame of the range is checked to
//! be the one expected; a frame missing or a decoder error names the frame. Inputs without a
//! timeline are decoded from the start and frames are counted instead.

use super::probe::VideoInfo;
use super::timeline::Timeline;
use super::{error_lines, file_url, summarize, MediaError};
use crate::frame::{Frame, FrameSize};
use ffmpeg_sidecar::command::FfmpegCommand;
use ffmpeg_sidecar::event::{FfmpegEvent, LogLevel};
use ffmpeg_sidecar::iter::FfmpegIterator;
use std::collections::VecDeque;
use std::ops::Range;
use std::path::Path;

/// An ffmpeg process producing the frames of one range of the input, in order.
pub struct Decoder<'a> {
    info: &'a VideoInfo,
    /// The input as this rank reads it (a shared path, or its node's copy).
    path: &'a Path,
    size: FrameSize,
    /// The next frame of the range to hand out, and the end of the range.
    next: usize,
    end: usize,
    process: Process,
    /// The timeline's seek point the running process started at; `None`: the first frame.
    start_point: Option<usize>,
    /// Tries left to start earlier when a decode from a keyframe misses frames.
    restarts_left: usize,
    /// Frames produced by processes replaced by a restart.
    produced: usize,
}

/// A running decoder and what it has said but not yet been matched.
struct Process {
    child: super::Ffmpeg,
    events: FfmpegIterator,
    timestamps: VecDeque<Option<i64>>,
    frames: VecDeque<Vec<u8>>,
    errors: Vec<String>,
    /// After a seek into a stream of open GOPs, or near a keyframe of a container without an
    /// index, the keyframe's timestamp until a frame from it on has been shown: errors before
    /// that concern frames such a start cannot decode, errors after it are faults of the file.
    settle_at: Option<i64>,
    /// Decoder errors that are faults of the file, each with the number of frames showinfo had
    /// reported before it: ffmpeg decodes ahead of the frames read here, so an error concerns
    /// only frames reported after it (a corrupt frame after the range must not fail the range).
    faults: Vec<(usize, String)>,
    /// Frames showinfo has reported.
    reported: usize,
    /// Frames this process produced.
    produced: usize,
}

impl<'a> Decoder<'a> {
    /// Starts decoding frames `range` of `info`'s video stream from `path`, resized to `size`
    /// if it differs.
    pub fn open(
        info: &'a VideoInfo,
        path: &'a Path,
        range: Range<usize>,
        size: FrameSize,
    ) -> Result<Decoder<'a>, MediaError> {
        // A deinterlacer reads the frame before: it must be decoded too.
        let first_needed = range
            .start
            .saturating_sub(info.picture.deinterlacing.frames_before());
        let start_point = info
            .timeline
            .as_ref()
            .and_then(|t| t.seek_point_for(first_needed));
        let process = Process::start(info, path, size, start_point)?;
        Ok(Decoder {
            info,
            path,
            size,
            next: range.start,
            end: range.end,
            process,
            start_point,
            restarts_left: 2,
            produced: 0,
        })
    }

    /// The index of the next frame this decoder hands out.
    pub fn next_index(&self) -> usize {
        self.next
    }

    /// Lets the decoder go on up to frame `end` (the rank's next chunk follows this one).
    pub fn extend_to(&mut self, end: usize) {
        self.end = self.end.max(end);
    }

    /// Every frame the decoder produced so far, those dropped before the range included.
    pub fn frames_decoded(&self) -> usize {
        self.produced + self.process.produced
    }

    /// The next frame of the range, or `None` after its last one.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, MediaError> {
        while self.next < self.end {
            let Some(Produced { timestamp, data }) =
                self.process.next(self.info.timeline.is_some())
            else {
                if self.can_restart() {
                    self.restart()?;
                    continue;
                }
                return Err(self.failure());
            };
            if data.len() != self.size.rgb_bytes() {
                return Err(MediaError::Ffmpeg {
                    doing: "decoding".into(),
                    detail: format!("got {} bytes for a frame of {}", data.len(), self.size),
                });
            }
            let faults = self.process.faults_before(self.process.produced);
            if !faults.is_empty() {
                return Err(MediaError::CorruptFrame {
                    path: self.info.name.clone(),
                    frame: self.index_of(timestamp),
                    detail: summarize(&faults),
                });
            }
            match self.identify(timestamp) {
                Position::Before => {}
                Position::Expected => {
                    self.next += 1;
                    return Ok(Some(Frame::new(self.size, data)));
                }
                Position::After if self.can_restart() => self.restart()?,
                Position::After => return Err(self.missing()),
            }
        }
        Ok(None)
    }

    /// A decode that started at a keyframe and skipped a frame or ended early may be the
    /// seek's or the decoder's fault rather than the file's: a container without an index may
    /// land after the keyframe, and at the end of an open-GOP stream ffmpeg's H.264 decoder
    /// withholds frames decoded after a seek that it cannot prove recovered. So it tries again
    /// one keyframe earlier, then from the first frame. Errors from the file itself end it.
    fn can_restart(&self) -> bool {
        self.start_point.is_some() && self.restarts_left > 0 && self.process.faults.is_empty()
    }

    fn restart(&mut self) -> Result<(), MediaError> {
        self.restarts_left -= 1;
        let earlier = match self.restarts_left {
            0 => None,
            _ => self.start_point.and_then(|i| i.checked_sub(1)),
        };
        log::debug!(
            "{}: frame {} did not come from the keyframe before it; decoding again from the one before that",
            self.info.name,
            self.next
        );
        self.produced += self.process.produced;
        self.process = Process::start(self.info, self.path, self.size, earlier)?;
        self.start_point = earlier;
        Ok(())
    }

    /// The index of the frame just produced, with timestamp `timestamp`.
    fn index_of(&self, timestamp: Option<i64>) -> usize {
        match (&self.info.timeline, timestamp) {
            (Some(timeline), Some(pts)) => timeline.pts.partition_point(|&p| p < pts),
            (Some(_), None) => self.next,
            (None, _) => self.process.produced - 1,
        }
    }

    /// Where a produced frame stands relative to the next expected one.
    fn identify(&self, timestamp: Option<i64>) -> Position {
        let (got, wanted) = match (&self.info.timeline, timestamp) {
            (Some(Timeline { pts, .. }), Some(got)) => (got, pts[self.next]),
            (Some(_), None) => return Position::After,
            // Without a timeline frames are counted from the start.
            (None, _) => (self.process.produced as i64 - 1, self.next as i64),
        };
        match got.cmp(&wanted) {
            std::cmp::Ordering::Less => Position::Before,
            std::cmp::Ordering::Equal => Position::Expected,
            std::cmp::Ordering::Greater => Position::After,
        }
    }

    fn missing(&self) -> MediaError {
        MediaError::CorruptFrame {
            path: self.info.name.clone(),
            frame: self.next,
            detail: "the decoder skipped it".into(),
        }
    }

    /// The decoder ended before the range did: the file's fault, unless ffmpeg refused to
    /// start at all for want of an option or filter.
    fn failure(&mut self) -> MediaError {
        let _ = self.process.child.wait();
        let errors = &self.process.errors;
        if self.process.produced == 0 && errors.iter().any(|e| super::is_ffmpeg_shortcoming(e)) {
            return MediaError::FfmpegLacks {
                doing: "decoding".into(),
                detail: summarize(errors),
            };
        }
        MediaError::CorruptFrame {
            path: self.info.name.clone(),
            frame: self.next,
            detail: match (self.process.faults_before(usize::MAX), &self.process.errors) {
                (faults, _) if !faults.is_empty() => summarize(&faults),
                (_, errors) if !errors.is_empty() => summarize(errors),
                _ => format!("the video ended {} frames early", self.end - self.next),
            },
        }
    }
}

/// A frame ffmpeg produced, with its timestamp when the input has a timeline.
struct Produced {
    timestamp: Option<i64>,
    data: Vec<u8>,
}

enum Position {
    Before,
    Expected,
    After,
}

impl Process {
    /// Starts ffmpeg at seek point `start_point` of the input's timeline (`None`: from the
    /// first frame).
    fn start(
        info: &VideoInfo,
        path: &Path,
        size: FrameSize,
        start_point: Option<usize>,
    ) -> Result<Process, MediaError> {
        let timeline = info.timeline.as_ref();
        let seek = timeline
            .zip(start_point)
            .and_then(|(t, p)| t.seek_argument(p));
        // A decode from a keyframe of closed GOPs, in a container that lands on it, expects
        // no error at all.
        let settle_at = seek
            .as_ref()
            .and(timeline.zip(start_point))
            .filter(|(t, _)| t.open_gops || !t.indexed)
            .map(|(t, p)| t.seek_points[p].pts);
        let tools = super::tools::tools()?;
        // showinfo reports each frame's timestamp; the frames are then deinterlaced and turned
        // upright as the input asks.
        let mut filters = vec![tools.showinfo().to_string()];
        filters.extend(info.picture.filters().map(str::to_string));
        let resize = (size != info.size).then_some(size);
        filters.extend(info.colour.to_rgb_filters(resize));
        let mut command = FfmpegCommand::new();
        // Orientation is applied above, the same way by every ffmpeg version.
        command
            .hide_banner()
            .args(["-xerror", "-nostdin", "-noautorotate"]);
        if let Some(seconds) = &seek {
            // An absolute timestamp, and no trimming: frames are identified here.
            command.args(["-seek_timestamp", "1", "-ss", seconds, "-noaccurate_seek"]);
        }
        command
            .args(["-copyts"])
            .input(file_url(path))
            .map(format!("0:{}", info.video_stream))
            .filter(filters.join(","))
            .args(tools.passthrough())
            .rawvideo();
        log::debug!("decode: {:?}", command.get_args().collect::<Vec<_>>());
        let mut child = super::spawn_ffmpeg(&mut command)?;
        let events = child.iter().map_err(|e| MediaError::Ffmpeg {
            doing: "starting the decoder".into(),
            detail: e.to_string(),
        })?;
        Ok(Process {
            child,
            events,
            timestamps: VecDeque::new(),
            frames: VecDeque::new(),
            errors: Vec::new(),
            settle_at,
            faults: Vec::new(),
            reported: 0,
            produced: 0,
        })
    }

    /// The faults logged before the frame that is `frames`-th (from 1) to be produced.
    fn faults_before(&self, frames: usize) -> Vec<String> {
        self.faults
            .iter()
            .filter(|(reported, _)| *reported < frames)
            .map(|(_, fault)| fault.clone())
            .collect()
    }

    /// The next frame ffmpeg produced, with its timestamp when `timed`; `None` when it ended.
    fn next(&mut self, timed: bool) -> Option<Produced> {
        loop {
            if !self.frames.is_empty() && (!timed || !self.timestamps.is_empty()) {
                self.produced += 1;
                let data = self.frames.pop_front().expect("checked");
                return Some(Produced {
                    timestamp: self.timestamps.pop_front().flatten(),
                    data,
                });
            }
            match self.events.next() {
                Some(FfmpegEvent::OutputFrame(frame)) => self.frames.push_back(frame.data),
                Some(FfmpegEvent::Log(LogLevel::Info, line)) => {
                    if let Some(pts) = showinfo_timestamp(&line) {
                        if self
                            .settle_at
                            .is_some_and(|key| pts.is_some_and(|p| p >= key))
                        {
                            self.settle_at = None;
                        }
                        self.reported += 1;
                        self.timestamps.push_back(pts);
                    }
                }
                Some(other) => {
                    let errors = error_lines(std::iter::once(other));
                    if self.settle_at.is_none() {
                        let reported = self.reported;
                        self.faults
                            .extend(errors.iter().map(|e| (reported, e.clone())));
                    }
                    self.errors.extend(errors);
                }
                None => return None,
            }
        }
    }
}

/// For a showinfo line about a frame, such as
/// `[Parsed_showinfo_0 @ 0x5] [info] n:   0 pts:  -1024 pts_time:-0.08 ...`, its timestamp
/// (`None` inside when the frame has none, `NOPTS`); `None` for any other line.
fn showinfo_timestamp(line: &str) -> Option<Option<i64>> {
    if !line.contains("showinfo") || !line.contains(" n:") {
        return None;
    }
    let (_, after) = line.split_once(" pts:")?;
    Some(after.split_whitespace().next().and_then(|t| t.parse().ok()))
}

impl Drop for Process {
    fn drop(&mut self) {
        // Frames after the range are not needed: stop ffmpeg rather than let it decode to the
        // end of the file.
        let _ = self.child.kill();
        self.events.by_ref().for_each(drop);
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::showinfo_timestamp;

    #[test]
    fn showinfo_lines_give_their_timestamp() {
        let line =
            "[Parsed_showinfo_0 @ 0x55d1] [info] n:   3 pts:  -1024 pts_time:-0.08 duration:512";
        assert_eq!(showinfo_timestamp(line), Some(Some(-1024)));
        let untimed = "[Parsed_showinfo_0 @ 0x55d1] [info] n:   4 pts:NOPTS pts_time:NOPTS";
        assert_eq!(showinfo_timestamp(untimed), Some(None));
        assert_eq!(
            showinfo_timestamp("[Parsed_showinfo_0 @ 0x1] [info] config in time_base: 1/25"),
            None
        );
        assert_eq!(showinfo_timestamp("[info] n: 1 pts: 5"), None);
    }
}
