//! Every stream of the input besides the picture and the sound, and what the output keeps of
//! the file: subtitles, attachments (fonts), a cover picture, data streams (timecode, GPS),
//! chapters and metadata. What the output container can hold is copied (or converted, text
//! subtitles to `mov_text` for MP4 and MOV); what it cannot is named in the log, with the
//! container that would hold it. A cover picture is never the video stylized.

use super::output::Container;
use serde::{Deserialize, Serialize};

/// A stream carried beside the video and audio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraStream {
    /// Absolute index in the input.
    pub index: usize,
    pub kind: ExtraKind,
    pub codec: String,
    /// How the log names it: an attachment's file name, or the stream's title or language.
    pub label: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExtraKind {
    Subtitle,
    Attachment,
    /// A still image with the attached-picture disposition (album art, a thumbnail).
    CoverPicture,
    Data,
}

/// What becomes of an extra stream in a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carriage {
    Copy,
    /// Converted with this encoder.
    Convert(&'static str),
    /// Left out, for this reason.
    Drop(&'static str),
}

const TEXT_SUBTITLES: [&str; 7] = ["subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"];

impl ExtraStream {
    /// What `container` can hold of this stream.
    pub fn carriage(&self, container: Container) -> Carriage {
        let text = TEXT_SUBTITLES.contains(&self.codec.as_str());
        match (self.kind, container) {
            (ExtraKind::Subtitle, Container::Mkv) if self.codec == "mov_text" => {
                Carriage::Convert("srt")
            }
            (ExtraKind::Subtitle, Container::Mkv) => Carriage::Copy,
            (ExtraKind::Subtitle, _) if self.codec == "mov_text" => Carriage::Copy,
            (ExtraKind::Subtitle, _) if text => Carriage::Convert("mov_text"),
            (ExtraKind::Subtitle, _) => Carriage::Drop(
                "MP4 and MOV hold only text subtitles; write .mkv to keep picture subtitles",
            ),
            (ExtraKind::Attachment, Container::Mkv) => Carriage::Copy,
            (ExtraKind::Attachment, _) => {
                Carriage::Drop("MP4 and MOV cannot hold attachments; write .mkv to keep them")
            }
            (ExtraKind::CoverPicture, Container::Mkv) => Carriage::Drop(
                "ffmpeg writes a cover picture into MKV as a video track; write .mp4 or .mov to keep it",
            ),
            (ExtraKind::CoverPicture, _) => Carriage::Copy,
            (ExtraKind::Data, _) => Carriage::Drop(
                "data streams are not copied (a timecode is kept as the timecode tag)",
            ),
        }
    }

    /// The stream as the log names it: `subtitle stream 3 (subrip, "eng")`.
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            ExtraKind::Subtitle => "subtitle stream",
            ExtraKind::Attachment => "attachment",
            ExtraKind::CoverPicture => "cover picture",
            ExtraKind::Data => "data stream",
        };
        match &self.label {
            Some(label) => format!("{kind} {} ({}, \"{label}\")", self.index, self.codec),
            None => format!("{kind} {} ({})", self.index, self.codec),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(kind: ExtraKind, codec: &str) -> ExtraStream {
        ExtraStream {
            index: 3,
            kind,
            codec: codec.into(),
            label: None,
        }
    }

    #[test]
    fn mkv_keeps_every_subtitle_and_attachment() {
        let carried = |kind, codec| stream(kind, codec).carriage(Container::Mkv);
        assert_eq!(carried(ExtraKind::Subtitle, "subrip"), Carriage::Copy);
        assert_eq!(
            carried(ExtraKind::Subtitle, "hdmv_pgs_subtitle"),
            Carriage::Copy
        );
        assert_eq!(
            carried(ExtraKind::Subtitle, "mov_text"),
            Carriage::Convert("srt")
        );
        assert_eq!(carried(ExtraKind::Attachment, "ttf"), Carriage::Copy);
        assert!(matches!(
            carried(ExtraKind::Data, "bin_data"),
            Carriage::Drop(_)
        ));
    }

    #[test]
    fn mp4_takes_text_subtitles_as_mov_text_and_keeps_a_cover() {
        let carried = |kind, codec| stream(kind, codec).carriage(Container::Mp4);
        assert_eq!(
            carried(ExtraKind::Subtitle, "subrip"),
            Carriage::Convert("mov_text")
        );
        assert_eq!(carried(ExtraKind::Subtitle, "mov_text"), Carriage::Copy);
        assert!(matches!(
            carried(ExtraKind::Subtitle, "dvd_subtitle"),
            Carriage::Drop(_)
        ));
        assert!(matches!(
            carried(ExtraKind::Attachment, "ttf"),
            Carriage::Drop(_)
        ));
        assert_eq!(carried(ExtraKind::CoverPicture, "png"), Carriage::Copy);
    }
}
