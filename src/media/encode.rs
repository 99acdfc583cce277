//! Encoding stylized frames. The video is encoded in fixed chunks of frames (the same chunk
//! grid whatever the number of ranks), each by its own ffmpeg process into a segment; the
//! segments are then joined by stream copy and muxed with the input's audio. Because the chunk
//! grid does not depend on the rank count, the output bytes do not either.

use super::output::{OutputKind, OutputSpec};
use super::probe::VideoInfo;
use super::{error_lines, file_url, summarize, MediaError, Rational};
use crate::frame::{Frame, FrameSize};
use ffmpeg_sidecar::child::FfmpegChild;
use ffmpeg_sidecar::command::FfmpegCommand;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ChildStdin;
use std::thread::JoinHandle;

/// x264 threads are fixed rather than taken from the core count: x264's output depends on its
/// thread count, and under mpirun the cores a process sees depend on its binding.
const X264_THREADS: &str = "4";
const X264_PRESET: &str = "medium";
/// Bitrate of audio that has to be re-encoded to AAC.
const AAC_BITRATE: &str = "192k";

/// The file name of chunk `index`'s segment in the staging directory.
pub fn segment_name(index: usize) -> String {
    format!("chunk-{index:08}.ts")
}

/// An ffmpeg process encoding one chunk of frames, fed through its stdin.
pub struct ChunkEncoder {
    child: FfmpegChild,
    stdin: Option<ChildStdin>,
    drain: Option<JoinHandle<Vec<String>>>,
    size: FrameSize,
}

impl ChunkEncoder {
    /// Starts encoding chunk `index`, whose first frame is frame `first_frame` (0-based) of the
    /// output, into `staging`.
    pub fn start(
        output: &OutputSpec,
        size: FrameSize,
        frame_rate: Rational,
        index: usize,
        first_frame: usize,
        staging: &Path,
    ) -> Result<ChunkEncoder, MediaError> {
        let mut command = FfmpegCommand::new();
        command
            .hide_banner()
            .format("rawvideo")
            .pix_fmt("rgb24")
            .args(["-video_size", &size.to_string()])
            .args(["-framerate", &frame_rate.to_string()])
            .input("pipe:0");
        match &output.kind {
            OutputKind::Video { crf, pix_fmt, .. } => {
                command
                    .codec_video("libx264")
                    .preset(X264_PRESET)
                    .crf(*crf as u32)
                    .pix_fmt(pix_fmt)
                    .args(["-threads", X264_THREADS])
                    .format("mpegts")
                    .output(file_url(&staging.join(segment_name(index))));
            }
            OutputKind::Images { pattern } => {
                command
                    .args(["-start_number", &(first_frame + 1).to_string()])
                    .codec_video("png")
                    .format("image2")
                    .output(file_url(&staging.join(pattern)));
            }
        }
        log::debug!(
            "chunk {index}: {:?}",
            command.get_args().collect::<Vec<_>>()
        );
        let mut child = command.spawn().map_err(|source| MediaError::Spawn {
            program: "ffmpeg",
            source,
        })?;
        let stdin = child.take_stdin();
        let events = child.iter().map_err(|e| MediaError::Ffmpeg {
            doing: "starting the encoder".into(),
            detail: e.to_string(),
        })?;
        let drain = std::thread::spawn(move || error_lines(events));
        Ok(ChunkEncoder {
            child,
            stdin,
            drain: Some(drain),
            size,
        })
    }

    pub fn write(&mut self, frame: &Frame) -> Result<(), MediaError> {
        debug_assert_eq!(frame.size, self.size);
        let stdin = self.stdin.as_mut().expect("stdin is open until finish");
        if stdin.write_all(&frame.data).is_err() {
            return Err(self.failure());
        }
        Ok(())
    }

    /// Closes the input and waits for the segment to be complete.
    pub fn finish(mut self) -> Result<(), MediaError> {
        match self.close() {
            (true, _) => Ok(()),
            (false, errors) => Err(encoding_failed(&errors)),
        }
    }

    fn failure(&mut self) -> MediaError {
        encoding_failed(&self.close().1)
    }

    /// Closes ffmpeg's input, waits for it, and returns whether it succeeded and its errors.
    fn close(&mut self) -> (bool, Vec<String>) {
        drop(self.stdin.take());
        let succeeded = self.child.wait().is_ok_and(|s| s.success());
        let errors = self
            .drain
            .take()
            .map(|d| d.join().unwrap_or_default())
            .unwrap_or_default();
        (succeeded, errors)
    }
}

fn encoding_failed(errors: &[String]) -> MediaError {
    MediaError::Ffmpeg {
        doing: "encoding".into(),
        detail: summarize(errors),
    }
}

impl Drop for ChunkEncoder {
    fn drop(&mut self) {
        if self.drain.is_some() {
            drop(self.stdin.take());
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Joins the chunk segments in `staging` and muxes the input's audio into `destination`.
/// `duration` (seconds) trims the audio when only the first frames were stylized.
pub fn assemble(
    output: &OutputSpec,
    input: &VideoInfo,
    chunks: usize,
    staging: &Path,
    destination: &Path,
    duration: Option<f64>,
) -> Result<(), MediaError> {
    let OutputKind::Video { container, .. } = &output.kind else {
        return Ok(());
    };
    let list: String = (0..chunks)
        .map(|i| format!("file '{}'\n", segment_name(i)))
        .collect();
    let list_path: PathBuf = staging.join("chunks.txt");
    std::fs::write(&list_path, list).map_err(|e| MediaError::Output {
        path: list_path.display().to_string(),
        problem: e.to_string(),
    })?;
    let mut command = FfmpegCommand::new();
    command
        .hide_banner()
        .args(["-nostdin"])
        .format("concat")
        .args(["-safe", "0"])
        .input(file_url(&list_path))
        .input(file_url(&input.path))
        .map("0:v:0")
        .codec_video("copy");
    for (i, audio) in input.audio.iter().enumerate() {
        command.map(format!("1:{}", audio.index));
        if container.takes_audio(&audio.codec) {
            command.args([format!("-c:a:{i}"), "copy".into()]);
        } else {
            log::info!(
                "audio stream {} ({}) is re-encoded to AAC for {:?}",
                audio.index,
                audio.codec,
                container
            );
            command.args([
                format!("-c:a:{i}"),
                "aac".into(),
                format!("-b:a:{i}"),
                AAC_BITRATE.into(),
            ]);
        }
    }
    if let Some(seconds) = duration {
        command.args(["-t", &format!("{seconds:.6}")]);
    }
    if matches!(
        container,
        super::output::Container::Mp4 | super::output::Container::Mov
    ) {
        command.args(["-movflags", "+faststart"]);
    }
    command
        .format(container.muxer())
        .overwrite()
        .output(file_url(destination));
    log::debug!("assemble: {:?}", command.get_args().collect::<Vec<_>>());
    let mut child = command.spawn().map_err(|source| MediaError::Spawn {
        program: "ffmpeg",
        source,
    })?;
    let errors = error_lines(child.iter().map_err(|e| MediaError::Ffmpeg {
        doing: "assembling the output".into(),
        detail: e.to_string(),
    })?);
    let status = child.wait().map_err(|source| MediaError::Spawn {
        program: "ffmpeg",
        source,
    })?;
    if !status.success() {
        return Err(MediaError::Ffmpeg {
            doing: "assembling the output".into(),
            detail: summarize(&errors),
        });
    }
    Ok(())
}
