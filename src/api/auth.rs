//! Authentication and authorization as a tower layer, before any handler runs: every call but
//! health and reflection must carry `authorization: Bearer <key>`, and the key's scope must
//! allow what the permission table ([`super::permissions`]) says the RPC does; a path not in
//! the table is refused. The resolved [`Principal`] travels in the request extensions to the
//! services.
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};

use super::permissions::{Verdict, verdict};
use super::rate_limits::RateLimits;
use crate::domain::access::{PresentedKey, Principal};
use crate::domain::error::{Error, Result};
use crate::store::Store;

#[derive(Clone)]
pub struct AuthLayer {
    store: Arc<Store>,
    rate_limits: Option<Arc<RateLimits>>,
}

impl AuthLayer {
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            rate_limits: None,
        }
    }

    /// Each key's calls held to `rate_limits` (checked once the key is known).
    pub fn with_rate_limits(mut self, rate_limits: Option<RateLimits>) -> Self {
        self.rate_limits = rate_limits.map(Arc::new);
        self
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticate<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            store: self.store.clone(),
            rate_limits: self.rate_limits.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticate<S> {
    inner: S,
    store: Arc<Store>,
    rate_limits: Option<Arc<RateLimits>>,
}

impl<S> Service<http::Request<Body>> for Authenticate<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The clone that was made ready stays with this call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let store = self.store.clone();
        let rate_limits = self.rate_limits.clone();
        Box::pin(async move {
            let permission = match verdict(request.uri().path()) {
                Verdict::Public | Verdict::Portal => {
                    return inner.call(request).await.map(conventional);
                }
                Verdict::Requires(permission) => Some(permission),
                Verdict::Unknown => None,
            };
            let authorized = authenticate(&store, request.headers())
                .await
                .and_then(|principal| {
                    let Some(permission) = permission else {
                        return Err(Error::PermissionDenied(format!(
                            "{} is not a method API keys may call",
                            request.uri().path()
                        )));
                    };
                    principal.require(permission.area, permission.action)?;
                    if let Some(rate_limits) = &rate_limits {
                        rate_limits.admit(&principal.key_id).inspect_err(|_| {
                            metrics::counter!(
                                crate::telemetry::metrics::RATE_LIMITED,
                                "tenant" => principal.tenant_id.clone()
                            )
                            .increment(1);
                        })?;
                    }
                    Ok(principal)
                });
            match authorized {
                Ok(principal) => {
                    tracing::Span::current().record("tenant", principal.tenant_id.as_str());
                    request.extensions_mut().insert(principal);
                    inner.call(request).await.map(conventional)
                }
                Err(error) => Ok(Status::from(error).into_http()),
            }
        })
    }
}

/// tonic answers a request message over the size limit with OUT_OF_RANGE; gRPC's convention
/// (what clients and proxies expect for a limit) is RESOURCE_EXHAUSTED.
fn conventional(response: http::Response<Body>) -> http::Response<Body> {
    match Status::from_header_map(response.headers()) {
        Some(status)
            if status.code() == tonic::Code::OutOfRange
                && status.message().contains("message length too large") =>
        {
            Status::resource_exhausted(format!(
                "{}: the request is larger than the gateway accepts (max_request_bytes); split it into smaller calls",
                status.message()
            ))
            .into_http()
        }
        _ => response,
    }
}

async fn authenticate(store: &Store, headers: &http::HeaderMap) -> Result<Principal> {
    let value = headers.get(http::header::AUTHORIZATION).ok_or_else(|| {
        Error::Unauthenticated(
            "missing API key: send metadata \"authorization: Bearer <key>\"".into(),
        )
    })?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            Error::Unauthenticated("the authorization metadata must be \"Bearer <key>\"".into())
        })?;
    let presented = PresentedKey::parse(token)?;
    let rejected = || Error::Unauthenticated("the API key is unknown or revoked".into());
    let (key, hash) = store
        .api_key_for_authentication(presented.key_id)
        .await?
        .ok_or_else(rejected)?;
    if !presented.matches(&hash) || key.revoked_at.is_some() {
        return Err(rejected());
    }
    Ok(Principal {
        tenant_id: key.tenant_id,
        key_id: key.id,
        scope: key.scope,
        customer_id: key.customer_id,
    })
}

/// The caller, as the auth layer resolved it.
pub fn principal<T>(request: &tonic::Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("missing API key"))
}
