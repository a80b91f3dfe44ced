//! HelpDeskService (spend summaries, cost drivers, the overview) and PortalService (portal
//! sessions for the BSS). Read from the ledger's daily totals; portal keys see their own
//! customer only.
use chrono::Utc;
use tonic::{Request, Response, Status};

use super::auth::principal;
use super::convert::{enum_field, timestamp, vendor_to_proto};
use super::credit::position_to_proto;
use super::invoices::invoice_to_proto;
use super::replies::{guard, reply};
use super::service_management::action_to_proto;
use super::{Gateway, customer_of};
use crate::domain::error::{Error, FieldViolation, Violations};
use crate::domain::idempotency::IdempotencyKey;
use crate::domain::money::{Currency, format_amount, format_decimal};
use crate::domain::portal::{NewPortalSession, PortalSession, parse_return_url};
use crate::domain::spend::{
    CostDriverReport, DEFAULT_DRIVERS, DayRange, Dimension, Grouping, MAX_DRIVERS, SpendRow,
    SpendSummary, parse_range,
};
use crate::domain::text;
use crate::proto::v1;
use crate::proto::v1::help_desk_service_server::HelpDeskService;
use crate::proto::v1::portal_service_server::PortalService;

pub struct HelpDeskApi {
    gw: Gateway,
}

impl HelpDeskApi {
    pub fn new(gw: Gateway) -> Self {
        Self { gw }
    }
}

fn dimension(field: &str, value: i32) -> Result<Dimension, FieldViolation> {
    match enum_field::<v1::SpendDimension>(field, value)? {
        Some(v1::SpendDimension::Vendor) => Ok(Dimension::Vendor),
        Some(v1::SpendDimension::Service) => Ok(Dimension::Service),
        Some(v1::SpendDimension::Meter) => Ok(Dimension::Meter),
        Some(v1::SpendDimension::Day) => Ok(Dimension::Day),
        Some(v1::SpendDimension::Unspecified) | None => Err(FieldViolation::new(
            field,
            "must be VENDOR, SERVICE, METER or DAY",
        )),
    }
}

fn dimension_to_proto(d: Dimension) -> v1::SpendDimension {
    match d {
        Dimension::Vendor => v1::SpendDimension::Vendor,
        Dimension::Service => v1::SpendDimension::Service,
        Dimension::Meter => v1::SpendDimension::Meter,
        Dimension::Day => v1::SpendDimension::Day,
    }
}

/// A local date as the API writes it.
pub fn date(d: chrono::NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn range(v: &mut Violations, start: &str, end: &str) -> Option<DayRange> {
    v.check_all(parse_range("start_date", start, "end_date", end))
        .flatten()
}

pub fn row_to_proto(r: &SpendRow, currency: Currency) -> v1::SpendRow {
    v1::SpendRow {
        vendor: r
            .vendor
            .map_or(v1::Vendor::Unspecified, vendor_to_proto)
            .into(),
        service: r.service.clone().unwrap_or_default(),
        meter: r.meter.clone().unwrap_or_default(),
        date: r.day.map(date).unwrap_or_default(),
        amount: format_amount(r.amount, currency),
        quantity: r.quantity.map(format_decimal).unwrap_or_default(),
    }
}

pub fn summary_to_proto(s: &SpendSummary) -> v1::SpendSummary {
    v1::SpendSummary {
        customer_id: s.context.customer_id.clone(),
        currency: s.context.currency.code().to_string(),
        time_zone: s.context.time_zone.clone(),
        start_date: date(s.range.first),
        end_date: date(s.range.end),
        group_by: s
            .grouping
            .dimensions()
            .into_iter()
            .map(|d| dimension_to_proto(d).into())
            .collect(),
        rows: s
            .rows
            .iter()
            .map(|r| row_to_proto(r, s.context.currency))
            .collect(),
        total: format_amount(s.total, s.context.currency),
        as_of_sequence: s.as_of_sequence,
    }
}

fn drivers_to_proto(r: CostDriverReport) -> v1::ListCostDriversResponse {
    let c = r.context.currency;
    v1::ListCostDriversResponse {
        customer_id: r.context.customer_id,
        currency: r.context.currency.code().to_string(),
        start_date: date(r.range.first),
        end_date: date(r.range.end),
        previous_start_date: date(r.previous.first),
        previous_end_date: date(r.previous.end),
        drivers: r
            .drivers
            .into_iter()
            .map(|d| v1::CostDriver {
                vendor: vendor_to_proto(d.vendor).into(),
                service: d.service,
                meter: d.meter.unwrap_or_default(),
                amount: format_amount(d.amount, c),
                previous_amount: format_amount(d.previous_amount, c),
                change: format_amount(d.change, c),
                change_percent: d.change_percent.map(|p| p.to_string()).unwrap_or_default(),
            })
            .collect(),
        as_of_sequence: r.as_of_sequence,
    }
}

#[tonic::async_trait]
impl HelpDeskService for HelpDeskApi {
    async fn get_spend_summary(
        &self,
        request: Request<v1::GetSpendSummaryRequest>,
    ) -> Result<Response<v1::SpendSummary>, Status> {
        let principal = principal(&request)?;
        let req = request.get_ref();
        let mut v = Violations::new();
        let customer = v.check_error(customer_of(&principal, "customer_id", &req.customer_id))?;
        let range = range(&mut v, &req.start_date, &req.end_date);
        let dimensions: Vec<Dimension> = req
            .group_by
            .iter()
            .enumerate()
            .filter_map(|(i, d)| v.check(dimension(&format!("group_by[{i}]"), *d)))
            .collect();
        let grouping = v.check(Grouping::parse("group_by", &dimensions));
        v.into_result()?;
        let (Some(customer), Some(grouping)) = (customer, grouping) else {
            return Err(Error::Internal("validated fields missing".into()).into());
        };
        let summary = self
            .gw
            .ledger
            .spend_summary(&principal.tenant_id, &customer, range, grouping, Utc::now())
            .await?;
        Ok(Response::new(summary_to_proto(&summary)))
    }

    async fn list_cost_drivers(
        &self,
        request: Request<v1::ListCostDriversRequest>,
    ) -> Result<Response<v1::ListCostDriversResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.get_ref();
        let mut v = Violations::new();
        let customer = v.check_error(customer_of(&principal, "customer_id", &req.customer_id))?;
        let range = range(&mut v, &req.start_date, &req.end_date);
        let by_meter = match enum_field::<v1::SpendDimension>("by", req.by) {
            Ok(None | Some(v1::SpendDimension::Service)) => false,
            Ok(Some(v1::SpendDimension::Meter)) => true,
            Ok(Some(_)) => {
                v.add("by", "must be SERVICE or METER");
                false
            }
            Err(e) => {
                v.check::<()>(Err(e));
                false
            }
        };
        let limit = match req.limit {
            0 => DEFAULT_DRIVERS,
            n if n > 0 && n as usize <= MAX_DRIVERS => n as usize,
            n => {
                v.add("limit", format!("{n} is outside 1 to {MAX_DRIVERS}"));
                DEFAULT_DRIVERS
            }
        };
        v.into_result()?;
        let Some(customer) = customer else {
            return Err(Error::Internal("validated customer missing".into()).into());
        };
        let report = self
            .gw
            .ledger
            .cost_drivers(
                &principal.tenant_id,
                &customer,
                range,
                by_meter,
                limit,
                Utc::now(),
            )
            .await?;
        Ok(Response::new(drivers_to_proto(report)))
    }

    async fn get_spend_overview(
        &self,
        request: Request<v1::GetSpendOverviewRequest>,
    ) -> Result<Response<v1::SpendOverview>, Status> {
        let principal = principal(&request)?;
        let customer = customer_of(&principal, "customer_id", &request.get_ref().customer_id)?;
        let o = self
            .gw
            .ledger
            .spend_overview(&principal.tenant_id, &customer, Utc::now())
            .await?;
        Ok(Response::new(v1::SpendOverview {
            customer_id: o.context.customer_id,
            currency: o.context.currency.code().to_string(),
            time_zone: o.context.time_zone,
            period_start: Some(timestamp(o.context.period_start)),
            period_end: Some(timestamp(o.context.period_end)),
            month_to_date: format_amount(o.month_to_date, o.context.currency),
            forecast_to_period_end: format_amount(o.forecast_to_period_end, o.context.currency),
            run_rate_per_day: format_amount(o.run_rate_per_day, o.context.currency),
            credit: Some(position_to_proto(o.credit)),
            as_of_sequence: o.as_of_sequence,
            recent_invoices: o.recent_invoices.iter().map(invoice_to_proto).collect(),
            recent_service_actions: o
                .recent_service_actions
                .iter()
                .map(action_to_proto)
                .collect(),
        }))
    }
}

pub struct PortalApi {
    gw: Gateway,
}

impl PortalApi {
    pub fn new(gw: Gateway) -> Self {
        Self { gw }
    }
}

#[tonic::async_trait]
impl PortalService for PortalApi {
    async fn create_portal_session(
        &self,
        request: Request<v1::CreatePortalSessionRequest>,
    ) -> Result<Response<v1::PortalSession>, Status> {
        let principal = principal(&request)?;
        let req = request.get_ref();
        let mut v = Violations::new();
        let customer = v.check_error(customer_of(&principal, "customer_id", &req.customer_id))?;
        let return_url = v.check(parse_return_url("return_url", &req.return_url));
        let request_id = v.check(text::request_id(&req.request_id, true)).flatten();
        v.into_result()?;
        let (Some(customer_id), Some(return_url), Some(request_id)) =
            (customer, return_url, request_id)
        else {
            return Err(Error::Internal("validated fields missing".into()).into());
        };
        let new = NewPortalSession {
            customer_id,
            return_url,
        };
        let key = IdempotencyKey::new(request_id, "CreatePortalSession", &new);
        let base_url = &self.gw.portal.base_url;
        let to_response = |(session, token): &(PortalSession, String)| v1::PortalSession {
            url: format!("{base_url}/portal/open/{token}"),
            id: session.id.clone(),
            customer_id: session.customer_id.clone(),
            expire_time: Some(timestamp(session.link_expires_at)),
            return_url: session.return_url.clone(),
        };
        let answer = self
            .gw
            .store
            .create_portal_session(
                &principal.tenant_id,
                &new,
                &guard(key, to_response),
                Utc::now(),
            )
            .await?;
        reply(answer, to_response)
    }
}
