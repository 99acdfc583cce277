//! Temporal stability benchmark: writes `benches/results/temporal.json`, and for README the
//! strip `benches/results/temporal-strip.jpg` and the plot `benches/results/temporal-error.svg`.
//! Run with `cargo bench --bench temporal`.
//!
//! On three real clips with different motion (the sample, the flower clip from a static camera,
//! and a pan across the flower clip), stylizes with the CPU engine per frame and with
//! `--temporal` at its default strength, then compares: the warping error of each (`stylemill
//! flicker`), the mean SSIM of the temporal output against the per-frame one (ffmpeg's ssim
//! filter, all planes), and the frames per second of both runs (each run's report, the better of
//! two rounds in which the two runs alternate: a shared machine only ever slows a run down).
//! Compare the ratios, not the seconds.
//!
//! On the sample it also compares other strengths (warping error and SSIM only), and it times
//! the filter alone (two flows, warps and the blend) per 1920x1080 frame, the cost `--temporal`
//! adds to each frame whatever the engine.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use stylemill::frame::Frame;
use stylemill::media::decode::Decoder;
use stylemill::media::probe::probe;
use stylemill::temporal::filter::TemporalFilter;
use stylemill::temporal::flicker::{measure, FlickerReport};
use stylemill::temporal::DEFAULT_STRENGTH;

const STYLE: &str = "mosaic";
const FRAMES: usize = 120;
const ROUNDS: usize = 2;
/// Strengths compared on the sample besides the default.
const SWEEP: [f32; 4] = [0.3, 0.4, 0.6, 0.7];
/// The frames of the sample shown in the strip.
const STRIP: std::ops::Range<usize> = 60..64;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ffmpeg(args: &[&str]) -> String {
    let output = Command::new("ffmpeg")
        .args(["-v", "info", "-hide_banner", "-y", "-nostdin"])
        .args(args)
        .output()
        .expect("ffmpeg runs");
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "ffmpeg {args:?}: {log}");
    log
}

struct Clip {
    name: &'static str,
    motion: &'static str,
    path: PathBuf,
    /// Options of both runs (--scale for the larger clips).
    options: &'static [&'static str],
}

fn clips(dir: &Path) -> Vec<Clip> {
    let flower = root().join("tests/fixtures/media/flower_960x540_h264_noaudio.mp4");
    let pan = dir.join("flower-pan.mp4");
    ffmpeg(&[
        "-i",
        flower.to_str().unwrap(),
        "-vf",
        "crop=480:270:x='min(480\\,(iw-480)*t/5)':y=135",
        "-c:v",
        "libx264",
        "-crf",
        "16",
        pan.to_str().unwrap(),
    ]);
    vec![
        Clip {
            name: "rabbit320 (the sample)",
            motion: "hand-held camera over a figurine on a table",
            path: root().join("samples/rabbit320.mp4"),
            options: &[],
        },
        Clip {
            name: "flower 960x540 at --scale 2",
            motion: "static camera, a flower and a bee moving in the wind",
            path: flower,
            options: &["--scale", "2"],
        },
        Clip {
            name: "pan across flower, 480x270",
            motion: "a pan of 3.2 pixels per frame (a moving crop of the flower clip)",
            path: pan,
            options: &[],
        },
    ]
}

/// Stylizes `clip` into `output` with `extra` options; returns the run's frames per second.
fn stylize(clip: &Clip, output: &Path, extra: &[&str]) -> f64 {
    let report = output.with_extension("report.json");
    let status = Command::new(env!("CARGO_BIN_EXE_stylemill"))
        .args([
            "run",
            clip.path.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ])
        .args([
            "--style",
            STYLE,
            "--device",
            "cpu",
            "--limit",
            &FRAMES.to_string(),
        ])
        .args(["--report", report.to_str().unwrap()])
        .args(clip.options)
        .args(extra)
        .status()
        .expect("stylemill runs");
    assert!(status.success(), "stylizing {}", clip.name);
    let report: Value = serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    report["frames_per_second"]
        .as_f64()
        .expect("frames_per_second")
}

fn ssim(a: &Path, b: &Path) -> f64 {
    let log = ffmpeg(&[
        "-i",
        a.to_str().unwrap(),
        "-i",
        b.to_str().unwrap(),
        "-lavfi",
        "ssim",
        "-f",
        "null",
        "-",
    ]);
    let all = log.rsplit("All:").next().expect("ffmpeg prints SSIM");
    all.split_whitespace().next().unwrap().parse().unwrap()
}

fn frames_of(video: &Path, range: std::ops::Range<usize>) -> Vec<Frame> {
    let info = probe(video, &video.display().to_string()).expect("probe");
    let mut decoder = Decoder::open(&info, video, range, info.size).expect("decode");
    std::iter::from_fn(|| decoder.next_frame().expect("frame")).collect()
}

/// Rows of consecutive frames (input, per-frame, temporal), 4 pixels apart, as one JPEG
/// (quality 90: a tenth of a PNG's size, the texture still easy to judge).
fn write_strip(rows: &[Vec<Frame>], path: &Path) {
    let size = rows[0][0].size;
    let gap = 4;
    let (columns, height) = (rows[0].len(), rows.len());
    let mut strip = image::RgbImage::from_pixel(
        (columns * (size.width + gap) - gap) as u32,
        (height * (size.height + gap) - gap) as u32,
        image::Rgb([255, 255, 255]),
    );
    for (r, row) in rows.iter().enumerate() {
        for (c, frame) in row.iter().enumerate() {
            let tile = image::RgbImage::from_raw(
                size.width as u32,
                size.height as u32,
                frame.data.clone(),
            )
            .unwrap();
            let (x, y) = (c * (size.width + gap), r * (size.height + gap));
            image::imageops::replace(&mut strip, &tile, x as i64, y as i64);
        }
    }
    let file = std::fs::File::create(path).expect("strip created");
    image::codecs::jpeg::JpegEncoder::new_with_quality(file, 90)
        .encode_image(&strip)
        .expect("strip written");
}

/// A line plot of the per-frame warping error of both outputs, as SVG.
fn write_plot(per_frame: &FlickerReport, temporal: &FlickerReport, title: &str, path: &Path) {
    let (width, height, left, bottom, top, right) = (720.0, 300.0, 60.0, 40.0, 30.0, 20.0);
    let values = |report: &FlickerReport| -> Vec<f64> {
        report.per_frame.iter().map(|e| e.unwrap_or(0.0)).collect()
    };
    let (a, b) = (values(per_frame), values(temporal));
    let highest = a.iter().chain(&b).copied().fold(0.0f64, f64::max) * 1.05;
    let x = |i: usize| left + (width - left - right) * i as f64 / (a.len() - 1) as f64;
    let y = |v: f64| top + (height - top - bottom) * (1.0 - v / highest);
    let line = |values: &[f64], colour: &str| {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| format!("{:.1},{:.1}", x(i), y(v)))
            .collect();
        format!(
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        )
    };
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{left}" y="18">{title}</text>
<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/>
<line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>
<text x="{}" y="{}" text-anchor="middle">frame</text>
"#,
        y(0.0),
        width - right,
        y(0.0),
        y(0.0),
        (left + width - right) / 2.0,
        height - 6.0,
    );
    for step in 0..=4 {
        let v = highest * f64::from(step) / 4.0;
        svg += &format!(
            r#"<text x="{}" y="{:.1}" text-anchor="end">{v:.3}</text>"#,
            left - 4.0,
            y(v) + 4.0
        );
        svg.push('\n');
    }
    for i in (0..a.len()).step_by(20) {
        svg += &format!(
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x(i),
            y(0.0) + 16.0,
            i + 1
        );
        svg.push('\n');
    }
    svg += &line(&a, "#d62728");
    svg += &line(&b, "#1f77b4");
    svg += &format!(
        r##"
<text x="{}" y="{}" fill="#d62728" text-anchor="end">per frame (mean {:.4})</text>
<text x="{}" y="{}" fill="#1f77b4" text-anchor="end">--temporal (mean {:.4})</text>
</svg>
"##,
        width - right,
        top + 12.0,
        per_frame.warping_error,
        width - right,
        top + 28.0,
        temporal.warping_error
    );
    std::fs::write(path, svg).expect("plot written");
}

/// What other strengths give on `clip`: the warping error's reduction and the SSIM against
/// the per-frame output, for choosing `--temporal-strength`.
fn strength_sweep(
    clip: &Clip,
    dir: &Path,
    per_frame_video: &Path,
    per_frame: &FlickerReport,
) -> Vec<Value> {
    SWEEP
        .iter()
        .map(|&strength| {
            let video = dir.join(format!("strength-{strength}.mp4"));
            let text = strength.to_string();
            stylize(clip, &video, &["--temporal", "--temporal-strength", &text]);
            let measured = measure(&clip.path, &video).expect("flicker");
            let similarity = ssim(&video, per_frame_video);
            let reduction = 1.0 - measured.warping_error / per_frame.warping_error;
            println!(
                "  strength {strength}: warping error {:.0}% lower, SSIM {similarity:.3}",
                100.0 * reduction
            );
            json!({
                "strength": strength,
                "warping_error": measured.warping_error,
                "warping_error_reduction": reduction,
                "ssim_against_per_frame": similarity,
            })
        })
        .collect()
}

/// Median seconds the temporal filter takes per 1920x1080 frame of the flower clip, upscaled.
fn filter_seconds_at_1080p() -> f64 {
    let clip = root().join("tests/fixtures/media/flower_960x540_h264_noaudio.mp4");
    let info = probe(&clip, "flower").expect("probe");
    let size = stylemill::frame::FrameSize {
        width: 1920,
        height: 1080,
    };
    let mut decoder = Decoder::open(&info, &clip, 0..12, size).expect("decode");
    let frames: Vec<Frame> = std::iter::from_fn(|| decoder.next_frame().expect("frame")).collect();
    let settings = stylemill::temporal::TemporalSettings::new(DEFAULT_STRENGTH).unwrap();
    let mut filter = TemporalFilter::new(settings).expect("optical flow");
    let mut seconds: Vec<f64> = frames
        .iter()
        .map(|frame| {
            let started = std::time::Instant::now();
            filter
                .push(frame.clone(), frame.clone(), false)
                .expect("filtered");
            started.elapsed().as_secs_f64()
        })
        .skip(1)
        .collect();
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let results = root().join("benches/results");
    let mut rows = Vec::new();
    let mut strengths = Vec::new();
    for (index, clip) in clips(dir.path()).iter().enumerate() {
        let per_frame_video = dir.path().join(format!("{index}-per-frame.mp4"));
        let temporal_video = dir.path().join(format!("{index}-temporal.mp4"));
        let (mut per_frame_fps, mut temporal_fps) = (0.0f64, 0.0f64);
        for _ in 0..ROUNDS {
            per_frame_fps = per_frame_fps.max(stylize(clip, &per_frame_video, &[]));
            temporal_fps = temporal_fps.max(stylize(clip, &temporal_video, &["--temporal"]));
        }
        let per_frame = measure(&clip.path, &per_frame_video).expect("flicker");
        let temporal = measure(&clip.path, &temporal_video).expect("flicker");
        let similarity = ssim(&temporal_video, &per_frame_video);
        let reduction = 1.0 - temporal.warping_error / per_frame.warping_error;
        let row = json!({
            "clip": clip.name,
            "motion": clip.motion,
            "size": per_frame.size.to_string(),
            "frames": per_frame.frames,
            "warping_error_per_frame": per_frame.warping_error,
            "warping_error_temporal": temporal.warping_error,
            "warping_error_reduction": reduction,
            "ssim_temporal_against_per_frame": similarity,
            "frames_per_second_per_frame": per_frame_fps,
            "frames_per_second_temporal": temporal_fps,
            "throughput_ratio": temporal_fps / per_frame_fps,
        });
        println!(
            "{:<30} warping error {:.5} -> {:.5} ({:.0}% lower), SSIM {:.3}, {:.2} -> {:.2} frames/s ({:.0}%)",
            clip.name,
            per_frame.warping_error,
            temporal.warping_error,
            100.0 * reduction,
            similarity,
            per_frame_fps,
            temporal_fps,
            100.0 * temporal_fps / per_frame_fps
        );
        rows.push(row);
        if index == 0 {
            strengths = strength_sweep(clip, dir.path(), &per_frame_video, &per_frame);
            write_strip(
                &[
                    frames_of(&clip.path, STRIP),
                    frames_of(&per_frame_video, STRIP),
                    frames_of(&temporal_video, STRIP),
                ],
                &results.join("temporal-strip.jpg"),
            );
            write_plot(
                &per_frame,
                &temporal,
                &format!("Warping error per frame, {} ({STYLE})", clip.name),
                &results.join("temporal-error.svg"),
            );
        }
    }
    let filter_s = filter_seconds_at_1080p();
    println!(
        "the filter alone at 1920x1080: {:.0} ms per frame",
        1e3 * filter_s
    );
    let figures = json!({
        "filter_seconds_per_1080p_frame": filter_s,
        "style": STYLE,
        "engine": "cpu",
        "strength": DEFAULT_STRENGTH,
        "flow": stylemill::temporal::flow::method(),
        "warping_error": "Lai et al. 2018: squared RGB distance (0 to 1, summed over channels) between stylized frame t and frame t-1 warped by the input's flow, over non-occluded pixels, averaged over frames",
        "ssim": "ffmpeg ssim filter, all planes, temporal output against per-frame output",
        "machine": "this project's 2-core machine; both runs of a clip back to back",
        "clips": rows,
        "strengths_on_the_sample": strengths,
    });
    let path = results.join("temporal.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&figures).unwrap() + "\n",
    )
    .unwrap();
    println!("wrote {}", path.display());
}
