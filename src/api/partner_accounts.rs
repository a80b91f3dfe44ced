//! PartnerAccountService.
use tonic::{Request, Response, Status};

use super::Gateway;
use super::auth::principal;
use super::convert::{
    enum_field, optional_vendor, required_id, timestamp, update_mask, vendor, vendor_to_proto,
};
use super::replies::{guard, reply};
use crate::domain::aws_settings::{
    AwsSettings, AwsSettingsPatch, CostMetric, DEFAULT_REQUEST_BUDGET, Granularity, MeterMode,
    check_request_budget,
};
use crate::domain::error::{Error, FieldViolation, Violations};
use crate::domain::idempotency::IdempotencyKey;
use crate::domain::microsoft_settings::{
    MicrosoftSettings, MicrosoftSettingsPatch, parse_authority_host, parse_token_scope,
};
use crate::domain::money::Currency;
use crate::domain::paging::PageRequest;
use crate::domain::partner_account::{
    DEFAULT_POLL_INTERVAL_SECS, PartnerAccount, PartnerAccountPatch, PartnerAccountSpec,
    PollStatus, check_poll_interval, parse_credentials_ref, parse_discount_rate,
    parse_display_name, parse_endpoint_url,
};
use crate::domain::text;
use crate::domain::vendor::Vendor;
use crate::proto::v1;
use crate::proto::v1::partner_account_service_server::PartnerAccountService;

pub struct PartnerAccountApi {
    gw: Gateway,
}

impl PartnerAccountApi {
    pub fn new(gw: Gateway) -> Self {
        Self { gw }
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
    "aws_settings",
    "aws_settings.granularity",
    "aws_settings.cost_metric",
    "aws_settings.meter_mode",
    "aws_settings.request_budget",
    "microsoft_settings",
    "microsoft_settings.billing_currency",
    "microsoft_settings.authority_host",
    "microsoft_settings.token_scope",
];

fn aws_to_proto(aws: AwsSettings) -> v1::AwsSettings {
    v1::AwsSettings {
        granularity: match aws.granularity {
            Granularity::Daily => v1::AwsGranularity::Daily,
            Granularity::Hourly => v1::AwsGranularity::Hourly,
        }
        .into(),
        cost_metric: match aws.cost_metric {
            CostMetric::UnblendedCost => v1::AwsCostMetric::UnblendedCost,
            CostMetric::AmortizedCost => v1::AwsCostMetric::AmortizedCost,
            CostMetric::NetUnblendedCost => v1::AwsCostMetric::NetUnblendedCost,
        }
        .into(),
        meter_mode: match aws.meter_mode {
            MeterMode::Service => v1::AwsMeterMode::MeterByService,
            MeterMode::UsageType => v1::AwsMeterMode::MeterByUsageType,
        }
        .into(),
        request_budget: aws.request_budget,
    }
}

/// An AWS settings enum of a request; a number the proto does not define names the choices.
fn aws_enum<E: TryFrom<i32>>(
    field: &str,
    value: i32,
    choices: &str,
) -> Result<Option<E>, FieldViolation> {
    enum_field::<E>(field, value)
        .map_err(|_| FieldViolation::new(field, format!("{value} is not one of {choices}")))
}

/// Each AWS setting of a request: None when unspecified.
fn aws_granularity(field: &str, value: i32) -> Result<Option<Granularity>, FieldViolation> {
    Ok(
        aws_enum::<v1::AwsGranularity>(field, value, "DAILY, HOURLY")?.and_then(|g| match g {
            v1::AwsGranularity::Unspecified => None,
            v1::AwsGranularity::Daily => Some(Granularity::Daily),
            v1::AwsGranularity::Hourly => Some(Granularity::Hourly),
        }),
    )
}

fn aws_cost_metric(field: &str, value: i32) -> Result<Option<CostMetric>, FieldViolation> {
    Ok(aws_enum::<v1::AwsCostMetric>(
        field,
        value,
        "UNBLENDED_COST, AMORTIZED_COST, NET_UNBLENDED_COST",
    )?
    .and_then(|m| match m {
        v1::AwsCostMetric::Unspecified => None,
        v1::AwsCostMetric::UnblendedCost => Some(CostMetric::UnblendedCost),
        v1::AwsCostMetric::AmortizedCost => Some(CostMetric::AmortizedCost),
        v1::AwsCostMetric::NetUnblendedCost => Some(CostMetric::NetUnblendedCost),
    }))
}

fn aws_meter_mode(field: &str, value: i32) -> Result<Option<MeterMode>, FieldViolation> {
    Ok(
        aws_enum::<v1::AwsMeterMode>(field, value, "METER_BY_SERVICE, METER_BY_USAGE_TYPE")?
            .and_then(|m| match m {
                v1::AwsMeterMode::Unspecified => None,
                v1::AwsMeterMode::MeterByService => Some(MeterMode::Service),
                v1::AwsMeterMode::MeterByUsageType => Some(MeterMode::UsageType),
            }),
    )
}

fn aws_request_budget(field: &str, value: u32) -> Result<Option<u32>, FieldViolation> {
    match value {
        0 => Ok(None),
        budget => check_request_budget(field, budget).map(Some),
    }
}

/// The settings a request's `AwsSettings` sets (unspecified fields left out).
fn aws_fields(prefix: &str, aws: &v1::AwsSettings, v: &mut Violations) -> AwsSettingsPatch {
    AwsSettingsPatch {
        granularity: v
            .check(aws_granularity(
                &format!("{prefix}.granularity"),
                aws.granularity,
            ))
            .flatten(),
        cost_metric: v
            .check(aws_cost_metric(
                &format!("{prefix}.cost_metric"),
                aws.cost_metric,
            ))
            .flatten(),
        meter_mode: v
            .check(aws_meter_mode(
                &format!("{prefix}.meter_mode"),
                aws.meter_mode,
            ))
            .flatten(),
        request_budget: v
            .check(aws_request_budget(
                &format!("{prefix}.request_budget"),
                aws.request_budget,
            ))
            .flatten(),
    }
}

fn microsoft_to_proto(settings: MicrosoftSettings) -> v1::MicrosoftSettings {
    v1::MicrosoftSettings {
        billing_currency: settings.billing_currency.code().to_string(),
        authority_host: settings.authority_host,
        token_scope: settings.token_scope,
    }
}

/// The Microsoft settings a request's `MicrosoftSettings` sets: each non-empty field, and
/// every field `named` (whose empty value returns it to its default; for the billing currency,
/// `default_currency`).
fn microsoft_fields(
    prefix: &str,
    settings: &v1::MicrosoftSettings,
    named: impl Fn(&str) -> bool,
    default_currency: Currency,
    v: &mut Violations,
) -> MicrosoftSettingsPatch {
    let field = |name: &str| format!("{prefix}.{name}");
    let billing_currency = match settings.billing_currency.as_str() {
        "" => named("billing_currency").then_some(default_currency),
        code => v.check(Currency::parse(&field("billing_currency"), code)),
    };
    let text =
        |name: &str, value: &str, parse: fn(&str, &str) -> Result<String, FieldViolation>| {
            (named(name) || !value.is_empty()).then(|| parse(&field(name), value))
        };
    MicrosoftSettingsPatch {
        billing_currency,
        authority_host: text(
            "authority_host",
            &settings.authority_host,
            parse_authority_host,
        )
        .and_then(|r| v.check(r)),
        token_scope: text("token_scope", &settings.token_scope, parse_token_scope)
            .and_then(|r| v.check(r)),
    }
}

/// A create's or update's answer: the account and its poll status as the write left them.
fn answered((account, status): &(PartnerAccount, PollStatus)) -> v1::PartnerAccount {
    to_proto(account.clone(), status.clone())
}

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
            next_poll_time: status.next_poll_at.map(timestamp),
            consecutive_failures: i32::try_from(status.consecutive_failures).unwrap_or(i32::MAX),
        }),
        aws_settings: spec.aws.map(aws_to_proto),
        microsoft_settings: spec.microsoft.map(microsoft_to_proto),
    }
}

impl PartnerAccountApi {
    async fn with_status(&self, account: PartnerAccount) -> Result<v1::PartnerAccount, Status> {
        let status = self.gw.store.poll_status(&account.id).await?;
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
        let aws = account
            .aws_settings
            .as_ref()
            .map(|aws| aws_fields("partner_account.aws_settings", aws, &mut v));
        let tenant_currency = self.gw.store.tenant(&principal.tenant_id).await?.currency;
        // Unless chosen, a Microsoft account is billed in the tenant's currency.
        let microsoft = account.microsoft_settings.as_ref().map(|m| {
            microsoft_fields(
                "partner_account.microsoft_settings",
                m,
                |_| false,
                tenant_currency,
                &mut v,
            )
        });
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
            aws: match aws {
                Some(patch) => Some(patch.apply(AwsSettings::default())),
                // AWS accounts always have settings: the defaults unless chosen.
                None => (vendor == Vendor::Aws).then(AwsSettings::default),
            },
            microsoft: match microsoft {
                Some(patch) => Some(patch.apply(MicrosoftSettings::billed_in(tenant_currency))),
                None => (vendor == Vendor::Microsoft)
                    .then(|| MicrosoftSettings::billed_in(tenant_currency)),
            },
        };
        spec.validate("partner_account")?;
        let key = IdempotencyKey::new(request_id, "CreatePartnerAccount", &spec);
        let answer = self
            .gw
            .store
            .create_partner_account(&principal.tenant_id, &spec, &guard(key, answered))
            .await?;
        reply(answer, answered)
    }

    async fn get_partner_account(
        &self,
        request: Request<v1::GetPartnerAccountRequest>,
    ) -> Result<Response<v1::PartnerAccount>, Status> {
        let principal = principal(&request)?;
        let id = required_id("id", &request.get_ref().id)?;
        let account = self
            .gw
            .store
            .partner_account(&principal.tenant_id, &id)
            .await?;
        Ok(Response::new(self.with_status(account).await?))
    }

    async fn list_partner_accounts(
        &self,
        request: Request<v1::ListPartnerAccountsRequest>,
    ) -> Result<Response<v1::ListPartnerAccountsResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let vendor_filter = v.check(optional_vendor("vendor", req.vendor)).flatten();
        let filters = format!("vendor={}", req.vendor);
        let page = v.check_all(PageRequest::parse(req.page_size, &req.page_token, &filters));
        v.into_result()?;
        let page = page.ok_or_else(|| Status::internal("validated page missing"))?;
        let page = self
            .gw
            .store
            .list_partner_accounts(&principal.tenant_id, vendor_filter, &page)
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
        let req = request.into_inner();
        let account = req
            .partner_account
            .ok_or_else(|| Error::invalid("partner_account", "is required"))?;
        let id = required_id("partner_account.id", &account.id)?;
        let paths = update_mask(req.update_mask.as_ref(), UPDATABLE)?;
        let mut v = Violations::new();
        let request_id = v.check(text::request_id(&req.request_id, false)).flatten();
        let mut patch = PartnerAccountPatch::default();
        let aws = account.aws_settings.unwrap_or_default();
        let microsoft_paths: Vec<&str> = paths
            .iter()
            .filter_map(|p| match p.as_str() {
                "microsoft_settings" => Some("*"),
                other => other.strip_prefix("microsoft_settings."),
            })
            .collect();
        if !microsoft_paths.is_empty() {
            let tenant_currency = self.gw.store.tenant(&principal.tenant_id).await?.currency;
            let whole = microsoft_paths.contains(&"*");
            let named = |name: &str| whole || microsoft_paths.contains(&name);
            let settings = account.microsoft_settings.clone().unwrap_or_default();
            let mut chosen = microsoft_fields(
                "partner_account.microsoft_settings",
                &settings,
                named,
                tenant_currency,
                &mut v,
            );
            // Only what the mask names changes.
            if !named("billing_currency") {
                chosen.billing_currency = None;
            }
            if !named("authority_host") {
                chosen.authority_host = None;
            }
            if !named("token_scope") {
                chosen.token_scope = None;
            }
            patch.microsoft = chosen;
        }
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
                // Unspecified values named by the mask return to their defaults.
                "aws_settings" => {
                    patch.aws = aws_fields(&field, &aws, &mut v)
                        .apply(AwsSettings::default())
                        .into()
                }
                "aws_settings.granularity" => {
                    patch.aws.granularity = v
                        .check(aws_granularity(&field, aws.granularity))
                        .map(Option::unwrap_or_default)
                }
                "aws_settings.cost_metric" => {
                    patch.aws.cost_metric = v
                        .check(aws_cost_metric(&field, aws.cost_metric))
                        .map(Option::unwrap_or_default)
                }
                "aws_settings.meter_mode" => {
                    patch.aws.meter_mode = v
                        .check(aws_meter_mode(&field, aws.meter_mode))
                        .map(Option::unwrap_or_default)
                }
                "aws_settings.request_budget" => {
                    patch.aws.request_budget = v
                        .check(aws_request_budget(&field, aws.request_budget))
                        .map(|b| b.unwrap_or(DEFAULT_REQUEST_BUDGET))
                }
                _ => {}
            }
        }
        v.into_result()?;
        let guarded = request_id.map(|r| {
            let key = IdempotencyKey::new(r, "UpdatePartnerAccount", &(&id, &account.etag, &patch));
            guard(key, answered)
        });
        let answer = self
            .gw
            .store
            .update_partner_account(
                &principal.tenant_id,
                &id,
                &account.etag,
                &patch,
                guarded.as_ref(),
            )
            .await?;
        reply(answer, answered)
    }
}
