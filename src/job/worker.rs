//! The one worker loop every rank runs, rank 0 included: take chunks from the link, decode
//! their frames from the input (seeking to the nearest usable keyframe), stylize them in the
//! engine's batches, encode each chunk on the fixed grid, and hand the encoded chunk over.
//! Consecutive chunks keep one decoder running, so a static share is one sequential decode.

use super::link::Link;
use super::plan::Plan;
use super::report::WorkerStats;
use super::JobError;
use crate::engine::Engine;
use crate::frame::Frame;
use crate::media::decode::Decoder;
use crate::media::encode::{chunk_name, ChunkEncoder};
use std::ops::Range;
use std::path::Path;
use std::time::Instant;

/// Runs the worker until the link has no more chunks; returns this rank's figures (also given
/// to the link).
pub fn work(
    plan: &Plan,
    input: &Path,
    engine: &mut dyn Engine,
    link: &mut dyn Link,
    encode_dir: &Path,
) -> Result<WorkerStats, JobError> {
    let mut stats = WorkerStats::default();
    let mut decoder: Option<Decoder> = None;
    while let Some(chunks) = link.next_chunks()? {
        for run in plan.frame_runs(&chunks) {
            let continues = decoder
                .as_ref()
                .is_some_and(|d| d.next_index() == run.start);
            if !continues {
                if let Some(done) = decoder.take() {
                    stats.frames_decoded += done.frames_decoded();
                }
                decoder = Some(Decoder::open(&plan.input, input, run.clone(), plan.size)?);
            }
            let decoder = decoder.as_mut().expect("opened above");
            decoder.extend_to(run.end);
            stylize_run(plan, run, decoder, engine, link, encode_dir, &mut stats)?;
        }
    }
    stats.frames_decoded += decoder.map_or(0, |d| d.frames_decoded());
    stats.transfer_s = link.transfer_seconds();
    link.finished(stats.clone())?;
    Ok(stats)
}

/// Decodes, stylizes and encodes the frames of `run`, which starts and ends on chunk bounds.
fn stylize_run(
    plan: &Plan,
    run: Range<usize>,
    decoder: &mut Decoder,
    engine: &mut dyn Engine,
    link: &mut dyn Link,
    encode_dir: &Path,
    stats: &mut WorkerStats,
) -> Result<(), JobError> {
    let mut encoder: Option<ChunkEncoder> = None;
    let mut next = run.start;
    while next < run.end {
        let count = engine.batch_size().min(run.end - next);
        let started = Instant::now();
        let batch = (0..count)
            .map(|_| {
                decoder
                    .next_frame()
                    .map(|f| f.expect("the decoder yields its whole range or fails"))
            })
            .collect::<Result<Vec<Frame>, _>>()?;
        stats.decode_s += started.elapsed().as_secs_f64();
        let started = Instant::now();
        let stylized = engine.stylize_batch(&batch)?;
        let seconds = started.elapsed().as_secs_f64();
        stats.compute_s += seconds;
        for (frame, image) in (next..next + count).zip(stylized) {
            link.frame_done(frame, seconds / count as f64)?;
            let chunk = plan.chunk_of(frame);
            let started = Instant::now();
            let chunk_encoder = match &mut encoder {
                Some(open) => open,
                None => encoder.insert(ChunkEncoder::start(
                    &plan.output,
                    &plan.input,
                    plan.size,
                    chunk,
                    plan.chunk(chunk),
                    encode_dir,
                )?),
            };
            chunk_encoder.write(&image)?;
            let last_of_chunk = frame + 1 == plan.chunk(chunk).end;
            if last_of_chunk {
                encoder.take().expect("open").finish()?;
            }
            stats.encode_s += started.elapsed().as_secs_f64();
            if last_of_chunk {
                stats.frames_encoded += plan.chunk(chunk).len();
                link.chunk_done(
                    chunk,
                    &encode_dir.join(chunk_name(chunk, &plan.output.kind)),
                )?;
            }
        }
        next += count;
    }
    Ok(())
}
