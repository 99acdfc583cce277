//! How the input's pictures are meant to be shown, beyond their pixels: the display matrix
//! (phones store portrait video sideways with a rotation; editors add flips), the sample
//! aspect ratio (anamorphic DV, DVD and broadcast video) and interlacing (camera and broadcast
//! video: stylizing combed frames spoils them, so they are deinterlaced first, with bwdif,
//! one output frame per input frame so that timestamps and frame counts stay). The network is not rotation-invariant,
//! so frames are decoded upright with ffmpeg filters chosen here, the same way on every ffmpeg
//! version (ffmpeg's own autorotation is turned off: before 7.0 it ignores flips), and the
//! output is written upright with no matrix and with the input's sample aspect ratio, so that
//! it displays as the input does.

use super::Rational;
use serde::{Deserialize, Serialize};

/// The transform that turns a stored frame into the displayed one: one of the eight rotations
/// and reflections that map a rectangle of pixels onto one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Orientation {
    #[default]
    Upright,
    /// Rotated 90 degrees clockwise for display (a phone held upright).
    Clockwise,
    UpsideDown,
    /// Rotated 90 degrees counter-clockwise for display.
    CounterClockwise,
    MirroredLeftRight,
    MirroredTopBottom,
    /// Mirrored across the diagonal from the top left.
    Transposed,
    /// Mirrored across the diagonal from the top right.
    AntiTransposed,
}

/// A display matrix that is not a multiple of 90 degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnsupportedRotation {
    pub degrees: f64,
}

impl Orientation {
    /// The orientation a display matrix (nine 32-bit values, row by row, as in the MP4 `tkhd`
    /// box and ffprobe's `displaymatrix`) asks for, read as ffmpeg 7's autorotation reads it.
    pub fn from_display_matrix(matrix: [i32; 9]) -> Result<Orientation, UnsupportedRotation> {
        let [a, b, _, c, d, ..] = matrix.map(f64::from);
        // av_display_rotation_get, negated: the clockwise angle the picture is turned by.
        if a.hypot(c) == 0.0 || b.hypot(d) == 0.0 {
            return Ok(Orientation::Upright);
        }
        let degrees = (b / b.hypot(d)).atan2(a / a.hypot(c)).to_degrees().round();
        let degrees = degrees - 360.0 * (degrees / 360.0 + 0.9 / 360.0).floor();
        let near = |angle: f64| (degrees - angle).abs() < 1.0;
        Ok(if near(90.0) {
            if c > 0.0 {
                Orientation::Transposed
            } else {
                Orientation::Clockwise
            }
        } else if near(180.0) {
            match (a < 0.0, d < 0.0) {
                (true, true) => Orientation::UpsideDown,
                (true, false) => Orientation::MirroredLeftRight,
                (false, true) => Orientation::MirroredTopBottom,
                (false, false) => Orientation::Upright,
            }
        } else if near(270.0) {
            if c < 0.0 {
                Orientation::AntiTransposed
            } else {
                Orientation::CounterClockwise
            }
        } else if near(0.0) || near(360.0) {
            if d < 0.0 {
                Orientation::MirroredTopBottom
            } else {
                Orientation::Upright
            }
        } else {
            return Err(UnsupportedRotation { degrees });
        })
    }

    /// Parses ffprobe's `displaymatrix` text: three lines such as
    /// `00000000:            0       65536           0`.
    pub fn parse_display_matrix(text: &str) -> Option<[i32; 9]> {
        let values: Vec<i32> = text
            .lines()
            .filter_map(|line| line.split_once(':'))
            .flat_map(|(_, row)| row.split_whitespace().map(str::parse))
            .collect::<Result<_, _>>()
            .ok()?;
        values.try_into().ok()
    }

    /// ffmpeg filters that turn a stored frame upright.
    pub fn filters(self) -> &'static [&'static str] {
        match self {
            Orientation::Upright => &[],
            Orientation::Clockwise => &["transpose=clock"],
            Orientation::UpsideDown => &["hflip", "vflip"],
            Orientation::CounterClockwise => &["transpose=cclock"],
            Orientation::MirroredLeftRight => &["hflip"],
            Orientation::MirroredTopBottom => &["vflip"],
            Orientation::Transposed => &["transpose=cclock_flip"],
            Orientation::AntiTransposed => &["transpose=clock_flip"],
        }
    }

    /// Whether width and height trade places.
    pub fn swaps_axes(self) -> bool {
        matches!(
            self,
            Orientation::Clockwise
                | Orientation::CounterClockwise
                | Orientation::Transposed
                | Orientation::AntiTransposed
        )
    }
}

impl std::fmt::Display for Orientation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Orientation::Upright => "upright",
            Orientation::Clockwise => "rotated 90 degrees clockwise",
            Orientation::UpsideDown => "rotated 180 degrees",
            Orientation::CounterClockwise => "rotated 90 degrees counter-clockwise",
            Orientation::MirroredLeftRight => "mirrored left to right",
            Orientation::MirroredTopBottom => "mirrored top to bottom",
            Orientation::Transposed => "transposed",
            Orientation::AntiTransposed => "anti-transposed",
        })
    }
}

/// `--deinterlace`: whether frames are deinterlaced before stylizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DeinterlaceChoice {
    /// The frames flagged interlaced, when the stream says its fields are interlaced.
    #[default]
    Auto,
    /// Every frame, whatever the stream says (for interlaced video flagged progressive).
    On,
    /// None (for progressive video flagged interlaced).
    Off,
}

/// Which frames the decoder deinterlaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Deinterlacing {
    #[default]
    None,
    FlaggedFrames,
    AllFrames,
}

impl Deinterlacing {
    /// The deinterlacing filter: bwdif, one frame out per frame in (`send_frame`), each made
    /// from its own fields and its neighbours'.
    pub fn filter(self) -> Option<&'static str> {
        match self {
            Deinterlacing::None => None,
            Deinterlacing::FlaggedFrames => {
                Some("bwdif=mode=send_frame:parity=auto:deint=interlaced")
            }
            Deinterlacing::AllFrames => Some("bwdif=mode=send_frame:parity=auto:deint=all"),
        }
    }

    /// Frames before a decoded frame that the filter reads: a decoder must start that many
    /// frames before its range for the range to come out as from a decode of the whole video.
    pub fn frames_before(self) -> usize {
        match self {
            Deinterlacing::None => 0,
            _ => 1,
        }
    }
}

/// Whether a stream's `field_order` (ffprobe: `progressive`, `tt`, `bb`, `tb`, `bt`) says
/// its frames are interlaced.
pub fn is_interlaced(field_order: Option<&str>) -> bool {
    matches!(field_order, Some("tt" | "bb" | "tb" | "bt"))
}

/// How the input's frames are shown: turned by `orientation`, with pixels `sample_aspect_ratio`
/// wide for 1 tall (after turning; `None` for square or unknown), and whether they are
/// interlaced and deinterlaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Picture {
    pub orientation: Orientation,
    pub sample_aspect_ratio: Option<Rational>,
    pub interlaced: bool,
    pub deinterlacing: Deinterlacing,
}

impl Picture {
    /// Decides the deinterlacing for `choice`.
    pub fn deinterlace(&mut self, choice: DeinterlaceChoice) {
        self.deinterlacing = match choice {
            DeinterlaceChoice::Auto if self.interlaced => Deinterlacing::FlaggedFrames,
            DeinterlaceChoice::Auto | DeinterlaceChoice::Off => Deinterlacing::None,
            DeinterlaceChoice::On => Deinterlacing::AllFrames,
        };
    }

    /// ffmpeg filters that turn a decoded frame into the one stylized (before any scaling):
    /// deinterlaced (on its stored rows) and then turned upright.
    pub fn filters(&self) -> impl Iterator<Item = &'static str> {
        self.deinterlacing
            .filter()
            .into_iter()
            .chain(self.orientation.filters().iter().copied())
    }

    /// From the stored stream's display matrix, sample aspect ratio (as ffprobe gives it,
    /// `32:27`; `0:1`, `1:1` and absent mean square) and field order; not deinterlaced until
    /// [`Picture::deinterlace`] decides.
    pub fn new(
        orientation: Orientation,
        stored_aspect: Option<&str>,
        field_order: Option<&str>,
    ) -> Picture {
        let stored = stored_aspect
            .and_then(|text| Rational::parse(&text.replace(':', "/")))
            .filter(|ratio| ratio.num != ratio.den);
        let sample_aspect_ratio = stored.map(|ratio| match orientation.swaps_axes() {
            true => Rational {
                num: ratio.den,
                den: ratio.num,
            },
            false => ratio,
        });
        Picture {
            orientation,
            sample_aspect_ratio,
            interlaced: is_interlaced(field_order),
            deinterlacing: Deinterlacing::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: i32 = 1 << 16;
    const W: i32 = 1 << 30;

    fn orientation(a: i32, b: i32, c: i32, d: i32) -> Orientation {
        Orientation::from_display_matrix([a, b, 0, c, d, 0, 0, 0, W]).unwrap()
    }

    #[test]
    fn every_right_angle_and_mirror_is_recognised() {
        assert_eq!(orientation(ONE, 0, 0, ONE), Orientation::Upright);
        assert_eq!(orientation(0, ONE, -ONE, 0), Orientation::Clockwise);
        assert_eq!(orientation(-ONE, 0, 0, -ONE), Orientation::UpsideDown);
        assert_eq!(orientation(0, -ONE, ONE, 0), Orientation::CounterClockwise);
        assert_eq!(orientation(-ONE, 0, 0, ONE), Orientation::MirroredLeftRight);
        assert_eq!(orientation(ONE, 0, 0, -ONE), Orientation::MirroredTopBottom);
        assert_eq!(orientation(0, ONE, ONE, 0), Orientation::Transposed);
        assert_eq!(orientation(0, -ONE, -ONE, 0), Orientation::AntiTransposed);
    }

    #[test]
    fn other_angles_are_refused_with_their_angle() {
        let half = ONE / 2;
        let root3 = (f64::from(ONE) * 3f64.sqrt() / 2.0) as i32;
        let result = Orientation::from_display_matrix([root3, half, 0, -half, root3, 0, 0, 0, W]);
        assert_eq!(result, Err(UnsupportedRotation { degrees: 30.0 }));
    }

    #[test]
    fn ffprobe_display_matrix_text_is_parsed() {
        let text = "\n00000000:            0       65536           0\n00000001:       -65536           0           0\n00000002:            0           0  1073741824\n";
        assert_eq!(
            Orientation::parse_display_matrix(text),
            Some([0, ONE, 0, -ONE, 0, 0, 0, 0, W])
        );
        assert_eq!(Orientation::parse_display_matrix("garbled"), None);
    }

    #[test]
    fn the_aspect_ratio_turns_with_the_picture() {
        let tall = Picture::new(Orientation::Clockwise, Some("32:27"), None);
        assert_eq!(
            tall.sample_aspect_ratio,
            Some(Rational { num: 27, den: 32 })
        );
        let wide = Picture::new(Orientation::UpsideDown, Some("32:27"), None);
        assert_eq!(
            wide.sample_aspect_ratio,
            Some(Rational { num: 32, den: 27 })
        );
        let square = |text| Picture::new(Orientation::Upright, Some(text), None);
        assert_eq!(square("1:1").sample_aspect_ratio, None);
        assert_eq!(square("0:1").sample_aspect_ratio, None);
    }

    #[test]
    fn interlaced_streams_are_deinterlaced_before_turning_unless_told_otherwise() {
        let mut picture = Picture::new(Orientation::Clockwise, None, Some("tt"));
        picture.deinterlace(DeinterlaceChoice::Auto);
        let filters: Vec<_> = picture.filters().collect();
        assert_eq!(
            filters,
            [
                "bwdif=mode=send_frame:parity=auto:deint=interlaced",
                "transpose=clock"
            ]
        );
        picture.deinterlace(DeinterlaceChoice::Off);
        assert_eq!(picture.filters().count(), 1);
        let mut progressive = Picture::new(Orientation::Upright, None, Some("progressive"));
        progressive.deinterlace(DeinterlaceChoice::Auto);
        assert_eq!(progressive.deinterlacing, Deinterlacing::None);
        progressive.deinterlace(DeinterlaceChoice::On);
        assert_eq!(progressive.deinterlacing, Deinterlacing::AllFrames);
    }
}
