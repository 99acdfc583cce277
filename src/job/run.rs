//! Rank roles of a run. Rank 0 prepares the plan and broadcasts it with the weights; the input
//! is made readable on every rank (a shared path, or one copy per node); then every rank, rank 0
//! included, runs the same worker loop on its chunks ([`super::worker`]), while rank 0's
//! coordinator hands out chunks (dynamic schedule), stores the encoded chunks it receives, keeps
//! the progress and the report, and finally joins the chunks into the output. Every wait on
//! another rank has a deadline (`--rank-timeout`).

use super::link::{self, Event, LocalLink, MpiLink};
use super::plan::{scaled_size, Plan, Schedule};
use super::progress::Progress;
use super::report::{RankInfo, Recorder, Report, WorkerStats};
use super::resume::{clear, prepare_work_dir, Manifest};
use super::schedule::DynamicSchedule;
use super::worker::work;
use super::JobError;
use crate::cluster::{self, Cluster, Watchdog, ROOT};
use crate::engine::{check_frame_size, create_engine, Device, Engine, Precision};
use crate::media::encode::{assemble, chunk_name};
use crate::media::output::{OutputKind, OutputSpec};
use crate::media::{probe, require_ffmpeg, MediaError};
use crate::model::styles::style_bytes;
use crate::model::TransformerNet;
use crate::storage::{
    fetch, output_directory, FileIdentity, LocalInput, Location, OutputTarget, Staging,
    TransferSettings,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
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
    pub threads: Option<usize>,
    pub device: Device,
    pub precision: Precision,
    pub batch: usize,
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
            .share_file(&prepared.plan.input.path, true, Path::new(""))
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
        let node_dir = staging.as_ref().map_or(Path::new(""), |s| s.path());
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

/// Where chunks are kept: the user's work directory, or a temporary one inside the staging
/// directory.
enum WorkArea {
    Kept(PathBuf),
    Temporary,
}

/// Rank 0's preparation: everything that can be refused is checked here, before any rank works.
struct Prepared {
    net: TransformerNet,
    plan: Plan,
    weights: Vec<u8>,
    target: OutputTarget,
    /// Kept until the run ends: a downloaded input is deleted when dropped.
    input: LocalInput,
    work: WorkArea,
}

impl Prepared {
    fn work_dir(&self) -> PathBuf {
        match &self.work {
            WorkArea::Kept(dir) => dir.clone(),
            WorkArea::Temporary => self.target.staging_path().to_path_buf(),
        }
    }
}

fn prepare(options: &RunOptions, ranks: usize) -> Result<Prepared, JobError> {
    require_ffmpeg()?;
    if let Some(scale) = options.scale {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(JobError::BadScale(scale));
        }
    }
    if options.limit == Some(0) {
        return Err(JobError::ZeroLimit);
    }
    if options.chunk_frames == 0 {
        return Err(JobError::ZeroChunk);
    }
    if let Location::Local(path) = &options.input {
        if !path.exists() {
            return Err(MediaError::InputMissing {
                path: path.display().to_string(),
            }
            .into());
        }
    }
    crate::engine::select::check_device(options.device)?;
    let mut output = OutputSpec::parse(
        &options.output.as_path(),
        options.crf,
        options.pix_fmt.as_deref(),
    )?;
    let frame_sequence = matches!(output.kind, OutputKind::Images { .. });
    let target = OutputTarget::prepare(
        &options.output,
        &options.input,
        &options.transfer,
        frame_sequence,
    )?;
    for path in [&options.report, &options.events].into_iter().flatten() {
        if !output_directory(path).is_dir() {
            return Err(JobError::ReportWrite {
                path: path.display().to_string(),
                detail: "its directory does not exist".into(),
            });
        }
    }
    let weights = style_bytes(&options.style)?;
    let net = TransformerNet::from_bytes(&weights, &options.style)?;
    let input = fetch(&options.input)?;
    let info = probe::probe(input.path(), &options.input.shown())?;
    let input_identity = FileIdentity::of(input.path()).map_err(|e| MediaError::NotAVideo {
        path: options.input.shown(),
        detail: e.to_string(),
    })?;
    let size = scaled_size(info.size, options.scale);
    check_frame_size(size)?;
    output.fit_to_size(size.width, size.height)?;
    let frames = options
        .limit
        .map_or(info.frames, |limit| limit.min(info.frames));
    let chunks = frames.div_ceil(options.chunk_frames);
    let (work, done) = match &options.work_dir {
        Some(dir) => {
            let manifest = Manifest::new(
                &info,
                &input_identity,
                &weights,
                size,
                frames,
                options.chunk_frames,
                &output.kind,
            );
            let (dir, done) = prepare_work_dir(dir, &manifest, chunks, options.restart)?;
            (WorkArea::Kept(dir), done)
        }
        None => (WorkArea::Temporary, Vec::new()),
    };
    let todo_chunks: Vec<usize> = (0..chunks).filter(|c| !done.contains(c)).collect();
    let plan = Plan {
        input: info,
        input_identity,
        frames,
        size,
        output,
        chunk_frames: options.chunk_frames,
        todo_chunks,
        schedule: options.schedule,
        ranks,
    };
    log::info!(
        "{}: {} frames at {} fps, {}{}; stylizing {} of {} frames at {} on {} rank(s), {:?} schedule{}",
        options.input.shown(),
        plan.input.frames,
        plan.input.frame_rate,
        plan.input.size,
        if plan.input.audio.is_empty() {
            ", no audio"
        } else {
            ", with audio"
        },
        plan.frames_to_compute(),
        frames,
        size,
        ranks,
        options.schedule,
        if done.is_empty() {
            String::new()
        } else {
            format!(" ({} chunks already done)", done.len())
        },
    );
    Ok(Prepared {
        net,
        plan,
        weights,
        target,
        input,
        work,
    })
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

/// Rank 0's coordinator: answers requests for chunks, stores the chunks other ranks encoded,
/// records every frame, until every rank has finished. Returns every rank's figures.
fn coordinate(
    plan: &Plan,
    events: &Receiver<Event>,
    assign: &SyncSender<Option<usize>>,
    mut recorder: Recorder,
    work_dir: &Path,
    timeout: Duration,
) -> Result<(Recorder, Vec<WorkerStats>), JobError> {
    let mut schedule = DynamicSchedule::new(plan.todo_chunks.clone(), plan.ranks);
    let mut progress = Progress::new(plan.frames_to_compute());
    let mut stats: Vec<Option<WorkerStats>> = vec![None; plan.ranks];
    let mut chunks_done = 0;
    while stats.iter().any(Option::is_none) {
        let event = events
            .recv()
            .expect("a sender is alive until its rank finished or failed");
        match event {
            Event::Joined(info) => recorder.rank_joined(info),
            Event::Request { rank } => {
                let chunk = schedule.next_for(rank);
                if rank == ROOT {
                    let _ = assign.send(chunk);
                } else {
                    link::assign(rank, chunk, timeout)?;
                }
            }
            Event::FrameDone {
                rank,
                frame,
                compute_s,
            } => {
                recorder.frame_done(frame, rank, compute_s);
                progress.frame_done();
            }
            Event::ChunkDone { chunk, segment } => {
                if let Some(segment) = segment {
                    segment.store(work_dir, chunk, &plan.output.kind)?;
                }
                chunks_done += 1;
            }
            Event::Finished { rank, stats: mine } => stats[rank] = Some(mine),
            Event::Failed(error) => return Err(error),
        }
    }
    progress.finish();
    debug_assert_eq!(chunks_done, plan.todo_chunks.len());
    Ok((
        recorder,
        stats.into_iter().map(Option::unwrap_or_default).collect(),
    ))
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
            let limited = plan.frames < plan.input.frames;
            let duration = limited.then(|| plan.frames as f64 / plan.input.frame_rate.as_f64());
            assemble(
                &plan.output,
                &plan.input,
                plan.chunks(),
                work_dir,
                target.staging_path(),
                &target.staging_path().join(name),
                duration,
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
