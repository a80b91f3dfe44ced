//! A BSS's client: every call retried with the same request (so the same request id) while the
//! answer is UNAVAILABLE or ABORTED, or the connection to a gateway that was SIGKILLed broke
//! under the call; any other refusal fails the run. Refusals are counted by code.
use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use msp_gateway::proto::v1;
use msp_gateway::proto::v1::charge_service_client::ChargeServiceClient;
use msp_gateway::proto::v1::credit_control_service_client::CreditControlServiceClient;
use msp_gateway::proto::v1::customer_service_client::CustomerServiceClient;
use msp_gateway::proto::v1::invoice_service_client::InvoiceServiceClient;
use msp_gateway::proto::v1::service_management_service_client::ServiceManagementServiceClient;
use msp_gateway::proto::v1::usage_service_client::UsageServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::gateway_process::CALL_TIMEOUT;
use crate::harness::Bearer;

/// How long one call may keep being refused (a restart and a lease lapsing take seconds).
pub const RETRY_FOR: Duration = Duration::from_secs(45);
/// A client's pause before it retries.
pub const BACKOFF: Duration = Duration::from_millis(40);

#[derive(Clone)]
pub struct Api {
    channel: Channel,
    key: String,
    refusals: Arc<Mutex<BTreeMap<String, usize>>>,
}

/// Whether a real BSS retries the call: the gateway said so (UNAVAILABLE, ABORTED), or the
/// connection broke under the call. A killed gateway answers nothing: the status is then the
/// client's own, made from the connection's error (which it carries as its source, whatever
/// its code), never one the gateway sent.
fn retryable(status: &Status) -> bool {
    let broken_connection = std::error::Error::source(status).is_some();
    broken_connection || matches!(status.code(), Code::Unavailable | Code::Aborted)
}

impl Api {
    /// A client of the gateway at `address`, whichever process serves it: the channel
    /// connects when first used and again after the connection breaks.
    pub fn new(address: std::net::SocketAddr, key: &str) -> Api {
        let channel = Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect_lazy();
        Api {
            channel,
            key: key.into(),
            refusals: Arc::default(),
        }
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    fn bearer(&self) -> Bearer {
        Bearer::new(&self.key)
    }

    pub fn usage(&self) -> UsageServiceClient<InterceptedService<Channel, Bearer>> {
        UsageServiceClient::with_interceptor(self.channel(), self.bearer())
    }

    pub fn invoices(&self) -> InvoiceServiceClient<InterceptedService<Channel, Bearer>> {
        InvoiceServiceClient::with_interceptor(self.channel(), self.bearer())
    }

    pub fn services(&self) -> ServiceManagementServiceClient<InterceptedService<Channel, Bearer>> {
        ServiceManagementServiceClient::with_interceptor(self.channel(), self.bearer())
    }

    pub fn charges(&self) -> ChargeServiceClient<InterceptedService<Channel, Bearer>> {
        ChargeServiceClient::with_interceptor(self.channel(), self.bearer())
    }

    pub fn credit(&self) -> CreditControlServiceClient<InterceptedService<Channel, Bearer>> {
        CreditControlServiceClient::with_interceptor(self.channel(), self.bearer())
    }

    pub fn customers(&self) -> CustomerServiceClient<InterceptedService<Channel, Bearer>> {
        CustomerServiceClient::with_interceptor(self.channel(), self.bearer())
    }

    /// Notes a refusal a client retries (panics on one it would not).
    pub fn refused(&self, what: &dyn Display, status: &Status) {
        assert!(
            retryable(status),
            "{what}: refused with {status:?}, which no client retries"
        );
        let code = format!("{:?}", status.code());
        *self.refusals.lock().unwrap().entry(code).or_default() += 1;
    }

    /// Refusals so far by code.
    pub fn refusals(&self) -> BTreeMap<String, usize> {
        self.refusals.lock().unwrap().clone()
    }

    /// `call` until it answers, retried as a BSS does. `call` makes the same request every
    /// time (the same request id). `Err` answers that are final for the caller are returned
    /// by `call` as `Ok`.
    pub async fn retried<T, F, Fut>(&self, what: impl Display, mut call: F) -> T
    where
        F: FnMut(Api) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let started = Instant::now();
        loop {
            let outcome = tokio::time::timeout(CALL_TIMEOUT, call(self.clone()))
                .await
                .unwrap_or_else(|_| panic!("{what} hung for {CALL_TIMEOUT:?}"));
            match outcome {
                Ok(answer) => return answer,
                Err(status) => {
                    self.refused(&what, &status);
                    assert!(
                        started.elapsed() < RETRY_FOR,
                        "{what} still refused after {RETRY_FOR:?}: {status:?}"
                    );
                    tokio::time::sleep(BACKOFF).await;
                }
            }
        }
    }
}

/// Every page of a list, each page retried.
pub async fn all_pages<T, F, Fut>(api: &Api, what: &str, mut page: F) -> Vec<T>
where
    F: FnMut(Api, String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), Status>>,
{
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let (mut got, next) = api.retried(what, |api| page(api, token.clone())).await;
        items.append(&mut got);
        if next.is_empty() {
            return items;
        }
        token = next;
    }
}

/// Every invoice of the tenant, in creation order.
pub async fn all_invoices(api: &Api) -> Vec<v1::Invoice> {
    all_pages(api, "ListInvoices", |api, page_token| async move {
        let page = api
            .invoices()
            .list_invoices(v1::ListInvoicesRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok((page.invoices, page.next_page_token))
    })
    .await
}

/// Every service action of the tenant, in creation order.
pub async fn all_actions(api: &Api) -> Vec<v1::ServiceAction> {
    all_pages(api, "ListServiceActions", |api, page_token| async move {
        let page = api
            .services()
            .list_service_actions(v1::ListServiceActionsRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok((page.service_actions, page.next_page_token))
    })
    .await
}

/// Every charge of the tenant, in sequence order.
pub async fn all_charges(api: &Api) -> Vec<v1::Charge> {
    all_pages(api, "ListCharges", |api, page_token| async move {
        let page = api
            .charges()
            .list_charges(v1::ListChargesRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok((page.charges, page.next_page_token))
    })
    .await
}
