//! A local emulator of Microsoft's partner billing export (unbilled daily rated usage, API v2)
//! and of the Entra ID token endpoint, over TLS on 127.0.0.1 with a CA made at start.
//!
//! Served, with the documented shapes:
//! - `POST /{tenant}/oauth2/v2.0/token` (client credentials);
//! - `POST /v1.0/reports/partners/billing/usage/unbilled/export` → 202 + `Location`;
//! - `GET /v1.0/reports/partners/billing/operations/{id}` → running / succeeded / failed;
//! - `GET /v1.0/reports/partners/billing/manifests/{id}` → the manifest;
//! - `GET /blobs/{tenant}/{operation}/{name}?{sas}` → gzipped JSON lines.
//!
//! Scriptable through [`Script`]: rows per blob and eTag for the `current` and the `last` billing
//! period, the partner's billing currency (an export in another currency is empty, as Partner
//! Center's is), throttling, failure, malformed data, token lifetime and scope.
//! [`Seen`] records what clients did, e.g. whether a blob request carried an Authorization header.
//!
//! Partner Center's customers and subscriptions (`/v1/customers…`, service control) live in
//! [`customers`], with their own script and record.
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

mod customers;
use customers::PARTNER_CENTER_SCOPE;
#[allow(unused_imports)]
pub use customers::{AVAILABILITY, INVALID_NEXT_TERM, QUANTITY_LIMIT, SKU_UNAVAILABLE};

pub const TENANT: &str = "5b1d3a2e-7c4f-4e8a-9d21-0f6b8c3e4a17";
pub const CLIENT_ID: &str = "0c6f1a52-3d4e-4b8f-a1c2-9e7d5b3a1f00";
pub const CLIENT_SECRET: &str = "emulator secret & = value";
pub const SCOPE: &str = "https://graph.microsoft.com/.default";

/// One blob of the export: JSON lines (gzipped when served), or raw bytes served as they are.
#[derive(Debug, Clone, Default)]
pub struct Blob {
    pub name: String,
    pub lines: Vec<String>,
    pub raw: Option<Vec<u8>>,
}

impl Blob {
    pub fn new(name: &str, lines: Vec<String>) -> Self {
        Blob {
            name: name.into(),
            lines,
            raw: None,
        }
    }
}

/// The export of the `last` billing period.
#[derive(Debug, Clone, Default)]
pub struct LastPeriod {
    pub etag: String,
    pub blobs: Vec<Blob>,
}

#[derive(Debug, Clone)]
pub struct Script {
    /// The `current` billing period's export.
    pub etag: String,
    pub blobs: Vec<Blob>,
    pub last: LastPeriod,
    /// The currency Partner Center bills the partner in; an export asked in another has no
    /// blobs. None: any currency gets the blobs.
    pub billing_currency: Option<String>,
    /// `expires_in` of issued tokens, seconds.
    pub token_expires_in: u64,
    /// The scope a token must be asked for.
    pub scope: String,
    /// "running" answers before the operation settles.
    pub polls_before_done: u32,
    /// `Retry-After` (seconds) on 202 and running answers.
    pub poll_retry_after: Option<u64>,
    /// The next N API requests (export, operation, manifest) answer 429.
    pub throttle: u32,
    /// The next N API requests answer 503 (after any throttling).
    pub unavailable: u32,
    pub throttle_retry_after: Option<u64>,
    /// The operation ends `failed` with this (code, message).
    pub fail_operation: Option<(String, String)>,
    /// The succeeded operation carries the manifest inline instead of linking to it.
    pub inline_manifest: bool,
    /// Served instead of the manifest JSON.
    pub manifest_override: Option<String>,
    /// The export's `Location` names this origin instead of the emulator's own.
    pub location_origin: Option<String>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            etag: "etag-1".into(),
            blobs: Vec::new(),
            last: LastPeriod {
                etag: "etag-last-1".into(),
                blobs: Vec::new(),
            },
            billing_currency: None,
            token_expires_in: 3599,
            scope: SCOPE.into(),
            polls_before_done: 1,
            poll_retry_after: None,
            throttle: 0,
            unavailable: 0,
            throttle_retry_after: None,
            fail_operation: None,
            inline_manifest: false,
            manifest_override: None,
            location_origin: None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub token_requests: u32,
    pub tokens_refused: u32,
    pub exports: u32,
    pub export_bodies: Vec<serde_json::Value>,
    pub operation_polls: u32,
    pub manifest_reads: u32,
    pub blob_downloads: u32,
    /// Of which blobs of the `last` period's export.
    pub last_blob_downloads: u32,
    pub throttled: u32,
    pub unavailable: u32,
    pub unauthorized: u32,
    pub blob_requests_with_authorization: u32,
}

struct State {
    script: Script,
    seen: Seen,
    tokens: Vec<String>,
    /// Per operation id: polls so far, and what it exports.
    operations: HashMap<String, Operation>,
    sas_signature: String,
    origin: String,
    /// Partner Center customers and subscriptions.
    customers: customers::Book,
    /// The next subscription PATCH waits here before it is served.
    patch_hold: Option<Hold>,
}

/// A request held before it is served (see [`Emulator::hold_next_patch`]).
struct Hold {
    arrived: tokio::sync::oneshot::Sender<()>,
    release: tokio::sync::oneshot::Receiver<()>,
}

/// The test's end of a held request: `arrived` resolves once the request came in; it is served
/// when `release` is sent (or dropped).
pub struct Held {
    pub arrived: tokio::sync::oneshot::Receiver<()>,
    pub release: tokio::sync::oneshot::Sender<()>,
}

pub struct Emulator {
    pub addr: SocketAddr,
    /// The CA that signed the server's certificate, for the client to trust.
    pub ca_pem: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Emulator {
    pub async fn start(script: Script) -> Self {
        let (ca_pem, tls) = tls_config();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            script,
            seen: Seen::default(),
            tokens: Vec::new(),
            operations: HashMap::new(),
            sas_signature: format!("sig{}", uuid::Uuid::new_v4().simple()),
            origin: format!("https://{addr}"),
            customers: customers::Book::default(),
            patch_hold: None,
        }));
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let serving = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let state = serving.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move {
                            let answer = handle(&state, request).await;
                            // A scripted lost answer: the connection closes without it.
                            if answer.headers().contains_key(customers::LOSE_ANSWER) {
                                return Err(std::io::Error::other("answer lost"));
                            }
                            Ok(answer)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Emulator {
            addr,
            ca_pem,
            state,
            task,
        }
    }

    /// The API base URL (Microsoft Graph's layout: `https://host/v1.0`).
    pub fn api_base_url(&self) -> String {
        format!("https://{}/v1.0", self.addr)
    }

    pub fn authority_host(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn script(&self, change: impl FnOnce(&mut Script)) {
        change(&mut self.state.lock().unwrap().script);
    }

    pub fn seen(&self) -> Seen {
        self.state.lock().unwrap().seen.clone()
    }

    /// Holds the next `PATCH /v1/customers/…` (a subscription change) before it is served, so
    /// a test can act while a change is at Partner Center.
    pub fn hold_next_patch(&self) -> Held {
        let (arrived, arrival) = tokio::sync::oneshot::channel();
        let (release, released) = tokio::sync::oneshot::channel();
        self.state.lock().unwrap().patch_hold = Some(Hold {
            arrived,
            release: released,
        });
        Held {
            arrived: arrival,
            release,
        }
    }
}

/// A TLS server config for 127.0.0.1, and the PEM of the CA that signed its certificate.
fn tls_config() -> (String, rustls::ServerConfig) {
    let certs = crate::certs::localhost("Partner Center emulator CA");
    // Both ring and aws-lc-rs are in the build: name the provider rather than rely on a default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certs.key_der.into());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certs.leaf_der], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (certs.ca_pem, config)
}

/// One export operation: polls so far, and the blobs and eTag it exports.
struct Operation {
    polls: u32,
    last_period: bool,
    etag: String,
    blobs: Vec<Blob>,
}

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, headers: &[(&str, String)], body: impl Into<Bytes>) -> Answer {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    builder.body(Full::new(body.into())).unwrap()
}

fn json(status: StatusCode, headers: &[(&str, String)], value: serde_json::Value) -> Answer {
    let mut all = vec![("content-type", "application/json".to_string())];
    all.extend(headers.iter().cloned());
    answer(status, &all, value.to_string())
}

fn graph_error(status: StatusCode, code: &str, message: &str) -> Answer {
    json(
        status,
        &[],
        serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

fn retry_after(seconds: Option<u64>) -> Vec<(&'static str, String)> {
    seconds
        .map(|s| vec![("retry-after", s.to_string())])
        .unwrap_or_default()
}

async fn handle(state: &Mutex<State>, request: Request<Incoming>) -> Answer {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let headers = request.headers().clone();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if method == Method::PATCH && path.starts_with("/v1/customers/") {
        let hold = state.lock().unwrap().patch_hold.take();
        if let Some(hold) = hold {
            let _ = hold.arrived.send(());
            let _ = hold.release.await;
        }
    }
    let mut state = state.lock().unwrap();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();

    match (&method, segments.as_slice()) {
        (&Method::POST, [tenant, "oauth2", "v2.0", "token"]) => token(&mut state, tenant, &body),
        (&Method::GET, ["blobs", tenant, operation, name]) => {
            blob(&mut state, tenant, operation, name, &query, authorization)
        }
        (_, ["v1.0", "reports", "partners", "billing", rest @ ..]) => {
            let valid = authorization
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "))
                .is_some_and(|t| state.tokens.iter().any(|issued| issued == t));
            if !valid {
                state.seen.unauthorized += 1;
                return graph_error(
                    StatusCode::UNAUTHORIZED,
                    "InvalidAuthenticationToken",
                    "Access token is empty or invalid.",
                );
            }
            if state.script.throttle > 0 {
                state.script.throttle -= 1;
                state.seen.throttled += 1;
                let mut error = graph_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "Too many requests.",
                );
                if let Some(s) = state.script.throttle_retry_after {
                    error
                        .headers_mut()
                        .insert("retry-after", s.to_string().parse().unwrap());
                }
                return error;
            }
            if state.script.unavailable > 0 {
                state.script.unavailable -= 1;
                state.seen.unavailable += 1;
                return graph_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "Try again.",
                );
            }
            match (&method, rest) {
                (&Method::POST, ["usage", "unbilled", "export"]) => export(&mut state, &body),
                (&Method::GET, ["operations", id]) => operation(&mut state, id),
                (&Method::GET, ["manifests", id]) => {
                    let id = id.trim_start_matches("manifest-");
                    if !state.operations.contains_key(id) {
                        return graph_error(StatusCode::NOT_FOUND, "NotFound", "no such manifest");
                    }
                    state.seen.manifest_reads += 1;
                    match state.script.manifest_override.clone() {
                        Some(text) => answer(
                            StatusCode::OK,
                            &[("content-type", "application/json".into())],
                            text,
                        ),
                        None => json(StatusCode::OK, &[], manifest(&state, id)),
                    }
                }
                _ => graph_error(StatusCode::NOT_FOUND, "NotFound", "no such resource"),
            }
        }
        (_, ["v1", "customers", rest @ ..]) => {
            customers::handle(&mut state, &method, rest, authorization, &headers, &body)
        }
        _ => answer(StatusCode::NOT_FOUND, &[], "not found"),
    }
}

/// Entra ID's client-credentials grant, checking every parameter the real one would.
fn token(state: &mut State, tenant: &str, body: &[u8]) -> Answer {
    state.seen.token_requests += 1;
    let form: HashMap<String, String> = form_decode(&String::from_utf8_lossy(body));
    let ok = tenant == TENANT
        && form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
        && form
            .get("scope")
            .is_some_and(|scope| *scope == state.script.scope || scope == PARTNER_CENTER_SCOPE);
    if !ok {
        state.seen.tokens_refused += 1;
        return json(
            StatusCode::UNAUTHORIZED,
            &[],
            serde_json::json!({
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.",
                "error_codes": [7000215],
            }),
        );
    }
    let token = format!("emulator-token-{}", uuid::Uuid::new_v4().simple());
    // A token opens what its scope names: the usage exports (the script's scope), Partner
    // Center's customer API, or both when they are the same.
    let scope = form.get("scope").map(String::as_str);
    if scope == Some(PARTNER_CENTER_SCOPE) {
        state.customers.tokens.push(token.clone());
    }
    if scope == Some(state.script.scope.as_str()) {
        state.tokens.push(token.clone());
    }
    json(
        StatusCode::OK,
        &[],
        serde_json::json!({
            "token_type": "Bearer",
            "expires_in": state.script.token_expires_in,
            "ext_expires_in": state.script.token_expires_in,
            "access_token": token,
        }),
    )
}

fn export(state: &mut State, body: &[u8]) -> Answer {
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    state.seen.exports += 1;
    state.seen.export_bodies.push(request.clone());
    let currency_ok = request["currencyCode"]
        .as_str()
        .is_some_and(|c| c.len() == 3);
    let period_ok = matches!(request["billingPeriod"].as_str(), Some("current" | "last"));
    let attributes_ok = matches!(
        request.get("attributeSet").and_then(|a| a.as_str()),
        None | Some("full" | "basic")
    );
    if !(currency_ok && period_ok && attributes_ok) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "invalid export request",
        );
    }
    let id = uuid::Uuid::new_v4().to_string();
    let last_period = request["billingPeriod"] == "last";
    let (etag, blobs) = if last_period {
        (
            state.script.last.etag.clone(),
            state.script.last.blobs.clone(),
        )
    } else {
        (state.script.etag.clone(), state.script.blobs.clone())
    };
    let currency = request["currencyCode"].as_str().unwrap_or_default();
    let billed_in = state.script.billing_currency.as_deref();
    let (etag, blobs) = match billed_in {
        Some(billed) if billed != currency => (format!("empty-{currency}"), Vec::new()),
        _ => (etag, blobs),
    };
    state.operations.insert(
        id.clone(),
        Operation {
            polls: 0,
            last_period,
            etag,
            blobs,
        },
    );
    let origin = state
        .script
        .location_origin
        .clone()
        .unwrap_or_else(|| state.origin.clone());
    let mut headers = vec![(
        "location",
        format!("{origin}/v1.0/reports/partners/billing/operations/{id}"),
    )];
    headers.extend(retry_after(state.script.poll_retry_after));
    json(StatusCode::ACCEPTED, &headers, serde_json::json!({}))
}

fn operation(state: &mut State, id: &str) -> Answer {
    let Some(op) = state.operations.get_mut(id) else {
        return graph_error(StatusCode::NOT_FOUND, "NotFound", "no such operation");
    };
    op.polls += 1;
    let polls = op.polls;
    state.seen.operation_polls += 1;
    let script = &state.script;
    let mut body = serde_json::json!({
        "id": id,
        "createdDateTime": "2026-11-25T08:12:53Z",
        "lastActionDateTime": "2026-11-25T08:13:48.5046691Z",
    });
    if polls <= script.polls_before_done {
        body["@odata.type"] = "#microsoft.graph.partners.billing.runningOperation".into();
        body["status"] = "running".into();
        return json(StatusCode::OK, &retry_after(script.poll_retry_after), body);
    }
    if let Some((code, message)) = &script.fail_operation {
        body["@odata.type"] = "#microsoft.graph.partners.billing.failedOperation".into();
        body["status"] = "failed".into();
        body["error"] = serde_json::json!({"code": code, "message": message});
        return json(StatusCode::OK, &[], body);
    }
    body["@odata.type"] = "#microsoft.graph.partners.billing.exportSuccessOperation".into();
    body["status"] = "succeeded".into();
    if script.inline_manifest {
        body["resourceLocation"] = manifest(state, id);
    } else {
        body["resourceLocation@odata.navigationLink"] = format!(
            "{}/v1.0/reports/partners/billing/manifests/manifest-{id}",
            state.origin
        )
        .into();
    }
    json(StatusCode::OK, &[], body)
}

fn manifest(state: &State, operation: &str) -> serde_json::Value {
    let op = &state.operations[operation];
    serde_json::json!({
        "id": format!("manifest-{operation}"),
        "schemaVersion": "2",
        "dataFormat": "compressedJSON",
        "createdDateTime": "2026-11-25T08:13:48.87Z",
        "eTag": op.etag,
        "partnerTenantId": TENANT,
        "rootDirectory": format!("{}/blobs/{TENANT}/{operation}", state.origin),
        "sasToken": format!(
            "skoid=emulator&sv=2021-08-06&se=2026-12-01T00%3A00%3A00Z&sr=d&sp=rl&sig={}",
            state.sas_signature
        ),
        "partitionType": "default",
        "blobCount": op.blobs.len(),
        "blobs": op.blobs.iter().map(|b| serde_json::json!({
            "name": b.name,
            "partitionValue": "default",
        })).collect::<Vec<_>>(),
    })
}

fn blob(
    state: &mut State,
    tenant: &str,
    operation: &str,
    name: &str,
    query: &str,
    authorization: Option<String>,
) -> Answer {
    if authorization.is_some() {
        state.seen.blob_requests_with_authorization += 1;
    }
    let signed = form_decode(query).get("sig") == Some(&state.sas_signature);
    if !signed || tenant != TENANT || !state.operations.contains_key(operation) {
        return answer(
            StatusCode::FORBIDDEN,
            &[],
            "<Error><Code>AuthenticationFailed</Code></Error>",
        );
    }
    let op = &state.operations[operation];
    let last_period = op.last_period;
    let Some(blob) = op.blobs.iter().find(|b| b.name == name).cloned() else {
        return answer(
            StatusCode::NOT_FOUND,
            &[],
            "<Error><Code>BlobNotFound</Code></Error>",
        );
    };
    state.seen.blob_downloads += 1;
    if last_period {
        state.seen.last_blob_downloads += 1;
    }
    let bytes = blob.raw.unwrap_or_else(|| gzip(&blob.lines.join("\n")));
    answer(
        StatusCode::OK,
        &[("content-type", "application/octet-stream".into())],
        bytes,
    )
}

pub fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

/// `application/x-www-form-urlencoded` (and query strings) into a map.
fn form_decode(text: &str) -> HashMap<String, String> {
    fn decode(part: &str) -> String {
        let bytes = part.replace('+', " ").into_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && i + 2 < bytes.len()
                && let Ok(b) =
                    u8::from_str_radix(&String::from_utf8_lossy(&bytes[i + 1..i + 3]), 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}
