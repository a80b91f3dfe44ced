//! The service-action tables (kept apart from `schema.rs`: no other query joins them).
use super::sql_types::Instant;

diesel::table! {
    service_action_sequences (tenant_id) {
        tenant_id -> Text,
        last_sequence -> BigInt,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::Instant;

    service_actions (id) {
        id -> Text,
        tenant_id -> Text,
        customer_id -> Text,
        kind -> Text,
        status -> Text,
        vendor -> Nullable<Text>,
        reason -> Text,
        automatic -> Bool,
        requested_by_key_id -> Nullable<Text>,
        requested_by_key_name -> Nullable<Text>,
        credit_event_sequence -> Nullable<BigInt>,
        change_sequence -> BigInt,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Instant>,
        created_at -> Instant,
        updated_at -> Instant,
        finished_at -> Nullable<Instant>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::Instant;

    service_action_steps (action_id, position) {
        action_id -> Text,
        position -> Integer,
        tenant_id -> Text,
        partner_account_id -> Text,
        target_kind -> Text,
        target_account_id -> Text,
        target_tenant_id -> Nullable<Text>,
        status -> Text,
        attempts -> Integer,
        last_error -> Nullable<Text>,
        not_before -> Nullable<Instant>,
        started_at -> Nullable<Instant>,
        finished_at -> Nullable<Instant>,
        enrollment_order -> Nullable<Text>,
        vendor_operation_id -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(service_actions, service_action_steps);
