//! Probing an input: its first video stream (even when audio comes first), exact frame rate,
//! size, audio streams, and its frames, counted by demuxing (reading packets, never decoding) so
//! that probing costs a small fraction of a decode. The packets also give the frames' timestamps
//! and the keyframes a rank may start decoding at ([`super::timeline`]). Whether the frames
//! decode is checked by the ranks as they decode their ranges.

use super::colour::{Colour, ColourTags};
use super::picture::{Orientation, Picture};
use super::streams::{ExtraKind, ExtraStream};
use super::timeline::{Packet, Timeline};
use super::{summarize, MediaError, Rational};
use crate::frame::FrameSize;
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
    /// The file rank 0 reads (a blob input's download).
    pub path: PathBuf,
    /// The input as shown to the user (the blob URL of a downloaded input).
    pub name: String,
    /// Absolute index of the first video stream.
    pub video_stream: usize,
    pub codec: String,
    /// The frames' size as shown, after [`Picture::orientation`] turns them upright.
    pub size: FrameSize,
    pub picture: Picture,
    pub colour: Colour,
    /// The decoder's pixel format (`yuv420p10le`) and bits per component.
    pub pix_fmt: String,
    pub bit_depth: u32,
    pub frame_rate: Rational,
    pub frames: usize,
    /// Whether every frame falls on the grid of `frame_rate` (within the rounding of the time
    /// base): the output is then timed at exactly that rate.
    pub constant_rate: bool,
    pub audio: Vec<AudioStream>,
    /// Subtitles, attachments, cover pictures and data streams.
    pub extra_streams: Vec<ExtraStream>,
    pub chapters: usize,
    /// Seconds at which the file starts (its earliest stream), as ffmpeg offsets it.
    pub start_time: Option<f64>,
    /// Timestamps and seek points; `None` when the packets carry no usable timestamps (raw
    /// elementary streams), and ranks then decode from the first frame.
    pub timeline: Option<Timeline>,
}

#[derive(Deserialize)]
struct ProbeOutput {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
    #[serde(default)]
    chapters: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct ProbeFormat {
    format_name: Option<String>,
    start_time: Option<String>,
}

#[derive(Deserialize)]
struct ProbeStream {
    index: usize,
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<usize>,
    height: Option<usize>,
    time_base: Option<String>,
    r_frame_rate: Option<String>,
    avg_frame_rate: Option<String>,
    sample_aspect_ratio: Option<String>,
    field_order: Option<String>,
    pix_fmt: Option<String>,
    bits_per_raw_sample: Option<String>,
    color_space: Option<String>,
    color_primaries: Option<String>,
    color_transfer: Option<String>,
    color_range: Option<String>,
    #[serde(default)]
    disposition: Disposition,
    #[serde(default)]
    side_data_list: Vec<SideData>,
    #[serde(default)]
    tags: std::collections::HashMap<String, String>,
}

#[derive(Deserialize)]
struct SideData {
    displaymatrix: Option<String>,
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
    let output = ffprobe(
        path,
        &[
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
            "-show_chapters",
        ],
    )?;
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
    let stored = match (video.width, video.height) {
        (Some(width), Some(height)) if width > 0 && height > 0 => FrameSize { width, height },
        _ => return Err(not_a_video("the video stream has no frame size")),
    };
    let orientation = match video
        .side_data_list
        .iter()
        .find_map(|data| data.displaymatrix.as_deref())
        .and_then(Orientation::parse_display_matrix)
        .map(Orientation::from_display_matrix)
    {
        Some(Ok(orientation)) => orientation,
        Some(Err(rotation)) => {
            return Err(MediaError::UnsupportedRotation {
                path: shown,
                degrees: rotation.degrees,
            })
        }
        None => Orientation::Upright,
    };
    let tags = ColourTags {
        matrix: video.color_space.as_deref(),
        primaries: video.color_primaries.as_deref(),
        transfer: video.color_transfer.as_deref(),
        range: video.color_range.as_deref(),
        pix_fmt: video.pix_fmt.as_deref(),
    };
    let colour = Colour::read(tags, stored).map_err(|hdr| MediaError::Hdr {
        path: shown.clone(),
        transfer: hdr.0,
    })?;
    let bit_depth = video
        .bits_per_raw_sample
        .as_deref()
        .and_then(|bits| bits.parse().ok())
        .unwrap_or(8);
    // Older ffprobes leave an H.264 stream's field order unknown: its first frame tells.
    let field_order = match video.field_order.as_deref() {
        None | Some("unknown") => first_frame_field_order(path, video.index),
        known => known.map(str::to_string),
    };
    let picture = Picture::new(
        orientation,
        video.sample_aspect_ratio.as_deref(),
        field_order.as_deref(),
    );
    let size = match orientation.swaps_axes() {
        true => FrameSize {
            width: stored.height,
            height: stored.width,
        },
        false => stored,
    };
    if orientation != Orientation::Upright {
        log::info!(
            "{shown}: the stored {stored} frames are shown {orientation}; they are stylized as shown, at {size}"
        );
    }
    let parse = |rate: &Option<String>| rate.as_deref().and_then(Rational::parse);
    let frame_rate = choose_frame_rate(parse(&video.r_frame_rate), parse(&video.avg_frame_rate))
        .ok_or_else(|| not_a_video("the video stream has no frame rate"))?;
    let extra_streams = probed
        .streams
        .iter()
        .filter(|s| s.index != video.index)
        .filter_map(extra_stream)
        .collect();
    let audio = probed
        .streams
        .iter()
        .filter(|s| s.codec_type.as_deref() == Some("audio"))
        .map(|s| AudioStream {
            index: s.index,
            codec: s.codec_name.clone().unwrap_or_default(),
        })
        .collect();
    let other_codecs: Vec<&str> = probed
        .streams
        .iter()
        .filter(|s| s.index != video.index)
        .filter_map(|s| s.codec_name.as_deref())
        .collect();
    let packets = video_packets(path, video.index, &other_codecs, &shown)?;
    let frames = packets.iter().filter(|p| !p.discard).count();
    if frames == 0 {
        return Err(MediaError::ZeroFrames { path: shown });
    }
    let time_base = video.time_base.as_deref().and_then(Rational::parse);
    let start_time = probed
        .format
        .as_ref()
        .and_then(|f| f.start_time.as_deref())
        .and_then(|t| t.parse().ok());
    let format = probed
        .format
        .and_then(|f| f.format_name)
        .unwrap_or_default();
    let indexed = INDEXED_FORMATS
        .iter()
        .any(|f| format.split(',').any(|n| n == *f));
    let timeline =
        time_base.and_then(
            |time_base| match Timeline::new(&packets, time_base, indexed) {
                Ok(timeline) => Some(timeline),
                Err(why) => {
                    log::warn!("{shown}: {why}, so every rank decodes from the first frame");
                    None
                }
            },
        );
    Ok(VideoInfo {
        path: path.to_path_buf(),
        name: shown,
        video_stream: video.index,
        codec: video.codec_name.clone().unwrap_or_default(),
        size,
        picture,
        colour,
        pix_fmt: video.pix_fmt.clone().unwrap_or_default(),
        bit_depth,
        frame_rate,
        frames,
        constant_rate: timeline
            .as_ref()
            .is_some_and(|t| t.follows_rate(frame_rate)),
        audio,
        extra_streams,
        chapters: probed.chapters.len(),
        start_time,
        timeline,
    })
}

/// A stream other than video and audio, or a cover picture; `None` for the others.
fn extra_stream(stream: &ProbeStream) -> Option<ExtraStream> {
    let kind = match stream.codec_type.as_deref() {
        Some("video") if stream.disposition.attached_pic != 0 => ExtraKind::CoverPicture,
        Some("subtitle") => ExtraKind::Subtitle,
        Some("attachment") => ExtraKind::Attachment,
        Some("data") => ExtraKind::Data,
        _ => return None,
    };
    let tag = |name: &str| {
        stream
            .tags
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    };
    Some(ExtraStream {
        index: stream.index,
        kind,
        codec: stream
            .codec_name
            .clone()
            .unwrap_or_else(|| "unknown".into()),
        label: tag("filename")
            .or_else(|| tag("title"))
            .or_else(|| tag("language")),
    })
}

/// Containers whose index makes ffmpeg land exactly on the keyframe asked for (the others,
/// MPEG-TS say, are searched by timestamp and land near it).
const INDEXED_FORMATS: [&str; 2] = ["mov", "matroska"];

/// Runs ffprobe quietly (errors only) on `path` with `args`.
fn ffprobe(path: &Path, args: &[&str]) -> Result<std::process::Output, MediaError> {
    crate::shutdown::detach_from_terminal(&mut std::process::Command::new(
        ffmpeg_sidecar::ffprobe::ffprobe_path(),
    ))
    .args(["-v", "error"])
    .args(args)
    .arg(path)
    .stdin(std::process::Stdio::null())
    .output()
    .map_err(|source| MediaError::Spawn {
        program: "ffprobe",
        source,
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

/// The field order of the first frame of stream `stream` (`tt`, `bb` or `progressive`), by
/// decoding that frame; `None` if it cannot be read.
fn first_frame_field_order(path: &Path, stream: usize) -> Option<String> {
    #[derive(Deserialize)]
    struct Frames {
        frames: Vec<FrameFlags>,
    }
    #[derive(Deserialize)]
    struct FrameFlags {
        interlaced_frame: Option<u8>,
        top_field_first: Option<u8>,
    }
    let output = ffprobe(
        path,
        &[
            "-select_streams",
            &stream.to_string(),
            "-read_intervals",
            "%+#1",
            "-show_entries",
            "frame=interlaced_frame,top_field_first",
            "-of",
            "json",
        ],
    )
    .ok()?;
    let frames: Frames = serde_json::from_slice(&output.stdout).ok()?;
    let first = frames.frames.first()?;
    Some(
        match (first.interlaced_frame?, first.top_field_first.unwrap_or(1)) {
            (0, _) => "progressive",
            (_, 0) => "bb",
            _ => "tt",
        }
        .to_string(),
    )
}

/// Reads (demuxes, without decoding) every packet of stream `stream`, in decode order. A
/// container whose packets cannot all be read is truncated or corrupt. The parsers of the
/// other streams (`other_codecs`) run too, and what they say about their own packets (newer
/// ffprobes complain of Opus headers that decode fine) is not the video's concern.
fn video_packets(
    path: &Path,
    stream: usize,
    other_codecs: &[&str],
    shown: &str,
) -> Result<Vec<Packet>, MediaError> {
    let output = ffprobe(
        path,
        &[
            "-select_streams",
            &stream.to_string(),
            "-show_entries",
            "packet=pts,dts,flags",
            "-of",
            "csv=p=0",
        ],
    )?;
    let about_other_stream = |line: &str| {
        line.strip_prefix('[')
            .and_then(|rest| rest.split_once(" @ "))
            .is_some_and(|(tag, _)| other_codecs.contains(&tag))
    };
    let errors: Vec<String> = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| {
            let other = about_other_stream(line);
            if other {
                log::debug!("{shown}: ffprobe: {line}");
            }
            !other
        })
        .map(str::to_string)
        .collect();
    if !output.status.success() || !errors.is_empty() {
        return Err(MediaError::Corrupt {
            path: shown.to_string(),
            detail: summarize(&errors).replace(&path.display().to_string(), shown),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(Packet::parse_csv)
        .collect())
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
