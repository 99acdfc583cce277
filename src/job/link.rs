//! How a rank's worker talks to the coordinator on rank 0: it asks for chunks (dynamic
//! schedule), reports each stylized frame, hands over each encoded chunk and its figures at the
//! end. One trait, two links: in-process channels for rank 0's own worker, MPI messages for
//! every other rank, so every rank runs the same worker loop. On rank 0 a relay thread per
//! remote rank turns that rank's messages into the coordinator's [`Event`]s.

use super::plan::{Plan, Schedule};
use super::report::{RankInfo, WorkerStats};
use super::segment::Segment;
use super::JobError;
use crate::cluster::{self, ClusterError, Tag, ROOT};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

/// What the coordinator hears from the ranks.
pub enum Event {
    Joined(RankInfo),
    /// A rank asks for chunks (dynamic schedule).
    Request {
        rank: usize,
    },
    FrameDone {
        rank: usize,
        frame: usize,
        compute_s: f64,
    },
    /// A rank encoded `chunk`: the segment to store, or `None` when it is in the work
    /// directory already (rank 0's own).
    ChunkDone {
        chunk: usize,
        segment: Option<Segment>,
    },
    Finished {
        rank: usize,
        stats: WorkerStats,
    },
    Failed(JobError),
}

pub trait Link {
    /// The next chunks to compute (ascending), or `None` when there are no more.
    fn next_chunks(&mut self) -> Result<Option<Vec<usize>>, JobError>;
    fn frame_done(&mut self, frame: usize, compute_s: f64) -> Result<(), JobError>;
    /// Chunk `chunk` is encoded, at `path`.
    fn chunk_done(&mut self, chunk: usize, path: &Path) -> Result<(), JobError>;
    /// The work is done; `stats` are this rank's figures.
    fn finished(&mut self, stats: WorkerStats) -> Result<(), JobError>;
    /// Seconds spent moving data to rank 0 so far.
    fn transfer_seconds(&self) -> f64;
}

/// A rank's chunks under the static schedule, handed out once; `None` under the dynamic one.
struct StaticShare(Option<Vec<usize>>);

impl StaticShare {
    fn of(plan: &Plan, rank: usize) -> StaticShare {
        StaticShare((plan.schedule == Schedule::Static).then(|| plan.static_share(rank)))
    }

    /// The share the first time, then nothing; `None` under the dynamic schedule.
    fn take(&mut self) -> Option<Option<Vec<usize>>> {
        let share = self.0.as_mut()?;
        Some(Some(std::mem::take(share)).filter(|chunks| !chunks.is_empty()))
    }
}

/// Rank 0's own worker: it encodes straight into the work directory.
pub struct LocalLink {
    events: SyncSender<Event>,
    assignments: Receiver<Option<usize>>,
    static_share: StaticShare,
}

/// The coordinator stopped listening: it failed, and reports why itself.
fn coordinator_gone() -> JobError {
    JobError::ReportedByRoot
}

impl LocalLink {
    pub fn new(
        plan: &Plan,
        events: SyncSender<Event>,
        assignments: Receiver<Option<usize>>,
    ) -> LocalLink {
        LocalLink {
            events,
            assignments,
            static_share: StaticShare::of(plan, ROOT),
        }
    }

    fn send(&self, event: Event) -> Result<(), JobError> {
        self.events.send(event).map_err(|_| coordinator_gone())
    }
}

impl Link for LocalLink {
    fn next_chunks(&mut self) -> Result<Option<Vec<usize>>, JobError> {
        if let Some(share) = self.static_share.take() {
            return Ok(share);
        }
        self.send(Event::Request { rank: ROOT })?;
        let chunk = self.assignments.recv().map_err(|_| coordinator_gone())?;
        Ok(chunk.map(|c| vec![c]))
    }

    fn frame_done(&mut self, frame: usize, compute_s: f64) -> Result<(), JobError> {
        self.send(Event::FrameDone {
            rank: ROOT,
            frame,
            compute_s,
        })
    }

    fn chunk_done(&mut self, chunk: usize, _path: &Path) -> Result<(), JobError> {
        self.send(Event::ChunkDone {
            chunk,
            segment: None,
        })
    }

    fn finished(&mut self, stats: WorkerStats) -> Result<(), JobError> {
        self.send(Event::Finished { rank: ROOT, stats })
    }

    fn transfer_seconds(&self) -> f64 {
        0.0
    }
}

/// Any other rank: messages to rank 0, each wait bounded by `--rank-timeout`.
pub struct MpiLink {
    static_share: StaticShare,
    timeout: Duration,
    transfer: Duration,
}

impl MpiLink {
    /// Introduces this rank to rank 0.
    pub fn new(plan: &Plan, about: &RankInfo, timeout: Duration) -> Result<MpiLink, JobError> {
        let link = MpiLink {
            static_share: StaticShare::of(plan, about.rank),
            timeout,
            transfer: Duration::ZERO,
        };
        link.send(Tag::Hello, serde_json::to_vec(about).expect("serializes"))?;
        Ok(link)
    }

    fn send(&self, tag: Tag, bytes: Vec<u8>) -> Result<(), JobError> {
        Ok(cluster::send_message(ROOT, tag, bytes, self.timeout)?)
    }
}

impl Link for MpiLink {
    fn next_chunks(&mut self) -> Result<Option<Vec<usize>>, JobError> {
        if let Some(share) = self.static_share.take() {
            return Ok(share);
        }
        self.send(Tag::Request, Vec::new())?;
        let answer = cluster::expect_message(ROOT, Tag::Assign, self.timeout)?;
        let chunk: Option<usize> =
            serde_json::from_slice(&answer).map_err(|_| ClusterError::Malformed {
                rank: ROOT,
                what: "chunk assignment",
            })?;
        Ok(chunk.map(|c| vec![c]))
    }

    fn frame_done(&mut self, frame: usize, compute_s: f64) -> Result<(), JobError> {
        let mut message = (frame as u64).to_le_bytes().to_vec();
        message.extend_from_slice(&compute_s.to_le_bytes());
        self.send(Tag::FrameDone, message)
    }

    fn chunk_done(&mut self, chunk: usize, path: &Path) -> Result<(), JobError> {
        let started = Instant::now();
        let message = Segment::read(path)?.encode(chunk);
        self.send(Tag::Segment, message)?;
        self.transfer += started.elapsed();
        let _ = std::fs::remove_file(path).or_else(|_| std::fs::remove_dir_all(path));
        Ok(())
    }

    fn finished(&mut self, mut stats: WorkerStats) -> Result<(), JobError> {
        (stats.mpi_bytes_sent, stats.mpi_bytes_received) = cluster::traffic();
        self.send(
            Tag::Finished,
            serde_json::to_vec(&stats).expect("serializes"),
        )
    }

    fn transfer_seconds(&self) -> f64 {
        self.transfer.as_secs_f64()
    }
}

/// Rank 0's answer to a remote rank's request for chunks.
pub fn assign(rank: usize, chunk: Option<usize>, timeout: Duration) -> Result<(), JobError> {
    let message = serde_json::to_vec(&chunk).expect("serializes");
    Ok(cluster::send_message(rank, Tag::Assign, message, timeout)?)
}

/// On rank 0: turns remote rank `rank`'s messages into events until it finishes or fails.
pub fn relay(rank: usize, events: SyncSender<Event>, timeout: Duration) {
    loop {
        let event = match cluster::receive_message(rank, timeout) {
            Ok((tag, data)) => parse(rank, tag, &data).unwrap_or_else(|what| {
                Event::Failed(ClusterError::Malformed { rank, what }.into())
            }),
            Err(error) => Event::Failed(error.into()),
        };
        let last = matches!(event, Event::Finished { .. } | Event::Failed(_));
        if events.send(event).is_err() || last {
            return;
        }
    }
}

fn parse(rank: usize, tag: Tag, data: &[u8]) -> Result<Event, &'static str> {
    Ok(match tag {
        Tag::Hello => Event::Joined(serde_json::from_slice(data).map_err(|_| "greeting")?),
        Tag::Request => Event::Request { rank },
        Tag::FrameDone => {
            let (frame, seconds) = data
                .split_first_chunk::<8>()
                .and_then(|(f, s)| Some((*f, <[u8; 8]>::try_from(s).ok()?)))
                .ok_or("frame report")?;
            Event::FrameDone {
                rank,
                frame: u64::from_le_bytes(frame) as usize,
                compute_s: f64::from_le_bytes(seconds),
            }
        }
        Tag::Segment => {
            let (chunk, segment) = Segment::decode(data).ok_or("segment")?;
            Event::ChunkDone {
                chunk,
                segment: Some(segment),
            }
        }
        Tag::Finished => Event::Finished {
            rank,
            stats: serde_json::from_slice(data).map_err(|_| "report of figures")?,
        },
        Tag::Failure | Tag::Announce | Tag::Assign => return Err("message"),
    })
}
