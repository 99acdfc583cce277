//! The job definitions users submit, run or validated as written: jobscripts/mpirun.sh with
//! three ranks on loopback, jobscripts/slurm.sbatch on a real single-node Slurm (started by the
//! test; needs root and the slurm-wlm and munge packages), and the Azure ML YAML files and
//! Dockerfile through the azure-ai-ml SDK's own schema validation (target/test-venv, made by
//! scripts/test-tools.sh).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The same job run plainly, for byte comparison.
fn plain_run(output: &Path, extra: &[&str]) -> Vec<u8> {
    let (ok, _, stderr) = stylemill(&run_args(
        &media("rabbit320_h264_aac.mp4"),
        output,
        "mosaic",
        extra,
    ));
    assert!(ok, "{stderr}");
    std::fs::read(output).unwrap()
}

#[test]
fn mpirun_sh_runs_three_ranks_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.mp4");
    let run = Command::new(root().join("jobscripts/mpirun.sh"))
        .arg(media("rabbit320_h264_aac.mp4"))
        .arg(&output)
        .args(["mosaic", "--limit", "9", "--scale", "2"])
        .env("RANKS_PER_NODE", "3")
        .env("STYLEMILL", bin())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("3 ranks on 1 node(s)"), "{stderr}");
    for rank in 0..3 {
        assert!(
            stderr.contains(&format!("rank {rank}: cpu")),
            "rank {rank} ran:\n{stderr}"
        );
    }
    let expected = plain_run(
        &dir.path().join("plain.mp4"),
        &["--limit", "9", "--scale", "2"],
    );
    assert!(
        std::fs::read(&output).unwrap() == expected,
        "same bytes as the plain run"
    );
}

/// Stops the test's Slurm daemons however the test ends.
struct SlurmCluster(PathBuf);

impl Drop for SlurmCluster {
    fn drop(&mut self) {
        let _ = Command::new(root().join("tests/tools/slurm-cluster.sh"))
            .arg("stop")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn slurm_sbatch_runs_on_a_real_single_node_slurm() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = SlurmCluster(dir.path().join("slurm"));
    let started = Command::new(root().join("tests/tools/slurm-cluster.sh"))
        .arg("start")
        .arg(&cluster.0)
        .status()
        .unwrap();
    assert!(
        started.success(),
        "the test's Slurm cluster did not start (needs root, slurm-wlm and munge)"
    );
    let conf = cluster.0.join("slurm.conf");
    let output = dir.path().join("slurm.mp4");
    let export = format!(
        "ALL,INPUT={},OUTPUT={},STYLE=mosaic,STYLEMILL={},STYLEMILL_ARGS=--limit 12 --scale 2,OMPI_ALLOW_RUN_AS_ROOT=1,OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
        media("rabbit320_h264_aac.mp4").display(),
        output.display(),
        bin().display()
    );
    let job = Command::new("timeout")
        .args(["300", "sbatch", "--wait", "--chdir"])
        .arg(dir.path())
        .arg(format!("--export={export}"))
        .arg(root().join("jobscripts/slurm.sbatch"))
        .env("SLURM_CONF", &conf)
        .output()
        .unwrap();
    let log_name = names_in(dir.path())
        .into_iter()
        .find(|n| n.starts_with("stylemill-") && n.ends_with(".out"));
    let log = log_name
        .map(|n| std::fs::read_to_string(dir.path().join(n)).unwrap())
        .unwrap_or_default();
    assert!(
        job.status.success(),
        "sbatch: {}\n{log}",
        String::from_utf8_lossy(&job.stderr)
    );
    assert!(
        log.contains("2 ranks on 1 node(s)") && log.contains("launching with"),
        "{log}"
    );
    assert!(
        log.contains("rank 1: cpu"),
        "both tasks are ranks of one MPI job:\n{log}"
    );
    let expected = plain_run(
        &dir.path().join("plain.mp4"),
        &["--limit", "12", "--scale", "2"],
    );
    assert!(
        std::fs::read(&output).unwrap() == expected,
        "same bytes as the plain run"
    );
}

#[test]
fn azure_ml_definitions_pass_the_sdk_validation() {
    let python = root().join("target/test-venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/test-tools.sh",
        python.display()
    );
    let run = Command::new(python)
        .arg(root().join("tests/tools/validate_azureml.py"))
        .arg(root().join("jobscripts"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("job.yml: command job, 2 nodes x 4 MPI processes"),
        "{stdout}"
    );
    assert!(
        stdout.contains("pipeline.yml: pipeline job, step `stylize` is an MPI job"),
        "{stdout}"
    );
    assert!(stdout.contains("Dockerfile:"), "{stdout}");
}
