//! The credit-control tables (kept apart from `schema.rs`; no query joins them with others).
use super::sql_types::{Exact, Instant};

diesel::table! {
    use diesel::sql_types::*;
    use super::Instant;

    credit_defaults (tenant_id) {
        tenant_id -> Text,
        thresholds -> Text,
        policy -> Text,
        updated_at -> Instant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::{Exact, Instant};

    customer_credit (tenant_id, customer_id) {
        tenant_id -> Text,
        customer_id -> Text,
        thresholds -> Nullable<Text>,
        policy -> Nullable<Text>,
        open_charges -> Exact,
        unpaid_invoices -> Exact,
        crossed -> Text,
        updated_at -> Instant,
    }
}

diesel::table! {
    credit_sequences (tenant_id) {
        tenant_id -> Text,
        last_sequence -> BigInt,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::{Exact, Instant};

    credit_events (tenant_id, sequence) {
        tenant_id -> Text,
        sequence -> BigInt,
        customer_id -> Text,
        threshold_percent -> Integer,
        direction -> Text,
        exposure -> Exact,
        credit_limit -> Exact,
        currency -> Text,
        policy -> Text,
        action -> Text,
        ledger_sequence -> BigInt,
        recorded_at -> Instant,
        service_action_id -> Nullable<Text>,
    }
}
