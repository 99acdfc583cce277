//! What the user asked to write: a video container chosen by extension, or a lossless PNG frame
//! sequence given as a printf-style pattern (`frames/%06d.png`), with the encoder settings.

use super::MediaError;
use std::path::{Path, PathBuf};

/// Video containers stylemill writes (H.264 video).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Container {
    Mp4,
    Mov,
    Mkv,
}

impl Container {
    /// ffmpeg's muxer name.
    pub fn muxer(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::Mov => "mov",
            Container::Mkv => "matroska",
        }
    }

    /// Whether an audio codec can be stream-copied into this container (else it becomes AAC).
    pub fn takes_audio(self, codec: &str) -> bool {
        match self {
            Container::Mkv => true,
            Container::Mp4 => matches!(codec, "aac" | "mp3" | "ac3" | "eac3" | "alac"),
            Container::Mov => {
                matches!(codec, "aac" | "mp3" | "ac3" | "eac3" | "alac")
                    || codec.starts_with("pcm_")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum OutputKind {
    Video {
        container: Container,
        crf: u8,
        pix_fmt: String,
    },
    /// PNG frames; `pattern` is the file-name part (`%06d.png`), numbered from 1 like ffmpeg.
    Images { pattern: String },
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OutputSpec {
    /// The path as the user gave it.
    pub path: PathBuf,
    pub kind: OutputKind,
}

/// Pixel formats with chroma subsampled horizontally and vertically, which need even sizes.
fn needs_even_size(pix_fmt: &str) -> bool {
    pix_fmt.starts_with("yuv420") || pix_fmt.starts_with("yuvj420") || pix_fmt.starts_with("nv12")
}

/// Whether a file name is a frame pattern such as `%06d.png` or `frame_%d.png`.
fn is_frame_pattern(name: &str) -> bool {
    name.split('%').skip(1).any(|rest| {
        rest.trim_start_matches(|c: char| c.is_ascii_digit())
            .starts_with('d')
    })
}

impl OutputSpec {
    /// Interprets `-o`; `pix_fmt` `None` picks yuv420p, or yuv444p when the size is odd.
    pub fn parse(path: &Path, crf: u8, pix_fmt: Option<&str>) -> Result<OutputSpec, MediaError> {
        let problem = |problem: String| MediaError::Output {
            path: path.display().to_string(),
            problem,
        };
        let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            problem("it has no file name; give a file such as out.mp4 or frames/%06d.png".into())
        })?;
        let extension = Path::new(name)
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        if is_frame_pattern(name) {
            if extension != "png" {
                return Err(problem(format!(
                    "frame sequences are written as lossless PNG, not .{extension}; use a pattern such as %06d.png"
                )));
            }
            return Ok(OutputSpec {
                path: path.to_path_buf(),
                kind: OutputKind::Images {
                    pattern: name.to_string(),
                },
            });
        }
        let container = match extension.as_str() {
            "mp4" | "m4v" => Container::Mp4,
            "mov" => Container::Mov,
            "mkv" => Container::Mkv,
            _ => {
                return Err(problem(format!(
                    "cannot write .{extension} files; use .mp4, .mov or .mkv, or a frame pattern such as frames/%06d.png"
                )))
            }
        };
        if crf > 51 {
            return Err(problem(format!(
                "--crf {crf} is out of range; use 0 (lossless) to 51"
            )));
        }
        Ok(OutputSpec {
            path: path.to_path_buf(),
            kind: OutputKind::Video {
                container,
                crf,
                pix_fmt: pix_fmt.unwrap_or("").to_string(),
            },
        })
    }

    /// Settles the pixel format for a frame size: the default becomes yuv420p, or yuv444p for
    /// odd sizes, which 4:2:0 cannot represent; an explicit 4:2:0 format with an odd size is refused.
    pub fn fit_to_size(&mut self, width: usize, height: usize) -> Result<(), MediaError> {
        let odd = width % 2 == 1 || height % 2 == 1;
        if let OutputKind::Video { pix_fmt, .. } = &mut self.kind {
            if pix_fmt.is_empty() {
                *pix_fmt = if odd { "yuv444p" } else { "yuv420p" }.to_string();
                if odd {
                    log::warn!("frames are {width}x{height} (odd): encoding yuv444p so the size stays exact");
                }
            } else if odd && needs_even_size(pix_fmt) {
                return Err(MediaError::Output {
                    path: self.path.display().to_string(),
                    problem: format!(
                        "--pix-fmt {pix_fmt} needs an even width and height but frames are {width}x{height}; use --pix-fmt yuv444p or another --scale"
                    ),
                });
            }
        }
        Ok(())
    }
}
