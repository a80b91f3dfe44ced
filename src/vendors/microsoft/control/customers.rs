//! Enrollment: a new customer tenant under the partner, `POST /v1/customers`.
use azure_core::http::{Method, StatusCode};
use serde_json::json;

use super::PartnerCenterControl;
use super::requests::{refusal, vendor_reason};
use crate::domain::seat_order::vendor_request_id;
use crate::domain::service_control::{
    ControlError, EnrollmentDetails, EnrollmentOrder, EnrollmentProgress, MicrosoftEnrollment,
};
use crate::domain::vendor::VendorAccountKind;
use crate::vendors::service_control::ControlResult;

impl PartnerCenterControl {
    pub(super) async fn create_customer(
        &self,
        order: &EnrollmentOrder,
    ) -> ControlResult<EnrollmentProgress> {
        let EnrollmentDetails::Microsoft(details) = &order.details else {
            return Err(ControlError::permanent(format!(
                "a {} enrollment cannot go through a Microsoft partner account",
                order.details.vendor()
            )));
        };
        let what = format!("creating customer {}", details.domain);
        let url = self.url("customers")?;
        let headers = [
            ("ms-requestid", vendor_request_id(&order.idempotency_key)),
            ("ms-correlationid", uuid::Uuid::new_v4().to_string()),
        ];
        let answer = self
            .request(Method::Post, &url, Some(&body(details)), &headers, &what)
            .await?;
        match answer.status {
            status if status.is_success() => {
                let created: serde_json::Value =
                    serde_json::from_slice(&answer.body).map_err(|e| {
                        ControlError::permanent(format!("{what}: unreadable answer: {e}"))
                    })?;
                let tenant = ["/id", "/companyProfile/tenantId"]
                    .iter()
                    .find_map(|p| created.pointer(p).and_then(|v| v.as_str()))
                    .filter(|id| {
                        VendorAccountKind::MicrosoftTenant
                            .check_account_id(id)
                            .is_ok()
                    })
                    .ok_or_else(|| {
                        ControlError::permanent(format!("{what}: the answer names no tenant id"))
                    })?;
                Ok(EnrollmentProgress::Enrolled {
                    kind: VendorAccountKind::MicrosoftTenant,
                    account_id: tenant.to_string(),
                })
            }
            // The domain is taken, the address does not validate, …: the vendor's no.
            StatusCode::BadRequest | StatusCode::Conflict => Ok(EnrollmentProgress::Failed {
                reason: format!(
                    "Partner Center refused the customer (HTTP {}): {}",
                    u16::from(answer.status),
                    vendor_reason(&answer)
                ),
            }),
            _ => Err(refusal(&answer, &what)),
        }
    }
}

fn body(details: &MicrosoftEnrollment) -> serde_json::Value {
    let address = &details.address;
    json!({
        "CompanyProfile": { "Domain": details.domain },
        "BillingProfile": {
            "Culture": details.culture,
            "Email": details.contact.email,
            "Language": details.language,
            "CompanyName": details.company_name,
            "DefaultAddress": {
                "FirstName": details.contact.first_name,
                "LastName": details.contact.last_name,
                "AddressLine1": address.address_line1,
                "AddressLine2": address.address_line2,
                "City": address.city,
                "State": address.region,
                "PostalCode": address.postal_code,
                "Country": address.country,
                "PhoneNumber": details.contact.phone,
            },
        },
    })
}
