//! The steps of service actions: one vendor account each, with its attempts and last error.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::for_each_backend;
use super::service_action_schema::{service_action_steps, service_actions};
use super::sql_types::DbTime;
use crate::domain::error::{Error, Result};
use crate::domain::service_action::{ActionKind, ServiceStep};
use crate::domain::service_control::ControlTarget;

#[derive(Queryable, Selectable)]
#[diesel(table_name = service_action_steps)]
struct StepRow {
    action_id: String,
    partner_account_id: String,
    target_kind: String,
    target_account_id: String,
    target_tenant_id: Option<String>,
    status: String,
    attempts: i32,
    last_error: Option<String>,
    not_before: Option<DbTime>,
    started_at: Option<DbTime>,
    finished_at: Option<DbTime>,
    enrollment_order: Option<String>,
    vendor_operation_id: Option<String>,
}

fn corrupt(action_id: &str, what: String) -> Error {
    Error::Internal(format!("stored step of service action {action_id}: {what}"))
}

impl StepRow {
    fn into_step(self) -> Result<(String, ServiceStep)> {
        let kind = self
            .target_kind
            .parse()
            .map_err(|e| corrupt(&self.action_id, e))?;
        let status = self
            .status
            .parse()
            .map_err(|e| corrupt(&self.action_id, e))?;
        let mut target = ControlTarget::new(kind, self.target_account_id);
        target.tenant_id = self.target_tenant_id;
        let enrollment = self
            .enrollment_order
            .map(|json| serde_json::from_str(&json))
            .transpose()
            .map_err(|e| corrupt(&self.action_id, format!("enrollment order: {e}")))?;
        Ok((
            self.action_id,
            ServiceStep {
                partner_account_id: self.partner_account_id,
                target,
                status,
                attempts: u32::try_from(self.attempts).unwrap_or(0),
                last_error: self.last_error,
                not_before: self.not_before.map(|t| t.0),
                started_at: self.started_at.map(|t| t.0),
                finished_at: self.finished_at.map(|t| t.0),
                enrollment,
                operation_id: self.vendor_operation_id,
            },
        ))
    }
}

fn attempts(step: &ServiceStep) -> i32 {
    i32::try_from(step.attempts).unwrap_or(i32::MAX)
}

fn order_json(step: &ServiceStep) -> Result<Option<String>> {
    step.enrollment
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| Error::Internal(format!("encoding an enrollment order: {e}")))
}

for_each_backend! {
    pub async fn insert_all(conn: &mut Conn, tenant_id: &str, action_id: &str, steps: &[ServiceStep]) -> Result<()> {
        for (position, step) in steps.iter().enumerate() {
            diesel::insert_into(service_action_steps::table)
                .values((
                    service_action_steps::action_id.eq(action_id),
                    service_action_steps::position.eq(position as i32),
                    service_action_steps::tenant_id.eq(tenant_id),
                    service_action_steps::partner_account_id.eq(&step.partner_account_id),
                    service_action_steps::target_kind.eq(step.target.kind.as_str()),
                    service_action_steps::target_account_id.eq(&step.target.account_id),
                    service_action_steps::target_tenant_id.eq(step.target.tenant_id.as_deref()),
                    service_action_steps::status.eq(step.status.as_str()),
                    service_action_steps::attempts.eq(attempts(step)),
                    service_action_steps::last_error.eq(step.last_error.as_deref()),
                    service_action_steps::not_before.eq(step.not_before.map(DbTime)),
                    service_action_steps::started_at.eq(step.started_at.map(DbTime)),
                    service_action_steps::finished_at.eq(step.finished_at.map(DbTime)),
                    service_action_steps::enrollment_order.eq(order_json(step)?),
                    service_action_steps::vendor_operation_id.eq(step.operation_id.as_deref()),
                ))
                .execute(conn)
                .await?;
        }
        Ok(())
    }

    /// Removes an action's steps (a queued suspend's, written again; see
    /// `service_action_runs::cover_new_links`).
    pub async fn delete_all(conn: &mut Conn, action_id: &str) -> Result<()> {
        diesel::delete(service_action_steps::table.filter(service_action_steps::action_id.eq(action_id)))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// The steps of each of `action_ids`, in position order.
    pub async fn for_actions(conn: &mut Conn, action_ids: &[&str]) -> Result<HashMap<String, Vec<ServiceStep>>> {
        let rows: Vec<StepRow> = service_action_steps::table
            .filter(service_action_steps::action_id.eq_any(action_ids))
            .select(StepRow::as_select())
            .order((service_action_steps::action_id, service_action_steps::position))
            .load(conn)
            .await?;
        let mut out: HashMap<String, Vec<ServiceStep>> = HashMap::new();
        for row in rows {
            let (action_id, step) = row.into_step()?;
            out.entry(action_id).or_default().push(step);
        }
        Ok(out)
    }

    /// Writes a step's progress.
    pub async fn update(conn: &mut Conn, action_id: &str, position: usize, step: &ServiceStep) -> Result<()> {
        diesel::update(service_action_steps::table.find((action_id, position as i32)))
            .set((
                service_action_steps::target_account_id.eq(&step.target.account_id),
                service_action_steps::vendor_operation_id.eq(step.operation_id.as_deref()),
                service_action_steps::status.eq(step.status.as_str()),
                service_action_steps::attempts.eq(attempts(step)),
                service_action_steps::last_error.eq(step.last_error.as_deref()),
                service_action_steps::not_before.eq(step.not_before.map(DbTime)),
                service_action_steps::started_at.eq(step.started_at.map(DbTime)),
                service_action_steps::finished_at.eq(step.finished_at.map(DbTime)),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Closures the partner account's open purges will make (steps not yet ended), which the
    /// closure quota counts as made now.
    pub async fn open_closures(conn: &mut Conn, partner_account_id: &str) -> Result<i64> {
        Ok(service_action_steps::table
            .inner_join(service_actions::table.on(service_actions::id.eq(service_action_steps::action_id)))
            .filter(service_action_steps::partner_account_id.eq(partner_account_id))
            .filter(service_actions::kind.eq(ActionKind::Purge.as_str()))
            .filter(service_action_steps::status.eq_any(["PENDING", "RUNNING"]))
            .count()
            .get_result(conn)
            .await?)
    }

    /// When the partner account's accounts were closed by purges finished since `since`, for
    /// AWS's closure quota.
    pub async fn closures_since(conn: &mut Conn, partner_account_id: &str, since: DateTime<Utc>) -> Result<Vec<DateTime<Utc>>> {
        let rows: Vec<Option<DbTime>> = service_action_steps::table
            .inner_join(service_actions::table.on(service_actions::id.eq(service_action_steps::action_id)))
            .filter(service_action_steps::partner_account_id.eq(partner_account_id))
            .filter(service_actions::kind.eq(ActionKind::Purge.as_str()))
            .filter(service_action_steps::status.eq("SUCCEEDED"))
            .filter(service_action_steps::finished_at.ge(DbTime(since)))
            .select(service_action_steps::finished_at)
            .load(conn)
            .await?;
        Ok(rows.into_iter().flatten().map(|t| t.0).collect())
    }
}

impl super::Store {
    pub async fn closures_since(
        &self,
        partner_account_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>> {
        super::dispatch!(self, read, self::closures_since(partner_account_id, since))
    }
}
