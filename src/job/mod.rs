//! The pipeline of a `run`: rank 0 prepares and broadcasts the plan; every rank decodes,
//! stylizes and encodes its own chunks; rank 0 gathers the encoded chunks and publishes the
//! joined output.

mod coordinator;
mod image;
mod link;
mod logs;
pub mod plan;
mod prepare;
mod progress;
pub mod report;
mod resume;
mod run;
mod schedule;
mod segment;
mod watch;
mod worker;

pub use image::stylize_image;
pub use logs::{publish as publish_log, stem_of};
pub use run::{run, RunOptions, RunSummary};
pub use watch::{watch, WatchOptions, WatchSummary};

use crate::cluster::ClusterError;
use crate::engine::EngineError;
use crate::media::MediaError;
use crate::model::ModelError;
use crate::storage::blob::BlobError;
use crate::storage::StorageError;
use crate::temporal::TemporalError;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Temporal(#[from] TemporalError),
    #[error("cannot read image {path}: {detail}; pass a PNG or JPEG file")]
    ImageRead { path: String, detail: String },
    #[error("cannot write image {path}: {detail}; use a .png or .jpg output path")]
    ImageWrite { path: String, detail: String },
    #[error(
        "cannot use work directory {dir}: {detail}; choose a writable directory with free space"
    )]
    WorkDir { dir: String, detail: String },
    #[error("work directory {dir} holds the checkpoint of a different job ({what}); rerun the same command, pass --restart to discard it, or use another --work-dir")]
    CheckpointMismatch { dir: String, what: &'static str },
    #[error("cannot write {path}: {detail}; check the directory exists and is writable")]
    ReportWrite { path: String, detail: String },
    #[error(
        "--scale {0} is not a positive number; use for example --scale 2 to halve the frame size"
    )]
    BadScale(f64),
    #[error("--limit 0 stylizes nothing; give a positive number of frames or leave it out")]
    ZeroLimit,
    #[error("--chunk-frames 0 is not a chunk size; give a positive number of frames")]
    ZeroChunk,
    /// A failure while ranks were exchanging frames: the other ranks may be blocked in MPI
    /// calls, so the whole world must be aborted after reporting it.
    #[error(transparent)]
    DuringRun(Box<JobError>),
    /// Rank 0's own worker failed in a job of several ranks.
    #[error("rank {rank} failed: {source}")]
    OnRank { rank: usize, source: Box<JobError> },
    /// This rank stops because of a failure rank 0 reports.
    #[error("stopped because another rank failed")]
    ReportedByRoot,
}

impl From<BlobError> for JobError {
    fn from(error: BlobError) -> JobError {
        JobError::Storage(error.into())
    }
}

impl JobError {
    /// Whether retrying the same input cannot help: it is not a usable video (not one, truncated
    /// or corrupt, no video stream, no frames, frames too small or too large), or its output
    /// exists already.
    pub fn is_poison(&self) -> bool {
        match self {
            JobError::Media(error) => matches!(
                error,
                MediaError::NotAVideo { .. }
                    | MediaError::NoVideoStream { .. }
                    | MediaError::ZeroFrames { .. }
                    | MediaError::Corrupt { .. }
                    | MediaError::CorruptFrame { .. }
                    | MediaError::Output { .. }
            ),
            JobError::Engine(error) => matches!(
                error,
                EngineError::FrameTooSmall { .. } | EngineError::FrameTooLarge { .. }
            ),
            JobError::Storage(StorageError::Blob(BlobError::AlreadyExists { .. })) => true,
            JobError::Cluster(ClusterError::RankFailed { poison, .. }) => *poison,
            JobError::DuringRun(inner) => inner.is_poison(),
            JobError::OnRank { source, .. } => source.is_poison(),
            _ => false,
        }
    }

    fn during_run(self) -> JobError {
        match self {
            JobError::DuringRun(_) => self,
            other => JobError::DuringRun(Box::new(other)),
        }
    }
}
