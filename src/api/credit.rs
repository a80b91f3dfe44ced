//! CreditControlService: credit settings and defaults, positions, and the credit event stream.
use std::collections::VecDeque;

use chrono::Utc;
use futures::StreamExt;
use futures::stream::BoxStream;
use rust_decimal::Decimal;
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use super::auth::principal;
use super::charges::cursor;
use super::convert::{timestamp, update_mask};
use super::replies::{guard, reply};
use super::stream_slots::holding;
use super::{Gateway, customer_of, customers_of};
use crate::domain::credit::{
    CreditAction, CreditDefaults, CreditEvent, CreditPolicy, CreditPosition, CreditSettings,
    CreditSettingsPatch, Direction, Thresholds,
};
use crate::domain::customer::parse_credit_limit;
use crate::domain::error::{Error, FieldViolation, Result, Violations};
use crate::domain::idempotency::IdempotencyKey;
use crate::domain::money::{format_amount, format_decimal};
use crate::domain::retry::with_retries;
use crate::domain::text;
use crate::ledger::feed::CreditWaiter;
use crate::proto::v1;
use crate::proto::v1::credit_control_service_server::CreditControlService;

const UPDATABLE: &[&str] = &["credit_limit", "threshold_percents", "policy"];
const PAGE: i64 = 256;

pub struct CreditApi {
    gw: Gateway,
}

impl CreditApi {
    pub fn new(gw: Gateway) -> Self {
        Self { gw }
    }
}

fn policy_to_proto(p: CreditPolicy) -> v1::CreditPolicy {
    match p {
        CreditPolicy::Notify => v1::CreditPolicy::Notify,
        CreditPolicy::AutoSuspend => v1::CreditPolicy::AutoSuspend,
    }
}

/// None for UNSPECIFIED.
fn policy(field: &str, value: i32) -> Result<Option<CreditPolicy>, FieldViolation> {
    match v1::CreditPolicy::try_from(value) {
        Ok(v1::CreditPolicy::Unspecified) => Ok(None),
        Ok(v1::CreditPolicy::Notify) => Ok(Some(CreditPolicy::Notify)),
        Ok(v1::CreditPolicy::AutoSuspend) => Ok(Some(CreditPolicy::AutoSuspend)),
        Err(_) => Err(FieldViolation::new(
            field,
            format!("{value} is not a known credit policy"),
        )),
    }
}

fn settings_to_proto(s: CreditSettings) -> v1::CreditSettings {
    v1::CreditSettings {
        customer_id: s.customer_id,
        credit_limit: format_amount(s.credit_limit, s.currency),
        currency: s.currency.code().to_string(),
        threshold_percents: s.thresholds.percents().to_vec(),
        policy: policy_to_proto(s.policy).into(),
        thresholds_inherited: s.thresholds_inherited,
        policy_inherited: s.policy_inherited,
    }
}

fn defaults_to_proto(d: CreditDefaults) -> v1::CreditDefaults {
    v1::CreditDefaults {
        threshold_percents: d.thresholds.percents().to_vec(),
        policy: policy_to_proto(d.policy).into(),
    }
}

pub fn position_to_proto(p: CreditPosition) -> v1::CreditPosition {
    let c = p.currency;
    v1::CreditPosition {
        customer_id: p.customer_id,
        currency: p.currency.code().to_string(),
        credit_limit: format_amount(p.credit_limit, c),
        open_charges: format_amount(p.open_charges, c),
        unpaid_invoices: format_amount(p.unpaid_invoices, c),
        exposure: format_amount(p.exposure, c),
        headroom: p.headroom.map(|h| format_amount(h, c)).unwrap_or_default(),
        crossed_threshold_percents: p.crossed,
        policy: policy_to_proto(p.policy).into(),
        run_rate_per_day: format_amount(p.forecast.run_rate_per_day, c),
        days_to_limit: p
            .forecast
            .days_to_limit
            .map(format_decimal)
            .unwrap_or_default(),
        limit_reached_time: p.forecast.limit_reached_at.map(timestamp),
        as_of_sequence: p.as_of_sequence,
    }
}

pub fn event_to_proto(e: &CreditEvent) -> v1::CreditEvent {
    v1::CreditEvent {
        sequence: e.sequence,
        customer_id: e.customer_id.clone(),
        threshold_percent: e.threshold_percent,
        direction: match e.direction {
            Direction::Up => v1::CrossingDirection::Up,
            Direction::Down => v1::CrossingDirection::Down,
        }
        .into(),
        exposure: format_amount(e.exposure, e.currency),
        credit_limit: format_amount(e.credit_limit, e.currency),
        currency: e.currency.code().to_string(),
        policy: policy_to_proto(e.policy).into(),
        action: match e.action {
            CreditAction::Notify => v1::CreditAction::NotifyOnly,
            CreditAction::SuspensionRequired => v1::CreditAction::SuspensionRequired,
            CreditAction::ResumptionAllowed => v1::CreditAction::ResumptionAllowed,
        }
        .into(),
        ledger_sequence: e.ledger_sequence,
        record_time: Some(timestamp(e.recorded_at)),
        service_action_id: e.service_action_id.clone().unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl CreditControlService for CreditApi {
    async fn get_credit_settings(
        &self,
        request: Request<v1::GetCreditSettingsRequest>,
    ) -> Result<Response<v1::CreditSettings>, Status> {
        let principal = principal(&request)?;
        let id = customer_of(&principal, "customer_id", &request.get_ref().customer_id)?;
        let settings = self
            .gw
            .store
            .credit_settings(&principal.tenant_id, &id)
            .await?;
        Ok(Response::new(settings_to_proto(settings)))
    }

    async fn update_credit_settings(
        &self,
        request: Request<v1::UpdateCreditSettingsRequest>,
    ) -> Result<Response<v1::CreditSettings>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let settings = req
            .settings
            .ok_or_else(|| Error::invalid("settings", "is required"))?;
        let id = customer_of(&principal, "settings.customer_id", &settings.customer_id)?;
        let paths = update_mask(req.update_mask.as_ref(), UPDATABLE)?;
        let mut v = Violations::new();
        let request_id = v.check(text::request_id(&req.request_id, true)).flatten();
        // The limit is in the customer's billing currency.
        let current = self
            .gw
            .store
            .credit_settings(&principal.tenant_id, &id)
            .await?;
        let mut patch = CreditSettingsPatch::default();
        for path in &paths {
            match path.as_str() {
                "credit_limit" => {
                    patch.credit_limit = v
                        .check(parse_credit_limit(
                            "settings.credit_limit",
                            &settings.credit_limit,
                            current.currency,
                        ))
                        .and_then(|limit| {
                            if limit < Decimal::ZERO {
                                v.add("settings.credit_limit", "must not be negative");
                                None
                            } else {
                                Some(limit)
                            }
                        });
                }
                "threshold_percents" => {
                    patch.thresholds = if settings.threshold_percents.is_empty() {
                        Some(None)
                    } else {
                        v.check(Thresholds::parse(
                            "settings.threshold_percents",
                            &settings.threshold_percents,
                        ))
                        .map(Some)
                    };
                }
                "policy" => {
                    patch.policy = v.check(policy("settings.policy", settings.policy));
                }
                _ => {}
            }
        }
        v.into_result()?;
        let request_id =
            request_id.ok_or_else(|| Status::internal("validated request_id missing"))?;
        let key = IdempotencyKey::new(request_id, "UpdateCreditSettings", &(&id, &patch));
        let to_response = |s: &CreditSettings| settings_to_proto(s.clone());
        let answer = self
            .gw
            .ledger
            .update_credit_settings(&principal.tenant_id, &id, &patch, &guard(key, to_response))
            .await?;
        reply(answer, to_response)
    }

    async fn get_credit_defaults(
        &self,
        request: Request<v1::GetCreditDefaultsRequest>,
    ) -> Result<Response<v1::CreditDefaults>, Status> {
        let principal = principal(&request)?;
        let defaults = self.gw.store.credit_defaults(&principal.tenant_id).await?;
        Ok(Response::new(defaults_to_proto(defaults)))
    }

    async fn update_credit_defaults(
        &self,
        request: Request<v1::UpdateCreditDefaultsRequest>,
    ) -> Result<Response<v1::CreditDefaults>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let defaults = req
            .defaults
            .ok_or_else(|| Error::invalid("defaults", "is required"))?;
        let mut v = Violations::new();
        let request_id = v.check(text::request_id(&req.request_id, true)).flatten();
        let thresholds = v.check(Thresholds::parse(
            "defaults.threshold_percents",
            &defaults.threshold_percents,
        ));
        let policy = match v.check(policy("defaults.policy", defaults.policy)) {
            Some(None) => {
                v.add("defaults.policy", "is required (NOTIFY or AUTO_SUSPEND)");
                None
            }
            other => other.flatten(),
        };
        v.into_result()?;
        let (Some(thresholds), Some(policy), Some(request_id)) = (thresholds, policy, request_id)
        else {
            return Err(Status::internal("validated defaults missing"));
        };
        let key = IdempotencyKey::new(request_id, "UpdateCreditDefaults", &(&thresholds, policy));
        let to_response = |d: &CreditDefaults| defaults_to_proto(d.clone());
        let answer = self
            .gw
            .ledger
            .update_credit_defaults(
                &principal.tenant_id,
                &CreditDefaults { thresholds, policy },
                &guard(key, to_response),
            )
            .await?;
        reply(answer, to_response)
    }

    async fn get_credit_position(
        &self,
        request: Request<v1::GetCreditPositionRequest>,
    ) -> Result<Response<v1::CreditPosition>, Status> {
        let principal = principal(&request)?;
        let id = customer_of(&principal, "customer_id", &request.get_ref().customer_id)?;
        let p = self
            .gw
            .ledger
            .credit_position(&principal.tenant_id, &id, Utc::now())
            .await?;
        Ok(Response::new(position_to_proto(p)))
    }

    type StreamCreditEventsStream =
        BoxStream<'static, Result<v1::StreamCreditEventsResponse, Status>>;

    async fn stream_credit_events(
        &self,
        request: Request<v1::StreamCreditEventsRequest>,
    ) -> Result<Response<Self::StreamCreditEventsStream>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let after = v.check(cursor("after_sequence", req.after_sequence));
        let customer_ids = customers_of(&principal, "customer_ids", &req.customer_ids, &mut v)?;
        v.into_result()?;
        let slot = self.gw.stream_slots.take(&principal.tenant_id)?;
        let feed = self.gw.ledger.feed();
        let waiter = feed.credit_waiter(&principal.tenant_id).await?;
        let heartbeat = feed.heartbeat_interval();
        let state = CreditStream {
            store: self.gw.store.clone(),
            tenant_id: principal.tenant_id.clone(),
            customer_ids,
            cursor: after.unwrap_or(0),
            pending: VecDeque::new(),
            waiter,
            heartbeat,
            next_heartbeat: Instant::now() + heartbeat,
            caught_up_to: 0,
            failed: false,
        };
        let stream = futures::stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        });
        Ok(Response::new(holding(stream.boxed(), slot)))
    }
}

/// Credit events are few: a stream reads the database each time it is woken.
struct CreditStream {
    store: std::sync::Arc<crate::store::Store>,
    tenant_id: String,
    customer_ids: Vec<String>,
    cursor: i64,
    pending: VecDeque<CreditEvent>,
    waiter: CreditWaiter,
    heartbeat: std::time::Duration,
    next_heartbeat: Instant,
    /// The tenant's credit high-water mark when the last read found nothing more.
    caught_up_to: i64,
    failed: bool,
}

impl CreditStream {
    async fn next(&mut self) -> Option<Result<v1::StreamCreditEventsResponse, Status>> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.next_heartbeat = Instant::now() + self.heartbeat;
                return Some(Ok(v1::StreamCreditEventsResponse {
                    event: Some(v1::stream_credit_events_response::Event::CreditEvent(
                        event_to_proto(&event),
                    )),
                }));
            }
            self.waiter.mark_seen();
            match self.read().await {
                Err(error) => {
                    self.failed = true;
                    return Some(Err(error.into()));
                }
                Ok(true) => continue,
                Ok(false) => {}
            }
            if Instant::now() >= self.next_heartbeat {
                self.next_heartbeat = Instant::now() + self.heartbeat;
                return Some(Ok(v1::StreamCreditEventsResponse {
                    event: Some(v1::stream_credit_events_response::Event::Heartbeat(
                        v1::Heartbeat {
                            high_water_mark: self.caught_up_to.max(self.cursor),
                            time: Some(timestamp(Utc::now())),
                        },
                    )),
                }));
            }
            self.waiter.wait(self.next_heartbeat).await;
        }
    }

    /// Reads the next page, again after a pause when the database is briefly unavailable;
    /// true when it found events.
    async fn read(&mut self) -> Result<bool> {
        with_retries(self, |s| Box::pin(s.read_page())).await
    }

    /// Reads the next page once; true when it found events.
    async fn read_page(&mut self) -> Result<bool> {
        let hwm = self.store.credit_high_water_mark(&self.tenant_id).await?;
        let events = self
            .store
            .credit_events_after(&self.tenant_id, &self.customer_ids, self.cursor, PAGE)
            .await?;
        match events.last() {
            Some(last) => {
                self.cursor = last.sequence;
                if events.len() < PAGE as usize {
                    self.caught_up_to = hwm;
                }
                self.pending.extend(events);
                Ok(true)
            }
            None => {
                self.caught_up_to = hwm;
                Ok(false)
            }
        }
    }
}
