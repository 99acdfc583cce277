//! The README's two commands (run the sample, run every test) as a user pastes them, in a shell
//! whose programs are stand-ins that record how they were called: as root with no `sudo`
//! installed (containers, cloud images) and as a user with `sudo`. Each must reach apt-get with
//! the packages and then the build or the tests, whichever the machine has.

use std::path::{Path, PathBuf};

/// The shell commands of the README's quick start, in order.
fn quick_start_commands() -> Vec<String> {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let quick_start = &readme[readme.find("## Quick start").expect("a quick start")..];
    let commands: Vec<String> = quick_start
        .split("```sh\n")
        .skip(1)
        .take(2)
        .map(|block| block.split("```").next().unwrap().trim().to_string())
        .collect();
    assert_eq!(commands.len(), 2);
    assert!(
        commands.iter().all(|command| !command.contains('\n')),
        "each is one line: {commands:?}"
    );
    commands
}

/// Runs `command` with bash in `dir`, whose only programs on PATH are stand-ins for `names`,
/// each appending its name and arguments to `calls.log`; `sudo` runs its arguments.
fn run_with_stand_ins(dir: &Path, command: &str, names: &[&str]) -> (bool, String, String) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("calls.log");
    for name in names {
        let body = if *name == "sudo" {
            format!("echo \"sudo $*\" >> {}\nexec \"$@\"", log.display())
        } else {
            format!("echo \"{name} $*\" >> {}", log.display())
        };
        let script = bin.join(name);
        std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    let scripts = dir.join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    for script in [
        "test-tools.sh",
        "gpu-bundle.sh",
        "test-ffmpeg-builds.sh",
        "test-mpich.sh",
    ] {
        let path = scripts.join(script);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"scripts/{script}\" >> {}\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    let output = std::process::Command::new("/bin/bash")
        .args(["-c", command])
        .current_dir(dir)
        .env_clear()
        .env("PATH", &bin)
        .output()
        .unwrap();
    (
        output.status.success(),
        std::fs::read_to_string(&log).unwrap_or_default(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_called_in_order(calls: &str, expected: &[&str]) {
    let lines: Vec<&str> = calls.lines().collect();
    let mut position = 0;
    for wanted in expected {
        let found = lines[position..]
            .iter()
            .position(|line| line.starts_with(wanted))
            .unwrap_or_else(|| panic!("no `{wanted}` after call {position}: {calls}"));
        position += found + 1;
    }
}

#[test]
fn as_root_without_sudo_both_commands_run_as_pasted() {
    let [run, tests] = <[String; 2]>::try_from(quick_start_commands()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ok, calls, stderr) = run_with_stand_ins(dir.path(), &run, &["apt-get", "cargo"]);
    assert!(ok, "{stderr}");
    assert_called_in_order(
        &calls,
        &[
            "apt-get update",
            "apt-get install -y ffmpeg",
            "cargo run --release -- run samples/rabbit320.mp4",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let (ok, calls, stderr) = run_with_stand_ins(dir.path(), &tests, &["apt-get", "cargo"]);
    assert!(ok, "{stderr}");
    assert_called_in_order(
        &calls,
        &[
            "apt-get update",
            "apt-get install -y ffmpeg",
            "scripts/test-tools.sh",
            "scripts/gpu-bundle.sh",
            "cargo test --release",
            "scripts/test-ffmpeg-builds.sh",
            "scripts/test-mpich.sh",
        ],
    );
}

#[test]
fn with_sudo_apt_get_runs_through_it() {
    for command in quick_start_commands() {
        let dir = tempfile::tempdir().unwrap();
        let (ok, calls, stderr) =
            run_with_stand_ins(dir.path(), &command, &["sudo", "apt-get", "cargo"]);
        assert!(ok, "{stderr}");
        assert_called_in_order(
            &calls,
            &[
                "sudo apt-get update",
                "apt-get update",
                "sudo apt-get install -y ffmpeg",
                "apt-get install -y ffmpeg",
                "cargo ",
            ],
        );
    }
}
