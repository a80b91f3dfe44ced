//! The credit records a PostgreSQL ledger write touches (see `ledger::credit` for the hook and
//! `store::credit` for the records), on the ledger's tokio-postgres connection.
use std::collections::HashMap;

use chrono::Utc;
use rust_decimal::Decimal;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::domain::credit::{
    CreditDefaults, CreditEvent, CreditInputs, CreditState, ExposureUpdate, encode_percents,
};
use crate::domain::error::Result;
use crate::domain::money::Currency;
use crate::store::credit::{CREDIT_STATES_PG, UPSERT_EXPOSURE_PG};

/// The credit limits, states and defaults of the customers among `ids`, read side by side.
pub(super) async fn inputs(client: &Client, tenant_id: &str, ids: &[&str]) -> Result<CreditInputs> {
    let (by_id, by_tenant): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 2]) =
        ([&ids], [&tenant_id, &ids]);
    let (limits, states, defaults) = futures::try_join!(
        // By id alone (ids are unique across tenants); the tenant is checked below.
        client.query(
            "SELECT id, tenant_id, credit_limit, billing_currency FROM customers WHERE id = ANY($1)",
            &by_id,
        ),
        client.query(CREDIT_STATES_PG, &by_tenant),
        client.query_opt(
            "SELECT thresholds, policy FROM credit_defaults WHERE tenant_id = $1",
            &by_tenant[..1],
        ),
    )?;
    let mut inputs = CreditInputs {
        limits: HashMap::with_capacity(limits.len()),
        states: HashMap::with_capacity(states.len()),
        defaults: match defaults {
            Some(row) => CreditDefaults::decode(row.try_get(0)?, row.try_get(1)?)?,
            None => CreditDefaults::default(),
        },
    };
    for row in limits {
        if row.try_get::<_, &str>(1)? != tenant_id {
            continue;
        }
        let limit: Decimal = row.try_get(2)?;
        inputs.limits.insert(
            row.try_get(0)?,
            (limit, Currency::from_stored(row.try_get(3)?)?),
        );
    }
    for row in states {
        let id: String = row.try_get(0)?;
        let state = CreditState::decode(
            &id,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get(4)?,
            row.try_get(5)?,
        )?;
        inputs.states.insert(id, state);
    }
    Ok(inputs)
}

pub(super) async fn write_exposure(
    client: &Client,
    tenant_id: &str,
    updates: &[ExposureUpdate],
) -> Result<()> {
    if updates.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = updates.iter().map(|u| u.customer_id.as_str()).collect();
    let open: Vec<Decimal> = updates.iter().map(|u| u.open_charges).collect();
    let crossed: Vec<String> = updates
        .iter()
        .map(|u| encode_percents(&u.crossed))
        .collect();
    client
        .execute(
            UPSERT_EXPOSURE_PG,
            &[&tenant_id, &ids, &open, &Utc::now(), &crossed],
        )
        .await?;
    Ok(())
}

/// Numbers and appends credit events with the tenant's credit sequence; the last one.
pub(super) async fn append_events(
    client: &Client,
    tenant_id: &str,
    events: &[CreditEvent],
) -> Result<i64> {
    let count = events.len() as i64;
    client
        .execute(
            "INSERT INTO credit_sequences (tenant_id, last_sequence) VALUES ($1, 0) \
             ON CONFLICT DO NOTHING",
            &[&tenant_id],
        )
        .await?;
    let last: i64 = client
        .query_one(
            "UPDATE credit_sequences SET last_sequence = last_sequence + $2 \
             WHERE tenant_id = $1 RETURNING last_sequence",
            &[&tenant_id, &count],
        )
        .await?
        .try_get(0)?;
    let sequences: Vec<i64> = (last - count + 1..=last).collect();
    let customers: Vec<&str> = events.iter().map(|e| e.customer_id.as_str()).collect();
    let percents: Vec<i32> = events.iter().map(|e| e.threshold_percent as i32).collect();
    let directions: Vec<&str> = events.iter().map(|e| e.direction.as_str()).collect();
    let exposures: Vec<Decimal> = events.iter().map(|e| e.exposure).collect();
    let limits: Vec<Decimal> = events.iter().map(|e| e.credit_limit).collect();
    let currencies: Vec<&str> = events.iter().map(|e| e.currency.code()).collect();
    let policies: Vec<&str> = events.iter().map(|e| e.policy.as_str()).collect();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    let ledger: Vec<i64> = events.iter().map(|e| e.ledger_sequence).collect();
    let service_actions: Vec<Option<&str>> = events
        .iter()
        .map(|e| e.service_action_id.as_deref())
        .collect();
    let now = Utc::now();
    client
        .execute(
            "INSERT INTO credit_events (tenant_id, sequence, customer_id, threshold_percent, \
             direction, exposure, credit_limit, currency, policy, action, ledger_sequence, \
             recorded_at, service_action_id) SELECT $1, unnest($2::int8[]), \
             unnest($3::text[]), unnest($4::int4[]), unnest($5::text[]), \
             unnest($6::numeric[]), unnest($7::numeric[]), unnest($8::text[]), \
             unnest($9::text[]), unnest($10::text[]), unnest($11::int8[]), $12, \
             unnest($13::text[])",
            &[
                &tenant_id,
                &sequences,
                &customers,
                &percents,
                &directions,
                &exposures,
                &limits,
                &currencies,
                &policies,
                &actions,
                &ledger,
                &now,
                &service_actions,
            ],
        )
        .await?;
    Ok(last)
}
