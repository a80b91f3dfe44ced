//! The rules of the gateway, free of gRPC and SQL: what a valid customer, partner account or key
//! is, who may do what, and the errors callers see.
pub mod access;
pub mod aws_settings;
pub mod billing_schedule;
pub mod catalog;
pub mod charges;
pub mod credit;
pub mod csv_records;
pub mod customer;
pub mod error;
pub mod idempotency;
pub mod ids;
pub mod invoice;
pub mod invoice_groups;
pub mod invoice_number;
#[cfg(test)]
mod invoice_properties;
pub mod invoice_record;
pub mod invoice_selection;
pub mod invoice_settings;
#[cfg(test)]
mod invoice_tests;
pub mod ledger;
pub mod ledger_append;
#[cfg(test)]
mod ledger_properties;
pub mod line_key;
pub mod microsoft_settings;
pub mod money;
pub mod paging;
pub mod partner_account;
pub mod payment;
pub mod period;
pub mod period_close;
#[cfg(test)]
mod period_tests;
pub mod polling;
pub mod portal;
pub mod price_sheet;
pub mod pricing;
pub mod rating;
#[cfg(test)]
mod rating_tests;
pub mod retry;
pub mod rounding;
pub mod seat_order;
pub mod seat_pricing;
pub mod service_action;
pub mod service_control;
pub mod spend;
pub mod subscription;
pub mod subscription_period;
#[cfg(test)]
mod subscription_properties;
pub mod subscription_record;
#[cfg(test)]
mod subscription_tests;
pub mod tenant;
pub mod text;
pub mod usage;
pub mod vendor;
pub mod work_queues;

pub use error::{Error, FieldViolation, Result};
