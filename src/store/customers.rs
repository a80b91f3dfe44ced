//! Customers with their enrollments and linked vendor accounts.
use std::collections::HashMap;

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::errors::is_unique_violation;
use super::idempotency::write_once;
use super::schema::{customers, enrollments, vendor_accounts};
use super::sql_types::{DbDecimal, DbTime};
use super::{Store, dispatch, for_each_backend};
use crate::domain::customer::{
    Customer, CustomerChange, CustomerPatch, CustomerStatus, Enrollment, EnrollmentStatus,
    NewCustomer, NewVendorAccountLink, VendorAccountLink, choose_partner_account,
};
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::{Answer, Idempotent};
use crate::domain::ids;
use crate::domain::invoice::{BilledCustomer, BillingProfile};
use crate::domain::money::Currency;
use crate::domain::paging::{Page, PageRequest};
use crate::domain::period::BillingAnchor;
use crate::domain::service_action::{
    ActionKind, NewServiceAction, Requester, SERVICE_ACTION_ID_PREFIX, ServiceStep,
};
use crate::domain::service_control::EnrollmentOrder;
use crate::domain::vendor::{Vendor, VendorAccountKind, portal_url};

#[derive(Queryable, Selectable)]
#[diesel(table_name = customers)]
struct CustomerRow {
    id: String,
    tenant_id: String,
    external_ref: String,
    display_name: String,
    billing_currency: String,
    billing_cycle: String,
    time_zone: String,
    credit_limit: DbDecimal,
    status: String,
    version: i64,
    created_at: DbTime,
    updated_at: DbTime,
    billing_anchor_month: i32,
    billing_anchor_day: i32,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = enrollments)]
struct EnrollmentRow {
    customer_id: String,
    partner_account_id: String,
    vendor: String,
    status: String,
    status_detail: String,
    portal_url: String,
    created_at: DbTime,
    service_action_id: Option<String>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = vendor_accounts)]
struct VendorAccountRow {
    customer_id: String,
    kind: String,
    account_id: String,
    partner_account_id: String,
    linked_at: DbTime,
}

fn corrupt(what: &str, id: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("stored {what} {id}: {e}"))
}

/// Assembles customers from their rows; enrollments and links may belong to any of them.
fn profile_of(customer: Customer) -> BillingProfile {
    BillingProfile {
        customer: BilledCustomer {
            id: customer.id,
            external_ref: customer.external_ref,
            display_name: customer.display_name,
        },
        currency: customer.billing_currency,
        cycle: customer.billing_cycle,
        anchor: customer.billing_anchor,
        time_zone: customer.time_zone,
        created_at: customer.created_at,
    }
}

fn assemble(
    rows: Vec<CustomerRow>,
    enrollment_rows: Vec<EnrollmentRow>,
    link_rows: Vec<VendorAccountRow>,
) -> Result<Vec<Customer>> {
    let mut enrollments: HashMap<String, Vec<Enrollment>> = HashMap::new();
    for row in enrollment_rows {
        enrollments
            .entry(row.customer_id.clone())
            .or_default()
            .push(Enrollment {
                vendor: row
                    .vendor
                    .parse::<Vendor>()
                    .map_err(|e| corrupt("enrollment", &row.customer_id, e))?,
                status: row
                    .status
                    .parse::<EnrollmentStatus>()
                    .map_err(|e| corrupt("enrollment", &row.customer_id, e))?,
                partner_account_id: row.partner_account_id,
                status_detail: row.status_detail,
                portal_url: row.portal_url,
                created_at: row.created_at.0,
                service_action_id: row.service_action_id,
            });
    }
    let mut links: HashMap<String, Vec<VendorAccountLink>> = HashMap::new();
    for row in link_rows {
        links
            .entry(row.customer_id.clone())
            .or_default()
            .push(VendorAccountLink {
                kind: row
                    .kind
                    .parse::<VendorAccountKind>()
                    .map_err(|e| corrupt("vendor account", &row.account_id, e))?,
                account_id: row.account_id,
                partner_account_id: row.partner_account_id,
                linked_at: row.linked_at.0,
            });
    }
    rows.into_iter()
        .map(|row| {
            Ok(Customer {
                billing_currency: Currency::parse("billing_currency", &row.billing_currency)
                    .map_err(|e| corrupt("customer", &row.id, e))?,
                billing_cycle: row
                    .billing_cycle
                    .parse()
                    .map_err(|e| corrupt("customer", &row.id, e))?,
                billing_anchor: BillingAnchor::from_stored(
                    row.billing_anchor_month,
                    row.billing_anchor_day,
                )
                .map_err(|e| corrupt("customer", &row.id, e))?,
                status: row
                    .status
                    .parse()
                    .map_err(|e| corrupt("customer", &row.id, e))?,
                enrollments: enrollments.remove(&row.id).unwrap_or_default(),
                vendor_accounts: links.remove(&row.id).unwrap_or_default(),
                id: row.id,
                tenant_id: row.tenant_id,
                external_ref: row.external_ref,
                display_name: row.display_name,
                time_zone: row.time_zone,
                credit_limit: row.credit_limit.0,
                version: row.version,
                created_at: row.created_at.0,
                updated_at: row.updated_at.0,
            })
        })
        .collect()
}

fn external_ref_taken(field: &str, external_ref: &str) -> Error {
    Error::AlreadyExists {
        kind: "customer",
        field: field.to_string(),
        value: external_ref.to_string(),
    }
}

/// Simulator enrollments get a simulator account at once, as a real vendor's account factory
/// would hand one back; AWS and Microsoft accounts are linked by the MSP.
fn simulator_account_id(customer_id: &str) -> String {
    format!("sim-{}", customer_id.trim_start_matches("cus_"))
}

/// The kind of account an enrollment with `vendor` creates: an AWS member account, a Microsoft
/// customer tenant, a simulator account.
fn new_account_kind(vendor: Vendor) -> VendorAccountKind {
    match vendor {
        Vendor::Aws => VendorAccountKind::AwsAccount,
        Vendor::Microsoft => VendorAccountKind::MicrosoftTenant,
        // No partner account has the MSP's vendor, so nothing enrolls with it; a simulator
        // account is the harmless answer.
        Vendor::Simulator | Vendor::Msp => VendorAccountKind::SimulatorAccount,
    }
}

/// The vendor of an enroll action whose steps all go to one vendor.
fn single_vendor(steps: &[ServiceStep]) -> Option<Vendor> {
    let first = steps.first()?.target.vendor();
    steps
        .iter()
        .all(|s| s.target.vendor() == first)
        .then_some(first)
}

for_each_backend! {
    /// Loads customers by id, with their enrollments and links, in id order.
    async fn load_many(conn: &mut Conn, tenant_id: &str, rows: Vec<CustomerRow>) -> Result<Vec<Customer>> {
        let _ = tenant_id;
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let enrollment_rows = enrollments::table
            .filter(enrollments::customer_id.eq_any(&ids))
            .select(EnrollmentRow::as_select())
            .order((enrollments::customer_id, enrollments::created_at, enrollments::partner_account_id))
            .load(conn)
            .await?;
        let link_rows = vendor_accounts::table
            .filter(vendor_accounts::customer_id.eq_any(&ids))
            .select(VendorAccountRow::as_select())
            .order((vendor_accounts::customer_id, vendor_accounts::linked_at, vendor_accounts::account_id))
            .load(conn)
            .await?;
        assemble(rows, enrollment_rows, link_rows)
    }

    /// The customer's own row; NOT_FOUND for another tenant's.
    async fn row_of(conn: &mut impl Statements, tenant_id: &str, id: &str) -> Result<CustomerRow> {
        customers::table
            .filter(customers::tenant_id.eq(tenant_id))
            .filter(customers::id.eq(id))
            .select(CustomerRow::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found("customer", id))
    }

    pub async fn get(conn: &mut Conn, tenant_id: &str, id: &str) -> Result<Customer> {
        let row = row_of(conn, tenant_id, id).await?;
        load_many(conn, tenant_id, vec![row])
            .await?
            .pop()
            .ok_or_else(|| Error::Internal("customer vanished while loading".into()))
    }

    /// The customer's billing profile: one read, without enrollments and vendor links.
    pub async fn billing_profile(conn: &mut impl Statements, tenant_id: &str, id: &str) -> Result<BillingProfile> {
        let row = row_of(conn, tenant_id, id).await?;
        assemble(vec![row], Vec::new(), Vec::new())?
            .pop()
            .map(profile_of)
            .ok_or_else(|| Error::Internal("customer vanished while loading".into()))
    }

    /// The billing profiles of the tenant's customers among `ids` (one read for a round of a
    /// close run; those not found are left out).
    pub async fn billing_profiles(conn: &mut Conn, tenant_id: &str, ids: &[String]) -> Result<Vec<BillingProfile>> {
        let rows = customers::table
            .filter(customers::tenant_id.eq(tenant_id))
            .filter(customers::id.eq_any(ids))
            .select(CustomerRow::as_select())
            .load(conn)
            .await?;
        Ok(assemble(rows, Vec::new(), Vec::new())?.into_iter().map(profile_of).collect())
    }

    pub async fn list(
        conn: &mut Conn,
        tenant_id: &str,
        only: Option<&str>,
        status: Option<CustomerStatus>,
        external_ref: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Customer>> {
        let mut query = customers::table
            .filter(customers::tenant_id.eq(tenant_id))
            .select(CustomerRow::as_select())
            .order(customers::id)
            .limit(page.fetch_limit())
            .into_boxed();
        if let Some(id) = only {
            query = query.filter(customers::id.eq(id));
        }
        if let Some(status) = status {
            query = query.filter(customers::status.eq(status.as_str()));
        }
        if let Some(external_ref) = external_ref {
            query = query.filter(customers::external_ref.eq(external_ref));
        }
        if let Some(after) = &page.after {
            query = query.filter(customers::id.gt(after));
        }
        let rows = query.load(conn).await?;
        let customers = load_many(conn, tenant_id, rows).await?;
        Ok(page.page(customers, |c| &c.id))
    }

    /// Creates the customer and its enrollments. Enrollments that order a new vendor account
    /// are PROVISIONING, with one step each in an ENROLL action recorded in the same
    /// transaction (requested by API key `key_id`); the worker carries it out.
    pub async fn create(
        conn: &mut Conn,
        tenant_id: &str,
        default_time_zone: &str,
        new: &NewCustomer,
        key_id: Option<&str>,
    ) -> Result<Customer> {
        conn.transaction(async |conn| {
            let id = ids::new_id(ids::CUSTOMER);
            let partner_accounts = q::partner_accounts::all(conn, tenant_id).await?;
            let mut chosen = Vec::with_capacity(new.enrollments.len());
            for (i, enrollment) in new.enrollments.iter().enumerate() {
                let field = if enrollment.partner_account_id.is_some() {
                    format!("enrollments[{i}].partner_account_id")
                } else {
                    format!("enrollments[{i}].vendor")
                };
                chosen.push(choose_partner_account(
                    &field,
                    enrollment.vendor,
                    enrollment.partner_account_id.as_deref(),
                    &partner_accounts,
                )?);
            }
            let now = DbTime(Utc::now());
            let inserted = diesel::insert_into(customers::table)
                .values((
                    customers::id.eq(&id),
                    customers::tenant_id.eq(tenant_id),
                    customers::external_ref.eq(&new.external_ref),
                    customers::display_name.eq(&new.display_name),
                    customers::billing_currency.eq(new.billing_currency.code()),
                    customers::billing_cycle.eq(new.billing_cycle.as_str()),
                    customers::billing_anchor_month.eq(new.billing_anchor.stored_month()),
                    customers::billing_anchor_day.eq(new.billing_anchor.stored_day()),
                    customers::time_zone.eq(new.time_zone.as_deref().unwrap_or(default_time_zone)),
                    customers::credit_limit.eq(DbDecimal(new.credit_limit)),
                    customers::status.eq(CustomerStatus::Active.as_str()),
                    customers::version.eq(1i64),
                    customers::created_at.eq(now),
                    customers::updated_at.eq(now),
                ))
                .execute(conn)
                .await;
            match inserted {
                Err(e) if is_unique_violation(&e) => return Err(external_ref_taken("external_ref", &new.external_ref)),
                other => other?,
            };
            let action_id = ids::new_id(SERVICE_ACTION_ID_PREFIX);
            let mut steps = Vec::new();
            for (account, request) in chosen.into_iter().zip(&new.enrollments) {
                let vendor = account.spec.vendor;
                let mut action = None;
                let (status, detail, linked) = if let Some(details) = &request.new_account {
                    let order = EnrollmentOrder {
                        idempotency_key: format!("{action_id}-{}", steps.len()),
                        details: details.clone(),
                    };
                    steps.push(ServiceStep::enroll(account.id.clone(), new_account_kind(vendor), order));
                    action = Some(action_id.as_str());
                    (EnrollmentStatus::Provisioning, format!("creating the {vendor} account"), None)
                } else if vendor == Vendor::Simulator {
                    let account_id = simulator_account_id(&id);
                    diesel::insert_into(vendor_accounts::table)
                        .values((
                            vendor_accounts::tenant_id.eq(tenant_id),
                            vendor_accounts::vendor.eq(vendor.as_str()),
                            vendor_accounts::account_id.eq(&account_id),
                            vendor_accounts::kind.eq(VendorAccountKind::SimulatorAccount.as_str()),
                            vendor_accounts::customer_id.eq(&id),
                            vendor_accounts::partner_account_id.eq(&account.id),
                            vendor_accounts::linked_at.eq(now),
                        ))
                        .execute(conn)
                        .await?;
                    (EnrollmentStatus::Enrolled, String::new(), Some(account_id))
                } else {
                    let hint = match vendor {
                        Vendor::Aws => "link the customer's AWS member account with LinkVendorAccount",
                        _ => "link the customer's Microsoft tenant or subscriptions with LinkVendorAccount",
                    };
                    (EnrollmentStatus::AwaitingLink, hint.to_string(), None)
                };
                diesel::insert_into(enrollments::table)
                    .values((
                        enrollments::customer_id.eq(&id),
                        enrollments::partner_account_id.eq(&account.id),
                        enrollments::vendor.eq(vendor.as_str()),
                        enrollments::status.eq(status.as_str()),
                        enrollments::status_detail.eq(detail),
                        enrollments::portal_url.eq(portal_url(vendor, linked.as_deref())),
                        enrollments::created_at.eq(now),
                        enrollments::service_action_id.eq(action),
                    ))
                    .execute(conn)
                    .await?;
            }
            if !steps.is_empty() {
                let key_id = key_id.ok_or_else(|| Error::Internal("an enrollment ordered without an API key".into()))?;
                let key = q::api_keys::get(conn, tenant_id, key_id).await?;
                let action = NewServiceAction {
                    id: action_id,
                    customer_id: id.clone(),
                    kind: ActionKind::Enroll,
                    vendor: single_vendor(&steps),
                    reason: format!("CreateCustomer {} ordered new vendor accounts", new.external_ref),
                    requester: Requester::ApiKey { key_id: key.id, key_name: key.name },
                    steps,
                };
                q::service_actions::insert(conn, tenant_id, &action, now.0).await?;
            }
            get(conn, tenant_id, &id).await
        })
        .await
    }

    /// An ordered enrollment failed at the vendor: ENROLLMENT_FAILED with its reason.
    pub async fn enrollment_failed(conn: &mut Conn, tenant_id: &str, customer_id: &str, partner_account_id: &str, reason: &str) -> Result<()> {
        let customer = get(conn, tenant_id, customer_id).await?;
        diesel::update(enrollments::table)
            .filter(enrollments::customer_id.eq(customer_id))
            .filter(enrollments::partner_account_id.eq(partner_account_id))
            .filter(enrollments::status.eq(EnrollmentStatus::Provisioning.as_str()))
            .set((
                enrollments::status.eq(EnrollmentStatus::Failed.as_str()),
                enrollments::status_detail.eq(reason),
            ))
            .execute(conn)
            .await?;
        touch(conn, &customer).await
    }

    /// Bumps the version after a change that does not go through `update` (links).
    async fn touch(conn: &mut Conn, customer: &Customer) -> Result<()> {
        diesel::update(customers::table)
            .filter(customers::id.eq(&customer.id))
            .set((
                customers::version.eq(customers::version + 1i64),
                customers::updated_at.eq(DbTime(Utc::now())),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Applies `patch` if `etag` is current. What follows a change of limit or time zone
    /// (credit, daily totals) is the ledger's (`ledger::changes`).
    pub async fn update(
        conn: &mut Conn,
        tenant_id: &str,
        id: &str,
        etag: &str,
        patch: &CustomerPatch,
    ) -> Result<CustomerChange> {
        conn.transaction(async |conn| {
            let current = get(conn, tenant_id, id).await?;
            current.check_etag(etag)?;
            let next = patch.apply(&current)?;
            let result = diesel::update(customers::table)
                .filter(customers::id.eq(id))
                .filter(customers::version.eq(current.version))
                .set((
                    customers::display_name.eq(&next.display_name),
                    customers::external_ref.eq(&next.external_ref),
                    customers::billing_cycle.eq(next.billing_cycle.as_str()),
                    customers::billing_anchor_month.eq(next.billing_anchor.stored_month()),
                    customers::billing_anchor_day.eq(next.billing_anchor.stored_day()),
                    customers::time_zone.eq(&next.time_zone),
                    customers::credit_limit.eq(DbDecimal(next.credit_limit)),
                    customers::version.eq(current.version + 1),
                    customers::updated_at.eq(DbTime(Utc::now())),
                ))
                .execute(conn)
                .await;
            match result {
                // Changed by a concurrent writer after we read it.
                Ok(0) => Err(Error::EtagMismatch {
                    kind: "customer",
                    id: id.to_string(),
                    sent: etag.to_string(),
                    current: format!("newer than {}", current.etag()),
                }),
                Ok(_) => Ok(CustomerChange {
                    after: get(conn, tenant_id, id).await?,
                    before: Some(current),
                }),
                Err(e) if is_unique_violation(&e) => {
                    Err(external_ref_taken("customer.external_ref", &next.external_ref))
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Sets the customer's status as service actions move it (the etag is unchanged: the status
    /// is not the caller's to edit).
    pub async fn set_status(conn: &mut Conn, tenant_id: &str, id: &str, status: CustomerStatus) -> Result<()> {
        diesel::update(customers::table)
            .filter(customers::tenant_id.eq(tenant_id))
            .filter(customers::id.eq(id))
            .set((
                customers::status.eq(status.as_str()),
                customers::updated_at.eq(DbTime(Utc::now())),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Links a vendor account to the customer (enrolling it through that partner account).
    /// Rating the usage that waited for the link is the ledger's (`ledger::changes`).
    pub async fn link(
        conn: &mut Conn,
        tenant_id: &str,
        customer_id: &str,
        link: &NewVendorAccountLink,
    ) -> Result<CustomerChange> {
        conn.transaction(async |conn| {
            let customer = get(conn, tenant_id, customer_id).await?;
            if customer.status == CustomerStatus::Purged {
                return Err(Error::precondition("customer", "is purged; nothing can be linked to it"));
            }
            let vendor = link.kind.vendor();
            let partner_accounts = q::partner_accounts::all(conn, tenant_id).await?;
            let account = choose_partner_account(
                "vendor_account.partner_account_id",
                vendor,
                link.partner_account_id.as_deref(),
                &partner_accounts,
            )?;
            let now = DbTime(Utc::now());
            let inserted = diesel::insert_into(vendor_accounts::table)
                .values((
                    vendor_accounts::tenant_id.eq(tenant_id),
                    vendor_accounts::vendor.eq(vendor.as_str()),
                    vendor_accounts::account_id.eq(&link.account_id),
                    vendor_accounts::kind.eq(link.kind.as_str()),
                    vendor_accounts::customer_id.eq(customer_id),
                    vendor_accounts::partner_account_id.eq(&account.id),
                    vendor_accounts::linked_at.eq(now),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            if inserted == 0 {
                let owner: String = vendor_accounts::table
                    .find((tenant_id, vendor.as_str(), &link.account_id))
                    .select(vendor_accounts::customer_id)
                    .first(conn)
                    .await?;
                if owner == customer_id {
                    return Ok(CustomerChange::unchanged(customer)); // already linked here
                }
                return Err(Error::AlreadyExists {
                    kind: "vendor account link",
                    field: "vendor_account.account_id".into(),
                    value: format!("{vendor} {} (linked to another customer)", link.account_id),
                });
            }
            let url = portal_url(vendor, Some(&link.account_id));
            let updated = diesel::update(enrollments::table)
                .filter(enrollments::customer_id.eq(customer_id))
                .filter(enrollments::partner_account_id.eq(&account.id))
                .filter(enrollments::status.ne(EnrollmentStatus::Enrolled.as_str()))
                .set((
                    enrollments::status.eq(EnrollmentStatus::Enrolled.as_str()),
                    enrollments::status_detail.eq(""),
                    enrollments::portal_url.eq(&url),
                ))
                .execute(conn)
                .await?;
            if updated == 0 {
                // Linking implies enrollment through that partner account.
                diesel::insert_into(enrollments::table)
                    .values((
                        enrollments::customer_id.eq(customer_id),
                        enrollments::partner_account_id.eq(&account.id),
                        enrollments::vendor.eq(vendor.as_str()),
                        enrollments::status.eq(EnrollmentStatus::Enrolled.as_str()),
                        enrollments::status_detail.eq(""),
                        enrollments::portal_url.eq(&url),
                        enrollments::created_at.eq(now),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
            }
            touch(conn, &customer).await?;
            Ok(CustomerChange {
                after: get(conn, tenant_id, customer_id).await?,
                before: Some(customer),
            })
        })
        .await
    }

    pub async fn unlink(
        conn: &mut Conn,
        tenant_id: &str,
        customer_id: &str,
        vendor: Vendor,
        account_id: &str,
    ) -> Result<Customer> {
        conn.transaction(async |conn| {
            let customer = get(conn, tenant_id, customer_id).await?;
            let Some(link) = customer.vendor_accounts.iter().find(|l| l.kind.vendor() == vendor && l.account_id == account_id) else {
                return Err(Error::not_found("vendor account link", format!("{vendor} {account_id}")));
            };
            diesel::delete(vendor_accounts::table.find((tenant_id, vendor.as_str(), account_id)))
                .execute(conn)
                .await?;
            let still_linked = customer
                .vendor_accounts
                .iter()
                .any(|l| l.partner_account_id == link.partner_account_id && l.account_id != account_id);
            if !still_linked {
                diesel::update(enrollments::table)
                    .filter(enrollments::customer_id.eq(customer_id))
                    .filter(enrollments::partner_account_id.eq(&link.partner_account_id))
                    .set((
                        enrollments::status.eq(EnrollmentStatus::AwaitingLink.as_str()),
                        enrollments::status_detail.eq("no vendor account linked"),
                        enrollments::portal_url.eq(portal_url(vendor, None)),
                    ))
                    .execute(conn)
                    .await?;
            }
            touch(conn, &customer).await?;
            get(conn, tenant_id, customer_id).await
        })
        .await
    }
}

impl Store {
    pub async fn create_customer(
        &self,
        tenant_id: &str,
        default_time_zone: &str,
        new: &NewCustomer,
        key_id: Option<&str>,
        request: &Idempotent<'_, Customer>,
    ) -> Result<Answer<Customer>> {
        write_once!(
            self,
            tenant_id,
            Some(request),
            self::create(tenant_id, default_time_zone, new, key_id)
        )
    }

    pub async fn customer(&self, tenant_id: &str, id: &str) -> Result<Customer> {
        dispatch!(self, read, self::get(tenant_id, id))
    }

    /// A page of customers; `only` narrows it to one (a portal key's).
    pub async fn list_customers(
        &self,
        tenant_id: &str,
        only: Option<&str>,
        status: Option<CustomerStatus>,
        external_ref: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Customer>> {
        dispatch!(
            self,
            read,
            self::list(tenant_id, only, status, external_ref, page)
        )
    }

    pub async fn unlink_vendor_account(
        &self,
        tenant_id: &str,
        customer_id: &str,
        vendor: Vendor,
        account_id: &str,
        request: Option<&Idempotent<'_, Customer>>,
    ) -> Result<Answer<Customer>> {
        write_once!(
            self,
            tenant_id,
            request,
            self::unlink(tenant_id, customer_id, vendor, account_id)
        )
    }
}
