//! ffmpeg: probing inputs (by demuxing), decoding frame ranges from the nearest keyframe, encoding chunks of stylized frames and
//! assembling the output with the input's audio. The system ffmpeg is driven through
//! ffmpeg-sidecar; nothing is downloaded.

pub mod colour;
pub mod decode;
pub mod encode;
pub mod output;
pub mod picture;
pub mod probe;
pub mod streams;
pub mod timeline;
pub mod timing;
pub mod tools;

use crate::shutdown::ChildGroup;
use ffmpeg_sidecar::child::FfmpegChild;
use ffmpeg_sidecar::command::FfmpegCommand;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{program} was not found on PATH; install ffmpeg (Debian/Ubuntu: `apt-get install ffmpeg`, macOS: `brew install ffmpeg`) and try again")]
    FfmpegMissing { program: &'static str },
    #[error("{program} {found} ({path}) is too old: stylemill needs ffmpeg 4.4 or later; install a newer ffmpeg (Debian 12, Ubuntu 22.04 and later have one) or put a static build first on PATH")]
    FfmpegTooOld {
        program: &'static str,
        found: String,
        path: std::path::PathBuf,
    },
    #[error("input video {path} does not exist; check the path")]
    InputMissing { path: String },
    #[error(
        "{path} is not a video ffmpeg can read ({detail}); pass an MP4, MOV, MKV, WebM or AVI file"
    )]
    NotAVideo { path: String, detail: String },
    #[error("{path} has no video stream; pass a file that contains video")]
    NoVideoStream { path: String },
    #[error("{path} asks to be displayed turned by {degrees} degrees, which stylemill cannot reproduce (it handles turns by multiples of 90 degrees and mirroring); re-encode it upright with ffmpeg (`ffmpeg -i IN -vf rotate=... OUT`) and try again")]
    UnsupportedRotation { path: String, degrees: f64 },
    #[error("{path} is HDR video (transfer {transfer}), which stylemill does not tone-map: stylizing its values as SDR would wash it out; convert it to SDR first (for example `ffmpeg -i IN -vf zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=hable,zscale=t=bt709:m=bt709:r=tv,format=yuv420p OUT`) and try again")]
    Hdr {
        path: String,
        transfer: &'static str,
    },
    #[error("{path} has a video stream with no frames; pass a video with at least one frame")]
    ZeroFrames { path: String },
    #[error("{path} is truncated or corrupt: the decoder failed ({detail}); re-download the file or re-encode it with ffmpeg")]
    Corrupt { path: String, detail: String },
    #[error("{path} is truncated or corrupt: decoding failed near frame {frame} ({detail}); re-download the file or re-encode it with ffmpeg")]
    CorruptFrame {
        path: String,
        frame: usize,
        detail: String,
    },
    #[error("output {path}: {problem}")]
    Output { path: String, problem: String },
    #[error(
        "ffmpeg failed while {doing} ({detail}); run with RUST_LOG=debug to see its command line"
    )]
    Ffmpeg { doing: String, detail: String },
    #[error("the installed ffmpeg cannot do what stylemill asks while {doing} ({detail}); this is the ffmpeg installation's shortcoming, not the input's: install ffmpeg 4.4 or later with libx264 (Debian/Ubuntu's `ffmpeg` package has it)")]
    FfmpegLacks { doing: String, detail: String },
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: &'static str,
        source: std::io::Error,
    },
}

/// An exact frame rate such as 30000/1001, never rounded to a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rational {
    pub num: u64,
    pub den: u64,
}

impl Rational {
    /// Parses ffprobe's "30000/1001"; `None` for 0/0 or malformed text.
    pub fn parse(text: &str) -> Option<Rational> {
        let (num, den) = text.split_once('/')?;
        let (num, den): (u64, u64) = (num.trim().parse().ok()?, den.trim().parse().ok()?);
        (num > 0 && den > 0).then_some(Rational { num, den })
    }

    pub fn as_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

impl std::fmt::Display for Rational {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

/// A local path as an ffmpeg URL: the `file:` protocol keeps a name such as `a:b.mp4` or
/// `-x.mp4` from being read as another protocol or an option.
pub(crate) fn file_url(path: &std::path::Path) -> std::ffi::OsString {
    let mut url = std::ffi::OsString::from("file:");
    url.push(path.as_os_str());
    url
}

/// Whether an ffmpeg error line says that ffmpeg itself cannot do what it was asked (an
/// option, encoder, decoder or filter it lacks), rather than anything about the input.
pub(crate) fn is_ffmpeg_shortcoming(line: &str) -> bool {
    const SAYINGS: [&str; 9] = [
        "Unrecognized option",
        "Option not found",
        "Error splitting the argument list",
        "No such filter",
        "Filter not found",
        "Unknown encoder",
        "Unknown decoder",
        "Encoder not found",
        "Decoder not found",
    ];
    SAYINGS.iter().any(|saying| line.contains(saying))
}

/// A running ffmpeg, started through [`spawn_ffmpeg`].
pub(crate) struct Ffmpeg {
    child: FfmpegChild,
    _group: ChildGroup,
}

impl std::ops::Deref for Ffmpeg {
    type Target = FfmpegChild;
    fn deref(&self) -> &FfmpegChild {
        &self.child
    }
}

impl std::ops::DerefMut for Ffmpeg {
    fn deref_mut(&mut self) -> &mut FfmpegChild {
        &mut self.child
    }
}

/// Starts `command` in a process group of its own, which only a signal that stops stylemill
/// ends (see [`crate::shutdown`]).
pub(crate) fn spawn_ffmpeg(command: &mut FfmpegCommand) -> Result<Ffmpeg, MediaError> {
    crate::shutdown::detach_from_terminal(command.as_inner_mut());
    let mut child = command.spawn().map_err(|source| MediaError::Spawn {
        program: "ffmpeg",
        source,
    })?;
    let group = ChildGroup::register(child.as_inner().id());
    Ok(Ffmpeg {
        child,
        _group: group,
    })
}

/// Runs an ffmpeg command to completion, draining its events; returns its error-level log lines.
/// ffmpeg stalls if its output pipes fill, so every event is consumed.
pub(crate) fn error_lines(
    events: impl Iterator<Item = ffmpeg_sidecar::event::FfmpegEvent>,
) -> Vec<String> {
    use ffmpeg_sidecar::event::{FfmpegEvent, LogLevel};
    events
        .filter_map(|event| match event {
            FfmpegEvent::Log(LogLevel::Error | LogLevel::Fatal, line) => Some(line),
            FfmpegEvent::Error(line) => Some(line),
            _ => None,
        })
        .collect()
}

/// An ffmpeg log line without its `[h264 @ 0x55d1c8] [error]` prefixes, `file:` URL scheme and
/// trailing period.
fn clean(line: &str) -> String {
    let mut rest = line.trim();
    while rest.starts_with('[') {
        match rest.find("] ") {
            Some(end) => rest = rest[end + 2..].trim_start(),
            None => break,
        }
    }
    rest.trim_start_matches("file:")
        .trim_end_matches('.')
        .to_string()
}

/// The first distinct error lines, cleaned and joined for a one-sentence message.
pub(crate) fn summarize(lines: &[String]) -> String {
    let mut summary: Vec<String> = Vec::new();
    for line in lines.iter().map(|l| clean(l)).filter(|l| !l.is_empty()) {
        if !summary.contains(&line) && summary.len() < 2 {
            summary.push(line);
        }
    }
    if summary.is_empty() {
        summary.push("no message".into());
    }
    summary.join("; ")
}
