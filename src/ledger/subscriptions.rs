//! Subscriptions in step with the ledger: each purchase, quantity change and cancellation (and,
//! in `subscription_boundaries`, each period boundary) writes the subscription's new state and appends the charges it implies
//! (`domain::subscription`) in one transaction, so a subscription's record and its charges
//! never disagree, and a boundary appended once is never appended again. Each transaction
//! enters the tenant as ledger writers do (see `tx` for the lock order), then holds the
//! subscription's row, then takes the ledger lock for the events.
use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use super::diesel_tx::DieselLedger;
use super::tx::{Access, LedgerTx};
use super::write::append_unlined;
use super::{Ledger, ledger_backends};
use crate::domain::catalog::{CatalogItem, CatalogItemId, Offer, check_offered, check_orderable};
use crate::domain::customer::Customer;
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::{Answer, IdempotencyKey, Idempotent};
use crate::domain::ids::{SUBSCRIPTION, new_id};
use crate::domain::ledger::NewChargeEvent;
use crate::domain::pricing::{FxRate, PriceRule, PricingPolicy};
use crate::domain::rating::{Chargee, PriceBook};
use crate::domain::seat_order::{
    ChangeClaim, RenewalChange, SeatOrder, VendorSeats, change_in_progress, check_can_buy,
    check_orders_through, request_seed, vendor_error, vendor_of,
};
use crate::domain::seat_pricing::seat_price;
use crate::domain::subscription::{ChangeOutcome, SeatCharge, Subscription};
use crate::domain::subscription_record::{
    NewSubscription, PendingOrder, SubscriptionChange, SubscriptionRecord,
};
use crate::store::idempotency::write_once;

/// What a change asks of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SubscriptionAction {
    SetQuantity(u32),
    Cancel,
    /// A new term and billing frequency from the renewal on.
    ChangeOffer(Offer),
    SetAutoRenew(bool),
}

/// What buying or changing seats asks of the vendor, decided (every gateway rule passed) before
/// the vendor is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorStep {
    /// The partner account the customer's vendor tenant is linked through.
    pub partner_account_id: String,
    pub action: VendorAction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VendorAction {
    /// Cart and checkout (the request key is added by the caller).
    Order {
        customer_tenant: String,
        item: CatalogItemId,
        quantity: u32,
        offer: Offer,
    },
    /// The quantity now, then (Partner Center deletes every scheduled change on a change made
    /// now) what is still scheduled for the renewal, sent again.
    SetQuantity(VendorSeats, u32, Option<RenewalChange>),
    Cancel(VendorSeats),
    /// A change the window scheduled for the renewal (or one withdrawn).
    Renewal(VendorSeats, RenewalChange),
}

/// A change decided on a subscription's stored state (nothing written yet).
struct Decided {
    record: SubscriptionRecord,
    item: CatalogItem,
    customer: Customer,
    /// A reduction was scheduled for the renewal before this change.
    had_scheduled_quantity: bool,
    /// Fees due before the change, then the change's own charge.
    charges: Vec<SeatCharge>,
    outcome: ChangeOutcome,
}

/// The tenant's prices, as seat pricing reads them.
struct Prices {
    rules: Vec<PriceRule>,
    fx: Vec<FxRate>,
    policy: PricingPolicy,
}

impl Prices {
    fn book(&self) -> PriceBook<'_> {
        PriceBook {
            rules: &self.rules,
            fx: &self.fx,
            policy: self.policy,
        }
    }
}

fn customer_zone(customer: &Customer) -> Result<Tz> {
    customer.time_zone.parse().map_err(|_| {
        Error::Internal(format!(
            "customer {} has an unknown time zone {:?}",
            customer.id, customer.time_zone
        ))
    })
}

fn zones_of(customer_id: &str, zone: Tz) -> Arc<HashMap<String, Tz>> {
    Arc::new(HashMap::from([(customer_id.to_string(), zone)]))
}

/// The events of `charges` of `record`.
fn events(
    record: &SubscriptionRecord,
    item: &CatalogItem,
    charges: &[SeatCharge],
) -> Vec<NewChargeEvent> {
    charges
        .iter()
        .map(|c| record.charge_event(item, c))
        .collect()
}

/// Takes `state` to `now`, pricing each new period from the catalogue and the price rules.
pub(super) fn advance(
    state: &mut Subscription,
    now: DateTime<Utc>,
    item: &CatalogItem,
    chargee: &Chargee,
    book: &PriceBook<'_>,
) -> Result<Vec<SeatCharge>> {
    let mut price = |offer: Offer, at: DateTime<Utc>| -> Result<Decimal> {
        seat_price("catalog_item_id", item, offer, at, chargee, book)
    };
    state.advance(now, &mut price)
}

/// Schedules `offer` for the renewal: one the item sells (naming `term` when no offer has
/// that term, else `billing_frequency`) and is priced at the renewal, so the renewal cannot
/// fail for want of a price the change could have told.
fn schedule_offer(
    state: &mut Subscription,
    item: &CatalogItem,
    offer: Offer,
    chargee: &Chargee,
    prices: &Prices,
) -> Result<ChangeOutcome> {
    let field = if item.offers.iter().any(|o| o.term == offer.term) {
        "billing_frequency"
    } else {
        "term"
    };
    // A shorter term is refused by the rule, not the catalogue; the current offer withdraws.
    if offer.term < state.offer.term || offer == state.offer {
        return state.schedule_offer(offer);
    }
    check_offered(field, &item.offers, offer).map_err(|v| Error::InvalidArgument(vec![v]))?;
    seat_price(
        field,
        item,
        offer,
        state.term_end()?,
        chargee,
        &prices.book(),
    )?;
    state.schedule_offer(offer)
}

/// What the vendor is to renew with: everything scheduled.
fn next_term(state: &Subscription) -> RenewalChange {
    RenewalChange::NextTerm {
        quantity: state.scheduled.quantity,
        offer: state.scheduled.offer,
    }
}

ledger_backends! {
    use super::*;

    async fn prices(conn: &mut Conn, tenant_id: &str) -> Result<Prices> {
        Ok(Prices {
            rules: q::pricing::rules(conn, tenant_id).await?,
            fx: q::pricing::fx(conn, tenant_id).await?,
            policy: q::pricing::policy(conn, tenant_id).await?.policy,
        })
    }

    /// A request's reference to another record: a field violation when it names nothing of
    /// the tenant's (another tenant's record included).
    fn referenced<T>(found: Result<T>, field: &str, kind: &str, id: &str) -> Result<T> {
        match found {
            Err(Error::NotFound { .. }) => Err(Error::invalid(field, format!("{kind} {id:?} not found"))),
            other => other,
        }
    }

    /// A purchase at `now` checked by every gateway rule (customer, item, offer, price) with its
    /// state and first fee; nothing is written.
    async fn purchase(conn: &mut Conn, tenant_id: &str, new: &NewSubscription, now: DateTime<Utc>) -> Result<(Customer, CatalogItem, Tz, Subscription, SeatCharge)> {
        let customer = referenced(q::customers::get(conn, tenant_id, &new.customer_id).await, "subscription.customer_id", "customer", &new.customer_id)?;
        check_can_buy(&customer)?;
        let item = referenced(q::catalog::get(conn, tenant_id, &new.item_id).await, "subscription.catalog_item_id", "catalogue item", &new.item_id)?;
        check_orderable("subscription.catalog_item_id", &item)?;
        check_offered("subscription.billing_frequency", &item.offers, new.offer).map_err(|v| Error::InvalidArgument(vec![v]))?;
        let zone = customer_zone(&customer)?;
        let chargee = Chargee { customer_id: customer.id.clone(), currency: customer.billing_currency };
        let prices = prices(conn, tenant_id).await?;
        let price = seat_price("subscription.catalog_item_id", &item, new.offer, now, &chargee, &prices.book())?;
        let (state, fee) = Subscription::purchase(now, zone, new.offer, new.quantity, price)?;
        Ok((customer, item, zone, state, fee))
    }

    /// What buying `new` at `now` asks of the vendor once every gateway rule passed: None for
    /// the MSP's own items.
    pub async fn plan_purchase(conn: &mut Conn, tenant_id: &str, new: &NewSubscription, now: DateTime<Utc>) -> Result<Option<VendorStep>> {
        let (customer, item, ..) = purchase(conn, tenant_id, new, now.trunc_subsecs(0)).await?;
        let Some((customer_tenant, partner_account_id)) = vendor_of(&customer, &item)? else {
            return Ok(None);
        };
        let item = CatalogItemId::parse("subscription.catalog_item_id", &item.catalog_item_id).map_err(|v| Error::InvalidArgument(vec![v]))?;
        Ok(Some(VendorStep {
            partner_account_id,
            action: VendorAction::Order { customer_tenant, item, quantity: new.quantity, offer: new.offer },
        }))
    }

    /// Buys seats at `now`: the record and its first period's fee. `vendor_subscription_id` is
    /// the vendor's subscription when the vendor sold them (see [`plan_purchase`]).
    pub async fn create(conn: &mut Conn, tenant_id: &str, new: &NewSubscription, now: DateTime<Utc>, vendor_subscription_id: Option<&str>) -> Result<SubscriptionRecord> {
        DieselLedger::new(conn).enter(tenant_id, Access::Shared).await?;
        let now = now.trunc_subsecs(0);
        let (customer, item, zone, state, fee) = purchase(conn, tenant_id, new, now).await?;
        let record = SubscriptionRecord {
            id: new_id(SUBSCRIPTION),
            customer_id: customer.id.clone(),
            item_id: item.id.clone(),
            vendor_subscription_id: vendor_subscription_id.map(str::to_string),
            currency: customer.billing_currency,
            state,
            created_at: now,
            updated_at: now,
        };
        q::subscriptions::insert(conn, tenant_id, &record).await?;
        let events = events(&record, &item, &[fee]);
        append_unlined(&mut DieselLedger::new(conn), tenant_id, zones_of(&customer.id, zone), events).await?;
        Ok(record)
    }

    /// [`create`] of a purchase the vendor sold, removing its pending order in the same
    /// transaction.
    pub async fn create_ordered(conn: &mut Conn, tenant_id: &str, new: &NewSubscription, now: DateTime<Utc>, vendor_subscription_id: &str, key: &IdempotencyKey) -> Result<SubscriptionRecord> {
        let record = create(conn, tenant_id, new, now, Some(vendor_subscription_id)).await?;
        q::pending_seat_orders::remove(conn, tenant_id, key).await?;
        Ok(record)
    }

    /// A quantity change or cancellation decided at `now` on the stored state, after the fees
    /// due before it; nothing is written. Adding seats is buying: only for an active customer.
    async fn decide(conn: &mut Conn, tenant_id: &str, id: &str, action: SubscriptionAction, now: DateTime<Utc>) -> Result<Decided> {
        let mut record = q::subscriptions::get_for_update(conn, tenant_id, id).await?;
        let item = q::catalog::get(conn, tenant_id, &record.item_id).await?;
        let customer = q::customers::get(conn, tenant_id, &record.customer_id).await?;
        let chargee = Chargee { customer_id: record.customer_id.clone(), currency: record.currency };
        let prices = prices(conn, tenant_id).await?;
        let mut charges = advance(&mut record.state, now, &item, &chargee, &prices.book())?;
        let had_scheduled_quantity = record.state.scheduled.quantity.is_some();
        let outcome = match action {
            SubscriptionAction::SetQuantity(quantity) => {
                if quantity > record.state.quantity {
                    check_can_buy(&customer)?;
                }
                record.state.change_quantity(quantity, now)?
            }
            SubscriptionAction::Cancel => record.state.cancel(now)?,
            SubscriptionAction::ChangeOffer(offer) => schedule_offer(&mut record.state, &item, offer, &chargee, &prices)?,
            SubscriptionAction::SetAutoRenew(on) => record.state.schedule_auto_renew(on)?,
        };
        if let ChangeOutcome::Applied(Some(charge)) = &outcome {
            charges.push(charge.clone());
        }
        Ok(Decided { record, item, customer, had_scheduled_quantity, charges, outcome })
    }

    /// What a change at `now` asks of the vendor once the gateway's rules allow it: a change
    /// that takes effect now (the quantity, a cancellation), or one the window scheduled for the
    /// renewal (or withdrew), for the vendor to apply then.
    pub async fn plan_change(conn: &mut Conn, tenant_id: &str, id: &str, action: SubscriptionAction, now: DateTime<Utc>) -> Result<Option<VendorStep>> {
        let decided = decide(conn, tenant_id, id, action, now.trunc_subsecs(0)).await?;
        let Some(subscription_id) = decided.record.vendor_subscription_id.clone() else {
            return Ok(None);
        };
        let Some((customer_tenant, partner_account_id)) = vendor_of(&decided.customer, &decided.item)? else {
            return Ok(None);
        };
        let seats = VendorSeats { customer_tenant, subscription_id };
        let action = match (action, &decided.outcome) {
            (SubscriptionAction::SetQuantity(quantity), ChangeOutcome::Applied(Some(_))) => {
                let state = &decided.record.state;
                VendorAction::SetQuantity(seats, quantity, state.scheduled.offer.is_some().then(|| next_term(state)))
            }
            (SubscriptionAction::Cancel, ChangeOutcome::Applied(Some(_))) => VendorAction::Cancel(seats),
            // The whole of what is scheduled for the renewal: a reduction, a term change, or
            // (the current quantity asked for) a reduction withdrawn.
            (SubscriptionAction::SetQuantity(_), ChangeOutcome::Scheduled { .. }) | (SubscriptionAction::ChangeOffer(_), _) => VendorAction::Renewal(seats, next_term(&decided.record.state)),
            (SubscriptionAction::SetQuantity(_), ChangeOutcome::Applied(None)) if decided.had_scheduled_quantity => VendorAction::Renewal(seats, next_term(&decided.record.state)),
            (SubscriptionAction::Cancel, ChangeOutcome::Scheduled { .. }) => VendorAction::Renewal(seats, RenewalChange::AutoRenew(false)),
            (SubscriptionAction::SetAutoRenew(on), _) => VendorAction::Renewal(seats, RenewalChange::AutoRenew(on)),
            _ => return Ok(None),
        };
        Ok(Some(VendorStep { partner_account_id, action }))
    }

    /// [`plan_change`] for the request of `claim`, one at a time per subscription: refused
    /// while another request's change is in flight; when the change asks the vendor, the
    /// subscription is claimed for the request, for [`change_claimed`] to release.
    pub async fn plan_claimed_change(conn: &mut Conn, tenant_id: &str, id: &str, action: SubscriptionAction, now: DateTime<Utc>, claim: &ChangeClaim) -> Result<Option<VendorStep>> {
        DieselLedger::new(conn).enter(tenant_id, Access::Shared).await?;
        if q::subscriptions::change_holder(conn, tenant_id, id, &claim.request, claim.at).await?.is_some() {
            return Err(change_in_progress(id));
        }
        let step = plan_change(conn, tenant_id, id, action, now).await?;
        if step.is_some() {
            q::subscriptions::claim_change(conn, tenant_id, id, &claim.request, claim.expires_at).await?;
        }
        Ok(step)
    }

    /// [`change`] recorded for the request `claim`, releasing its claim: refused (nothing
    /// written) while another request's change is in flight, which a change that asked no
    /// vendor (and so claimed nothing) may meet.
    pub async fn change_claimed(conn: &mut Conn, tenant_id: &str, id: &str, action: SubscriptionAction, now: DateTime<Utc>, claim: &ChangeClaim) -> Result<SubscriptionChange> {
        let changed = change(conn, tenant_id, id, action, now).await?;
        if q::subscriptions::change_holder(conn, tenant_id, id, &claim.request, claim.at).await?.is_some() {
            return Err(change_in_progress(id));
        }
        q::subscriptions::release_change(conn, tenant_id, id, &claim.request).await?;
        Ok(changed)
    }

    /// Releases the request `claim`'s claim of the subscription.
    pub async fn release_claim(conn: &mut Conn, tenant_id: &str, id: &str, claim: &str) -> Result<()> {
        q::subscriptions::release_change(conn, tenant_id, id, claim).await
    }

    /// Changes the quantity or cancels at `now`, after appending any fee due before it.
    pub async fn change(conn: &mut Conn, tenant_id: &str, id: &str, action: SubscriptionAction, now: DateTime<Utc>) -> Result<SubscriptionChange> {
        DieselLedger::new(conn).enter(tenant_id, Access::Shared).await?;
        let now = now.trunc_subsecs(0);
        let Decided { mut record, item, customer, charges, outcome, .. } = decide(conn, tenant_id, id, action, now).await?;
        let applied = matches!(outcome, ChangeOutcome::Applied(Some(_)));
        record.updated_at = now;
        q::subscriptions::update(conn, tenant_id, &record).await?;
        let zone = customer_zone(&customer)?;
        let summary = append_unlined(&mut DieselLedger::new(conn), tenant_id, zones_of(&record.customer_id, zone), events(&record, &item, &charges)).await?;
        // The change's charge is the write's last event: a customer's events are numbered by
        // line key (the period's), and the current period's key sorts after earlier ones.
        let charge_sequence = if applied { summary.last_sequence } else { None };
        Ok(SubscriptionChange { record, outcome, charge_sequence })
    }
}

impl Ledger {
    /// Buys seats (see [`create`]). For a Microsoft item the gateway's rules are checked first,
    /// then Partner Center sells the seats (cart and checkout, idempotent through the request),
    /// and only then is the subscription recorded with the vendor's subscription id: a refusal
    /// or an outage records no subscription, and a retry with the same request_id either
    /// replays the recorded answer without asking the vendor, or (the first attempt bought but
    /// was never recorded) gets Partner Center's first order back and records it.
    ///
    /// The order is kept as pending (its own short transaction) before Partner Center is
    /// called, and removed by the transaction that records the subscription: one whose answer
    /// was lost and which the client never retries is finished by the sweeper
    /// ([`Ledger::finish_pending_orders`]).
    pub async fn create_subscription(
        &self,
        tenant_id: &str,
        new: &NewSubscription,
        now: DateTime<Utc>,
        request: &Idempotent<'_, SubscriptionRecord>,
    ) -> Result<Answer<SubscriptionRecord>> {
        if let Some(response) = self.store.recorded_answer(tenant_id, &request.key).await? {
            return Ok(Answer::Replayed(response));
        }
        if let Some(refusal) = self.pending_refusal(tenant_id, &request.key).await? {
            return Err(refusal);
        }
        let step =
            crate::store::dispatch!(self.store, fresh, self::plan_purchase(tenant_id, new, now))?;
        let Some(step) = step else {
            return write_once!(
                self.store,
                tenant_id,
                Some(request),
                self::create(tenant_id, new, now, None)
            );
        };
        let pending = PendingOrder {
            tenant_id: tenant_id.to_string(),
            key: request.key.clone(),
            order: new.clone(),
            ordered_at: now,
            created_at: Utc::now(),
        };
        self.keep_pending(&pending).await?;
        let vendor_subscription_id = match self.vendor_step(tenant_id, step, &request.key).await {
            Ok(id) => id,
            Err(error) => {
                // A refusal sold nothing and the caller has it: nothing is left to finish. After
                // an outage the order may have been placed: it stays for the sweeper.
                if !matches!(error, Error::Unavailable(..)) {
                    self.forget_pending(tenant_id, &request.key).await;
                }
                return Err(error);
            }
        };
        write_once!(
            self.store,
            tenant_id,
            Some(request),
            self::create_ordered(tenant_id, new, now, &vendor_subscription_id, &request.key)
        )
    }

    /// Changes the quantity or cancels (see [`change`]); a Microsoft subscription's change that
    /// takes effect now is made at Partner Center first (the quantity PATCH, or `deleted`), and
    /// recorded once it was.
    ///
    /// Changes of one subscription are made one at a time: deciding on the stored state, asking
    /// the vendor and recording the outcome are three steps, and two changes interleaving them
    /// would both decide on the same state (and the record could end up disagreeing with
    /// Partner Center). No transaction is held across the vendor call; instead the deciding
    /// transaction claims the subscription for the request (see [`plan_claimed_change`]) and
    /// the recording one releases it. A change arriving meanwhile is refused
    /// ([`change_in_progress`]). The claim lapses after `CHANGE_CLAIM_TTL` should this
    /// gateway die mid-call.
    pub async fn change_subscription(
        &self,
        tenant_id: &str,
        id: &str,
        action: SubscriptionAction,
        now: DateTime<Utc>,
        request: &Idempotent<'_, SubscriptionChange>,
    ) -> Result<Answer<SubscriptionChange>> {
        if let Some(response) = self.store.recorded_answer(tenant_id, &request.key).await? {
            return Ok(Answer::Replayed(response));
        }
        let claim = ChangeClaim::new(request_seed(tenant_id, &request.key), Utc::now());
        let step = write_once!(
            self.store,
            tenant_id,
            None,
            self::plan_claimed_change(tenant_id, id, action, now, &claim)
        )?
        .unguarded()?;
        if let Some(step) = step
            && let Err(error) = self.vendor_step(tenant_id, step, &request.key).await
        {
            // A refusal changed nothing at the vendor: the subscription is free again. After an
            // outage the change may have been made: the claim stays for this request's retry
            // (or lapses), so no other change decides on a state the vendor may have left.
            if !matches!(error, Error::Unavailable(..)) {
                let released = write_once!(
                    self.store,
                    tenant_id,
                    None,
                    self::release_claim(tenant_id, id, &claim.request)
                );
                if let Err(release_error) = released {
                    tracing::warn!(subscription = id, error = %release_error, "a refused change's claim stays until it lapses");
                }
            }
            return Err(error);
        }
        write_once!(
            self.store,
            tenant_id,
            Some(request),
            self::change_claimed(tenant_id, id, action, now, &claim)
        )
    }

    /// Carries out `step` at the vendor for the request `key`; the vendor's subscription id.
    pub(super) async fn vendor_step(
        &self,
        tenant_id: &str,
        step: VendorStep,
        key: &crate::domain::idempotency::IdempotencyKey,
    ) -> Result<String> {
        let account = self
            .store
            .partner_account_in(tenant_id, &step.partner_account_id)
            .await?;
        check_orders_through(&account)?;
        let seats = self
            .seat_vendors()
            .seats_for(&account)
            .map_err(vendor_error)?;
        let seed = request_seed(tenant_id, key);
        match step.action {
            VendorAction::Order {
                customer_tenant,
                item,
                quantity,
                offer,
            } => {
                let order = SeatOrder {
                    customer_tenant,
                    item,
                    quantity,
                    offer,
                    request_key: seed,
                };
                let ordered = seats.order(&order).await.map_err(vendor_error)?;
                tracing::info!(
                    subscription = %ordered.subscription_id,
                    order = %ordered.order_id,
                    "Partner Center sold the seats"
                );
                Ok(ordered.subscription_id)
            }
            VendorAction::SetQuantity(target, quantity, next_term) => {
                seats
                    .set_quantity(&target, quantity, &seed)
                    .await
                    .map_err(vendor_error)?;
                if let Some(change) = next_term {
                    // Its own request ids: a repeated MS-RequestId is answered with the first.
                    seats
                        .schedule_renewal(&target, change, &format!("{seed}/next-term"))
                        .await
                        .map_err(vendor_error)?;
                }
                Ok(target.subscription_id)
            }
            VendorAction::Cancel(target) => {
                seats.cancel(&target).await.map_err(vendor_error)?;
                Ok(target.subscription_id)
            }
            VendorAction::Renewal(target, change) => {
                seats
                    .schedule_renewal(&target, change, &seed)
                    .await
                    .map_err(vendor_error)?;
                Ok(target.subscription_id)
            }
        }
    }
}
