//! Rank 0's coordinator: while every rank (rank 0's own worker included) works, it answers
//! requests for chunks under the dynamic schedule, stores the encoded chunks other ranks send
//! into the work directory, records every frame for the progress, the events and the report,
//! and collects each rank's figures when it finishes. The first failure any rank reports ends it.

use super::link::{self, Event};
use super::plan::Plan;
use super::progress::Progress;
use super::report::{Recorder, WorkerStats};
use super::schedule::DynamicSchedule;
use super::JobError;
use crate::cluster::ROOT;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Duration;

/// Rank 0's coordinator: answers requests for chunks, stores the chunks other ranks encoded,
/// records every frame, until every rank has finished. Returns every rank's figures.
pub fn coordinate(
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
