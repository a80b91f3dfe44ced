//! The azure_core pipelines the connector talks through, and how their answers and failures map
//! to [`VendorError`].
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::error::ErrorKind;
use azure_core::http::headers::{
    HeaderName, Headers, RETRY_AFTER, RETRY_AFTER_MS, X_MS_RETRY_AFTER_MS,
};
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::policies::{Policy, PolicyResult, RetryHeaders};
use azure_core::http::{
    ClientOptions, Context, ExponentialRetryOptions, Method, Pipeline, PipelineOptions,
    PipelineSendOptions, Request, RetryOptions, StatusCode, Transport, Url,
};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};

use super::RetrySettings;
use crate::vendors::{RequestCount, VendorError};

pub const LOCATION: HeaderName = HeaderName::from_static("location");

/// Requests actually sent for one pull, pipeline retries included.
#[derive(Debug, Default, Clone)]
pub struct RequestCounter(Arc<AtomicU32>);

impl RequestCounter {
    pub fn get(&self) -> RequestCount {
        RequestCount(self.0.load(Ordering::Relaxed))
    }
}

/// A per-try policy: counts every request that reaches the transport, read from the context so
/// concurrent pulls sharing a pipeline keep separate counts.
#[derive(Debug)]
struct CountRequests;

#[async_trait::async_trait]
impl Policy for CountRequests {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        if let Some(counter) = ctx.value::<RequestCounter>() {
            counter.0.fetch_add(1, Ordering::Relaxed);
        }
        next[0].send(ctx, request, &next[1..]).await
    }
}

/// One HTTP answer, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: Headers,
    pub body: azure_core::Bytes,
}

impl Answer {
    /// `Retry-After` (delta seconds, or an HTTP date) or the `retry-after-ms` variants.
    pub fn retry_after(&self) -> Option<Duration> {
        for name in [X_MS_RETRY_AFTER_MS, RETRY_AFTER_MS] {
            if let Some(ms) = self
                .headers
                .get_optional_str(&name)
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                return Some(Duration::from_millis(ms));
            }
        }
        let value = self.headers.get_optional_str(&RETRY_AFTER)?.trim();
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Duration::from_secs(seconds));
        }
        let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
        Some(wait.to_std().unwrap_or(Duration::ZERO))
    }

    pub fn header(&self, name: &HeaderName) -> Option<&str> {
        self.headers.get_optional_str(name)
    }

    /// A short, single-line excerpt of the body for error messages (API bodies only: blob
    /// bodies are never quoted).
    pub fn excerpt(&self) -> String {
        excerpt(&self.body)
    }
}

/// The start of a body for an error message: whitespace collapsed, at most 300 characters.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Where and as whom the pipelines authenticate: what the usage export and service control share.
pub struct Connection<'a> {
    /// Entra ID authority host; must be https (azure_identity insists).
    pub authority_host: &'a str,
    /// The partner (CSP) tenant the token is requested from.
    pub partner_tenant_id: &'a str,
    /// The OAuth scope of the API's access token.
    pub scope: &'a str,
    /// PEM of extra root CAs to trust (an emulator's CA); the system roots stay trusted.
    pub extra_root_ca_pem: Option<&'a str>,
    pub retry: &'a RetrySettings,
}

pub struct Client {
    api: Pipeline,
    blobs: Pipeline,
}

impl Client {
    pub fn new(
        config: &Connection<'_>,
        client_id: String,
        client_secret: String,
    ) -> Result<Self, VendorError> {
        let transport = transport(config.extra_root_ca_pem)?;
        let mut cloud = CustomConfiguration::default();
        cloud.authority_host = config.authority_host.to_string();
        let credential = ClientSecretCredential::new(
            config.partner_tenant_id,
            client_id,
            Secret::from(client_secret),
            Some(ClientSecretCredentialOptions {
                client_options: ClientOptions {
                    transport: transport.clone(),
                    retry: retry_options(config.retry),
                    cloud: Some(Arc::new(CloudConfiguration::Custom(cloud))),
                    ..Default::default()
                },
            }),
        )
        .map_err(|e| VendorError::Credentials(e.to_string()))?;
        let credential: Arc<dyn TokenCredential> = credential;
        let auth = BearerTokenAuthorizationPolicy::new(credential, [config.scope.to_string()]);

        let options = |with_auth: bool| {
            let mut per_try: Vec<Arc<dyn Policy>> = Vec::new();
            if with_auth {
                per_try.push(Arc::new(auth.clone()));
            }
            per_try.push(Arc::new(CountRequests));
            ClientOptions {
                transport: transport.clone(),
                retry: retry_options(config.retry),
                per_try_policies: per_try,
                ..Default::default()
            }
        };
        let api = Pipeline::new(
            Some(env!("CARGO_PKG_NAME")),
            Some(env!("CARGO_PKG_VERSION")),
            options(true),
            Vec::new(),
            Vec::new(),
            Some(pipeline_options()),
        );
        let blobs = Pipeline::new(
            Some(env!("CARGO_PKG_NAME")),
            Some(env!("CARGO_PKG_VERSION")),
            options(false),
            Vec::new(),
            Vec::new(),
            Some(pipeline_options()),
        );
        Ok(Client { api, blobs })
    }

    /// Sends an authorized API request; `what` names it in errors.
    pub async fn api(
        &self,
        counter: &RequestCounter,
        method: Method,
        url: &Url,
        json_body: Option<&serde_json::Value>,
        what: &str,
    ) -> Result<Answer, VendorError> {
        self.api_with_headers(counter, method, url, json_body, &[], what)
            .await
    }

    /// [`Client::api`] with extra request headers (`If-Match`, `MS-RequestId`, …).
    pub async fn api_with_headers(
        &self,
        counter: &RequestCounter,
        method: Method,
        url: &Url,
        json_body: Option<&serde_json::Value>,
        headers: &[(&'static str, String)],
        what: &str,
    ) -> Result<Answer, VendorError> {
        let mut request = Request::new(url.clone(), method);
        request.insert_header("accept", "application/json");
        for (name, value) in headers {
            request.insert_header(*name, value.clone());
        }
        if let Some(body) = json_body {
            request.insert_header("content-type", "application/json");
            request.set_body(body.to_string());
        }
        send(&self.api, counter, &mut request)
            .await
            .map_err(|e| map_api_error(e, what))
    }

    /// Downloads a SAS-signed blob without the API token. Errors never quote the URL: its query
    /// is the SAS token.
    pub async fn blob(
        &self,
        counter: &RequestCounter,
        url: &Url,
        name: &str,
    ) -> Result<Answer, VendorError> {
        let mut request = Request::new(url.clone(), Method::Get);
        send(&self.blobs, counter, &mut request)
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::Connection | ErrorKind::Io => {
                    VendorError::Unavailable(format!("downloading blob {name}: {}", e.kind()))
                }
                _ => VendorError::Failed(format!("downloading blob {name}: {}", e.kind())),
            })
    }
}

async fn send(
    pipeline: &Pipeline,
    counter: &RequestCounter,
    request: &mut Request,
) -> azure_core::Result<Answer> {
    let ctx = Context::new().with_value(counter.clone());
    // Statuses are judged by the caller (202, 429 and 404 all mean something here).
    let options = PipelineSendOptions {
        skip_checks: true,
        ..Default::default()
    };
    let response = pipeline.send(&ctx, request, Some(options)).await?;
    let (status, headers, body) = response.deconstruct();
    Ok(Answer {
        status,
        headers,
        body: body.into(),
    })
}

fn map_api_error(error: azure_core::Error, what: &str) -> VendorError {
    match error.kind() {
        ErrorKind::Credential => VendorError::Credentials(format!("{what}: {error}")),
        ErrorKind::Connection | ErrorKind::Io => {
            VendorError::Unavailable(format!("{what}: {error}"))
        }
        _ => VendorError::Failed(format!("{what}: {error}")),
    }
}

/// The default azure_core transport, or a reqwest client that also trusts the configured CA.
fn transport(extra_root_ca_pem: Option<&str>) -> Result<Option<Transport>, VendorError> {
    let Some(pem) = extra_root_ca_pem else {
        return Ok(None);
    };
    let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
        .map_err(|e| VendorError::Credentials(format!("extra root CA PEM: {e}")))?;
    if certs.is_empty() {
        return Err(VendorError::Credentials(
            "extra root CA PEM holds no certificate".into(),
        ));
    }
    let client = reqwest::Client::builder()
        .tls_certs_merge(certs)
        // As azure_core's own client: REST services do not redirect, and a redirect must not
        // carry the bearer token elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(20))
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| VendorError::Unavailable(format!("building the HTTP client: {e}")))?;
    Ok(Some(Transport::new(Arc::new(client))))
}

fn retry_options(settings: &RetrySettings) -> RetryOptions {
    match settings {
        RetrySettings::None => RetryOptions::none(),
        RetrySettings::Exponential {
            max_retries,
            initial_delay,
            max_delay,
            max_total_elapsed,
        } => RetryOptions::exponential(ExponentialRetryOptions {
            max_retries: *max_retries,
            initial_delay: to_time(*initial_delay),
            max_delay: to_time(*max_delay),
            max_total_elapsed: to_time(*max_total_elapsed),
        }),
    }
}

fn to_time(d: Duration) -> azure_core::time::Duration {
    azure_core::time::Duration::try_from(d).unwrap_or(azure_core::time::Duration::MAX)
}

/// Transient statuses only: 429 is left to the connector, which honours `Retry-After` under its
/// own limit and reports [`VendorError::Throttled`].
fn pipeline_options() -> PipelineOptions {
    PipelineOptions {
        retry_headers: RetryHeaders {
            retry_headers: vec![X_MS_RETRY_AFTER_MS, RETRY_AFTER_MS, RETRY_AFTER],
        },
        retry_status_codes: vec![
            StatusCode::RequestTimeout,
            StatusCode::InternalServerError,
            StatusCode::BadGateway,
            StatusCode::ServiceUnavailable,
            StatusCode::GatewayTimeout,
        ],
    }
}
