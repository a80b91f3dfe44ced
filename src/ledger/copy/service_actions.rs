//! The service actions a PostgreSQL ledger write records for credit policy (see
//! `ledger::credit` for the hook, `store::service_actions` for the records), on the ledger's
//! tokio-postgres connection.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use crate::domain::customer::VendorAccountLink;
use crate::domain::error::{Error, Result};
use crate::domain::service_action::credit_policy::PolicyCustomer;
use crate::domain::service_action::{NewServiceAction, OpenAction, Requester};

fn corrupt(what: String) -> Error {
    Error::Internal(format!("stored service action data: {what}"))
}

pub(super) async fn policy_customers(
    client: &Client,
    tenant_id: &str,
    ids: &[&str],
) -> Result<HashMap<String, PolicyCustomer>> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&tenant_id, &ids];
    let (customers, links, open, last) = futures::try_join!(
        client.query(
            "SELECT id, status FROM customers WHERE tenant_id = $1 AND id = ANY($2)",
            &params,
        ),
        client.query(
            "SELECT customer_id, kind, account_id, partner_account_id, linked_at \
             FROM vendor_accounts WHERE tenant_id = $1 AND customer_id = ANY($2) \
             ORDER BY customer_id, linked_at, account_id",
            &params,
        ),
        client.query(
            "SELECT id, customer_id, kind, vendor FROM service_actions \
             WHERE tenant_id = $1 AND customer_id = ANY($2) AND status IN ('PENDING', 'RUNNING') \
             ORDER BY id",
            &params,
        ),
        client.query(
            "SELECT DISTINCT ON (customer_id) customer_id, kind, automatic FROM service_actions \
             WHERE tenant_id = $1 AND customer_id = ANY($2) AND kind IN ('SUSPEND', 'RESUME') \
             AND status <> 'FAILED' ORDER BY customer_id, id DESC",
            &params,
        ),
    )?;
    let mut out = HashMap::with_capacity(customers.len());
    for row in customers {
        let status: &str = row.try_get(1)?;
        out.insert(
            row.try_get::<_, String>(0)?,
            PolicyCustomer {
                status: status.parse().map_err(corrupt)?,
                links: Vec::new(),
                open: Vec::new(),
                last_suspension: None,
            },
        );
    }
    for row in links {
        let Some(customer) = out.get_mut(row.try_get::<_, &str>(0)?) else {
            continue;
        };
        customer.links.push(VendorAccountLink {
            kind: row.try_get::<_, &str>(1)?.parse().map_err(corrupt)?,
            account_id: row.try_get(2)?,
            partner_account_id: row.try_get(3)?,
            linked_at: row.try_get::<_, DateTime<Utc>>(4)?,
        });
    }
    for row in open {
        let Some(customer) = out.get_mut(row.try_get::<_, &str>(1)?) else {
            continue;
        };
        customer.open.push(OpenAction {
            id: row.try_get(0)?,
            kind: row.try_get::<_, &str>(2)?.parse().map_err(corrupt)?,
            vendor: row
                .try_get::<_, Option<&str>>(3)?
                .map(str::parse)
                .transpose()
                .map_err(corrupt)?,
        });
    }
    for row in last {
        let Some(customer) = out.get_mut(row.try_get::<_, &str>(0)?) else {
            continue;
        };
        customer.last_suspension = Some((
            row.try_get::<_, &str>(1)?.parse().map_err(corrupt)?,
            row.try_get(2)?,
        ));
    }
    Ok(out)
}

pub(super) async fn insert(
    client: &Client,
    tenant_id: &str,
    actions: &[NewServiceAction],
) -> Result<()> {
    let now = Utc::now();
    for action in actions {
        client
            .execute(
                "INSERT INTO service_action_sequences (tenant_id, last_sequence) VALUES ($1, 0) \
                 ON CONFLICT DO NOTHING",
                &[&tenant_id],
            )
            .await?;
        let change: i64 = client
            .query_one(
                "UPDATE service_action_sequences SET last_sequence = last_sequence + 1 \
                 WHERE tenant_id = $1 RETURNING last_sequence",
                &[&tenant_id],
            )
            .await?
            .try_get(0)?;
        let credit_event = match &action.requester {
            Requester::CreditPolicy {
                credit_event_sequence,
            } => *credit_event_sequence,
            Requester::ApiKey { .. } => {
                return Err(Error::Internal(
                    "credit policy recorded an action asked for by an API key".into(),
                ));
            }
        };
        let inserted = client
            .execute(
                "INSERT INTO service_actions (id, tenant_id, customer_id, kind, status, reason, \
                 automatic, credit_event_sequence, change_sequence, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'PENDING', $5, TRUE, $6, $7, $8, $8) \
                 ON CONFLICT DO NOTHING",
                &[
                    &action.id,
                    &tenant_id,
                    &action.customer_id,
                    &action.kind.as_str(),
                    &action.reason,
                    &credit_event,
                    &change,
                    &now,
                ],
            )
            .await?;
        if inserted == 0 {
            tracing::warn!(action = %action.id, customer = %action.customer_id, "another service action opened first; the credit event names an action that was not recorded");
            continue;
        }
        for (position, step) in action.steps.iter().enumerate() {
            client
                .execute(
                    "INSERT INTO service_action_steps (action_id, position, tenant_id, \
                     partner_account_id, target_kind, target_account_id, target_tenant_id, \
                     status, attempts) VALUES ($1, $2, $3, $4, $5, $6, $7, 'PENDING', 0)",
                    &[
                        &action.id,
                        &(position as i32),
                        &tenant_id,
                        &step.partner_account_id,
                        &step.target.kind.as_str(),
                        &step.target.account_id,
                        &step.target.tenant_id,
                    ],
                )
                .await?;
        }
    }
    Ok(())
}
