//! GPU benchmark: writes `benches/results/gpu.json`. Run on a GPU machine with PyTorch with
//! `cargo bench --bench gpu` (NVRTC from the CUDA toolkit or STYLEMILL_NVRTC_DIR).
//!
//! Seconds per frame at 720x720 and 1920x1080, batch 1 and batched, fp32 and fast, end to end
//! through the engine (upload, network, 8-bit conversion, download), against PyTorch on the same
//! GPU in the same run: fp32 with TF32 off, PyTorch's default, and its best (fp16,
//! channels_last, cudnn.benchmark). Achieved TFLOP/s count 2 FLOPs per multiply-add of the
//! network against the matrix peak PyTorch measures on the same GPU.

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

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn seconds_per_frame(engine: &mut CudaEngine, size: FrameSize, batch: usize) -> f64 {
    let data: Vec<u8> = (0..size.rgb_bytes()).map(|i| (i * 7 % 251) as u8).collect();
    let frames = vec![Frame::new(size, data); batch];
    engine.stylize_batch(&frames).expect("warm-up");
    let start = Instant::now();
    for _ in 0..RUNS {
        engine.stylize_batch(&frames).expect("stylize");
    }
    start.elapsed().as_secs_f64() / (RUNS * batch) as f64
}

fn main() {
    let net = load_style("mosaic").expect("shipped style");
    let mut ours = serde_json::Map::new();
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
    let report = json!({
        "stylemill": ours,
        "pytorch_batch_1": pytorch(1),
        format!("pytorch_batch_{BATCHED}"): pytorch(BATCHED),
        "multiply_adds_per_frame": SIZES.iter().map(|(w, h)| (format!("{w}x{h}"), json!(net.multiply_adds(*h, *w)))).collect::<serde_json::Map<_, _>>(),
    });
    let text = serde_json::to_string_pretty(&report).expect("JSON");
    let path = root().join("benches/results/gpu.json");
    std::fs::write(&path, &text).expect("write results");
    println!("{text}\nwritten to {}", path.display());
}
