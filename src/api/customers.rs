//! CustomerService.
use tonic::{Request, Response, Status};

use super::auth::principal;
use super::convert::{
    billing_cycle, billing_cycle_to_proto, customer_status_to_proto, optional_customer_status,
    required_id, timestamp, update_mask, vendor, vendor_account_kind, vendor_account_kind_to_proto,
    vendor_to_proto,
};
use super::replies::{guard, reply};
use super::{Gateway, customer_of};
use crate::domain::customer::{
    Customer, CustomerPatch, CustomerStatus, EnrollmentRequest, EnrollmentStatus, NewCustomer,
    NewVendorAccountLink, check_enrollments, parse_credit_limit, parse_external_ref,
};
use crate::domain::error::{Error, FieldViolation, Violations};
use crate::domain::idempotency::IdempotencyKey;
use crate::domain::money::{Currency, format_amount};
use crate::domain::paging::PageRequest;
use crate::domain::period::BillingAnchor;
use crate::domain::service_action::ShownStatus;
use crate::domain::service_action::transitions::shown_status;
use crate::domain::service_control::{
    AwsEnrollment, Contact, EnrollmentDetails, MicrosoftEnrollment, PostalAddress,
    SimulatorEnrollment,
};
use crate::domain::text;
use crate::proto::v1;
use crate::proto::v1::customer_service_server::CustomerService;

pub struct CustomerApi {
    gw: Gateway,
}

impl CustomerApi {
    pub fn new(gw: Gateway) -> Self {
        Self { gw }
    }

    /// Customers as reads show them: SUSPENDING or RESUMING while such an action runs (see
    /// `transitions::shown_status`), else the stored status.
    async fn shown(
        &self,
        tenant_id: &str,
        customers: Vec<Customer>,
    ) -> Result<Vec<v1::Customer>, Error> {
        let ids: Vec<String> = customers.iter().map(|c| c.id.clone()).collect();
        let open = self.gw.store.open_service_actions(tenant_id, &ids).await?;
        Ok(customers
            .into_iter()
            .map(|customer| {
                let shown = shown_status(
                    customer.status,
                    open.get(&customer.id)
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                );
                let mut proto = to_proto(customer);
                match shown {
                    ShownStatus::Suspending => proto.set_status(v1::CustomerStatus::Suspending),
                    ShownStatus::Resuming => proto.set_status(v1::CustomerStatus::Resuming),
                    ShownStatus::Stored(_) => {}
                }
                proto
            })
            .collect())
    }
}

const UPDATABLE: &[&str] = &[
    "display_name",
    "external_ref",
    "billing_cycle",
    "billing_anchor",
    "time_zone",
    "credit_limit",
];

/// A request's anchor, unset meaning calendar periods.
fn billing_anchor(
    field: &str,
    anchor: Option<&v1::BillingAnchor>,
) -> Result<BillingAnchor, Vec<FieldViolation>> {
    match anchor {
        None => Ok(BillingAnchor::CALENDAR),
        Some(a) => BillingAnchor::parse(field, a.month, a.day),
    }
}

fn enrollment_status_to_proto(s: EnrollmentStatus) -> v1::EnrollmentStatus {
    match s {
        EnrollmentStatus::AwaitingLink => v1::EnrollmentStatus::AwaitingLink,
        EnrollmentStatus::Enrolled => v1::EnrollmentStatus::Enrolled,
        EnrollmentStatus::Failed => v1::EnrollmentStatus::EnrollmentFailed,
        EnrollmentStatus::Provisioning => v1::EnrollmentStatus::Provisioning,
    }
}

/// An enrollment's order for a new vendor account, as the domain has it (checked by the caller).
fn new_account(order: &v1::enrollment_request::NewAccount) -> EnrollmentDetails {
    use v1::enrollment_request::NewAccount;
    match order {
        NewAccount::Aws(aws) => EnrollmentDetails::Aws(AwsEnrollment {
            email: aws.email.trim().to_string(),
            account_name: aws.account_name.trim().to_string(),
        }),
        NewAccount::Microsoft(ms) => {
            let contact = ms.contact.clone().unwrap_or_default();
            let address = ms.address.clone().unwrap_or_default();
            EnrollmentDetails::Microsoft(Box::new(MicrosoftEnrollment {
                domain: ms.domain.trim().to_string(),
                company_name: ms.company_name.trim().to_string(),
                contact: Contact {
                    first_name: contact.first_name.trim().to_string(),
                    last_name: contact.last_name.trim().to_string(),
                    email: contact.email.trim().to_string(),
                    phone: contact.phone.trim().to_string(),
                },
                address: PostalAddress {
                    country: address.country.trim().to_string(),
                    region: address.region.trim().to_string(),
                    city: address.city.trim().to_string(),
                    address_line1: address.address_line1.trim().to_string(),
                    address_line2: address.address_line2.trim().to_string(),
                    postal_code: address.postal_code.trim().to_string(),
                },
                culture: ms.culture.trim().to_string(),
                language: ms.language.trim().to_string(),
            }))
        }
        NewAccount::Simulator(sim) => EnrollmentDetails::Simulator(SimulatorEnrollment {
            account_name: sim.account_name.trim().to_string(),
        }),
    }
}

fn new_account_field(i: usize, order: &v1::enrollment_request::NewAccount) -> String {
    use v1::enrollment_request::NewAccount;
    let name = match order {
        NewAccount::Aws(_) => "aws",
        NewAccount::Microsoft(_) => "microsoft",
        NewAccount::Simulator(_) => "simulator",
    };
    format!("enrollments[{i}].{name}")
}

pub fn to_proto(customer: Customer) -> v1::Customer {
    let etag = customer.etag();
    v1::Customer {
        id: customer.id,
        external_ref: customer.external_ref,
        display_name: customer.display_name,
        billing_currency: customer.billing_currency.code().to_string(),
        billing_cycle: billing_cycle_to_proto(customer.billing_cycle).into(),
        billing_anchor: Some(v1::BillingAnchor {
            month: customer.billing_anchor.month(),
            day: customer.billing_anchor.day(),
        }),
        time_zone: customer.time_zone,
        credit_limit: format_amount(customer.credit_limit, customer.billing_currency),
        status: customer_status_to_proto(customer.status).into(),
        enrollments: customer
            .enrollments
            .into_iter()
            .map(|e| v1::Enrollment {
                vendor: vendor_to_proto(e.vendor).into(),
                partner_account_id: e.partner_account_id,
                status: enrollment_status_to_proto(e.status).into(),
                status_detail: e.status_detail,
                portal_url: e.portal_url,
                create_time: Some(timestamp(e.created_at)),
                service_action_id: e.service_action_id.unwrap_or_default(),
            })
            .collect(),
        vendor_accounts: customer
            .vendor_accounts
            .into_iter()
            .map(|l| v1::VendorAccount {
                vendor: vendor_to_proto(l.kind.vendor()).into(),
                kind: vendor_account_kind_to_proto(l.kind).into(),
                account_id: l.account_id,
                partner_account_id: l.partner_account_id,
                link_time: Some(timestamp(l.linked_at)),
            })
            .collect(),
        create_time: Some(timestamp(customer.created_at)),
        update_time: Some(timestamp(customer.updated_at)),
        etag,
    }
}

fn customer_to_proto(customer: &Customer) -> v1::Customer {
    to_proto(customer.clone())
}

pub(crate) fn parse_new_customer(
    req: &v1::CreateCustomerRequest,
) -> Result<(String, NewCustomer), Error> {
    let mut v = Violations::new();
    let request_id = v.check(text::request_id(&req.request_id, true)).flatten();
    let external_ref = v.check(parse_external_ref("external_ref", &req.external_ref));
    let display_name = v.check(text::display_name(
        "display_name",
        &req.display_name,
        text::NAME_MAX,
    ));
    let currency = v.check(Currency::parse("billing_currency", &req.billing_currency));
    let cycle = v.check(billing_cycle("billing_cycle", req.billing_cycle));
    let anchor = v.check_all(billing_anchor(
        "billing_anchor",
        req.billing_anchor.as_ref(),
    ));
    let time_zone = if req.time_zone.is_empty() {
        Some(None)
    } else {
        v.check(text::time_zone("time_zone", &req.time_zone))
            .map(Some)
    };
    let credit_limit =
        currency.and_then(|c| v.check(parse_credit_limit("credit_limit", &req.credit_limit, c)));
    let mut enrollments = Vec::with_capacity(req.enrollments.len());
    for (i, e) in req.enrollments.iter().enumerate() {
        let vendor = v.check(vendor(&format!("enrollments[{i}].vendor"), e.vendor));
        let partner_account_id = if e.partner_account_id.is_empty() {
            Some(None)
        } else {
            let field = format!("enrollments[{i}].partner_account_id");
            v.check_error(required_id(&field, &e.partner_account_id).map(Some))?
        };
        let order = match &e.new_account {
            None => Some(None),
            Some(order) => {
                let details = new_account(order);
                v.check_error(details.validate(&new_account_field(i, order)))?
                    .map(|()| Some(details))
            }
        };
        if let (Some(vendor), Some(partner_account_id), Some(new_account)) =
            (vendor, partner_account_id, order)
        {
            enrollments.push(EnrollmentRequest {
                vendor,
                partner_account_id,
                new_account,
            });
        }
    }
    v.check(check_enrollments(&enrollments));
    v.into_result()?;
    match (
        request_id,
        external_ref,
        display_name,
        currency,
        cycle,
        anchor,
        time_zone,
        credit_limit,
    ) {
        (
            Some(request_id),
            Some(external_ref),
            Some(display_name),
            Some(billing_currency),
            Some(billing_cycle),
            Some(billing_anchor),
            Some(time_zone),
            Some(credit_limit),
        ) => Ok((
            request_id,
            NewCustomer {
                external_ref,
                display_name,
                billing_currency,
                billing_cycle,
                billing_anchor,
                time_zone,
                credit_limit,
                enrollments,
            },
        )),
        _ => Err(Error::Internal("validated fields missing".into())),
    }
}

/// A ListCustomers request's filters (status, external_ref) and page.
pub(crate) fn parse_list_request(
    req: &v1::ListCustomersRequest,
) -> Result<(Option<CustomerStatus>, Option<String>, PageRequest), Error> {
    let mut v = Violations::new();
    let status = v
        .check(optional_customer_status("status", req.status))
        .flatten();
    let external_ref = if req.external_ref.is_empty() {
        None
    } else {
        v.check(parse_external_ref("external_ref", &req.external_ref))
    };
    let filters = format!("status={}|external_ref={}", req.status, req.external_ref);
    let page = v.check_all(PageRequest::parse(req.page_size, &req.page_token, &filters));
    v.into_result()?;
    let page = page.ok_or_else(|| Error::Internal("validated page missing".into()))?;
    Ok((status, external_ref, page))
}

#[tonic::async_trait]
impl CustomerService for CustomerApi {
    async fn create_customer(
        &self,
        request: Request<v1::CreateCustomerRequest>,
    ) -> Result<Response<v1::Customer>, Status> {
        let principal = principal(&request)?;
        let (request_id, new) = parse_new_customer(request.get_ref())?;
        let tenant = self.gw.store.tenant(&principal.tenant_id).await?;
        let key = IdempotencyKey::new(request_id, "CreateCustomer", &new);
        let answer = self
            .gw
            .store
            .create_customer(
                &principal.tenant_id,
                &tenant.time_zone,
                &new,
                Some(&principal.key_id),
                &guard(key, customer_to_proto),
            )
            .await?;
        if new.enrollments.iter().any(|e| e.new_account.is_some()) {
            // Wakes this process's worker for the ENROLL action at once.
            self.gw.store.committed();
        }
        reply(answer, customer_to_proto)
    }

    async fn get_customer(
        &self,
        request: Request<v1::GetCustomerRequest>,
    ) -> Result<Response<v1::Customer>, Status> {
        let principal = principal(&request)?;
        let id = customer_of(&principal, "id", &request.get_ref().id)?;
        let customer = self.gw.store.customer(&principal.tenant_id, &id).await?;
        let mut shown = self.shown(&principal.tenant_id, vec![customer]).await?;
        shown
            .pop()
            .map(Response::new)
            .ok_or_else(|| Status::internal("customer missing"))
    }

    async fn list_customers(
        &self,
        request: Request<v1::ListCustomersRequest>,
    ) -> Result<Response<v1::ListCustomersResponse>, Status> {
        let principal = principal(&request)?;
        let (status, external_ref, page) = parse_list_request(&request.into_inner())?;
        let page = self
            .gw
            .store
            .list_customers(
                &principal.tenant_id,
                principal.customer_scope(),
                status,
                external_ref.as_deref(),
                &page,
            )
            .await?;
        Ok(Response::new(v1::ListCustomersResponse {
            customers: self.shown(&principal.tenant_id, page.items).await?,
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn update_customer(
        &self,
        request: Request<v1::UpdateCustomerRequest>,
    ) -> Result<Response<v1::Customer>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let customer = req
            .customer
            .ok_or_else(|| Error::invalid("customer", "is required"))?;
        let id = customer_of(&principal, "customer.id", &customer.id)?;
        let paths = update_mask(req.update_mask.as_ref(), UPDATABLE)?;
        let mut v = Violations::new();
        let request_id = v.check(text::request_id(&req.request_id, false)).flatten();
        let mut patch = CustomerPatch::default();
        for path in &paths {
            let field = format!("customer.{path}");
            match path.as_str() {
                "display_name" => {
                    patch.display_name = v.check(text::display_name(
                        &field,
                        &customer.display_name,
                        text::NAME_MAX,
                    ))
                }
                "external_ref" => {
                    patch.external_ref = v.check(parse_external_ref(&field, &customer.external_ref))
                }
                "billing_cycle" => {
                    patch.billing_cycle = v.check(billing_cycle(&field, customer.billing_cycle))
                }
                "billing_anchor" => {
                    patch.billing_anchor =
                        v.check_all(billing_anchor(&field, customer.billing_anchor.as_ref()))
                }
                "time_zone" => {
                    patch.time_zone = v.check(text::time_zone(&field, &customer.time_zone))
                }
                // Checked against the stored currency when applied.
                "credit_limit" => patch.credit_limit = Some(customer.credit_limit.clone()),
                _ => {}
            }
        }
        v.into_result()?;
        let guarded = request_id.map(|r| {
            let key = IdempotencyKey::new(r, "UpdateCustomer", &(&id, &customer.etag, &patch));
            guard(key, customer_to_proto)
        });
        let answer = self
            .gw
            .ledger
            .update_customer(
                &principal.tenant_id,
                &id,
                &customer.etag,
                &patch,
                guarded.as_ref(),
            )
            .await?;
        reply(answer, customer_to_proto)
    }

    async fn link_vendor_account(
        &self,
        request: Request<v1::LinkVendorAccountRequest>,
    ) -> Result<Response<v1::Customer>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let customer_id = customer_of(&principal, "customer_id", &req.customer_id)?;
        let account = req
            .vendor_account
            .ok_or_else(|| Error::invalid("vendor_account", "is required"))?;
        let mut v = Violations::new();
        let request_id = v.check(text::request_id(&req.request_id, false)).flatten();
        let vendor = v.check(vendor("vendor_account.vendor", account.vendor));
        let kind = v.check(vendor_account_kind("vendor_account.kind", account.kind));
        v.into_result()?;
        let (Some(vendor), Some(kind)) = (vendor, kind) else {
            return Err(Status::internal("validated fields missing"));
        };
        let link = NewVendorAccountLink::parse(
            "vendor_account",
            vendor,
            kind,
            &account.account_id,
            &account.partner_account_id,
        )?;
        let guarded = request_id.map(|r| {
            let key = IdempotencyKey::new(r, "LinkVendorAccount", &(&customer_id, &link));
            guard(key, customer_to_proto)
        });
        let answer = self
            .gw
            .ledger
            .link_vendor_account(&principal.tenant_id, &customer_id, &link, guarded.as_ref())
            .await?;
        reply(answer, customer_to_proto)
    }

    async fn unlink_vendor_account(
        &self,
        request: Request<v1::UnlinkVendorAccountRequest>,
    ) -> Result<Response<v1::Customer>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let customer_id = customer_of(&principal, "customer_id", &req.customer_id)?;
        let mut v = Violations::new();
        let request_id = v.check(text::request_id(&req.request_id, false)).flatten();
        let vendor = v.check(vendor("vendor", req.vendor));
        if req.account_id.is_empty() {
            v.add("account_id", "is required");
        }
        v.into_result()?;
        let vendor = vendor.ok_or_else(|| Status::internal("validated fields missing"))?;
        let guarded = request_id.map(|r| {
            let key = IdempotencyKey::new(
                r,
                "UnlinkVendorAccount",
                &(&customer_id, vendor, &req.account_id),
            );
            guard(key, customer_to_proto)
        });
        let answer = self
            .gw
            .store
            .unlink_vendor_account(
                &principal.tenant_id,
                &customer_id,
                vendor,
                &req.account_id,
                guarded.as_ref(),
            )
            .await?;
        reply(answer, customer_to_proto)
    }
}
