//! The catalogue and subscription tables (kept apart from `schema.rs`, like the credit tables).
use super::sql_types::{Exact, Instant};

diesel::table! {
    use diesel::sql_types::*;
    use super::Instant;

    catalog_items (id) {
        id -> Text,
        tenant_id -> Text,
        vendor -> Text,
        catalog_item_id -> Text,
        product -> Text,
        unit -> Text,
        offers -> Text,
        created_at -> Instant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::Exact;

    catalog_unit_costs (item_id, term, billing_frequency, currency, effective_month) {
        tenant_id -> Text,
        item_id -> Text,
        term -> Text,
        billing_frequency -> Text,
        currency -> Text,
        effective_month -> Text,
        unit_cost -> Exact,
        list_price -> Nullable<Exact>,
        market -> Text,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::{Exact, Instant};

    subscriptions (id) {
        id -> Text,
        tenant_id -> Text,
        customer_id -> Text,
        item_id -> Text,
        status -> Text,
        quantity -> BigInt,
        term -> Text,
        billing_frequency -> Text,
        time_zone -> Text,
        currency -> Text,
        term_start -> Instant,
        period_index -> BigInt,
        period_start -> Instant,
        period_end -> Instant,
        unit_price -> Exact,
        seat_seconds -> BigInt,
        lots -> Text,
        scheduled -> Text,
        auto_renew -> Bool,
        ended_at -> Nullable<Instant>,
        created_at -> Instant,
        updated_at -> Instant,
        vendor_subscription_id -> Nullable<Text>,
        change_request -> Nullable<Text>,
        change_expires_at -> Nullable<Instant>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::Instant;

    pending_seat_orders (tenant_id, request_id) {
        tenant_id -> Text,
        request_id -> Text,
        fingerprint -> Text,
        customer_id -> Text,
        item_id -> Text,
        quantity -> BigInt,
        term -> Text,
        billing_frequency -> Text,
        ordered_at -> Instant,
        created_at -> Instant,
        refusal -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(catalog_items, catalog_unit_costs);
