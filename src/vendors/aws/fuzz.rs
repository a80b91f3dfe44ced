//! Cost Explorer answers from raw bytes, for the fuzz targets (`crate::fuzz_entry`): a
//! GetCostAndUsage response body goes through the SDK's own deserializer (a client whose only
//! connection answers 200 with that body) and then through the mapping into usage lines, for
//! every grouping and cost metric, as [`super::AwsCostExplorer`] pulls do.
use std::cell::RefCell;
use std::sync::OnceLock;

use aws_sdk_costexplorer::Client;
use aws_sdk_costexplorer::config::{
    BehaviorVersion, Credentials, HttpClient, Region, RuntimeComponents,
};
use aws_sdk_costexplorer::types::{DateInterval, Granularity as SdkGranularity};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_types::body::SdkBody;

use super::mapping::{self, Grouping};
use super::retry::{self, Verdict};
use super::settings::CostMetric;
use crate::vendors::VendorError;

thread_local! {
    /// The body the next request is answered with (the client runs on the calling thread).
    static BODY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

#[derive(Debug, Clone)]
struct CannedAnswer;

impl HttpConnector for CannedAnswer {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        let body = BODY.with(|b| b.borrow().clone());
        let mut response = HttpResponse::new(
            200.try_into().expect("200 is a status"),
            SdkBody::from(body),
        );
        response
            .headers_mut()
            .insert("content-type", "application/x-amz-json-1.1");
        HttpConnectorFuture::ready(Ok(response))
    }
}

impl HttpClient for CannedAnswer {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

fn client() -> &'static (tokio::runtime::Runtime, Client) {
    static CLIENT: OnceLock<(tokio::runtime::Runtime, Client)> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        let config = aws_sdk_costexplorer::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKIDFUZZ", "fuzz", None, None, "fuzz"))
            .http_client(CannedAnswer)
            .build();
        (runtime, Client::from_conf(config))
    })
}

/// The usage lines a GetCostAndUsage answer `body` maps to, summed over every grouping and cost
/// metric; an error when the first (the default setting, grouped by service) refuses it.
pub fn cost_and_usage(body: &[u8]) -> Result<usize, VendorError> {
    let (runtime, client) = client();
    BODY.with(|b| *b.borrow_mut() = body.to_vec());
    let period = DateInterval::builder()
        .start("2026-11-01")
        .end("2026-12-01")
        .build()
        .map_err(|e| VendorError::Failed(e.to_string()))?;
    let sent = runtime.block_on(
        client
            .get_cost_and_usage()
            .time_period(period)
            .granularity(SdkGranularity::Daily)
            .set_metrics(Some(mapping::metrics(CostMetric::UnblendedCost)))
            .send(),
    );
    let output = match sent {
        Ok(output) => output,
        Err(error) => {
            return match retry::classify(&error) {
                Verdict::NoData => Ok(0),
                Verdict::Fatal(e) => Err(e),
                Verdict::Throttled => Err(VendorError::Throttled { retry_after: None }),
                Verdict::Transient(what) => Err(VendorError::Unavailable(what)),
            };
        }
    };
    let mut first = None;
    let mut lines = 0;
    for metric in [
        CostMetric::UnblendedCost,
        CostMetric::AmortizedCost,
        CostMetric::NetUnblendedCost,
    ] {
        for grouping in [
            Grouping::AccountService,
            Grouping::AccountUsageType {
                service: "Amazon Elastic Compute Cloud - Compute",
            },
        ] {
            let mapped = mapping::lines_from_results(output.results_by_time(), grouping, metric)
                .and_then(super::unique_by_key);
            if let Ok(mapped) = &mapped {
                lines += mapped.len();
            }
            first.get_or_insert(mapped);
        }
    }
    first.expect("at least one combination").map(|_| lines)
}

/// A Cost Explorer `Amount` as the mapping reads it.
pub fn amount(text: &str) -> Result<rust_decimal::Decimal, VendorError> {
    mapping::parse_amount(text)
}
