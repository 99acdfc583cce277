//! Every bad input gets one clear sentence, a non-zero exit, and nothing at the output path
//! (not even a hidden staging directory).

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// Runs stylemill expecting a refusal whose single error line contains `fragment`, and checks
/// that `dir` still holds exactly `before`.
fn assert_refused<S: AsRef<std::ffi::OsStr>>(args: &[S], fragment: &str, dir: &Path) {
    let before = names_in(dir);
    let (ok, _, stderr) = stylemill(args);
    assert!(!ok, "expected a failure");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line:\n{stderr}");
    assert!(
        errors[0].contains(fragment),
        "`{fragment}` not in: {}",
        errors[0]
    );
    assert_eq!(names_in(dir), before, "the output directory changed");
}

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// Refusal of `input` (a file in the scratch directory or elsewhere) with `style`.
    fn refuse(&self, input: &Path, style: &str, fragment: &str) {
        assert_refused(
            &run_args(input, &self.path("out.mp4"), style, &[]),
            fragment,
            self.dir.path(),
        );
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        std::fs::write(self.path(name), bytes).unwrap();
        self.path(name)
    }
}

fn rabbit() -> PathBuf {
    media("rabbit320_h264_aac.mp4")
}

#[test]
fn missing_input() {
    let s = Scratch::new();
    s.refuse(&s.path("nope.mp4"), "mosaic", "input video");
    s.refuse(&s.path("nope.mp4"), "mosaic", "does not exist");
}

#[test]
fn a_file_that_is_not_a_video() {
    let s = Scratch::new();
    let text = s.write(
        "notes.mp4",
        b"these are not the frames you are looking for\n",
    );
    s.refuse(&text, "mosaic", "is not a video ffmpeg can read");
}

#[test]
fn a_truncated_video() {
    let s = Scratch::new();
    let bytes = std::fs::read(rabbit()).unwrap();
    let truncated = s.write("truncated.mp4", &bytes[..bytes.len() / 2]);
    s.refuse(&truncated, "mosaic", "is truncated or corrupt");
}

#[test]
fn a_video_corrupt_in_the_middle() {
    let s = Scratch::new();
    let mut bytes = std::fs::read(rabbit()).unwrap();
    let middle = bytes.len() / 4;
    for (i, b) in bytes[middle..middle + 10_000].iter_mut().enumerate() {
        *b = (i * 7919 % 251) as u8;
    }
    let corrupt = s.write("corrupt.mp4", &bytes);
    s.refuse(&corrupt, "mosaic", "is truncated or corrupt");
}

#[test]
fn a_truncated_webm() {
    let s = Scratch::new();
    let bytes = std::fs::read(media("rabbit320_vp8_vorbis.webm")).unwrap();
    let truncated = s.write("truncated.webm", &bytes[..bytes.len() / 2]);
    s.refuse(&truncated, "mosaic", "is truncated or corrupt");
}

#[test]
fn a_file_with_no_video_stream() {
    let s = Scratch::new();
    let audio = s.path("audio.m4a");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=duration=1",
        audio.to_str().unwrap(),
    ]);
    s.refuse(&audio, "mosaic", "has no video stream");
}

#[test]
fn a_video_stream_with_zero_frames() {
    let s = Scratch::new();
    let empty = s.path("empty.mkv");
    // Every video packet dropped: the stream exists, its frames do not.
    ffmpeg(&[
        "-i",
        rabbit().to_str().unwrap(),
        "-map",
        "0",
        "-c",
        "copy",
        "-bsf:v",
        "noise=drop=1",
        empty.to_str().unwrap(),
    ]);
    s.refuse(&empty, "mosaic", "has a video stream with no frames");
}

#[test]
fn an_unknown_style_lists_the_known_ones() {
    let s = Scratch::new();
    s.refuse(&rabbit(), "vangogh", "unknown style `vangogh`: the shipped styles are candy, mosaic, rain_princess, udnie, pointilism");
}

#[test]
fn corrupt_weights() {
    let s = Scratch::new();
    let garbage = s.write("garbage.safetensors", &[7u8; 4096]);
    s.refuse(
        &rabbit(),
        garbage.to_str().unwrap(),
        "is not a valid safetensors file",
    );
    let checkpoint = std::fs::read(fixtures().join("models/pth-fixtures/udnie_zip.pth")).unwrap();
    let cut = s.write("cut.pth", &checkpoint[..checkpoint.len() / 3]);
    s.refuse(
        &rabbit(),
        cut.to_str().unwrap(),
        "is not a valid PyTorch checkpoint file",
    );
}

#[test]
fn weights_with_a_wrong_shape_or_a_missing_key_name_the_key() {
    let s = Scratch::new();
    let mut tensors = shipped_tensors("candy");
    let norm = tensors.get_mut("in2.weight").unwrap();
    norm.shape = vec![63];
    norm.data.truncate(63);
    let wrong = s.path("wrong.safetensors");
    write_safetensors(&tensors, &wrong);
    s.refuse(
        &rabbit(),
        wrong.to_str().unwrap(),
        "tensor `in2.weight` has shape [63] but the network needs [64]",
    );

    let mut tensors = shipped_tensors("candy");
    tensors.remove("res3.conv2.conv2d.bias");
    let missing = s.path("missing.safetensors");
    write_safetensors(&tensors, &missing);
    s.refuse(
        &rabbit(),
        missing.to_str().unwrap(),
        "has no tensor `res3.conv2.conv2d.bias`",
    );
}

#[test]
fn frames_smaller_than_the_network_takes() {
    let s = Scratch::new();
    let tiny = s.path("tiny.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=size=4x4:rate=5",
        "-frames:v",
        "3",
        "-c:v",
        "ffv1",
        tiny.to_str().unwrap(),
    ]);
    s.refuse(
        &tiny,
        "mosaic",
        "frames of 4x4 are too small for the style network",
    );
    let mut scaled = run_args(&rabbit(), &s.path("out.mp4"), "mosaic", &[]);
    scaled.extend(["--scale".into(), "60".into()]);
    assert_refused(&scaled, "frames of 5x4 are too small", s.dir.path());
}

#[test]
fn a_missing_output_directory() {
    let s = Scratch::new();
    let output = s.path("not-there/out.mp4");
    assert_refused(
        &run_args(&rabbit(), &output, "mosaic", &[]),
        "does not exist; create it first",
        s.dir.path(),
    );
}

#[test]
fn output_path_equal_to_the_input() {
    let s = Scratch::new();
    let input = s.write("clip.mp4", &std::fs::read(rabbit()).unwrap());
    let same = s.dir.path().join(".").join("clip.mp4");
    assert_refused(
        &run_args(&input, &same, "mosaic", &[]),
        "is the input file",
        s.dir.path(),
    );
    assert_eq!(
        std::fs::read(&input).unwrap(),
        std::fs::read(rabbit()).unwrap(),
        "the input is untouched"
    );
}

#[test]
fn ffmpeg_not_installed_says_how_to_install_it() {
    let s = Scratch::new();
    let before = names_in(s.dir.path());
    let output = std::process::Command::new(bin())
        .args(run_args(&rabbit(), &s.path("out.mp4"), "mosaic", &[]))
        .env("PATH", s.dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(
            "ffmpeg was not found on PATH; install ffmpeg (Debian/Ubuntu: `apt-get install ffmpeg`"
        ),
        "{stderr}"
    );
    assert_eq!(names_in(s.dir.path()), before);
}

#[test]
fn an_unsupported_output_type() {
    let s = Scratch::new();
    assert_refused(
        &run_args(&rabbit(), &s.path("out.gif"), "mosaic", &[]),
        "cannot write .gif files; use .mp4, .mov or .mkv",
        s.dir.path(),
    );
    assert_refused(
        &run_args(&rabbit(), &s.path("%04d.jpg"), "mosaic", &[]),
        "frame sequences are written as lossless PNG",
        s.dir.path(),
    );
}

#[test]
fn a_gpu_requested_where_there_is_no_cuda_driver() {
    let s = Scratch::new();
    let mut args = run_args(
        &rabbit(),
        &s.path("out.mp4"),
        "mosaic",
        &["--device", "cuda"],
    );
    if std::path::Path::new("/dev/nvidiactl").exists() {
        args[7] = "cuda:4096".into();
        assert_refused(&args, "--device cuda:4096: this node has", s.dir.path());
    } else {
        assert_refused(&args, "--device cuda: no CUDA driver (libcuda.so.1) was found; install the NVIDIA driver, or use --device cpu", s.dir.path());
    }
}

#[test]
fn kernels_without_nvrtc_say_how_to_get_it() {
    let s = Scratch::new();
    let output = std::process::Command::new(bin())
        .args(["kernels", "--arch", "sm_90"])
        .env_remove("STYLEMILL_NVRTC_DIR")
        .env("LD_LIBRARY_PATH", s.dir.path())
        .env("STYLEMILL_KERNEL_CACHE", s.dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if std::path::Path::new("/usr/local/cuda").exists() {
        return; // a CUDA toolkit on the library path provides NVRTC here
    }
    assert!(!output.status.success());
    assert!(stderr.contains("NVRTC (libnvrtc.so.13 or libnvrtc.so.12), which compiles stylemill's CUDA kernels, was not found; install the CUDA toolkit or `pip install nvidia-cuda-nvrtc-cu12`"), "{stderr}");
}

#[test]
fn kernels_are_compiled_into_the_cache() {
    let s = Scratch::new();
    let nvrtc = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/cuda-tools/nvidia/cuda_nvrtc/lib");
    let output = std::process::Command::new(bin())
        .args(["kernels", "--arch", "sm_80,sm_90"])
        .env("STYLEMILL_NVRTC_DIR", nvrtc)
        .env("STYLEMILL_KERNEL_CACHE", s.dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let cached = names_in(s.dir.path());
    assert_eq!(
        cached.len(),
        6,
        "three families for two architectures: {cached:?}"
    );
    assert!(cached.iter().any(|n| n.starts_with("conv.cu-sm_90-")));
}

#[test]
fn nvrtc_13_of_the_cuda_13_toolkit_is_found_by_its_name_and_named_in_the_log() {
    let s = Scratch::new();
    let nvrtc_13 = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/cuda-tools-13/nvidia/cu13/lib");
    assert!(
        nvrtc_13.join("libnvrtc.so.13").exists(),
        "NVRTC 13 not found in {}: run scripts/test-tools.sh",
        nvrtc_13.display()
    );
    let output = std::process::Command::new(bin())
        .args(["kernels", "--arch", "sm_90"])
        .env_remove("STYLEMILL_NVRTC_DIR")
        .env("LD_LIBRARY_PATH", &nvrtc_13)
        .env("RUST_LOG", "info")
        .env("STYLEMILL_KERNEL_CACHE", s.dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("NVRTC 13."), "{stderr}");
    assert!(stderr.contains("(libnvrtc.so.13)"), "{stderr}");
    for name in names_in(s.dir.path()) {
        let entry = std::fs::read(s.dir.path().join(&name)).unwrap();
        assert!(entry.starts_with(b"\x7fELF"), "{name} is machine code");
    }
    assert_eq!(names_in(s.dir.path()).len(), 3);
}

/// Starts a run of `input` (inside `dir`), waits for an ffmpeg child whose command line holds
/// `stage`, calls `stop`, and checks what a stopped run leaves: exit status 130 with its note,
/// nothing new in `dir`, and no ffmpeg still working on its files.
fn assert_stopped_cleanly(
    dir: &Path,
    input: &Path,
    stage: &str,
    stop: impl FnOnce(&std::process::Child),
) {
    use std::os::unix::process::CommandExt;
    let before = names_in(dir);
    let child = std::process::Command::new(bin())
        .args(run_args(input, &dir.join("out.mp4"), "mosaic", &[]))
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let files = dir.display().to_string();
    let started = std::time::Instant::now();
    while !processes_mentioning(&files)
        .iter()
        .any(|command| command.contains(stage))
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no ffmpeg with `{stage}` started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    stop(&child);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted before the output was complete"),
        "{stderr}"
    );
    assert_eq!(names_in(dir), before);
    assert_eq!(
        lingering_processes(&files),
        Vec::<String>::new(),
        "ffmpeg children end with stylemill"
    );
}

#[test]
fn ctrl_c_while_encoding_leaves_no_output_and_no_ffmpeg_running() {
    let s = Scratch::new();
    let input = s.path("in.mp4");
    std::fs::copy(media("rabbit320_h264_aac.mp4"), &input).unwrap();
    assert_stopped_cleanly(s.dir.path(), &input, "pipe:0", interrupt_group);
}

#[test]
fn sigterm_to_stylemill_alone_also_stops_the_decoder_it_started() {
    // As a scheduler or mpirun signals the rank process only: the decoder, in a process group
    // of its own, is stopped by stylemill itself. The clip repeats one second of black 4K
    // (cheap to make by stream copy, slow to decode and stylize).
    let s = Scratch::new();
    let second = s.path("second.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=black:size=3840x2160:rate=30",
        "-t",
        "1",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        second.to_str().unwrap(),
    ]);
    let list = s.path("list.txt");
    std::fs::write(&list, "file 'second.mp4'\n".repeat(60)).unwrap();
    let input = s.path("in.mp4");
    ffmpeg(&[
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
        list.to_str().unwrap(),
        "-c",
        "copy",
        input.to_str().unwrap(),
    ]);
    assert_stopped_cleanly(s.dir.path(), &input, "showinfo", |child| {
        assert!(signal(child.id(), "TERM"))
    });
}
