//! Azure Blob Storage through the maintained SDK (`azure_storage_blob`): clients for one
//! address with the right credential, a retry loop with backoff around every request (the SDK's
//! own retries are turned off so that each retry is logged and bounded here), and the mapping of
//! service answers to one clear sentence each. Transfers live in `transfer`, the container
//! operations watch mode needs in `container`.

pub mod address;
pub mod container;
pub mod credentials;
pub mod transfer;

pub use address::{is_blob_url, BlobAddress};

use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, RetryOptions, StatusCode};
use azure_storage_blob::{
    BlobClient, BlobClientOptions, BlobContainerClient, BlobContainerClientOptions,
};
use credentials::Credential;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob URL {url} is not usable: {problem}")]
    BadUrl { url: String, problem: String },
    #[error("no credential for storage account {account} at {endpoint}: put a SAS token in the URL, in ${variable} or in $STYLEMILL_SAS_TOKEN (Entra ID sign-in needs an https endpoint)")]
    NoCredential {
        account: String,
        endpoint: String,
        variable: String,
    },
    #[error("the SAS token for storage account {account} (from {origin}) expired at {expiry}; create a new SAS token")]
    SasExpired {
        account: String,
        origin: String,
        expiry: String,
    },
    #[error("storage account {account} refused the {credential} while accessing {address}: authentication failed ({reason}); create a new SAS token for this account, or sign in again")]
    AuthenticationFailed {
        account: String,
        credential: String,
        address: String,
        reason: String,
    },
    #[error("the {credential} does not allow {operation} {address}; use one with the {needed} permission")]
    PermissionDenied {
        credential: String,
        operation: &'static str,
        address: String,
        needed: &'static str,
    },
    #[error("{kind} {address} does not exist; check the URL")]
    NotFound { kind: &'static str, address: String },
    #[error("output blob {address} already exists; pass --overwrite to replace it, or choose another name")]
    AlreadyExists { address: String },
    #[error("cannot reach blob endpoint {endpoint} after {attempts} attempts ({detail}); check the URL, --blob-endpoint and the network, then rerun")]
    Unreachable {
        endpoint: String,
        attempts: u32,
        detail: String,
    },
    #[error(
        "{address} failed its integrity check after {attempts} attempts ({detail}); rerun the job"
    )]
    Integrity {
        address: String,
        attempts: u32,
        detail: String,
    },
    #[error("cannot sign in to storage account {account} with Entra ID ({detail}); run `az login`, use a managed identity, or set a SAS token in ${variable}")]
    SignIn {
        account: String,
        detail: String,
        variable: String,
    },
    #[error("blob storage could not {operation} {address}: {detail}")]
    Service {
        operation: &'static str,
        address: String,
        detail: String,
    },
    #[error("cannot use local file {path} for blob {address}: {source}")]
    Local {
        path: String,
        address: String,
        source: std::io::Error,
    },
}

/// How many times a request is tried before its error is reported.
pub const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The runtime the SDK's futures run on; stylemill's own code stays synchronous.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("stylemill-blob")
            .enable_all()
            .build()
            .expect("a tokio runtime starts")
    })
}

/// Runs a blob operation to completion from synchronous code.
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    runtime().block_on(future)
}

/// Runs a blob operation in the background (a lease renewal).
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    runtime().spawn(future)
}

/// An address with its credential resolved: makes SDK clients and explains their errors.
#[derive(Clone)]
pub struct Blob {
    address: BlobAddress,
    credential: Credential,
}

fn client_options() -> ClientOptions {
    ClientOptions {
        retry: RetryOptions::none(),
        ..Default::default()
    }
}

/// What an operation was, for error messages and the permission it needs.
#[derive(Clone, Copy)]
pub enum Operation {
    Read,
    Write,
    List,
    Lease,
}

impl Operation {
    pub fn verb(self) -> &'static str {
        match self {
            Operation::Read => "reading",
            Operation::Write => "writing",
            Operation::List => "listing",
            Operation::Lease => "leasing",
        }
    }

    pub fn permission(self) -> &'static str {
        match self {
            Operation::Read => "read (r)",
            Operation::Write => "write (w) and create (c)",
            Operation::List => "list (l)",
            Operation::Lease => "write (w)",
        }
    }

    fn infinitive(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::List => "list",
            Operation::Lease => "lease",
        }
    }
}

impl Blob {
    pub fn new(address: &BlobAddress) -> Result<Blob, BlobError> {
        Ok(Blob {
            credential: credentials::resolve(address)?,
            address: address.clone(),
        })
    }

    pub fn address(&self) -> &BlobAddress {
        &self.address
    }

    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// The same credential for another blob of the account.
    pub fn at(&self, address: BlobAddress) -> Blob {
        Blob {
            address,
            credential: self.credential.clone(),
        }
    }

    fn url_and_token(
        &self,
        address: &BlobAddress,
    ) -> Result<
        (
            azure_core::http::Url,
            Option<std::sync::Arc<dyn azure_core::credentials::TokenCredential>>,
        ),
        BlobError,
    > {
        match &self.credential {
            Credential::Sas { token, .. } => Ok((address.request_url(Some(token))?, None)),
            Credential::EntraId(token) => Ok((address.request_url(None)?, Some(token.clone()))),
        }
    }

    pub fn client(&self) -> Result<BlobClient, BlobError> {
        let (url, token) = self.url_and_token(&self.address)?;
        let options = BlobClientOptions {
            client_options: client_options(),
            ..Default::default()
        };
        BlobClient::new(url, token, Some(options)).map_err(|e| self.refused(Operation::Read, e))
    }

    pub fn container_client(&self) -> Result<BlobContainerClient, BlobError> {
        let (url, token) = self.url_and_token(&self.address.sibling(""))?;
        let options = BlobContainerClientOptions {
            client_options: client_options(),
            ..Default::default()
        };
        BlobContainerClient::new(url, token, Some(options))
            .map_err(|e| self.refused(Operation::List, e))
    }

    fn credential_name(&self) -> String {
        match &self.credential {
            Credential::Sas { source, .. } => format!("SAS token from {source}"),
            Credential::EntraId(_) => "Entra ID token".to_string(),
        }
    }

    /// Runs `request` until it succeeds, fails for good, or has been tried [`ATTEMPTS`] times,
    /// waiting longer after each transient failure.
    pub async fn retrying<T, F, Fut>(
        &self,
        operation: Operation,
        mut request: F,
    ) -> Result<T, BlobError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let failure = match request().await {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            let transient = match &failure {
                Failure::Service(error) => is_transient(error),
                Failure::Integrity(_) => true,
                Failure::Final(_) => false,
            };
            if !transient || attempt == ATTEMPTS {
                return Err(self.explain(operation, failure, attempt));
            }
            log::warn!(
                "blob storage: {} {} failed ({}); retrying in {:.2} s (attempt {} of {ATTEMPTS})",
                operation.verb(),
                self.address,
                failure.summary(),
                backoff.as_secs_f64(),
                attempt + 1,
            );
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        unreachable!("the last attempt returns")
    }

    fn explain(&self, operation: Operation, failure: Failure, attempts: u32) -> BlobError {
        match failure {
            Failure::Service(error)
                if is_transient(&error) && attempts > 1 && error.http_status().is_none() =>
            {
                BlobError::Unreachable {
                    endpoint: self.address.endpoint().to_string(),
                    attempts,
                    detail: failure_summary(&error),
                }
            }
            Failure::Service(error) => self.refused(operation, error),
            Failure::Integrity(detail) => BlobError::Integrity {
                address: self.address.to_string(),
                attempts,
                detail,
            },
            Failure::Final(error) => error,
        }
    }

    /// The sentence for a failed request.
    pub fn refused(&self, operation: Operation, error: azure_core::Error) -> BlobError {
        let address = self.address.to_string();
        let code = error_code(&error).unwrap_or_default();
        match (error.http_status(), code.as_str()) {
            (Some(StatusCode::NotFound), "ContainerNotFound") => BlobError::NotFound {
                kind: "container",
                address: self.address.sibling("").to_string(),
            },
            (Some(StatusCode::NotFound), _) => BlobError::NotFound {
                kind: "blob",
                address,
            },
            // Azure says AuthenticationFailed for a bad signature, Azurite AuthorizationFailure.
            (Some(StatusCode::Forbidden), "AuthenticationFailed" | "AuthorizationFailure") => {
                BlobError::AuthenticationFailed {
                    account: self.address.account().to_string(),
                    credential: self.credential_name(),
                    address,
                    reason: authentication_reason(&error),
                }
            }
            (Some(StatusCode::Forbidden), _) => BlobError::PermissionDenied {
                credential: self.credential_name(),
                operation: operation.verb(),
                address,
                needed: operation.permission(),
            },
            (
                Some(StatusCode::Conflict | StatusCode::PreconditionFailed),
                "BlobAlreadyExists" | "ConditionNotMet",
            ) => BlobError::AlreadyExists { address },
            _ if *error.kind() == ErrorKind::Credential => BlobError::SignIn {
                account: self.address.account().to_string(),
                detail: crate::redact::redact(&error.to_string()),
                variable: credentials::account_variable(self.address.account()),
            },
            _ => BlobError::Service {
                operation: operation.infinitive(),
                address,
                detail: failure_summary(&error),
            },
        }
    }
}

/// Why one attempt of a request failed.
pub enum Failure {
    /// The SDK or the service failed: retried when transient.
    Service(azure_core::Error),
    /// The bytes did not match their checksum: retried.
    Integrity(String),
    /// Not worth retrying (a local file error, say).
    Final(BlobError),
}

impl Failure {
    fn summary(&self) -> String {
        match self {
            Failure::Service(error) => failure_summary(error),
            Failure::Integrity(detail) => detail.clone(),
            Failure::Final(error) => error.to_string(),
        }
    }
}

impl From<azure_core::Error> for Failure {
    fn from(error: azure_core::Error) -> Failure {
        Failure::Service(error)
    }
}

/// Connection and I/O failures, timeouts, throttling and server errors are worth retrying.
fn is_transient(error: &azure_core::Error) -> bool {
    match error.http_status() {
        Some(status) => matches!(u16::from(status), 408 | 429 | 500 | 502 | 503 | 504),
        None => matches!(error.kind(), ErrorKind::Connection | ErrorKind::Io),
    }
}

pub(super) fn error_code(error: &azure_core::Error) -> Option<String> {
    match error.kind() {
        ErrorKind::HttpResponse { error_code, .. } => error_code.clone(),
        _ => None,
    }
}

/// A short, redacted description: the HTTP status and service code, or the transport error.
fn failure_summary(error: &azure_core::Error) -> String {
    let text = match (error.http_status(), error_code(error)) {
        (Some(status), Some(code)) => format!("HTTP {} {code}", u16::from(status)),
        (Some(status), None) => format!("HTTP {}", u16::from(status)),
        _ => {
            // The innermost cause says what happened ("Connection refused"); the outer layers
            // only repeat the request.
            let mut innermost: &dyn std::error::Error = error;
            while let Some(cause) = innermost.source() {
                innermost = cause;
            }
            innermost.to_string()
        }
    };
    crate::redact::redact(&text)
}

/// What the service said about a refused credential, with any SAS masked.
fn authentication_reason(error: &azure_core::Error) -> String {
    let body = match error.kind() {
        ErrorKind::HttpResponse {
            raw_response: Some(response),
            ..
        } => String::from_utf8_lossy(response.body()).to_string(),
        _ => String::new(),
    };
    let message = body
        .split("<AuthenticationErrorDetail>")
        .nth(1)
        .or_else(|| body.split("<Message>").nth(1))
        .and_then(|rest| rest.split('<').next())
        .map(|detail| detail.lines().next().unwrap_or_default().trim().to_string())
        .filter(|detail| !detail.is_empty());
    let reason = message.unwrap_or_else(|| {
        "its signature does not match the account key, or it is not valid for this resource"
            .to_string()
    });
    crate::redact::redact(&reason)
}
