//! GPU benchmark: writes `benches/results/gpu.json` (or `$STYLEMILL_BENCH_RESULTS/gpu.json`). Run
//! on a GPU machine with PyTorch with `cargo bench --bench gpu` (NVRTC from the CUDA toolkit or
//! STYLEMILL_NVRTC_DIR), or from the bundle with scripts/gpu-check.sh.
//!
//! Seconds per frame at 720x720 and 1920x1080, batch 1 and batched, fp32 and fast, end to end
//! through the engine (upload, network, 8-bit conversion, download), against PyTorch on the same
//! GPU in the same run: fp32 with TF32 off, PyTorch's default, and its best (fp16,
//! channels_last, cudnn.benchmark). Achieved TFLOP/s count 2 FLOPs per multiply-add of the
//! network against the matrix peak PyTorch measures on the same GPU. Also the GPU time of each
//! kernel (CUDA events) per frame at batch 8, and a `summary` of the headline figures.

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;
use stylemill::engine::cuda::CudaEngine;
use stylemill::engine::{Engine, Precision};
use stylemill::frame::{Frame, FrameSize};
use stylemill::model::styles::load_style;

const SIZES: [(usize, usize); 2] = [(720, 720), (1920, 1080)];
const BATCHED: usize = 8;
const RUNS: usize = 10;

/// The project tree: where it was built, or `STYLEMILL_PROJECT_DIR` (a copy elsewhere, as on
/// the GPU machine that runs the bundle).
fn root() -> PathBuf {
    std::env::var_os("STYLEMILL_PROJECT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The GPU's name as nvidia-smi gives it.
fn gpu_name() -> Value {
    Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader", "--id=0"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| json!(String::from_utf8_lossy(&out.stdout).trim()))
        .unwrap_or(Value::Null)
}

/// Per-kernel GPU milliseconds per frame over `RUNS` batches of `BATCHED` frames of `size`.
fn kernel_table(engine: &mut CudaEngine, size: FrameSize) -> Value {
    let frames = frames(size, BATCHED);
    engine.time_kernels();
    for _ in 0..RUNS {
        engine.stylize_batch(&frames).expect("stylize");
    }
    let rows = engine.kernel_times().expect("kernel times");
    let frames = (RUNS * BATCHED) as f64;
    let total: f64 = rows.iter().map(|row| row.milliseconds).sum();
    json!({
        "ms_per_frame_total": total / frames,
        "kernels": rows.iter().map(|row| json!({
            "kernel": row.kernel,
            "launches_per_frame": row.launches as f64 / frames,
            "ms_per_frame": row.milliseconds / frames,
            "share": row.milliseconds / total,
        })).collect::<Vec<_>>(),
    })
}

/// `batch` copies of a patterned frame of `size`.
fn frames(size: FrameSize, batch: usize) -> Vec<Frame> {
    let data: Vec<u8> = (0..size.rgb_bytes()).map(|i| (i * 7 % 251) as u8).collect();
    vec![Frame::new(size, data); batch]
}

fn seconds_per_frame(engine: &mut CudaEngine, size: FrameSize, batch: usize) -> f64 {
    let frames = frames(size, batch);
    engine.stylize_batch(&frames).expect("warm-up");
    let start = Instant::now();
    for _ in 0..RUNS {
        engine.stylize_batch(&frames).expect("stylize");
    }
    start.elapsed().as_secs_f64() / (RUNS * batch) as f64
}

fn main() {
    if let Err(reason) = stylemill::engine::select::gpu_count() {
        eprintln!("the GPU benchmark needs a CUDA GPU: {reason}");
        std::process::exit(1);
    }
    let net = load_style("mosaic").expect("shipped style");
    let mut ours = serde_json::Map::new();
    let mut kernels = serde_json::Map::new();
    for precision in [Precision::Fp32, Precision::Fast] {
        for batch in [1, BATCHED] {
            let mut engine = match CudaEngine::new(&net, 0, precision, batch) {
                Ok(engine) => engine,
                Err(error) => {
                    eprintln!("the GPU benchmark needs a CUDA GPU: {error}");
                    std::process::exit(1);
                }
            };
            for (width, height) in SIZES {
                let size = FrameSize { width, height };
                let seconds = seconds_per_frame(&mut engine, size, batch);
                let macs = net.multiply_adds(height, width) as f64;
                ours.insert(
                    format!("{precision:?} batch {batch} {width}x{height}"),
                    json!({ "seconds_per_frame": seconds, "tflops": 2.0 * macs / seconds / 1e12, "engine": engine.describe() }),
                );
            }
            if batch == BATCHED {
                for (width, height) in SIZES {
                    kernels.insert(
                        format!("{precision:?} batch {batch} {width}x{height}"),
                        kernel_table(&mut engine, FrameSize { width, height }),
                    );
                }
            }
        }
    }
    let sizes: Vec<String> = SIZES.iter().map(|(w, h)| format!("{w}x{h}")).collect();
    let pytorch = |batch: usize| -> Value {
        let output = Command::new("python3")
            .arg(root().join("benches/pytorch_baseline.py"))
            .arg(root().join("models/mosaic.safetensors"))
            .arg(batch.to_string())
            .args(&sizes)
            .output();
        match output {
            Ok(out) if out.status.success() => {
                serde_json::from_slice(&out.stdout).expect("baseline JSON")
            }
            Ok(out) => json!({ "unavailable": String::from_utf8_lossy(&out.stderr).to_string() }),
            Err(error) => json!({ "unavailable": error.to_string() }),
        }
    };
    let batched = pytorch(BATCHED);
    let summary: serde_json::Map<String, Value> = sizes
        .iter()
        .map(|size| {
            let ms = |key: String| ours[&key]["seconds_per_frame"].as_f64().map(|s| s * 1e3);
            let torch = &batched["sizes"][size];
            let torch_ms = |key: &str| torch[key].as_f64().map(|s| s * 1e3);
            let best = ["best_fp16_channels_last", "bf16_channels_last", "fp16_nchw"]
                .iter()
                .filter_map(|key| torch_ms(key))
                .reduce(f64::min);
            // The GPU's time alone (the kernels' sum), to set beside PyTorch's, whose input and
            // output stay on the GPU: the engine's own figures include the frames' trip from
            // and to the host and their 8-bit conversion.
            let kernels_ms = |precision: &str| {
                kernels[&format!("{precision} batch {BATCHED} {size}")]["ms_per_frame_total"]
                    .as_f64()
            };
            (
                size.clone(),
                json!({
                    "fast_ms": ms(format!("Fast batch {BATCHED} {size}")),
                    "fp32_ms": ms(format!("Fp32 batch {BATCHED} {size}")),
                    "fast_kernels_ms": kernels_ms("Fast"),
                    "fp32_kernels_ms": kernels_ms("Fp32"),
                    "pytorch_fp32_ms": torch_ms("fp32_tf32_off"),
                    "pytorch_default_ms": torch_ms("default_fp32"),
                    "pytorch_best_ms": best,
                }),
            )
        })
        .collect();
    let report = json!({
        "gpu": gpu_name(),
        "summary": summary,
        "bf16_peak_tflops": batched["matrix_peak_tflops"]["bf16"],
        "stylemill": ours,
        "kernels": kernels,
        "pytorch_batch_1": pytorch(1),
        format!("pytorch_batch_{BATCHED}"): batched,
        "multiply_adds_per_frame": SIZES.iter().map(|(w, h)| (format!("{w}x{h}"), json!(net.multiply_adds(*h, *w)))).collect::<serde_json::Map<_, _>>(),
    });
    let text = serde_json::to_string_pretty(&report).expect("JSON");
    let path = std::env::var_os("STYLEMILL_BENCH_RESULTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("benches/results"))
        .join("gpu.json");
    std::fs::write(&path, &text).expect("write results");
    println!("{text}\nwritten to {}", path.display());
}
