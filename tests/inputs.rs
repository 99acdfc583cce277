//! Videos as phones, cameras and editors make them, made here with ffmpeg: stored sideways or
//! mirrored with a display matrix (every one of the eight right-angle turns and mirrors), and
//! anamorphic (non-square pixels). The output must display as the input does: stylized upright,
//! with the input's pixel shape.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use stylemill::frame::FrameSize;

const ONE: i32 = 1 << 16;
const W: i32 = 1 << 30;

/// The sample clip's first frames at 160x120, then `filters`, encoded losslessly (no audio), so
/// that a clip turned by ffmpeg's filters holds exactly the pixels of a turned display.
fn lossless_clip(dir: &Path, name: &str, filters: &str) -> PathBuf {
    let clip = dir.join(format!("{name}.mp4"));
    let filters = match filters {
        "" => "scale=160:120".to_string(),
        more => format!("scale=160:120,{more}"),
    };
    ffmpeg(&[
        "-i",
        media("rabbit320_h264_aac.mp4").to_str().unwrap(),
        "-frames:v",
        "6",
        "-vf",
        &filters,
        "-c:v",
        "libx264",
        "-qp",
        "0",
        "-an",
        clip.to_str().unwrap(),
    ]);
    clip
}

fn stylize(input: &Path, output: &Path, extra: &[&str]) -> String {
    let (ok, _, stderr) = stylemill(&run_args(input, output, "mosaic", extra));
    assert!(ok, "{stderr}");
    stderr
}

fn size_of(stream: &Stream) -> FrameSize {
    FrameSize {
        width: stream.width.unwrap(),
        height: stream.height.unwrap(),
    }
}

#[test]
fn turned_and_mirrored_videos_are_stylized_upright_and_display_as_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let stored = lossless_clip(dir.path(), "stored", "");
    // Each display matrix, and the filters that turn the stored frames into what it displays.
    let cases: [(&str, [i32; 4], &str); 8] = [
        ("upright", [ONE, 0, 0, ONE], "null"),
        ("clockwise", [0, ONE, -ONE, 0], "transpose=clock"),
        ("upside-down", [-ONE, 0, 0, -ONE], "hflip,vflip"),
        ("counter-clockwise", [0, -ONE, ONE, 0], "transpose=cclock"),
        ("mirrored", [-ONE, 0, 0, ONE], "hflip"),
        ("flipped", [ONE, 0, 0, -ONE], "vflip"),
        ("transposed", [0, ONE, ONE, 0], "transpose=cclock_flip"),
        (
            "anti-transposed",
            [0, -ONE, -ONE, 0],
            "transpose=clock_flip",
        ),
    ];
    for (name, [a, b, c, d], filters) in cases {
        let turned = dir.path().join(format!("{name}-turned.mp4"));
        with_display_matrix(&stored, [a, b, 0, c, d, 0, 0, 0, W], &turned);
        let upright = lossless_clip(dir.path(), &format!("{name}-upright"), filters);
        let from_turned = dir.path().join(format!("{name}-from-turned.mp4"));
        let from_upright = dir.path().join(format!("{name}-from-upright.mp4"));
        stylize(&turned, &from_turned, &[]);
        stylize(&upright, &from_upright, &[]);
        let streams = probe(&from_turned);
        let video = video_stream(&streams);
        let expected = size_of(video_stream(&probe(&upright)));
        assert_eq!(size_of(video), expected, "{name}");
        assert!(
            video.side_data_list.is_empty(),
            "{name}: the output is upright, with no matrix: {:?}",
            video.side_data_list
        );
        let got = decode(&from_turned, expected, false);
        let wanted = decode(&from_upright, expected, false);
        assert_eq!(got.len(), 6, "{name}");
        assert!(
            got.iter().zip(&wanted).all(|(g, w)| g.data == w.data),
            "{name}: the stylized frames differ from those of the upright clip"
        );
    }
}

#[test]
fn a_display_matrix_at_another_angle_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let stored = lossless_clip(dir.path(), "stored", "");
    let tilted = dir.path().join("tilted.mp4");
    let (half, root3) = (ONE / 2, (f64::from(ONE) * 3f64.sqrt() / 2.0) as i32);
    with_display_matrix(&stored, [root3, half, 0, -half, root3, 0, 0, 0, W], &tilted);
    let output = dir.path().join("out.mp4");
    let (ok, _, stderr) = stylemill(&run_args(&tilted, &output, "mosaic", &[]));
    assert!(!ok);
    assert!(
        stderr.contains("asks to be displayed turned by 30 degrees"),
        "{stderr}"
    );
    assert!(!output.exists());
}

#[test]
fn anamorphic_video_keeps_its_pixel_shape_scaled_and_turned_too() {
    let dir = tempfile::tempdir().unwrap();
    // DV/DVD widescreen: 720x480 stored, 32:27 pixels, shown 16:9; here at 160x120.
    let anamorphic = lossless_clip(dir.path(), "anamorphic", "setsar=32/27");
    let input = video_stream(&probe(&anamorphic))
        .display_aspect_ratio
        .clone();
    assert_eq!(input.as_deref(), Some("128:81"));
    for (name, extra) in [("plain", &[][..]), ("scaled", &["--scale", "2"][..])] {
        let output = dir.path().join(format!("{name}.mp4"));
        stylize(&anamorphic, &output, extra);
        let streams = probe(&output);
        let video = video_stream(&streams);
        assert_eq!(
            video.sample_aspect_ratio.as_deref(),
            Some("32:27"),
            "{name}"
        );
        assert_eq!(video.display_aspect_ratio, input, "{name}");
    }
    let portrait = dir.path().join("portrait.mp4");
    with_display_matrix(&anamorphic, [0, ONE, 0, -ONE, 0, 0, 0, 0, W], &portrait);
    let output = dir.path().join("portrait-out.mp4");
    stylize(&portrait, &output, &[]);
    let streams = probe(&output);
    let video = video_stream(&streams);
    assert_eq!(
        size_of(video),
        FrameSize {
            width: 120,
            height: 160
        }
    );
    assert_eq!(video.sample_aspect_ratio.as_deref(), Some("27:32"));
    assert_eq!(video.display_aspect_ratio.as_deref(), Some("81:128"));
}
