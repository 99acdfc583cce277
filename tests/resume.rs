//! Surviving cluster failures: a killed rank ends the job with the rank named and a rerun with
//! the same --work-dir computes only the missing chunks, giving the same bytes as an
//! uninterrupted run (with --temporal too); a hanging rank is stopped by --rank-timeout; checkpoints of another job
//! are refused; and the report accounts for every frame exactly once.

mod common;

use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FRAMES: usize = 96;

fn job_args(output: &Path, style: &str, extra: &[&str]) -> Vec<String> {
    let mut all = vec!["--scale", "2", "--limit", "96", "--chunk-frames", "8"];
    all.extend_from_slice(extra);
    run_args(&media("rabbit320_h264_aac.mp4"), output, style, &all)
}

fn spawn_mpirun(ranks: usize, args: &[String]) -> Child {
    mpirun_command(ranks, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun runs")
}

fn finished_chunks(dir: &Path) -> usize {
    if !dir.exists() {
        return 0;
    }
    names_in(dir)
        .iter()
        .filter(|n| n.starts_with("chunk-") && n.ends_with(".nut"))
        .count()
}

/// "N computed" from the summary line.
fn computed(stdout: &str) -> usize {
    let words: Vec<&str> = stdout.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "computed")
        .expect("summary line");
    words[at - 1].parse().unwrap()
}

#[test]
fn a_killed_rank_is_named_and_the_rerun_resumes_with_identical_bytes() {
    killed_rank_then_rerun(&[]);
}

#[test]
fn a_temporal_run_resumes_with_identical_bytes_too() {
    killed_rank_then_rerun(&["--temporal"]);
}

/// Kills rank 1 of a three-rank job with `extra` options after three chunks are done, then
/// reruns it: the rerun computes only what is missing and gives a single run's bytes.
fn killed_rank_then_rerun(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.mp4");
    let (ok, _, stderr) = stylemill(&job_args(&reference, "mosaic", extra));
    assert!(ok, "{stderr}");

    let work = dir.path().join("work");
    let output = dir.path().join("out.mp4");
    let mut resumable = vec!["--work-dir", work.to_str().unwrap()];
    resumable.extend_from_slice(extra);
    let args = job_args(&output, "mosaic", &resumable);
    let child = spawn_mpirun(3, &args);
    let victim = pid_of_rank(1, &output);
    let started = Instant::now();
    while finished_chunks(&work) < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no chunk finished"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(victim, "KILL");
    let killed = Instant::now();
    let run = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        killed.elapsed() < Duration::from_secs(60),
        "ended {:?} after the kill",
        killed.elapsed()
    );
    assert!(stderr.contains("rank 1"), "{stderr}");
    assert!(!output.exists());
    assert!(
        finished_chunks(&work) >= 3,
        "finished chunks survive the failure"
    );

    let rerun = mpirun(3, &args);
    let stdout = String::from_utf8_lossy(&rerun.stdout);
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let recomputed = computed(&stdout);
    assert!(
        recomputed < FRAMES,
        "the rerun computed {recomputed} of {FRAMES} frames"
    );
    assert!(
        stdout.contains(&format!("{} from checkpoints", FRAMES - recomputed)),
        "{stdout}"
    );
    assert!(
        std::fs::read(&output).unwrap() == std::fs::read(&reference).unwrap(),
        "resumed output differs"
    );
    assert!(
        names_in(&work).is_empty(),
        "the work directory is emptied after success"
    );
}

/// Stops `victim` (SIGSTOP) and waits for the job to end, which must fail within a bounded
/// time; returns what it printed.
fn hang_and_wait(child: Child, victim: u32) -> String {
    signal(victim, "STOP");
    let stopped = Instant::now();
    let run = child.wait_with_output().unwrap();
    signal(victim, "KILL");
    assert!(!run.status.success());
    let waited = stopped.elapsed();
    assert!(
        waited < Duration::from_secs(45),
        "ended {waited:?} after the hang"
    );
    String::from_utf8_lossy(&run.stderr).into_owned()
}

/// Whether the event log shows a frame stylized by `rank`.
fn rank_has_stylized(events: &Path, rank: usize) -> bool {
    let text = std::fs::read_to_string(events).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .any(|event| event["event"] == "frame" && event["rank"] == rank)
}

#[test]
fn a_hanging_rank_is_stopped_by_the_rank_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.mp4");
    let events = dir.path().join("events.jsonl");
    let extra = ["--rank-timeout", "3", "--events", events.to_str().unwrap()];
    let child = spawn_mpirun(2, &job_args(&output, "candy", &extra));
    let victim = pid_of_rank(1, &output);
    let started = Instant::now();
    while !rank_has_stylized(&events, 1) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "rank 1 never stylized a frame"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stderr = hang_and_wait(child, victim);
    assert!(
        stderr.contains("rank 1 made no progress for 3 s"),
        "{stderr}"
    );
    assert_eq!(names_in(dir.path()), vec!["events.jsonl"]);
}

#[test]
fn a_rank_hanging_at_start_up_is_stopped_too() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.mp4");
    let child = spawn_mpirun(2, &job_args(&output, "candy", &["--rank-timeout", "3"]));
    let victim = pid_of_rank(1, &output);
    let stderr = hang_and_wait(child, victim);
    // Stopped inside MPI's start-up or the plan's broadcast, or (on a fast machine) already
    // exchanging frames: either deadline names the failure.
    let named = stderr.contains("did not all start within 3 s")
        || stderr.contains("rank 1 made no progress for 3 s");
    assert!(named, "{stderr}");
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn a_checkpoint_of_another_job_is_refused_and_restart_discards_it() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let output = dir.path().join("out.mp4");
    let work_args = ["--work-dir", work.to_str().unwrap()];
    let mut first = Command::new(bin())
        .args(job_args(&output, "mosaic", &work_args))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while finished_chunks(&work) < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no chunk finished"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(first.id(), "TERM");
    assert!(!first.wait().unwrap().success());
    assert!(!output.exists());

    let (ok, _, stderr) = stylemill(&job_args(&output, "udnie", &work_args));
    assert!(!ok);
    assert!(stderr.contains("holds the checkpoint of a different job (another style); rerun the same command, pass --restart"), "{stderr}");
    assert!(!output.exists());
    let mut temporal = work_args.to_vec();
    temporal.push("--temporal");
    let (ok, _, stderr) = stylemill(&job_args(&output, "mosaic", &temporal));
    assert!(!ok);
    assert!(
        stderr.contains("(another --temporal or --temporal-strength)"),
        "{stderr}"
    );
    assert!(!output.exists());

    let mut restart = work_args.to_vec();
    restart.push("--restart");
    let (ok, stdout, stderr) = stylemill(&job_args(&output, "udnie", &restart));
    assert!(ok, "{stderr}");
    assert_eq!(computed(&stdout), FRAMES, "--restart recomputes everything");
}

#[test]
fn an_unusable_work_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let work = file.join("work");
    let (ok, _, stderr) = stylemill(&job_args(
        &dir.path().join("out.mp4"),
        "mosaic",
        &["--work-dir", work.to_str().unwrap()],
    ));
    assert!(!ok);
    assert!(stderr.contains("cannot use work directory"), "{stderr}");
    assert_eq!(names_in(dir.path()), vec!["a-file"]);
}

#[test]
fn the_report_accounts_for_every_frame_once_and_matches_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.mp4");
    let (report, events) = (
        dir.path().join("report.json"),
        dir.path().join("events.jsonl"),
    );
    let args = job_args(
        &output,
        "pointilism",
        &[
            "--report",
            report.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
        ],
    );
    let run = mpirun(3, &args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["frames"], FRAMES);
    assert_eq!(report["computed"], FRAMES);
    let mut frames: Vec<u64> = report["frame_timings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["frame"].as_u64().unwrap())
        .collect();
    frames.sort();
    assert_eq!(
        frames,
        (0..FRAMES as u64).collect::<Vec<_>>(),
        "every frame exactly once"
    );
    let ranks = report["ranks"].as_array().unwrap();
    let counts: Vec<u64> = ranks
        .iter()
        .map(|r| r["frames"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, vec![32, 32, 32], "the plan's even split");
    for (rank, entry) in ranks.iter().enumerate() {
        let mine = report["frame_timings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["rank"] == rank);
        let computing: f64 = mine.map(|f| f["compute_s"].as_f64().unwrap()).sum();
        let figure = |name: &str| entry[name].as_f64().unwrap();
        assert!((figure("compute_s") - computing).abs() < 1e-6);
        let working = ["decode_s", "compute_s", "encode_s", "transfer_s"].map(figure);
        assert!((figure("busy_s") - working.iter().sum::<f64>()).abs() < 1e-6);
        assert!(
            entry["busy_s"].as_f64().unwrap() > 0.0
                && entry["device"].as_str().unwrap().starts_with("cpu")
        );
    }
    for total in ["decode_s", "compute_s", "encode_s", "wall_s"] {
        assert!(report["totals"][total].as_f64().unwrap() > 0.0, "{total}");
    }
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.iter().filter(|e| e["event"] == "frame").count(),
        FRAMES
    );
    assert_eq!(lines.iter().filter(|e| e["event"] == "rank").count(), 3);
    assert_eq!(lines.last().unwrap()["event"], "done");
}
