//! ServiceManagementService: suspend, resume and purge a customer's vendor accounts through
//! durable service actions (carried out by `crate::service_worker`), and read them back.
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::auth::principal;
use super::charges::cursor;
use super::convert::{enum_field, timestamp, vendor_account_kind_to_proto};
use super::cursor_stream::{self, CursorSource, Delivery, Pacing};
use super::replies::{guard, reply};
use super::stream_slots::holding;
use super::{Gateway, customer_of, customers_of, optional_customer_of};
use crate::domain::access::Principal;
use crate::domain::customer::CustomerStatus;
use crate::domain::error::{Error, Result, Violations};
use crate::domain::idempotency::IdempotencyKey;
use crate::domain::paging::PageRequest;
use crate::domain::service_action::{
    ActionFilter, ActionKind, ActionStatus, ClosureBudget, Requester, ServiceAction, ServiceStep,
    parse_reason,
};
use crate::domain::service_control::ControlError;
use crate::domain::text;
use crate::domain::vendor::Vendor;
use crate::proto::v1;
use crate::proto::v1::service_management_service_server::ServiceManagementService;
use crate::store::Store;
use crate::store::service_action_runs::ActionOrder;
use crate::vendors;

/// Records a stream sends per database read.
const STREAM_PAGE: i64 = 256;
/// The longest a stream waits before looking for changes another replica committed.
const STREAM_POLL: Duration = Duration::from_millis(250);

pub struct ServiceManagementApi {
    gw: Gateway,
}

impl ServiceManagementApi {
    pub fn new(gw: Gateway) -> Self {
        Self { gw }
    }

    /// The closure quota of each AWS organization the customer's accounts belong to, from the
    /// organization's member count (AWS: 10 % of the members, at least 10, at most 1,000 in 30
    /// days). The store checks a purge against it before recording anything, so a purge is
    /// refused whole instead of closing some accounts and then hitting AWS's quota.
    async fn closure_budgets(
        &self,
        tenant_id: &str,
        customer_id: &str,
        confirm_external_ref: &str,
    ) -> Result<Vec<(String, ClosureBudget)>> {
        let customer = self.gw.store.customer(tenant_id, customer_id).await?;
        // A purge admission refuses anyway (see `transitions::admit`): no need to ask AWS.
        let admissible = matches!(
            customer.status,
            CustomerStatus::Suspended | CustomerStatus::PurgeScheduled
        ) && customer.external_ref == confirm_external_ref;
        if !admissible {
            return Ok(Vec::new());
        }
        let mut partner_accounts: Vec<&str> = customer
            .vendor_accounts
            .iter()
            .filter(|link| link.kind.vendor() == Vendor::Aws)
            .map(|link| link.partner_account_id.as_str())
            .collect();
        partner_accounts.sort_unstable();
        partner_accounts.dedup();
        let mut budgets = Vec::with_capacity(partner_accounts.len());
        for id in partner_accounts {
            let account = self.gw.store.partner_account_in(tenant_id, id).await?;
            let unavailable = |e: ControlError| {
                Error::Unavailable(
                    "AWS Organizations",
                    format!(
                        "reading the member count of partner account {id}'s organization for \
                         its account closure budget: {e}"
                    ),
                )
            };
            let adapter = vendors::service_control_for(&account, None).map_err(unavailable)?;
            if let Some(members) = adapter.closure_quota_members().await.map_err(unavailable)? {
                budgets.push((id.to_string(), ClosureBudget::for_members(members)));
            }
        }
        Ok(budgets)
    }

    /// Validates and records a suspend, resume or purge.
    async fn request(
        &self,
        principal: &Principal,
        kind: ActionKind,
        customer_id: &str,
        reason: &str,
        request_id: &str,
        confirm_external_ref: &str,
    ) -> Result<Response<v1::ServiceAction>, Status> {
        let customer_id = customer_of(principal, "customer_id", customer_id)?;
        let mut v = Violations::new();
        let reason = v.check(parse_reason("reason", reason));
        let request_id = v.check(text::request_id(request_id, true)).flatten();
        v.into_result()?;
        let (Some(reason), Some(request_id)) = (reason, request_id) else {
            return Err(Error::Internal("validated fields missing".into()).into());
        };
        let operation = match kind {
            ActionKind::Suspend => "SuspendCustomer",
            ActionKind::Resume => "ResumeCustomer",
            ActionKind::Purge => "PurgeCustomer",
            ActionKind::Enroll => "EnrollCustomer",
        };
        let key = IdempotencyKey::new(
            request_id,
            operation,
            &(&customer_id, &reason, confirm_external_ref),
        );
        let closure_budgets = if kind == ActionKind::Purge {
            self.closure_budgets(&principal.tenant_id, &customer_id, confirm_external_ref)
                .await?
        } else {
            Vec::new()
        };
        let order = ActionOrder {
            customer_id: &customer_id,
            kind,
            reason: &reason,
            confirm_external_ref,
            key_id: &principal.key_id,
            closure_budgets: &closure_budgets,
        };
        let answer = self
            .gw
            .store
            .request_service_action(&principal.tenant_id, &order, &guard(key, action_to_proto))
            .await?;
        // Wakes this process's worker and streams at once (SQLite announces its writes itself).
        self.gw.store.committed();
        reply(answer, action_to_proto)
    }
}

fn kind_to_proto(k: ActionKind) -> v1::ServiceActionKind {
    match k {
        ActionKind::Suspend => v1::ServiceActionKind::Suspend,
        ActionKind::Resume => v1::ServiceActionKind::Resume,
        ActionKind::Purge => v1::ServiceActionKind::Purge,
        ActionKind::Enroll => v1::ServiceActionKind::Enroll,
    }
}

fn status_to_proto(s: ActionStatus) -> v1::ServiceActionStatus {
    match s {
        ActionStatus::Pending => v1::ServiceActionStatus::Pending,
        ActionStatus::Running => v1::ServiceActionStatus::Running,
        ActionStatus::Succeeded => v1::ServiceActionStatus::Succeeded,
        ActionStatus::Failed => v1::ServiceActionStatus::Failed,
    }
}

fn step_to_proto(s: &ServiceStep) -> v1::ServiceActionStep {
    v1::ServiceActionStep {
        partner_account_id: s.partner_account_id.clone(),
        account_kind: vendor_account_kind_to_proto(s.target.kind).into(),
        account_id: s.target.account_id.clone(),
        status: status_to_proto(s.status).into(),
        attempts: s.attempts,
        last_error: s.last_error.clone().unwrap_or_default(),
        next_attempt_time: s.not_before.map(timestamp),
        start_time: s.started_at.map(timestamp),
        finish_time: s.finished_at.map(timestamp),
    }
}

pub fn action_to_proto(a: &ServiceAction) -> v1::ServiceAction {
    let (key_id, key_name, credit_event_sequence) = match &a.requester {
        Requester::ApiKey { key_id, key_name } => (key_id.clone(), key_name.clone(), 0),
        Requester::CreditPolicy {
            credit_event_sequence,
        } => (String::new(), String::new(), *credit_event_sequence),
    };
    v1::ServiceAction {
        id: a.id.clone(),
        customer_id: a.customer_id.clone(),
        kind: kind_to_proto(a.kind).into(),
        status: status_to_proto(a.status).into(),
        steps: a.steps.iter().map(step_to_proto).collect(),
        reason: a.reason.clone(),
        requested_by_key_id: key_id,
        requested_by_key_name: key_name,
        automatic: a.is_automatic(),
        credit_event_sequence,
        create_time: Some(timestamp(a.created_at)),
        update_time: Some(timestamp(a.updated_at)),
        finish_time: a.finished_at.map(timestamp),
        change_sequence: a.change_sequence,
    }
}

fn kind_filter(
    field: &str,
    value: i32,
) -> Result<Option<ActionKind>, crate::domain::FieldViolation> {
    Ok(
        enum_field::<v1::ServiceActionKind>(field, value)?.and_then(|k| match k {
            v1::ServiceActionKind::Unspecified => None,
            v1::ServiceActionKind::Suspend => Some(ActionKind::Suspend),
            v1::ServiceActionKind::Resume => Some(ActionKind::Resume),
            v1::ServiceActionKind::Purge => Some(ActionKind::Purge),
            v1::ServiceActionKind::Enroll => Some(ActionKind::Enroll),
        }),
    )
}

fn status_filter(
    field: &str,
    value: i32,
) -> Result<Option<ActionStatus>, crate::domain::FieldViolation> {
    Ok(
        enum_field::<v1::ServiceActionStatus>(field, value)?.and_then(|s| match s {
            v1::ServiceActionStatus::Unspecified => None,
            v1::ServiceActionStatus::Pending => Some(ActionStatus::Pending),
            v1::ServiceActionStatus::Running => Some(ActionStatus::Running),
            v1::ServiceActionStatus::Succeeded => Some(ActionStatus::Succeeded),
            v1::ServiceActionStatus::Failed => Some(ActionStatus::Failed),
        }),
    )
}

/// A tenant's service-action changes, for [`cursor_stream`].
struct ActionChanges {
    store: std::sync::Arc<Store>,
    tenant_id: String,
    customer_ids: Vec<String>,
}

#[async_trait::async_trait]
impl CursorSource for ActionChanges {
    type Item = ServiceAction;

    async fn after(&mut self, after: i64, limit: i64) -> Result<Vec<(i64, ServiceAction)>> {
        let actions = self
            .store
            .service_actions_changed_after(&self.tenant_id, &self.customer_ids, after, limit)
            .await?;
        Ok(actions
            .into_iter()
            .map(|a| (a.change_sequence, a))
            .collect())
    }

    async fn high_water_mark(&mut self) -> Result<i64> {
        self.store
            .service_action_high_water_mark(&self.tenant_id)
            .await
    }
}

#[tonic::async_trait]
impl ServiceManagementService for ServiceManagementApi {
    async fn suspend_customer(
        &self,
        request: Request<v1::SuspendCustomerRequest>,
    ) -> Result<Response<v1::ServiceAction>, Status> {
        let principal = principal(&request)?;
        let r = request.get_ref();
        self.request(
            &principal,
            ActionKind::Suspend,
            &r.customer_id,
            &r.reason,
            &r.request_id,
            "",
        )
        .await
    }

    async fn resume_customer(
        &self,
        request: Request<v1::ResumeCustomerRequest>,
    ) -> Result<Response<v1::ServiceAction>, Status> {
        let principal = principal(&request)?;
        let r = request.get_ref();
        self.request(
            &principal,
            ActionKind::Resume,
            &r.customer_id,
            &r.reason,
            &r.request_id,
            "",
        )
        .await
    }

    async fn purge_customer(
        &self,
        request: Request<v1::PurgeCustomerRequest>,
    ) -> Result<Response<v1::ServiceAction>, Status> {
        let principal = principal(&request)?;
        let r = request.get_ref();
        self.request(
            &principal,
            ActionKind::Purge,
            &r.customer_id,
            &r.reason,
            &r.request_id,
            &r.confirm_external_ref,
        )
        .await
    }

    async fn get_service_action(
        &self,
        request: Request<v1::GetServiceActionRequest>,
    ) -> Result<Response<v1::ServiceAction>, Status> {
        let principal = principal(&request)?;
        let id = super::convert::required_id("id", &request.get_ref().id)?;
        let action = self
            .gw
            .store
            .service_action(&principal.tenant_id, &id)
            .await?;
        // A portal key sees its own customer's actions; another's is as if missing.
        if principal.require_customer(&action.customer_id).is_err() {
            return Err(Error::not_found("service action", id).into());
        }
        Ok(Response::new(action_to_proto(&action)))
    }

    async fn list_service_actions(
        &self,
        request: Request<v1::ListServiceActionsRequest>,
    ) -> Result<Response<v1::ListServiceActionsResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let customer_id = optional_customer_of(&principal, "customer_id", &req.customer_id)?;
        let mut v = Violations::new();
        let status = v.check(status_filter("status", req.status)).flatten();
        let kind = v.check(kind_filter("kind", req.kind)).flatten();
        let filters = format!(
            "customer={}|status={}|kind={}",
            customer_id.as_deref().unwrap_or_default(),
            req.status,
            req.kind
        );
        let page = v.check_all(PageRequest::parse(req.page_size, &req.page_token, &filters));
        v.into_result()?;
        let page = page.ok_or_else(|| Status::internal("validated page missing"))?;
        let filter = ActionFilter {
            customer_id,
            status,
            kind,
        };
        let page = self
            .gw
            .store
            .list_service_actions(&principal.tenant_id, &filter, &page)
            .await?;
        Ok(Response::new(v1::ListServiceActionsResponse {
            service_actions: page.items.iter().map(action_to_proto).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    type StreamServiceActionsStream =
        futures::stream::BoxStream<'static, Result<v1::StreamServiceActionsResponse, Status>>;

    async fn stream_service_actions(
        &self,
        request: Request<v1::StreamServiceActionsRequest>,
    ) -> Result<Response<Self::StreamServiceActionsStream>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let after = v.check(cursor("after_sequence", req.after_sequence));
        let customer_ids = customers_of(&principal, "customer_ids", &req.customer_ids, &mut v)?;
        v.into_result()?;
        let slot = self.gw.stream_slots.take(&principal.tenant_id)?;
        let source = ActionChanges {
            store: self.gw.store.clone(),
            tenant_id: principal.tenant_id.clone(),
            customer_ids,
        };
        let pacing = Pacing {
            page: STREAM_PAGE,
            poll: STREAM_POLL,
            heartbeat: self.gw.ledger.feed().heartbeat_interval(),
        };
        let stream = cursor_stream::stream(
            source,
            after.unwrap_or(0),
            self.gw.store.written().subscribe(),
            pacing,
            |delivery| v1::StreamServiceActionsResponse {
                event: Some(match delivery {
                    Delivery::Item(action) => {
                        v1::stream_service_actions_response::Event::ServiceAction(action_to_proto(
                            &action,
                        ))
                    }
                    Delivery::Heartbeat(heartbeat) => {
                        v1::stream_service_actions_response::Event::Heartbeat(heartbeat)
                    }
                }),
            },
        );
        Ok(Response::new(holding(stream, slot)))
    }
}
