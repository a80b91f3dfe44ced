//! PartnerAccountService.
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::principal;
use super::convert::{
    optional_vendor, required_id, timestamp, update_mask, vendor, vendor_to_proto,
};
use crate::domain::access::{Action, Area};
use crate::domain::error::{Error, FieldViolation, Violations};
use crate::domain::idempotency::IdempotencyKey;
use crate::domain::paging::PageRequest;
use crate::domain::partner_account::{
    DEFAULT_POLL_INTERVAL_SECS, PartnerAccount, PartnerAccountPatch, PartnerAccountSpec,
    check_poll_interval, parse_credentials_ref, parse_discount_rate, parse_display_name,
    parse_endpoint_url,
};
use crate::domain::text;
use crate::proto::v1;
use crate::proto::v1::partner_account_service_server::PartnerAccountService;
use crate::store::Store;
use crate::store::poll_states::PollStatus;

pub struct PartnerAccountApi {
    store: Arc<Store>,
}

impl PartnerAccountApi {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }
}

const UPDATABLE: &[&str] = &[
    "display_name",
    "vendor_account_id",
    "partner_discount_rate",
    "credentials_ref",
    "poll_interval",
    "enabled",
    "endpoint_url",
];

fn to_proto(account: PartnerAccount, status: PollStatus) -> v1::PartnerAccount {
    let spec = account.spec;
    v1::PartnerAccount {
        id: account.id,
        vendor: vendor_to_proto(spec.vendor).into(),
        display_name: spec.display_name,
        vendor_account_id: spec.vendor_account_id,
        partner_discount_rate: spec.partner_discount_rate.to_string(),
        credentials_ref: spec.credentials_ref,
        poll_interval: Some(prost_types::Duration {
            seconds: spec.poll_interval_secs,
            nanos: 0,
        }),
        enabled: spec.enabled,
        endpoint_url: spec.endpoint_url,
        create_time: Some(timestamp(account.created_at)),
        update_time: Some(timestamp(account.updated_at)),
        etag: PartnerAccountSpec::etag(account.version),
        poll_status: Some(v1::PollStatus {
            last_poll_time: status.last_poll_at.map(timestamp),
            last_success_time: status.last_success_at.map(timestamp),
            last_error: status.last_error.unwrap_or_default(),
            requests_spent: status.requests_spent,
        }),
    }
}

impl PartnerAccountApi {
    async fn with_status(&self, account: PartnerAccount) -> Result<v1::PartnerAccount, Status> {
        let status = self.store.poll_status(&account.id).await?;
        Ok(to_proto(account, status))
    }
}

fn poll_interval(field: &str, d: Option<&prost_types::Duration>) -> Result<i64, FieldViolation> {
    match d {
        None => Ok(DEFAULT_POLL_INTERVAL_SECS),
        Some(d) if d.nanos != 0 => Err(FieldViolation::new(field, "must be whole seconds")),
        Some(d) => check_poll_interval(field, d.seconds),
    }
}

#[tonic::async_trait]
impl PartnerAccountService for PartnerAccountApi {
    async fn create_partner_account(
        &self,
        request: Request<v1::CreatePartnerAccountRequest>,
    ) -> Result<Response<v1::PartnerAccount>, Status> {
        let principal = principal(&request)?;
        principal.require(Area::PartnerAccounts, Action::Write)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let request_id = v.check(text::request_id(&req.request_id, true)).flatten();
        let Some(account) = req.partner_account else {
            return Err(Error::invalid("partner_account", "is required").into());
        };
        let spec = (
            v.check(vendor("partner_account.vendor", account.vendor)),
            v.check(parse_display_name(
                "partner_account.display_name",
                &account.display_name,
            )),
            v.check(parse_discount_rate(
                "partner_account.partner_discount_rate",
                &account.partner_discount_rate,
            )),
            v.check(parse_credentials_ref(
                "partner_account.credentials_ref",
                &account.credentials_ref,
            )),
            v.check(poll_interval(
                "partner_account.poll_interval",
                account.poll_interval.as_ref(),
            )),
            v.check(parse_endpoint_url(
                "partner_account.endpoint_url",
                &account.endpoint_url,
            )),
        );
        v.into_result()?;
        let (
            (
                Some(vendor),
                Some(display_name),
                Some(rate),
                Some(credentials_ref),
                Some(poll),
                Some(endpoint_url),
            ),
            Some(request_id),
        ) = (spec, request_id)
        else {
            return Err(Status::internal("validated fields missing"));
        };
        let spec = PartnerAccountSpec {
            vendor,
            display_name,
            vendor_account_id: account.vendor_account_id,
            partner_discount_rate: rate,
            credentials_ref,
            poll_interval_secs: poll,
            enabled: account.enabled,
            endpoint_url,
        };
        spec.validate("partner_account")?;
        let idempotency = IdempotencyKey::new(request_id, "CreatePartnerAccount", &spec);
        let created = self
            .store
            .create_partner_account(&principal, &spec, &idempotency)
            .await?;
        Ok(Response::new(self.with_status(created).await?))
    }

    async fn get_partner_account(
        &self,
        request: Request<v1::GetPartnerAccountRequest>,
    ) -> Result<Response<v1::PartnerAccount>, Status> {
        let principal = principal(&request)?;
        principal.require(Area::PartnerAccounts, Action::Read)?;
        let id = required_id("id", &request.get_ref().id)?;
        let account = self.store.partner_account(&principal, &id).await?;
        Ok(Response::new(self.with_status(account).await?))
    }

    async fn list_partner_accounts(
        &self,
        request: Request<v1::ListPartnerAccountsRequest>,
    ) -> Result<Response<v1::ListPartnerAccountsResponse>, Status> {
        let principal = principal(&request)?;
        principal.require(Area::PartnerAccounts, Action::Read)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let vendor_filter = v.check(optional_vendor("vendor", req.vendor)).flatten();
        let filters = format!("vendor={}", req.vendor);
        let page = v.check_all(PageRequest::parse(req.page_size, &req.page_token, &filters));
        v.into_result()?;
        let page = page.ok_or_else(|| Status::internal("validated page missing"))?;
        let page = self
            .store
            .list_partner_accounts(&principal, vendor_filter, &page)
            .await?;
        let mut partner_accounts = Vec::with_capacity(page.items.len());
        for account in page.items {
            partner_accounts.push(self.with_status(account).await?);
        }
        Ok(Response::new(v1::ListPartnerAccountsResponse {
            partner_accounts,
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn update_partner_account(
        &self,
        request: Request<v1::UpdatePartnerAccountRequest>,
    ) -> Result<Response<v1::PartnerAccount>, Status> {
        let principal = principal(&request)?;
        principal.require(Area::PartnerAccounts, Action::Write)?;
        let req = request.into_inner();
        let account = req
            .partner_account
            .ok_or_else(|| Error::invalid("partner_account", "is required"))?;
        let id = required_id("partner_account.id", &account.id)?;
        let paths = update_mask(req.update_mask.as_ref(), UPDATABLE)?;
        let mut v = Violations::new();
        let request_id = v.check(text::request_id(&req.request_id, false)).flatten();
        let mut patch = PartnerAccountPatch::default();
        for path in &paths {
            let field = format!("partner_account.{path}");
            match path.as_str() {
                "display_name" => {
                    patch.display_name = v.check(parse_display_name(&field, &account.display_name))
                }
                "vendor_account_id" => {
                    patch.vendor_account_id = Some(account.vendor_account_id.clone())
                }
                "partner_discount_rate" => {
                    patch.partner_discount_rate =
                        v.check(parse_discount_rate(&field, &account.partner_discount_rate))
                }
                "credentials_ref" => {
                    patch.credentials_ref =
                        v.check(parse_credentials_ref(&field, &account.credentials_ref))
                }
                "poll_interval" => {
                    patch.poll_interval_secs = match &account.poll_interval {
                        None => {
                            v.add(field, "is required when named in update_mask");
                            None
                        }
                        some => v.check(poll_interval(&field, some.as_ref())),
                    }
                }
                "enabled" => patch.enabled = Some(account.enabled),
                "endpoint_url" => {
                    patch.endpoint_url = v.check(parse_endpoint_url(&field, &account.endpoint_url))
                }
                _ => {}
            }
        }
        v.into_result()?;
        let idempotency = request_id
            .map(|r| IdempotencyKey::new(r, "UpdatePartnerAccount", &(&id, &account.etag, &patch)));
        let updated = self
            .store
            .update_partner_account(&principal, &id, &account.etag, &patch, idempotency.as_ref())
            .await?;
        Ok(Response::new(self.with_status(updated).await?))
    }
}
