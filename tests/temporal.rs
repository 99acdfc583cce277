//! Temporal stability: `stylemill flicker` measures the warping error of a stylized video (it
//! sees added flicker, and writes the per-frame values), `--temporal` at its default strength
//! at least halves that error on the sample while keeping the per-frame look (SSIM), gives the
//! same bytes under any number of ranks and either schedule, and bad settings are clear errors.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use stylemill::temporal::flicker::FlickerReport;

/// `stylemill flicker INPUT STYLED --report R`: the report, after checking the printed mean.
fn flicker(input: &Path, styled: &Path) -> FlickerReport {
    let report = styled.with_extension("flicker.json");
    let (ok, stdout, stderr) = stylemill(&[
        "flicker".as_ref(),
        input.as_os_str(),
        styled.as_os_str(),
        "--report".as_ref(),
        report.as_os_str(),
    ]);
    assert!(ok, "{stderr}");
    let parsed: FlickerReport = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(
        stdout.starts_with(&format!("warping error {:.6} over", parsed.warping_error)),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), parsed.frames, "{stdout}");
    assert_eq!(parsed.per_frame.len(), parsed.frames - 1);
    assert!(parsed.flow.contains("OpenCV") && parsed.flow.contains("DIS"));
    parsed
}

/// Mean SSIM of two videos of one size, by ffmpeg's ssim filter (all planes).
fn ssim(a: &Path, b: &Path) -> f64 {
    let output = tool("ffmpeg")
        .args(["-hide_banner", "-i"])
        .arg(a)
        .arg("-i")
        .arg(b)
        .args(["-lavfi", "ssim", "-f", "null", "-"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let all = log.rsplit("All:").next().expect("ffmpeg prints SSIM");
    all.split_whitespace().next().unwrap().parse().unwrap()
}

fn stylize(input: &Path, output: &Path, extra: &[&str]) {
    let (ok, _, stderr) = stylemill(&run_args(input, output, "mosaic", extra));
    assert!(ok, "{stderr}");
}

#[test]
fn the_measure_sees_flicker_that_a_still_video_does_not_have() {
    let dir = tempfile::tempdir().unwrap();
    let still = dir.path().join("still.mp4");
    let shimmering = dir.path().join("shimmering.mp4");
    let source = media("flower_960x540_h264_noaudio.mp4");
    let first_frame = "select=eq(n\\,0),loop=loop=23:size=1,scale=320:180";
    ffmpeg(&[
        "-i",
        source.to_str().unwrap(),
        "-vf",
        first_frame,
        "-c:v",
        "libx264",
        "-qp",
        "0",
        still.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-i",
        still.to_str().unwrap(),
        "-vf",
        "noise=alls=24:allf=t",
        "-c:v",
        "libx264",
        "-qp",
        "0",
        shimmering.to_str().unwrap(),
    ]);
    let steady = flicker(&still, &still);
    let noisy = flicker(&still, &shimmering);
    assert_eq!(steady.frames, 24);
    assert!(steady.warping_error < 1e-5, "{}", steady.warping_error);
    assert!(noisy.warping_error > 1e-3, "{}", noisy.warping_error);
    assert!(noisy.per_frame.iter().all(|e| e.unwrap() > 1e-3));
}

#[test]
fn temporal_halves_the_warping_error_of_the_sample_and_keeps_its_look() {
    let dir = tempfile::tempdir().unwrap();
    let input = media("rabbit320_h264_aac.mp4");
    let per_frame = dir.path().join("per-frame.mp4");
    let temporal = dir.path().join("temporal.mp4");
    stylize(&input, &per_frame, &["--limit", "48"]);
    stylize(&input, &temporal, &["--limit", "48", "--temporal"]);
    let before = flicker(&input, &per_frame).warping_error;
    let after = flicker(&input, &temporal).warping_error;
    assert!(after <= 0.5 * before, "warping error {before} -> {after}");
    let similarity = ssim(&temporal, &per_frame);
    assert!(similarity >= 0.85, "SSIM against per-frame {similarity}");
}

fn temporal_args(output: &Path, extra: &[&str]) -> Vec<String> {
    let mut all = vec![
        "--scale",
        "2",
        "--limit",
        "40",
        "--chunk-frames",
        "8",
        "--temporal",
    ];
    all.extend_from_slice(extra);
    run_args(&media("rabbit320_h264_aac.mp4"), output, "candy", &all)
}

#[test]
fn temporal_output_is_the_same_under_any_ranks_and_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.mp4");
    let (ok, _, stderr) = stylemill(&temporal_args(&output, &[]));
    assert!(ok, "{stderr}");
    let reference = std::fs::read(&output).unwrap();
    std::fs::remove_file(&output).unwrap();
    assert_mpirun_writes(3, &temporal_args(&output, &[]), &output, &reference);
    let dynamic = temporal_args(&output, &["--schedule", "dynamic"]);
    assert_mpirun_writes(2, &dynamic, &output, &reference);
}

/// The first `frames` frames of the sample, as `name` in `dir`.
fn first_frames(dir: &Path, name: &str, frames: usize) -> PathBuf {
    let clip = dir.join(name);
    let sample = media("rabbit320_h264_aac.mp4");
    let count = frames.to_string();
    ffmpeg(&[
        "-i",
        sample.to_str().unwrap(),
        "-frames:v",
        &count,
        clip.to_str().unwrap(),
    ]);
    clip
}

fn fails_with<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S], expected: &str) {
    let (ok, _, stderr) = stylemill(args);
    assert!(!ok, "{args:?} succeeded");
    assert!(stderr.contains(expected), "{args:?}: {stderr}");
}

#[test]
fn bad_temporal_settings_and_flicker_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = media("rabbit320_h264_aac.mp4");
    let output = dir.path().join("out.mp4");
    let run = run_args(
        &input,
        &output,
        "mosaic",
        &["--temporal", "--temporal-strength", "1.5"],
    );
    fails_with(&run, "--temporal-strength 1.5 is outside 0 to 1");
    let no_flag = run_args(&input, &output, "mosaic", &["--temporal-strength", "0.3"]);
    fails_with(&no_flag, "--temporal");
    assert!(!output.exists());

    let short = first_frames(dir.path(), "short.mp4", 10);
    let (short, input) = (short.to_str().unwrap(), input.to_str().unwrap());
    fails_with(
        &["flicker", short, input],
        "only 10: give the input the stylized video was made from",
    );
    let missing: PathBuf = dir.path().join("missing.mp4");
    fails_with(
        &["flicker", input, missing.to_str().unwrap()],
        "missing.mp4",
    );
    let one = first_frames(dir.path(), "one.mp4", 1);
    fails_with(
        &["flicker", input, one.to_str().unwrap()],
        "needs at least 2",
    );
}

#[test]
fn flicker_read_by_a_reader_that_stops_early_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let clip = first_frames(dir.path(), "clip.mp4", 6);
    let mut child = std::process::Command::new(bin())
        .args(["flicker".as_ref(), clip.as_os_str(), clip.as_os_str()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
