//! Rank roles of a run. Rank 0 prepares the plan, decodes every rank's share (one decoder per
//! rank, so each share streams from its first frame), stylizes its own share, collects the rest
//! and encodes them chunk by chunk; the other ranks receive frames, stylize them and send them
//! back with the time each took. Every wait on another rank has a deadline (`--rank-timeout`).

use super::plan::{scaled_size, Plan};
use super::progress::Progress;
use super::report::{RankInfo, Recorder, Report, Timings};
use super::resume::{clear, prepare_work_dir, Manifest};
use super::sink::ChunkSink;
use super::JobError;
use crate::cluster::{self, Cluster, Watchdog, ROOT};
use crate::engine::{check_frame_size, create_engine, Device, Engine, Precision};
use crate::frame::Frame;
use crate::media::decode::Decoder;
use crate::media::encode::{assemble, chunk_name};
use crate::media::output::{OutputKind, OutputSpec};
use crate::media::{probe, require_ffmpeg, MediaError};
use crate::model::styles::style_bytes;
use crate::model::TransformerNet;
use crate::storage::{
    fetch, output_directory, LocalInput, Location, OutputTarget, TransferSettings,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
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
/// before MPI started, bounds the start-up; it is paused while rank 0 probes the input alone.
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
        drop(watchdog);
        let engine = build_engine(options, &prepared.net, cluster).map_err(JobError::during_run)?;
        coordinate(prepared, engine, options, cluster.size())
            .map(Some)
            .map_err(JobError::during_run)
    } else {
        let setup: Setup =
            serde_json::from_slice(&cluster.broadcast(None)).expect("rank 0 sends a valid plan");
        let plan = setup.plan.ok_or(JobError::ReportedByRoot)?;
        let weights = cluster.broadcast(None);
        let net = TransformerNet::from_bytes(&weights, &options.style)?;
        let engine = match build_engine(options, &net, cluster) {
            Ok(engine) => engine,
            Err(error) => return Err(report_to_root(&error)),
        };
        serve(&plan, cluster.rank(), engine, options.rank_timeout).map(|()| None)
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
                &weights,
                size,
                frames,
                options.chunk_frames,
                &output.kind,
            )?;
            let (dir, done) = prepare_work_dir(dir, &manifest, chunks, options.restart)?;
            (WorkArea::Kept(dir), done)
        }
        None => (WorkArea::Temporary, Vec::new()),
    };
    let todo: Vec<usize> = (0..chunks).filter(|c| !done.contains(c)).collect();
    let plan = Plan::new(
        info,
        frames,
        size,
        output,
        options.chunk_frames,
        todo,
        ranks,
    );
    log::info!(
        "{}: {} frames at {} fps, {}{}; stylizing {} of {} frames at {} on {} rank(s){}",
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

/// What reaches rank 0's sink: a rank's description, a stylized frame, or the failure that ends
/// the run.
enum Event {
    Joined(RankInfo),
    Stylized {
        index: usize,
        frame: Frame,
        rank: usize,
        seconds: f64,
    },
    Failed(JobError),
}

fn coordinate(
    prepared: Prepared,
    engine: Box<dyn Engine>,
    options: &RunOptions,
    ranks: usize,
) -> Result<RunSummary, JobError> {
    let work_dir = prepared.work_dir();
    let Prepared {
        plan,
        target,
        work,
        input,
        ..
    } = prepared;
    let plan = Arc::new(plan);
    let timings = Arc::new(Timings::default());
    let timeout = options.rank_timeout;
    let (events, received) = sync_channel::<Event>(2 * ranks + 2);
    let mut workers = Vec::new();
    events
        .send(Event::Joined(RankInfo {
            rank: ROOT,
            host: cluster::host_name(),
            device: engine.describe(),
        }))
        .expect("the receiver is alive");
    {
        let (plan, events, timings) = (plan.clone(), events.clone(), timings.clone());
        workers.push(std::thread::spawn(move || {
            stylize_local(&plan, engine, &events, &timings)
        }));
    }
    for rank in 1..ranks {
        if !plan.shares[rank].is_empty() {
            let (plan, events, timings) = (plan.clone(), events.clone(), timings.clone());
            workers.push(std::thread::spawn(move || {
                if let Err(error) = feed(&plan, rank, &timings, timeout) {
                    let _ = events.send(Event::Failed(error));
                }
            }));
        }
        let (plan, events, timings) = (plan.clone(), events.clone(), timings.clone());
        workers.push(std::thread::spawn(move || {
            collect(&plan, rank, &events, &timings, timeout)
        }));
    }
    drop(events);

    let mut recorder = Recorder::new(&plan, options.events.as_deref())?;
    let mut sink = ChunkSink::new(&plan, work_dir.clone());
    let mut progress = Progress::new(plan.frames_to_compute());
    let mut remaining = plan.frames_to_compute() + ranks;
    while remaining > 0 {
        match received.recv() {
            Ok(Event::Joined(info)) => recorder.rank_joined(info),
            Ok(Event::Stylized {
                index,
                frame,
                rank,
                seconds,
            }) => {
                let start = Instant::now();
                sink.accept(index, frame)?;
                recorder.add_encode(start.elapsed());
                recorder.frame_done(index, rank, seconds);
                progress.frame_done();
            }
            Ok(Event::Failed(error)) => return Err(error),
            Err(_) => unreachable!("a sender is alive until its messages are sent or it failed"),
        }
        remaining -= 1;
    }
    progress.finish();
    debug_assert!(sink.is_complete());
    drop(sink);
    for worker in workers {
        worker.join().expect("worker threads do not panic");
    }
    let start = Instant::now();
    publish(&plan, &work_dir, target)?;
    drop(input);
    recorder.add_encode(start.elapsed());
    if let WorkArea::Kept(dir) = &work {
        clear(dir)?;
    }
    let report = recorder.finish(&plan, &timings);
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

/// Rank 0's own share: decode, stylize in the engine's batches, hand to the sink.
fn stylize_local(
    plan: &Plan,
    mut engine: Box<dyn Engine>,
    events: &SyncSender<Event>,
    timings: &Timings,
) {
    let frames = plan.frames_of(ROOT);
    let result = (|| -> Result<(), JobError> {
        if frames.is_empty() {
            return Ok(());
        }
        let mut decoder = Decoder::open(&plan.input, &plan.intervals_of(ROOT), plan.size)?;
        for indices in frames.chunks(engine.batch_size()) {
            let mut batch = Vec::with_capacity(indices.len());
            for _ in indices {
                let start = Instant::now();
                batch.push(
                    decoder
                        .next_frame()?
                        .expect("the decoder yields the whole share or fails"),
                );
                timings.add_decode(start.elapsed());
            }
            let start = Instant::now();
            let stylized = engine.stylize_batch(&batch)?;
            let seconds = start.elapsed().as_secs_f64() / batch.len() as f64;
            for (&index, frame) in indices.iter().zip(stylized) {
                if events
                    .send(Event::Stylized {
                        index,
                        frame,
                        rank: ROOT,
                        seconds,
                    })
                    .is_err()
                {
                    return Ok(());
                }
            }
        }
        Ok(())
    })();
    if let Err(error) = result {
        let _ = events.send(Event::Failed(error));
    }
}

/// Decodes rank `rank`'s share and sends it the frames.
fn feed(plan: &Plan, rank: usize, timings: &Timings, timeout: Duration) -> Result<(), JobError> {
    let mut decoder = Decoder::open(&plan.input, &plan.intervals_of(rank), plan.size)?;
    loop {
        let start = Instant::now();
        let Some(frame) = decoder.next_frame()? else {
            return Ok(());
        };
        timings.add_decode(start.elapsed());
        let start = Instant::now();
        cluster::send_frame(rank, frame, timeout)?;
        timings.add_transfer(start.elapsed());
    }
}

/// Receives what rank `rank` says about itself, then its stylized frames, for the sink.
fn collect(
    plan: &Plan,
    rank: usize,
    events: &SyncSender<Event>,
    timings: &Timings,
    timeout: Duration,
) {
    let hello = cluster::receive_hello(rank, timeout).map(|text| {
        serde_json::from_str(&text).unwrap_or(RankInfo {
            rank,
            host: "unknown".into(),
            device: text,
        })
    });
    let joined = match hello {
        Ok(info) => Event::Joined(info),
        Err(error) => Event::Failed(error.into()),
    };
    let failed = matches!(joined, Event::Failed(_));
    if events.send(joined).is_err() || failed {
        return;
    }
    for index in plan.frames_of(rank) {
        let event = match cluster::receive_result(rank, plan.size, timeout) {
            Ok(result) => {
                // Only the copy counts as transfer: the wait before it is the rank computing.
                timings.add_transfer(result.copy_time);
                Event::Stylized {
                    index,
                    frame: result.frame,
                    rank,
                    seconds: result.compute_seconds,
                }
            }
            Err(error) => Event::Failed(error.into()),
        };
        let failed = matches!(event, Event::Failed(_));
        if events.send(event).is_err() || failed {
            return;
        }
    }
}

/// How long a failed rank waits for rank 0 to end the job before exiting by itself.
const AWAIT_ABORT: Duration = Duration::from_secs(60);

/// A remote rank: say who it is, receive frames (the next batch arrives while this one is
/// stylized), stylize, send back with the compute time.
fn serve(
    plan: &Plan,
    rank: usize,
    mut engine: Box<dyn Engine>,
    timeout: Duration,
) -> Result<(), JobError> {
    let about = RankInfo {
        rank,
        host: cluster::host_name(),
        device: engine.describe(),
    };
    cluster::send_hello(ROOT, &serde_json::to_string(&about).expect("serializes"));
    let count = plan.shares[rank].len();
    if count == 0 {
        return Ok(());
    }
    let size = plan.size;
    let batch_size = engine.batch_size();
    let (frames, incoming) = sync_channel::<Result<Frame, cluster::ClusterError>>(batch_size);
    std::thread::spawn(move || {
        for _ in 0..count {
            let frame = cluster::receive_frame(ROOT, size, timeout);
            let failed = frame.is_err();
            if frames.send(frame).is_err() || failed {
                return;
            }
        }
    });
    let mut remaining = count;
    while remaining > 0 {
        let batch: Vec<Frame> = incoming
            .iter()
            .take(batch_size.min(remaining))
            .collect::<Result<_, _>>()?;
        remaining -= batch.len();
        let start = Instant::now();
        let stylized = match engine.stylize_batch(&batch) {
            Ok(stylized) => stylized,
            Err(error) => return Err(report_to_root(&error.into())),
        };
        let seconds = start.elapsed().as_secs_f64() / batch.len() as f64;
        for frame in &stylized {
            cluster::send_result(ROOT, frame, seconds)?;
        }
    }
    Ok(())
}

/// Tells rank 0 why this rank fails, then waits for rank 0 to end the job.
fn report_to_root(error: &JobError) -> JobError {
    cluster::send_failure(ROOT, &error.to_string());
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
