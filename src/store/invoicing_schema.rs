//! The invoicing tables (kept apart from `schema.rs`, like the credit tables).
use super::sql_types::{Exact, Instant};

diesel::table! {
    use diesel::sql_types::*;
    use super::Instant;

    invoice_settings (tenant_id) {
        tenant_id -> Text,
        number_prefix -> Text,
        rounding -> Text,
        grace_days -> Integer,
        updated_at -> Instant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::Instant;

    customer_billing (tenant_id, customer_id) {
        tenant_id -> Text,
        customer_id -> Text,
        last_closed_end -> Instant,
        last_close_sequence -> BigInt,
        open_from_sequence -> BigInt,
    }
}

diesel::table! {
    invoice_number_sequences (tenant_id) {
        tenant_id -> Text,
        last_number -> BigInt,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::{Exact, Instant};

    invoices (tenant_id, id) {
        tenant_id -> Text,
        id -> Text,
        customer_id -> Text,
        period_start -> Instant,
        period_end -> Instant,
        time_zone -> Text,
        cycle -> Text,
        close_sequence -> BigInt,
        previous_close_sequence -> BigInt,
        number_counter -> Nullable<BigInt>,
        number -> Nullable<Text>,
        customer_external_ref -> Text,
        customer_name -> Text,
        currency -> Text,
        rounding -> Text,
        unrounded_total -> Exact,
        total -> Exact,
        rounding_difference -> Exact,
        payment_status -> Text,
        paid -> Exact,
        finalized_at -> Instant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::{Exact, Instant};

    invoice_lines (tenant_id, invoice_id, line_number) {
        tenant_id -> Text,
        invoice_id -> Text,
        line_number -> Integer,
        vendor -> Text,
        service -> Text,
        meter -> Text,
        unit -> Text,
        quantity -> Exact,
        unrounded_amount -> Exact,
        amount -> Exact,
        adjusts_period_start -> Nullable<Instant>,
        adjusts_period_end -> Nullable<Instant>,
        adjusts_invoice_id -> Nullable<Text>,
        adjusts_invoice_number -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::{Exact, Instant};

    payments (tenant_id, id) {
        tenant_id -> Text,
        id -> Text,
        invoice_id -> Text,
        amount -> Exact,
        currency -> Text,
        reference -> Text,
        paid_after -> Exact,
        balance_after -> Exact,
        recorded_at -> Instant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::Instant;

    close_runs (tenant_id, id) {
        tenant_id -> Text,
        id -> Text,
        as_of -> Instant,
        status -> Text,
        customers_planned -> Integer,
        customers_done -> Integer,
        invoices_closed -> Integer,
        cursor_customer_id -> Nullable<Text>,
        last_error -> Nullable<Text>,
        started_at -> Instant,
        finished_at -> Nullable<Instant>,
    }
}

// A close reads the tenant's time zone (its invoices' issue date) with its invoice settings.
use super::schema::tenants;
diesel::allow_tables_to_appear_in_same_query!(invoice_settings, tenants);
