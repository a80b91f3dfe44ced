//! UsageService: usage pushed by the ISP, and usage waiting to be rated.
use prost::Message;
use rust_decimal::Decimal;
use tonic::{Request, Response, Status, Streaming};

use super::Gateway;
use super::auth::principal;
use super::convert::{instant, required_id, timestamp, vendor_to_proto};
use super::replies::{guard, reply};
use crate::domain::error::{Error, FieldViolation, Violations};
use crate::domain::idempotency::IdempotencyKey;
use crate::domain::ledger::{IngestSummary, LedgerLine};
use crate::domain::money::{Currency, format_amount, format_decimal, parse_decimal};
use crate::domain::paging::PageRequest;
use crate::domain::text;
use crate::domain::usage::{UsageKey, UsageLine};
use crate::proto::v1;
use crate::proto::v1::usage_service_server::UsageService;

pub struct UsageApi {
    gw: Gateway,
}

impl UsageApi {
    pub fn new(gw: Gateway) -> Self {
        Self { gw }
    }
}

/// Most lines one IngestUsage stream may carry; it is one transaction.
pub const MAX_LINES_PER_INGEST: usize = 100_000;
/// Violations reported for one bad batch; more would drown the first ones.
const MAX_REPORTED_VIOLATIONS: usize = 50;

fn optional_text(field: &str, value: &str, max: usize) -> Result<String, FieldViolation> {
    if value.is_empty() {
        Ok(String::new())
    } else {
        text::display_name(field, value, max)
    }
}

/// Validates one pushed line; `field` is its path, e.g. `lines[12]`.
pub fn parse_line(field: &str, line: &v1::UsageLine, v: &mut Violations) -> Option<UsageLine> {
    let f = |name: &str| format!("{field}.{name}");
    let vendor_account_id = v.check(text::identifier(
        &f("vendor_account_id"),
        &line.vendor_account_id,
        128,
    ));
    let service = v.check(text::display_name(&f("service"), &line.service, 256));
    let meter = v.check(optional_text(&f("meter"), &line.meter, 256));
    let region = v.check(optional_text(&f("region"), &line.region, 64));
    let meter_name = v.check(optional_text(&f("meter_name"), &line.meter_name, 256));
    let unit = v.check(optional_text(&f("unit"), &line.unit, 64));
    let quantity = v.check(parse_decimal(&f("quantity"), &line.quantity).and_then(|q| {
        if q < Decimal::ZERO {
            Err(FieldViolation::new(
                f("quantity"),
                format!("{q} is negative; usage quantities are zero or more"),
            ))
        } else {
            Ok(q)
        }
    }));
    let cost = v.check(parse_decimal(&f("cost"), &line.cost));
    let list_cost = if line.list_cost.is_empty() {
        Some(None)
    } else {
        v.check(parse_decimal(&f("list_cost"), &line.list_cost))
            .map(Some)
    };
    let currency = v.check(Currency::parse(&f("currency"), &line.currency));
    let vendor_tenant_id = if line.vendor_tenant_id.is_empty() {
        Some(None)
    } else {
        v.check(text::identifier(
            &f("vendor_tenant_id"),
            &line.vendor_tenant_id,
            128,
        ))
        .map(Some)
    };
    let start = v.check(instant(&f("window_start"), line.window_start.as_ref()));
    let end = v.check(instant(&f("window_end"), line.window_end.as_ref()));
    let (start, end) = match (start, end) {
        (Some(Some(start)), Some(Some(end))) if end > start => (Some(start), Some(end)),
        (Some(Some(_)), Some(Some(_))) => {
            v.add(f("window_end"), "must be after window_start");
            (None, None)
        }
        (s, e) => {
            if let Some(None) = s {
                v.add(f("window_start"), "is required");
            }
            if let Some(None) = e {
                v.add(f("window_end"), "is required");
            }
            (None, None)
        }
    };
    Some(UsageLine {
        key: UsageKey {
            vendor_account_id: vendor_account_id?,
            service: service?,
            meter: meter?,
            region: region?,
            window_start: start?,
        },
        window_end: end?,
        meter_name: meter_name?,
        quantity: quantity?,
        unit: unit?,
        cost: cost?,
        list_cost: list_cost?,
        currency: currency?.code().to_string(),
        estimated: line.estimated,
        vendor_tenant_id: vendor_tenant_id?,
    })
}

fn usage_line_to_proto(line: &UsageLine) -> v1::UsageLine {
    // A line is unrated when, among other reasons, its currency is not one the gateway bills in;
    // its costs then leave as plain exact decimals.
    let currency = Currency::parse("currency", &line.currency).ok();
    let money = |amount| match currency {
        Some(c) => format_amount(amount, c),
        None => format_decimal(amount),
    };
    v1::UsageLine {
        vendor_account_id: line.key.vendor_account_id.clone(),
        service: line.key.service.clone(),
        meter: line.key.meter.clone(),
        region: line.key.region.clone(),
        window_start: Some(timestamp(line.key.window_start)),
        window_end: Some(timestamp(line.window_end)),
        meter_name: line.meter_name.clone(),
        quantity: format_decimal(line.quantity),
        unit: line.unit.clone(),
        cost: money(line.cost),
        list_cost: line.list_cost.map(money).unwrap_or_default(),
        currency: line.currency.clone(),
        estimated: line.estimated,
        vendor_tenant_id: line.vendor_tenant_id.clone().unwrap_or_default(),
    }
}

fn unrated_to_proto(line: LedgerLine) -> v1::UnratedUsage {
    let (code, reason) = line
        .unrated_reason
        .as_ref()
        .map(|r| (r.code().to_string(), r.to_string()))
        .unwrap_or_default();
    v1::UnratedUsage {
        line: Some(usage_line_to_proto(&line.usage)),
        line_key: line.line_key.to_string(),
        partner_account_id: line.partner_account_id,
        vendor: vendor_to_proto(line.vendor).into(),
        reason_code: code,
        reason,
        customer_id: line.customer_id.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl UsageService for UsageApi {
    async fn ingest_usage(
        &self,
        request: Request<Streaming<v1::IngestUsageRequest>>,
    ) -> Result<Response<v1::IngestUsageResponse>, Status> {
        let principal = principal(&request)?;
        let mut stream = request.into_inner();
        let mut v = Violations::new();
        let mut reported = 0usize;
        let mut request_id = None;
        let mut partner_account_id = None;
        let mut lines = Vec::new();
        let mut received = 0usize;
        let mut fingerprint = Vec::new();
        let mut first = true;
        while let Some(message) = stream.message().await? {
            if first {
                request_id = v
                    .check(text::request_id(&message.request_id, true))
                    .flatten();
                partner_account_id = v.check_error(required_id(
                    "partner_account_id",
                    &message.partner_account_id,
                ))?;
                first = false;
            }
            received += message.lines.len();
            if received > MAX_LINES_PER_INGEST {
                return Err(Error::invalid(
                    "lines",
                    format!("the stream carried more than {MAX_LINES_PER_INGEST} lines; split it into several IngestUsage calls"),
                )
                .into());
            }
            fingerprint.extend_from_slice(&message.encode_to_vec());
            for line in &message.lines {
                let index = lines.len() + reported;
                let mut line_violations = Violations::new();
                match parse_line(&format!("lines[{index}]"), line, &mut line_violations) {
                    Some(parsed) if line_violations.is_empty() => lines.push(parsed),
                    _ => {
                        reported += 1;
                        if v.len() < MAX_REPORTED_VIOLATIONS {
                            v.extend(line_violations);
                        }
                    }
                }
            }
        }
        if first {
            v.add("request_id", "is required (the stream carried no message)");
        }
        v.into_result()?;
        let (Some(request_id), Some(partner_account_id)) = (request_id, partner_account_id) else {
            return Err(Status::internal("validated fields missing"));
        };
        let account = self
            .gw
            .store
            .partner_account(&principal.tenant_id, &partner_account_id)
            .await?;
        let key = IdempotencyKey::from_bytes(request_id, "IngestUsage", &fingerprint);
        #[allow(deprecated)] // `replayed`: always false, a retry answers the first response
        let summarize = |s: &IngestSummary| v1::IngestUsageResponse {
            lines_received: received as i64,
            lines_written: s.lines_written as i64,
            events_appended: s.events_appended as i64,
            last_sequence: s.last_sequence.unwrap_or(0),
            replayed: false,
        };
        let answer = self
            .gw
            .ledger
            .ingest_push(
                &principal.tenant_id,
                &account,
                lines,
                &guard(key, summarize),
            )
            .await?;
        reply(answer, summarize)
    }

    async fn list_unrated_usage(
        &self,
        request: Request<v1::ListUnratedUsageRequest>,
    ) -> Result<Response<v1::ListUnratedUsageResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let page = PageRequest::parse(req.page_size, &req.page_token, "unrated_usage")
            .map_err(Error::InvalidArgument)?;
        let page = self
            .gw
            .ledger
            .unrated_usage(&principal.tenant_id, principal.customer_scope(), &page)
            .await?;
        Ok(Response::new(v1::ListUnratedUsageResponse {
            unrated_usage: page.items.into_iter().map(unrated_to_proto).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }
}
