//! A round's work, done as a BSS does it while the faults strike, every call retried with its
//! request id: pushes in order (each acknowledged before the next), closes of the new
//! customers' due periods one at a time (and in some rounds a tenant-wide close run), and
//! suspends or resumes.
use msp_gateway::proto::v1;
use tokio::sync::watch;
use tonic::Code;

use super::client::Api;
use super::plan::{Push, Round};

/// More closes than a customer has periods due (the plan's months), to bound the loop.
const MAX_CLOSES_PER_CUSTOMER: usize = 12;

/// Pushes in order, each retried until acknowledged; reports the count acknowledged as it
/// goes. Returns the answers.
pub async fn push(
    api: &Api,
    partner_account_id: &str,
    pushes: &[Push],
    acknowledged: watch::Sender<usize>,
) -> Vec<v1::IngestUsageResponse> {
    let mut answers = Vec::new();
    for (n, push) in pushes.iter().enumerate() {
        let request = v1::IngestUsageRequest {
            request_id: push.request_id.clone(),
            partner_account_id: partner_account_id.into(),
            lines: push.lines.clone(),
        };
        let answer = api
            .retried(format!("push {}", push.request_id), |api| {
                let request = request.clone();
                async move {
                    let answer = api
                        .usage()
                        .ingest_usage(tokio_stream::iter([request]))
                        .await?;
                    Ok(answer.into_inner())
                }
            })
            .await;
        answers.push(answer);
        acknowledged.send_replace(n + 1);
    }
    answers
}

/// Closes each new customer's due periods, the next one at a time, once their first usage is
/// in; then, if the round says so, every customer's through a close run. Returns the closes
/// that answered an invoice.
pub async fn close(
    api: &Api,
    customers: &[String],
    round: &Round,
    r: usize,
    mut acknowledged: watch::Receiver<usize>,
) -> Vec<(v1::CloseBillingPeriodRequest, v1::Invoice)> {
    let _ = acknowledged.wait_for(|n| *n >= 1).await;
    let mut closes = Vec::new();
    for &c in &round.new_customers {
        for k in 0..MAX_CLOSES_PER_CUSTOMER {
            let request = v1::CloseBillingPeriodRequest {
                request_id: format!("close-{r}-{c}-{k}"),
                customer_id: customers[c].clone(),
                period_start: None,
            };
            match close_next(api, &request).await {
                Some(invoice) => closes.push((request, invoice)),
                None => break,
            }
        }
    }
    if round.close_run {
        let request = v1::CloseBillingPeriodsRequest {
            request_id: format!("close-run-{r}"),
        };
        // Called again with its request id after a break, the run resumes.
        let last = api
            .retried(format!("close run {r}"), |api| {
                let request = request.clone();
                async move {
                    let mut progress = api.invoices().close_billing_periods(request).await?;
                    let mut last = None;
                    while let Some(report) = progress.get_mut().message().await? {
                        last = Some(report);
                    }
                    Ok(last)
                }
            })
            .await
            .expect("a close run reports progress");
        assert_eq!(last.status, "SUCCEEDED", "close run {r}: {last:?}");
    }
    closes
}

/// The customer's next due period closed (None: nothing due, the next period has not ended).
pub async fn close_next(api: &Api, request: &v1::CloseBillingPeriodRequest) -> Option<v1::Invoice> {
    api.retried(format!("close {}", request.request_id), |api| {
        let request = request.clone();
        async move {
            match api.invoices().close_billing_period(request).await {
                Ok(invoice) => Ok(Some(invoice.into_inner())),
                Err(status)
                    if status.code() == Code::FailedPrecondition
                        && status.message().contains("it closes at") =>
                {
                    Ok(None)
                }
                Err(status) => Err(status),
            }
        }
    })
    .await
}

/// A suspend (or resume) asked for, and the action it answered.
pub struct Acted {
    pub resume: bool,
    pub request_id: String,
    pub customer_id: String,
    pub action: v1::ServiceAction,
}

/// Suspends the round's customers that are active and resumes those suspended.
pub async fn act(
    api: &Api,
    customers: &[String],
    round: &Round,
    r: usize,
    suspended: &mut [bool],
) -> Vec<Acted> {
    let mut acted = Vec::new();
    for &c in &round.actions {
        let (request_id, customer_id) = (format!("act-{r}-{c}"), customers[c].clone());
        let resume = suspended[c];
        let action = suspend_or_resume(api, resume, &request_id, &customer_id).await;
        suspended[c] = !resume;
        acted.push(Acted {
            resume,
            request_id,
            customer_id,
            action,
        });
    }
    acted
}

pub async fn suspend_or_resume(
    api: &Api,
    resume: bool,
    request_id: &str,
    customer_id: &str,
) -> v1::ServiceAction {
    api.retried(format!("service action {request_id}"), |api| {
        let (request_id, customer_id) = (request_id.to_string(), customer_id.to_string());
        async move {
            let mut services = api.services();
            let answer = if resume {
                services
                    .resume_customer(v1::ResumeCustomerRequest {
                        customer_id,
                        reason: "paid".into(),
                        request_id,
                    })
                    .await?
            } else {
                services
                    .suspend_customer(v1::SuspendCustomerRequest {
                        customer_id,
                        reason: "overdue".into(),
                        request_id,
                    })
                    .await?
            };
            Ok(answer.into_inner())
        }
    })
    .await
}
