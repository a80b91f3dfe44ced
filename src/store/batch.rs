//! Multi-row writes. diesel-async cannot run Diesel's SQLite batch INSERT (Diesel builds it for
//! sync SQLite connections only), so each backend gets its own writer: PostgreSQL through
//! diesel-async, SQLite through sync Diesel on the connection's blocking thread. The statements
//! themselves are written once, in the macros below.
use diesel::result::QueryResult;
use diesel_async::AsyncPgConnection;
use futures::future::BoxFuture;

use super::SqliteConn;
use super::charges::ChargeEventRow;
use super::usage_lines::UsageLineRow;

/// INSERT … ON CONFLICT DO UPDATE of usage line rows.
macro_rules! upsert_usage_lines {
    ($rows:expr) => {{
        use diesel::prelude::*;
        use diesel::upsert::excluded;
        use $crate::store::schema::usage_lines as ul;
        diesel::insert_into(ul::table)
            .values($rows)
            .on_conflict((ul::tenant_id, ul::line_key))
            .do_update()
            .set((
                ul::window_end.eq(excluded(ul::window_end)),
                ul::meter_name.eq(excluded(ul::meter_name)),
                ul::quantity.eq(excluded(ul::quantity)),
                ul::unit.eq(excluded(ul::unit)),
                ul::cost.eq(excluded(ul::cost)),
                ul::list_cost.eq(excluded(ul::list_cost)),
                ul::currency.eq(excluded(ul::currency)),
                ul::estimated.eq(excluded(ul::estimated)),
                ul::removed.eq(excluded(ul::removed)),
                ul::customer_id.eq(excluded(ul::customer_id)),
                ul::rated_amount.eq(excluded(ul::rated_amount)),
                ul::rated_currency.eq(excluded(ul::rated_currency)),
                ul::rule_id.eq(excluded(ul::rule_id)),
                ul::unrated_reason.eq(excluded(ul::unrated_reason)),
                ul::updated_at.eq(excluded(ul::updated_at)),
            ))
    }};
}

macro_rules! insert_charge_events {
    ($rows:expr) => {
        diesel::insert_into($crate::store::schema::charge_events::table).values($rows)
    };
}

pub trait BatchWriter {
    fn upsert_usage_lines(&mut self, rows: Vec<UsageLineRow>) -> BoxFuture<'_, QueryResult<usize>>;
    fn insert_charge_events(
        &mut self,
        rows: Vec<ChargeEventRow>,
    ) -> BoxFuture<'_, QueryResult<usize>>;
}

impl BatchWriter for AsyncPgConnection {
    fn upsert_usage_lines(&mut self, rows: Vec<UsageLineRow>) -> BoxFuture<'_, QueryResult<usize>> {
        Box::pin(async move {
            diesel_async::RunQueryDsl::execute(upsert_usage_lines!(&rows), self).await
        })
    }

    fn insert_charge_events(
        &mut self,
        rows: Vec<ChargeEventRow>,
    ) -> BoxFuture<'_, QueryResult<usize>> {
        Box::pin(async move {
            diesel_async::RunQueryDsl::execute(insert_charge_events!(&rows), self).await
        })
    }
}

impl BatchWriter for SqliteConn {
    fn upsert_usage_lines(&mut self, rows: Vec<UsageLineRow>) -> BoxFuture<'_, QueryResult<usize>> {
        self.spawn_blocking(move |conn| {
            diesel::RunQueryDsl::execute(upsert_usage_lines!(&rows), conn)
        })
    }

    fn insert_charge_events(
        &mut self,
        rows: Vec<ChargeEventRow>,
    ) -> BoxFuture<'_, QueryResult<usize>> {
        self.spawn_blocking(move |conn| {
            diesel::RunQueryDsl::execute(insert_charge_events!(&rows), conn)
        })
    }
}
