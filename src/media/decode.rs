//! Decoding chosen frames of the input's video stream as RGB8 (a rank's share: one contiguous
//! range, or several when a resumed job skips checkpointed chunks), streamed one frame at a time
//! (never the whole video in memory), optionally resized for `--scale`.

use super::probe::VideoInfo;
use super::{error_lines, file_url, summarize, MediaError};
use crate::frame::{Frame, FrameSize};
use ffmpeg_sidecar::command::FfmpegCommand;
use ffmpeg_sidecar::event::FfmpegEvent;
use ffmpeg_sidecar::iter::FfmpegIterator;
use std::ops::Range;

/// An ffmpeg process producing the frames of some intervals of the input, in order.
pub struct Decoder {
    child: super::Ffmpeg,
    events: FfmpegIterator,
    size: FrameSize,
    remaining: usize,
    errors: Vec<String>,
    path: String,
}

impl Decoder {
    /// Starts decoding the frames of `intervals` (ascending), resized to `size` if it differs.
    pub fn open(
        info: &VideoInfo,
        intervals: &[Range<usize>],
        size: FrameSize,
    ) -> Result<Decoder, MediaError> {
        // Frames before each interval are decoded and dropped: frame-exact whatever the codec's
        // keyframe layout or the container's timestamps.
        let selection = intervals
            .iter()
            .map(|r| format!("between(n\\,{}\\,{})", r.start, r.end - 1))
            .collect::<Vec<_>>()
            .join("+");
        let mut filters = vec![format!("select={selection}")];
        if size != info.size {
            filters.push(format!(
                "scale={}:{}:flags=lanczos",
                size.width, size.height
            ));
        }
        let count = intervals.iter().map(|r| r.len()).sum();
        let mut child = super::spawn_ffmpeg(
            FfmpegCommand::new()
                .hide_banner()
                .args(["-xerror", "-nostdin"])
                .input(file_url(&info.path))
                .map(format!("0:{}", info.video_stream))
                .filter(filters.join(","))
                .fps_mode("passthrough")
                .rawvideo(),
        )?;
        let events = child.iter().map_err(|e| MediaError::Ffmpeg {
            doing: "starting the decoder".into(),
            detail: e.to_string(),
        })?;
        Ok(Decoder {
            child,
            events,
            size,
            remaining: count,
            errors: Vec::new(),
            path: info.path.display().to_string(),
        })
    }

    /// The next frame, or `None` after the last one of the range.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, MediaError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        for event in self.events.by_ref() {
            match event {
                FfmpegEvent::OutputFrame(frame) => {
                    if frame.data.len() != self.size.rgb_bytes() {
                        return Err(MediaError::Ffmpeg {
                            doing: "decoding".into(),
                            detail: format!("got a frame of {}x{}", frame.width, frame.height),
                        });
                    }
                    self.remaining -= 1;
                    return Ok(Some(Frame::new(self.size, frame.data)));
                }
                other => self.errors.extend(error_lines(std::iter::once(other))),
            }
        }
        let _ = self.child.wait();
        Err(MediaError::Corrupt {
            path: self.path.clone(),
            detail: if self.errors.is_empty() {
                format!("the video ended {} frames early", self.remaining)
            } else {
                summarize(&self.errors)
            },
        })
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // Frames after the last interval are not needed: stop ffmpeg rather than let it decode
        // to the end of the file.
        let _ = self.child.kill();
        self.events.by_ref().for_each(drop);
        let _ = self.child.wait();
    }
}
