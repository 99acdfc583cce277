//! CPU benchmark: writes `benches/results/cpu.json`. Run with `cargo bench --bench cpu`.
//!
//! - engine seconds per frame at 320x240 and 640x480 (threads = cores), against onnxruntime on
//!   the same machine in the same run (`pip install onnxruntime numpy`);
//! - end-to-end frames per second on samples/rabbit320.mp4, plain and under `mpirun -np 2`;
//! - peak resident memory of the stylemill process for a 10 s and a 60 s synthetic clip, which
//!   must not grow with the clip's length.
//!
//! Figures on shared machines are noisy: compare the ratios, not the seconds.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use stylemill::engine::cpu::CpuEngine;
use stylemill::engine::Engine;
use stylemill::frame::{Frame, FrameSize};
use stylemill::model::styles::load_style;

const SIZES: [(usize, usize); 2] = [(320, 240), (640, 480)];
const REPEATS: usize = 5;
const ROUNDS: usize = 3;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Median seconds per frame of the engine, by size.
fn engine_seconds_per_frame(engine: &mut CpuEngine) -> Value {
    let mut results = serde_json::Map::new();
    for (width, height) in SIZES {
        let size = FrameSize { width, height };
        let data = (0..size.rgb_bytes()).map(|i| (i * 7 % 251) as u8).collect();
        let frame = Frame::new(size, data);
        engine.forward(&frame).expect("warm-up");
        let times = (0..REPEATS)
            .map(|_| {
                let start = Instant::now();
                engine.forward(&frame).expect("forward");
                start.elapsed().as_secs_f64()
            })
            .collect();
        results.insert(format!("{width}x{height}"), json!(median(times)));
    }
    Value::Object(results)
}

/// Rounds of (stylemill, onnxruntime) measurements, interleaved so that both see the same
/// machine load; the ratio is the median of the rounds' ratios.
fn engine_against_onnxruntime(cores: usize) -> Value {
    let net = load_style("mosaic").expect("shipped style");
    let mut engine = CpuEngine::new(&net, None);
    let rounds: Vec<(Value, Value)> = (0..ROUNDS)
        .map(|_| {
            (
                engine_seconds_per_frame(&mut engine),
                onnxruntime_seconds_per_frame(cores),
            )
        })
        .collect();
    let mut summary = serde_json::Map::new();
    for (width, height) in SIZES {
        let size = format!("{width}x{height}");
        let ours: Vec<f64> = rounds
            .iter()
            .filter_map(|(o, _)| o[&size].as_f64())
            .collect();
        let theirs: Vec<f64> = rounds
            .iter()
            .filter_map(|(_, t)| t[&size].as_f64())
            .collect();
        let ratios: Vec<f64> = ours.iter().zip(&theirs).map(|(o, t)| o / t).collect();
        summary.insert(
            size,
            json!({
                "stylemill_seconds_per_frame": median(ours),
                "onnxruntime_seconds_per_frame": if theirs.is_empty() { Value::Null } else { json!(median(theirs)) },
                "stylemill_over_onnxruntime": if ratios.is_empty() { Value::Null } else { json!(median(ratios)) },
            }),
        );
    }
    let baseline_error = rounds
        .iter()
        .find_map(|(_, t)| t.get("unavailable").cloned());
    json!({
        "engine": engine.describe(),
        "rounds": ROUNDS,
        "repeats_per_round": REPEATS,
        "sizes": summary,
        "onnxruntime_unavailable": baseline_error,
    })
}

fn onnxruntime_seconds_per_frame(threads: usize) -> Value {
    let script = root().join("benches/onnxruntime_baseline.py");
    let sizes: Vec<String> = SIZES.iter().map(|(w, h)| format!("{w}x{h}")).collect();
    let output = Command::new("python3")
        .arg(script)
        .arg(root().join("benches/mosaic.onnx"))
        .arg(threads.to_string())
        .args(&sizes)
        .output();
    match output {
        Ok(out) if out.status.success() => {
            serde_json::from_slice(&out.stdout).expect("baseline JSON")
        }
        Ok(out) => {
            json!({ "unavailable": String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("").to_string() })
        }
        Err(error) => json!({ "unavailable": error.to_string() }),
    }
}

/// Runs a command, sampling the peak resident memory (VmHWM) of the process it starts.
fn run_measured(command: &mut Command) -> (Duration, u64) {
    let start = Instant::now();
    let mut child = command.spawn().expect("starts");
    let mut peak_kib = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            let hwm = status.lines().find_map(|l| l.strip_prefix("VmHWM:"));
            if let Some(kib) = hwm.and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            {
                peak_kib = kib;
            }
        }
        if let Some(status) = child.try_wait().expect("waits") {
            assert!(status.success(), "{command:?} failed");
            return (start.elapsed(), peak_kib);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stylemill(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stylemill"));
    command.args(args).env("RUST_LOG", "warn");
    command
}

fn end_to_end(scratch: &Path) -> Value {
    let sample = root().join("samples/rabbit320.mp4");
    let output = scratch.join("rabbit.mp4");
    let args = [
        "run",
        sample.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--style",
        "mosaic",
    ];
    let frames = 234.0;
    let (plain, _) = run_measured(&mut stylemill(&args));
    let mut mpirun = Command::new("mpirun");
    mpirun
        .args([
            "--oversubscribe",
            "--bind-to",
            "none",
            "-np",
            "2",
            env!("CARGO_BIN_EXE_stylemill"),
        ])
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("RUST_LOG", "warn");
    let (np2, _) = run_measured(&mut mpirun);
    json!({
        "input": "samples/rabbit320.mp4 (234 frames, 320x240)",
        "np1_frames_per_second": frames / plain.as_secs_f64(),
        "np2_frames_per_second": frames / np2.as_secs_f64(),
        "np2": "mpirun -np 2 --bind-to none (each rank decodes and encodes its own chunks)",
    })
}

fn peak_memory(scratch: &Path) -> Value {
    let mut results = serde_json::Map::new();
    for seconds in [10, 60] {
        let clip = scratch.join(format!("synthetic_{seconds}s.mp4"));
        let status = Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=30",
                "-f",
                "lavfi",
                "-i",
                "sine",
            ])
            .args(["-t", &seconds.to_string(), "-c:v", "libx264", "-c:a", "aac"])
            .arg(&clip)
            .status()
            .expect("ffmpeg");
        assert!(status.success());
        let output = scratch.join("out.mp4");
        let args = [
            "run",
            clip.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
            "--style",
            "candy",
            "--scale",
            "2",
        ];
        let (elapsed, peak_kib) = run_measured(&mut stylemill(&args));
        results.insert(
            format!("{seconds}s"),
            json!({ "frames": seconds * 30, "peak_rss_mib": peak_kib as f64 / 1024.0, "seconds": elapsed.as_secs_f64() }),
        );
    }
    json!({ "clip": "testsrc2 320x240 30 fps with audio, --scale 2 (160x120 frames)", "runs": results })
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let scratch = tempfile::tempdir().expect("scratch directory");
    let report = json!({
        "cores": cores,
        "cpu_engine": engine_against_onnxruntime(cores),
        "end_to_end": end_to_end(scratch.path()),
        "peak_memory": peak_memory(scratch.path()),
    });
    let text = serde_json::to_string_pretty(&report).expect("JSON");
    let path = root().join("benches/results/cpu.json");
    std::fs::create_dir_all(path.parent().unwrap()).expect("results directory");
    std::fs::write(&path, &text).expect("write results");
    println!("{text}\nwritten to {}", path.display());
}
