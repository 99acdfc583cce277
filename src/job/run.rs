//! Rank roles of a run. Rank 0 prepares the plan ([`super::prepare`]) and broadcasts it with
//! the weights; the input
//! is made readable on every rank (a shared path, or one copy per node); then every rank, rank 0
//! included, runs the same worker loop on its chunks ([`super::worker`]), while rank 0's
//! coordinator ([`super::coordinator`]) gathers the encoded chunks; rank 0 finally joins them
//! into the output. Every wait on
//! another rank has a deadline (`--rank-timeout`).

use super::coordinator::coordinate;
use super::link::{self, Event, LocalLink, MpiLink};
use super::plan::{Plan, Schedule};
use super::prepare::{prepare, Prepared, WorkArea};
use super::report::{RankInfo, Recorder, Report};
use super::resume::clear;
use super::worker::work;
use super::JobError;
use crate::cluster::{self, Cluster, Watchdog, ROOT};
use crate::engine::{create_engine, Device, Engine, Precision};
use crate::media::encode::{assemble, chunk_name};
use crate::media::output::OutputKind;
use crate::media::picture::DeinterlaceChoice;
use crate::model::TransformerNet;
use crate::storage::{FileIdentity, Location, OutputTarget, Staging, TransferSettings};
use crate::temporal::TemporalSettings;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub input: Location,
    pub output: Location,
    /// Blob upload settings (block size, whether an existing output blob may be replaced).
    pub transfer: TransferSettings,
    pub style: String,
    pub scale: Option<f64>,
    pub limit: Option<usize>,
    pub crf: u8,
    pub pix_fmt: Option<String>,
    pub chunk_frames: usize,
    pub schedule: Schedule,
    pub deinterlace: DeinterlaceChoice,
    pub threads: Option<usize>,
    pub device: Device,
    pub precision: Precision,
    pub batch: usize,
    /// `--temporal`: each frame blended with the previous output along the optical flow.
    pub temporal: Option<TemporalSettings>,
    /// Where finished chunks are kept so that a rerun resumes (a temporary directory if unset).
    pub work_dir: Option<PathBuf>,
    /// Discard a work directory's checkpoint of another job instead of refusing it.
    pub restart: bool,
    /// How long a rank may make no progress before the job is stopped.
    pub rank_timeout: Duration,
    pub report: Option<PathBuf>,
    pub events: Option<PathBuf>,
}

/// What a finished run reports (on rank 0).
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub report: Report,
    pub ranks: usize,
    /// The output as shown to the user.
    pub output: String,
}

/// What rank 0 broadcasts: the plan, or that it could not make one.
#[derive(Serialize, Deserialize)]
struct Setup {
    plan: Option<Plan>,
}

/// Runs the job on this rank; `Ok(Some)` on rank 0, `Ok(None)` on the others. `watchdog`, armed
/// before MPI started, bounds the start-up (until every rank can read the input); it is paused
/// while rank 0 probes the input alone.
pub fn run(
    options: &RunOptions,
    cluster: &Cluster,
    watchdog: Option<Watchdog>,
) -> Result<Option<RunSummary>, JobError> {
    if cluster.is_root() {
        watchdog.iter().for_each(Watchdog::pause);
        let prepared = prepare(options, cluster.size());
        let setup = Setup {
            plan: prepared.as_ref().ok().map(|p| p.plan.clone()),
        };
        watchdog.iter().for_each(Watchdog::rearm);
        cluster.broadcast(Some(serde_json::to_vec(&setup).expect("plan serializes")));
        let prepared = prepared?;
        cluster.broadcast(Some(prepared.weights.clone()));
        let input = cluster
            .share_file(&prepared.plan.input.path, true, None)
            .map_err(|e| JobError::from(e).during_run())?;
        drop(watchdog);
        lead(prepared, &input, options, cluster)
            .map(Some)
            .map_err(JobError::during_run)
    } else {
        let setup: Setup =
            serde_json::from_slice(&cluster.broadcast(None)).expect("rank 0 sends a valid plan");
        let plan = setup.plan.ok_or(JobError::ReportedByRoot)?;
        let weights = cluster.broadcast(None);
        let readable = FileIdentity::of(&plan.input.path).is_ok_and(|id| id == plan.input_identity);
        let staging = Staging::temporary();
        let node_dir = staging.as_ref().ok().map(Staging::path);
        let input = cluster.share_file(&plan.input.path, readable, node_dir);
        drop(watchdog);
        follow(&plan, input, staging, &weights, options, cluster).map(|()| None)
    }
}

/// A rank other than 0: say who it is, then work on its chunks, sending them to rank 0.
fn follow(
    plan: &Plan,
    input: Result<PathBuf, cluster::ClusterError>,
    staging: Result<Staging, crate::storage::StorageError>,
    weights: &[u8],
    options: &RunOptions,
    cluster: &Cluster,
) -> Result<(), JobError> {
    let rank = cluster.rank();
    let outcome = (|| {
        let net = TransformerNet::from_bytes(weights, &options.style)?;
        let mut engine = build_engine(options, &net, cluster)?;
        let about = RankInfo {
            rank,
            host: cluster::host_name(),
            device: engine.describe(),
        };
        let mut link = MpiLink::new(plan, &about, options.rank_timeout)?;
        let encode_dir = staging.as_ref().map_err(|e| JobError::WorkDir {
            dir: std::env::temp_dir().display().to_string(),
            detail: e.to_string(),
        })?;
        work(plan, &input?, engine.as_mut(), &mut link, encode_dir.path())
    })();
    match outcome {
        Ok(_) => {
            // This rank's staging may hold its node's copy of the input: keep it until every
            // rank is done.
            cluster.wait_for_all();
            Ok(())
        }
        Err(JobError::ReportedByRoot) => Err(JobError::ReportedByRoot),
        Err(error) => Err(report_to_root(&error)),
    }
}

fn build_engine(
    options: &RunOptions,
    net: &TransformerNet,
    cluster: &Cluster,
) -> Result<Box<dyn Engine>, JobError> {
    let engine = create_engine(
        options.device,
        options.precision,
        options.batch,
        net,
        options.threads,
        cluster.local_rank(),
    )?;
    log::info!("rank {}: {}", cluster.rank(), engine.describe());
    Ok(engine)
}

/// Rank 0: its own worker on a thread, a relay per remote rank, and the coordinator on this
/// thread; then the output is assembled and published.
fn lead(
    prepared: Prepared,
    input: &Path,
    options: &RunOptions,
    cluster: &Cluster,
) -> Result<RunSummary, JobError> {
    let work_dir = prepared.work_dir();
    let Prepared {
        net,
        plan,
        target,
        work: work_area,
        input: _download,
        ..
    } = prepared;
    let ranks = cluster.size();
    let engine = build_engine(options, &net, cluster)?;
    let plan = Arc::new(plan);
    let timeout = options.rank_timeout;
    let (events, received) = sync_channel::<Event>(4 * ranks + 16);
    let (assign, assignments) = sync_channel::<Option<usize>>(1);
    events
        .send(Event::Joined(RankInfo {
            rank: ROOT,
            host: cluster::host_name(),
            device: engine.describe(),
        }))
        .expect("the receiver is alive");
    let mut threads = Vec::new();
    {
        let (plan, events, input, work_dir) = (
            plan.clone(),
            events.clone(),
            input.to_path_buf(),
            work_dir.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut engine = engine;
            let mut link = LocalLink::new(&plan, events.clone(), assignments);
            if let Err(error) = work(&plan, &input, engine.as_mut(), &mut link, &work_dir) {
                let error = match error {
                    JobError::ReportedByRoot => return,
                    error if ranks > 1 => JobError::OnRank {
                        rank: ROOT,
                        source: Box::new(error),
                    },
                    error => error,
                };
                let _ = events.send(Event::Failed(error));
            }
        }));
    }
    for rank in 1..ranks {
        let events = events.clone();
        threads.push(std::thread::spawn(move || {
            link::relay(rank, events, timeout)
        }));
    }
    drop(events);

    let recorder = Recorder::new(&plan, options.events.as_deref())?;
    let (recorder, mut stats) =
        coordinate(&plan, &received, &assign, recorder, &work_dir, timeout)?;
    cluster.wait_for_all();
    for thread in threads {
        thread.join().expect("worker threads do not panic");
    }
    let (sent, received_bytes) = cluster::traffic();
    stats[ROOT].mpi_bytes_sent = sent;
    stats[ROOT].mpi_bytes_received = received_bytes;
    let started = Instant::now();
    publish(&plan, &work_dir, target)?;
    let assemble_time = started.elapsed();
    if let WorkArea::Kept(dir) = &work_area {
        clear(dir)?;
    }
    let report = recorder.finish(&plan, stats, assemble_time);
    report.log_summary();
    if let Some(path) = &options.report {
        report.write(path)?;
    }
    Ok(RunSummary {
        report,
        ranks,
        output: options.output.shown(),
    })
}

/// How long a failed rank waits for rank 0 to end the job before exiting by itself.
const AWAIT_ABORT: Duration = Duration::from_secs(60);

/// Tells rank 0 why this rank fails, then waits for rank 0 to end the job.
fn report_to_root(error: &JobError) -> JobError {
    cluster::send_failure(ROOT, &error.to_string(), error.is_poison());
    // Rank 0 reports the failure and aborts the job; exit anyway if it does not.
    std::thread::sleep(AWAIT_ABORT);
    JobError::ReportedByRoot
}

/// Moves the finished output into place: the joined video, or the PNG frames.
fn publish(plan: &Plan, work_dir: &Path, target: OutputTarget) -> Result<(), JobError> {
    match &plan.output.kind {
        OutputKind::Video { .. } => {
            let name = "output";
            let chunks: Vec<_> = (0..plan.chunks()).map(|c| plan.chunk(c)).collect();
            assemble(
                &plan.output,
                &plan.input,
                &chunks,
                work_dir,
                target.staging_path(),
                &target.staging_path().join(name),
            )?;
            target.publish_file(name)?;
        }
        OutputKind::Images { .. } => {
            let chunk_dirs: Vec<PathBuf> = (0..plan.chunks())
                .map(|c| work_dir.join(chunk_name(c, &plan.output.kind)))
                .collect();
            let published = target.publish_from(&chunk_dirs)?;
            debug_assert_eq!(published, plan.frames);
        }
    }
    Ok(())
}
