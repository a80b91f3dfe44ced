//! The asynchronous export: start it, poll the operation, read the manifest, download the blobs.
use std::io::Read;
use std::time::Duration;

use azure_core::http::{Method, StatusCode, Url};
use serde::Deserialize;

use super::http::{Answer, Client, LOCATION, RequestCounter, excerpt};
use super::rows::{self, RatedUsageRow};
use super::{BillingPeriod, ExportOutcome, PartnerCenterConfig};
use crate::vendors::{Pull, PullRequest, VendorError};

pub(super) const EXPORT_PATH: &str = "reports/partners/billing/usage/unbilled/export";

/// The operation resource: running, succeeded (naming the manifest) or failed.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Operation {
    status: String,
    /// Microsoft Graph names the manifest by link...
    #[serde(rename = "resourceLocation@odata.navigationLink")]
    manifest_link: Option<String>,
    /// ...and Partner Center's walkthrough shows it inline.
    resource_location: Option<serde_json::Value>,
    error: Option<OperationError>,
}

#[derive(Debug, Deserialize)]
struct OperationError {
    code: Option<serde_json::Value>,
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Manifest {
    #[serde(rename = "eTag")]
    etag: String,
    root_directory: String,
    sas_token: String,
    blob_count: Option<usize>,
    pub(super) blobs: Vec<BlobRef>,
}

#[derive(Deserialize)]
pub(super) struct BlobRef {
    pub(super) name: String,
}

pub async fn run(
    config: &PartnerCenterConfig,
    client: &Client,
    counter: &RequestCounter,
    request: &PullRequest,
) -> Result<ExportOutcome, VendorError> {
    let base = api_base(&config.api_base_url)?;
    let export_url = base
        .join(EXPORT_PATH)
        .map_err(|e| VendorError::Failed(format!("export URL: {e}")))?;
    let body = serde_json::json!({
        "currencyCode": config.currency,
        "billingPeriod": BillingPeriod::of(request.period).as_str(),
        // "full": the basic set lacks the pricing-currency fields list_cost needs.
        "attributeSet": "full",
    });
    let accepted = api_call(
        config,
        client,
        counter,
        Method::Post,
        &export_url,
        Some(&body),
        "starting the export",
    )
    .await?;
    if accepted.status != StatusCode::Accepted {
        return Err(VendorError::Malformed(format!(
            "starting the export: expected 202 Accepted, got {}",
            accepted.status
        )));
    }
    let location = accepted.header(&LOCATION).ok_or_else(|| {
        VendorError::Malformed("starting the export: 202 without a Location header".into())
    })?;
    let operation_url = same_origin(&base, &export_url, location, "the operation Location")?;

    let manifest = poll(
        config,
        client,
        counter,
        &base,
        &operation_url,
        accepted.retry_after(),
    )
    .await?;
    if request.previous_version.as_deref() == Some(manifest.etag.as_str()) {
        return Ok(ExportOutcome::Unchanged {
            etag: manifest.etag,
        });
    }

    let mut rows = Vec::new();
    for blob in &manifest.blobs {
        for row in download(config, client, counter, &manifest, blob).await? {
            rows.push(rows::place_in_period(row, request.start, request.end)?);
        }
    }
    let latent = rows.iter().filter(|r| r.latent_from.is_some()).count();
    if latent > 0 {
        tracing::info!(
            latent,
            period_start = %request.start,
            "latent usage of earlier periods, charged on the first day of this one"
        );
    }
    let lines = rows::merge(&rows)?;
    Ok(ExportOutcome::Data {
        etag: manifest.etag.clone(),
        rows,
        pull: Pull {
            start: request.start,
            end: request.end,
            lines,
            version: Some(manifest.etag),
        },
    })
}

/// Polls the operation until it succeeds (returning its manifest) or fails.
async fn poll(
    config: &PartnerCenterConfig,
    client: &Client,
    counter: &RequestCounter,
    base: &Url,
    operation_url: &Url,
    first_hint: Option<Duration>,
) -> Result<Manifest, VendorError> {
    let mut wait = first_hint.unwrap_or(config.poll_interval);
    for _ in 0..config.max_poll_attempts {
        tokio::time::sleep(wait.min(config.max_wait)).await;
        let answer = api_call(
            config,
            client,
            counter,
            Method::Get,
            operation_url,
            None,
            "polling the export operation",
        )
        .await?;
        match read_operation(&answer.body)? {
            Some(source) => {
                return manifest_of(config, client, counter, base, operation_url, source).await;
            }
            // notStarted, running, or a status added later: keep waiting.
            None => wait = answer.retry_after().unwrap_or(config.poll_interval),
        }
    }
    Err(VendorError::Unavailable(format!(
        "the unbilled usage export was still running after {} polls",
        config.max_poll_attempts
    )))
}

/// Where a succeeded operation says the manifest is.
pub(super) enum ManifestSource {
    Inline(Manifest),
    Link(String),
}

/// One answer of the operation resource: None while it runs, the manifest's source once it
/// succeeded, an error when it failed or is unreadable.
pub(super) fn read_operation(body: &[u8]) -> Result<Option<ManifestSource>, VendorError> {
    let operation: Operation = serde_json::from_slice(body)
        .map_err(|e| VendorError::Malformed(format!("export operation: {e}: {}", excerpt(body))))?;
    match operation.status.to_ascii_lowercase().as_str() {
        "succeeded" | "completed" => match (operation.resource_location, operation.manifest_link) {
            (Some(inline @ serde_json::Value::Object(_)), _) => serde_json::from_value(inline)
                .map(|m| Some(ManifestSource::Inline(m)))
                .map_err(|e| VendorError::Malformed(format!("export manifest: {e}"))),
            (_, Some(link)) => Ok(Some(ManifestSource::Link(link))),
            _ => Err(VendorError::Malformed(
                "the succeeded export operation names no manifest".into(),
            )),
        },
        "failed" => {
            let (code, message) = operation
                .error
                .map(|e| (e.code.map(|c| c.to_string()), e.message))
                .unwrap_or_default();
            Err(VendorError::Failed(format!(
                "the unbilled usage export failed: {} (code {})",
                message.as_deref().unwrap_or("no message"),
                code.as_deref().unwrap_or("none")
            )))
        }
        _ => Ok(None),
    }
}

/// A manifest read from its own document (the operation's link).
pub(super) fn read_manifest(body: &[u8]) -> Result<Manifest, VendorError> {
    serde_json::from_slice::<Manifest>(body)
        .map_err(|e| VendorError::Malformed(format!("export manifest: {e}")))
}

/// The manifest, once its blob count agrees with its list.
pub(super) fn checked(manifest: Manifest) -> Result<Manifest, VendorError> {
    if let Some(count) = manifest.blob_count
        && count != manifest.blobs.len()
    {
        return Err(VendorError::Malformed(format!(
            "export manifest: blobCount is {count} but {} blobs are listed",
            manifest.blobs.len()
        )));
    }
    Ok(manifest)
}

async fn manifest_of(
    config: &PartnerCenterConfig,
    client: &Client,
    counter: &RequestCounter,
    base: &Url,
    operation_url: &Url,
    source: ManifestSource,
) -> Result<Manifest, VendorError> {
    let manifest = match source {
        ManifestSource::Inline(manifest) => manifest,
        ManifestSource::Link(link) => {
            let url = same_origin(base, operation_url, &link, "the manifest link")?;
            let answer = api_call(
                config,
                client,
                counter,
                Method::Get,
                &url,
                None,
                "reading the export manifest",
            )
            .await?;
            read_manifest(&answer.body)?
        }
    };
    checked(manifest)
}

/// Downloads one blob and reads its rows.
async fn download(
    config: &PartnerCenterConfig,
    client: &Client,
    counter: &RequestCounter,
    manifest: &Manifest,
    blob: &BlobRef,
) -> Result<Vec<RatedUsageRow>, VendorError> {
    let url = blob_url(manifest, &blob.name)?;
    let mut throttled = 0;
    let answer = loop {
        let answer = client.blob(counter, &url, &blob.name).await?;
        if answer.status == StatusCode::TooManyRequests {
            backoff(config, &answer, &mut throttled).await?;
            continue;
        }
        break answer;
    };
    if !answer.status.is_success() {
        let hint = match answer.status {
            StatusCode::Forbidden => " (the SAS token may have expired)",
            _ => "",
        };
        let error = format!(
            "downloading blob {}: HTTP {}{hint}",
            blob.name, answer.status
        );
        return Err(if answer.status.is_server_error() {
            VendorError::Unavailable(error)
        } else {
            VendorError::Failed(error)
        });
    }
    read_blob(&blob.name, &answer.body, config.account_key)
}

/// The rows of one downloaded blob (gzip, or text the HTTP client already decoded).
pub(super) fn read_blob(
    name: &str,
    body: &[u8],
    account_key: rows::AccountKey,
) -> Result<Vec<RatedUsageRow>, VendorError> {
    let text = gunzip(body).map_err(|e| VendorError::Malformed(format!("blob {name}: {e}")))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| rows::parse_row(name, i + 1, line, account_key))
        .collect()
}

/// The blob's JSON lines. Blobs are gzip files; a body without the gzip magic was already
/// decoded on the way (a `Content-Encoding: gzip` the HTTP client undid).
fn gunzip(body: &[u8]) -> Result<String, String> {
    if !body.starts_with(&[0x1f, 0x8b]) {
        return String::from_utf8(body.to_vec()).map_err(|_| "neither gzip nor UTF-8 text".into());
    }
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(body)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot decompress: {e}"))?;
    Ok(text)
}

/// `{rootDirectory}/{name}?{sasToken}`; https only, since the query is a credential.
pub(super) fn blob_url(manifest: &Manifest, name: &str) -> Result<Url, VendorError> {
    let root = manifest.root_directory.trim_end_matches('/');
    let sas = manifest.sas_token.trim_start_matches('?');
    let url = Url::parse(&format!("{root}/{}", name.trim_start_matches('/')))
        .map_err(|e| VendorError::Malformed(format!("blob {name}: bad URL ({e})")))?;
    if url.scheme() != "https" {
        return Err(VendorError::Malformed(format!(
            "blob {name}: rootDirectory is not https; refusing to send the SAS token"
        )));
    }
    let mut url = url;
    url.set_query(Some(sas));
    Ok(url)
}

/// Sends an API request, waiting out 429s under the configured limits.
async fn api_call(
    config: &PartnerCenterConfig,
    client: &Client,
    counter: &RequestCounter,
    method: Method,
    url: &Url,
    body: Option<&serde_json::Value>,
    what: &str,
) -> Result<Answer, VendorError> {
    let mut throttled = 0;
    loop {
        let answer = client.api(counter, method, url, body, what).await?;
        let status = answer.status;
        if status == StatusCode::TooManyRequests {
            backoff(config, &answer, &mut throttled).await?;
            continue;
        }
        if status.is_success() {
            return Ok(answer);
        }
        let error = format!("{what}: HTTP {status}: {}", answer.excerpt());
        return Err(match status {
            StatusCode::Unauthorized | StatusCode::Forbidden => VendorError::Credentials(error),
            _ if status.is_server_error() => VendorError::Unavailable(error),
            _ => VendorError::Failed(error),
        });
    }
}

/// Waits out one 429, or gives up with [`VendorError::Throttled`] once the limit is reached or
/// the service asks for longer than `max_wait`.
async fn backoff(
    config: &PartnerCenterConfig,
    answer: &Answer,
    throttled: &mut u32,
) -> Result<(), VendorError> {
    let hint = answer.retry_after();
    let wait = hint.unwrap_or(config.poll_interval);
    if *throttled >= config.max_throttle_retries || wait > config.max_wait {
        return Err(VendorError::Throttled { retry_after: hint });
    }
    *throttled += 1;
    tracing::debug!(
        ?wait,
        attempt = *throttled,
        "partner center throttled the request"
    );
    tokio::time::sleep(wait).await;
    Ok(())
}

pub(super) fn api_base(text: &str) -> Result<Url, VendorError> {
    // A trailing slash makes `join` append to the base path instead of replacing its last part.
    let with_slash = format!("{}/", text.trim_end_matches('/'));
    let url = Url::parse(&with_slash)
        .map_err(|e| VendorError::Failed(format!("api_base_url {text:?}: {e}")))?;
    if url.scheme() != "https" {
        return Err(VendorError::Failed(format!(
            "api_base_url {text:?} is not https; the bearer token is only sent over TLS"
        )));
    }
    Ok(url)
}

/// Resolves a URL the service handed us and insists it stays on the API's origin: the bearer
/// token goes wherever it points.
pub(super) fn same_origin(
    base: &Url,
    from: &Url,
    link: &str,
    what: &str,
) -> Result<Url, VendorError> {
    let url = from
        .join(link)
        .map_err(|e| VendorError::Malformed(format!("{what}: bad URL ({e})")))?;
    if url.origin() != base.origin() {
        return Err(VendorError::Malformed(format!(
            "{what} points to {}, not the API host {}",
            url.origin().ascii_serialization(),
            base.origin().ascii_serialization()
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn manifest(root: &str, sas: &str) -> Manifest {
        Manifest {
            etag: "e".into(),
            root_directory: root.into(),
            sas_token: sas.into(),
            blob_count: None,
            blobs: Vec::new(),
        }
    }

    #[test]
    fn blob_urls_carry_the_sas_and_need_https() {
        let m = manifest(
            "https://acct.blob.core.windows.net/c/v1/Fragment=full/",
            "?sv=1&sig=a%2Bb",
        );
        let url = blob_url(&m, "part-0.json.gz").unwrap();
        assert_eq!(
            url.as_str(),
            "https://acct.blob.core.windows.net/c/v1/Fragment=full/part-0.json.gz?sv=1&sig=a%2Bb"
        );
        let m = manifest("http://acct.blob.core.windows.net/c", "sig=x");
        let error = blob_url(&m, "part-0.json.gz").unwrap_err().to_string();
        assert!(!error.contains("sig=x"), "{error}");
    }

    #[test]
    fn gzip_or_already_decoded_bodies() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(b"{\"a\":1}\n").unwrap();
        assert_eq!(gunzip(&encoder.finish().unwrap()).unwrap(), "{\"a\":1}\n");
        assert_eq!(gunzip(b"{\"a\":1}").unwrap(), "{\"a\":1}");
        assert!(gunzip(&[0x1f, 0x8b, 0, 0]).is_err());
    }

    #[test]
    fn links_must_stay_on_the_api_origin() {
        let base = api_base("https://graph.microsoft.com/v1.0").unwrap();
        assert_eq!(base.as_str(), "https://graph.microsoft.com/v1.0/");
        let export = base.join(EXPORT_PATH).unwrap();
        assert_eq!(
            export.as_str(),
            "https://graph.microsoft.com/v1.0/reports/partners/billing/usage/unbilled/export"
        );
        let op = same_origin(&base, &export, "../../operations/1", "op").unwrap();
        assert_eq!(
            op.as_str(),
            "https://graph.microsoft.com/v1.0/reports/partners/billing/operations/1"
        );
        assert!(same_origin(&base, &export, "https://evil.example/x", "op").is_err());
        assert!(api_base("http://graph.microsoft.com/v1.0").is_err());
    }
}
