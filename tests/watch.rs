//! `stylemill watch` against a real Azurite: videos uploaded while two watchers run are each
//! stylized once, a corrupt one gets an error marker, a restarted watcher redoes nothing, and
//! Ctrl-C stops a watcher cleanly, after the video it is working on. Watchers run in their own
//! process group and are interrupted as a terminal's Ctrl-C does: the whole group gets SIGINT.

mod common;

use common::azurite::{sas, Azurite};
use common::media;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Azurite with the containers `incoming` and `results`, and a SAS allowing everything.
fn emulator() -> (Azurite, String) {
    let azurite = Azurite::start();
    azurite.create_container("incoming");
    azurite.create_container("results");
    (azurite, sas("racwdl", "2099-01-01T00:00:00Z"))
}

fn sample_video() -> Vec<u8> {
    std::fs::read(media("rabbit320_h264_aac.mp4")).unwrap()
}

/// A watcher of `incoming` writing to `results`, at scale 4 unless `extra` sets one, logging to
/// `log`, with its temporary files in the directory `log` names with the extension `tmp`.
fn watcher(azurite: &Azurite, token: &str, log: &Path, extra: &[&str]) -> Child {
    let temporary = log.with_extension("tmp");
    std::fs::create_dir_all(&temporary).unwrap();
    let scale = if extra.contains(&"--scale") {
        &[][..]
    } else {
        &["--scale", "4"][..]
    };
    Command::new(common::bin())
        .args([
            "watch",
            &azurite.url("incoming", "", None),
            "--output-container",
            "results",
        ])
        .args(["--style", "mosaic", "--interval", "0.3"])
        .args(scale)
        .args(extra)
        .env("STYLEMILL_SAS_TOKEN", token)
        .env("RUST_LOG", "info")
        .env("TMPDIR", temporary)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .process_group(0)
        .spawn()
        .expect("stylemill starts")
}

/// Waits up to 60 s for a line of `log` that contains `text`, and returns it.
fn wait_for_line(log: &Path, text: &str) -> String {
    let started = Instant::now();
    loop {
        let printed = std::fs::read_to_string(log).unwrap();
        if let Some(line) = printed.lines().find(|line| line.contains(text)) {
            return line.to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no `{text}` in: {printed}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for_exit(mut child: Child) -> (std::process::ExitStatus, String) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stdout = String::new();
            std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
            return (status, stdout);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the watcher did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_watchers_process_each_new_video_once_and_mark_a_corrupt_one() {
    let (azurite, token) = emulator();
    let dir = tempfile::tempdir().unwrap();
    let logs = [dir.path().join("first.log"), dir.path().join("second.log")];
    let watchers: Vec<Child> = logs
        .iter()
        .map(|log| watcher(&azurite, &token, log, &[]))
        .collect();

    let video = sample_video();
    azurite.put("incoming", "a.mp4", &video);
    azurite.put("incoming", "notes.txt", b"not a video");
    azurite.put("incoming", "sub/b.mp4", &video);
    azurite.put("incoming", "broken.mp4", &video[..30_000]);

    let expected = [
        ".stylemill/done/incoming/a.mp4",
        ".stylemill/done/incoming/sub/b.mp4",
        ".stylemill/failed/incoming/broken.mp4",
    ];
    let started = Instant::now();
    while !expected
        .iter()
        .all(|marker| azurite.list("results").iter().any(|n| n == marker))
    {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "markers so far: {:?}",
            azurite.list("results")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    for watcher in &watchers {
        common::interrupt_group(watcher);
    }
    let mut printed = String::new();
    for (watcher, log) in watchers.into_iter().zip(&logs) {
        let (status, stdout) = wait_for_exit(watcher);
        let stderr = std::fs::read_to_string(log).unwrap();
        assert!(
            status.success(),
            "Ctrl-C stops a watcher cleanly: {status}\n{stderr}"
        );
        assert!(stderr.contains("watcher stopped"), "{stderr}");
        assert!(stdout.contains("video(s) stylized"), "{stdout}");
        printed.push_str(&stderr);
    }
    for name in ["a.mp4", "sub/b.mp4", "broken.mp4"] {
        let started_jobs = printed
            .lines()
            .filter(|line| line.contains(&format!("/incoming/{name}: stylizing into")))
            .count();
        assert_eq!(
            started_jobs, 1,
            "{name} is processed exactly once:\n{printed}"
        );
    }
    assert!(!printed.contains("notes.txt: stylizing"));
    let results = azurite.list("results");
    for output in ["a-mosaic.mp4", "sub/b-mosaic.mp4"] {
        let bytes = azurite
            .get("results", output)
            .unwrap_or_else(|| panic!("{output} in {results:?}"));
        let path = dir.path().join("downloaded.mp4");
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(
            common::video_stream(&common::probe(&path)).frames(),
            234,
            "{output}"
        );
    }
    assert!(
        !results.iter().any(|name| name.starts_with("broken-")),
        "{results:?}"
    );
    let marker = String::from_utf8(
        azurite
            .get("results", ".stylemill/failed/incoming/broken.mp4")
            .unwrap(),
    )
    .unwrap();
    assert!(
        marker.contains("truncated or corrupt"),
        "the marker says why: {marker}"
    );
    let done = String::from_utf8(
        azurite
            .get("results", ".stylemill/done/incoming/a.mp4")
            .unwrap(),
    )
    .unwrap();
    assert!(
        done.contains("a-mosaic.mp4") && done.contains("\"frames\": 234"),
        "{done}"
    );

    let restarted_log = dir.path().join("restarted.log");
    let (status, stdout) = wait_for_exit(watcher(&azurite, &token, &restarted_log, &["--once"]));
    assert!(status.success());
    assert!(
        stdout.contains("0 video(s) stylized, 0 refused"),
        "a restarted watcher redoes nothing: {stdout}"
    );
    assert_eq!(azurite.list("results"), results);
}

#[test]
fn a_watcher_runs_each_job_on_all_ranks_of_an_mpirun_world() {
    let (azurite, token) = emulator();
    azurite.put("incoming", "a.mp4", &sample_video());
    let output = common::mpirun_command(
        2,
        &[
            "watch",
            &azurite.url("incoming", "", Some(&token)),
            "--output-container",
            "results",
            "--style",
            "mosaic",
            "--scale",
            "4",
            "--once",
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("on 2 rank(s)"), "{stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("1 video(s) stylized"));
    assert!(azurite.get("results", "a-mosaic.mp4").is_some());
}

#[test]
fn ctrl_c_lets_the_current_video_finish_and_starts_no_other() {
    let (azurite, token) = emulator();
    let video = sample_video();
    azurite.put("incoming", "first.mp4", &video);
    azurite.put("incoming", "second.mp4", &video);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("watcher.log");
    // Scale 2: a video takes long enough that the signal surely comes while it is worked on.
    let child = watcher(&azurite, &token, &log, &["--scale", "2"]);

    let working_on = if wait_for_line(&log, ": stylizing into").contains("/incoming/first.mp4:") {
        "first.mp4"
    } else {
        "second.mp4"
    };
    common::interrupt_group(&child);
    let (status, stdout) = wait_for_exit(child);
    let printed = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status}\n{printed}");
    assert!(
        printed.contains("stopping after the current video"),
        "{printed}"
    );
    assert!(
        stdout.contains("1 video(s) stylized, 0 refused"),
        "{stdout}\n{printed}"
    );
    assert_eq!(printed.matches(": stylizing into").count(), 1, "{printed}");

    let stem = working_on.trim_end_matches(".mp4");
    let path = dir.path().join("finished.mp4");
    std::fs::write(
        &path,
        azurite
            .get("results", &format!("{stem}-mosaic.mp4"))
            .expect("the video being stylized when Ctrl-C came is finished"),
    )
    .unwrap();
    assert_eq!(common::video_stream(&common::probe(&path)).frames(), 234);
    let mut results = azurite.list("results");
    results.sort();
    assert_eq!(
        results,
        [
            format!(".stylemill/claims/incoming/{working_on}"),
            format!(".stylemill/done/incoming/{working_on}"),
            format!("{stem}-mosaic.mp4"),
        ],
        "no other video is started"
    );
}

#[test]
fn a_second_ctrl_c_stops_at_once_and_leaves_nothing_behind() {
    let (azurite, token) = emulator();
    let video = sample_video();
    azurite.put("incoming", "long.mp4", &video);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("watcher.log");
    let child = watcher(&azurite, &token, &log, &["--scale", "1"]);

    wait_for_line(&log, "long.mp4: stylizing into");
    common::interrupt_group(&child);
    wait_for_line(&log, "stopping after the current video");
    common::interrupt_group(&child);
    let (status, _) = wait_for_exit(child);
    let printed = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(130), "{printed}");
    let temporary = log.with_extension("tmp");
    assert_eq!(
        common::lingering_processes(&temporary.display().to_string()),
        Vec::<String>::new(),
        "its ffmpeg children stop with the watcher"
    );
    assert_eq!(
        common::names_in(&temporary),
        Vec::<String>::new(),
        "the staged input and output are removed"
    );
    assert_eq!(
        azurite.list("results"),
        [".stylemill/claims/incoming/long.mp4"],
        "no output and no marker: the video is processed again by the next watcher"
    );
}
