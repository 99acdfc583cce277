//! The same run under `mpirun` gives the same bytes as without it, whatever the rank count and
//! the schedule; each rank decodes only its share, rank 0 receives encoded chunks only, a node
//! that cannot read the input gets one copy, and a corrupt range names its rank and frame.
//! (A rank that dies or hangs is tested in resume.rs, with the rerun that resumes.)

mod common;

use common::*;
use std::path::Path;

/// A short run in 4-frame chunks.
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
fn more_ranks_than_chunks_leave_some_idle_and_the_bytes_unchanged() {
    // 10 frames are three chunks: of twelve ranks, nine get none.
    let dir = tempfile::tempdir().unwrap();
    let input = media("rabbit320_h264_aac.mp4");
    let plain = dir.path().join("plain.mp4");
    let (ok, _, stderr) = stylemill(&args(&input, &plain, "10"));
    assert!(ok, "{stderr}");
    assert_eq!(video_stream(&probe(&plain)).frames(), 10);
    let expected = std::fs::read(&plain).unwrap();
    for schedule in ["static", "dynamic"] {
        let output = dir.path().join(format!("np12-{schedule}.mp4"));
        let mut ranked = args(&input, &output, "10");
        ranked.extend(["--schedule".to_string(), schedule.to_string()]);
        assert_mpirun_writes(12, &ranked, &output, &expected);
    }
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

const GOP: u64 = 12;

fn report_of(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn one_two_and_four_ranks_give_identical_bytes_under_both_schedules_and_decode_only_their_share() {
    let dir = tempfile::tempdir().unwrap();
    let clip = small_gop_clip(dir.path(), 80);
    let run_args = |output: &Path, schedule: &str, report: &Path| {
        let mut args = common::run_args(
            &clip,
            output,
            "candy",
            &["--chunk-frames", "8", "--schedule", schedule, "--report"],
        );
        args.push(report.display().to_string());
        args
    };
    let plain = dir.path().join("plain.mp4");
    let (ok, _, stderr) = stylemill(&run_args(&plain, "static", &dir.path().join("plain.json")));
    assert!(ok, "{stderr}");
    let expected = std::fs::read(&plain).unwrap();
    assert_eq!(video_stream(&probe(&plain)).frames(), 80);
    for ranks in [1, 2, 4] {
        for schedule in ["static", "dynamic"] {
            let output = dir.path().join(format!("np{ranks}-{schedule}.mp4"));
            let report = dir.path().join(format!("np{ranks}-{schedule}.json"));
            assert_mpirun_writes(
                ranks,
                &run_args(&output, schedule, &report),
                &output,
                &expected,
            );
            let report = report_of(&report);
            let ranks_seen = report["ranks"].as_array().unwrap();
            assert_eq!(ranks_seen.len(), ranks);
            let encoded: u64 = ranks_seen
                .iter()
                .map(|r| r["frames_encoded"].as_u64().unwrap())
                .sum();
            assert_eq!(
                encoded, 80,
                "np {ranks} {schedule}: every frame encoded once"
            );
        }
    }
    // Static, four ranks: 10 chunks of 8 frames split 3/3/2/2.
    let report = report_of(&dir.path().join("np4-static.json"));
    let raw_frame_bytes = 160 * 120 * 3;
    for (rank, entry) in report["ranks"].as_array().unwrap().iter().enumerate() {
        let share = entry["frames"].as_u64().unwrap();
        let decoded = entry["frames_decoded"].as_u64().unwrap();
        assert_eq!(entry["frames_encoded"].as_u64().unwrap(), share);
        assert!(
            share <= decoded && decoded <= share + GOP,
            "rank {rank} decoded {decoded} frames for a share of {share}"
        );
        for figure in ["decode_s", "compute_s", "encode_s", "transfer_s"] {
            assert!(entry[figure].as_f64().unwrap() >= 0.0, "{figure}");
        }
        if rank > 0 {
            assert!(
                entry["mpi_bytes_sent"].as_u64().unwrap() > 0,
                "rank {rank} sent nothing"
            );
        }
    }
    let shares: Vec<u64> = report["ranks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["frames"].as_u64().unwrap())
        .collect();
    assert_eq!(shares, vec![24, 24, 16, 16]);
    let received = report["ranks"][0]["mpi_bytes_received"].as_u64().unwrap();
    assert!(
        received * 10 < 80 * raw_frame_bytes,
        "rank 0 received {received} bytes, a tenth of the raw frames is {}",
        8 * raw_frame_bytes
    );
}

#[test]
fn a_node_that_cannot_read_the_input_receives_one_copy_over_mpi() {
    // Ranks 1 to 3 run in mount namespaces where the input's directory is an empty tmpfs, as
    // on nodes without the shared filesystem: rank 1 (the node's first such rank) receives the
    // file from rank 0, and ranks 2 and 3 read rank 1's copy. Needs root (unshare, mount).
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("inputs");
    std::fs::create_dir(&inputs).unwrap();
    let clip = small_gop_clip(&inputs, 80);
    let hide = dir.path().join("hide.sh");
    std::fs::write(
        &hide,
        "#!/bin/sh\nset -e\nmount -t tmpfs none \"$1\"\nshift\nexec \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&hide, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let plain = dir.path().join("plain.mp4");
    let args = |output: &Path, report: &str| {
        common::run_args(
            &clip,
            output,
            "mosaic",
            &["--chunk-frames", "8", "--limit", "40", "--report", report],
        )
    };
    let (ok, _, stderr) = stylemill(&args(&plain, "/dev/null"));
    assert!(ok, "{stderr}");
    let output = dir.path().join("copied.mp4");
    let report = dir.path().join("copied.json");
    let report_text = report.display().to_string();
    let job = stylemill_with(&args(&output, &report_text));
    let mut hidden: Vec<std::ffi::OsString> = vec![
        "unshare".into(),
        "-m".into(),
        hide.clone().into(),
        inputs.clone().into(),
    ];
    hidden.extend(job.clone());
    let run = launch(&[(1, job), (3, hidden)])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "needs root for unshare and mount: {stderr}"
    );
    assert!(stderr.contains("rank 1: this node cannot read"), "{stderr}");
    assert!(std::fs::read(&output).unwrap() == std::fs::read(&plain).unwrap());
    let clip_bytes = std::fs::metadata(&clip).unwrap().len();
    let report = report_of(&report);
    let received: Vec<u64> = report["ranks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["mpi_bytes_received"].as_u64().unwrap())
        .collect();
    // Every rank receives the plan and the weights; rank 1 also the file, ranks 2 and 3 not.
    assert!(
        received[1] >= received[2] + clip_bytes && received[2] == received[3],
        "one copy for the node, to rank 1 ({clip_bytes} bytes): {received:?}"
    );
}

#[test]
fn a_corrupt_range_fails_the_job_naming_the_rank_and_the_frame() {
    // The keyframe at frame 48 is garbage: rank 2 of four decodes chunks 6 and 7 (frames
    // 48..64). Probing (by demuxing) cannot see it; the rank decoding it stops the job.
    let dir = tempfile::tempdir().unwrap();
    let damaged = dir.path().join("damaged.mp4");
    damage_keyframe(&small_gop_clip(dir.path(), 80), 4, &damaged);
    let before = names_in(dir.path());
    let output = dir.path().join("out.mp4");
    let run = mpirun(
        4,
        &common::run_args(&damaged, &output, "mosaic", &["--chunk-frames", "8"]),
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    let error = stderr
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_else(|| panic!("an error line: {stderr}"));
    assert!(
        error.contains("rank 2 failed: ") || error.contains("rank 1 failed: "),
        "{error}"
    );
    assert!(
        error.contains("damaged.mp4 is truncated or corrupt: decoding failed near frame ")
            && blames_near(error, 48),
        "{error}"
    );
    assert_eq!(names_in(dir.path()), before, "nothing is published");
}
