//! Local staging. Everything is staged in a hidden directory beside a local output (or in the
//! temporary directory for a blob output or a downloaded input) and only moved into place (a
//! rename on the same filesystem) once complete, so a failed or interrupted run never leaves a
//! half-written file where the user expects a finished one. Staging directories are removed on
//! error, Ctrl-C or SIGTERM.

use super::StorageError;
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Bytes hashed at each end of a file to recognise it without reading it all.
const IDENTITY_SAMPLE: u64 = 1 << 20;

/// What recognises a file without reading it all: its size and a hash of its first and last
/// MiB. A checkpoint is tied to its input by it, and a rank knows it reads the same input as
/// rank 0 (on a shared filesystem) by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    pub bytes: u64,
    pub hash: String,
}

impl FileIdentity {
    pub fn of(path: &Path) -> std::io::Result<FileIdentity> {
        let mut file = std::fs::File::open(path)?;
        let bytes = file.metadata()?.len();
        let mut head = Vec::new();
        file.by_ref().take(IDENTITY_SAMPLE).read_to_end(&mut head)?;
        let mut tail = Vec::new();
        file.seek(SeekFrom::Start(bytes.saturating_sub(IDENTITY_SAMPLE)))?;
        file.read_to_end(&mut tail)?;
        Ok(FileIdentity {
            bytes,
            hash: format!(
                "{:016x}",
                crate::hash::fnv1a([head.as_slice(), tail.as_slice()])
            ),
        })
    }
}

/// Staging directories alive in this process, removed if the process is told to stop.
static LIVE_STAGING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The names of the files in `dir`, sorted.
pub fn sorted_file_names(dir: &Path) -> Result<Vec<std::ffi::OsString>, StorageError> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|source| StorageError::Unwritable {
            dir: dir.display().to_string(),
            source,
        })?
        .filter_map(|entry| Some(entry.ok()?.file_name()))
        .collect();
    names.sort();
    Ok(names)
}

/// Removes every live staging directory now (the process is being stopped); returns whether
/// there was any.
pub fn remove_all_staging() -> bool {
    let staged = LIVE_STAGING.lock().map(|d| d.clone()).unwrap_or_default();
    for dir in &staged {
        let _ = std::fs::remove_dir_all(dir);
    }
    !staged.is_empty()
}

fn forget(dir: &Path) {
    if let Ok(mut live) = LIVE_STAGING.lock() {
        live.retain(|d| d != dir);
    }
}

/// A staging directory for one output; removed with everything in it unless published.
pub struct Staging {
    dir: tempfile::TempDir,
    target_dir: PathBuf,
}

/// The directory an output path writes into (`.` for a bare file name).
pub fn output_directory(output: &Path) -> PathBuf {
    match output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Refuses an output that would overwrite the input.
pub fn check_not_input(output: &Path, input: &Path) -> Result<(), StorageError> {
    let resolved_output = output_directory(output)
        .canonicalize()
        .ok()
        .zip(output.file_name())
        .map(|(dir, name)| dir.join(name));
    if resolved_output.is_some() && resolved_output == input.canonicalize().ok() {
        return Err(StorageError::OutputIsInput {
            output: output.display().to_string(),
        });
    }
    Ok(())
}

impl Drop for Staging {
    fn drop(&mut self) {
        forget(self.dir.path());
    }
}

impl Staging {
    /// Creates the staging directory beside `output`.
    pub fn beside(output: &Path) -> Result<Staging, StorageError> {
        let target_dir = output_directory(output);
        if !target_dir.is_dir() {
            return Err(StorageError::MissingDirectory {
                dir: target_dir.display().to_string(),
            });
        }
        Staging::create_in(target_dir, ".stylemill-staging-")
    }

    /// Creates a staging directory in the system's temporary directory (`TMPDIR`).
    pub fn temporary() -> Result<Staging, StorageError> {
        Staging::create_in(std::env::temp_dir(), "stylemill-")
    }

    fn create_in(target_dir: PathBuf, prefix: &str) -> Result<Staging, StorageError> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&target_dir)
            .map_err(|source| StorageError::Unwritable {
                dir: target_dir.display().to_string(),
                source,
            })?;
        if let Ok(mut live) = LIVE_STAGING.lock() {
            live.push(dir.path().to_path_buf());
        }
        Ok(Staging { dir, target_dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Moves the staged file `name` to `target`, replacing any previous file there.
    pub fn publish_file(self, name: &str, target: &Path) -> Result<(), StorageError> {
        std::fs::rename(self.dir.path().join(name), target).map_err(|source| {
            StorageError::Publish {
                target: target.display().to_string(),
                source,
            }
        })
    }

    /// Moves the files of `dirs`, in order, into the output directory: by rename, or for a
    /// work directory on another filesystem by a copy into the staging directory first, so
    /// that every file appears complete. Returns how many were moved.
    pub fn publish_from(self, dirs: &[PathBuf]) -> Result<usize, StorageError> {
        let mut moved = 0;
        for dir in dirs {
            for name in sorted_file_names(dir)? {
                let (source, target) = (dir.join(&name), self.target_dir.join(&name));
                let publish = |source| StorageError::Publish {
                    target: target.display().to_string(),
                    source,
                };
                if std::fs::rename(&source, &target).is_err() {
                    let staged = self.dir.path().join(&name);
                    std::fs::copy(&source, &staged).map_err(publish)?;
                    std::fs::rename(&staged, &target).map_err(publish)?;
                }
                moved += 1;
            }
        }
        Ok(moved)
    }
}
