//! Encoding stylized frames. The video is encoded in fixed chunks of frames (the same chunk
//! grid whatever the number of ranks), each by its own ffmpeg process into a segment; the
//! segments are then joined by stream copy and muxed with the input's audio. Because the chunk
//! grid does not depend on the rank count, the output bytes do not either.

use super::output::Container;
use super::output::{OutputKind, OutputSpec};
use super::probe::VideoInfo;
use super::streams::{Carriage, ExtraKind};
use super::timing::Timing;
use super::{error_lines, file_url, summarize, MediaError};
use crate::frame::{Frame, FrameSize};
use ffmpeg_sidecar::command::FfmpegCommand;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ChildStdin;
use std::thread::JoinHandle;

/// x264 threads are fixed rather than taken from the core count: x264's output depends on its
/// thread count, and under mpirun the cores a process sees depend on its binding.
const X264_THREADS: &str = "4";
const X264_PRESET: &str = "medium";
/// Bitrate of audio that has to be re-encoded to AAC.
const AAC_BITRATE: &str = "192k";

/// The name of chunk `index`'s finished output in the work directory: a NUT segment (it keeps
/// any time base exactly) for video, a directory of PNG frames for a frame sequence. It only
/// ever exists complete: the encoder writes under [`partial_name`] and renames when done.
pub fn chunk_name(index: usize, kind: &OutputKind) -> String {
    match kind {
        OutputKind::Video { .. } => format!("chunk-{index:08}.nut"),
        OutputKind::Images { .. } => format!("chunk-{index:08}"),
    }
}

/// Where chunk `index` is written while it is encoded.
pub fn partial_name(index: usize, kind: &OutputKind) -> String {
    format!("{}.partial", chunk_name(index, kind))
}

/// An ffmpeg process encoding one chunk of frames, fed through its stdin.
pub struct ChunkEncoder {
    child: super::Ffmpeg,
    stdin: Option<ChildStdin>,
    drain: Option<JoinHandle<Vec<String>>>,
    size: FrameSize,
    partial: PathBuf,
    finished: PathBuf,
}

fn work_dir_error(path: &Path, error: std::io::Error) -> MediaError {
    MediaError::Output {
        path: path.display().to_string(),
        problem: format!("{error}; check that the work directory is writable and has free space"),
    }
}

impl ChunkEncoder {
    /// Starts encoding chunk `index`, frames `frames` of `input` stylized at `size`, into
    /// `work_dir`.
    pub fn start(
        output: &OutputSpec,
        input: &VideoInfo,
        size: FrameSize,
        index: usize,
        frames: Range<usize>,
        work_dir: &Path,
    ) -> Result<ChunkEncoder, MediaError> {
        let partial = work_dir.join(partial_name(index, &output.kind));
        let finished = work_dir.join(chunk_name(index, &output.kind));
        if let OutputKind::Images { .. } = output.kind {
            let _ = std::fs::remove_dir_all(&partial);
            std::fs::create_dir(&partial).map_err(|e| work_dir_error(&partial, e))?;
        }
        let mut command = FfmpegCommand::new();
        command
            .hide_banner()
            .format("rawvideo")
            .pix_fmt("rgb24")
            .args(["-video_size", &size.to_string()])
            .args(["-framerate", &input.frame_rate.to_string()])
            .input("pipe:0");
        let timing = Timing::of(input);
        let mut filters = Vec::new();
        if let Some(aspect) = input.picture.sample_aspect_ratio {
            // The input's pixel shape: an anamorphic input displays at its own aspect ratio.
            filters.push(format!("setsar={aspect}"));
        }
        if let OutputKind::Video { pix_fmt, .. } = &output.kind {
            // RGB back to YUV with the input's matrix and range, as it was decoded.
            filters.extend(input.colour.from_rgb_filters(pix_fmt));
            filters.extend(timing.chunk_filters(frames.clone()));
        }
        if !filters.is_empty() {
            command.filter(filters.join(","));
        }
        match &output.kind {
            OutputKind::Video { crf, pix_fmt, .. } => {
                command.args(input.colour.tags());
                if let Some(time_base) = timing.encoder_time_base() {
                    command
                        .args(["-enc_time_base", &time_base])
                        .args(super::tools::tools()?.passthrough());
                }
                command
                    .codec_video("libx264")
                    .preset(X264_PRESET)
                    .crf(*crf as u32)
                    .pix_fmt(pix_fmt)
                    .args(["-threads", X264_THREADS])
                    .format("nut")
                    .overwrite()
                    .output(file_url(&partial));
            }
            OutputKind::Images { pattern } => {
                command
                    .args(["-start_number", &(frames.start + 1).to_string()])
                    .codec_video("png")
                    .format("image2")
                    .output(file_url(&partial.join(pattern)));
            }
        }
        log::debug!(
            "chunk {index}: {:?}",
            command.get_args().collect::<Vec<_>>()
        );
        let mut child = super::spawn_ffmpeg(&mut command)?;
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
            partial,
            finished,
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

    /// Closes the input, waits for the chunk to be complete and moves it to its final name.
    pub fn finish(mut self) -> Result<(), MediaError> {
        match self.close() {
            (true, _) => std::fs::rename(&self.partial, &self.finished)
                .map_err(|e| work_dir_error(&self.finished, e)),
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
    let (doing, detail) = ("encoding".to_string(), summarize(errors));
    if errors.iter().any(|e| super::is_ffmpeg_shortcoming(e)) {
        MediaError::FfmpegLacks { doing, detail }
    } else {
        MediaError::Ffmpeg { doing, detail }
    }
}

impl Drop for ChunkEncoder {
    fn drop(&mut self) {
        if self.drain.is_some() {
            drop(self.stdin.take());
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.partial);
        let _ = std::fs::remove_dir_all(&self.partial);
    }
}

/// Adds to the assembling `command` (input 1 being the input file) its chapters, its metadata,
/// every output stream's metadata from its input stream (the picture's less the rotation, which
/// is applied) and the extra streams `container` can hold; logs what is kept and what is left
/// out.
fn carry_the_rest(command: &mut FfmpegCommand, input: &VideoInfo, container: Container) {
    // Naming the picture's metadata source turns off ffmpeg's own copying of stream metadata,
    // so every stream's is named.
    let metadata_from = |command: &mut FfmpegCommand, output: usize, input: usize| {
        command.args([format!("-map_metadata:s:{output}"), format!("1:s:{input}")]);
    };
    command.args(["-map_metadata", "1", "-map_chapters", "1"]);
    metadata_from(command, 0, input.video_stream);
    command.args(["-metadata:s:0", "rotate="]);
    for (i, audio) in input.audio.iter().enumerate() {
        metadata_from(command, 1 + i, audio.index);
    }
    let mut kept = Vec::new();
    let mut output_index = 1 + input.audio.len();
    for stream in &input.extra_streams {
        let codec = match stream.carriage(container) {
            Carriage::Copy => "copy",
            Carriage::Convert(encoder) => encoder,
            Carriage::Drop(why) => {
                log::warn!("{}: {} is left out: {why}", input.name, stream.describe());
                continue;
            }
        };
        command
            .map(format!("1:{}", stream.index))
            .args([format!("-c:{output_index}"), codec.to_string()]);
        metadata_from(command, output_index, stream.index);
        if stream.kind == ExtraKind::CoverPicture {
            command.args([
                format!("-disposition:{output_index}"),
                "attached_pic".into(),
            ]);
        }
        kept.push(match codec {
            "copy" => stream.describe(),
            encoder => format!("{} as {encoder}", stream.describe()),
        });
        output_index += 1;
    }
    if input.chapters > 0 {
        kept.push(format!("{} chapters", input.chapters));
    }
    if !kept.is_empty() {
        log::info!("{}: the output keeps {}", input.name, kept.join(", "));
    }
}

/// Joins the segments of `chunks` (their frames) in `work_dir` and muxes the input's audio
/// into `destination`; the list of segments is written in `scratch`. When the chunks end before
/// the input does, the audio is trimmed to them.
pub fn assemble(
    output: &OutputSpec,
    input: &VideoInfo,
    chunks: &[Range<usize>],
    work_dir: &Path,
    scratch: &Path,
    destination: &Path,
) -> Result<(), MediaError> {
    let OutputKind::Video { container, .. } = &output.kind else {
        return Ok(());
    };
    // The concat demuxer's quoting: a quote inside a quoted path is written '\''.
    let quoted = |path: PathBuf| path.display().to_string().replace('\'', "'\\''");
    let timing = Timing::of(input);
    let video_delay = timing.video_delay();
    let list: String = chunks
        .iter()
        .enumerate()
        .map(|(i, frames)| {
            let file = format!(
                "file '{}'\n",
                quoted(work_dir.join(chunk_name(i, &output.kind)))
            );
            let next = chunks.get(i + 1).map(|next| next.start);
            match next.and_then(|next| timing.chunk_duration(frames.start, next)) {
                Some(seconds) => format!("{file}duration {seconds}\n"),
                None => file,
            }
        })
        .collect();
    let list_path: PathBuf = scratch.join("chunks.txt");
    std::fs::write(&list_path, list).map_err(|e| MediaError::Output {
        path: list_path.display().to_string(),
        problem: e.to_string(),
    })?;
    let mut command = FfmpegCommand::new();
    command
        .hide_banner()
        .args(["-nostdin"])
        .args(["-itsoffset", &format!("{video_delay:.6}")])
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
    carry_the_rest(&mut command, input, *container);
    let frames = chunks.last().map_or(0, |last| last.end);
    if frames < input.frames {
        let seconds = video_delay + timing.duration_of_first(frames);
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
    let mut child = super::spawn_ffmpeg(&mut command)?;
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
