//! Scaling benchmark: writes `benches/results/scaling.json`. Run with `cargo bench --bench
//! scaling`.
//!
//! Measures, at 1920x1080 on this machine, what one frame costs each stage of the pipeline
//! (decoding H.264 to RGB with the ranks' decoder, stylizing on the CPU engine, encoding with
//! the chunk encoder, joining chunks by stream copy) and how many bytes a frame is raw and
//! encoded. From these it models the throughput of the old design (rank 0 decodes every rank's
//! range from frame 0, moves raw frames both ways and encodes everything) and of the current
//! one (each rank decodes from the keyframe before its range, stylizes and encodes its chunks;
//! rank 0 receives encoded chunks and joins them) for 1 to 512 ranks, each rank having the
//! resources of this machine, and names the bottleneck. The table it prints is README's
//! "Scaling" section.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use stylemill::engine::cpu::CpuEngine;
use stylemill::engine::Engine;
use stylemill::frame::Frame;
use stylemill::media::decode::Decoder;
use stylemill::media::encode::{assemble, ChunkEncoder};
use stylemill::media::output::OutputSpec;
use stylemill::media::probe::probe;
use stylemill::model::styles::load_style;

/// Frames of the measured clip, and frames per encoded chunk (the default --chunk-frames).
const FRAMES: usize = 96;
const CHUNK: usize = 32;
/// The modelled job: a 10-minute video at 30 frames/s, keyframes every 250 frames (x264's
/// default), a 100 Gb/s link at rank 0, and a GPU engine at its target of 500 frames/s.
const JOB_FRAMES: f64 = 18_000.0;
const GOP: f64 = 250.0;
const LINK_BYTES_PER_SECOND: f64 = 12.5e9;
const GPU_SECONDS_PER_FRAME: f64 = 1.0 / 500.0;
const RANKS: [usize; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A 1080p clip of real footage: the bundled 960x540 flower clip, upscaled, as a camera
/// would deliver it (H.264, crf 18).
fn make_clip(dir: &Path) -> PathBuf {
    let clip = dir.join("flower1080.mp4");
    let source = root().join("tests/fixtures/media/flower_960x540_h264_noaudio.mp4");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-nostdin", "-stream_loop", "-1", "-i"])
        .arg(&source)
        .args([
            "-frames:v",
            &FRAMES.to_string(),
            "-vf",
            "scale=1920:1080:flags=lanczos",
        ])
        .args([
            "-c:v", "libx264", "-preset", "medium", "-crf", "18", "-g", "250",
        ])
        .arg(&clip)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "making the 1080p clip");
    clip
}

struct Costs {
    decode_s: f64,
    stylize_s: f64,
    encode_s: f64,
    join_s: f64,
    raw_bytes: f64,
    encoded_bytes: f64,
}

fn measure(dir: &Path) -> Costs {
    let clip = make_clip(dir);
    let info = probe(&clip, "flower1080.mp4").expect("probe");
    let size = info.size;
    let started = Instant::now();
    let mut decoder = Decoder::open(&info, &clip, 0..FRAMES, size).expect("decoder");
    let frames: Vec<Frame> = (0..FRAMES)
        .map(|_| decoder.next_frame().expect("decodes").expect("a frame"))
        .collect();
    let decode_s = started.elapsed().as_secs_f64() / FRAMES as f64;

    let mut output = OutputSpec::parse(&dir.join("out.mp4"), 18, None).expect("output");
    output.fit_to_size(size.width, size.height).expect("size");
    let chunks_dir = dir.join("chunks");
    std::fs::create_dir_all(&chunks_dir).unwrap();
    let started = Instant::now();
    for (index, chunk) in frames.chunks(CHUNK).enumerate() {
        let mut encoder = ChunkEncoder::start(
            &output,
            &info,
            size,
            index,
            index * CHUNK..index * CHUNK + chunk.len(),
            &chunks_dir,
        )
        .expect("encoder");
        chunk
            .iter()
            .for_each(|f| encoder.write(f).expect("encodes"));
        encoder.finish().expect("chunk");
    }
    let encode_s = started.elapsed().as_secs_f64() / FRAMES as f64;
    let encoded: u64 = std::fs::read_dir(&chunks_dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();

    let started = Instant::now();
    let joined = dir.join("joined.mp4");
    let chunks: Vec<_> = (0..FRAMES)
        .step_by(CHUNK)
        .map(|start| start..(start + CHUNK).min(FRAMES))
        .collect();
    assemble(&output, &info, &chunks, &chunks_dir, dir, &joined).expect("joins");
    let join_s = started.elapsed().as_secs_f64() / FRAMES as f64;

    let net = load_style("mosaic").expect("shipped style");
    let mut engine = CpuEngine::new(&net, None);
    let times: Vec<f64> = frames[..2]
        .iter()
        .map(|frame| {
            let started = Instant::now();
            engine.stylize(frame).expect("stylizes");
            started.elapsed().as_secs_f64()
        })
        .collect();
    let stylize_s = times.iter().cloned().fold(f64::INFINITY, f64::min);
    Costs {
        decode_s,
        stylize_s,
        encode_s,
        join_s,
        raw_bytes: size.rgb_bytes() as f64,
        encoded_bytes: encoded as f64 / FRAMES as f64,
    }
}

/// Seconds the busiest resource spends on the modelled job, with its name.
fn bottleneck(limits: &[(&'static str, f64)]) -> (&'static str, f64) {
    limits
        .iter()
        .cloned()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("some limit")
}

/// The old design with `n` ranks: rank 0 decoded every range from frame 0 (F(n+3)/2 frames)
/// and encoded every frame, and moved each frame twice raw.
fn old_design(c: &Costs, stylize_s: f64, n: usize) -> (&'static str, f64) {
    let n_f = n as f64;
    let decoded = if n == 1 {
        JOB_FRAMES
    } else {
        JOB_FRAMES * (n_f + 3.0) / 2.0
    };
    bottleneck(&[
        (
            "rank 0's decode + encode",
            decoded * c.decode_s + JOB_FRAMES * c.encode_s,
        ),
        ("stylize", JOB_FRAMES / n_f * stylize_s),
        (
            "rank 0's link (raw frames)",
            JOB_FRAMES * (n_f - 1.0) / n_f * 2.0 * c.raw_bytes / LINK_BYTES_PER_SECOND,
        ),
    ])
}

/// The current design: each rank decodes its share plus half a GOP on average, stylizes and
/// encodes its share (counted one after the other, though ffmpeg runs beside the engine); rank
/// 0 also receives the encoded chunks and joins them, and the job ends when it has.
fn new_design(c: &Costs, stylize_s: f64, n: usize) -> (&'static str, f64) {
    let share = JOB_FRAMES / n as f64;
    let lead_in = if n == 1 { 0.0 } else { GOP / 2.0 };
    let coding = (share + lead_in) * c.decode_s + share * c.encode_s;
    let styling = share * stylize_s;
    let gather = JOB_FRAMES * (c.encoded_bytes / LINK_BYTES_PER_SECOND + c.join_s);
    let (name, _) = bottleneck(&[
        ("each rank's decode + encode", coding),
        ("each rank's stylize", styling),
        ("rank 0's gather + join", gather),
    ]);
    (name, coding + styling + gather)
}

fn main() {
    let scratch = tempfile::tempdir().expect("scratch directory");
    let costs = measure(scratch.path());
    let engines = [
        ("cpu", costs.stylize_s),
        ("gpu_target", GPU_SECONDS_PER_FRAME),
    ];
    let mut rows = Vec::new();
    let mut table = String::from(
        "| ranks | old, CPU engine | new, CPU engine | old, GPU at 500 fps | new, GPU at 500 fps |\n|---|---|---|---|---|\n",
    );
    for n in RANKS {
        let mut row = serde_json::Map::new();
        let mut cells = vec![n.to_string()];
        for (engine, stylize_s) in engines {
            for (design, model) in [
                (
                    "old",
                    old_design as fn(&Costs, f64, usize) -> (&'static str, f64),
                ),
                ("new", new_design),
            ] {
                let (limit, seconds) = model(&costs, stylize_s, n);
                let fps = JOB_FRAMES / seconds;
                row.insert(
                    format!("{design}_{engine}"),
                    json!({ "frames_per_second": fps, "bottleneck": limit }),
                );
                cells.push(format!("{fps:.1} ({limit})"));
            }
        }
        // Column order: old CPU, new CPU, old GPU, new GPU.
        table.push_str(&format!("| {} |\n", cells.join(" | ")));
        rows.push(json!({ "ranks": n, "model": Value::Object(row) }));
    }
    let results = json!({
        "machine": "this project's 2-core machine; each modelled rank has the same resources",
        "frame": "1920x1080",
        "measured_per_frame": {
            "decode_s": costs.decode_s,
            "stylize_cpu_s": costs.stylize_s,
            "encode_s": costs.encode_s,
            "join_s": costs.join_s,
            "raw_bytes": costs.raw_bytes,
            "encoded_bytes": costs.encoded_bytes,
            "encode_note": "x264 medium crf 18 (the chunk encoder) on the decoded input frames",
        },
        "assumptions": {
            "job_frames": JOB_FRAMES,
            "gop_frames": GOP,
            "rank0_link_bytes_per_second": LINK_BYTES_PER_SECOND,
            "gpu_seconds_per_frame": GPU_SECONDS_PER_FRAME,
        },
        "rows": rows,
        "table_markdown": table,
    });
    let text = serde_json::to_string_pretty(&results).expect("serializes");
    let path = root().join("benches/results/scaling.json");
    std::fs::create_dir_all(path.parent().unwrap()).expect("results directory");
    std::fs::write(&path, &text).expect("write results");
    println!(
        "per frame at 1920x1080: decode {:.1} ms, stylize (CPU) {:.0} ms, encode {:.1} ms, join {:.2} ms, raw {:.1} MB, encoded {:.0} kB",
        costs.decode_s * 1e3,
        costs.stylize_s * 1e3,
        costs.encode_s * 1e3,
        costs.join_s * 1e3,
        costs.raw_bytes / 1e6,
        costs.encoded_bytes / 1e3
    );
    println!("{table}");
    println!("wrote {}", path.display());
}
