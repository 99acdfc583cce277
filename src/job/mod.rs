//! The pipeline of a `run`: rank 0 prepares and broadcasts the plan, every rank stylizes its
//! range of frames, rank 0 encodes them in order and publishes the output.

mod image;
mod logs;
pub mod plan;
mod progress;
pub mod report;
mod resume;
mod run;
mod sink;
mod watch;

pub use image::stylize_image;
pub use logs::{publish as publish_log, stem_of};
pub use run::{run, RunOptions, RunSummary};
pub use watch::{watch, WatchOptions, WatchSummary};

use crate::cluster::ClusterError;
use crate::engine::EngineError;
use crate::media::MediaError;
use crate::model::ModelError;
use crate::storage::StorageError;

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
    /// This rank stops because of a failure rank 0 reports.
    #[error("stopped because another rank failed")]
    ReportedByRoot,
}

impl From<crate::storage::blob::BlobError> for JobError {
    fn from(error: crate::storage::blob::BlobError) -> JobError {
        JobError::Storage(error.into())
    }
}

impl JobError {
    fn during_run(self) -> JobError {
        match self {
            JobError::DuringRun(_) => self,
            other => JobError::DuringRun(Box::new(other)),
        }
    }
}
