//! PricingService: price rules and FX rates.
use rust_decimal::Decimal;
use tonic::{Request, Response, Status};

use super::Gateway;
use super::auth::principal;
use super::convert::{
    instant, optional_vendor, required_id, timestamp, update_mask, vendor_to_proto,
};
use super::replies::{guard, reply};
use crate::domain::error::{Error, FieldViolation, Violations};
use crate::domain::idempotency::IdempotencyKey;
use crate::domain::money::{Currency, parse_decimal};
use crate::domain::paging::PageRequest;
use crate::domain::pricing::{
    FxRate, NewPriceRule, PriceKind, PriceRule, PricingPolicy, RuleScope, VersionedPricingPolicy,
};
use crate::domain::text;
use crate::proto::v1;
use crate::proto::v1::pricing_service_server::PricingService;

pub struct PricingApi {
    gw: Gateway,
}

impl PricingApi {
    pub fn new(gw: Gateway) -> Self {
        Self { gw }
    }
}

/// Markups and discounts are fractions; 10 (1000 %) is a generous ceiling that still catches
/// percentages typed as whole numbers… above it.
const MAX_FRACTION: Decimal = Decimal::TEN;

fn kind_from_proto(field: &str, value: i32) -> Result<PriceKind, FieldViolation> {
    match v1::PriceRuleKind::try_from(value) {
        Ok(v1::PriceRuleKind::Markup) => Ok(PriceKind::Markup),
        Ok(v1::PriceRuleKind::ListMinusDiscount) => Ok(PriceKind::ListMinusDiscount),
        Ok(v1::PriceRuleKind::FixedUnitPrice) => Ok(PriceKind::FixedUnitPrice),
        Ok(v1::PriceRuleKind::Unspecified) => Err(FieldViolation::new(field, "is required")),
        Err(_) => Err(FieldViolation::new(
            field,
            format!("{value} is not a known value"),
        )),
    }
}

fn kind_to_proto(kind: PriceKind) -> v1::PriceRuleKind {
    match kind {
        PriceKind::Markup => v1::PriceRuleKind::Markup,
        PriceKind::ListMinusDiscount => v1::PriceRuleKind::ListMinusDiscount,
        PriceKind::FixedUnitPrice => v1::PriceRuleKind::FixedUnitPrice,
    }
}

fn rule_to_proto(rule: &PriceRule) -> v1::PriceRule {
    v1::PriceRule {
        id: rule.id.clone(),
        vendor: rule
            .scope
            .vendor
            .map(|v| vendor_to_proto(v).into())
            .unwrap_or(0),
        service: rule.scope.service.clone().unwrap_or_default(),
        meter: rule.scope.meter.clone().unwrap_or_default(),
        customer_id: rule.scope.customer_id.clone().unwrap_or_default(),
        kind: kind_to_proto(rule.kind).into(),
        value: rule.value.to_string(),
        currency: rule
            .currency
            .map(|c| c.code().to_string())
            .unwrap_or_default(),
        effective_from: Some(timestamp(rule.effective_from)),
        effective_to: rule.effective_to.map(timestamp),
        create_time: Some(timestamp(rule.created_at)),
    }
}

fn fx_to_proto(rate: &FxRate) -> v1::FxRate {
    v1::FxRate {
        from_currency: rate.from.code().into(),
        to_currency: rate.to.code().into(),
        rate: rate.rate.to_string(),
        effective_from: Some(timestamp(rate.effective_from)),
    }
}

fn policy_to_proto(policy: &VersionedPricingPolicy) -> v1::PricingPolicy {
    v1::PricingPolicy {
        hold_below_cost: policy.policy.hold_below_cost,
        etag: policy.etag(),
        update_time: policy.updated_at.map(timestamp),
    }
}

/// An optional scope string: empty means "any"; otherwise 1 to 256 printable characters.
fn scope_text(field: &str, value: &str) -> Result<Option<String>, FieldViolation> {
    if value.is_empty() {
        return Ok(None);
    }
    text::display_name(field, value, 256).map(Some)
}

pub(crate) fn parse_rule(rule: &v1::PriceRule) -> Result<NewPriceRule, Error> {
    let mut v = Violations::new();
    let vendor = v.check(optional_vendor("price_rule.vendor", rule.vendor));
    let service = v.check(scope_text("price_rule.service", &rule.service));
    let meter = v.check(scope_text("price_rule.meter", &rule.meter));
    let customer_id = if rule.customer_id.is_empty() {
        Some(None)
    } else {
        match required_id("price_rule.customer_id", &rule.customer_id) {
            Ok(id) => Some(Some(id)),
            Err(_) => {
                v.add("price_rule.customer_id", "is not a customer id");
                None
            }
        }
    };
    let kind = v.check(kind_from_proto("price_rule.kind", rule.kind));
    let value = v.check(parse_decimal("price_rule.value", &rule.value));
    let currency = if rule.currency.is_empty() {
        Some(None)
    } else {
        v.check(Currency::parse("price_rule.currency", &rule.currency))
            .map(Some)
    };
    if let (Some(kind), Some(value), Some(currency)) = (kind, value, currency) {
        match kind {
            PriceKind::FixedUnitPrice => {
                if currency.is_none() {
                    v.add("price_rule.currency", "is required for FIXED_UNIT_PRICE");
                }
                if value.is_sign_negative() {
                    v.add("price_rule.value", "a unit price cannot be negative");
                }
            }
            PriceKind::Markup | PriceKind::ListMinusDiscount => {
                if currency.is_some() {
                    v.add("price_rule.currency", "is only for FIXED_UNIT_PRICE rules");
                }
                if value.is_sign_negative() && !value.is_zero() || value > MAX_FRACTION {
                    v.add(
                        "price_rule.value",
                        format!("{value} is not a fraction from 0 to 10 (e.g. \"0.15\")"),
                    );
                }
                if kind == PriceKind::ListMinusDiscount && value > Decimal::ONE {
                    v.add("price_rule.value", "a discount cannot exceed 1 (100 %)");
                }
            }
        }
    }
    let from = v.check(instant(
        "price_rule.effective_from",
        rule.effective_from.as_ref(),
    ));
    let to = v.check(instant(
        "price_rule.effective_to",
        rule.effective_to.as_ref(),
    ));
    if let Some(None) = from {
        v.add("price_rule.effective_from", "is required");
    }
    if let (Some(Some(from)), Some(Some(to))) = (from, to)
        && to <= from
    {
        v.add("price_rule.effective_to", "must be after effective_from");
    }
    v.into_result()?;
    match (
        vendor,
        service,
        meter,
        customer_id,
        kind,
        value,
        currency,
        from,
        to,
    ) {
        (
            Some(vendor),
            Some(service),
            Some(meter),
            Some(customer_id),
            Some(kind),
            Some(value),
            Some(currency),
            Some(Some(from)),
            Some(to),
        ) => Ok(NewPriceRule {
            scope: RuleScope {
                vendor,
                service,
                meter,
                customer_id,
            },
            kind,
            value,
            currency,
            effective_from: from,
            effective_to: to,
        }),
        _ => Err(Error::Internal("validated fields missing".into())),
    }
}

#[tonic::async_trait]
impl PricingService for PricingApi {
    async fn create_price_rule(
        &self,
        request: Request<v1::CreatePriceRuleRequest>,
    ) -> Result<Response<v1::PriceRule>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let request_id = text::request_id(&req.request_id, true)
            .map_err(|v| Error::InvalidArgument(vec![v]))?
            .ok_or_else(|| Error::invalid("request_id", "is required"))?;
        let rule = req
            .price_rule
            .ok_or_else(|| Error::invalid("price_rule", "is required"))?;
        let new = parse_rule(&rule)?;
        let key = IdempotencyKey::new(request_id, "CreatePriceRule", &new);
        let answer = self
            .gw
            .ledger
            .create_price_rule(&principal.tenant_id, &new, &guard(key, rule_to_proto))
            .await?;
        reply(answer, rule_to_proto)
    }

    async fn list_price_rules(
        &self,
        request: Request<v1::ListPriceRulesRequest>,
    ) -> Result<Response<v1::ListPriceRulesResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let page = PageRequest::parse(req.page_size, &req.page_token, "price_rules")
            .map_err(Error::InvalidArgument)?;
        let page = self
            .gw
            .store
            .list_price_rules(&principal.tenant_id, &page)
            .await?;
        Ok(Response::new(v1::ListPriceRulesResponse {
            price_rules: page.items.iter().map(rule_to_proto).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn set_fx_rate(
        &self,
        request: Request<v1::SetFxRateRequest>,
    ) -> Result<Response<v1::FxRate>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let rate = req
            .fx_rate
            .ok_or_else(|| Error::invalid("fx_rate", "is required"))?;
        let mut v = Violations::new();
        let request_id = v.check(text::request_id(&req.request_id, false)).flatten();
        let from = v.check(Currency::parse(
            "fx_rate.from_currency",
            &rate.from_currency,
        ));
        let to = v.check(Currency::parse("fx_rate.to_currency", &rate.to_currency));
        let value = v.check(parse_decimal("fx_rate.rate", &rate.rate));
        if value.is_some_and(|r| r <= Decimal::ZERO) {
            v.add("fx_rate.rate", "must be positive");
        }
        if from.is_some() && from == to {
            v.add("fx_rate.to_currency", "must differ from from_currency");
        }
        let at = v.check(instant(
            "fx_rate.effective_from",
            rate.effective_from.as_ref(),
        ));
        if let Some(None) = at {
            v.add("fx_rate.effective_from", "is required");
        }
        v.into_result()?;
        let (Some(from), Some(to), Some(value), Some(Some(at))) = (from, to, value, at) else {
            return Err(Status::internal("validated fields missing"));
        };
        let rate = FxRate {
            from,
            to,
            rate: value,
            effective_from: at,
        };
        let guarded =
            request_id.map(|r| guard(IdempotencyKey::new(r, "SetFxRate", &rate), fx_to_proto));
        let answer = self
            .gw
            .ledger
            .set_fx_rate(&principal.tenant_id, &rate, guarded.as_ref())
            .await?;
        reply(answer, fx_to_proto)
    }

    async fn list_fx_rates(
        &self,
        request: Request<v1::ListFxRatesRequest>,
    ) -> Result<Response<v1::ListFxRatesResponse>, Status> {
        let principal = principal(&request)?;
        let rates = self.gw.store.fx_rates(&principal.tenant_id).await?;
        Ok(Response::new(v1::ListFxRatesResponse {
            fx_rates: rates.iter().map(fx_to_proto).collect(),
        }))
    }

    async fn get_pricing_policy(
        &self,
        request: Request<v1::GetPricingPolicyRequest>,
    ) -> Result<Response<v1::PricingPolicy>, Status> {
        let principal = principal(&request)?;
        let policy = self.gw.store.pricing_policy(&principal.tenant_id).await?;
        Ok(Response::new(policy_to_proto(&policy)))
    }

    async fn update_pricing_policy(
        &self,
        request: Request<v1::UpdatePricingPolicyRequest>,
    ) -> Result<Response<v1::PricingPolicy>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let sent = req
            .pricing_policy
            .ok_or_else(|| Error::invalid("pricing_policy", "is required"))?;
        update_mask(req.update_mask.as_ref(), &["hold_below_cost"])?;
        let request_id = text::request_id(&req.request_id, false)
            .map_err(|v| Error::InvalidArgument(vec![v]))?;
        // One field: the mask can only name it.
        let next = PricingPolicy {
            hold_below_cost: sent.hold_below_cost,
        };
        let guarded = request_id.map(|r| {
            let key = IdempotencyKey::new(r, "UpdatePricingPolicy", &(&sent.etag, &next));
            guard(key, policy_to_proto)
        });
        let answer = self
            .gw
            .ledger
            .update_pricing_policy(&principal.tenant_id, &sent.etag, next, guarded.as_ref())
            .await?;
        reply(answer, policy_to_proto)
    }
}
