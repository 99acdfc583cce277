//! Moving whole files to and from blobs, in blocks, never holding a whole video in memory.
//! Downloads read ranges of at most 4 MiB with a per-range MD5 from the service, pinned to the
//! blob's ETag, and check the whole file against the blob's stored MD5 when it has one. Uploads
//! stage blocks with a transactional MD5 (the service refuses a corrupted block) and commit the
//! block list with the file's MD5: the blob appears under its name only at that commit, so a
//! failure leaves nothing half-written there.

use super::{Blob, BlobError, Failure, Operation};
use azure_core::http::{Etag, RequestContent};
use azure_storage_blob::models::{
    BlobClientDownloadOptions, BlobClientGetPropertiesResultHeaders,
    BlockBlobClientCommitBlockListOptions, BlockBlobClientStageBlockOptions, BlockLookupList,
};
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

/// The largest range the service returns an MD5 for.
const DOWNLOAD_RANGE: u64 = 4 * 1024 * 1024;
/// Requests in flight at once for one transfer.
const PARALLEL: usize = 4;

/// What an upload may do.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    pub block_size: usize,
    /// Replace an existing blob (else the commit fails if one appeared meanwhile).
    pub overwrite: bool,
    pub content_type: &'static str,
    pub metadata: HashMap<String, String>,
}

/// Properties of an existing blob.
pub struct Properties {
    pub size: u64,
    pub etag: Option<Etag>,
    pub md5: Option<Vec<u8>>,
}

impl Blob {
    /// The blob's size, ETag and stored MD5, or `NotFound`.
    pub async fn properties(&self) -> Result<Properties, BlobError> {
        let client = self.client()?;
        self.retrying(Operation::Read, || async {
            let response = client.get_properties(None).await?;
            Ok(Properties {
                size: response.content_length()?.unwrap_or(0),
                etag: response.etag()?,
                md5: response.content_md5()?,
            })
        })
        .await
    }

    /// Whether the blob exists.
    pub async fn exists(&self) -> Result<bool, BlobError> {
        match self.properties().await {
            Ok(_) => Ok(true),
            Err(BlobError::NotFound { kind: "blob", .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Downloads the blob into `path` (created or truncated).
    pub async fn download_to(&self, path: &Path) -> Result<u64, BlobError> {
        let properties = self.properties().await?;
        let client = self.client()?;
        let local = |source| BlobError::Local {
            path: path.display().to_string(),
            address: self.address.to_string(),
            source,
        };
        let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(local)?);
        let mut whole = Md5::new();
        let ranges = (0..properties.size)
            .step_by(DOWNLOAD_RANGE as usize)
            .map(|start| {
                let end = (start + DOWNLOAD_RANGE).min(properties.size);
                let (client, etag) = (&client, properties.etag.clone());
                async move {
                    self.retrying(Operation::Read, || {
                        let etag = etag.clone();
                        async move {
                            let options = BlobClientDownloadOptions {
                                range: Some((start..end).into()),
                                range_get_content_md5: Some(true),
                                if_match: etag,
                                parallel: std::num::NonZero::new(1),
                                ..Default::default()
                            };
                            let response = client.download(Some(options)).await?;
                            let expected = response.properties.content_md5.clone();
                            let bytes = response.body.collect().await?;
                            if bytes.len() as u64 != end - start {
                                return Err(Failure::Integrity(format!(
                                    "bytes {start}..{end} arrived as {} bytes",
                                    bytes.len()
                                )));
                            }
                            if let Some(expected) = expected {
                                if Md5::digest(&bytes).as_slice() != expected.as_slice() {
                                    return Err(Failure::Integrity(format!(
                                        "bytes {start}..{end} do not match their MD5"
                                    )));
                                }
                            }
                            Ok(bytes)
                        }
                    })
                    .await
                }
            });
        let mut ranges = futures::stream::iter(ranges).buffered(PARALLEL);
        while let Some(bytes) = ranges.try_next().await? {
            whole.update(&bytes);
            file.write_all(&bytes).map_err(local)?;
        }
        file.flush().map_err(local)?;
        if let Some(stored) = properties.md5 {
            if whole.finalize().as_slice() != stored.as_slice() {
                return Err(BlobError::Integrity {
                    address: self.address.to_string(),
                    attempts: 1,
                    detail: "the downloaded file does not match the blob's stored MD5".into(),
                });
            }
        } else {
            log::debug!("{} has no stored MD5; each range was checked", self.address);
        }
        Ok(properties.size)
    }

    /// Uploads the file at `path` as a block blob: blocks staged in parallel, then committed.
    pub async fn upload_from(
        &self,
        path: &Path,
        options: &UploadOptions,
    ) -> Result<u64, BlobError> {
        let local = |source| BlobError::Local {
            path: path.display().to_string(),
            address: self.address.to_string(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(local)?;
        let client = self.client()?.block_blob_client();
        let nonce = format!(
            "{:016x}",
            crate::hash::fnv1a([format!("{path:?}{:?}", std::time::SystemTime::now()).as_bytes()])
        );
        let mut whole = Md5::new();
        let mut block_ids = Vec::new();
        let mut staging = futures::stream::FuturesUnordered::new();
        let mut size = 0u64;
        loop {
            let mut block = Vec::with_capacity(options.block_size);
            (&mut file)
                .take(options.block_size as u64)
                .read_to_end(&mut block)
                .map_err(local)?;
            if block.is_empty() {
                break;
            }
            let last = block.len() < options.block_size;
            size += block.len() as u64;
            whole.update(&block);
            let id = format!("{nonce}-{:08}", block_ids.len()).into_bytes();
            block_ids.push(id.clone());
            let client = &client;
            staging.push(async move {
                let md5 = Md5::digest(&block).to_vec();
                let bytes = block;
                self.retrying(Operation::Write, || {
                    let options = BlockBlobClientStageBlockOptions {
                        transactional_content_md5: Some(md5.clone()),
                        ..Default::default()
                    };
                    let (bytes, id) = (bytes.clone(), id.clone());
                    async move {
                        client
                            .stage_block(
                                &id,
                                bytes.len() as u64,
                                RequestContent::from(bytes),
                                Some(options),
                            )
                            .await?;
                        Ok(())
                    }
                })
                .await
            });
            if staging.len() >= PARALLEL {
                staging.try_next().await?;
            }
            if last {
                break;
            }
        }
        while staging.try_next().await?.is_some() {}
        let md5 = whole.finalize().to_vec();
        let blocks = BlockLookupList {
            committed: None,
            latest: Some(block_ids),
            uncommitted: None,
        };
        let blocks: RequestContent<BlockLookupList, _> = blocks
            .try_into()
            .map_err(|e| self.refused(Operation::Write, e))?;
        let mut commits_sent = 0;
        let committed = self
            .retrying(Operation::Write, || {
                commits_sent += 1;
                let commit = BlockBlobClientCommitBlockListOptions {
                    blob_content_md5: Some(md5.clone()),
                    blob_content_type: Some(options.content_type.to_string()),
                    metadata: Some(options.metadata.clone()),
                    if_none_match: (!options.overwrite).then(|| Etag::from("*")),
                    ..Default::default()
                };
                let (client, blocks) = (&client, blocks.clone());
                async move {
                    client.commit_block_list(blocks, Some(commit)).await?;
                    Ok(())
                }
            })
            .await;
        match committed {
            // A commit whose answer was lost may have landed: its retry then finds "our" blob.
            Err(BlobError::AlreadyExists { .. })
                if commits_sent > 1 && self.holds(size, &md5).await? =>
            {
                log::info!(
                    "{}: an earlier commit attempt had landed; its blob holds this upload",
                    self.address
                );
                Ok(size)
            }
            committed => committed.map(|()| size),
        }
    }

    /// Whether the blob exists with exactly `size` bytes whose MD5 is `md5`.
    async fn holds(&self, size: u64, md5: &[u8]) -> Result<bool, BlobError> {
        let properties = self.properties().await?;
        Ok(properties.size == size && properties.md5.as_deref() == Some(md5))
    }

    /// Stores small bytes as a whole blob; with `if_absent`, returns `false` instead of
    /// replacing a blob that exists.
    pub async fn put(
        &self,
        bytes: Vec<u8>,
        if_absent: bool,
        metadata: HashMap<String, String>,
    ) -> Result<bool, BlobError> {
        let client = self.client()?.block_blob_client();
        let md5 = Md5::digest(&bytes).to_vec();
        let stored = self
            .retrying(Operation::Write, || {
                let options = azure_storage_blob::models::BlockBlobClientUploadOptions {
                    blob_content_md5: Some(md5.clone()),
                    metadata: Some(metadata.clone()),
                    if_none_match: if_absent.then(|| Etag::from("*")),
                    ..Default::default()
                };
                let (client, bytes) = (&client, bytes.clone());
                async move {
                    client
                        .upload(RequestContent::from(bytes), Some(options))
                        .await?;
                    Ok(())
                }
            })
            .await;
        match stored {
            Ok(()) => Ok(true),
            Err(BlobError::AlreadyExists { .. }) if if_absent => Ok(false),
            Err(error) => Err(error),
        }
    }
}
