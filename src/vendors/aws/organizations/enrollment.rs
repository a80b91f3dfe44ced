//! Enrollment: a new member account through `CreateAccount`, which AWS completes asynchronously
//! (`DescribeCreateAccountStatus` until SUCCEEDED or FAILED).
//!
//! `CreateAccount` takes no idempotency token, so a repeated order first looks for its earlier
//! effect: an account with the order's email already in the organization (enrolled), or a
//! creation for the order's account name still in progress (pending). Only then is a new
//! account requested.
use aws_sdk_organizations::error::ProvideErrorMetadata;
use aws_sdk_organizations::types::{CreateAccountState, CreateAccountStatus};

use super::AwsOrganizations;
use super::errors::control_error;
use crate::domain::service_control::{
    AwsEnrollment, ControlError, EnrollmentDetails, EnrollmentOrder, EnrollmentProgress,
};
use crate::domain::vendor::VendorAccountKind;
use crate::vendors::service_control::ControlResult;

impl AwsOrganizations {
    pub(super) async fn create_account(
        &self,
        order: &EnrollmentOrder,
    ) -> ControlResult<EnrollmentProgress> {
        let EnrollmentDetails::Aws(details) = &order.details else {
            return Err(ControlError::permanent(format!(
                "a {} enrollment cannot go through an AWS partner account",
                order.details.vendor()
            )));
        };
        if let Some(account_id) = self.account_with_email(&details.email).await? {
            return Ok(EnrollmentProgress::Enrolled {
                kind: VendorAccountKind::AwsAccount,
                account_id,
            });
        }
        if let Some(operation_id) = self.creation_in_progress(&details.account_name).await? {
            return Ok(EnrollmentProgress::Pending { operation_id });
        }
        self.request_account(details).await
    }

    pub(super) async fn create_account_status(
        &self,
        operation_id: &str,
    ) -> ControlResult<EnrollmentProgress> {
        let what = format!("reading account creation {operation_id}");
        self.retrying(&what, || async {
            let output = self
                .client
                .describe_create_account_status()
                .create_account_request_id(operation_id)
                .send()
                .await
                .map_err(|e| control_error(&e, &what))?;
            let status = output.create_account_status().ok_or_else(|| {
                ControlError::permanent(format!("{what}: AWS answered without a status"))
            })?;
            progress(status)
        })
        .await
    }

    async fn account_with_email(&self, email: &str) -> ControlResult<Option<String>> {
        Ok(self
            .accounts()
            .await?
            .iter()
            .find(|a| a.email().is_some_and(|e| e.eq_ignore_ascii_case(email)))
            .and_then(|a| a.id().map(str::to_string)))
    }

    async fn creation_in_progress(&self, account_name: &str) -> ControlResult<Option<String>> {
        let what = "listing account creations in progress";
        let request = self
            .client
            .list_create_account_status()
            .states(CreateAccountState::InProgress);
        let pages = all_pages!(self, what, request.clone())?;
        Ok(pages
            .iter()
            .flat_map(|page| page.create_account_statuses())
            .find(|s| s.account_name() == Some(account_name))
            .and_then(|s| s.id().map(str::to_string)))
    }

    async fn request_account(&self, details: &AwsEnrollment) -> ControlResult<EnrollmentProgress> {
        let what = "requesting a new account (CreateAccount)";
        let output = self
            .retrying(what, || async {
                self.client
                    .create_account()
                    .email(&details.email)
                    .account_name(&details.account_name)
                    .send()
                    .await
                    .map_err(|e| match e.code() {
                        // The quota of accounts created a day or held in the organization.
                        Some("ConstraintViolationException") => ControlError::permanent(format!(
                            "{what}: AWS refused: {}",
                            e.message().unwrap_or("a constraint was violated")
                        )),
                        _ => control_error(&e, what),
                    })
            })
            .await?;
        let status = output.create_account_status().ok_or_else(|| {
            ControlError::permanent(format!("{what}: AWS answered without a status"))
        })?;
        progress(status)
    }
}

fn progress(status: &CreateAccountStatus) -> ControlResult<EnrollmentProgress> {
    match status.state() {
        Some(CreateAccountState::InProgress) => Ok(EnrollmentProgress::Pending {
            operation_id: status.id().unwrap_or_default().to_string(),
        }),
        Some(CreateAccountState::Succeeded) => match status.account_id() {
            Some(id) => Ok(EnrollmentProgress::Enrolled {
                kind: VendorAccountKind::AwsAccount,
                account_id: id.to_string(),
            }),
            None => Err(ControlError::permanent(
                "AWS reports the account created but names no account id",
            )),
        },
        Some(CreateAccountState::Failed) => Ok(EnrollmentProgress::Failed {
            reason: failure_reason(status.failure_reason().map(|r| r.as_str())),
        }),
        other => Err(ControlError::transient(format!(
            "AWS reports account creation state {:?}",
            other.map(|s| s.as_str())
        ))),
    }
}

/// AWS's failure code with what it means for the MSP.
fn failure_reason(code: Option<&str>) -> String {
    let code = code.unwrap_or("UNKNOWN");
    let meaning = match code {
        "EMAIL_ALREADY_EXISTS" => "the email address already belongs to another AWS account",
        "INVALID_EMAIL" => "AWS does not accept the email address",
        "ACCOUNT_LIMIT_EXCEEDED" => "the organization holds as many accounts as AWS allows",
        "CONCURRENT_ACCOUNT_MODIFICATION" | "INTERNAL_FAILURE" => {
            "a temporary failure at AWS; enroll again"
        }
        "INVALID_ADDRESS" | "INVALID_PAYMENT_INSTRUMENT" | "MISSING_PAYMENT_INSTRUMENT" => {
            "the management account's billing details need attention"
        }
        _ => "see AWS's CreateAccountStatus documentation",
    };
    format!("AWS could not create the account: {code} ({meaning})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(
        state: CreateAccountState,
    ) -> aws_sdk_organizations::types::builders::CreateAccountStatusBuilder {
        CreateAccountStatus::builder().id("car-1").state(state)
    }

    #[test]
    fn creation_states_map_to_progress() {
        assert_eq!(
            progress(&status(CreateAccountState::InProgress).build()).unwrap(),
            EnrollmentProgress::Pending {
                operation_id: "car-1".into()
            }
        );
        assert_eq!(
            progress(
                &status(CreateAccountState::Succeeded)
                    .account_id("444455556666")
                    .build()
            )
            .unwrap(),
            EnrollmentProgress::Enrolled {
                kind: VendorAccountKind::AwsAccount,
                account_id: "444455556666".into()
            }
        );
        let failed = status(CreateAccountState::Failed)
            .failure_reason(
                aws_sdk_organizations::types::CreateAccountFailureReason::EmailAlreadyExists,
            )
            .build();
        let EnrollmentProgress::Failed { reason } = progress(&failed).unwrap() else {
            panic!("failed");
        };
        assert!(reason.contains("EMAIL_ALREADY_EXISTS") && reason.contains("another AWS account"));
        assert!(progress(&status(CreateAccountState::Succeeded).build()).is_err());
    }
}
