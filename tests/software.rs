//! stylemill with the software a machine really has. The ffmpeg: Ubuntu 22.04's 4.4 (the oldest
//! supported), Ubuntu 25.10's 7.1 and a static 8.0 run jobs exactly, under mpirun too; one older
//! than 4.4 is refused naming its version; an ffmpeg lacking libx264 is named as the problem, not
//! the input. And `stylemill doctor`, which says what the machine offers and fails when a run
//! could not. The other ffmpeg builds come from `scripts/test-tools.sh` (target/ffmpeg-builds).

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// The directory holding a static ffmpeg build `version` (prepared by scripts/test-tools.sh).
fn build(version: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/ffmpeg-builds")
        .join(version)
        .join("bin");
    assert!(
        dir.join("ffmpeg").is_file(),
        "{} is missing: run scripts/test-tools.sh",
        dir.display()
    );
    dir
}

/// `PATH` with `dir` first.
fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap()
}

/// Runs `command` with `dir` first on its PATH; returns (success, stderr).
fn with_ffmpeg_from(dir: &Path, command: &mut std::process::Command) -> (bool, String) {
    let output = command
        .env("PATH", path_with(dir))
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn stylemill_command(args: &[String]) -> std::process::Command {
    let mut command = std::process::Command::new(bin());
    command.args(args);
    command
}

/// A script named ffmpeg in a new directory of `dir`, running `body` (sh) with the system
/// ffmpeg as `$REAL`.
fn wrapper(dir: &Path, body: &str) -> PathBuf {
    let bin = dir.join("wrapper");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("ffmpeg");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nREAL=/usr/bin/ffmpeg\n{body}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    bin
}

fn job(input: &Path, output: &Path, extra: &[&str]) -> Vec<String> {
    let mut options = vec!["--chunk-frames", "8"];
    options.extend(extra);
    run_args(input, output, "mosaic", &options)
}

/// A job under the ffmpeg build `version` logs that version, keeps every frame and the audio,
/// and gives the same bytes under 4 ranks, both schedules, as under one.
fn runs_jobs_exactly_under_mpirun_too(version: &str, logged_as: &str) {
    let dir = tempfile::tempdir().unwrap();
    let ffmpeg = build(version);
    let input = small_gop_clip(dir.path(), 48);
    let plain = dir.path().join("plain.mp4");
    let (ok, stderr) = with_ffmpeg_from(&ffmpeg, &mut stylemill_command(&job(&input, &plain, &[])));
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains(&format!("ffmpeg {logged_as}")),
        "the version is logged: {stderr}"
    );
    let streams = probe(&plain);
    assert_eq!(video_stream(&streams).frames(), 48);
    assert!(streams.iter().any(|s| s.codec_type == "audio"));
    for schedule in ["static", "dynamic"] {
        let output = dir.path().join(format!("np4-{schedule}.mp4"));
        let mut command = mpirun_command(4, &job(&input, &output, &["--schedule", schedule]));
        let (ok, stderr) = with_ffmpeg_from(&ffmpeg, &mut command);
        assert!(ok, "{schedule}: {stderr}");
        assert!(
            std::fs::read(&output).unwrap() == std::fs::read(&plain).unwrap(),
            "np 4 {schedule} under ffmpeg {version} differs from np 1"
        );
    }
}

#[test]
fn ubuntu_22_04_ffmpeg_4_4_the_oldest_supported_runs_jobs_exactly() {
    runs_jobs_exactly_under_mpirun_too("4.4", "4.4.2-0ubuntu0.22.04.1");
}

#[test]
fn ubuntu_25_10_ffmpeg_7_1_runs_jobs_exactly() {
    runs_jobs_exactly_under_mpirun_too("7.1", "7.1.1-1ubuntu4");
}

#[test]
fn a_static_ffmpeg_8_0_runs_jobs_exactly() {
    runs_jobs_exactly_under_mpirun_too("8.0", "n8.0");
}

#[test]
fn an_ffmpeg_older_than_4_4_is_refused_naming_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let input = small_gop_clip(dir.path(), 48);
    let before = names_in(dir.path());
    let output = dir.path().join("out.mp4");
    let (ok, stderr) = with_ffmpeg_from(
        &build("4.2.2"),
        &mut stylemill_command(&job(&input, &output, &[])),
    );
    assert!(!ok);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("error: ffmpeg 4.2.2-static (")
            && errors[0].contains("is too old: stylemill needs ffmpeg 4.4 or later"),
        "{stderr}"
    );
    assert_eq!(names_in(dir.path()), before);
}

#[test]
fn an_ffmpeg_without_libx264_is_named_as_the_problem_not_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = small_gop_clip(dir.path(), 48);
    let without_x264 = wrapper(
        dir.path(),
        r#"for arg; do shift; [ "$arg" = libx264 ] && arg=libx264_not_built_in; set -- "$@" "$arg"; done
exec "$REAL" "$@""#,
    );
    let before = names_in(dir.path());
    let output = dir.path().join("out.mp4");
    let (ok, stderr) = with_ffmpeg_from(
        &without_x264,
        &mut stylemill_command(&job(&input, &output, &[])),
    );
    assert!(!ok);
    assert!(
        stderr.contains("error: the installed ffmpeg cannot do what stylemill asks while encoding (Unknown encoder 'libx264_not_built_in')"),
        "{stderr}"
    );
    assert!(!stderr.contains("corrupt"), "{stderr}");
    assert_eq!(names_in(dir.path()), before);
}

fn doctor(path_first: Option<&Path>) -> (bool, String, String) {
    let mut command = std::process::Command::new(bin());
    command.arg("doctor");
    if let Some(dir) = path_first {
        command.env("PATH", path_with(dir));
    }
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_doctor_says_what_this_machine_offers() {
    let (ok, report, stderr) = doctor(None);
    assert!(ok, "{report}{stderr}");
    let stated = std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&stated.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    let line = |topic: &str| {
        report
            .lines()
            .find(|l| l.starts_with(topic))
            .unwrap_or_else(|| panic!("no {topic} line: {report}"))
            .to_string()
    };
    assert!(
        line("ffmpeg ").contains(&format!("ok       {version} at ")),
        "{report}"
    );
    assert!(line("ffprobe").contains("ok"), "{report}");
    assert!(
        report.contains("libx264: yes") && report.contains("showinfo: yes"),
        "{report}"
    );
    assert!(line("MPI").contains("Open MPI"), "{report}");
    assert!(line("launcher").contains("mpirun ("), "{report}");
    let driver = line("CUDA driver");
    assert!(
        driver.contains("--       not found (libcuda.so.1)") || driver.contains("ok       CUDA "),
        "{report}"
    );
    assert!(line("CPU").contains("CPU engine kernel: "), "{report}");
    assert!(
        report.ends_with("everything a run needs is here\n"),
        "{report}"
    );
}

#[test]
fn the_doctor_fails_for_an_ffmpeg_too_old_or_without_libx264() {
    let (ok, report, stderr) = doctor(Some(&build("4.2.2")));
    assert!(!ok);
    assert!(
        report.contains("ffmpeg        MISSING  ffmpeg 4.2.2-static ("),
        "{report}"
    );
    assert!(
        stderr.contains("error: this machine lacks what a run needs (ffmpeg)"),
        "{stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let without_x264 = wrapper(
        dir.path(),
        r#"case "$*" in *-encoders*) "$REAL" "$@" | grep -v ' libx264 '; exit 0;; esac
exec "$REAL" "$@""#,
    );
    let (ok, report, stderr) = doctor(Some(&without_x264));
    assert!(!ok);
    assert!(
        report.contains("encoder       MISSING  libx264: MISSING"),
        "{report}"
    );
    assert!(stderr.contains("(encoder)"), "{stderr}");
}
