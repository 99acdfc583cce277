//! The build without MPI (`cargo build --release --no-default-features --features temporal`, kept by
//! scripts/test-tools.sh as target/no-mpi/stylemill), for laptops and desktops with no MPI
//! library: it links none, runs single-rank jobs byte for byte as the MPI build does, and under
//! a launcher says it cannot take part rather than running as unrelated copies.

mod common;

use common::*;
use std::path::PathBuf;

fn no_mpi_binary() -> PathBuf {
    let binary = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/no-mpi/stylemill");
    assert!(
        binary.is_file(),
        "{} is missing: run scripts/test-tools.sh",
        binary.display()
    );
    binary
}

#[test]
fn a_build_without_mpi_links_no_mpi_library_and_runs_jobs_as_the_mpi_build_does() {
    let linked = std::process::Command::new("ldd")
        .arg(no_mpi_binary())
        .output()
        .unwrap();
    let libraries = String::from_utf8_lossy(&linked.stdout);
    assert!(
        linked.status.success() && libraries.contains("libc.so"),
        "{libraries}"
    );
    assert!(!libraries.contains("libmpi"), "{libraries}");
    let with_mpi = std::process::Command::new("ldd")
        .arg(bin())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&with_mpi.stdout).contains("libmpi"));

    let dir = tempfile::tempdir().unwrap();
    let input = media("rabbit320_h264_aac.mp4");
    let job = |output: &std::path::Path| {
        run_args(&input, output, "mosaic", &["--scale", "2", "--limit", "12"])
    };
    let expected = dir.path().join("with-mpi.mp4");
    let (ok, _, stderr) = stylemill(&job(&expected));
    assert!(ok, "{stderr}");
    let output = dir.path().join("without-mpi.mp4");
    let run = std::process::Command::new(no_mpi_binary())
        .args(job(&output))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(std::fs::read(&output).unwrap() == std::fs::read(&expected).unwrap());
    let doctor = std::process::Command::new(no_mpi_binary())
        .arg("doctor")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(doctor.status.success(), "{report}");
    assert!(
        report.contains("built without MPI: jobs run as one rank"),
        "{report}"
    );
    assert!(
        report.contains("optical flow  ok       OpenCV"),
        "--temporal works without MPI: {report}"
    );
}

#[test]
fn a_build_without_mpi_started_by_a_launcher_says_it_cannot_take_part() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.mp4");
    let args = run_args(
        &media("rabbit320_h264_aac.mp4"),
        &output,
        "mosaic",
        &["--limit", "4"],
    );
    let program: Vec<std::ffi::OsString> = std::iter::once(no_mpi_binary().into_os_string())
        .chain(args.iter().map(Into::into))
        .collect();
    let run = launch(&[(2, program)]).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("error: this stylemill was built without MPI (--no-default-features) but started by an MPI launcher"),
        "{stderr}"
    );
    assert!(!output.exists());
}
