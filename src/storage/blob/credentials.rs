//! Which credential a blob request carries, in this order: a SAS token in the URL; a SAS token
//! in `STYLEMILL_SAS_TOKEN_<ACCOUNT>` (the account name upper-cased, other characters as `_`);
//! a SAS token in `STYLEMILL_SAS_TOKEN`; otherwise Entra ID (workload identity, managed
//! identity, then the Azure CLI or Azure Developer CLI login). Account keys are not accepted.
//! A SAS is checked locally before use, so an expired one is named as such.

use super::address::{percent_decode, BlobAddress};
use super::BlobError;
use async_trait::async_trait;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_identity::{
    DeveloperToolsCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential,
};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The environment variable every account's SAS may come from.
pub const SAS_VARIABLE: &str = "STYLEMILL_SAS_TOKEN";

#[derive(Clone, Debug)]
pub enum Credential {
    /// A SAS token (without `?`), and where it came from, for error messages.
    Sas {
        token: String,
        source: String,
    },
    EntraId(Arc<dyn TokenCredential>),
}

/// The value of parameter `name` of a SAS token (`sp`, `se`, `sig`), as it is in the query.
pub fn sas_parameter<'a>(token: &'a str, name: &str) -> Option<&'a str> {
    token.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })
}

/// The per-account variable name: `STYLEMILL_SAS_TOKEN_DEVSTOREACCOUNT1`.
pub fn account_variable(account: &str) -> String {
    let suffix: String = account
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{SAS_VARIABLE}_{suffix}")
}

/// The credential for `address`; refuses an expired SAS and Entra ID over plain http.
pub fn resolve(address: &BlobAddress) -> Result<Credential, BlobError> {
    let from_environment = || {
        let per_account = account_variable(address.account());
        [per_account, SAS_VARIABLE.to_string()]
            .into_iter()
            .find_map(|variable| {
                let token = std::env::var(&variable).ok()?;
                let token = token.trim().trim_start_matches('?').to_string();
                (!token.is_empty()).then(|| (token, format!("${variable}")))
            })
    };
    let sas = address
        .sas()
        .map(|token| (token.to_string(), "the URL".to_string()))
        .or_else(from_environment);
    if let Some((token, source)) = sas {
        crate::redact::register_secret(&token);
        check_expiry(address, &token, &source)?;
        return Ok(Credential::Sas { token, source });
    }
    if !address.is_https() {
        return Err(BlobError::NoCredential {
            account: address.account().to_string(),
            endpoint: address.endpoint().to_string(),
            variable: account_variable(address.account()),
        });
    }
    Ok(Credential::EntraId(entra_id()))
}

/// Refuses a SAS whose `se` (signed expiry) is in the past.
fn check_expiry(address: &BlobAddress, token: &str, source: &str) -> Result<(), BlobError> {
    let Some(expiry) = sas_parameter(token, "se").and_then(percent_decode) else {
        return Ok(());
    };
    let parsed =
        time::OffsetDateTime::parse(&expiry, &time::format_description::well_known::Rfc3339)
            .or_else(|_| {
                time::Date::parse(
                    &expiry,
                    time::macros::format_description!("[year]-[month]-[day]"),
                )
                .map(|date| date.midnight().assume_utc())
            });
    match parsed {
        Ok(expires) if expires <= time::OffsetDateTime::now_utc() => Err(BlobError::SasExpired {
            account: address.account().to_string(),
            origin: source.to_string(),
            expiry,
        }),
        _ => Ok(()),
    }
}

/// One Entra ID credential for the process, shared so its tokens are cached.
fn entra_id() -> Arc<dyn TokenCredential> {
    static CHAIN: OnceLock<Arc<dyn TokenCredential>> = OnceLock::new();
    CHAIN
        .get_or_init(|| Arc::new(EntraIdChain::from_environment()))
        .clone()
}

/// How long one Entra ID source may take before the next is tried (a managed identity endpoint
/// that does not exist off Azure would otherwise keep a laptop waiting).
const SOURCE_TIMEOUT: Duration = Duration::from_secs(15);

/// Tries each available Entra ID source in turn and keeps the first that gives a token.
#[derive(Debug)]
struct EntraIdChain {
    sources: Vec<(&'static str, Arc<dyn TokenCredential>)>,
    chosen: OnceLock<usize>,
}

impl EntraIdChain {
    fn from_environment() -> EntraIdChain {
        let mut sources: Vec<(&'static str, Arc<dyn TokenCredential>)> = Vec::new();
        if std::env::var_os("AZURE_FEDERATED_TOKEN_FILE").is_some() {
            if let Ok(workload) = WorkloadIdentityCredential::new(None) {
                sources.push(("workload identity", workload));
            }
        }
        let user_assigned = std::env::var("AZURE_CLIENT_ID")
            .ok()
            .map(UserAssignedId::ClientId);
        let managed = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
            user_assigned_id: user_assigned,
            ..Default::default()
        }));
        if let Ok(managed) = managed {
            sources.push(("managed identity", managed));
        }
        if let Ok(developer) = DeveloperToolsCredential::new(None) {
            sources.push(("Azure CLI or Azure Developer CLI login", developer));
        }
        EntraIdChain {
            sources,
            chosen: OnceLock::new(),
        }
    }
}

#[async_trait]
impl TokenCredential for EntraIdChain {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        if let Some(&index) = self.chosen.get() {
            return self.sources[index].1.get_token(scopes, options).await;
        }
        let mut failures = Vec::new();
        for (index, (name, source)) in self.sources.iter().enumerate() {
            match tokio::time::timeout(SOURCE_TIMEOUT, source.get_token(scopes, options.clone()))
                .await
            {
                Ok(Ok(token)) => {
                    log::info!("blob storage: signed in with Entra ID through {name}");
                    let _ = self.chosen.set(index);
                    return Ok(token);
                }
                Ok(Err(error)) => failures.push(format!("{name}: {error}")),
                Err(_) => failures.push(format!(
                    "{name}: no answer in {} s",
                    SOURCE_TIMEOUT.as_secs()
                )),
            }
        }
        Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Credential,
            format!(
                "no Entra ID credential is available ({})",
                failures.join("; ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_sas_is_named() {
        let address = BlobAddress::parse(
            "http://127.0.0.1:1/acct/cont/x.mp4?se=2020-01-01T00%3A00%3A00Z&sp=r&sig=abc",
            None,
        )
        .unwrap();
        let error = resolve(&address).unwrap_err().to_string();
        assert!(
            error.contains("expired") && error.contains("2020-01-01T00:00:00Z"),
            "{error}"
        );
        assert_eq!(
            account_variable("devstore-1"),
            "STYLEMILL_SAS_TOKEN_DEVSTORE_1"
        );
    }
}
