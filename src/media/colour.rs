//! The input's colour: which YUV matrix, primaries, transfer and range its pixels use. The
//! network works on RGB, so frames are converted YUV to RGB on the way in and back on the way
//! out; both conversions use the input's own description, and the output is tagged with it, so
//! that players show the colours of the input. ffmpeg's defaults would convert with BT.601
//! whatever the video says and tag nothing: HD output would shift colour in players that assume
//! BT.709. Untagged video is read as players read it: BT.709 from 720 lines up, BT.601 below,
//! limited range unless the pixel format is a full-range one. HDR video (PQ or HLG transfer) is
//! refused: stylizing its code values as SDR would wash it out.

use crate::frame::FrameSize;
use serde::{Deserialize, Serialize};

/// A colour description, in ffmpeg's names (`bt709`, `smpte170m`, `bt470bg`, `bt2020nc`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Colour {
    pub matrix: String,
    pub primaries: String,
    pub transfer: String,
    pub full_range: bool,
    /// Which of the four were not in the file and were assumed.
    pub assumed: Vec<String>,
}

/// The stream's tags as ffprobe gives them (absent or `unknown` when untagged).
#[derive(Debug, Default, Clone, Copy)]
pub struct ColourTags<'a> {
    pub matrix: Option<&'a str>,
    pub primaries: Option<&'a str>,
    pub transfer: Option<&'a str>,
    pub range: Option<&'a str>,
    pub pix_fmt: Option<&'a str>,
}

/// An HDR transfer, which stylemill does not convert.
#[derive(Debug, Clone, PartialEq)]
pub struct HdrTransfer(pub &'static str);

#[cfg(test)]
impl Default for Colour {
    fn default() -> Colour {
        let size = FrameSize {
            width: 0,
            height: 0,
        };
        Colour::read(ColourTags::default(), size).expect("untagged is SDR")
    }
}

impl Colour {
    /// The colour of a stream of `size` (stored) with `tags`.
    pub fn read(tags: ColourTags, size: FrameSize) -> Result<Colour, HdrTransfer> {
        let tagged = |value: Option<&str>| {
            value
                .filter(|v| !v.is_empty() && *v != "unknown" && *v != "reserved")
                .map(str::to_string)
        };
        match tags.transfer {
            Some("smpte2084") => return Err(HdrTransfer("PQ (SMPTE ST 2084)")),
            Some("arib-std-b67") => return Err(HdrTransfer("HLG (ARIB STD-B67)")),
            _ => {}
        }
        let high_definition = size.height >= 720 || size.width >= 1280;
        let standard = if high_definition {
            "bt709"
        } else {
            "smpte170m"
        };
        let mut assumed = Vec::new();
        let mut or_assume = |value: Option<String>, what: &'static str| {
            value.unwrap_or_else(|| {
                assumed.push(what.to_string());
                standard.to_string()
            })
        };
        let matrix = or_assume(
            tagged(tags.matrix).filter(|m| scale_matrix(m).is_some()),
            "matrix",
        );
        let primaries = or_assume(tagged(tags.primaries), "primaries");
        let transfer = or_assume(tagged(tags.transfer), "transfer");
        let full_range = match tagged(tags.range).as_deref() {
            Some("pc") => true,
            Some(_) => false,
            None => {
                assumed.push("range".to_string());
                tags.pix_fmt.is_some_and(|f| f.starts_with("yuvj"))
            }
        };
        Ok(Colour {
            matrix,
            primaries,
            transfer,
            full_range,
            assumed,
        })
    }

    /// The filters converting decoded YUV frames to RGB24 with this description, resized to
    /// `resize` in the same pass (lanczos, as pytorch/examples resizes for `--content-scale`).
    /// Without resizing, the conversion is bicubic, as ffmpeg's own.
    pub fn to_rgb_filters(&self, resize: Option<FrameSize>) -> [String; 2] {
        let geometry = match resize {
            Some(size) => format!("{}:{}:flags=lanczos", size.width, size.height),
            None => "flags=bicubic".to_string(),
        };
        [
            format!(
                "scale={geometry}:in_color_matrix={}:in_range={}",
                self.scale_matrix(),
                self.range_name()
            ),
            "format=rgb24".to_string(),
        ]
    }

    /// The filters converting RGB24 frames to `pix_fmt` with this description (bicubic, as
    /// ffmpeg's own conversion).
    pub fn from_rgb_filters(&self, pix_fmt: &str) -> [String; 3] {
        [
            format!(
                "scale=flags=bicubic:out_color_matrix={}:out_range={}",
                self.scale_matrix(),
                self.range_name()
            ),
            format!("format={pix_fmt}"),
            // The frames carry the whole description, which newer ffmpegs tag the output from.
            format!(
                "setparams=colorspace={}:color_primaries={}:color_trc={}:range={}",
                self.matrix,
                self.primaries,
                self.transfer,
                self.range_name()
            ),
        ]
    }

    fn scale_matrix(&self) -> &'static str {
        scale_matrix(&self.matrix).expect("only convertible matrices are kept when read")
    }

    /// The encoder options tagging the output with this description.
    pub fn tags(&self) -> [String; 8] {
        [
            "-colorspace".into(),
            self.matrix.clone(),
            "-color_primaries".into(),
            self.primaries.clone(),
            "-color_trc".into(),
            self.transfer.clone(),
            "-color_range".into(),
            self.range_name().into(),
        ]
    }

    fn range_name(&self) -> &'static str {
        if self.full_range {
            "pc"
        } else {
            "tv"
        }
    }
}

impl std::fmt::Display for Colour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "matrix {}, primaries {}, transfer {}, {} range",
            self.matrix,
            self.primaries,
            self.transfer,
            if self.full_range { "full" } else { "limited" }
        )
    }
}

/// The name ffmpeg's scale filter gives the YUV matrix that ffprobe calls `matrix`; `None` for
/// matrices it cannot convert (RGB, YCgCo, ICtCp).
fn scale_matrix(matrix: &str) -> Option<&'static str> {
    Some(match matrix {
        "bt709" => "bt709",
        "smpte170m" => "smpte170m",
        "bt470bg" => "bt470",
        "fcc" => "fcc",
        "smpte240m" => "smpte240m",
        "bt2020nc" | "bt2020c" => "bt2020",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SD: FrameSize = FrameSize {
        width: 720,
        height: 480,
    };
    const HD: FrameSize = FrameSize {
        width: 1920,
        height: 1080,
    };

    #[test]
    fn tags_are_used_as_they_are() {
        let tags = ColourTags {
            matrix: Some("bt470bg"),
            primaries: Some("bt470bg"),
            transfer: Some("bt470bg"),
            range: Some("pc"),
            pix_fmt: Some("yuv420p"),
        };
        let colour = Colour::read(tags, HD).unwrap();
        assert_eq!(
            (
                colour.matrix.as_str(),
                colour.full_range,
                colour.assumed.len()
            ),
            ("bt470bg", true, 0)
        );
        assert_eq!(
            colour.to_rgb_filters(None)[0],
            "scale=flags=bicubic:in_color_matrix=bt470:in_range=pc"
        );
        let half = FrameSize {
            width: 960,
            height: 540,
        };
        assert_eq!(
            colour.to_rgb_filters(Some(half))[0],
            "scale=960:540:flags=lanczos:in_color_matrix=bt470:in_range=pc"
        );
        assert_eq!(
            colour.from_rgb_filters("yuv420p10le"),
            [
                "scale=flags=bicubic:out_color_matrix=bt470:out_range=pc",
                "format=yuv420p10le",
                "setparams=colorspace=bt470bg:color_primaries=bt470bg:color_trc=bt470bg:range=pc"
            ]
        );
    }

    #[test]
    fn untagged_video_is_read_as_players_read_it() {
        let hd = Colour::read(ColourTags::default(), HD).unwrap();
        assert_eq!((hd.matrix.as_str(), hd.full_range), ("bt709", false));
        assert_eq!(hd.assumed, ["matrix", "primaries", "transfer", "range"]);
        let sd = Colour::read(ColourTags::default(), SD).unwrap();
        assert_eq!(sd.matrix, "smpte170m");
        let jpeg = ColourTags {
            pix_fmt: Some("yuvj420p"),
            ..ColourTags::default()
        };
        assert!(Colour::read(jpeg, SD).unwrap().full_range);
    }

    #[test]
    fn hdr_is_refused() {
        for (transfer, named) in [
            ("smpte2084", "PQ (SMPTE ST 2084)"),
            ("arib-std-b67", "HLG (ARIB STD-B67)"),
        ] {
            let tags = ColourTags {
                transfer: Some(transfer),
                ..ColourTags::default()
            };
            assert_eq!(Colour::read(tags, HD), Err(HdrTransfer(named)));
        }
    }
}
