//! The same run under `mpirun` gives the same bytes as without it, whatever the rank count, and
//! a rank that dies ends the whole job with an error instead of a hang.

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// A short run whose 4-frame chunks straddle rank boundaries (ranges 4/3/3 on three ranks).
fn args(input: &Path, output: &Path, limit: &str) -> Vec<String> {
    [
        "run",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--style",
        "mosaic",
        "--scale",
        "2",
        "--limit",
        limit,
        "--chunk-frames",
        "4",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn mpirun_outputs_are_byte_identical_to_the_plain_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = media("rabbit320_h264_aac.mp4");
    let plain = dir.path().join("plain.mp4");
    let (ok, _, stderr) = stylemill(&args(&input, &plain, "10"));
    assert!(ok, "{stderr}");
    let expected = std::fs::read(&plain).unwrap();
    for ranks in [1, 3, 12] {
        let output = dir.path().join(format!("np{ranks}.mp4"));
        let run = mpirun(ranks, &args(&input, &output, "10"));
        assert!(
            run.status.success(),
            "np {ranks}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(
            std::fs::read(&output).unwrap() == expected,
            "np {ranks} differs from the plain run"
        );
    }
    assert_eq!(video_stream(&probe(&plain)).frames(), 10);
}

#[test]
fn mpirun_writes_the_same_png_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let input = media("rabbit320_vp8_vorbis.webm");
    let (plain, ranked) = (dir.path().join("plain"), dir.path().join("ranked"));
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::create_dir_all(&ranked).unwrap();
    let (ok, _, stderr) = stylemill(&args(&input, &plain.join("f%04d.png"), "6"));
    assert!(ok, "{stderr}");
    let run = mpirun(2, &args(&input, &ranked.join("f%04d.png"), "6"));
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let names = names_in(&plain);
    assert_eq!(names.len(), 6);
    assert_eq!(names_in(&ranked), names);
    for name in names {
        assert!(
            std::fs::read(plain.join(&name)).unwrap() == std::fs::read(ranked.join(&name)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn a_killed_rank_ends_the_job_with_an_error_naming_it_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = media("rabbit320_h264_aac.mp4");
    let output = dir.path().join("out.mp4");
    let mut arguments = args(&input, &output, "200");
    arguments.retain(|a| a != "--scale" && a != "2");
    let child = std::process::Command::new("mpirun")
        .args(["--oversubscribe", "--bind-to", "none", "-np", "2"])
        .arg(bin())
        .args(&arguments)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let victim = pid_of_rank(1, &output);
    std::thread::sleep(Duration::from_secs(2));
    let killed = Instant::now();
    std::process::Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    let run = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        killed.elapsed() < Duration::from_secs(60),
        "the job ended {:?} after the kill",
        killed.elapsed()
    );
    assert!(
        stderr.contains("rank 1"),
        "the dead rank is named:\n{stderr}"
    );
    assert!(
        names_in(dir.path()).is_empty(),
        "left behind: {:?}",
        names_in(dir.path())
    );
}
