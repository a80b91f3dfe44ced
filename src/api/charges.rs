//! ChargeService: pages of the charge ledger, the live charge stream, and a customer's open
//! period.
use chrono::Utc;
use futures::StreamExt;
use futures::stream::BoxStream;
use tonic::{Request, Response, Status};

use super::auth::principal;
use super::convert::{instant, timestamp, vendor_to_proto};
use super::stream_slots::holding;
use super::{Gateway, customer_of, customers_of, optional_customer_of};
use crate::domain::charges::{ChargeEvent, ChargeFilter};
use crate::domain::error::{Error, FieldViolation, Violations};
use crate::domain::ledger::ChargeKind;
use crate::domain::money::{format_amount, format_decimal};
use crate::domain::paging::PageRequest;
use crate::ledger::feed::{FeedItem, StreamFilter};
use crate::proto::v1;
use crate::proto::v1::charge_service_server::ChargeService;

pub struct ChargeApi {
    gw: Gateway,
}

impl ChargeApi {
    pub fn new(gw: Gateway) -> Self {
        Self { gw }
    }
}

pub fn charge_to_proto(e: &ChargeEvent) -> v1::Charge {
    v1::Charge {
        sequence: e.sequence,
        customer_id: e.customer_id.clone(),
        kind: kind_to_proto(e.kind).into(),
        amount: format_amount(e.amount, e.currency),
        currency: e.currency.code().to_string(),
        quantity: format_decimal(e.quantity),
        vendor: vendor_to_proto(e.vendor).into(),
        service: e.service.clone(),
        meter: e.meter.clone(),
        window_start: Some(timestamp(e.window_start)),
        record_time: Some(timestamp(e.recorded_at)),
        line_key: e.line_key.to_string(),
        unit: e.unit.clone(),
    }
}

pub fn kind_to_proto(k: ChargeKind) -> v1::ChargeKind {
    match k {
        ChargeKind::New => v1::ChargeKind::New,
        ChargeKind::Revision => v1::ChargeKind::Revision,
        ChargeKind::Reversal => v1::ChargeKind::Reversal,
        ChargeKind::Rerate => v1::ChargeKind::Rerate,
        ChargeKind::SubscriptionFee => v1::ChargeKind::SubscriptionFee,
        ChargeKind::Proration => v1::ChargeKind::Proration,
        ChargeKind::Refund => v1::ChargeKind::Refund,
    }
}

fn kinds(field: &str, values: &[i32]) -> Result<Vec<ChargeKind>, FieldViolation> {
    let mut out = Vec::with_capacity(values.len());
    for (i, &value) in values.iter().enumerate() {
        let kind = match v1::ChargeKind::try_from(value) {
            Ok(v1::ChargeKind::New) => ChargeKind::New,
            Ok(v1::ChargeKind::Revision) => ChargeKind::Revision,
            Ok(v1::ChargeKind::Reversal) => ChargeKind::Reversal,
            Ok(v1::ChargeKind::Rerate) => ChargeKind::Rerate,
            Ok(v1::ChargeKind::SubscriptionFee) => ChargeKind::SubscriptionFee,
            Ok(v1::ChargeKind::Proration) => ChargeKind::Proration,
            Ok(v1::ChargeKind::Refund) => ChargeKind::Refund,
            Ok(v1::ChargeKind::Unspecified) => {
                return Err(FieldViolation::new(
                    format!("{field}[{i}]"),
                    "CHARGE_KIND_UNSPECIFIED is not a kind",
                ));
            }
            Err(_) => {
                return Err(FieldViolation::new(
                    format!("{field}[{i}]"),
                    format!("{value} is not a known charge kind"),
                ));
            }
        };
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    Ok(out)
}

pub fn cursor(field: &str, value: i64) -> Result<i64, FieldViolation> {
    if value < 0 {
        Err(FieldViolation::new(
            field,
            format!("{value} is negative (0 means from the beginning)"),
        ))
    } else {
        Ok(value)
    }
}

#[tonic::async_trait]
impl ChargeService for ChargeApi {
    async fn list_charges(
        &self,
        request: Request<v1::ListChargesRequest>,
    ) -> Result<Response<v1::ListChargesResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let customer_id = v
            .check_error(optional_customer_of(
                &principal,
                "customer_id",
                &req.customer_id,
            ))?
            .flatten();
        let kinds = v.check(kinds("kinds", &req.kinds)).unwrap_or_default();
        let from = v
            .check(instant("window_start_from", req.window_start_from.as_ref()))
            .flatten();
        let to = v
            .check(instant("window_start_to", req.window_start_to.as_ref()))
            .flatten();
        let after = v
            .check(cursor("after_sequence", req.after_sequence))
            .unwrap_or(0);
        let filters = format!(
            "customer={}|kinds={:?}|from={:?}|to={:?}|after={}",
            req.customer_id, req.kinds, req.window_start_from, req.window_start_to, after
        );
        let page = match PageRequest::parse(req.page_size, &req.page_token, &filters) {
            Ok(page) => Some(page),
            Err(violations) => {
                violations
                    .into_iter()
                    .for_each(|f| v.add(f.field, f.description));
                None
            }
        };
        v.into_result()?;
        let page = page.ok_or_else(|| Status::internal("validated page missing"))?;
        let token_after = match &page.after {
            Some(s) => s
                .parse::<i64>()
                .map_err(|_| Error::invalid("page_token", "is malformed"))?,
            None => 0,
        };
        let filter = ChargeFilter {
            customer_id,
            kinds,
            window_from: from,
            window_to: to,
        };
        let (events, hwm) = self
            .gw
            .ledger
            .list_charges(
                &principal.tenant_id,
                &filter,
                after.max(token_after),
                page.fetch_limit(),
            )
            .await?;
        let rows: Vec<(String, ChargeEvent)> = events
            .into_iter()
            .map(|e| (e.sequence.to_string(), e))
            .collect();
        let page = page.page(rows, |r| &r.0);
        Ok(Response::new(v1::ListChargesResponse {
            charges: page.items.iter().map(|(_, e)| charge_to_proto(e)).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
            high_water_mark: hwm,
        }))
    }

    type StreamChargesStream = BoxStream<'static, Result<v1::StreamChargesResponse, Status>>;

    async fn stream_charges(
        &self,
        request: Request<v1::StreamChargesRequest>,
    ) -> Result<Response<Self::StreamChargesStream>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let after = v.check(cursor("after_sequence", req.after_sequence));
        let customer_ids = customers_of(&principal, "customer_ids", &req.customer_ids, &mut v)?;
        let kinds = v.check(kinds("kinds", &req.kinds)).unwrap_or_default();
        v.into_result()?;
        let slot = self.gw.stream_slots.take(&principal.tenant_id)?;
        let feed = self
            .gw
            .ledger
            .feed()
            .charges(
                &principal.tenant_id,
                StreamFilter {
                    customer_ids,
                    kinds,
                },
                after.unwrap_or(0),
            )
            .await?;
        let stream = feed.map(|item| match item {
            Ok(FeedItem::Charge(event)) => Ok(v1::StreamChargesResponse {
                event: Some(v1::stream_charges_response::Event::Charge(charge_to_proto(
                    &event,
                ))),
            }),
            Ok(FeedItem::Heartbeat { high_water_mark }) => Ok(v1::StreamChargesResponse {
                event: Some(v1::stream_charges_response::Event::Heartbeat(
                    v1::Heartbeat {
                        high_water_mark,
                        time: Some(timestamp(Utc::now())),
                    },
                )),
            }),
            Err(error) => Err(Status::from(error)),
        });
        Ok(Response::new(holding(stream.boxed(), slot)))
    }

    async fn list_open_line_items(
        &self,
        request: Request<v1::ListOpenLineItemsRequest>,
    ) -> Result<Response<v1::ListOpenLineItemsResponse>, Status> {
        let principal = principal(&request)?;
        let customer_id = customer_of(&principal, "customer_id", &request.get_ref().customer_id)?;
        let period = self
            .gw
            .ledger
            .open_period(&principal.tenant_id, &customer_id, Utc::now())
            .await?;
        let currency = period.currency;
        Ok(Response::new(v1::ListOpenLineItemsResponse {
            customer_id: period.customer_id,
            period_start: Some(timestamp(period.period_start)),
            period_end: Some(timestamp(period.period_end)),
            line_items: period
                .items
                .into_iter()
                .map(|i| v1::OpenLineItem {
                    vendor: vendor_to_proto(i.vendor).into(),
                    service: i.service,
                    meter: i.meter,
                    amount: format_amount(i.amount, currency),
                    quantity: format_decimal(i.quantity),
                    currency: currency.code().to_string(),
                })
                .collect(),
            total: format_amount(period.total, currency),
            currency: currency.code().to_string(),
            as_of_sequence: period.as_of_sequence,
        }))
    }
}
