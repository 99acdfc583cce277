//! End to end: the real binary with the real ffmpeg on the fixture videos and synthetic
//! clips. Outputs are decoded and compared with the engine's own output on the decoded input,
//! so a test passes only if the frames really are the stylized input frames.

mod common;

use common::*;
use std::path::Path;
use stylemill::engine::cpu::CpuEngine;
use stylemill::engine::Engine;
use stylemill::frame::FrameSize;
use stylemill::model::styles::load_style;

/// Asserts that `output`'s frames `indices` are `style` applied to `input`'s (lossy encode
/// allowed), and clearly closer to it than to another style.
fn assert_frames_are_stylized(
    input: &Path,
    output: &Path,
    size: FrameSize,
    scaled: bool,
    style: &str,
    indices: &[usize],
) {
    let source = decode(input, size, scaled);
    let encoded = decode(output, size, false);
    let mut engine = CpuEngine::new(&load_style(style).unwrap(), None);
    let other_style = if style == "candy" { "mosaic" } else { "candy" };
    let mut other = CpuEngine::new(&load_style(other_style).unwrap(), None);
    for &i in indices {
        let expected = engine.stylize(&source[i]).unwrap();
        let wrong = other.stylize(&source[i]).unwrap();
        let right_psnr = psnr(&encoded[i].data, &expected.data);
        let wrong_psnr = psnr(&encoded[i].data, &wrong.data);
        eprintln!("frame {i}: {right_psnr:.1} dB against {style}, {wrong_psnr:.1} dB against {other_style}");
        assert!(
            right_psnr > 25.0,
            "frame {i}: PSNR {right_psnr:.1} dB against the {style} frame"
        );
        assert!(
            right_psnr > wrong_psnr + 8.0,
            "frame {i}: {right_psnr:.1} dB vs {wrong_psnr:.1} dB for another style"
        );
    }
}

#[test]
fn mp4_with_audio_keeps_every_frame_the_rate_and_the_audio() {
    let dir = tempfile::tempdir().unwrap();
    let input = media("rabbit320_h264_aac.mp4");
    let output = dir.path().join("rabbit-mosaic.mp4");
    let (ok, _, stderr) = stylemill(&run_args(&input, &output, "mosaic", &["--scale", "2"]));
    assert!(ok, "{stderr}");
    let (source, result) = (probe(&input), probe(&output));
    let video = video_stream(&result);
    assert_eq!(video.frames(), 234);
    assert_eq!(video.r_frame_rate, "30/1");
    assert_eq!((video.width, video.height), (Some(160), Some(120)));
    assert_eq!(
        (video.codec_name.as_str(), video.pix_fmt.as_deref()),
        ("h264", Some("yuv420p"))
    );
    let frame = 1.0 / 30.0;
    assert!((video.seconds() - video_stream(&source).seconds()).abs() <= frame);
    let audio = result
        .iter()
        .find(|s| s.codec_type == "audio")
        .expect("audio is kept");
    let source_audio = source.iter().find(|s| s.codec_type == "audio").unwrap();
    assert_eq!(audio.codec_name, "aac");
    assert!((audio.seconds() - source_audio.seconds()).abs() <= frame);
    let size = FrameSize {
        width: 160,
        height: 120,
    };
    assert_frames_are_stylized(&input, &output, size, true, "mosaic", &[0, 117, 233]);
    assert_eq!(
        names_in(dir.path()),
        vec!["rabbit-mosaic.mp4"],
        "nothing else is left"
    );
}

#[test]
fn png_sequence_holds_exactly_the_engine_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = media("rabbit320_h264_aac.mp4");
    let pattern = dir.path().join("%06d.png");
    let (ok, _, stderr) = stylemill(&run_args(
        &input,
        &pattern,
        "udnie",
        &["--scale", "2", "--limit", "5"],
    ));
    assert!(ok, "{stderr}");
    let names: Vec<String> = (1..=5).map(|i| format!("{i:06}.png")).collect();
    assert_eq!(names_in(dir.path()), names);
    let size = FrameSize {
        width: 160,
        height: 120,
    };
    let source = decode(&input, size, true);
    let mut engine = CpuEngine::new(&load_style("udnie").unwrap(), None);
    for (i, name) in names.iter().enumerate() {
        let written = read_png(&dir.path().join(name));
        assert_eq!(
            written.data,
            engine.stylize(&source[i]).unwrap().data,
            "{name}"
        );
    }
}

#[test]
fn webm_vp8_vorbis_becomes_mp4_with_aac_audio() {
    let dir = tempfile::tempdir().unwrap();
    let input = media("rabbit320_vp8_vorbis.webm");
    let output = dir.path().join("out.mp4");
    let args = run_args(&input, &output, "candy", &["--scale", "2", "--limit", "30"]);
    let (ok, _, stderr) = stylemill(&args);
    assert!(ok, "{stderr}");
    let result = probe(&output);
    assert_eq!(video_stream(&result).frames(), 30);
    assert_eq!(video_stream(&result).r_frame_rate, "30/1");
    let audio = result
        .iter()
        .find(|s| s.codec_type == "audio")
        .expect("audio is kept");
    assert_eq!(
        audio.codec_name, "aac",
        "Vorbis does not go into MP4: it is re-encoded"
    );
    assert!(
        (audio.seconds() - 1.0).abs() <= 1.0 / 30.0,
        "audio trimmed to the 30 frames: {}",
        audio.seconds()
    );
    assert_frames_are_stylized(
        &input,
        &output,
        FrameSize {
            width: 160,
            height: 120,
        },
        true,
        "candy",
        &[0, 29],
    );
}

#[test]
fn ntsc_rate_clip_without_audio_keeps_150_frames_at_30000_1001() {
    let dir = tempfile::tempdir().unwrap();
    let input = media("flower_960x540_h264_noaudio.mp4");
    let output = dir.path().join("flower.mp4");
    let args = run_args(&input, &output, "rain_princess", &["--scale", "4"]);
    let (ok, _, stderr) = stylemill(&args);
    assert!(ok, "{stderr}");
    let result = probe(&output);
    assert_eq!(result.len(), 1, "no audio stream appears");
    let video = video_stream(&result);
    assert_eq!(video.frames(), 150);
    assert_eq!(video.r_frame_rate, "30000/1001");
    assert_eq!((video.width, video.height), (Some(240), Some(135)));
    assert_eq!(
        video.pix_fmt.as_deref(),
        Some("yuv444p"),
        "odd height keeps its exact size in 4:4:4"
    );
    assert_frames_are_stylized(
        &input,
        &output,
        FrameSize {
            width: 240,
            height: 135,
        },
        true,
        "rain_princess",
        &[0, 149],
    );
}

#[test]
fn sizes_that_are_not_multiples_of_four_are_kept_exactly() {
    let dir = tempfile::tempdir().unwrap();
    for (width, height, pix_fmt) in [(202, 118, "yuv420p"), (67, 53, "yuv444p")] {
        let input = dir.path().join(format!("synthetic_{width}x{height}.mp4"));
        // testsrc2 only makes even sizes: scale its frames to the size wanted.
        let source = format!("testsrc2=size=320x240:rate=25,scale={width}:{height}");
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &source,
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440",
            "-frames:v",
            "12",
            "-t",
            "0.48",
            "-pix_fmt",
            "yuv444p",
            "-c:v",
            "libx264",
            "-c:a",
            "aac",
            input.to_str().unwrap(),
        ]);
        let output = dir.path().join(format!("out_{width}x{height}.mp4"));
        let (ok, _, stderr) = stylemill(&run_args(&input, &output, "pointilism", &[]));
        assert!(ok, "{stderr}");
        let result = probe(&output);
        let video = video_stream(&result);
        assert_eq!((video.width, video.height), (Some(width), Some(height)));
        assert_eq!(video.frames(), 12);
        assert_eq!(video.r_frame_rate, "25/1");
        assert_eq!(video.pix_fmt.as_deref(), Some(pix_fmt));
        assert!(result.iter().any(|s| s.codec_type == "audio"));
        assert_frames_are_stylized(
            &input,
            &output,
            FrameSize { width, height },
            false,
            "pointilism",
            &[0, 11],
        );
    }
}

#[test]
fn mov_mkv_and_avi_inputs_work_and_mkv_output_copies_their_audio() {
    let dir = tempfile::tempdir().unwrap();
    let clips = [
        ("mov", "libx264", "aac"),
        ("mkv", "libx264", "libopus"),
        ("avi", "mpeg4", "libmp3lame"),
    ];
    for (extension, video_codec, audio_codec) in clips {
        let input = dir.path().join(format!("clip.{extension}"));
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=96x64:rate=24",
            "-f",
            "lavfi",
            "-i",
            "sine",
            "-frames:v",
            "6",
            "-t",
            "0.25",
            "-c:v",
            video_codec,
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            audio_codec,
            input.to_str().unwrap(),
        ]);
        let output = dir.path().join(format!("out-{extension}.mkv"));
        let (ok, _, stderr) = stylemill(&run_args(&input, &output, "mosaic", &[]));
        assert!(ok, "{extension}: {stderr}");
        let (source, result) = (probe(&input), probe(&output));
        assert_eq!(video_stream(&result).frames(), 6, "{extension}");
        let codec = |streams: &[Stream]| {
            streams
                .iter()
                .find(|s| s.codec_type == "audio")
                .map(|s| s.codec_name.clone())
        };
        assert_eq!(
            codec(&result),
            codec(&source),
            "{extension}: audio stream-copied into MKV"
        );
    }
}

#[test]
fn the_first_video_stream_is_used_when_audio_comes_first() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("audio-first.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=96x64:rate=15",
        "-f",
        "lavfi",
        "-i",
        "sine",
        "-map",
        "1:a",
        "-map",
        "0:v",
        "-frames:v",
        "5",
        "-t",
        "0.4",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "flac",
        input.to_str().unwrap(),
    ]);
    let source = probe(&input);
    assert_eq!(
        source[0].codec_type, "audio",
        "the fixture has audio as stream 0"
    );
    let output = dir.path().join("out.mp4");
    let (ok, _, stderr) = stylemill(&run_args(&input, &output, "udnie", &[]));
    assert!(ok, "{stderr}");
    let result = probe(&output);
    assert_eq!(video_stream(&result).frames(), 5);
    assert_eq!(video_stream(&result).r_frame_rate, "15/1");
    let audio = result.iter().find(|s| s.codec_type == "audio").unwrap();
    assert_eq!(audio.codec_name, "aac", "FLAC is re-encoded for MP4");
    assert_frames_are_stylized(
        &input,
        &output,
        FrameSize {
            width: 96,
            height: 64,
        },
        false,
        "udnie",
        &[0, 4],
    );
}

#[test]
fn image_command_matches_the_golden_png() {
    let dir = tempfile::tempdir().unwrap();
    let golden = fixtures().join("golden");
    let output = dir.path().join("out.png");
    let input = golden.join("rabbit_frame0_320x240.png");
    let (ok, stdout, stderr) = stylemill(&[
        "image",
        input.to_str().unwrap(),
        output.to_str().unwrap(),
        "--style",
        "candy",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("320x240"));
    let expected = read_png(&golden.join("rabbit_frame0_320x240.candy.png"));
    let written = read_png(&output);
    let equal = written
        .data
        .iter()
        .zip(&expected.data)
        .filter(|(a, b)| a == b)
        .count();
    assert!(equal as f64 / expected.data.len() as f64 >= 0.999);

    let jpeg = dir.path().join("in.jpg");
    ffmpeg(&["-i", input.to_str().unwrap(), jpeg.to_str().unwrap()]);
    let scaled = dir.path().join("half.jpg");
    let (ok, stdout, stderr) = stylemill(&[
        "image",
        jpeg.to_str().unwrap(),
        scaled.to_str().unwrap(),
        "--style",
        "candy",
        "--scale",
        "2",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("160x120"), "{stdout}");
    assert_eq!(image::open(&scaled).unwrap().width(), 160);
}

#[test]
fn device_auto_says_which_engine_it_chose() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.png");
    let input = fixtures().join("golden/synthetic_33x21.png");
    let (ok, _, stderr) = stylemill(&[
        "image",
        input.to_str().unwrap(),
        output.to_str().unwrap(),
        "--style",
        "mosaic",
    ]);
    assert!(ok, "{stderr}");
    let gpu_present = std::path::Path::new("/dev/nvidiactl").exists();
    let chosen = if gpu_present {
        "cuda:0"
    } else {
        "using the CPU engine"
    };
    assert_eq!(
        stderr.matches(chosen).count(),
        1,
        "one line says which engine:\n{stderr}"
    );
}

#[test]
fn styles_lists_the_five_shipped_styles() {
    let (ok, stdout, _) = stylemill(&["styles"]);
    assert!(ok);
    for style in ["candy", "mosaic", "rain_princess", "udnie", "pointilism"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(style)),
            "{style} missing from:\n{stdout}"
        );
    }
}

#[test]
fn a_pytorch_checkpoint_path_styles_like_the_shipped_weights() {
    let dir = tempfile::tempdir().unwrap();
    let input = media("rabbit320_h264_aac.mp4");
    let checkpoint = fixtures().join("models/pth-fixtures/udnie_zip.pth");
    let mut outputs = Vec::new();
    for (name, style) in [
        ("shipped.mp4", "udnie"),
        ("checkpoint.mp4", checkpoint.to_str().unwrap()),
    ] {
        let output = dir.path().join(name);
        let (ok, _, stderr) = stylemill(&run_args(
            &input,
            &output,
            style,
            &["--scale", "2", "--limit", "3"],
        ));
        assert!(ok, "{stderr}");
        outputs.push(std::fs::read(output).unwrap());
    }
    assert!(outputs[0] == outputs[1], "same weights give the same bytes");
}
