//! Blob addresses. A blob URL is split into the account's endpoint, a container and a blob name;
//! its query, if any, is the SAS token and is kept apart so that an address can always be shown
//! without it. The blob name is data: it is only ever sent to the service, and the one local
//! file name derived from it ([`BlobAddress::local_file_name`]) is a single sanitized component.

use super::BlobError;
use azure_core::http::Url;

/// Hosts of the form `ACCOUNT.blob.<cloud suffix>` address the account by host name; any other
/// host (an IP address, `localhost`, Azurite, Azure Stack) puts the account in the first path
/// segment.
const BLOB_HOST_MARKER: &str = ".blob.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobAddress {
    /// The account's service URL, without query or trailing slash.
    endpoint: String,
    account: String,
    container: String,
    /// The blob name, decoded; empty for a container.
    name: String,
    /// The SAS token from the URL's query, without the `?`.
    sas: Option<String>,
}

/// Whether `text` names a blob (an http or https URL) rather than a local path.
pub fn is_blob_url(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

impl BlobAddress {
    /// Parses a blob or container URL. With `endpoint` (from `--blob-endpoint`), a URL that
    /// starts with it is read relative to it, and a URL of a public cloud account is redirected
    /// to it (so that a job written for Azure runs unchanged against Azurite).
    pub fn parse(text: &str, endpoint: Option<&str>) -> Result<BlobAddress, BlobError> {
        let bad = |problem: &str| BlobError::BadUrl {
            url: crate::redact::redact(text),
            problem: problem.to_string(),
        };
        let url = Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        let sas = url
            .query()
            .filter(|query| !query.is_empty())
            .map(str::to_string);
        if let Some(sas) = &sas {
            crate::redact::register_secret(sas);
            if super::credentials::sas_parameter(sas, "sig").is_none() {
                return Err(bad("its query is not a SAS token (it has no sig= parameter); remove the query or paste the whole SAS"));
            }
        }
        let host = url.host_str().ok_or_else(|| bad("it has no host"))?;
        let segments: Vec<&str> = url
            .path_segments()
            .map(|segments| segments.collect())
            .unwrap_or_default();
        let origin = format!("{}://{}", url.scheme(), url.authority());
        let endpoint = endpoint.map(|e| e.trim_end_matches('/'));
        let (endpoint, account, path) = match endpoint {
            Some(given) if text.starts_with(given) => {
                let account = account_of_endpoint(given)
                    .ok_or_else(|| bad("--blob-endpoint has no account name"))?;
                let base = Url::parse(given).map_err(|e| bad(&format!("--blob-endpoint: {e}")))?;
                let skip = base
                    .path_segments()
                    .map_or(0, |s| s.filter(|s| !s.is_empty()).count());
                (
                    given.to_string(),
                    account,
                    segments[skip.min(segments.len())..].to_vec(),
                )
            }
            _ if host.contains(BLOB_HOST_MARKER) => {
                let account = host.split('.').next().unwrap_or_default().to_string();
                let endpoint = match endpoint {
                    Some(given) => given.to_string(),
                    None => origin,
                };
                (endpoint, account, segments)
            }
            _ => {
                let (account, rest) = segments
                    .split_first()
                    .ok_or_else(|| bad("it names no account; use https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB"))?;
                (
                    format!("{origin}/{account}"),
                    account.to_string(),
                    rest.to_vec(),
                )
            }
        };
        let (container, name_segments) = path
            .split_first()
            .filter(|(container, _)| !container.is_empty())
            .ok_or_else(|| bad("it names no container; use .../CONTAINER/BLOB"))?;
        check_container_name(container).map_err(|problem| bad(&problem))?;
        let encoded_name = name_segments.join("/");
        let name = percent_decode(&encoded_name)
            .ok_or_else(|| bad("its blob name is not valid UTF-8 once decoded"))?;
        if name.len() > 1024 {
            return Err(bad("its blob name is longer than 1024 characters"));
        }
        Ok(BlobAddress {
            endpoint,
            account,
            container: container.to_string(),
            name,
            sas,
        })
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn container(&self) -> &str {
        &self.container
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn sas(&self) -> Option<&str> {
        self.sas.as_deref()
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn is_https(&self) -> bool {
        self.endpoint.starts_with("https://")
    }

    /// The blob `name` in the same container, with the same credentials.
    pub fn sibling(&self, name: &str) -> BlobAddress {
        BlobAddress {
            name: name.to_string(),
            ..self.clone()
        }
    }

    /// The blob `name` in `container` of the same account, with the same credentials.
    pub fn in_container(&self, container: &str, name: &str) -> BlobAddress {
        BlobAddress {
            container: container.to_string(),
            name: name.to_string(),
            ..self.clone()
        }
    }

    /// The request URL: endpoint, container, encoded name and the SAS token `sas`.
    pub fn request_url(&self, sas: Option<&str>) -> Result<Url, BlobError> {
        let mut text = format!("{}/{}", self.endpoint, self.container);
        if !self.name.is_empty() {
            text = format!("{text}/{}", encode_name(&self.name));
        }
        let mut url = Url::parse(&text).map_err(|e| BlobError::BadUrl {
            url: self.to_string(),
            problem: e.to_string(),
        })?;
        url.set_query(sas);
        Ok(url)
    }

    /// A local file name for staging this blob: its last name segment with anything but ASCII
    /// letters, digits, `.`, `-` and `_` replaced, never `.`, `..` or empty, so that joining it
    /// to a directory always stays inside that directory.
    pub fn local_file_name(&self) -> String {
        let last = self.name.rsplit('/').next().unwrap_or_default();
        let cleaned: String = last
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '%') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if cleaned.trim_matches('.').is_empty() {
            format!("blob{cleaned}").replace('.', "_")
        } else {
            cleaned
        }
    }
}

/// Shows the address without its SAS token.
impl std::fmt::Display for BlobAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.endpoint, self.container)?;
        if !self.name.is_empty() {
            write!(f, "/{}", self.name)?;
        }
        Ok(())
    }
}

/// The account name of a service URL: the first host label of `ACCOUNT.blob.…`, else the
/// first path segment (Azurite's `http://127.0.0.1:10000/devstoreaccount1`).
fn account_of_endpoint(endpoint: &str) -> Option<String> {
    let url = Url::parse(endpoint).ok()?;
    let host = url.host_str()?;
    if host.contains(BLOB_HOST_MARKER) {
        return host.split('.').next().map(str::to_string);
    }
    url.path_segments()?
        .find(|segment| !segment.is_empty())
        .map(str::to_string)
}

/// Container names: 3 to 63 lowercase letters, digits and single hyphens (the `$root`-style
/// system containers aside).
fn check_container_name(name: &str) -> Result<(), String> {
    let valid = (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if valid || name.starts_with('$') {
        Ok(())
    } else {
        Err(format!("container name {name:?} is not valid: use 3 to 63 lowercase letters, digits and hyphens"))
    }
}

/// Percent-encodes a blob name for a URL path. Slashes stay readable, unless the name has `.`,
/// `..` or empty segments, which URL parsers would fold away: then they are sent as `%2F`,
/// which the service decodes back, so such a name still addresses exactly that blob.
fn encode_name(name: &str) -> String {
    let folds = name
        .split('/')
        .any(|segment| matches!(segment, "" | "." | ".."));
    name.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            b'/' if !folds => "/".to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

pub(super) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                decoded.push(byte);
                i += 3;
                continue;
            }
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_cloud_urls_split_into_account_container_and_name() {
        let address = BlobAddress::parse(
            "https://acct.blob.core.windows.net/videos/a/b%20c.mp4?sv=1&sig=x",
            None,
        )
        .unwrap();
        assert_eq!(address.account(), "acct");
        assert_eq!(address.container(), "videos");
        assert_eq!(address.name(), "a/b c.mp4");
        assert_eq!(address.sas(), Some("sv=1&sig=x"));
        assert_eq!(
            address.to_string(),
            "https://acct.blob.core.windows.net/videos/a/b c.mp4"
        );
        assert_eq!(
            address.request_url(None).unwrap().as_str(),
            "https://acct.blob.core.windows.net/videos/a/b%20c.mp4"
        );
    }

    #[test]
    fn path_style_and_redirected_endpoints() {
        let azurite = "http://127.0.0.1:10000/devstoreaccount1";
        let direct = BlobAddress::parse(&format!("{azurite}/inbox/x.mp4"), None).unwrap();
        assert_eq!(
            (direct.account(), direct.container(), direct.name()),
            ("devstoreaccount1", "inbox", "x.mp4")
        );
        assert_eq!(direct.endpoint(), azurite);
        let redirected = BlobAddress::parse(
            "https://devstoreaccount1.blob.core.windows.net/inbox/x.mp4",
            Some(azurite),
        )
        .unwrap();
        assert_eq!(redirected, direct);
        let relative = BlobAddress::parse(
            &format!("{azurite}/inbox/x.mp4"),
            Some(&format!("{azurite}/")),
        )
        .unwrap();
        assert_eq!(relative, direct);
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(BlobAddress::parse("https://acct.blob.core.windows.net/", None).is_err());
        assert!(BlobAddress::parse("https://acct.blob.core.windows.net/UPPER/x", None).is_err());
        assert!(
            BlobAddress::parse("https://acct.blob.core.windows.net/c1c/x?foo=bar", None).is_err()
        );
    }

    #[test]
    fn local_names_never_leave_their_directory() {
        let base = BlobAddress::parse("https://a.blob.core.windows.net/ccc/x", None).unwrap();
        for (name, expected) in [
            ("../../etc/passwd", "passwd"),
            ("/abs/..", "blob__"),
            ("dir/..", "blob__"),
            ("x/.", "blob_"),
            ("we ird/na\\me:*.mp4", "na_me__.mp4"),
            ("", "blob"),
        ] {
            let local = base.sibling(name).local_file_name();
            assert_eq!(local, expected, "{name}");
            let joined = std::path::Path::new("/stage").join(&local);
            assert_eq!(joined.parent(), Some(std::path::Path::new("/stage")));
        }
    }

    #[test]
    fn names_with_dot_segments_are_sent_as_they_are() {
        let base = BlobAddress::parse("https://a.blob.core.windows.net/ccc/x", None).unwrap();
        let url = |name: &str| base.sibling(name).request_url(None).unwrap().to_string();
        assert_eq!(
            url("../x.mp4"),
            "https://a.blob.core.windows.net/ccc/..%2Fx.mp4"
        );
        assert_eq!(
            url("/abs.mp4"),
            "https://a.blob.core.windows.net/ccc/%2Fabs.mp4"
        );
        assert_eq!(
            url("d/e f?.mp4"),
            "https://a.blob.core.windows.net/ccc/d/e%20f%3F.mp4"
        );
    }
}
