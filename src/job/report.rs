//! What every rank did: per-frame compute times (measured on the rank that computed the frame
//! and sent along with it), each rank's frames decoded and encoded, bytes moved through MPI,
//! decode, compute, encode and transfer time, and busy and idle time. Streamed as JSON lines
//! while running (`--events`, for `tail -f`), written as one JSON report at the end
//! (`--report`), and summarised in the log of every run.

use super::plan::Plan;
use super::JobError;
use serde::Serialize;
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// One rank's figures, measured by its worker and sent to rank 0 at the end.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct WorkerStats {
    /// Every frame its decoders produced, those before its ranges (from the keyframe on)
    /// included.
    pub frames_decoded: usize,
    pub frames_encoded: usize,
    pub mpi_bytes_sent: u64,
    pub mpi_bytes_received: u64,
    pub decode_s: f64,
    pub compute_s: f64,
    pub encode_s: f64,
    pub transfer_s: f64,
}

/// Who a rank is.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RankInfo {
    pub rank: usize,
    pub host: String,
    pub device: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrameTiming {
    pub frame: usize,
    pub rank: usize,
    pub compute_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RankReport {
    pub rank: usize,
    pub host: String,
    pub device: String,
    pub frames: usize,
    pub busy_s: f64,
    pub idle_s: f64,
    pub frames_per_second: f64,
    #[serde(flatten)]
    pub stats: WorkerStats,
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub wall_s: f64,
    pub decode_s: f64,
    pub transfer_s: f64,
    pub compute_s: f64,
    pub encode_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub input: String,
    pub output: String,
    pub frames: usize,
    pub computed: usize,
    pub reused: usize,
    pub frames_per_second: f64,
    /// The busiest rank's busy time over the mean busy time, minus one (0 = perfectly even).
    pub load_imbalance: f64,
    pub totals: Totals,
    pub ranks: Vec<RankReport>,
    pub frame_timings: Vec<FrameTiming>,
}

/// Collects timings on rank 0's sink thread and streams events.
pub struct Recorder {
    started: Instant,
    events: Option<std::io::BufWriter<std::fs::File>>,
    ranks: Vec<Option<RankInfo>>,
    frames: Vec<FrameTiming>,
}

fn write_error(path: &Path) -> impl Fn(std::io::Error) -> JobError + '_ {
    move |e| JobError::ReportWrite {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

impl Recorder {
    pub fn new(plan: &Plan, events: Option<&Path>) -> Result<Recorder, JobError> {
        let events = match events {
            Some(path) => Some(std::io::BufWriter::new(
                std::fs::File::create(path).map_err(write_error(path))?,
            )),
            None => None,
        };
        let mut recorder = Recorder {
            started: Instant::now(),
            events,
            ranks: vec![None; plan.ranks],
            frames: Vec::with_capacity(plan.frames_to_compute()),
        };
        recorder.event(json!({
            "event": "start",
            "input": plan.input.path.display().to_string(),
            "output": plan.output.path.display().to_string(),
            "frames": plan.frames,
            "computing": plan.frames_to_compute(),
            "ranks": plan.ranks,
        }));
        Ok(recorder)
    }

    fn event(&mut self, mut value: serde_json::Value) {
        if let Some(out) = &mut self.events {
            value["t"] = json!(self.started.elapsed().as_secs_f64());
            // Each line is flushed so that `tail -f` sees it; a failing log never fails the job.
            let _ = writeln!(out, "{value}").and_then(|_| out.flush());
        }
    }

    pub fn rank_joined(&mut self, info: RankInfo) {
        self.event(
            json!({ "event": "rank", "rank": info.rank, "host": info.host, "device": info.device }),
        );
        let slot = info.rank;
        self.ranks[slot] = Some(info);
    }

    pub fn frame_done(&mut self, frame: usize, rank: usize, compute_s: f64) {
        self.event(
            json!({ "event": "frame", "frame": frame, "rank": rank, "compute_s": compute_s }),
        );
        self.frames.push(FrameTiming {
            frame,
            rank,
            compute_s,
        });
    }

    /// The report, from the figures of every rank (in rank order) and the time rank 0 spent
    /// assembling the output.
    pub fn finish(mut self, plan: &Plan, stats: Vec<WorkerStats>, assemble: Duration) -> Report {
        let wall = self.started.elapsed().as_secs_f64();
        let ranks: Vec<RankReport> = self
            .ranks
            .iter()
            .zip(stats)
            .enumerate()
            .map(|(rank, (info, stats))| {
                let mine = self.frames.iter().filter(|f| f.rank == rank);
                let frames = mine.count();
                let busy = stats.decode_s + stats.compute_s + stats.encode_s + stats.transfer_s;
                let info = info.clone().unwrap_or(RankInfo {
                    rank,
                    host: "unknown".into(),
                    device: "unknown".into(),
                });
                RankReport {
                    rank,
                    host: info.host,
                    device: info.device,
                    frames,
                    busy_s: busy,
                    idle_s: (wall - busy).max(0.0),
                    frames_per_second: frames as f64 / wall.max(1e-9),
                    stats,
                }
            })
            .collect();
        let mean_busy = ranks.iter().map(|r| r.busy_s).sum::<f64>() / ranks.len() as f64;
        let max_busy = ranks.iter().map(|r| r.busy_s).fold(0.0, f64::max);
        let computed = self.frames.len();
        let report = Report {
            input: plan.input.path.display().to_string(),
            output: plan.output.path.display().to_string(),
            frames: plan.frames,
            computed,
            reused: plan.frames - computed,
            frames_per_second: computed as f64 / wall.max(1e-9),
            load_imbalance: if mean_busy > 0.0 {
                max_busy / mean_busy - 1.0
            } else {
                0.0
            },
            totals: Totals {
                wall_s: wall,
                decode_s: ranks.iter().map(|r| r.stats.decode_s).sum(),
                transfer_s: ranks.iter().map(|r| r.stats.transfer_s).sum(),
                compute_s: ranks.iter().map(|r| r.stats.compute_s).sum(),
                encode_s: ranks.iter().map(|r| r.stats.encode_s).sum::<f64>()
                    + assemble.as_secs_f64(),
            },
            ranks,
            frame_timings: std::mem::take(&mut self.frames),
        };
        self.event(json!({ "event": "done", "computed": report.computed, "reused": report.reused, "frames_per_second": report.frames_per_second }));
        report
    }
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / 1048576.0)
}

impl Report {
    /// Logs the summary every run ends with.
    pub fn log_summary(&self) {
        for rank in &self.ranks {
            let s = &rank.stats;
            log::info!(
                "rank {} ({}, {}): {} frames, busy {:.1} s, idle {:.1} s, {:.2} frames/s; decoded {}, encoded {}; decode {:.1} s, compute {:.1} s, encode {:.1} s, transfer {:.1} s; MPI sent {}, received {}",
                rank.rank,
                rank.host,
                rank.device,
                rank.frames,
                rank.busy_s,
                rank.idle_s,
                rank.frames_per_second,
                s.frames_decoded,
                s.frames_encoded,
                s.decode_s,
                s.compute_s,
                s.encode_s,
                s.transfer_s,
                mebibytes(s.mpi_bytes_sent),
                mebibytes(s.mpi_bytes_received),
            );
        }
        let t = &self.totals;
        log::info!(
            "computed {} of {} frames ({} from checkpoints) in {:.1} s: decode {:.1} s, transfer {:.1} s, compute {:.1} s, encode {:.1} s; load imbalance {:.0}%",
            self.computed, self.frames, self.reused, t.wall_s, t.decode_s, t.transfer_s, t.compute_s, t.encode_s, 100.0 * self.load_imbalance
        );
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }

    pub fn write(&self, path: &Path) -> Result<(), JobError> {
        std::fs::write(path, self.to_json()).map_err(write_error(path))
    }
}
