//! RPC metrics as a tower layer in front of every service (so no handler can forget them): calls
//! in flight, and per method the calls finished by gRPC status code and their duration. A
//! call's code is read where gRPC puts it: the response headers for an error answered at once,
//! the trailers otherwise; a call whose client left before the trailers counts as CANCELLED.
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::Frame;
use tonic::Code;
use tonic::body::Body;
use tower::{Layer, Service};

use super::permissions::{Verdict, verdict};
use crate::telemetry::metrics::{RPC_DURATION, RPC_IN_FLIGHT, RPC_REQUESTS};

#[derive(Clone, Default)]
pub struct MetricsLayer;

impl<S> Layer<S> for MetricsLayer {
    type Service = Measure<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Measure { inner }
    }
}

#[derive(Clone)]
pub struct Measure<S> {
    inner: S,
}

impl<S> Service<http::Request<Body>> for Measure<S>
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

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let mut call = Call::start(request.uri().path());
        Box::pin(async move {
            let response = inner.call(request).await?;
            if let Some(code) = grpc_status(response.headers()) {
                call.code = Some(code);
            }
            Ok(response.map(|body| Body::new(Measured { inner: body, call })))
        })
    }
}

/// One call being measured; recorded when dropped (after its body ended or was abandoned).
struct Call {
    method: String,
    started: Instant,
    code: Option<Code>,
}

impl Call {
    fn start(path: &str) -> Self {
        // Only the methods the table names become labels: a client inventing paths must not
        // grow the series without bound.
        let method = match verdict(path) {
            Verdict::Unknown => "unknown".to_string(),
            // Portal pages carry ids in their paths: one label for all of them.
            Verdict::Portal => "portal".to_string(),
            Verdict::Public | Verdict::Requires(_) => path.to_string(),
        };
        metrics::gauge!(RPC_IN_FLIGHT, "method" => method.clone()).increment(1.0);
        Call {
            method,
            started: Instant::now(),
            code: None,
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(Code::Cancelled);
        let method = std::mem::take(&mut self.method);
        metrics::gauge!(RPC_IN_FLIGHT, "method" => method.clone()).decrement(1.0);
        metrics::histogram!(RPC_DURATION, "method" => method.clone())
            .record(self.started.elapsed().as_secs_f64());
        metrics::counter!(RPC_REQUESTS, "method" => method, "code" => format!("{code:?}"))
            .increment(1);
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

/// The response body, passed through, watching for the trailers that carry the status.
struct Measured {
    inner: Body,
    call: Call,
}

impl http_body::Body for Measured {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(trailers) = frame.trailers_ref()
            && let Some(code) = grpc_status(trailers)
        {
            self.call.code = Some(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
