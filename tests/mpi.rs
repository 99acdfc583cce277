//! The same run under `mpirun` gives the same bytes as without it, whatever the rank count.
//! (A rank that dies or hangs is tested in resume.rs, with the rerun that resumes.)

mod common;

use common::*;
use std::path::Path;

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
