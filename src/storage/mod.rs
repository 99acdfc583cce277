//! Where inputs come from and outputs go: local files and Azure Blob Storage behind one
//! interface. An input is made local ([`fetch`]: the file itself, or a verified download into a
//! temporary staging directory); an output is produced in a staging directory and published
//! whole ([`OutputTarget`]: a rename beside a local output, or a block upload and commit for a
//! blob). Only rank 0 ever touches storage.

pub mod blob;
mod local;

pub use local::{
    check_not_input, output_directory, remove_all_staging, sorted_file_names, FileIdentity, Staging,
};

use blob::credentials::Credential;
use blob::transfer::UploadOptions;
use blob::{block_on, Blob, BlobAddress, BlobError, Operation};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(
        "output directory {dir} does not exist; create it first or choose another output path"
    )]
    MissingDirectory { dir: String },
    #[error(
        "cannot write in output directory {dir}: {source}; check its permissions and free space"
    )]
    Unwritable { dir: String, source: std::io::Error },
    #[error("output {output} is the input file; choose a different output path")]
    OutputIsInput { output: String },
    #[error("cannot move the finished output to {target}: {source}")]
    Publish {
        target: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("watch needs a blob container URL, not {given}; give for example https://ACCOUNT.blob.core.windows.net/videos")]
    WatchNeedsContainer { given: String },
}

/// The metadata stylemill puts on every blob it writes, so that watch mode never takes its own
/// outputs for new videos.
pub const OUTPUT_METADATA: (&str, &str) = ("stylemill", "output");

/// A local path or a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    Blob(BlobAddress),
}

impl Location {
    /// A blob for an http(s) URL (read relative to `blob_endpoint` when it starts with it),
    /// else a local path.
    pub fn parse(text: &str, blob_endpoint: Option<&str>) -> Result<Location, StorageError> {
        if blob::is_blob_url(text) {
            Ok(Location::Blob(BlobAddress::parse(text, blob_endpoint)?))
        } else {
            Ok(Location::Local(PathBuf::from(text)))
        }
    }

    /// How the location is shown to the user: never with a SAS token.
    pub fn shown(&self) -> String {
        match self {
            Location::Local(path) => path.display().to_string(),
            Location::Blob(address) => address.to_string(),
        }
    }

    /// A path whose file name is the location's (for choosing the container by extension).
    pub fn as_path(&self) -> PathBuf {
        match self {
            Location::Local(path) => path.clone(),
            Location::Blob(address) => PathBuf::from(address.to_string()),
        }
    }
}

/// Settings for blob transfers (from `--block-size` and `--overwrite`).
#[derive(Debug, Clone)]
pub struct TransferSettings {
    pub block_size: usize,
    pub overwrite: bool,
}

/// An input as a local file; a downloaded copy is removed when this is dropped.
pub struct LocalInput {
    path: PathBuf,
    _download: Option<Staging>,
}

impl LocalInput {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Makes `input` local: a local path as it is, a blob downloaded (streamed to disk and checked).
pub fn fetch(input: &Location) -> Result<LocalInput, StorageError> {
    match input {
        Location::Local(path) => Ok(LocalInput {
            path: path.clone(),
            _download: None,
        }),
        Location::Blob(address) => {
            let blob = Blob::new(address)?;
            let staging = Staging::temporary()?;
            let path = staging.path().join(address.local_file_name());
            let started = std::time::Instant::now();
            let size = block_on(blob.download_to(&path))?;
            log::info!(
                "downloaded {address} ({:.1} MiB in {:.1} s)",
                size as f64 / 1048576.0,
                started.elapsed().as_secs_f64()
            );
            Ok(LocalInput {
                path,
                _download: Some(staging),
            })
        }
    }
}

/// Where a run's output is staged, and how it is published once complete.
pub struct OutputTarget {
    staging: Staging,
    destination: Destination,
}

enum Destination {
    Local(PathBuf),
    Blob(Box<(Blob, UploadOptions)>),
}

impl OutputTarget {
    /// Checks that `output` can be written (and is not `input`) before any work is done.
    pub fn prepare(
        output: &Location,
        input: &Location,
        settings: &TransferSettings,
        frame_sequence: bool,
    ) -> Result<OutputTarget, StorageError> {
        if output == input {
            return Err(StorageError::OutputIsInput {
                output: output.shown(),
            });
        }
        match output {
            Location::Local(path) => {
                if let Location::Local(input) = input {
                    check_not_input(path, input)?;
                }
                Ok(OutputTarget {
                    staging: Staging::beside(path)?,
                    destination: Destination::Local(path.clone()),
                })
            }
            Location::Blob(address) => {
                let blob = Blob::new(address)?;
                check_sas_allows_writing(&blob)?;
                if !settings.overwrite && !frame_sequence {
                    match block_on(blob.exists()) {
                        Ok(true) => {
                            return Err(BlobError::AlreadyExists {
                                address: address.to_string(),
                            }
                            .into())
                        }
                        Ok(false) | Err(BlobError::PermissionDenied { .. }) => {}
                        Err(error) => return Err(error.into()),
                    }
                }
                let options = UploadOptions {
                    block_size: settings.block_size,
                    overwrite: settings.overwrite,
                    content_type: if frame_sequence {
                        "image/png"
                    } else {
                        "video/mp4"
                    },
                    metadata: HashMap::from([(
                        OUTPUT_METADATA.0.to_string(),
                        OUTPUT_METADATA.1.to_string(),
                    )]),
                };
                Ok(OutputTarget {
                    staging: Staging::temporary()?,
                    destination: Destination::Blob(Box::new((blob, options))),
                })
            }
        }
    }

    /// Where the output is produced before publishing.
    pub fn staging_path(&self) -> &Path {
        self.staging.path()
    }

    /// Publishes the staged file `name` as the output.
    pub fn publish_file(self, name: &str) -> Result<(), StorageError> {
        match &self.destination {
            Destination::Local(target) => self.staging.publish_file(name, target),
            Destination::Blob(upload) => {
                let (blob, options) = upload.as_ref();
                let started = std::time::Instant::now();
                let size = block_on(blob.upload_from(&self.staging.path().join(name), options))?;
                log::info!(
                    "uploaded {} ({:.1} MiB in {:.1} s)",
                    blob.address(),
                    size as f64 / 1048576.0,
                    started.elapsed().as_secs_f64()
                );
                Ok(())
            }
        }
    }

    /// Publishes the files of `dirs`, in name order, beside the output (a frame sequence):
    /// local files moved into the output directory, or blobs named after the output's folder.
    pub fn publish_from(self, dirs: &[PathBuf]) -> Result<usize, StorageError> {
        let (blob, options) = match &self.destination {
            Destination::Local(_) => return self.staging.publish_from(dirs),
            Destination::Blob(upload) => (&upload.0, &upload.1),
        };
        let folder = blob
            .address()
            .name()
            .rsplit_once('/')
            .map_or(String::new(), |(folder, _)| format!("{folder}/"));
        let mut published = 0;
        for dir in dirs {
            for name in sorted_file_names(dir)? {
                let blob_name = format!("{folder}{}", name.to_string_lossy());
                let frame = blob.at(blob.address().sibling(&blob_name));
                block_on(frame.upload_from(&dir.join(&name), options))?;
                published += 1;
            }
        }
        log::info!(
            "uploaded {published} frames to {}",
            blob.address().sibling(&folder)
        );
        Ok(published)
    }
}

/// A SAS states its permissions (`sp`): refuse one without write before any work is done.
fn check_sas_allows_writing(blob: &Blob) -> Result<(), StorageError> {
    let Credential::Sas { token, source } = blob.credential() else {
        return Ok(());
    };
    let permissions = blob::credentials::sas_parameter(token, "sp");
    match permissions {
        Some(permissions) if !permissions.contains('w') => Err(BlobError::PermissionDenied {
            credential: format!("SAS token from {source} (permissions sp={permissions})"),
            operation: Operation::Write.verb(),
            address: blob.address().to_string(),
            needed: Operation::Write.permission(),
        }
        .into()),
        _ => Ok(()),
    }
}

/// Stores a small file `name` in `folder` (a local directory, or a container URL with an
/// optional name prefix), whole or not at all; returns where it went.
pub fn store_small_file(
    folder: &Location,
    name: &str,
    bytes: Vec<u8>,
) -> Result<String, StorageError> {
    match folder {
        Location::Local(dir) => {
            let unwritable = |source| StorageError::Unwritable {
                dir: dir.display().to_string(),
                source,
            };
            let target = dir.join(name);
            let mut staged = tempfile::NamedTempFile::new_in(dir).map_err(unwritable)?;
            std::io::Write::write_all(&mut staged, &bytes).map_err(unwritable)?;
            staged.persist(&target).map_err(|e| unwritable(e.error))?;
            Ok(target.display().to_string())
        }
        Location::Blob(address) => {
            let prefix = address.name().trim_end_matches('/');
            let blob_name = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            let blob = Blob::new(address)?;
            let blob = blob.at(address.sibling(&blob_name));
            block_on(blob.put(
                bytes,
                false,
                HashMap::from([(OUTPUT_METADATA.0.to_string(), "log".to_string())]),
            ))?;
            Ok(blob.address().to_string())
        }
    }
}
