//! Rank roles of a run. Rank 0 prepares the plan, decodes every rank's frames (one decoder per
//! rank, so each range streams from its first frame), stylizes its own share, collects the rest
//! and encodes; the other ranks receive frames, stylize them and send them back.

use super::plan::{scaled_size, split, Plan};
use super::progress::Progress;
use super::sink::ChunkSink;
use super::JobError;
use crate::cluster::{self, Cluster, ROOT};
use crate::engine::{check_frame_size, create_engine, Device, Engine, Precision};
use crate::frame::Frame;
use crate::media::decode::Decoder;
use crate::media::encode::assemble;
use crate::media::output::{OutputKind, OutputSpec};
use crate::media::{probe, require_ffmpeg, MediaError};
use crate::model::styles::style_bytes;
use crate::model::TransformerNet;
use crate::storage::{check_not_input, Staging};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub input: PathBuf,
    pub output: PathBuf,
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
}

/// What a finished run reports (on rank 0).
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub frames: usize,
    pub ranks: usize,
    pub seconds: f64,
    pub frames_per_second: f64,
    pub output: PathBuf,
}

/// What rank 0 broadcasts: the plan, or that it could not make one.
#[derive(Serialize, Deserialize)]
struct Setup {
    plan: Option<Plan>,
}

/// Runs the job on this rank; `Ok(Some)` on rank 0, `Ok(None)` on the others.
pub fn run(options: &RunOptions, cluster: &Cluster) -> Result<Option<RunSummary>, JobError> {
    if cluster.is_root() {
        let prepared = prepare(options, cluster.size());
        let setup = Setup {
            plan: prepared.as_ref().ok().map(|p| p.plan.clone()),
        };
        cluster.broadcast(Some(serde_json::to_vec(&setup).expect("plan serializes")));
        let prepared = prepared?;
        cluster.broadcast(Some(prepared.weights.clone()));
        let engine = build_engine(options, &prepared.net, cluster).map_err(JobError::during_run)?;
        coordinate(prepared, engine, cluster.size())
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
        serve(&plan, cluster.rank(), engine).map(|()| None)
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

/// Rank 0's preparation: everything that can be refused is checked here, before any rank works.
struct Prepared {
    net: TransformerNet,
    plan: Plan,
    weights: Vec<u8>,
    staging: Staging,
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
    if !options.input.exists() {
        return Err(MediaError::InputMissing {
            path: options.input.display().to_string(),
        }
        .into());
    }
    let mut output = OutputSpec::parse(&options.output, options.crf, options.pix_fmt.as_deref())?;
    check_not_input(&options.output, &options.input)?;
    let staging = Staging::beside(&options.output)?;
    let weights = style_bytes(&options.style)?;
    let net = TransformerNet::from_bytes(&weights, &options.style)?;
    let info = probe::probe(&options.input)?;
    let size = scaled_size(info.size, options.scale);
    check_frame_size(size)?;
    output.fit_to_size(size.width, size.height)?;
    let frames = options
        .limit
        .map_or(info.frames, |limit| limit.min(info.frames));
    log::info!(
        "{}: {} frames at {} fps, {}{}; stylizing {} frames at {} on {} rank(s)",
        info.path.display(),
        info.frames,
        info.frame_rate,
        info.size,
        if info.audio.is_empty() {
            ", no audio"
        } else {
            ", with audio"
        },
        frames,
        size,
        ranks
    );
    Ok(Prepared {
        net,
        plan: Plan {
            input: info,
            frames,
            size,
            output,
            ranges: split(frames, ranks),
            chunk_frames: options.chunk_frames,
        },
        weights,
        staging,
    })
}

/// A stylized frame on its way to the sink, or the failure that ends the run.
enum Event {
    Stylized { index: usize, frame: Frame },
    Failed(JobError),
}

fn coordinate(
    prepared: Prepared,
    engine: Box<dyn Engine>,
    ranks: usize,
) -> Result<RunSummary, JobError> {
    let Prepared { plan, staging, .. } = prepared;
    let plan = Arc::new(plan);
    let (events, received) = sync_channel::<Event>(2 * ranks + 2);
    let mut workers = Vec::new();
    {
        let (plan, events) = (plan.clone(), events.clone());
        workers.push(std::thread::spawn(move || {
            stylize_local(&plan, engine, &events)
        }));
    }
    for rank in 1..ranks {
        if plan.ranges[rank].is_empty() {
            continue;
        }
        let (feeder_plan, feeder_events) = (plan.clone(), events.clone());
        workers.push(std::thread::spawn(move || {
            if let Err(error) = feed(&feeder_plan, rank) {
                let _ = feeder_events.send(Event::Failed(error));
            }
        }));
        let (collector_plan, collector_events) = (plan.clone(), events.clone());
        workers.push(std::thread::spawn(move || {
            collect(&collector_plan, rank, &collector_events)
        }));
    }
    drop(events);

    let mut sink = ChunkSink::new(&plan, staging.path().to_path_buf());
    let mut progress = Progress::new(plan.frames);
    for _ in 0..plan.frames {
        match received.recv() {
            Ok(Event::Stylized { index, frame }) => {
                sink.accept(index, frame)?;
                progress.frame_done();
            }
            Ok(Event::Failed(error)) => return Err(error),
            Err(_) => unreachable!("a sender is alive until its frames are sent or it failed"),
        }
    }
    progress.finish();
    debug_assert!(sink.is_complete());
    drop(sink);
    for worker in workers {
        worker.join().expect("worker threads do not panic");
    }
    publish(&plan, staging)?;
    Ok(RunSummary {
        frames: plan.frames,
        ranks,
        seconds: progress.elapsed().as_secs_f64(),
        frames_per_second: progress.frames_per_second(),
        output: plan.output.path.clone(),
    })
}

/// Rank 0's own share: decode, stylize in the engine's batches, hand to the sink.
fn stylize_local(plan: &Plan, mut engine: Box<dyn Engine>, events: &SyncSender<Event>) {
    let range = plan.ranges[ROOT].clone();
    let result = (|| -> Result<(), JobError> {
        if range.is_empty() {
            return Ok(());
        }
        let mut decoder = Decoder::open(&plan.input, range.start, range.len(), plan.size)?;
        let mut index = range.start;
        while index < range.end {
            let count = engine.batch_size().min(range.end - index);
            let mut batch = Vec::with_capacity(count);
            for _ in 0..count {
                batch.push(
                    decoder
                        .next_frame()?
                        .expect("the decoder yields the whole range or fails"),
                );
            }
            for frame in engine.stylize_batch(&batch)? {
                if events.send(Event::Stylized { index, frame }).is_err() {
                    return Ok(());
                }
                index += 1;
            }
        }
        Ok(())
    })();
    if let Err(error) = result {
        let _ = events.send(Event::Failed(error));
    }
}

/// Decodes rank `rank`'s range and sends it the frames.
fn feed(plan: &Plan, rank: usize) -> Result<(), JobError> {
    let range = plan.ranges[rank].clone();
    let mut decoder = Decoder::open(&plan.input, range.start, range.len(), plan.size)?;
    while let Some(frame) = decoder.next_frame()? {
        cluster::send_frame(rank, &frame);
    }
    Ok(())
}

/// Receives rank `rank`'s stylized frames and hands them to the sink.
fn collect(plan: &Plan, rank: usize, events: &SyncSender<Event>) {
    for index in plan.ranges[rank].clone() {
        let event = match cluster::receive_frame(rank, plan.size) {
            Ok(frame) => Event::Stylized { index, frame },
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

/// A remote rank: receive frames (the next batch arrives while this one is stylized), stylize,
/// send back.
fn serve(plan: &Plan, rank: usize, mut engine: Box<dyn Engine>) -> Result<(), JobError> {
    let count = plan.ranges[rank].len();
    if count == 0 {
        return Ok(());
    }
    let size = plan.size;
    let batch_size = engine.batch_size();
    let (frames, incoming) = sync_channel::<Frame>(batch_size);
    std::thread::spawn(move || {
        for _ in 0..count {
            let Ok(frame) = cluster::receive_frame(ROOT, size) else {
                return;
            };
            if frames.send(frame).is_err() {
                return;
            }
        }
    });
    let mut remaining = count;
    while remaining > 0 {
        let batch: Vec<Frame> = incoming.iter().take(batch_size.min(remaining)).collect();
        remaining -= batch.len();
        match engine.stylize_batch(&batch) {
            Ok(stylized) => stylized
                .iter()
                .for_each(|frame| cluster::send_frame(ROOT, frame)),
            Err(error) => return Err(report_to_root(&error.into())),
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

/// Moves the finished output into place.
fn publish(plan: &Plan, staging: Staging) -> Result<(), JobError> {
    match &plan.output.kind {
        OutputKind::Video { .. } => {
            let name = "output";
            let limited = plan.frames < plan.input.frames;
            let duration = limited.then(|| plan.frames as f64 / plan.input.frame_rate.as_f64());
            assemble(
                &plan.output,
                &plan.input,
                plan.chunks(),
                staging.path(),
                &staging.path().join(name),
                duration,
            )?;
            staging.publish_file(name, &plan.output.path)?;
        }
        OutputKind::Images { .. } => {
            let published = staging.publish_all(|name| name.ends_with(".png"))?;
            debug_assert_eq!(published, plan.frames);
        }
    }
    Ok(())
}
