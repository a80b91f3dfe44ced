//! New Commerce seats: bought through a cart and its checkout, resized and cancelled through the
//! subscription PATCH.
//!
//! - Availability: a price sheet keys a licence as `product:sku`; an order names the
//!   availability too. When the catalogue item carries none, `GET /v1/customers/{tenant}/
//!   products/{product}/skus/{sku}/availabilities?targetSegment=commercial` names the ones the
//!   customer can buy, and the first purchasable one whose terms include the term is taken.
//! - `POST /v1/customers/{tenant}/carts` with one line item (`catalogItemId`, `quantity`,
//!   `termDuration`, `billingCycle`), then `POST …/carts/{cart}/checkout`; the order's line item
//!   names the new subscription (else the order is read once: `GET …/orders/{order}`).
//! - Both POSTs carry `MS-RequestId` derived from the gateway request (and the step) and
//!   `MS-CorrelationId` derived from the gateway request: Partner Center answers a repeated
//!   request id with its first answer, so a retried purchase finds the first cart and order
//!   instead of buying again.
//! - A change for the renewal is PATCHed for Partner Center to apply then: a reduction the
//!   168-hour window scheduled, or a term change (always at the renewal), as
//!   `scheduledNextTermInstructions` carrying both (`product` with its `termDuration` and
//!   `billingCycle`, and `quantity`; Partner Center takes them only with auto-renewal on); an
//!   end (or renewal turned back on) as `autoRenewEnabled`. Partner Center deletes the
//!   scheduled instructions when a change is made now (a quantity PATCH), so the ledger sends
//!   what is still scheduled again after one.
//! - A refusal (an unavailable SKU, a quantity limit) is a [`ControlError::Permanent`] naming
//!   Partner Center's code and description, from the error body or the checkout's
//!   `orderErrors`.
use azure_core::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::PartnerCenterControl;
use super::requests::{vendor_code, vendor_reason};
use super::subscriptions::Plan;
use crate::domain::catalog::{CatalogItemId, Offer, Term};
use crate::domain::seat_order::{
    OrderedSubscription, RenewalChange, SeatOrder, VendorSeats, billing_cycle, vendor_request_id,
};
use crate::domain::service_control::ControlError;
use crate::domain::vendor::VendorAccountKind;
use crate::vendors::microsoft::http::Answer;
use crate::vendors::service_control::ControlResult;

impl PartnerCenterControl {
    /// Buys `order.quantity` seats for the customer: cart, checkout, the new subscription's id.
    pub async fn order_seats(&self, order: &SeatOrder) -> ControlResult<OrderedSubscription> {
        let tenant = guid("customer tenant", &order.customer_tenant)?;
        let catalog_item_id = match order.item.availability {
            Some(_) => order.item.to_string(),
            None => {
                self.availability(tenant, &order.item, order.offer.term)
                    .await?
            }
        };
        let seed = order.request_key.as_str();
        let headers = |step: &str| {
            [
                ("ms-requestid", vendor_request_id(&format!("{seed}/{step}"))),
                ("ms-correlationid", vendor_request_id(seed)),
            ]
        };
        let what = format!("ordering {} seats of {catalog_item_id}", order.quantity);
        let cart = json!({
            "lineItems": [{
                "id": 0,
                "catalogItemId": catalog_item_id,
                "quantity": order.quantity,
                "termDuration": order.offer.term.as_str(),
                "billingCycle": billing_cycle(order.offer.billing),
            }],
        });
        let url = self.url(&format!("customers/{tenant}/carts"))?;
        let answer = self
            .request(Method::Post, &url, Some(&cart), &headers("cart"), &what)
            .await?;
        let cart = accepted(&answer, &what)?;
        let cart_id = path_id(&cart, "/id", "cart id", &what)?;
        let url = self.url(&format!("customers/{tenant}/carts/{cart_id}/checkout"))?;
        let answer = self
            .request(
                Method::Post,
                &url,
                Some(&json!({})),
                &headers("checkout"),
                &what,
            )
            .await?;
        let result = accepted(&answer, &what)?;
        if let Some(error) = result["orderErrors"].as_array().and_then(|e| e.first()) {
            return Err(refused(&what, &code_of(error), &description_of(error)));
        }
        let order_id = path_id(&result, "/orders/0/id", "order id", &what)?;
        let subscription = match result
            .pointer("/orders/0/lineItems/0/subscriptionId")
            .and_then(Value::as_str)
        {
            Some(id) => id.to_string(),
            None => self.ordered_subscription(tenant, &order_id, &what).await?,
        };
        guid("subscription id", &subscription)?;
        Ok(OrderedSubscription {
            subscription_id: subscription,
            order_id,
        })
    }

    /// Sets the subscription's seat count (an absolute number: repeating it changes nothing).
    pub async fn set_seat_quantity(
        &self,
        seats: &VendorSeats,
        quantity: u32,
        request_key: &str,
    ) -> ControlResult<()> {
        let (tenant, subscription) = ids(seats)?;
        let what = format!("setting subscription {subscription} to {quantity} seats");
        self.update(tenant, subscription, &what, Some(request_key), |resource| {
            if resource["quantity"].as_u64() == Some(u64::from(quantity)) {
                return Plan::Done;
            }
            resource["quantity"] = quantity.into();
            Plan::Patch
        })
        .await?;
        Ok(())
    }

    /// Cancels the subscription (`status: deleted`, which Partner Center allows inside its
    /// cancellation window only).
    pub async fn cancel_seats(&self, seats: &VendorSeats) -> ControlResult<()> {
        let (tenant, subscription) = ids(seats)?;
        self.set_one(
            tenant,
            subscription,
            super::subscriptions::SubscriptionStatus::Deleted,
        )
        .await?;
        Ok(())
    }

    /// What the subscription does at its renewal: `scheduledNextTermInstructions` (the product,
    /// sku and availability, the quantity, the term and billing cycle it renews with) for a
    /// reduction or a term change scheduled, none to renew as it is; `autoRenewEnabled` for
    /// whether it renews at all.
    pub async fn schedule_seat_renewal(
        &self,
        seats: &VendorSeats,
        change: RenewalChange,
        request_key: &str,
    ) -> ControlResult<()> {
        let (tenant, subscription) = ids(seats)?;
        let what = format!("scheduling the renewal of subscription {subscription}");
        self.update(tenant, subscription, &what, Some(request_key), |resource| {
            let wanted = match change {
                RenewalChange::AutoRenew(renews) => {
                    if resource["autoRenewEnabled"] == json!(renews) {
                        return Plan::Done;
                    }
                    resource["autoRenewEnabled"] = renews.into();
                    return Plan::Patch;
                }
                RenewalChange::NextTerm {
                    quantity: None,
                    offer: None,
                } => Value::Null,
                RenewalChange::NextTerm { quantity, offer } => {
                    match next_term(resource, quantity, offer, &what) {
                        Ok(instructions) => instructions,
                        Err(refusal) => return Plan::Refuse(refusal),
                    }
                }
            };
            let current = resource
                .get("scheduledNextTermInstructions")
                .cloned()
                .unwrap_or(Value::Null);
            if current == wanted {
                return Plan::Done;
            }
            resource["scheduledNextTermInstructions"] = wanted;
            Plan::Patch
        })
        .await?;
        Ok(())
    }

    /// The `product:sku:availability` the customer can buy `term` of.
    async fn availability(
        &self,
        tenant: &str,
        item: &CatalogItemId,
        term: Term,
    ) -> ControlResult<String> {
        let what = format!("finding an availability of {item} for customer {tenant}");
        let mut url = self.url(&format!(
            "customers/{tenant}/products/{}/skus/{}/availabilities",
            item.product, item.sku
        ))?;
        url.set_query(Some("targetSegment=commercial"));
        let answer = self.request(Method::Get, &url, None, &[], &what).await?;
        let list = accepted(&answer, &what)?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let sells_term = |a: &Value| {
            a["terms"].as_array().is_none_or(|terms| {
                terms
                    .iter()
                    .any(|t| t["duration"].as_str() == Some(term.as_str()))
            })
        };
        items
            .iter()
            .filter(|a| a["isPurchasable"].as_bool() != Some(false) && sells_term(a))
            .find_map(|a| {
                let id = a["catalogItemId"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| {
                        Some(format!(
                            "{}:{}:{}",
                            item.product,
                            item.sku,
                            a["id"].as_str()?
                        ))
                    })?;
                CatalogItemId::parse("catalogItemId", &id)
                    .ok()
                    .filter(|parsed| parsed.availability.is_some())
                    .map(|parsed| parsed.to_string())
            })
            .ok_or_else(|| {
                refused(
                    &what,
                    "",
                    &format!("no purchasable availability sells a {term} term to this customer"),
                )
            })
    }

    /// The subscription an order created, read from the order itself.
    async fn ordered_subscription(
        &self,
        tenant: &str,
        order_id: &str,
        what: &str,
    ) -> ControlResult<String> {
        let url = self.url(&format!("customers/{tenant}/orders/{order_id}"))?;
        let answer = self.request(Method::Get, &url, None, &[], what).await?;
        let order = accepted(&answer, what)?;
        order
            .pointer("/lineItems/0/subscriptionId")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                ControlError::transient(format!(
                    "{what}: order {order_id} names no subscription yet (status {:?}); retry \
                     with the same request_id",
                    order["status"].as_str().unwrap_or("unknown")
                ))
            })
    }
}

/// The `scheduledNextTermInstructions` of `resource` renewing with `quantity` seats and as
/// `offer` (each None: as it is now): the product, sku and availability it was bought as with
/// the term duration and billing cycle, and the quantity.
fn next_term(
    resource: &Value,
    quantity: Option<u32>,
    offer: Option<Offer>,
    what: &str,
) -> Result<Value, String> {
    let offer_id = resource["offerId"].as_str().unwrap_or_default();
    let item = CatalogItemId::parse("offerId", offer_id)
        .ok()
        .filter(|item| item.availability.is_some())
        .ok_or_else(|| {
            format!("{what}: its offerId {offer_id:?} is not product:sku:availability")
        })?;
    let quantity = quantity.map_or_else(|| resource["quantity"].clone(), Value::from);
    let (term, billing) = match offer {
        Some(offer) => (
            json!(offer.term.as_str()),
            json!(billing_cycle(offer.billing)),
        ),
        None => (
            resource["termDuration"].clone(),
            resource["billingCycle"].clone(),
        ),
    };
    // The term and billing cycle belong to the product (Partner Center's `ProductTerm`).
    Ok(json!({
        "product": {
            "productId": item.product,
            "skuId": item.sku,
            "availabilityId": item.availability,
            "termDuration": term,
            "billingCycle": billing,
        },
        "quantity": quantity,
    }))
}

/// The answer's JSON body when it succeeded, else Partner Center's refusal with its code.
fn accepted(answer: &Answer, what: &str) -> ControlResult<Value> {
    if !answer.status.is_success() {
        let status = u16::from(answer.status);
        return Err(match answer.status {
            StatusCode::Unauthorized | StatusCode::Forbidden => ControlError::permanent(format!(
                "{what}: Partner Center refused the partner's credentials or permissions (HTTP \
                 {status}): {}",
                vendor_reason(answer)
            )),
            _ => refused(
                what,
                &vendor_code(answer).unwrap_or_else(|| format!("HTTP {status}")),
                &vendor_reason(answer),
            ),
        });
    }
    serde_json::from_slice(&answer.body)
        .map_err(|e| ControlError::permanent(format!("{what}: unreadable answer: {e}")))
}

fn refused(what: &str, code: &str, description: &str) -> ControlError {
    let code = if code.is_empty() {
        String::new()
    } else {
        format!(" (code {code})")
    };
    ControlError::permanent(format!(
        "{what}: Partner Center refused{code}: {description}"
    ))
}

fn code_of(error: &Value) -> String {
    match &error["code"] {
        Value::String(code) => code.clone(),
        Value::Number(code) => code.to_string(),
        _ => String::new(),
    }
}

fn description_of(error: &Value) -> String {
    ["description", "message", "errorMessage"]
        .iter()
        .find_map(|k| error[k].as_str())
        .unwrap_or("no description")
        .to_string()
}

/// An id from an answer that goes into a URL path: letters, digits and `-` only.
fn path_id(body: &Value, pointer: &str, name: &str, what: &str) -> ControlResult<String> {
    body.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 100
                && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .map(str::to_string)
        .ok_or_else(|| ControlError::permanent(format!("{what}: the answer names no {name}")))
}

/// The customer tenant and subscription of `seats`, checked to be GUIDs (they go into a path).
fn ids(seats: &VendorSeats) -> ControlResult<(&str, &str)> {
    Ok((
        guid("customer tenant", &seats.customer_tenant)?,
        guid("subscription id", &seats.subscription_id)?,
    ))
}

fn guid<'a>(name: &str, id: &'a str) -> ControlResult<&'a str> {
    VendorAccountKind::MicrosoftTenant
        .check_account_id(id)
        .map(|_| id)
        .map_err(|reason| ControlError::permanent(format!("{name} {id:?}: {reason}")))
}
