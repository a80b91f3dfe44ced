//! The tables, written once for both backends (see `sql_types` for the two portable types).
use super::sql_types::{Exact, Instant};

diesel::table! {
    use diesel::sql_types::*;
    use super::Instant;

    tenants (id) {
        id -> Text,
        name -> Text,
        currency -> Text,
        time_zone -> Text,
        created_at -> Instant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::Instant;

    api_keys (id) {
        id -> Text,
        tenant_id -> Text,
        name -> Text,
        scope -> Text,
        customer_id -> Nullable<Text>,
        secret_hash -> Text,
        created_at -> Instant,
        revoked_at -> Nullable<Instant>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::{Exact, Instant};

    partner_accounts (id) {
        id -> Text,
        tenant_id -> Text,
        vendor -> Text,
        display_name -> Text,
        vendor_account_id -> Text,
        partner_discount_rate -> Exact,
        credentials_ref -> Text,
        poll_interval_secs -> BigInt,
        enabled -> Bool,
        endpoint_url -> Text,
        version -> BigInt,
        created_at -> Instant,
        updated_at -> Instant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::{Exact, Instant};

    customers (id) {
        id -> Text,
        tenant_id -> Text,
        external_ref -> Text,
        display_name -> Text,
        billing_currency -> Text,
        billing_cycle -> Text,
        time_zone -> Text,
        credit_limit -> Exact,
        status -> Text,
        version -> BigInt,
        created_at -> Instant,
        updated_at -> Instant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::Instant;

    enrollments (customer_id, partner_account_id) {
        customer_id -> Text,
        partner_account_id -> Text,
        vendor -> Text,
        status -> Text,
        status_detail -> Text,
        portal_url -> Text,
        created_at -> Instant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::Instant;

    vendor_accounts (tenant_id, vendor, account_id) {
        tenant_id -> Text,
        vendor -> Text,
        account_id -> Text,
        kind -> Text,
        customer_id -> Text,
        partner_account_id -> Text,
        linked_at -> Instant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::Instant;

    idempotency_keys (tenant_id, request_id) {
        tenant_id -> Text,
        request_id -> Text,
        operation -> Text,
        fingerprint -> Text,
        resource_id -> Text,
        created_at -> Instant,
    }
}

diesel::joinable!(api_keys -> tenants (tenant_id));
diesel::joinable!(customers -> tenants (tenant_id));
diesel::joinable!(enrollments -> customers (customer_id));
diesel::joinable!(enrollments -> partner_accounts (partner_account_id));
diesel::joinable!(partner_accounts -> tenants (tenant_id));
diesel::joinable!(vendor_accounts -> customers (customer_id));

diesel::allow_tables_to_appear_in_same_query!(
    tenants,
    api_keys,
    partner_accounts,
    customers,
    enrollments,
    vendor_accounts,
    idempotency_keys,
);
