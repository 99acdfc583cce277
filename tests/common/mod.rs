//! Helpers shared by the integration tests: where the fixtures are, and image loading.
#![allow(dead_code)]

pub mod azurite;
pub mod kernel_checks;

use std::path::PathBuf;
use stylemill::frame::{Frame, FrameSize};

/// The test fixtures: golden vectors, media and checkpoints (`STYLEMILL_FIXTURES` overrides).
pub fn fixtures() -> PathBuf {
    std::env::var_os("STYLEMILL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"))
}

pub fn read_png(path: &std::path::Path) -> Frame {
    let image = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    let size = FrameSize {
        width: image.width() as usize,
        height: image.height() as usize,
    };
    Frame::new(size, image.into_raw())
}

pub fn read_f32(path: &std::path::Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The stylemill binary under test: cargo's, or `STYLEMILL_BIN` (the GPU bundle's, which
/// scripts/gpu-check.sh runs these tests with on a machine without Rust).
pub fn bin() -> PathBuf {
    std::env::var_os("STYLEMILL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_stylemill")))
}

pub fn media(name: &str) -> PathBuf {
    fixtures().join("media").join(name)
}

/// `run INPUT -o OUTPUT --style STYLE EXTRA...`
pub fn run_args(
    input: &std::path::Path,
    output: &std::path::Path,
    style: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut args = vec![
        "run".to_string(),
        input.display().to_string(),
        "-o".into(),
        output.display().to_string(),
        "--style".into(),
        style.into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Runs stylemill with `args`; returns (success, stdout, stderr).
pub fn stylemill<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (bool, String, String) {
    let output = std::process::Command::new(bin())
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("stylemill runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The MPI family the tests launch with: OpenMPI's `mpirun`, or MPICH's `mpiexec.mpich` when
/// `STYLEMILL_TEST_MPI=mpich` (scripts/test-mpich.sh, with stylemill built against MPICH).
pub fn mpich() -> bool {
    std::env::var("STYLEMILL_TEST_MPI").is_ok_and(|v| v == "mpich")
}

/// The launcher of this MPI family running `groups` (ranks, program and arguments; several
/// groups are one MPMD job) on this machine: as root too, oversubscribed, ranks not bound.
pub fn launch(groups: &[(usize, Vec<std::ffi::OsString>)]) -> std::process::Command {
    let (program, options, ranks_flag): (&str, &[&str], &str) = if mpich() {
        ("mpiexec.mpich", &[], "-n")
    } else {
        ("mpirun", &["--oversubscribe", "--bind-to", "none"], "-np")
    };
    let mut command = std::process::Command::new(program);
    command.args(options);
    for (i, (ranks, program_and_args)) in groups.iter().enumerate() {
        if i > 0 {
            command.arg(":");
        }
        command
            .args([ranks_flag, &ranks.to_string()])
            .args(program_and_args);
    }
    command
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    command
}

/// `mpirun -np N stylemill args` on this machine (see [`launch`]).
pub fn mpirun_command<S: AsRef<std::ffi::OsStr>>(
    ranks: usize,
    args: &[S],
) -> std::process::Command {
    launch(&[(ranks, stylemill_with(args))])
}

/// The stylemill binary followed by `args`, as a launcher's program and arguments.
pub fn stylemill_with<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Vec<std::ffi::OsString> {
    std::iter::once(bin().into_os_string())
        .chain(args.iter().map(|a| a.as_ref().to_os_string()))
        .collect()
}

/// Runs `mpirun -np N stylemill args` to completion.
pub fn mpirun<S: AsRef<std::ffi::OsStr>>(ranks: usize, args: &[S]) -> std::process::Output {
    mpirun_command(ranks, args)
        .output()
        .expect("mpirun runs (apt-get install openmpi-bin)")
}

/// Runs `args`, which write `output`, under `mpirun -np ranks`; asserts they succeed and write
/// `expected`.
pub fn assert_mpirun_writes(
    ranks: usize,
    args: &[String],
    output: &std::path::Path,
    expected: &[u8],
) {
    let run = mpirun(ranks, args);
    assert!(
        run.status.success(),
        "np {ranks} {args:?}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        std::fs::read(output).unwrap() == expected,
        "np {ranks} {args:?} differs from the plain run"
    );
}

/// The golden vectors' manifest (fixtures/golden/manifest.json).
#[derive(serde::Deserialize)]
pub struct Manifest {
    pub cases: Vec<GoldenCase>,
}

#[derive(serde::Deserialize)]
pub struct GoldenCase {
    pub input: String,
    pub style: String,
    pub output_f32: String,
    pub output_png: String,
}

pub fn golden_manifest() -> Manifest {
    let text = std::fs::read_to_string(fixtures().join("golden/manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// `ffmpeg` or `ffprobe` as the tests' own tool for making and checking clips: the machine's,
/// from the directory STYLEMILL_TEST_TOOLS_DIR where scripts/test-ffmpeg-builds.sh puts another
/// ffmpeg first on PATH for stylemill alone.
pub fn tool(name: &str) -> std::process::Command {
    let program = std::env::var_os("STYLEMILL_TEST_TOOLS_DIR")
        .map_or_else(|| PathBuf::from(name), |dir| PathBuf::from(dir).join(name));
    std::process::Command::new(program)
}

/// Runs ffmpeg quietly and asserts success (for making test clips).
pub fn ffmpeg(args: &[&str]) {
    let status = tool("ffmpeg")
        .args(["-v", "error", "-y", "-nostdin"])
        .args(args)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg {args:?}");
}

/// The first `frames` frames of the sample clip at 160x120 with its audio, keyframes every 12
/// frames (B-frames, closed GOPs), as encoders make them for editing: ranks seek to the
/// keyframe before their range.
pub fn small_gop_clip(dir: &std::path::Path, frames: usize) -> PathBuf {
    let clip = dir.join(format!("gop12-{frames}.mp4"));
    ffmpeg(&[
        "-i",
        media("rabbit320_h264_aac.mp4").to_str().unwrap(),
        "-frames:v",
        &frames.to_string(),
        "-vf",
        "scale=160:120",
        "-c:v",
        "libx264",
        "-g",
        "12",
        "-bf",
        "3",
        "-c:a",
        "copy",
        clip.to_str().unwrap(),
    ]);
    clip
}

/// Writes `clip` to `damaged` with the picture data of its `nth` keyframe (from 0) overwritten,
/// leaving the packet sizes and slice headers intact: demuxing it succeeds, decoding fails.
pub fn damage_keyframe(clip: &std::path::Path, nth: usize, damaged: &std::path::Path) {
    let listing = tool("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["packet=pos,size,flags", "-of", "csv=p=0"])
        .arg(clip)
        .output()
        .unwrap();
    let keyframe: Vec<usize> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter(|line| line.contains('K'))
        .nth(nth)
        .expect("enough keyframes")
        .split(',')
        .take(2)
        .map(|field| field.parse().unwrap())
        .collect();
    let (size, position) = (keyframe[0], keyframe[1]);
    let mut bytes = std::fs::read(clip).unwrap();
    bytes[position + 64..position + size - 16].fill(0x55);
    std::fs::write(damaged, bytes).unwrap();
}

/// Writes `clip`, an MP4 whose first track is its video, to `turned` with the display matrix
/// `matrix` (row by row, 16.16 fixed point but the last column 2.30) in that track's header, as
/// phones record video held upright or mirrored.
pub fn with_display_matrix(clip: &std::path::Path, matrix: [i32; 9], turned: &std::path::Path) {
    let mut bytes = std::fs::read(clip).unwrap();
    let header = bytes
        .windows(4)
        .position(|window| window == b"tkhd")
        .expect("a track header");
    assert_eq!(bytes[header + 4], 0, "a version 0 track header");
    let at = header + 44;
    for (i, value) in matrix.iter().enumerate() {
        bytes[at + 4 * i..at + 4 * i + 4].copy_from_slice(&value.to_be_bytes());
    }
    std::fs::write(turned, bytes).unwrap();
}

/// A stream as ffprobe reports it, frames counted by decoding.
#[derive(serde::Deserialize, Debug)]
pub struct Stream {
    pub codec_type: String,
    pub codec_name: String,
    pub width: Option<usize>,
    pub height: Option<usize>,
    pub pix_fmt: Option<String>,
    pub sample_aspect_ratio: Option<String>,
    pub display_aspect_ratio: Option<String>,
    pub field_order: Option<String>,
    pub color_space: Option<String>,
    pub color_primaries: Option<String>,
    pub color_transfer: Option<String>,
    pub color_range: Option<String>,
    #[serde(default)]
    pub side_data_list: Vec<serde_json::Value>,
    pub r_frame_rate: String,
    pub duration: Option<String>,
    pub nb_read_frames: Option<String>,
}

impl Stream {
    pub fn frames(&self) -> usize {
        self.nb_read_frames.as_deref().unwrap().parse().unwrap()
    }
    pub fn seconds(&self) -> f64 {
        self.duration.as_deref().unwrap().parse().unwrap()
    }
}

pub fn probe(path: &std::path::Path) -> Vec<Stream> {
    #[derive(serde::Deserialize)]
    struct Probe {
        streams: Vec<Stream>,
    }
    let output = tool("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-print_format",
            "json",
            "-show_streams",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(output.status.success(), "ffprobe {}", path.display());
    serde_json::from_slice::<Probe>(&output.stdout)
        .unwrap()
        .streams
}

pub fn video_stream(streams: &[Stream]) -> &Stream {
    streams
        .iter()
        .find(|s| s.codec_type == "video")
        .expect("a video stream")
}

/// Decodes every frame of the first video stream as RGB8, resized to `size` with the filter
/// stylemill uses for --scale.
pub fn decode(path: &std::path::Path, size: FrameSize, scale: bool) -> Vec<Frame> {
    let mut command = tool("ffmpeg");
    command.args(["-v", "error", "-nostdin", "-i"]).arg(path);
    command.args(["-map", "0:v:0", "-fps_mode", "passthrough"]);
    if scale {
        command.args([
            "-vf",
            &format!("scale={}:{}:flags=lanczos", size.width, size.height),
        ]);
    }
    let output = command
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(output.status.success());
    output
        .stdout
        .chunks_exact(size.rgb_bytes())
        .map(|c| Frame::new(size, c.to_vec()))
        .collect()
}

/// Peak signal-to-noise ratio of two 8-bit images, in dB.
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-12)).log10()
}

/// The names in a directory, sorted (hidden staging directories included).
pub fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Sends the signal `name` (such as `TERM`) to the process `pid`; whether it was delivered.
pub fn signal(pid: u32, name: &str) -> bool {
    kill(&[&format!("-{name}"), &pid.to_string()])
}

/// SIGINT to the child's whole process group, as Ctrl-C in a terminal sends it (the child must
/// have been started with `process_group(0)`).
pub fn interrupt_group(child: &std::process::Child) {
    assert!(kill(&["-INT", "--", &format!("-{}", child.id())]));
}

fn kill(args: &[&str]) -> bool {
    std::process::Command::new("kill")
        .args(args)
        .status()
        .unwrap()
        .success()
}

/// Command lines of the running processes that mention `text`.
pub fn processes_mentioning(text: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(text))
        .collect()
}

/// Waits up to 2 s for every process mentioning `text` to end; returns those still running.
pub fn lingering_processes(text: &str) -> Vec<String> {
    let started = std::time::Instant::now();
    loop {
        let running = processes_mentioning(text);
        if running.is_empty() || started.elapsed() > std::time::Duration::from_secs(2) {
            return running;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Writes tensors as an F32 safetensors file.
pub fn write_safetensors(
    tensors: &std::collections::BTreeMap<String, stylemill::model::Tensor>,
    path: &std::path::Path,
) {
    let raw: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                t.shape.clone(),
            )
        })
        .collect();
    let views = raw.iter().map(|(k, data, shape)| {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .unwrap();
        (k.clone(), view)
    });
    safetensors::serialize_to_file(views, &None, path).unwrap();
}

/// The tensors of a shipped style.
pub fn shipped_tensors(
    style: &str,
) -> std::collections::BTreeMap<String, stylemill::model::Tensor> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("models/{style}.safetensors"));
    stylemill::model::safetensors_file::read(&std::fs::read(path).unwrap(), style).unwrap()
}

/// The pid of the stylemill process that mpirun started as `rank` for the job writing `output`
/// (tests run in parallel: the output path tells their jobs apart), waiting for it to appear.
pub fn pid_of_rank(rank: usize, output: &std::path::Path) -> u32 {
    let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
    let started = std::time::Instant::now();
    loop {
        let found = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
                let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(
                    &std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default(),
                )
                .into_owned();
                exe == bin()
                    && cmdline.contains(output.to_str().unwrap())
                    && environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes())
            });
        if let Some(pid) = found {
            return pid;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "rank {rank} never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Max abs difference <= 0.01 and at least 99.9% of 8-bit pixels equal, as golden/README says.
pub fn assert_matches_golden(engine: &mut dyn stylemill::engine::Engine, case: &GoldenCase) {
    let dir = fixtures().join("golden");
    let frame = read_png(&dir.join(&case.input));
    let output = engine.forward(&frame).unwrap();
    let expected = read_f32(&dir.join(&case.output_f32));
    assert_eq!(output.len(), expected.len(), "{}", case.output_f32);
    let max_diff = output
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        max_diff <= 0.01,
        "{} with {}: max abs difference {max_diff}",
        case.input,
        case.style
    );
    let expected_png = read_png(&dir.join(&case.output_png));
    let ours = stylemill::engine::quantize(&output);
    let equal = ours
        .iter()
        .zip(&expected_png.data)
        .filter(|(a, b)| a == b)
        .count();
    let fraction = equal as f64 / ours.len() as f64;
    assert!(
        fraction >= 0.999,
        "{}: only {fraction} of 8-bit values equal",
        case.output_png
    );
}

/// Deterministic pseudo-random values in -range..range.
pub fn noise(count: usize, seed: u64, range: f32) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * range
        })
        .collect()
}

/// The largest difference of `a` from `b`, relative to the largest magnitude in `b`.
pub fn max_relative_difference(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// How many frames before a damaged one a decoder error may be blamed on: ffmpeg 7 and later
/// decode in a thread of their own, ahead of the frames they hand out (showinfo's reports of
/// earlier frames can follow the error), so the frame named is near the damage, not exact.
pub const DECODE_AHEAD: usize = 16;

/// Whether `message` says decoding failed near a frame at most [`DECODE_AHEAD`] frames before
/// `damaged` (or a few after it, B-frames being shown out of order).
pub fn blames_near(message: &str, damaged: usize) -> bool {
    message
        .split("decoding failed near frame ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse::<usize>().ok())
        .is_some_and(|frame| (damaged.saturating_sub(DECODE_AHEAD)..damaged + 4).contains(&frame))
}
