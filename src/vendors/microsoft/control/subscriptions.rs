//! Subscription status changes: read the subscription (and its etag), decide, PATCH the whole
//! resource with the new `status` under `If-Match`; a 412 means it changed meanwhile, so read
//! it again and decide again.
use azure_core::http::headers::HeaderName;
use azure_core::http::{Method, StatusCode};
use serde::Deserialize;

use super::PartnerCenterControl;
use super::requests::refusal;
use crate::domain::seat_order::vendor_request_id;
use crate::domain::service_control::{Change, ControlError, ResourceChange};
use crate::vendors::service_control::ControlResult;

const ETAG: HeaderName = HeaderName::from_static("etag");

/// The statuses the gateway sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionStatus {
    Active,
    Suspended,
    /// Cancelled; Partner Center allows it only within the cancellation window of NCE
    /// subscriptions (and refuses it otherwise, which is reported per subscription).
    Deleted,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::Suspended => "suspended",
            SubscriptionStatus::Deleted => "deleted",
        }
    }

    fn participle(self) -> &'static str {
        match self {
            SubscriptionStatus::Active => "resumed",
            SubscriptionStatus::Suspended => "suspended",
            SubscriptionStatus::Deleted => "cancelled",
        }
    }
}

/// A customer's subscription as listed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    #[serde(default)]
    pub offer_name: String,
    #[serde(default)]
    pub status: String,
}

#[derive(Deserialize)]
struct SubscriptionList {
    #[serde(default)]
    items: Vec<Subscription>,
}

/// What to do about one subscription.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Plan {
    Done,
    Skip(&'static str),
    Refuse(String),
    Patch,
}

/// `current` is Partner Center's status; `whole_tenant` when acting on every subscription of a
/// customer (ended subscriptions are then passed over rather than refused).
fn plan(wanted: SubscriptionStatus, current: &str, whole_tenant: bool) -> Plan {
    let current = current.to_ascii_lowercase();
    if current == wanted.as_str() {
        return Plan::Done;
    }
    let ended = matches!(current.as_str(), "deleted" | "expired");
    match wanted {
        SubscriptionStatus::Suspended | SubscriptionStatus::Deleted if ended => {
            Plan::Skip("already ended (cancelled or expired)")
        }
        SubscriptionStatus::Active if ended && whole_tenant => {
            Plan::Skip("ended (cancelled or expired); not reactivated")
        }
        SubscriptionStatus::Active if ended => Plan::Refuse(format!(
            "is {current}; an ended subscription cannot be resumed"
        )),
        _ => Plan::Patch,
    }
}

impl PartnerCenterControl {
    /// The customer's subscriptions.
    pub async fn subscriptions(&self, tenant: &str) -> ControlResult<Vec<Subscription>> {
        let what = format!("listing the subscriptions of customer {tenant}");
        let url = self.url(&format!("customers/{tenant}/subscriptions"))?;
        let answer = self.request(Method::Get, &url, None, &[], &what).await?;
        if !answer.status.is_success() {
            return Err(refusal(&answer, &what));
        }
        let list: SubscriptionList = serde_json::from_slice(&answer.body)
            .map_err(|e| ControlError::permanent(format!("{what}: unreadable answer: {e}")))?;
        Ok(list.items)
    }

    /// Every subscription of a customer; the failures, if any, named one by one.
    pub(super) async fn set_tenant(
        &self,
        tenant: &str,
        wanted: SubscriptionStatus,
    ) -> ControlResult<Vec<ResourceChange>> {
        let subscriptions = self.subscriptions(tenant).await?;
        let mut changes = Vec::new();
        let mut failures: Vec<(String, ControlError)> = Vec::new();
        for subscription in &subscriptions {
            match self.set(tenant, &subscription.id, wanted, true).await {
                Ok(change) => changes.push(change),
                Err(error) => failures.push((subscription.id.clone(), error)),
            }
        }
        if failures.is_empty() {
            return Ok(changes);
        }
        let transient = failures.iter().any(|(_, e)| e.is_transient());
        let listed: Vec<String> = failures
            .iter()
            .map(|(id, e)| format!("subscription {id}: {}", e.reason()))
            .collect();
        let reason = format!(
            "{} of {} subscriptions of customer {tenant} could not be {} ({} done): {}",
            failures.len(),
            subscriptions.len(),
            wanted.participle(),
            changes.len(),
            listed.join("; ")
        );
        Err(if transient {
            ControlError::transient(reason)
        } else {
            ControlError::permanent(reason)
        })
    }

    pub(super) async fn set_one(
        &self,
        tenant: &str,
        subscription: &str,
        wanted: SubscriptionStatus,
    ) -> ControlResult<ResourceChange> {
        self.set(tenant, subscription, wanted, false).await
    }

    async fn set(
        &self,
        tenant: &str,
        subscription: &str,
        wanted: SubscriptionStatus,
        whole_tenant: bool,
    ) -> ControlResult<ResourceChange> {
        let what = format!("setting subscription {subscription} {}", wanted.as_str());
        self.update(tenant, subscription, &what, None, |resource| {
            let current = resource["status"].as_str().unwrap_or_default().to_string();
            let plan = plan(wanted, &current, whole_tenant);
            if plan == Plan::Patch {
                resource["status"] = wanted.as_str().into();
            }
            plan
        })
        .await
    }

    /// Reads the subscription, lets `decide` change the resource (or say why not), and PATCHes
    /// the whole resource under `If-Match`; a 412 (changed meanwhile) reads it again and decides
    /// again. `request_seed` derives `MS-RequestId` per round (None: a fresh one each time).
    pub(super) async fn update(
        &self,
        tenant: &str,
        subscription: &str,
        what: &str,
        request_seed: Option<&str>,
        mut decide: impl FnMut(&mut serde_json::Value) -> Plan,
    ) -> ControlResult<ResourceChange> {
        let url = self.url(&format!("customers/{tenant}/subscriptions/{subscription}"))?;
        let rounds = self.config.max_precondition_retries + 1;
        for round in 0..rounds {
            let (mut resource, etag) = self.read(&url, subscription).await?;
            match decide(&mut resource) {
                Plan::Done => return Ok(ResourceChange::new(subscription, Change::AlreadyInState)),
                Plan::Skip(note) => return Ok(ResourceChange::skipped(subscription, note)),
                Plan::Refuse(reason) => return Err(ControlError::permanent(reason)),
                Plan::Patch => {}
            }
            let request_id = match request_seed {
                Some(seed) => vendor_request_id(&format!("{seed}/patch/{round}")),
                None => uuid::Uuid::new_v4().to_string(),
            };
            let headers = [
                ("if-match", etag),
                ("ms-requestid", request_id.clone()),
                ("ms-correlationid", request_id),
            ];
            let answer = self
                .request(Method::Patch, &url, Some(&resource), &headers, what)
                .await?;
            match answer.status {
                status if status.is_success() => {
                    return Ok(ResourceChange::new(subscription, Change::Applied));
                }
                StatusCode::PreconditionFailed => {
                    tracing::debug!(subscription, "stale etag; reading the subscription again");
                }
                _ => return Err(refusal(&answer, what)),
            }
        }
        Err(ControlError::transient(format!(
            "subscription {subscription} changed under every one of {rounds} attempts (HTTP 412)"
        )))
    }

    /// The subscription resource and its etag (the `ETag` header, or `attributes.etag`).
    async fn read(
        &self,
        url: &azure_core::http::Url,
        subscription: &str,
    ) -> ControlResult<(serde_json::Value, String)> {
        let what = format!("reading subscription {subscription}");
        let answer = self.request(Method::Get, url, None, &[], &what).await?;
        if answer.status == StatusCode::NotFound {
            return Err(ControlError::permanent(format!(
                "{what}: no such subscription under the customer"
            )));
        }
        if !answer.status.is_success() {
            return Err(refusal(&answer, &what));
        }
        let resource: serde_json::Value = serde_json::from_slice(&answer.body)
            .map_err(|e| ControlError::permanent(format!("{what}: unreadable answer: {e}")))?;
        let etag = answer
            .header(&ETAG)
            .map(str::to_string)
            .or_else(|| {
                resource
                    .pointer("/attributes/etag")?
                    .as_str()
                    .map(str::to_string)
            })
            .ok_or_else(|| {
                ControlError::permanent(format!("{what}: the answer carries no etag"))
            })?;
        Ok((resource, etag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SubscriptionStatus::*;

    #[test]
    fn plans_per_status() {
        assert_eq!(plan(Suspended, "active", true), Plan::Patch);
        assert_eq!(plan(Suspended, "Suspended", true), Plan::Done);
        assert!(matches!(plan(Suspended, "deleted", false), Plan::Skip(_)));
        assert_eq!(plan(Active, "suspended", false), Plan::Patch);
        assert!(matches!(plan(Active, "deleted", true), Plan::Skip(_)));
        assert!(matches!(plan(Active, "expired", false), Plan::Refuse(_)));
        assert_eq!(plan(Deleted, "suspended", true), Plan::Patch);
        assert_eq!(plan(Deleted, "deleted", true), Plan::Done);
        assert!(matches!(plan(Deleted, "expired", true), Plan::Skip(_)));
        assert_eq!(plan(Suspended, "pending", true), Plan::Patch);
    }
}
