//! The charge ledger's rules. The ledger is append-only: every change of a usage line's rated
//! value appends a charge event carrying the delta, so for every usage key the sum of its events
//! equals its current rated value, and re-ingesting identical data appends nothing.
//!
//! [`plan_pull`], [`plan_upsert`] and [`plan_rerate`] are pure: given the stored lines and the new
//! facts they say which lines to write and which events to append; the store applies the plan in
//! one transaction and numbers the events.
use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use super::error::{Error, Result};
use super::line_key::{LineKey, LineKeyMap, LineKeySet};
use super::money::Currency;
use super::partner_account::PartnerAccount;
use super::pricing::{FxRate, PriceRule, PricingPolicy};
use super::rating::{Chargee, PriceBook, RatedAmount, UnratedReason, rate};
use super::usage::UsageLine;
use super::vendor::{Vendor, VendorAccountKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChargeKind {
    /// First rating of a line.
    New,
    /// The vendor restated the line's usage or cost.
    Revision,
    /// The line disappeared from the vendor's data, or can no longer be rated.
    Reversal,
    /// A price rule or FX rate changed.
    Rerate,
    /// A subscription's fee for a billing period, in advance.
    SubscriptionFee,
    /// Seats added during a billing period, to its end.
    Proration,
    /// Seats removed (or a subscription cancelled) within the window, for the rest of the period.
    Refund,
}

impl ChargeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChargeKind::New => "NEW",
            ChargeKind::Revision => "REVISION",
            ChargeKind::Reversal => "REVERSAL",
            ChargeKind::Rerate => "RERATE",
            ChargeKind::SubscriptionFee => "SUBSCRIPTION_FEE",
            ChargeKind::Proration => "PRORATION",
            ChargeKind::Refund => "REFUND",
        }
    }
}

impl std::str::FromStr for ChargeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "NEW" => Ok(ChargeKind::New),
            "REVISION" => Ok(ChargeKind::Revision),
            "REVERSAL" => Ok(ChargeKind::Reversal),
            "RERATE" => Ok(ChargeKind::Rerate),
            "SUBSCRIPTION_FEE" => Ok(ChargeKind::SubscriptionFee),
            "PRORATION" => Ok(ChargeKind::Proration),
            "REFUND" => Ok(ChargeKind::Refund),
            other => Err(format!("unknown charge kind {other:?}")),
        }
    }
}

/// A usage line as the ledger keeps it: the vendor's latest statement plus its current rating.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerLine {
    pub line_key: LineKey,
    pub partner_account_id: String,
    pub vendor: Vendor,
    pub usage: UsageLine,
    /// Gone from the vendor's latest restatement of its window.
    pub removed: bool,
    /// Fixed when the line is first seen with a linked vendor account, so a line's charges never
    /// move between customers.
    pub customer_id: Option<String>,
    pub rating: Option<RatedAmount>,
    pub unrated_reason: Option<UnratedReason>,
}

impl LedgerLine {
    /// The amount currently charged for this line (zero when unrated or removed).
    fn charged(&self) -> Option<(&RatedAmount, Decimal)> {
        match (&self.rating, self.removed) {
            (Some(r), false) => Some((r, self.usage.quantity)),
            _ => None,
        }
    }
}

/// A charge event before the store numbers it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChargeEvent {
    pub line_key: LineKey,
    pub customer_id: String,
    pub kind: ChargeKind,
    pub amount: Decimal,
    pub currency: super::money::Currency,
    pub quantity: Decimal,
    pub vendor: Vendor,
    pub service: String,
    pub meter: String,
    /// What the quantity counts: the usage line's unit (a subscription's: seats). Not stored
    /// with the event; the monthly rollup per meter keeps it for the invoice line (see
    /// `ledger_append::Total::unit`).
    pub unit: String,
    pub window_start: DateTime<Utc>,
}

/// What to write: changed lines and the events their changes imply, in a stable order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LedgerPlan {
    pub lines: Vec<LedgerLine>,
    pub events: Vec<NewChargeEvent>,
}

/// Everything rating needs besides the line: the partner account it came through, who owns
/// which vendor account, and the prices.
pub struct RatingContext<'a> {
    pub partner_account_id: &'a str,
    /// The partner account's line key prefix (see [`LineKey`]).
    pub line_key_prefix: u32,
    pub vendor: Vendor,
    pub partner_discount_rate: Decimal,
    /// vendor account id -> the customer it is linked to.
    pub chargees: &'a HashMap<String, Chargee>,
    /// vendor tenant id -> the customer linked by tenant (every account of the tenant without a
    /// link of its own).
    pub tenant_chargees: &'a HashMap<String, Chargee>,
    pub chargee_currencies: &'a HashMap<String, super::money::Currency>,
    pub prices: PriceBook<'a>,
}

impl RatingContext<'_> {
    /// Who pays for `usage`: the customer the line is attributed to already (attribution never
    /// moves), else the customer its account is linked to, else the customer its vendor tenant
    /// is linked to.
    fn chargee_for(&self, customer_id: Option<&str>, usage: &UsageLine) -> Option<Chargee> {
        match customer_id {
            Some(id) => self.chargee_currencies.get(id).map(|currency| Chargee {
                customer_id: id.to_string(),
                currency: *currency,
            }),
            None => self
                .chargees
                .get(&usage.key.vendor_account_id)
                .or_else(|| {
                    usage
                        .vendor_tenant_id
                        .as_ref()
                        .and_then(|tenant| self.tenant_chargees.get(tenant))
                })
                .cloned(),
        }
    }

    /// The line after (re)rating `usage`, keeping an existing customer attribution.
    fn rated(
        &self,
        previous: Option<&LedgerLine>,
        line_key: LineKey,
        usage: UsageLine,
    ) -> LedgerLine {
        let fixed_customer = previous.and_then(|p| p.customer_id.as_deref());
        let chargee = self.chargee_for(fixed_customer, &usage);
        let result = rate(
            &usage,
            self.vendor,
            self.partner_discount_rate,
            chargee.as_ref(),
            &self.prices,
        );
        let (rating, unrated_reason) = match result {
            Ok(r) => (Some(r), None),
            Err(reason) => (None, Some(reason)),
        };
        let customer_id = fixed_customer
            .map(str::to_string)
            .or_else(|| chargee.map(|c| c.customer_id));
        LedgerLine {
            line_key,
            partner_account_id: self.partner_account_id.to_string(),
            vendor: self.vendor,
            usage,
            removed: false,
            customer_id,
            rating,
            unrated_reason,
        }
    }
}

/// The event that takes a line from `before` to `after`, if its charge changed.
fn delta(
    before: Option<&LedgerLine>,
    after: &LedgerLine,
    usage_changed: bool,
) -> Option<NewChargeEvent> {
    let old = before.and_then(LedgerLine::charged);
    let new = after.charged();
    let (kind, amount, quantity, currency) = match (old, new) {
        (None, None) => return None,
        (None, Some((r, q))) => (ChargeKind::New, r.amount, q, r.currency),
        (Some((r, q)), None) => (ChargeKind::Reversal, -r.amount, -q, r.currency),
        (Some((o, oq)), Some((n, nq))) => {
            if o.amount == n.amount && oq == nq {
                return None;
            }
            let kind = if usage_changed {
                ChargeKind::Revision
            } else {
                ChargeKind::Rerate
            };
            (kind, n.amount - o.amount, nq - oq, n.currency)
        }
    };
    let customer_id = after
        .customer_id
        .clone()
        .or_else(|| before.and_then(|b| b.customer_id.clone()))?;
    Some(NewChargeEvent {
        line_key: after.line_key,
        customer_id,
        kind,
        amount,
        currency,
        quantity,
        vendor: after.vendor,
        service: after.usage.key.service.clone(),
        meter: after.usage.key.meter.clone(),
        unit: after.usage.unit.clone(),
        window_start: after.usage.key.window_start,
    })
}

fn apply(plan: &mut LedgerPlan, before: Option<&LedgerLine>, after: LedgerLine) {
    if before == Some(&after) {
        return; // identical data: nothing to append
    }
    let usage_changed = before.is_none_or(|b| b.removed || b.usage != after.usage);
    let event = delta(before, &after, usage_changed);
    // The ledger's invariant, checked where it is made (in debug builds and tests): a line's
    // charges sum to its rated value, so what it had plus this event is what it has now.
    let charged = |line: Option<&LedgerLine>| {
        line.and_then(LedgerLine::charged)
            .map_or(Decimal::ZERO, |(r, _)| r.amount)
    };
    debug_assert_eq!(
        charged(before) + event.as_ref().map_or(Decimal::ZERO, |e| e.amount),
        charged(Some(&after)),
        "line {} would not sum to its rated value",
        after.line_key
    );
    if let Some(event) = event {
        plan.events.push(event);
    }
    plan.lines.push(after);
}

/// Lines pushed or pulled without restating a window: each incoming line replaces its key.
pub fn plan_upsert(
    stored: &LineKeyMap<LedgerLine>,
    incoming: Vec<UsageLine>,
    ctx: &RatingContext<'_>,
) -> LedgerPlan {
    plan_keyed(
        stored,
        keyed(ctx.line_key_prefix, ctx.partner_account_id, incoming),
        ctx,
    )
}

/// Incoming lines under their line keys, one per key (within one batch the last statement of a
/// key wins), in key order: neighbouring keys are written together, into neighbouring index
/// pages. Planning a key needs only that key's stored line, so the result can be planned in
/// chunks.
pub fn keyed(
    line_key_prefix: u32,
    partner_account_id: &str,
    incoming: Vec<UsageLine>,
) -> Vec<(LineKey, UsageLine)> {
    let keys = incoming
        .iter()
        .map(|usage| LineKey::of(line_key_prefix, partner_account_id, &usage.key))
        .collect();
    keyed_by(keys, incoming)
}

/// [`keyed`] with the keys already computed, one per incoming line in its order.
pub fn keyed_by(keys: Vec<LineKey>, incoming: Vec<UsageLine>) -> Vec<(LineKey, UsageLine)> {
    // Sorting (key, position) pairs in place is several times faster than sorting positions
    // by a key looked up elsewhere; the lines themselves move once, into their place.
    let mut order: Vec<(LineKey, usize)> = keys.into_iter().zip(0..incoming.len()).collect();
    order.sort_unstable();
    let mut lines: Vec<Option<UsageLine>> = incoming.into_iter().map(Some).collect();
    let mut keyed = Vec::with_capacity(order.len());
    for (n, &(key, i)) in order.iter().enumerate() {
        // Of lines with equal keys the last one wins.
        if order.get(n + 1).is_some_and(|(next, _)| *next == key) {
            continue;
        }
        if let Some(line) = lines[i].take() {
            keyed.push((key, line));
        }
    }
    keyed
}

/// [`plan_upsert`] of lines already [`keyed`]; `stored` needs only their keys' lines.
pub fn plan_keyed(
    stored: &LineKeyMap<LedgerLine>,
    keyed: Vec<(LineKey, UsageLine)>,
    ctx: &RatingContext<'_>,
) -> LedgerPlan {
    let mut plan = LedgerPlan::default();
    for (key, usage) in keyed {
        let before = stored.get(&key);
        let after = ctx.rated(before, key, usage);
        apply(&mut plan, before, after);
    }
    plan
}

/// A pull restating every line with a window start in `[start, end)`: lines of that window
/// missing from `incoming` are removed and their charges reversed.
pub fn plan_pull(
    stored: &LineKeyMap<LedgerLine>,
    incoming: Vec<UsageLine>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    ctx: &RatingContext<'_>,
) -> LedgerPlan {
    let in_window = |at: DateTime<Utc>| at >= start && at < end;
    let incoming: Vec<UsageLine> = incoming
        .into_iter()
        .filter(|l| in_window(l.key.window_start))
        .collect();
    let pulled: LineKeySet = incoming
        .iter()
        .map(|l| LineKey::of(ctx.line_key_prefix, ctx.partner_account_id, &l.key))
        .collect();
    let mut plan = plan_upsert(stored, incoming, ctx);
    let mut vanished: Vec<&LedgerLine> = stored
        .values()
        .filter(|l| {
            !l.removed
                && l.partner_account_id == ctx.partner_account_id
                && in_window(l.usage.key.window_start)
                && !pulled.contains(&l.line_key)
        })
        .collect();
    vanished.sort_by_key(|l| l.line_key);
    for line in vanished {
        let mut after = line.clone();
        after.removed = true;
        apply(&mut plan, Some(line), after);
    }
    plan
}

/// Re-rates stored lines against the current prices and links (after a rule, FX rate or link
/// changed): every line whose charge changes gets an event.
pub fn plan_rerate<'a>(
    lines: impl IntoIterator<Item = &'a LedgerLine>,
    ctx: &RatingContext<'_>,
) -> LedgerPlan {
    let mut plan = LedgerPlan::default();
    for line in lines {
        if line.removed {
            continue;
        }
        let after = ctx.rated(Some(line), line.line_key, line.usage.clone());
        apply(&mut plan, Some(line), after);
    }
    plan
}

/// What a ledger write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestSummary {
    /// Usage lines inserted or changed.
    pub lines_written: usize,
    /// Charge events appended.
    pub events_appended: usize,
    /// The tenant's sequence after the write, when events were appended.
    pub last_sequence: Option<i64>,
}

/// Prices and links of one tenant: everything rating reads besides the line and its account.
pub struct TenantPricing {
    pub rules: Vec<PriceRule>,
    pub fx: Vec<FxRate>,
    pub policy: PricingPolicy,
    /// (vendor, vendor account id) -> linked customer.
    pub chargees: HashMap<Vendor, HashMap<String, Chargee>>,
    /// (vendor, vendor tenant id) -> the customer linked by tenant.
    pub tenant_chargees: HashMap<Vendor, HashMap<String, Chargee>>,
    pub currencies: HashMap<String, Currency>,
    /// Customers' time zones, which decide the day a charge's daily total falls on.
    pub zones: Arc<HashMap<String, Tz>>,
}

/// The chargees of a vendor the tenant has linked no account of.
static NO_CHARGEES: std::sync::LazyLock<HashMap<String, Chargee>> =
    std::sync::LazyLock::new(HashMap::new);

impl TenantPricing {
    /// What rating reads for a line of `account`.
    pub fn context<'a>(&'a self, account: &'a PartnerAccount) -> RatingContext<'a> {
        RatingContext {
            partner_account_id: &account.id,
            line_key_prefix: account.line_key_prefix,
            vendor: account.spec.vendor,
            partner_discount_rate: account.spec.partner_discount_rate,
            chargees: self
                .chargees
                .get(&account.spec.vendor)
                .unwrap_or(&NO_CHARGEES),
            tenant_chargees: self
                .tenant_chargees
                .get(&account.spec.vendor)
                .unwrap_or(&NO_CHARGEES),
            chargee_currencies: &self.currencies,
            prices: PriceBook {
                rules: &self.rules,
                fx: &self.fx,
                policy: self.policy,
            },
        }
    }
}

fn parse_zone(customer_id: &str, zone: &str) -> Result<Tz> {
    zone.parse()
        .map_err(|_| Error::Internal(format!("stored customer {customer_id}: time zone {zone:?}")))
}

/// A tenant's pricing from its rules, rates, customers (id, currency, time zone) and links
/// (vendor, kind, vendor account, customer).
pub fn tenant_pricing(
    rules: Vec<PriceRule>,
    fx: Vec<FxRate>,
    policy: PricingPolicy,
    customers: Vec<(String, String, String)>,
    links: Vec<(String, String, String, String)>,
) -> Result<TenantPricing> {
    let mut currencies = HashMap::with_capacity(customers.len());
    let mut zones = HashMap::with_capacity(customers.len());
    for (id, currency, zone) in customers {
        currencies.insert(id.clone(), Currency::from_stored(&currency)?);
        zones.insert(id.clone(), parse_zone(&id, &zone)?);
    }
    let mut chargees: HashMap<Vendor, HashMap<String, Chargee>> = HashMap::new();
    let mut tenant_chargees: HashMap<Vendor, HashMap<String, Chargee>> = HashMap::new();
    for (vendor, kind, account_id, customer_id) in links {
        let vendor: Vendor = vendor.parse().map_err(Error::Internal)?;
        let kind: VendorAccountKind = kind.parse().map_err(Error::Internal)?;
        let Some(currency) = currencies.get(&customer_id) else {
            continue;
        };
        let by_account = if kind.is_tenant() {
            &mut tenant_chargees
        } else {
            &mut chargees
        };
        by_account.entry(vendor).or_default().insert(
            account_id,
            Chargee {
                customer_id,
                currency: *currency,
            },
        );
    }
    Ok(TenantPricing {
        rules,
        fx,
        policy,
        chargees,
        tenant_chargees,
        currencies,
        zones: Arc::new(zones),
    })
}
