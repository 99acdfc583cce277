//! Resuming after a failure. With `--work-dir`, every finished chunk stays in the work directory
//! (each appears only complete, by rename), beside a manifest saying which job it belongs to:
//! the input, the style, the frame size, the frame count, the chunking, the output settings, the
//! deinterlacing, the temporal filter and the stylemill version. A rerun of the same command
//! computes only the chunks that are missing; a work directory holding another job's chunks is
//! refused (or cleared with `--restart`).

use super::plan::Plan;
use super::JobError;
use crate::frame::FrameSize;
use crate::media::encode::chunk_name;
use crate::media::output::OutputKind;
use crate::media::picture::Deinterlacing;
use crate::temporal::TemporalSettings;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const MANIFEST: &str = "checkpoint.json";

/// What a checkpoint belongs to; two runs may share chunks only if these are all equal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: String,
    pub input: String,
    pub input_bytes: u64,
    pub input_hash: String,
    pub style_hash: String,
    pub size: FrameSize,
    pub frames: usize,
    pub chunk_frames: usize,
    pub output: OutputKind,
    #[serde(default)]
    pub deinterlacing: Deinterlacing,
    #[serde(default)]
    pub temporal: Option<TemporalSettings>,
}

fn io_error(dir: &Path) -> impl Fn(std::io::Error) -> JobError + '_ {
    move |source| JobError::WorkDir {
        dir: dir.display().to_string(),
        detail: source.to_string(),
    }
}

impl Manifest {
    /// The identity of `plan`'s job with the style `weights`.
    pub fn new(plan: &Plan, weights: &[u8]) -> Manifest {
        Manifest {
            version: env!("CARGO_PKG_VERSION").to_string(),
            input: plan.input.path.display().to_string(),
            input_bytes: plan.input_identity.bytes,
            input_hash: plan.input_identity.hash.clone(),
            style_hash: format!("{:016x}", crate::hash::fnv1a([weights])),
            size: plan.size,
            frames: plan.frames,
            chunk_frames: plan.chunk_frames,
            output: plan.output.kind.clone(),
            deinterlacing: plan.input.picture.deinterlacing,
            temporal: plan.temporal,
        }
    }

    /// What differs from `other`, in words, or `None` if they describe the same job.
    fn difference(&self, other: &Manifest) -> Option<&'static str> {
        if self.version != other.version {
            Some("another stylemill version")
        } else if self.input_bytes != other.input_bytes || self.input_hash != other.input_hash {
            Some("another input")
        } else if self.style_hash != other.style_hash {
            Some("another style")
        } else if self.size != other.size {
            Some("another frame size (--scale)")
        } else if self.frames != other.frames {
            Some("another frame count (--limit)")
        } else if self.chunk_frames != other.chunk_frames {
            Some("another --chunk-frames")
        } else if self.output != other.output {
            Some("other output settings")
        } else if self.deinterlacing != other.deinterlacing {
            Some("another --deinterlace")
        } else if self.temporal != other.temporal {
            Some("another --temporal or --temporal-strength")
        } else {
            None
        }
    }
}

/// Prepares `dir` to hold this job's chunks; returns its absolute path and the chunks already
/// complete there. Chunks of another job are refused, or removed when `restart` is set.
pub fn prepare_work_dir(
    dir: &Path,
    manifest: &Manifest,
    chunks: usize,
    restart: bool,
) -> Result<(PathBuf, Vec<usize>), JobError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let dir = &dir.canonicalize().map_err(io_error(dir))?;
    let error = io_error(dir);
    let manifest_path = dir.join(MANIFEST);
    if let Ok(text) = std::fs::read_to_string(&manifest_path) {
        let previous: Option<Manifest> = serde_json::from_str(&text).ok();
        let difference = match &previous {
            Some(previous) => manifest.difference(previous),
            None => Some("an unreadable manifest"),
        };
        if let Some(what) = difference {
            if !restart {
                return Err(JobError::CheckpointMismatch {
                    dir: dir.display().to_string(),
                    what,
                });
            }
            log::info!(
                "--restart: discarding the checkpoint in {} ({what})",
                dir.display()
            );
            clear(dir)?;
        }
    }
    remove_partial_chunks(dir)?;
    let staged = tempfile::NamedTempFile::new_in(dir).map_err(&error)?;
    std::fs::write(
        staged.path(),
        serde_json::to_vec_pretty(manifest).expect("manifest serializes"),
    )
    .map_err(&error)?;
    staged.persist(&manifest_path).map_err(|e| error(e.error))?;
    let done = (0..chunks)
        .filter(|&i| dir.join(chunk_name(i, &manifest.output)).exists())
        .collect();
    Ok((dir.to_path_buf(), done))
}

/// Chunk files and directories in `dir` (finished or partial).
fn chunk_entries(dir: &Path) -> Result<Vec<PathBuf>, JobError> {
    let entries = std::fs::read_dir(dir).map_err(io_error(dir))?;
    Ok(entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("chunk-"))
        })
        .collect())
}

fn remove(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// Removes what an interrupted encoder left half-written.
fn remove_partial_chunks(dir: &Path) -> Result<(), JobError> {
    for path in chunk_entries(dir)? {
        if path.extension().is_some_and(|e| e == "partial") {
            remove(&path).map_err(io_error(dir))?;
        }
    }
    Ok(())
}

/// Removes every chunk and the manifest: after a successful run, or for `--restart`.
pub fn clear(dir: &Path) -> Result<(), JobError> {
    for path in chunk_entries(dir)? {
        remove(&path).map_err(io_error(dir))?;
    }
    match std::fs::remove_file(dir.join(MANIFEST)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(dir)(e)),
        _ => Ok(()),
    }
}
