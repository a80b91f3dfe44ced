//! SubscriptionService: customers' seat subscriptions; their charges go to the ledger.
use chrono::Utc;
use tonic::{Request, Response, Status};

use super::Gateway;
use super::auth::principal;
use super::catalog::{billing_to_proto, offer_from_proto, term_to_proto};
use super::charges::kind_to_proto;
use super::convert::{required_id, timestamp};
use super::replies::{guard, reply};
use crate::domain::catalog::check_quantity;
use crate::domain::error::{Error, Violations};
use crate::domain::idempotency::IdempotencyKey;
use crate::domain::money::format_amount;
use crate::domain::paging::PageRequest;
use crate::domain::subscription::{ChangeOutcome, SubscriptionStatus};
use crate::domain::subscription_record::{
    CREATE_SUBSCRIPTION, NewSubscription, SubscriptionChange, SubscriptionRecord,
};
use crate::domain::text;
use crate::ledger::subscriptions::SubscriptionAction;
use crate::proto::v1;
use crate::proto::v1::subscription_service_server::SubscriptionService;

pub struct SubscriptionApi {
    gw: Gateway,
}

impl SubscriptionApi {
    pub fn new(gw: Gateway) -> Self {
        Self { gw }
    }
}

fn status_to_proto(s: SubscriptionStatus) -> v1::SubscriptionStatus {
    match s {
        SubscriptionStatus::Active => v1::SubscriptionStatus::SubscriptionActive,
        SubscriptionStatus::Cancelled => v1::SubscriptionStatus::SubscriptionCancelled,
        SubscriptionStatus::Expired => v1::SubscriptionStatus::SubscriptionExpired,
    }
}

pub fn subscription_to_proto(r: &SubscriptionRecord) -> v1::Subscription {
    let s = &r.state;
    let shown_at = Utc::now().max(s.period.start);
    v1::Subscription {
        id: r.id.clone(),
        customer_id: r.customer_id.clone(),
        catalog_item_id: r.item_id.clone(),
        quantity: i64::from(s.quantity),
        term: term_to_proto(s.offer.term).into(),
        billing_frequency: billing_to_proto(s.offer.billing).into(),
        status: status_to_proto(s.status).into(),
        term_start_time: Some(timestamp(s.term_start)),
        term_end_time: s.term_end().ok().map(timestamp),
        current_period_start_time: Some(timestamp(s.period.start)),
        current_period_end_time: Some(timestamp(s.period.end)),
        unit_price: format_amount(s.period.unit_price, r.currency),
        currency: r.currency.code().to_string(),
        removable_seats: if s.status == SubscriptionStatus::Active {
            i64::from(s.removable_seats(shown_at))
        } else {
            0
        },
        scheduled_quantity: s.scheduled.quantity.map_or(0, i64::from),
        scheduled_term: s
            .scheduled
            .offer
            .map_or(0, |o| term_to_proto(o.term).into()),
        scheduled_billing_frequency: s
            .scheduled
            .offer
            .map_or(0, |o| billing_to_proto(o.billing).into()),
        cancel_at_term_end: s.scheduled.cancel || !s.auto_renew,
        create_time: Some(timestamp(r.created_at)),
        end_time: s.ended_at.map(timestamp),
        vendor_subscription_id: r.vendor_subscription_id.clone().unwrap_or_default(),
        auto_renew: s.auto_renew,
    }
}

fn change_to_proto(c: &SubscriptionChange) -> v1::SubscriptionChange {
    let mut out = v1::SubscriptionChange {
        subscription: Some(subscription_to_proto(&c.record)),
        charge_sequence: c.charge_sequence.unwrap_or_default(),
        ..Default::default()
    };
    match &c.outcome {
        ChangeOutcome::Applied(charge) => {
            if let Some(charge) = charge {
                out.charge_kind = kind_to_proto(charge.kind.charge_kind()).into();
                out.charge_amount = format_amount(charge.amount, c.record.currency);
                out.effective_time = Some(timestamp(charge.at));
            }
        }
        ChangeOutcome::Scheduled {
            effective_at,
            reason,
        } => {
            out.scheduled = true;
            out.effective_time = Some(timestamp(*effective_at));
            out.explanation = reason.clone();
        }
    }
    out
}

/// A change's required request id and subscription id, their violations collected in `v`.
fn request_and_id(
    v: &mut Violations,
    request_id: &str,
    id: &str,
) -> Result<(Option<String>, Option<String>), Error> {
    let checked = v.check(text::request_id(request_id, true)).flatten();
    Ok((checked, v.check_error(required_id("id", id))?))
}

#[tonic::async_trait]
impl SubscriptionService for SubscriptionApi {
    async fn create_subscription(
        &self,
        request: Request<v1::CreateSubscriptionRequest>,
    ) -> Result<Response<v1::Subscription>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let sub = req
            .subscription
            .ok_or_else(|| Error::invalid("subscription", "is required"))?;
        let mut v = Violations::new();
        let request_id = v.check(text::request_id(&req.request_id, true)).flatten();
        let customer_id =
            v.check_error(required_id("subscription.customer_id", &sub.customer_id))?;
        let item_id = v.check_error(required_id(
            "subscription.catalog_item_id",
            &sub.catalog_item_id,
        ))?;
        let quantity = v.check(check_quantity("subscription.quantity", sub.quantity));
        let offer = offer_from_proto(&mut v, "subscription.", sub.term, sub.billing_frequency);
        v.into_result()?;
        let (Some(request_id), Some(customer_id), Some(item_id), Some(quantity), Some(offer)) =
            (request_id, customer_id, item_id, quantity, offer)
        else {
            return Err(Status::internal("validated fields missing"));
        };
        let new = NewSubscription {
            customer_id,
            item_id,
            quantity,
            offer,
        };
        let key = IdempotencyKey::new(request_id, CREATE_SUBSCRIPTION, &new);
        let answer = self
            .gw
            .ledger
            .create_subscription(
                &principal.tenant_id,
                &new,
                Utc::now(),
                &guard(key, subscription_to_proto),
            )
            .await?;
        reply(answer, subscription_to_proto)
    }

    async fn get_subscription(
        &self,
        request: Request<v1::GetSubscriptionRequest>,
    ) -> Result<Response<v1::Subscription>, Status> {
        let principal = principal(&request)?;
        let id = required_id("id", &request.get_ref().id)?;
        let record = self
            .gw
            .store
            .subscription(&principal.tenant_id, &id)
            .await?;
        Ok(Response::new(subscription_to_proto(&record)))
    }

    async fn list_subscriptions(
        &self,
        request: Request<v1::ListSubscriptionsRequest>,
    ) -> Result<Response<v1::ListSubscriptionsResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let customer_id = if req.customer_id.is_empty() {
            None
        } else {
            Some(required_id("customer_id", &req.customer_id)?)
        };
        let filters = format!("subscriptions|{}", customer_id.as_deref().unwrap_or(""));
        let page = PageRequest::parse(req.page_size, &req.page_token, &filters)
            .map_err(Error::InvalidArgument)?;
        let page = self
            .gw
            .store
            .list_subscriptions(&principal.tenant_id, customer_id.as_deref(), &page)
            .await?;
        Ok(Response::new(v1::ListSubscriptionsResponse {
            subscriptions: page.items.iter().map(subscription_to_proto).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn change_subscription_quantity(
        &self,
        request: Request<v1::ChangeSubscriptionQuantityRequest>,
    ) -> Result<Response<v1::SubscriptionChange>, Status> {
        let tenant_id = principal(&request)?.tenant_id.clone();
        let req = request.into_inner();
        let action = |v: &mut Violations| {
            v.check(check_quantity("quantity", req.quantity))
                .map(SubscriptionAction::SetQuantity)
        };
        self.change_request(
            &tenant_id,
            &req.request_id,
            &req.id,
            "ChangeSubscriptionQuantity",
            action,
        )
        .await
    }

    async fn cancel_subscription(
        &self,
        request: Request<v1::CancelSubscriptionRequest>,
    ) -> Result<Response<v1::SubscriptionChange>, Status> {
        let tenant_id = principal(&request)?.tenant_id.clone();
        let req = request.into_inner();
        let action = |_: &mut Violations| Some(SubscriptionAction::Cancel);
        self.change_request(
            &tenant_id,
            &req.request_id,
            &req.id,
            "CancelSubscription",
            action,
        )
        .await
    }

    async fn change_subscription_term(
        &self,
        request: Request<v1::ChangeSubscriptionTermRequest>,
    ) -> Result<Response<v1::SubscriptionChange>, Status> {
        let tenant_id = principal(&request)?.tenant_id.clone();
        let req = request.into_inner();
        let action = |v: &mut Violations| {
            offer_from_proto(v, "", req.term, req.billing_frequency)
                .map(SubscriptionAction::ChangeOffer)
        };
        self.change_request(
            &tenant_id,
            &req.request_id,
            &req.id,
            "ChangeSubscriptionTerm",
            action,
        )
        .await
    }

    async fn set_subscription_auto_renew(
        &self,
        request: Request<v1::SetSubscriptionAutoRenewRequest>,
    ) -> Result<Response<v1::SubscriptionChange>, Status> {
        let tenant_id = principal(&request)?.tenant_id.clone();
        let req = request.into_inner();
        let action = |_: &mut Violations| Some(SubscriptionAction::SetAutoRenew(req.auto_renew));
        self.change_request(
            &tenant_id,
            &req.request_id,
            &req.id,
            "SetSubscriptionAutoRenew",
            action,
        )
        .await
    }
}

impl SubscriptionApi {
    /// A change's request: its request id and subscription id, then the action's own fields
    /// (`action`), every violation reported together; then the change.
    async fn change_request(
        &self,
        tenant_id: &str,
        request_id: &str,
        id: &str,
        operation: &'static str,
        action: impl FnOnce(&mut Violations) -> Option<SubscriptionAction>,
    ) -> Result<Response<v1::SubscriptionChange>, Status> {
        let mut v = Violations::new();
        let (request_id, id) = request_and_id(&mut v, request_id, id)?;
        let action = action(&mut v);
        v.into_result()?;
        let (Some(request_id), Some(id), Some(action)) = (request_id, id, action) else {
            return Err(Status::internal("validated fields missing"));
        };
        self.change(tenant_id, request_id, operation, id, action)
            .await
    }

    async fn change(
        &self,
        tenant_id: &str,
        request_id: String,
        operation: &'static str,
        id: String,
        action: SubscriptionAction,
    ) -> Result<Response<v1::SubscriptionChange>, Status> {
        let key = IdempotencyKey::new(request_id, operation, &(&id, action));
        let answer = self
            .gw
            .ledger
            .change_subscription(
                tenant_id,
                &id,
                action,
                Utc::now(),
                &guard(key, change_to_proto),
            )
            .await?;
        reply(answer, change_to_proto)
    }
}
