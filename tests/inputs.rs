//! Videos as phones, cameras and editors make them, made here with ffmpeg: stored sideways or
//! mirrored with a display matrix (every one of the eight right-angle turns and mirrors),
//! anamorphic (non-square pixels), variable frame rate, 30000/1001 with the picture starting
//! after the sound, interlaced, tagged with their colour (BT.709, full range), untagged HD,
//! HDR, 10-bit, with subtitles, attachments, chapters, metadata, two audio languages and a cover
//! picture. The output must display as the input does: stylized upright, with the
//! input's pixel shape, every frame at its input time, in step with the sound under any number
//! of ranks.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use stylemill::frame::FrameSize;

const ONE: i32 = 1 << 16;
const W: i32 = 1 << 30;

/// Makes `clip` from the sample clip with the ffmpeg output `options`.
fn from_sample(clip: &Path, options: &[&str]) -> PathBuf {
    let sample = media("rabbit320_h264_aac.mp4");
    let mut args = vec!["-i", sample.to_str().unwrap()];
    args.extend(options);
    args.push(clip.to_str().unwrap());
    ffmpeg(&args);
    clip.to_path_buf()
}

/// The sample clip's first frames at 160x120, then `filters`, encoded losslessly (no audio), so
/// that a clip turned by ffmpeg's filters holds exactly the pixels of a turned display.
fn lossless_clip(dir: &Path, name: &str, filters: &str) -> PathBuf {
    let filters = match filters {
        "" => "scale=160:120".to_string(),
        more => format!("scale=160:120,{more}"),
    };
    from_sample(
        &dir.join(format!("{name}.mp4")),
        &[
            "-frames:v",
            "6",
            "-vf",
            &filters,
            "-c:v",
            "libx264",
            "-qp",
            "0",
            "-an",
        ],
    )
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

/// The presentation times of stream `selector` (`v:0`, `a:0`) of `path`, in seconds, sorted.
fn times(path: &Path, selector: &str) -> Vec<f64> {
    let output = tool("ffprobe")
        .args(["-v", "error", "-select_streams", selector])
        .args(["-show_entries", "packet=pts_time", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(output.status.success());
    let mut times: Vec<f64> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.trim().trim_end_matches(',').parse().ok())
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

/// Asserts that `output` shows every video frame at the time `input` does, and its sound
/// starts and ends where the input's does against the picture.
fn assert_timed_as(input: &Path, output: &Path, what: &str) {
    let (wanted, got) = (times(input, "v:0"), times(output, "v:0"));
    assert_eq!(got.len(), wanted.len(), "{what}: frames");
    for (frame, (g, w)) in got.iter().zip(&wanted).enumerate() {
        assert!(
            (g - w).abs() < 1e-6,
            "{what}: frame {frame} at {g} s, input at {w} s"
        );
    }
    let (wanted_audio, got_audio) = (times(input, "a:0"), times(output, "a:0"));
    let frame = 1.0 / 30.0;
    assert!(
        (got_audio[0] - wanted_audio[0]).abs() < frame,
        "{what}: the sound starts at {} s, in the input at {} s",
        got_audio[0],
        wanted_audio[0]
    );
    let (got_end, wanted_end) = (got_audio.last().unwrap(), wanted_audio.last().unwrap());
    assert!(
        (got_end - wanted_end).abs() < frame,
        "{what}: the sound ends at {got_end} s, in the input at {wanted_end} s"
    );
}

/// Stylizes `input` on three ranks in chunks of 8 frames; the output must be identical to
/// `single`, made on one rank with the same chunks.
fn assert_same_under_three_ranks(dir: &Path, input: &Path, single: &Path) {
    let three = dir.join("three.mp4");
    let args = run_args(input, &three, "mosaic", &["--chunk-frames", "8"]);
    assert_mpirun_writes(3, &args, &three, &std::fs::read(single).unwrap());
}

/// Stylizes `input` once on one rank and once on three, in chunks of 8 frames; both outputs
/// must be timed as the input and identical.
fn assert_timed_under_any_ranks(dir: &Path, input: &Path) {
    let single = dir.join("single.mp4");
    stylize(input, &single, &["--chunk-frames", "8"]);
    assert_timed_as(input, &single, "one rank");
    assert_same_under_three_ranks(dir, input, &single);
}

/// A second at 30 frames/s, then two at 10 (every third frame kept), with its sound: 50 frames.
fn variable_frame_rate_clip(dir: &Path) -> PathBuf {
    from_sample(
        &dir.join("vfr.mp4"),
        &[
            "-t",
            "3",
            "-vf",
            "scale=160:120,fps=30,select='lt(n\\,30)+not(mod(n-30\\,3))'",
            "-fps_mode",
            "vfr",
            "-c:v",
            "libx264",
            "-g",
            "12",
            "-c:a",
            "aac",
        ],
    )
}

#[test]
fn variable_frame_rate_keeps_every_frame_time_and_the_sound_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let vfr = variable_frame_rate_clip(dir.path());
    let input = times(&vfr, "v:0");
    assert_eq!(input.len(), 50);
    assert!((input[31] - input[30] - 0.1).abs() < 1e-3, "{input:?}");
    assert_timed_under_any_ranks(dir.path(), &vfr);
}

#[test]
fn variable_frame_rate_survives_a_killed_run_and_its_resume() {
    let dir = tempfile::tempdir().unwrap();
    let vfr = variable_frame_rate_clip(dir.path());
    let options = ["--chunk-frames", "4", "--threads", "1"];
    let reference = dir.path().join("reference.mp4");
    stylize(&vfr, &reference, &options);
    let work = dir.path().join("work");
    let output = dir.path().join("out.mp4");
    let mut args = run_args(&vfr, &output, "mosaic", &options);
    args.extend(["--work-dir".to_string(), work.display().to_string()]);
    let mut first = std::process::Command::new(bin())
        .args(&args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let chunks_done = || {
        std::fs::read_dir(&work).map_or(0, |entries| {
            entries
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".nut")
                })
                .count()
        })
    };
    while chunks_done() < 3 {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended before it was killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(!output.exists());
    let (ok, stdout, stderr) = stylemill(&args);
    assert!(ok, "{stderr}");
    let computed: usize = stdout
        .split_whitespace()
        .zip(stdout.split_whitespace().skip(1))
        .find(|(_, next)| *next == "computed")
        .map(|(count, _)| count.parse().unwrap())
        .expect("a summary");
    assert!(computed < 50, "{stdout}");
    assert_timed_as(&vfr, &output, "resumed");
    assert!(std::fs::read(&output).unwrap() == std::fs::read(&reference).unwrap());
}

#[test]
fn ntsc_rate_stays_exact_and_a_late_picture_stays_late() {
    let dir = tempfile::tempdir().unwrap();
    // 29.97 frames/s, then remuxed so that its picture starts 0.2 s after its sound.
    let encoded = from_sample(
        &dir.path().join("encoded.mp4"),
        &[
            "-t",
            "2",
            "-vf",
            "scale=160:120,fps=30000/1001",
            "-c:v",
            "libx264",
            "-c:a",
            "aac",
        ],
    );
    let ntsc = dir.path().join("ntsc.mp4");
    let encoded = encoded.to_str().unwrap();
    ffmpeg(&[
        "-itsoffset",
        "0.2",
        "-i",
        encoded,
        "-i",
        encoded,
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c",
        "copy",
        ntsc.to_str().unwrap(),
    ]);
    let (video, audio) = (times(&ntsc, "v:0"), times(&ntsc, "a:0"));
    assert!(video[0] - audio[0] > 0.15, "{} {}", video[0], audio[0]);
    assert_timed_under_any_ranks(dir.path(), &ntsc);
    let streams = probe(&dir.path().join("single.mp4"));
    assert_eq!(video_stream(&streams).r_frame_rate, "30000/1001");
}

#[test]
fn interlaced_video_is_deinterlaced_before_stylizing_the_same_under_any_ranks() {
    let dir = tempfile::tempdir().unwrap();
    // 30 interlaced frames/s from 60 progressive ones (each field from its own moment, so that
    // motion combs), top field first, keyframes every 8 frames.
    let interlaced = from_sample(
        &dir.path().join("interlaced.mp4"),
        &[
            "-t",
            "1",
            "-vf",
            "scale=160:120,fps=60,interlace=scan=tff",
            "-flags",
            "+ilme+ildct",
            "-top",
            "1",
            "-c:v",
            "libx264",
            "-g",
            "8",
            "-an",
        ],
    );
    assert_eq!(
        video_stream(&probe(&interlaced)).field_order.as_deref(),
        Some("tt")
    );
    // What the network should see: ffmpeg's bwdif of every frame, kept losslessly.
    let deinterlaced = dir.path().join("deinterlaced.mp4");
    ffmpeg(&[
        "-i",
        interlaced.to_str().unwrap(),
        "-vf",
        "bwdif=mode=send_frame:parity=auto:deint=interlaced",
        "-c:v",
        "libx264",
        "-qp",
        "0",
        deinterlaced.to_str().unwrap(),
    ]);
    let single = dir.path().join("single.mp4");
    let stderr = stylize(&interlaced, &single, &["--chunk-frames", "8"]);
    assert!(
        stderr.contains("the video is interlaced; its frames are deinterlaced"),
        "{stderr}"
    );
    let expected = dir.path().join("expected.mp4");
    stylize(&deinterlaced, &expected, &["--chunk-frames", "8"]);
    let size = FrameSize {
        width: 160,
        height: 120,
    };
    let (got, wanted) = (decode(&single, size, false), decode(&expected, size, false));
    assert_eq!(got.len(), 30);
    assert!(
        got.iter().zip(&wanted).all(|(g, w)| g.data == w.data),
        "the stylized frames are not those of the deinterlaced input"
    );
    let video = video_stream(&probe(&single)).field_order.clone();
    assert_eq!(video.as_deref(), Some("progressive"));
    // Chunks start at keyframes: a rank must still decode the frame before its range.
    assert_same_under_three_ranks(dir.path(), &interlaced, &single);
    let combed = dir.path().join("combed.mp4");
    let stderr = stylize(
        &interlaced,
        &combed,
        &["--chunk-frames", "8", "--deinterlace", "off"],
    );
    assert!(
        stderr.contains("--deinterlace off keeps its frames"),
        "{stderr}"
    );
    assert!(decode(&combed, size, false)[5].data != got[5].data);
}

/// The first frame of `path` as RGB24, converted with the YUV `matrix` (ffmpeg's scale filter
/// name) and `range`.
fn first_frame_rgb(path: &Path, matrix: &str, range: &str) -> Vec<u8> {
    let output = tool("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-frames:v", "1", "-vf"])
        .arg(format!(
            "scale=flags=bicubic:in_color_matrix={matrix}:in_range={range},format=rgb24"
        ))
        .args(["-f", "rawvideo", "-"])
        .output()
        .unwrap();
    assert!(output.status.success());
    output.stdout
}

fn colour_tags(stream: &Stream) -> [Option<&str>; 4] {
    [
        stream.color_space.as_deref(),
        stream.color_primaries.as_deref(),
        stream.color_transfer.as_deref(),
        stream.color_range.as_deref(),
    ]
}

#[test]
fn colour_is_converted_with_the_input_matrix_and_range_both_ways_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    // (tags, the scale filter's name for the matrix, range)
    let cases = [
        (["bt709", "bt709", "bt709", "tv"], "bt709", "tv"),
        (
            ["smpte170m", "smpte170m", "smpte170m", "pc"],
            "smpte170m",
            "pc",
        ),
    ];
    for ([matrix, primaries, transfer, range], scale_matrix, scale_range) in cases {
        let name = format!("{matrix}-{range}");
        let tagged = from_sample(
            &dir.path().join(format!("{name}.mp4")),
            &[
                "-frames:v",
                "2",
                "-vf",
                &format!("scale=160:120:out_color_matrix={scale_matrix}:out_range={scale_range},format=yuv444p"),
                "-colorspace",
                matrix,
                "-color_primaries",
                primaries,
                "-color_trc",
                transfer,
                "-color_range",
                range,
                "-c:v",
                "libx264",
                "-qp",
                "0",
            ],
        );
        assert_eq!(
            colour_tags(video_stream(&probe(&tagged))),
            [Some(matrix), Some(primaries), Some(transfer), Some(range)]
        );
        // The network's own output for the frame as its tags say to read it.
        let frame = dir.path().join(format!("{name}.png"));
        let rgb = first_frame_rgb(&tagged, scale_matrix, scale_range);
        image::save_buffer(&frame, &rgb, 160, 120, image::ColorType::Rgb8).unwrap();
        let styled = dir.path().join(format!("{name}-styled.png"));
        let (ok, _, stderr) = stylemill(&[
            "image",
            frame.to_str().unwrap(),
            styled.to_str().unwrap(),
            "--style",
            "mosaic",
        ]);
        assert!(ok, "{stderr}");
        let expected = read_png(&styled).data;
        let output = dir.path().join(format!("{name}-out.mp4"));
        let stderr = stylize(
            &tagged,
            &output,
            &["--limit", "1", "--crf", "0", "--pix-fmt", "yuv444p"],
        );
        assert!(
            stderr.contains(&format!(
                "colour matrix {matrix}, primaries {primaries}, transfer {transfer}"
            )),
            "{stderr}"
        );
        assert_eq!(
            colour_tags(video_stream(&probe(&output))),
            [Some(matrix), Some(primaries), Some(transfer), Some(range)],
            "{name}: the output keeps the input's colour tags"
        );
        let read_as_tagged = psnr(
            &first_frame_rgb(&output, scale_matrix, scale_range),
            &expected,
        );
        assert!(
            read_as_tagged > 40.0,
            "{name}: {read_as_tagged:.1} dB from the network's output"
        );
        let other = if scale_matrix == "bt709" {
            "smpte170m"
        } else {
            "bt709"
        };
        let read_otherwise = psnr(&first_frame_rgb(&output, other, scale_range), &expected);
        assert!(
            read_as_tagged > read_otherwise + 3.0,
            "{name}: {read_as_tagged:.1} dB as tagged, {read_otherwise:.1} dB with another matrix"
        );
    }
}

#[test]
fn untagged_hd_video_is_read_as_bt709_and_tagged_so() {
    let dir = tempfile::tempdir().unwrap();
    let untagged = from_sample(
        &dir.path().join("untagged-720p.mp4"),
        &[
            "-frames:v",
            "2",
            "-vf",
            "scale=1280:720",
            "-c:v",
            "libx264",
            "-bsf:v",
            "h264_metadata=video_full_range_flag=0:colour_primaries=2:transfer_characteristics=2:matrix_coefficients=2",
        ],
    );
    assert_eq!(
        colour_tags(video_stream(&probe(&untagged)))[..3],
        [None, None, None]
    );
    let output = dir.path().join("out.mp4");
    let stderr = stylize(&untagged, &output, &["--scale", "4"]);
    assert!(
        stderr.contains("colour matrix bt709, primaries bt709, transfer bt709, limited range (matrix, primaries, transfer not tagged in the file"),
        "{stderr}"
    );
    assert_eq!(
        colour_tags(video_stream(&probe(&output))),
        [Some("bt709"), Some("bt709"), Some("bt709"), Some("tv")]
    );
}

#[test]
fn hdr_video_is_refused_with_a_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let hdr = from_sample(
        &dir.path().join("hdr.mp4"),
        &[
            "-frames:v",
            "2",
            "-pix_fmt",
            "yuv420p10le",
            "-colorspace",
            "bt2020nc",
            "-color_primaries",
            "bt2020",
            "-color_trc",
            "smpte2084",
            "-c:v",
            "libx264",
        ],
    );
    let before = names_in(dir.path());
    let output = dir.path().join("out.mp4");
    let (ok, _, stderr) = stylemill(&run_args(&hdr, &output, "mosaic", &[]));
    assert!(!ok);
    assert!(
        stderr.contains(
            "is HDR video (transfer PQ (SMPTE ST 2084)), which stylemill does not tone-map"
        ) && stderr.contains("convert it to SDR first"),
        "{stderr}"
    );
    assert_eq!(names_in(dir.path()), before);
}

#[test]
fn ten_bit_input_says_what_the_output_will_be_and_ten_bit_output_works() {
    let dir = tempfile::tempdir().unwrap();
    let ten_bit = from_sample(
        &dir.path().join("ten-bit.mkv"),
        &[
            "-frames:v",
            "3",
            "-vf",
            "scale=160:120",
            "-pix_fmt",
            "yuv420p10le",
            "-c:v",
            "libx264",
        ],
    );
    let output = dir.path().join("eight.mp4");
    let stderr = stylize(&ten_bit, &output, &[]);
    assert!(
        stderr.contains("the video is 10-bit (yuv420p10le); it is stylized as 8-bit RGB and written as yuv420p (--pix-fmt yuv420p10le writes 10-bit)"),
        "{stderr}"
    );
    for pix_fmt in ["yuv420p10le", "yuv444p10le"] {
        let output = dir.path().join(format!("{pix_fmt}.mp4"));
        let stderr = stylize(&ten_bit, &output, &["--pix-fmt", pix_fmt]);
        assert!(
            stderr.contains(&format!("written as {pix_fmt}")),
            "{stderr}"
        );
        let streams = probe(&output);
        let video = video_stream(&streams);
        assert_eq!(video.pix_fmt.as_deref(), Some(pix_fmt));
        assert_eq!(video.frames(), 3);
    }
}

/// A probe of what a user checks in a file with many streams: each stream's type, codec,
/// language and file name, the attached-picture flags, the chapters' titles and the title.
fn contents(path: &Path) -> String {
    let output = tool("ffprobe")
        .args(["-v", "error", "-show_chapters", "-of", "compact", "-show_entries"])
        .arg("stream=codec_type,codec_name:stream_disposition=attached_pic:stream_tags=language,filename,mimetype:chapter_tags=title:format_tags=title,creation_time")
        .arg(path)
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn subtitles_attachments_chapters_and_metadata_are_kept_where_the_container_can_hold_them() {
    let dir = tempfile::tempdir().unwrap();
    let subtitles = dir.path().join("subtitles.srt");
    std::fs::write(
        &subtitles,
        "1\n00:00:00,500 --> 00:00:01,500\nHello rabbit\n\n2\n00:00:02,000 --> 00:00:03,000\nGoodbye\n",
    )
    .unwrap();
    let chapters = dir.path().join("chapters.txt");
    std::fs::write(
        &chapters,
        ";FFMETADATA1\ntitle=Rabbit test\ncreation_time=2024-05-01T12:00:00.000000Z\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1500\ntitle=One\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=1500\nEND=3000\ntitle=Two\n",
    )
    .unwrap();
    let font = dir.path().join("font.ttf");
    std::fs::write(&font, [0u8, 1, 0, 0, 0, 10, 0, 128]).unwrap();
    let sample = media("rabbit320_h264_aac.mp4");
    let input = dir.path().join("many.mkv");
    ffmpeg(&[
        "-i",
        sample.to_str().unwrap(),
        "-i",
        subtitles.to_str().unwrap(),
        "-i",
        chapters.to_str().unwrap(),
        "-t",
        "3",
        "-map",
        "0:v",
        "-map",
        "0:a",
        "-map",
        "0:a",
        "-map",
        "1",
        "-map_metadata",
        "2",
        "-map_chapters",
        "2",
        "-vf",
        "scale=160:120",
        "-c:v",
        "libx264",
        "-c:a",
        "copy",
        "-c:s",
        "srt",
        "-metadata:s:a:0",
        "language=eng",
        "-metadata:s:a:1",
        "language=fra",
        "-metadata:s:s:0",
        "language=eng",
        "-attach",
        font.to_str().unwrap(),
        "-metadata:s:t",
        "mimetype=application/x-truetype-font",
        input.to_str().unwrap(),
    ]);
    let mkv = dir.path().join("out.mkv");
    let stderr = stylize(&input, &mkv, &[]);
    assert!(stderr.contains("the output keeps subtitle stream 3 (subrip, \"eng\"), attachment 4 (ttf, \"font.ttf\"), 2 chapters"), "{stderr}");
    let kept = contents(&mkv);
    for expected in [
        "codec_name=h264|codec_type=video|disposition:attached_pic=0",
        "codec_type=audio|disposition:attached_pic=0|tag:language=eng",
        "codec_type=audio|disposition:attached_pic=0|tag:language=fra",
        "codec_name=subrip|codec_type=subtitle|disposition:attached_pic=0|tag:language=eng",
        "codec_type=attachment|disposition:attached_pic=0|tag:filename=font.ttf|tag:mimetype=application/x-truetype-font",
        "tag:title=One",
        "tag:title=Two",
        "tag:title=Rabbit test",
    ] {
        assert!(kept.contains(expected), "MKV lacks {expected}:\n{kept}");
    }
    let mp4 = dir.path().join("out.mp4");
    let stderr = stylize(&input, &mp4, &[]);
    assert!(
        stderr.contains("attachment 4 (ttf, \"font.ttf\") is left out: MP4 and MOV cannot hold attachments; write .mkv to keep them"),
        "{stderr}"
    );
    let kept = contents(&mp4);
    for expected in [
        "codec_name=mov_text|codec_type=subtitle|disposition:attached_pic=0|tag:language=eng",
        "tag:language=fra",
        "tag:title=One",
        "tag:title=Two",
        "tag:title=Rabbit test",
        "tag:creation_time=2024-05-01T12:00:00",
    ] {
        assert!(kept.contains(expected), "MP4 lacks {expected}:\n{kept}");
    }
}

#[test]
fn a_cover_picture_is_never_the_video_and_is_kept_in_mp4() {
    let dir = tempfile::tempdir().unwrap();
    let cover = dir.path().join("cover.png");
    image::save_buffer(
        &cover,
        &[200u8; 32 * 32 * 3],
        32,
        32,
        image::ColorType::Rgb8,
    )
    .unwrap();
    let input = from_sample(
        &dir.path().join("with-cover.mp4"),
        &[
            "-i",
            cover.to_str().unwrap(),
            "-t",
            "1",
            "-map",
            "1",
            "-map",
            "0:v",
            "-map",
            "0:a",
            "-c:v:0",
            "png",
            "-disposition:v:0",
            "attached_pic",
            "-c:v:1",
            "libx264",
            "-vf",
            "scale=160:120",
            "-c:a",
            "copy",
        ],
    );
    assert!(contents(&input).contains("codec_name=png|codec_type=video|disposition:attached_pic=1"));
    let output = dir.path().join("out.mp4");
    let stderr = stylize(&input, &output, &[]);
    assert!(stderr.contains("cover picture"), "{stderr}");
    let streams = probe(&output);
    let video = video_stream(&streams);
    assert_eq!(
        (video.codec_name.as_str(), video.width),
        ("h264", Some(160))
    );
    assert_eq!(video.frames(), 30);
    assert!(
        contents(&output).contains("codec_name=png|codec_type=video|disposition:attached_pic=1")
    );
    let mkv = dir.path().join("out.mkv");
    let stderr = stylize(&input, &mkv, &[]);
    assert!(
        stderr.contains("is left out: ffmpeg writes a cover picture into MKV as a video track"),
        "{stderr}"
    );
    assert_eq!(
        probe(&mkv)
            .iter()
            .filter(|s| s.codec_type == "video")
            .count(),
        1
    );
}

#[test]
fn a_camera_timecode_is_kept_and_its_data_stream_named() {
    let dir = tempfile::tempdir().unwrap();
    let input = from_sample(
        &dir.path().join("camera.mov"),
        &[
            "-t",
            "1",
            "-vf",
            "scale=160:120",
            "-timecode",
            "01:00:00:00",
            "-c:v",
            "libx264",
            "-c:a",
            "copy",
        ],
    );
    assert!(contents(&input).contains("codec_type=data"));
    let output = dir.path().join("out.mov");
    let stderr = stylize(&input, &output, &[]);
    assert!(
        stderr.contains("data stream 2 (")
            && stderr.contains(
                "is left out: data streams are not copied (a timecode is kept as the timecode tag)"
            ),
        "{stderr}"
    );
    let timecode = tool("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["stream_tags=timecode", "-of", "csv=p=0"])
        .arg(&output)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&timecode.stdout).trim(),
        "01:00:00:00"
    );
}
