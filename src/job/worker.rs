//! The one worker loop every rank runs, rank 0 included: take chunks from the link, decode
//! their frames from the input (seeking to the nearest usable keyframe), stylize them in the
//! engine's batches, encode each chunk on the fixed grid, and hand the encoded chunk over.
//! Consecutive chunks keep one decoder running, so a static share is one sequential decode.
//! With `--temporal`, a run of chunks starts with the warm-up frames before it, stylized only to
//! start the temporal filter, which restarts at every chunk's first frame.

use super::link::Link;
use super::plan::Plan;
use super::report::WorkerStats;
use super::JobError;
use crate::engine::Engine;
use crate::frame::Frame;
use crate::media::decode::Decoder;
use crate::media::encode::{chunk_name, ChunkEncoder};
use crate::temporal::filter::TemporalFilter;
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
            let first = run.start - plan.warmup_before(run.start);
            let continues = decoder.as_ref().is_some_and(|d| d.next_index() == first);
            if !continues {
                if let Some(done) = decoder.take() {
                    stats.frames_decoded += done.frames_decoded();
                }
                decoder = Some(Decoder::open(
                    &plan.input,
                    input,
                    first..run.end,
                    plan.size,
                )?);
            }
            let decoder = decoder.as_mut().expect("opened above");
            decoder.extend_to(run.end);
            let run = Run {
                first,
                encoded: run,
            };
            stylize_run(plan, run, decoder, engine, link, encode_dir, &mut stats)?;
        }
    }
    stats.frames_decoded += decoder.map_or(0, |d| d.frames_decoded());
    stats.transfer_s = link.transfer_seconds();
    link.finished(stats.clone())?;
    Ok(stats)
}

/// Frames a worker decodes and stylizes in one go.
struct Run {
    /// The first frame stylized: the first encoded one, or the first of its warm-up.
    first: usize,
    /// The frames encoded, from a chunk's start to a chunk's end.
    encoded: Range<usize>,
}

/// Decodes and stylizes the frames of `run` and encodes those of its chunks.
fn stylize_run(
    plan: &Plan,
    run: Run,
    decoder: &mut Decoder,
    engine: &mut dyn Engine,
    link: &mut dyn Link,
    encode_dir: &Path,
    stats: &mut WorkerStats,
) -> Result<(), JobError> {
    let mut encoder: Option<ChunkEncoder> = None;
    let mut temporal = plan.temporal.map(TemporalFilter::new).transpose()?;
    let mut next = run.first;
    while next < run.encoded.end {
        let count = engine.batch_size().min(run.encoded.end - next);
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
        let stylized = match &mut temporal {
            Some(filter) => batch
                .into_iter()
                .zip(stylized)
                .zip(next..)
                .map(|((input, image), frame)| {
                    filter.push(
                        input,
                        image,
                        plan.chunk(plan.chunk_of(frame)).start == frame,
                    )
                })
                .collect::<Result<Vec<Frame>, _>>()?,
            None => stylized,
        };
        let seconds = started.elapsed().as_secs_f64();
        stats.compute_s += seconds;
        let encoded = (next..next + count).zip(stylized);
        for (frame, image) in encoded.filter(|(frame, _)| run.encoded.contains(frame)) {
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
