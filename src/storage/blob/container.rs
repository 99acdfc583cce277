//! What watch mode asks of a container: list its blobs with their metadata, and take, keep and
//! give back a blob lease (the lock that keeps two watchers off the same video).

use super::{Blob, BlobError, Failure, Operation};
use azure_storage_blob::models::{
    BlobClientAcquireLeaseResultHeaders, BlobContainerClientListBlobsOptions, ListBlobsIncludeItem,
};
use std::collections::HashMap;

/// One blob of a listing.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub etag: String,
    pub metadata: HashMap<String, String>,
}

/// The service's answer when a lease is held by someone else.
const LEASE_TAKEN: &str = "LeaseAlreadyPresent";

impl Blob {
    /// The blobs of this address's container whose names start with `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BlobError> {
        let container = self.container_client()?;
        self.retrying(Operation::List, || async {
            let options = BlobContainerClientListBlobsOptions {
                include: Some(vec![ListBlobsIncludeItem::Metadata]),
                prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
                ..Default::default()
            };
            let mut pager = container.list_blobs(Some(options))?;
            let mut listed = Vec::new();
            while let Some(item) = futures::TryStreamExt::try_next(&mut pager).await? {
                let properties = item.properties.unwrap_or_default();
                listed.push(Listed {
                    name: item.name.unwrap_or_default(),
                    etag: properties.etag.map(|e| e.to_string()).unwrap_or_default(),
                    metadata: item.metadata.and_then(|m| m.values).unwrap_or_default(),
                });
            }
            Ok(listed)
        })
        .await
    }

    /// Takes a lease for `seconds` (15 to 60); `None` when another holder has it.
    pub async fn acquire_lease(&self, seconds: i32) -> Result<Option<String>, BlobError> {
        let client = self.client()?;
        let taken = self
            .retrying(Operation::Lease, || async {
                match client.acquire_lease(seconds, None).await {
                    Ok(response) => Ok(response.lease_id()?),
                    Err(error) if super::error_code(&error).as_deref() == Some(LEASE_TAKEN) => {
                        Ok(None)
                    }
                    Err(error) => Err(Failure::Service(error)),
                }
            })
            .await?;
        Ok(taken)
    }

    pub async fn renew_lease(&self, lease: &str) -> Result<(), BlobError> {
        let client = self.client()?;
        self.retrying(Operation::Lease, || async {
            client.renew_lease(lease.to_string(), None).await?;
            Ok(())
        })
        .await
    }

    pub async fn release_lease(&self, lease: &str) -> Result<(), BlobError> {
        let client = self.client()?;
        self.retrying(Operation::Lease, || async {
            client.release_lease(lease.to_string(), None).await?;
            Ok(())
        })
        .await
    }
}
