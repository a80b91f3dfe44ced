//! How much work is waiting, as operators watch it: open service actions and unfinished
//! close runs per tenant (the `/metrics` gauges are made from these).
use chrono::{DateTime, Utc};

/// One tenant's open service actions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActionQueue {
    pub tenant_id: String,
    /// Recorded, no step started yet.
    pub pending: i64,
    /// At least one step started.
    pub running: i64,
    /// When the oldest open action was recorded: an action open for long is stuck (a vendor
    /// refusing, no replica running the worker).
    pub oldest_open_since: Option<DateTime<Utc>>,
}

/// One tenant's close runs (`CloseBillingPeriods`) that have not finished: still running, or
/// interrupted and waiting to be resumed with their request id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CloseRunQueue {
    pub tenant_id: String,
    pub runs: i64,
    /// Customers those runs have still to close.
    pub customers_remaining: i64,
}

impl CloseRunQueue {
    /// The queue made of unfinished runs' (tenant, customers planned, customers done), one
    /// entry per tenant, in tenant order.
    pub fn per_tenant(runs: impl IntoIterator<Item = (String, i32, i32)>) -> Vec<CloseRunQueue> {
        let mut queues: std::collections::BTreeMap<String, CloseRunQueue> = Default::default();
        for (tenant_id, planned, done) in runs {
            let queue = queues
                .entry(tenant_id.clone())
                .or_insert_with(|| CloseRunQueue {
                    tenant_id,
                    ..Default::default()
                });
            queue.runs += 1;
            queue.customers_remaining += i64::from(planned.saturating_sub(done).max(0));
        }
        queues.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_runs_add_up_per_tenant() {
        let queues = CloseRunQueue::per_tenant([
            ("t2".to_string(), 10, 4),
            ("t1".to_string(), 5, 5),
            ("t2".to_string(), 3, 0),
            // A run whose planned count was overtaken (customers added mid-run) owes nothing.
            ("t1".to_string(), 2, 3),
        ]);
        assert_eq!(
            queues,
            [
                CloseRunQueue {
                    tenant_id: "t1".into(),
                    runs: 2,
                    customers_remaining: 0
                },
                CloseRunQueue {
                    tenant_id: "t2".into(),
                    runs: 2,
                    customers_remaining: 9
                },
            ]
        );
    }
}
