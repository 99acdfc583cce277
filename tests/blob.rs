//! Azure Blob Storage in and out, against a real Azurite on loopback: round trips in every
//! direction (checked against the same job run on local files, byte for byte, and decoded), under
//! mpirun, refused credentials, a cut connection, secret redaction and blob-name safety.

mod common;

use common::azurite::{sas, signature_of, Azurite, Fault, FaultyProxy};
use common::{media, mpirun, probe, stylemill, video_stream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;

const FAR: &str = "2099-01-01T00:00:00Z";

fn full_access() -> String {
    sas("racwdl", FAR)
}

fn sample() -> PathBuf {
    media("rabbit320_h264_aac.mp4")
}

/// The job every test runs: small frames, and 24 of them unless `extra` sets `--limit`.
fn args(input: &str, output: &str, extra: &[&str]) -> Vec<String> {
    let mut all = vec!["run".to_string(), input.into(), "-o".into(), output.into()];
    all.extend(["--style", "mosaic", "--scale", "4"].map(String::from));
    if !extra.contains(&"--limit") {
        all.extend(["--limit", "24"].map(String::from));
    }
    all.extend(extra.iter().map(|a| a.to_string()));
    all
}

/// The same job on local files: the bytes every blob output must equal.
fn local_reference(dir: &Path, output_name: &str, extra: &[&str]) -> PathBuf {
    let output = dir.join(output_name);
    let (ok, _, stderr) = stylemill(&args(
        sample().to_str().unwrap(),
        output.to_str().unwrap(),
        extra,
    ));
    assert!(ok, "{stderr}");
    output
}

fn assert_decodes_to_frames(bytes: &[u8], frames: usize, dir: &Path) {
    let path = dir.join("downloaded.mp4");
    std::fs::write(&path, bytes).unwrap();
    assert_eq!(video_stream(&probe(&path)).frames(), frames);
}

/// An emulator with the sample video in `videos/clips/rabbit.mp4` and an empty `out`
/// container, a scratch directory, and the video's blob name.
fn emulator_with_video() -> (Azurite, tempfile::TempDir, String) {
    let azurite = Azurite::start();
    azurite.create_container("videos");
    azurite.create_container("out");
    let name = "clips/rabbit.mp4".to_string();
    azurite.put("videos", &name, &std::fs::read(sample()).unwrap());
    (azurite, tempfile::tempdir().unwrap(), name)
}

#[test]
fn round_trips_give_the_bytes_of_a_local_run() {
    let (azurite, dir, name) = emulator_with_video();
    let token = full_access();
    let reference = std::fs::read(local_reference(dir.path(), "reference.mp4", &[])).unwrap();
    let input = azurite.url("videos", &name, Some(&token));

    let (ok, stdout, stderr) = stylemill(&args(
        &input,
        &azurite.url("out", "blob-to-blob.mp4", Some(&token)),
        &[],
    ));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("wrote http://127.0.0.1"), "{stdout}");
    let uploaded = azurite
        .get("out", "blob-to-blob.mp4")
        .expect("the output blob exists");
    assert_eq!(uploaded, reference, "blob in, blob out");
    assert_decodes_to_frames(&uploaded, 24, dir.path());

    let local_output = dir.path().join("blob-to-local.mp4");
    let (ok, _, stderr) = stylemill(&args(&input, local_output.to_str().unwrap(), &[]));
    assert!(ok, "{stderr}");
    assert_eq!(
        std::fs::read(&local_output).unwrap(),
        reference,
        "blob in, local out"
    );

    // A public-cloud URL redirected by --blob-endpoint, the SAS from the environment, and
    // blocks small enough that the upload takes several.
    let output = Command::new(common::bin())
        .args(args(
            sample().to_str().unwrap(),
            "https://devstoreaccount1.blob.core.windows.net/out/local-to-blob.mp4",
            &["--blob-endpoint", &azurite.endpoint(), "--block-size", "8K"],
        ))
        .env("STYLEMILL_SAS_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        azurite.get("out", "local-to-blob.mp4").unwrap(),
        reference,
        "local in, blob out"
    );

    let frames_dir = dir.path().join("frames");
    std::fs::create_dir(&frames_dir).unwrap();
    let (ok, _, stderr) = stylemill(&args(
        sample().to_str().unwrap(),
        frames_dir.join("%06d.png").to_str().unwrap(),
        &[],
    ));
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = stylemill(&args(
        &input,
        &azurite.url("out", "frames/%06d.png", Some(&token)),
        &[],
    ));
    assert!(ok, "{stderr}");
    let uploaded: Vec<String> = azurite
        .list("out")
        .into_iter()
        .filter(|n| n.starts_with("frames/"))
        .collect();
    assert_eq!(uploaded.len(), 24, "{uploaded:?}");
    for frame in 1..=24 {
        let name = format!("{frame:06}.png");
        let blob = azurite
            .get("out", &format!("frames/{name}"))
            .expect("every frame is uploaded");
        assert_eq!(
            blob,
            std::fs::read(frames_dir.join(&name)).unwrap(),
            "frame {name}"
        );
    }

    let again = args(
        &input,
        &azurite.url("out", "blob-to-blob.mp4", Some(&token)),
        &[],
    );
    let (ok, _, stderr) = stylemill(&again);
    assert!(!ok);
    assert!(
        stderr.contains("already exists; pass --overwrite"),
        "{stderr}"
    );
    let mut overwrite = again.clone();
    overwrite.push("--overwrite".into());
    let (ok, _, stderr) = stylemill(&overwrite);
    assert!(ok, "{stderr}");
}

#[test]
fn blob_jobs_run_under_mpirun() {
    let (azurite, dir, name) = emulator_with_video();
    let token = full_access();
    let reference = std::fs::read(local_reference(dir.path(), "reference.mp4", &[])).unwrap();
    let output = mpirun(
        2,
        &args(
            &azurite.url("videos", &name, Some(&token)),
            &azurite.url("out", "np2.mp4", Some(&token)),
            &[],
        ),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(azurite.get("out", "np2.mp4").unwrap(), reference);
}

#[test]
fn refused_credentials_and_missing_blobs_are_named() {
    let (azurite, dir, name) = emulator_with_video();
    let local = dir.path().join("out.mp4");
    let local = local.to_str().unwrap();
    let good = full_access();
    let error_of = |input: &str, output: &str| {
        let (ok, _, stderr) = stylemill(&args(input, output, &[]));
        assert!(!ok, "{stderr}");
        stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .map(str::to_string)
            .unwrap_or(stderr)
    };

    let forged = good.replace(
        signature_of(&good),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3D",
    );
    let error = error_of(&azurite.url("videos", &name, Some(&forged)), local);
    assert!(
        error.contains("refused the SAS token from the URL")
            && error.contains("authentication failed"),
        "{error}"
    );

    let expired = sas("racwdl", "2020-01-01T00:00:00Z");
    let error = error_of(&azurite.url("videos", &name, Some(&expired)), local);
    assert!(
        error.contains("expired at 2020-01-01T00:00:00Z; create a new SAS token"),
        "{error}"
    );

    let read_only = sas("rl", FAR);
    let error = error_of(
        &azurite.url("videos", &name, Some(&good)),
        &azurite.url("out", "x.mp4", Some(&read_only)),
    );
    assert!(
        error.contains("does not allow writing") && error.contains("write (w)"),
        "{error}"
    );
    let write_only = sas("w", FAR);
    let error = error_of(&azurite.url("videos", &name, Some(&write_only)), local);
    assert!(
        error.contains("does not allow reading") && error.contains("read (r)"),
        "{error}"
    );

    let error = error_of(&azurite.url("videos", "missing.mp4", Some(&good)), local);
    assert!(
        error.contains("blob") && error.contains("missing.mp4 does not exist"),
        "{error}"
    );
    let error = error_of(&azurite.url("nothere", "x.mp4", Some(&good)), local);
    assert!(
        error.contains("container") && error.contains("nothere does not exist"),
        "{error}"
    );
    let error = error_of(&azurite.url("videos", &name, None), local);
    assert!(
        error.contains("no credential for storage account devstoreaccount1"),
        "{error}"
    );

    assert!(!azurite.list("out").contains(&"x.mp4".to_string()));
    assert!(!Path::new(local).exists());
}

#[test]
fn a_cut_connection_leaves_no_output_blob_and_a_brief_one_or_a_lost_answer_is_retried() {
    let azurite = Azurite::start();
    let dir = tempfile::tempdir().unwrap();
    azurite.create_container("out");
    let token = full_access();
    let reference = std::fs::read(local_reference(
        dir.path(),
        "reference.mp4",
        &["--limit", "120"],
    ))
    .unwrap();
    assert!(reference.len() > 60_000, "the upload must take many blocks");
    let through = |proxy: &FaultyProxy, name: &str| {
        let url = format!(
            "http://127.0.0.1:{}/devstoreaccount1/out/{name}?{token}",
            proxy.port
        );
        stylemill(&args(
            sample().to_str().unwrap(),
            &url,
            &["--limit", "120", "--block-size", "4K"],
        ))
    };

    let outage = FaultyProxy::start(
        azurite.port,
        Fault::CutAfter {
            bytes: 30_000,
            stay_down: true,
        },
    );
    let (ok, _, stderr) = through(&outage, "cut.mp4");
    assert!(!ok);
    assert!(
        stderr.contains("retrying in"),
        "the retry path runs: {stderr}"
    );
    assert!(
        stderr.contains("cannot reach blob endpoint") && stderr.contains("after 5 attempts"),
        "{stderr}"
    );
    assert_eq!(azurite.get("out", "cut.mp4"), None, "nothing is committed");

    let blip = FaultyProxy::start(
        azurite.port,
        Fault::CutAfter {
            bytes: 30_000,
            stay_down: false,
        },
    );
    let (ok, _, stderr) = through(&blip, "blip.mp4");
    assert!(ok, "{stderr}");
    assert_eq!(blip.faults.load(Ordering::SeqCst), 1);
    assert!(stderr.contains("retrying in"), "{stderr}");
    assert_eq!(azurite.get("out", "blip.mp4").unwrap(), reference);

    // The commit lands but its answer is lost: the retry meets the blob it just wrote.
    let lost = FaultyProxy::start(azurite.port, Fault::LoseAnswerTo("comp=blocklist"));
    let (ok, _, stderr) = through(&lost, "lost.mp4");
    assert!(ok, "a landed commit is not reported as a clash: {stderr}");
    assert_eq!(lost.faults.load(Ordering::SeqCst), 1);
    assert!(
        stderr.contains("an earlier commit attempt had landed"),
        "{stderr}"
    );
    assert_eq!(azurite.get("out", "lost.mp4").unwrap(), reference);
}

#[test]
fn sas_tokens_never_appear_in_anything_stylemill_prints_or_writes() {
    let (azurite, dir, name) = emulator_with_video();
    azurite.create_container("incoming");
    azurite.put(
        "incoming",
        "broken.mp4",
        &std::fs::read(sample()).unwrap()[..30_000],
    );
    let token = full_access();
    let forged = token.replace(
        signature_of(&token),
        "Zm9yZ2VkIHNpZ25hdHVyZSBmb3IgdGVzdA%3D%3D",
    );
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let (report, events) = (
        dir.path().join("report.json"),
        dir.path().join("events.jsonl"),
    );
    let input = azurite.url("videos", &name, Some(&token));
    let mut printed = String::new();
    let mut run = |args: Vec<String>, should_succeed: bool| {
        let (ok, stdout, stderr) = stylemill(&args);
        assert_eq!(ok, should_succeed, "{stderr}");
        printed.push_str(&stdout);
        printed.push_str(&stderr);
    };
    let with = |extra: &[&str], output: &str, input: &str| args(input, output, extra);
    let log_to = ["--log-to", logs.to_str().unwrap()];
    let mut success = log_to.to_vec();
    success.extend([
        "--report",
        report.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
    ]);
    run(
        with(&success, &azurite.url("out", "o.mp4", Some(&token)), &input),
        true,
    );
    run(
        with(&log_to, &azurite.url("out", "o.mp4", Some(&token)), &input),
        false,
    );
    run(
        with(
            &log_to,
            dir.path().join("x.mp4").to_str().unwrap(),
            &azurite.url("videos", &name, Some(&forged)),
        ),
        false,
    );
    run(
        with(
            &log_to,
            &azurite.url("out", "ro.mp4", Some(&sas("rl", FAR))),
            &input,
        ),
        false,
    );
    run(
        with(
            &[],
            &azurite.url("NOT_VALID", "x.mp4", Some(&token)),
            &input,
        ),
        false,
    );
    let unreachable = format!(
        "http://127.0.0.1:{}/devstoreaccount1/videos/x.mp4?{token}",
        common::azurite::free_port()
    );
    run(
        with(
            &[],
            dir.path().join("y.mp4").to_str().unwrap(),
            &unreachable,
        ),
        false,
    );
    run(
        vec![
            "watch".into(),
            azurite.url("incoming", "", Some(&token)),
            "--output-container".into(),
            "out".into(),
            "--once".into(),
            "--style".into(),
            "mosaic".into(),
            "--log-to".into(),
            logs.to_str().unwrap().into(),
        ],
        true,
    );
    let mut written = vec![printed];
    for path in [report, events]
        .into_iter()
        .chain(std::fs::read_dir(&logs).unwrap().map(|e| e.unwrap().path()))
    {
        written.push(std::fs::read_to_string(&path).unwrap());
    }
    written.push(
        String::from_utf8(
            azurite
                .get("out", ".stylemill/failed/incoming/broken.mp4")
                .unwrap(),
        )
        .unwrap(),
    );
    assert!(
        written.len() >= 8,
        "every run left its log: {}",
        written.len()
    );
    for secret in [signature_of(&token), signature_of(&forged)] {
        let decoded = secret
            .replace("%2B", "+")
            .replace("%2F", "/")
            .replace("%3D", "=");
        for text in &written {
            assert!(
                !text.contains(secret) && !text.contains(&decoded),
                "a signature leaked: {text}"
            );
        }
    }
    assert!(
        written[0].contains("<redacted>") || written[0].contains("devstoreaccount1"),
        "the runs printed URLs"
    );
}

#[test]
fn blob_names_never_escape_the_staging_directory() {
    let azurite = Azurite::start();
    let dir = tempfile::tempdir().unwrap();
    azurite.create_container("videos");
    let bytes = std::fs::read(sample()).unwrap();
    let reference = std::fs::read(local_reference(dir.path(), "reference.mp4", &[])).unwrap();
    let token = full_access();
    let staging = dir.path().join("tmp");
    let outputs = dir.path().join("outputs");
    for dir in [&staging, &outputs] {
        std::fs::create_dir(dir).unwrap();
    }
    for (name, encoded) in [
        ("../../escape.mp4", "..%2F..%2Fescape.mp4"),
        ("/abs/../escape.mp4", "%2Fabs%2F..%2Fescape.mp4"),
        ("we ird/n\\a:m*e?.mp4", "we%20ird/n%5Ca%3Am%2Ae%3F.mp4"),
    ] {
        azurite.put("videos", name, &bytes);
        let url = format!("{}/videos/{encoded}?{token}", azurite.endpoint());
        let output = outputs.join("out.mp4");
        let result = Command::new(common::bin())
            .args(args(&url, output.to_str().unwrap(), &[]))
            .env("TMPDIR", &staging)
            .output()
            .unwrap();
        assert!(
            result.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        assert_eq!(std::fs::read(&output).unwrap(), reference, "{name}");
        assert_eq!(
            common::names_in(&staging),
            Vec::<String>::new(),
            "{name}: staging is cleaned up"
        );
        let mut beside: Vec<_> = common::names_in(dir.path());
        beside.sort();
        assert_eq!(
            beside,
            ["outputs", "reference.mp4", "tmp"],
            "{name}: nothing escaped"
        );
    }
}
