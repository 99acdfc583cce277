//! Probing an input: its first video stream (even when audio comes first), exact frame rate,
//! size, audio streams, and the number of frames, counted by decoding the whole stream once so
//! that a truncated or corrupt file is refused before any work is spent on it.

use super::{error_lines, summarize, MediaError, Rational};
use crate::frame::FrameSize;
use ffmpeg_sidecar::command::FfmpegCommand;
use ffmpeg_sidecar::event::FfmpegEvent;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// An audio stream of the input, carried into the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioStream {
    pub index: usize,
    pub codec: String,
}

/// What a job needs to know about its input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoInfo {
    pub path: PathBuf,
    /// Absolute index of the first video stream.
    pub video_stream: usize,
    pub codec: String,
    pub size: FrameSize,
    pub frame_rate: Rational,
    pub frames: usize,
    pub audio: Vec<AudioStream>,
}

#[derive(Deserialize)]
struct ProbeOutput {
    #[serde(default)]
    streams: Vec<ProbeStream>,
}

#[derive(Deserialize)]
struct ProbeStream {
    index: usize,
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<usize>,
    height: Option<usize>,
    r_frame_rate: Option<String>,
    avg_frame_rate: Option<String>,
    #[serde(default)]
    disposition: Disposition,
}

#[derive(Deserialize, Default)]
struct Disposition {
    #[serde(default)]
    attached_pic: u8,
}

/// Probes `path` and counts its video frames; errors name the input as `shown` (the blob URL
/// of a downloaded input).
pub fn probe(path: &Path, shown: &str) -> Result<VideoInfo, MediaError> {
    let local = path.display().to_string();
    let shown = shown.to_string();
    if !path.exists() {
        return Err(MediaError::InputMissing { path: shown });
    }
    if path.is_dir() {
        return Err(MediaError::NotAVideo {
            path: shown,
            detail: "it is a directory".into(),
        });
    }
    let output = crate::shutdown::detach_from_terminal(&mut std::process::Command::new(
        ffmpeg_sidecar::ffprobe::ffprobe_path(),
    ))
    .args(["-v", "error", "-print_format", "json", "-show_streams"])
    .arg(path)
    .output()
    .map_err(|source| MediaError::Spawn {
        program: "ffprobe",
        source,
    })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let not_a_video = |detail: &str| MediaError::NotAVideo {
        path: shown.clone(),
        detail: detail
            .trim()
            .trim_start_matches(&format!("{local}: "))
            .replace(&local, &shown),
    };
    if !output.status.success() {
        return Err(not_a_video(
            stderr.lines().last().unwrap_or("ffprobe failed"),
        ));
    }
    let probed: ProbeOutput = serde_json::from_slice(&output.stdout)
        .map_err(|e| not_a_video(&format!("unreadable ffprobe output: {e}")))?;
    let video = probed
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("video") && s.disposition.attached_pic == 0)
        .ok_or_else(|| MediaError::NoVideoStream {
            path: shown.clone(),
        })?;
    let size = match (video.width, video.height) {
        (Some(width), Some(height)) if width > 0 && height > 0 => FrameSize { width, height },
        _ => return Err(not_a_video("the video stream has no frame size")),
    };
    let parse = |rate: &Option<String>| rate.as_deref().and_then(Rational::parse);
    let frame_rate = choose_frame_rate(parse(&video.r_frame_rate), parse(&video.avg_frame_rate))
        .ok_or_else(|| not_a_video("the video stream has no frame rate"))?;
    let audio = probed
        .streams
        .iter()
        .filter(|s| s.codec_type.as_deref() == Some("audio"))
        .map(|s| AudioStream {
            index: s.index,
            codec: s.codec_name.clone().unwrap_or_default(),
        })
        .collect();
    let frames = count_frames(path, video.index, &shown)?;
    Ok(VideoInfo {
        path: path.to_path_buf(),
        video_stream: video.index,
        codec: video.codec_name.clone().unwrap_or_default(),
        size,
        frame_rate,
        frames,
        audio,
    })
}

/// The nominal rate (`r_frame_rate`, e.g. exactly 30000/1001) when it agrees with the average
/// rate within 1%; otherwise the average, since the nominal one is then a field rate or a
/// timebase artefact (60/1 for 30 fps interlaced, 90000/1).
fn choose_frame_rate(nominal: Option<Rational>, average: Option<Rational>) -> Option<Rational> {
    match (nominal, average) {
        (Some(n), Some(a)) if (n.as_f64() / a.as_f64() - 1.0).abs() < 0.01 => Some(n),
        (_, Some(a)) => Some(a),
        (n, None) => n,
    }
}

/// Decodes the whole stream (discarding the pixels) and counts frames; any decoder error is
/// reported as corruption.
fn count_frames(path: &Path, stream: usize, shown: &str) -> Result<usize, MediaError> {
    let mut child = super::spawn_ffmpeg(
        FfmpegCommand::new()
            .hide_banner()
            .args(["-xerror", "-nostdin"])
            .input(super::file_url(path))
            .map(format!("0:{stream}"))
            .fps_mode("passthrough")
            .format("null")
            .output("-"),
    )?;
    let mut frames = 0usize;
    let mut errors = Vec::new();
    let events = child.iter().map_err(|e| MediaError::Ffmpeg {
        doing: "counting frames".into(),
        detail: e.to_string(),
    })?;
    for event in events {
        match event {
            FfmpegEvent::Progress(progress) => frames = progress.frame as usize,
            other => errors.extend(error_lines(std::iter::once(other))),
        }
    }
    let status = child.wait().map_err(|source| MediaError::Spawn {
        program: "ffmpeg",
        source,
    })?;
    if frames == 0 {
        return Err(MediaError::ZeroFrames {
            path: shown.to_string(),
        });
    }
    if !status.success() || !errors.is_empty() {
        return Err(MediaError::Corrupt {
            path: shown.to_string(),
            detail: summarize(&errors).replace(&path.display().to_string(), shown),
        });
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> Option<Rational> {
        Rational::parse(text)
    }

    #[test]
    fn the_nominal_rate_wins_when_the_average_only_differs_by_rounding() {
        assert_eq!(
            choose_frame_rate(rate("30/1"), rate("7020000/234001")),
            rate("30/1")
        );
        assert_eq!(
            choose_frame_rate(rate("30000/1001"), rate("30000/1001")),
            rate("30000/1001")
        );
    }

    #[test]
    fn the_average_wins_over_a_field_or_timebase_rate() {
        assert_eq!(choose_frame_rate(rate("60/1"), rate("30/1")), rate("30/1"));
        assert_eq!(
            choose_frame_rate(rate("90000/1"), rate("25/1")),
            rate("25/1")
        );
        assert_eq!(choose_frame_rate(rate("24/1"), None), rate("24/1"));
        assert_eq!(choose_frame_rate(None, None), None);
    }
}
