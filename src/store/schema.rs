//! The tables, written once for both backends (see `sql_types` for the two portable types). The
//! ledger's row tables, `usage_lines` and `charge_events`, are declared with their rows in
//! `ledger::rows`.
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
        brand_primary_color -> Nullable<Text>,
        brand_accent_color -> Nullable<Text>,
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
        aws_granularity -> Nullable<Text>,
        aws_cost_metric -> Nullable<Text>,
        aws_meter_mode -> Nullable<Text>,
        aws_request_budget -> Nullable<Integer>,
        line_key_prefix -> Integer,
        ms_billing_currency -> Nullable<Text>,
        ms_authority_host -> Nullable<Text>,
        ms_token_scope -> Nullable<Text>,
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
        billing_anchor_month -> Integer,
        billing_anchor_day -> Integer,
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
        service_action_id -> Nullable<Text>,
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
        response -> Nullable<Binary>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::{Exact, Instant};

    price_rules (id) {
        id -> Text,
        tenant_id -> Text,
        vendor -> Nullable<Text>,
        service -> Nullable<Text>,
        meter -> Nullable<Text>,
        customer_id -> Nullable<Text>,
        kind -> Text,
        value -> Exact,
        currency -> Nullable<Text>,
        effective_from -> Instant,
        effective_to -> Nullable<Instant>,
        created_at -> Instant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::{Exact, Instant};

    fx_rates (tenant_id, from_currency, to_currency, effective_from) {
        tenant_id -> Text,
        from_currency -> Text,
        to_currency -> Text,
        effective_from -> Instant,
        rate -> Exact,
        created_at -> Instant,
    }
}

diesel::table! {
    ledger_sequences (tenant_id) {
        tenant_id -> Text,
        last_sequence -> BigInt,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::Instant;

    /// Consecutive sequences that all belong to one customer: how a customer's charges are found.
    /// The window bounds are the earliest and latest usage window start among them (None: not
    /// known, a run written before they were kept).
    charge_event_runs (tenant_id, customer_id, last_sequence) {
        tenant_id -> Text,
        customer_id -> Text,
        first_sequence -> BigInt,
        last_sequence -> BigInt,
        first_window -> Nullable<Instant>,
        last_window -> Nullable<Instant>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::Exact;

    /// The sum of the charge events per customer, local day of the usage window, vendor,
    /// service and meter; kept by the ledger write.
    charge_totals (tenant_id, customer_id, usage_date, vendor, service, meter) {
        tenant_id -> Text,
        customer_id -> Text,
        usage_date -> Date,
        vendor -> Text,
        service -> Text,
        meter -> Text,
        amount -> Exact,
        quantity -> Exact,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::Exact;

    /// Coarser sums of `charge_totals` (per day; day and service; month and service; month
    /// and meter: `grain`), kept by the same ledger write; see `domain::spend::rollup`.
    charge_rollups (tenant_id, customer_id, grain, bucket, vendor, service, meter) {
        tenant_id -> Text,
        customer_id -> Text,
        grain -> Text,
        bucket -> Date,
        vendor -> Text,
        service -> Text,
        meter -> Text,
        amount -> Exact,
        quantity -> Exact,
        events -> BigInt,
        /// One summed charge's line key, on `month_meter` rows (an invoice line's unit).
        line_key -> Nullable<Binary>,
        /// The unit of one of the latest write's charges, on `month_meter` rows (an invoice
        /// line's); none on rows written before it was kept, or rebuilt from stored events.
        unit -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::Instant;

    poll_states (partner_account_id) {
        partner_account_id -> Text,
        tenant_id -> Text,
        version_tags -> Nullable<Text>,
        last_poll_at -> Nullable<Instant>,
        last_success_at -> Nullable<Instant>,
        last_error -> Nullable<Text>,
        requests_spent -> BigInt,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Instant>,
        next_poll_at -> Nullable<Instant>,
        consecutive_failures -> Integer,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::Instant;

    /// The tenant's pricing policy; no row means the defaults.
    pricing_policies (tenant_id) {
        tenant_id -> Text,
        hold_below_cost -> Bool,
        version -> BigInt,
        updated_at -> Instant,
    }
}

diesel::table! {
    /// Bumped by triggers on every change that can alter rating.
    pricing_versions (tenant_id) {
        tenant_id -> Text,
        version -> BigInt,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::Instant;

    portal_signing_keys (tenant_id) {
        tenant_id -> Text,
        secret -> Text,
        created_at -> Instant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::Instant;

    portal_sessions (id) {
        id -> Text,
        tenant_id -> Text,
        customer_id -> Text,
        return_url -> Text,
        created_at -> Instant,
        link_expires_at -> Instant,
        opened_at -> Nullable<Instant>,
        cookie_hash -> Nullable<Text>,
        session_expires_at -> Nullable<Instant>,
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
    pricing_policies,
    customers,
    enrollments,
    vendor_accounts,
    idempotency_keys,
    price_rules,
    fx_rates,
    ledger_sequences,
    charge_event_runs,
    charge_totals,
    charge_rollups,
    poll_states,
    portal_signing_keys,
    portal_sessions,
);
