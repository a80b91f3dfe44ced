//! Seat subscriptions and the vendor's rules for changing them (Microsoft's New Commerce
//! Experience, which the MSP's own items follow too), decided before any vendor is asked:
//!
//! - seats may be added at any time, charged prorated to the end of the current billing period;
//! - seats may be removed, and the subscription cancelled, only within 168 hours of the purchase,
//!   of the renewal, or of the seat addition being removed (167:59:59 after is inside, 168:00:00
//!   is not), with a prorated refund; outside it the change is scheduled for the renewal instead,
//!   and the answer says so and when;
//! - at the end of its term a subscription renews (unless told not to) with its scheduled
//!   changes applied, which reopens the window for all its seats;
//! - a term may change only to a longer one, at renewal.
//!
//! Each billing period's fee is charged in advance when the period starts; every operation
//! returns the charges it implies (see `subscription_period` for how they are exact), and
//! [`Subscription::advance`] appends the fees of every period boundary passed since the last
//! call, so a gateway that was down across boundaries appends each missed fee once.
use chrono::{DateTime, Duration, SubsecRound, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use super::catalog::{Offer, Term};
use super::error::{Error, Result};
use super::period::rfc3339;
use super::subscription_period::{BillingPeriod, months_after};

/// How long after a purchase, renewal or seat addition seats may still be removed.
pub const CHANGE_WINDOW: Duration = Duration::hours(168);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum SubscriptionStatus {
    Active,
    /// Cancelled inside the window: ended at once, the rest of the period refunded.
    Cancelled,
    /// Ran to the end of a term that was not to renew.
    Expired,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Active => "ACTIVE",
            SubscriptionStatus::Cancelled => "CANCELLED",
            SubscriptionStatus::Expired => "EXPIRED",
        }
    }
}

impl std::str::FromStr for SubscriptionStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ACTIVE" => Ok(SubscriptionStatus::Active),
            "CANCELLED" => Ok(SubscriptionStatus::Cancelled),
            "EXPIRED" => Ok(SubscriptionStatus::Expired),
            other => Err(format!("unknown subscription status {other:?}")),
        }
    }
}

/// Seats added together (at purchase, renewal or an increase) and still removable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeatLot {
    pub added_at: DateTime<Utc>,
    pub seats: u32,
}

/// What takes effect at the next renewal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Scheduled {
    pub quantity: Option<u32>,
    pub offer: Option<Offer>,
    /// Ends at the term's end instead of renewing.
    pub cancel: bool,
}

/// The kinds of charge a subscription appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeatChargeKind {
    /// A billing period's fee, in advance.
    Fee,
    /// Seats added during a period, to its end.
    Proration,
    /// Seats removed (or the subscription cancelled) within the window, for the rest of the
    /// period.
    Refund,
}

/// One charge a subscription implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatCharge {
    pub kind: SeatChargeKind,
    pub amount: Decimal,
    /// Seats charged for: the quantity for a fee, the seats added or (negative) removed.
    pub seats: i64,
    /// When it applies from: the period's start for a fee, the change for the others.
    pub at: DateTime<Utc>,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
}

/// A subscription's state: what it holds now and the billing period it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub quantity: u32,
    pub offer: Offer,
    pub time_zone: Tz,
    /// The purchase, or the last renewal.
    pub term_start: DateTime<Utc>,
    pub period: BillingPeriod,
    /// Seat additions still inside the window, oldest first (pruned as they leave it).
    pub lots: Vec<SeatLot>,
    pub scheduled: Scheduled,
    pub auto_renew: bool,
    pub status: SubscriptionStatus,
    /// When it was cancelled or expired.
    pub ended_at: Option<DateTime<Utc>>,
}

/// What a quantity change or cancellation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// Took effect now, with this charge (none when nothing changed).
    Applied(Option<SeatCharge>),
    /// Outside the window: takes effect at the renewal at `effective_at`; `reason` says why.
    Scheduled {
        effective_at: DateTime<Utc>,
        reason: String,
    },
}

/// Instants are kept to the second: the window's edges and proration are in whole seconds.
fn second(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(0)
}

impl Subscription {
    /// A new subscription bought at `now` with its first period's fee at `unit_price` per seat.
    pub fn purchase(
        now: DateTime<Utc>,
        time_zone: Tz,
        offer: Offer,
        quantity: u32,
        unit_price: Decimal,
    ) -> Result<(Subscription, SeatCharge)> {
        let now = second(now);
        let period = BillingPeriod::of_term(now, time_zone, offer, 0, unit_price, quantity)?;
        let subscription = Subscription {
            quantity,
            offer,
            time_zone,
            term_start: now,
            period,
            lots: vec![SeatLot {
                added_at: now,
                seats: quantity,
            }],
            scheduled: Scheduled::default(),
            auto_renew: true,
            status: SubscriptionStatus::Active,
            ended_at: None,
        };
        let fee = subscription.fee()?;
        Ok((subscription, fee))
    }

    /// The end of the current term, when it renews or ends.
    pub fn term_end(&self) -> Result<DateTime<Utc>> {
        months_after(self.term_start, self.time_zone, self.offer.term.months())
    }

    fn fee(&self) -> Result<SeatCharge> {
        Ok(SeatCharge {
            kind: SeatChargeKind::Fee,
            amount: self.period.amount()?,
            seats: i64::from(self.quantity),
            at: self.period.start,
            period_start: self.period.start,
            period_end: self.period.end,
        })
    }

    /// Seats removable at `now`: those added within the window.
    pub fn removable_seats(&self, now: DateTime<Utc>) -> u32 {
        let now = second(now);
        self.lots
            .iter()
            .filter(|lot| now - lot.added_at < CHANGE_WINDOW)
            .map(|lot| lot.seats)
            .sum()
    }

    fn check_active(&self, now: DateTime<Utc>) -> Result<()> {
        if self.status != SubscriptionStatus::Active {
            return Err(Error::precondition(
                "subscription",
                format!("it is {}", self.status.as_str()),
            ));
        }
        if !self.period.contains_instant(now) {
            // The caller advances to `now` first; this is a broken invariant, not bad input.
            return Err(Error::Internal(format!(
                "a change at {} outside the current billing period {} to {}",
                rfc3339(now),
                rfc3339(self.period.start),
                rfc3339(self.period.end)
            )));
        }
        Ok(())
    }

    /// Changes the seat count to `quantity` at `now` (the subscription advanced to `now`):
    /// increases at once, decreases at once inside the window and otherwise at renewal. Asking
    /// for the current quantity withdraws a scheduled change.
    pub fn change_quantity(&mut self, quantity: u32, now: DateTime<Utc>) -> Result<ChangeOutcome> {
        let now = second(now);
        self.check_active(now)?;
        self.prune(now);
        let current = self.quantity;
        if quantity == current {
            self.scheduled.quantity = None;
            return Ok(ChangeOutcome::Applied(None));
        }
        if quantity > current {
            let added = quantity - current;
            let charge = self.apply(i64::from(added), now, SeatChargeKind::Proration)?;
            self.lots.push(SeatLot {
                added_at: now,
                seats: added,
            });
            self.scheduled.quantity = None;
            return Ok(ChangeOutcome::Applied(Some(charge)));
        }
        let removing = current - quantity;
        let removable = self.removable_seats(now);
        if removing > removable {
            let effective_at = self.term_end()?;
            self.scheduled.quantity = Some(quantity);
            return Ok(ChangeOutcome::Scheduled {
                effective_at,
                reason: format!(
                    "seats can be removed only within 168 hours of the purchase, the renewal or \
                     their addition; {removable} of the {current} seats are, so the reduction to \
                     {quantity} takes effect at the renewal on {}",
                    rfc3339(effective_at)
                ),
            });
        }
        self.take_from_lots(removing);
        let charge = self.apply(-i64::from(removing), now, SeatChargeKind::Refund)?;
        self.scheduled.quantity = None;
        Ok(ChangeOutcome::Applied(Some(charge)))
    }

    /// Cancels at `now`: at once with a refund for the rest of the period inside the window
    /// (every seat removable), otherwise at the end of the term.
    pub fn cancel(&mut self, now: DateTime<Utc>) -> Result<ChangeOutcome> {
        let now = second(now);
        self.check_active(now)?;
        self.prune(now);
        let removable = self.removable_seats(now);
        if removable < self.quantity {
            let effective_at = self.term_end()?;
            self.scheduled.cancel = true;
            return Ok(ChangeOutcome::Scheduled {
                effective_at,
                reason: format!(
                    "a subscription can be cancelled only within 168 hours of its purchase or \
                     renewal; it ends at the end of its term on {} instead",
                    rfc3339(effective_at)
                ),
            });
        }
        let seats = self.quantity;
        let charge = self.apply(-i64::from(seats), now, SeatChargeKind::Refund)?;
        self.lots.clear();
        self.status = SubscriptionStatus::Cancelled;
        self.ended_at = Some(now);
        Ok(ChangeOutcome::Applied(Some(charge)))
    }

    /// Schedules a new term and billing frequency for the renewal; only a longer term (or the
    /// same term billed differently) is accepted.
    pub fn change_offer(&mut self, offer: Offer) -> Result<DateTime<Utc>> {
        if self.status != SubscriptionStatus::Active {
            return Err(Error::precondition(
                "subscription",
                format!("it is {}", self.status.as_str()),
            ));
        }
        if offer.term < self.offer.term {
            return Err(Error::invalid(
                "term",
                format!(
                    "a term can change only to a longer one: {} is shorter than {}",
                    offer.term, self.offer.term
                ),
            ));
        }
        self.scheduled.offer = (offer != self.offer).then_some(offer);
        self.term_end()
    }

    /// Whether it renews at the end of its term.
    pub fn set_auto_renew(&mut self, auto_renew: bool) {
        self.auto_renew = auto_renew;
    }

    /// [`Subscription::change_offer`] as a change's outcome: scheduled for the renewal, saying
    /// what it renews as (the current offer asked for withdraws a scheduled change).
    /// Only a subscription that renews takes one (as Partner Center, which schedules changes
    /// only with auto-renewal on); withdrawing one is always possible.
    pub fn schedule_offer(&mut self, offer: Offer) -> Result<ChangeOutcome> {
        let renews = self.auto_renew && !self.scheduled.cancel;
        if !renews && offer != self.offer && self.status == SubscriptionStatus::Active {
            return Err(Error::precondition(
                "subscription",
                "it ends at the end of its term instead of renewing (auto-renewal is off or a \
                 cancellation is scheduled); turn auto-renewal on (SetSubscriptionAutoRenew) \
                 first",
            ));
        }
        let effective_at = self.change_offer(offer)?;
        let reason = match self.scheduled.offer {
            Some(next) => format!(
                "a term changes only at the renewal: it renews as {next} on {}",
                rfc3339(effective_at)
            ),
            None => format!(
                "no term change is scheduled: it renews as {} on {}",
                self.offer,
                rfc3339(effective_at)
            ),
        };
        Ok(ChangeOutcome::Scheduled {
            effective_at,
            reason,
        })
    }

    /// Sets whether it renews at the end of its term, as a change's outcome (taking effect
    /// then). Turning renewal on also withdraws a cancellation scheduled for the term's end:
    /// the vendor (Partner Center's `autoRenewEnabled`) has one switch for both, and the two
    /// must agree.
    pub fn schedule_auto_renew(&mut self, auto_renew: bool) -> Result<ChangeOutcome> {
        if self.status != SubscriptionStatus::Active {
            return Err(Error::precondition(
                "subscription",
                format!("it is {}", self.status.as_str()),
            ));
        }
        self.set_auto_renew(auto_renew);
        if auto_renew {
            self.scheduled.cancel = false;
        }
        let effective_at = self.term_end()?;
        let reason = if auto_renew {
            format!(
                "it renews at the end of its term on {}",
                rfc3339(effective_at)
            )
        } else {
            format!(
                "it ends at the end of its term on {} instead of renewing",
                rfc3339(effective_at)
            )
        };
        Ok(ChangeOutcome::Scheduled {
            effective_at,
            reason,
        })
    }

    /// Takes the subscription to `now`: every billing period that started by `now` gets its fee,
    /// each term that ended renews (with its scheduled changes) or ends. `unit_price` prices one
    /// seat of an offer for the period starting at an instant. Returns the fees, in order.
    pub fn advance(
        &mut self,
        now: DateTime<Utc>,
        unit_price: &mut dyn FnMut(Offer, DateTime<Utc>) -> Result<Decimal>,
    ) -> Result<Vec<SeatCharge>> {
        let mut fees = Vec::new();
        while self.status == SubscriptionStatus::Active && self.period.end <= now {
            let next_index = self.period.index + 1;
            if next_index < self.offer.periods_per_term() {
                let start = months_after(
                    self.term_start,
                    self.time_zone,
                    next_index * self.offer.billing.months(),
                )?;
                let price = unit_price(self.offer, start)?;
                self.period = BillingPeriod::of_term(
                    self.term_start,
                    self.time_zone,
                    self.offer,
                    next_index,
                    price,
                    self.quantity,
                )?;
                fees.push(self.fee()?);
                continue;
            }
            let term_end = self.period.end;
            if self.scheduled.cancel || !self.auto_renew {
                self.status = SubscriptionStatus::Expired;
                self.ended_at = Some(term_end);
                self.lots.clear();
                break;
            }
            self.renew(term_end, unit_price)?;
            fees.push(self.fee()?);
        }
        self.prune(now);
        Ok(fees)
    }

    /// Starts the next term at `at` with the scheduled changes.
    fn renew(
        &mut self,
        at: DateTime<Utc>,
        unit_price: &mut dyn FnMut(Offer, DateTime<Utc>) -> Result<Decimal>,
    ) -> Result<()> {
        let scheduled = std::mem::take(&mut self.scheduled);
        self.quantity = scheduled.quantity.unwrap_or(self.quantity);
        self.offer = scheduled.offer.unwrap_or(self.offer);
        self.term_start = at;
        let price = unit_price(self.offer, at)?;
        self.period =
            BillingPeriod::of_term(at, self.time_zone, self.offer, 0, price, self.quantity)?;
        self.lots = vec![SeatLot {
            added_at: at,
            seats: self.quantity,
        }];
        Ok(())
    }

    /// When the next fee or renewal is due: the end of the current period (None once ended).
    pub fn next_boundary(&self) -> Option<DateTime<Utc>> {
        (self.status == SubscriptionStatus::Active).then_some(self.period.end)
    }

    /// The term the subscription is in.
    pub fn term(&self) -> Term {
        self.offer.term
    }

    fn apply(
        &mut self,
        delta: i64,
        now: DateTime<Utc>,
        kind: SeatChargeKind,
    ) -> Result<SeatCharge> {
        let (period, amount) = self.period.change(delta, now)?;
        self.period = period;
        self.quantity = u32::try_from(i64::from(self.quantity) + delta)
            .map_err(|_| Error::Internal(format!("{} seats changed by {delta}", self.quantity)))?;
        Ok(SeatCharge {
            kind,
            amount,
            seats: delta,
            at: now,
            period_start: self.period.start,
            period_end: self.period.end,
        })
    }

    /// Removes `seats` from the newest lots first: the seats removed are the latest added.
    fn take_from_lots(&mut self, mut seats: u32) {
        while seats > 0 {
            let Some(lot) = self.lots.last_mut() else {
                break;
            };
            let taken = lot.seats.min(seats);
            lot.seats -= taken;
            seats -= taken;
            if lot.seats == 0 {
                self.lots.pop();
            }
        }
    }

    /// Forgets lots that have left the window.
    fn prune(&mut self, now: DateTime<Utc>) {
        let now = second(now);
        self.lots.retain(|lot| now - lot.added_at < CHANGE_WINDOW);
    }
}

impl BillingPeriod {
    pub fn contains_instant(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }
}
