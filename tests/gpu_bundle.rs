//! The bundle that carries stylemill to a bare GPU machine (scripts/gpu-bundle.sh, run before
//! the tests), proved here without a GPU: with the tree it fits in what that machine accepts;
//! every executable and plugin in it loads only the bundle's own libraries through the bundle's
//! own loader; its CPU path runs with an empty environment (doctor, a job on one rank, and the
//! same bytes from two ranks under the bundle's mpirun); and scripts/gpu-check.sh unpacks it and
//! says clearly when there is no GPU.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const LIMIT_MIB: u64 = 60;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn archive() -> PathBuf {
    let archive = root().join("target/gpu-bundle.tar.xz");
    assert!(
        archive.exists(),
        "{} is missing: run scripts/gpu-bundle.sh",
        archive.display()
    );
    archive
}

/// The bundle unpacked into a temporary directory, its executables restored as gpu-check.sh
/// restores them.
struct Unpacked {
    _dir: tempfile::TempDir,
    bundle: PathBuf,
}

fn unpack() -> Unpacked {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .arg("-C")
        .arg(dir.path())
        .arg("-xJf")
        .arg(archive())
        .status()
        .unwrap();
    assert!(status.success());
    let bundle = dir.path().join("stylemill-gpu");
    let restore = Command::new("python3")
        .arg(root().join("scripts/bundle_weights.py"))
        .arg("restore")
        .arg(&bundle)
        .arg(root().join("models"))
        .output()
        .unwrap();
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    Unpacked { _dir: dir, bundle }
}

/// A command of the bundle run with nothing of this machine's environment but the bundle's bin
/// directory on PATH (and OpenMPI's consent to run as root).
fn bare(bundle: &Path, program: &str) -> Command {
    let mut command = Command::new(bundle.join("bin").join(program));
    command
        .env_clear()
        .env("PATH", bundle.join("bin"))
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_tree_and_the_bundle_together_stay_under_60_mib() {
    let listed = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(listed.status.success());
    let tree: u64 = listed
        .stdout
        .split(|&b| b == 0)
        .filter(|name| !name.is_empty())
        .filter_map(|name| std::fs::metadata(root().join(text(name))).ok())
        .map(|meta| meta.len())
        .sum();
    let bundle = std::fs::metadata(archive()).unwrap().len();
    let mib = |bytes: u64| bytes as f64 / (1u64 << 20) as f64;
    assert!(
        tree + bundle < LIMIT_MIB << 20,
        "tree {:.1} MiB + bundle {:.1} MiB exceed {LIMIT_MIB} MiB",
        mib(tree),
        mib(bundle)
    );
}

#[test]
fn every_bundled_executable_and_plugin_loads_only_the_bundles_libraries() {
    let unpacked = unpack();
    let bundle = &unpacked.bundle;
    let lib = bundle.join("lib");
    let mut files: Vec<PathBuf> = std::fs::read_dir(bundle.join("elf"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for plugins in ["mpi/lib/openmpi3", "mpi/lib/pmix"] {
        files.extend(
            std::fs::read_dir(bundle.join(plugins))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "so")),
        );
    }
    assert!(files.len() > 50, "executables and MPI plugins: {files:?}");
    for file in files {
        let listed = Command::new(lib.join("ld-linux-x86-64.so.2"))
            .env_clear()
            .arg("--library-path")
            .arg(&lib)
            .arg("--list")
            .arg(&file)
            .output()
            .unwrap();
        let listing = text(&listed.stdout);
        assert!(
            listed.status.success(),
            "{}: {listing}{}",
            file.display(),
            text(&listed.stderr)
        );
        for line in listing.lines().filter(|l| l.contains("=>")) {
            let target = line.split("=>").nth(1).unwrap().split_whitespace().next();
            assert!(
                target.is_some_and(|t| Path::new(t).starts_with(&lib)),
                "{} loads a library from outside the bundle: {line}",
                file.display()
            );
        }
    }
}

#[test]
fn the_bundles_cpu_path_runs_with_an_empty_environment() {
    let unpacked = unpack();
    let bundle = &unpacked.bundle;
    let doctor = bare(bundle, "stylemill").arg("doctor").output().unwrap();
    let report = text(&doctor.stdout);
    assert!(doctor.status.success(), "{report}{}", text(&doctor.stderr));
    assert!(
        report.contains(&format!("at {}", bundle.join("bin/ffmpeg").display())),
        "the bundle's own ffmpeg: {report}"
    );
    assert!(report.contains("libx264: yes") && report.contains("png: yes"));
    assert!(
        report.contains("optical flow  --       this stylemill was built without optical flow"),
        "the bundle leaves OpenCV out: {report}"
    );

    let dir = tempfile::tempdir().unwrap();
    let input = media("rabbit320_h264_aac.mp4");
    let extra = ["--limit", "16", "--chunk-frames", "8"];
    let single = dir.path().join("np1.mp4");
    let run = bare(bundle, "stylemill")
        .args(run_args(&input, &single, "candy", &extra))
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(video_stream(&probe(&single)).frames(), 16);
    assert!(
        probe(&single).iter().any(|s| s.codec_type == "audio"),
        "the audio is kept"
    );

    let shared = dir.path().join("np2.mp4");
    let run = bare(bundle, "mpirun")
        .args([
            "--oversubscribe",
            "--bind-to",
            "none",
            "-np",
            "2",
            "stylemill",
        ])
        .args(run_args(&input, &shared, "candy", &extra))
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(std::fs::read(&single).unwrap() == std::fs::read(&shared).unwrap());

    // Called by its absolute path, mpirun must not hand the bundle's libraries to the programs
    // it starts: on a GPU machine with a newer glibc, its /bin/sh would load the bundle's libc
    // and fail before a rank starts.
    let environment = bare(bundle, "mpirun")
        .args(["-np", "1", "/usr/bin/env"])
        .output()
        .unwrap();
    assert!(
        environment.status.success(),
        "{}",
        text(&environment.stderr)
    );
    let library_path = text(&environment.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("LD_LIBRARY_PATH=").map(str::to_string))
        .unwrap_or_default();
    assert!(
        !library_path.contains(&bundle.display().to_string()),
        "LD_LIBRARY_PATH={library_path}"
    );

    let listed = bare(bundle, "cuda-tests")
        .args(["--ignored", "--list"])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(
        text(&listed.stdout).matches(": test").count() >= 5,
        "{}",
        text(&listed.stdout)
    );
    let bench = bare(bundle, "gpu-bench").output().unwrap();
    assert!(!bench.status.success());
    assert!(
        text(&bench.stderr).contains("the GPU benchmark needs a CUDA GPU"),
        "{}",
        text(&bench.stderr)
    );
}

#[test]
fn gpu_check_unpacks_the_bundle_and_says_so_when_there_is_no_gpu() {
    archive();
    let dir = tempfile::tempdir().unwrap();
    let no_gpu = dir.path().join("no-gpu");
    std::fs::create_dir(&no_gpu).unwrap();
    let nvidia_smi = no_gpu.join("nvidia-smi");
    std::fs::write(
        &nvidia_smi,
        "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'\nexit 9\n",
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&nvidia_smi)
        .status()
        .unwrap();
    let path = format!(
        "{}:{}",
        no_gpu.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let check = Command::new(root().join("scripts/gpu-check.sh"))
        .arg(dir.path())
        .env("PATH", path)
        .env_remove("OUT")
        .output()
        .unwrap();
    // The script copies everything it prints to its log, stderr included, on stdout.
    let printed = text(&check.stdout) + &text(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{printed}");
    assert!(
        printed.contains("gpu-check: no NVIDIA GPU here (nvidia-smi: NVIDIA-SMI has failed"),
        "{printed}"
    );
    let doctor = std::fs::read_to_string(dir.path().join("gpu-check/doctor.txt")).unwrap();
    assert!(
        doctor.contains("everything a run needs is here"),
        "{doctor}"
    );
}
