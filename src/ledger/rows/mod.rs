//! The ledger's rows as the database holds them: usage lines and charge events. Each is
//! declared once ([`ledger_row!`]): its columns in table order, each with its Rust value, its
//! Diesel SQL type, its PostgreSQL type and how it is read from the domain value it stores. The
//! Diesel table and row, the UNNEST statements (Diesel for re-rates, tokio-postgres for
//! changed lines), the binary COPY encoder and the decoder of PostgreSQL rows all follow from
//! that declaration; adding a column is one line here and the migrations.
mod binary;

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::serialize::ToSql;
use diesel::sql_types::HasSqlType;
use rust_decimal::Decimal;

use crate::domain::charges::ChargeEvent;
use crate::domain::error::{Error, Result};
use crate::domain::ledger::LedgerLine;
use crate::domain::ledger_append::NumberedEvent;
use crate::domain::line_key::LineKey;
use crate::domain::money::Currency;
use crate::domain::rating::{RatedAmount, UnratedReason};
use crate::domain::subscription_record::charge_unit;
use crate::domain::usage::{UsageKey, UsageLine};
use crate::store::sql_types::{DbDecimal, DbTime};
pub(super) use binary::CopyRows;

/// Rows per multi-row INSERT with a bind parameter per cell: 24 columns stays under SQLite's
/// limit of 32766 parameters.
pub const BATCH_ROWS: usize = 1000;

/// A column's value as the domain yields it, turned into the Diesel row's field.
pub trait IntoColumn<C> {
    fn into_column(self) -> C;
}

macro_rules! into_column {
    ($($from:ty => $to:ty: |$v:ident| $conv:expr;)+) => {
        $(impl IntoColumn<$to> for $from {
            fn into_column(self) -> $to {
                let $v = self;
                $conv
            }
        })+
    };
}

into_column! {
    &str => String: |v| v.to_string();
    &[u8] => Vec<u8>: |v| v.to_vec();
    bool => bool: |v| v;
    i64 => i64: |v| v;
    Decimal => DbDecimal: |v| DbDecimal(v);
    Option<Decimal> => Option<DbDecimal>: |v| v.map(DbDecimal);
    DateTime<Utc> => DbTime: |v| DbTime(v);
    Option<&str> => Option<String>: |v| v.map(str::to_string);
    Option<String> => Option<String>: |v| v;
}

/// Binds one column array of an UNNEST select list: `unnest($n::<cast>)`, comma-separated after
/// the first. Set-returning functions in the select list advance in lockstep (the arrays have
/// equal lengths) without materializing anything, where `SELECT * FROM UNNEST($1, …, $24)`
/// fills a tuplestore per array: for 5,000 rows of 24 columns, ~3 ms against ~18 ms on the
/// server.
pub fn bind_column<'b, ST, U>(
    out: &mut AstPass<'_, 'b, Pg>,
    first: bool,
    value: &'b U,
    cast: &str,
) -> QueryResult<()>
where
    Pg: HasSqlType<ST>,
    U: ToSql<ST, Pg>,
{
    if !first {
        out.push_sql(", ");
    }
    out.push_sql("unnest(");
    out.push_bind_param::<ST, U>(value)?;
    out.push_sql(cast);
    out.push_sql(")");
    Ok(())
}

/// Declares a ledger row; see the module documentation. `$helpers` names the module of what
/// follows from the declaration beside the Diesel table and row.
macro_rules! ledger_row {
    (
        $(#[$doc:meta])*
        $table:ident ($($key:ident),+) as $row:ident, helpers $helpers:ident;
        from $source:ty as $src:ident, with ($($ctx:ident: $ctx_ty:ty),*) {
            $($col:ident: $rust:ty = $sql:ty, $pg:ident <- $get:expr;)+
        }
        $(on conflict ($($conflict:ident),+) replace { $($replaced:ident),+ })?
    ) => {
        diesel::table! {
            use diesel::sql_types::*;
            use crate::store::sql_types::{Exact, Instant};

            $table ($($key),+) {
                $($col -> $sql,)+
            }
        }

        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Queryable, QueryableByName, Selectable, Insertable)]
        #[diesel(table_name = $table, treat_none_as_default_value = false)]
        pub struct $row {
            $(pub $col: $rust,)+
        }

        impl $row {
            /// The row that stores `$src`.
            pub fn of($src: &$source, $($ctx: $ctx_ty),*) -> Self {
                $row {
                    $($col: IntoColumn::into_column($get),)+
                }
            }
        }

        // Every declaration gets the whole set; each table uses those its writes need.
        #[allow(dead_code)]
        pub mod $helpers {
            use super::*;
            use tokio_postgres::types::{ToSql as PgToSql, Type};

            /// The columns in table order.
            pub const NAMES: &[&str] = &[$(stringify!($col)),+];
            /// Each column's PostgreSQL type.
            pub const PG_TYPES: &[Type] = &[$(Type::$pg),+];

            /// `a, b, c`: the columns as a select or insert list.
            pub fn columns() -> &'static str {
                static COLUMNS: LazyLock<String> = LazyLock::new(|| NAMES.join(", "));
                &COLUMNS
            }

            /// `p.a, p.b, p.c`: the columns of the row named `alias`.
            pub fn columns_of(alias: &str) -> String {
                NAMES.iter().map(|c| format!("{alias}.{c}")).collect::<Vec<_>>().join(", ")
            }

            pub fn copy_sql() -> &'static str {
                static SQL: LazyLock<String> = LazyLock::new(|| {
                    format!(
                        "COPY {} ({}) FROM STDIN (FORMAT binary)",
                        stringify!($table),
                        columns()
                    )
                });
                &SQL
            }

            /// An empty COPY buffer sized for `rows` rows.
            pub fn copy_rows(rows: usize) -> CopyRows {
                // Rows are ~250-400 bytes.
                CopyRows::new(NAMES.len() as i16, rows * 384)
            }

            /// Writes `$src` as one row of binary COPY data.
            pub fn copy(rows: &mut CopyRows, $src: &$source, $($ctx: $ctx_ty),*) -> Result<()> {
                rows.row();
                $(rows.field($get, &Type::$pg)?;)+
                Ok(())
            }

            /// A row read through tokio-postgres with the columns in table order.
            #[allow(unused_assignments)] // the counter's last step
            pub fn decode(row: &tokio_postgres::Row) -> std::result::Result<$row, tokio_postgres::Error> {
                let mut at = 0usize;
                $(
                    let $col: $rust = row.try_get(at)?;
                    at += 1;
                )+
                Ok($row { $($col,)+ })
            }

            /// `INSERT INTO t (…) SELECT unnest($1::type[]), …`: one array parameter per column.
            pub fn unnest_insert_sql() -> &'static str {
                static SQL: LazyLock<String> = LazyLock::new(|| {
                    let arrays: Vec<String> = PG_TYPES
                        .iter()
                        .enumerate()
                        .map(|(i, ty)| format!("unnest(${}::{}[])", i + 1, ty.name()))
                        .collect();
                    format!("INSERT INTO {} ({}) SELECT {}", stringify!($table), columns(), arrays.join(", "))
                });
                &SQL
            }

            /// Runs [`unnest_insert_sql`] with `tail` after it (an ON CONFLICT clause, or
            /// nothing) on `client`, each column of `sources` bound as one array.
            #[allow(unused_variables)] // a column need not read the source (the tenant)
            pub async fn unnest_insert(
                client: &tokio_postgres::Client,
                tail: &str,
                sources: &[$source],
                $($ctx: $ctx_ty),*
            ) -> std::result::Result<u64, tokio_postgres::Error> {
                let params: Vec<Box<dyn PgToSql + Sync + Send + '_>> = vec![$(
                    Box::new(sources.iter().map(|$src| $get).collect::<Vec<_>>())
                ),+];
                let params: Vec<&(dyn PgToSql + Sync)> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn PgToSql + Sync))
                    .collect();
                let sql = format!("{}{tail}", unnest_insert_sql());
                client.execute(sql.as_str(), &params).await
            }

            /// Rows as one vector per column, for the Diesel UNNEST statement ([`Unnest`]).
            #[derive(Default)]
            pub struct Columns {
                $(pub $col: Vec<$rust>,)+
            }

            impl From<Vec<$row>> for Columns {
                fn from(rows: Vec<$row>) -> Self {
                    let mut columns = Columns::default();
                    for row in rows {
                        $(columns.$col.push(row.$col);)+
                    }
                    columns
                }
            }

            /// The UNNEST insert of rows through Diesel, with `conflict` after it (an ON CONFLICT
            /// clause, or nothing). Unlike `sql_query`, whose SQL diesel cannot know to be fixed,
            /// it is safe to cache: every execution after the first on a connection skips the
            /// Parse round trip, so pipelined statements go out back to back.
            pub struct Unnest {
                pub columns: Columns,
                pub conflict: &'static str,
            }

            impl diesel::query_builder::QueryId for Unnest {
                type QueryId = ();
                // Cached by its SQL text.
                const HAS_STATIC_QUERY_ID: bool = false;
            }

            impl QueryFragment<Pg> for Unnest {
                #[allow(unused_assignments)] // the separator's last step
                fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
                    use diesel::sql_types::*;
                    use crate::store::sql_types::{Exact, Instant};
                    out.push_sql(concat!("INSERT INTO ", stringify!($table), " ("));
                    out.push_sql(columns());
                    out.push_sql(") SELECT ");
                    let mut first = true;
                    $(
                        bind_column::<Array<$sql>, _>(
                            &mut out,
                            first,
                            &self.columns.$col,
                            concat!("::", stringify!($pg), "[]"),
                        )?;
                        first = false;
                    )+
                    out.push_sql(self.conflict);
                    Ok(())
                }
            }

            /// Inserts rows through sync Diesel on SQLite (at most [`BATCH_ROWS`] at once).
            pub fn sqlite_insert(
                conn: &mut diesel::SqliteConnection,
                rows: &[$row],
            ) -> QueryResult<usize> {
                diesel::RunQueryDsl::execute(diesel::insert_into($table::table).values(rows), conn)
            }

            $(
                /// ` ON CONFLICT (…) DO UPDATE SET c = EXCLUDED.c, …`: a stored row is replaced.
                pub fn on_conflict_sql() -> &'static str {
                    static SQL: LazyLock<String> = LazyLock::new(|| {
                        let conflict: &[&str] = &[$(stringify!($conflict)),+];
                        let set: Vec<String> = [$(stringify!($replaced)),+]
                            .iter()
                            .map(|c| format!("{c} = EXCLUDED.{c}"))
                            .collect();
                        format!(" ON CONFLICT ({}) DO UPDATE SET {}", conflict.join(", "), set.join(", "))
                    });
                    &SQL
                }

                /// Inserts rows through sync Diesel on SQLite, replacing stored ones.
                pub fn sqlite_upsert(
                    conn: &mut diesel::SqliteConnection,
                    rows: &[$row],
                ) -> QueryResult<usize> {
                    use diesel::upsert::excluded;
                    let query = diesel::insert_into($table::table)
                        .values(rows)
                        .on_conflict(($($table::$conflict),+))
                        .do_update()
                        .set(($($table::$replaced.eq(excluded($table::$replaced)),)+));
                    diesel::RunQueryDsl::execute(query, conn)
                }
            )?
        }
    };
}

ledger_row! {
    /// A usage line: the vendor's latest statement for one usage key, with its current rating.
    usage_lines (line_key) as UsageLineRow, helpers usage_line_columns;
    from LedgerLine as line, with (tenant_id: &str, now: DateTime<Utc>) {
        tenant_id: String = Text, TEXT <- tenant_id;
        line_key: Vec<u8> = Binary, BYTEA <- line.line_key.as_bytes();
        partner_account_id: String = Text, TEXT <- line.partner_account_id.as_str();
        vendor: String = Text, TEXT <- line.vendor.as_str();
        vendor_account_id: String = Text, TEXT <- line.usage.key.vendor_account_id.as_str();
        service: String = Text, TEXT <- line.usage.key.service.as_str();
        meter: String = Text, TEXT <- line.usage.key.meter.as_str();
        region: String = Text, TEXT <- line.usage.key.region.as_str();
        window_start: DbTime = Instant, TIMESTAMPTZ <- line.usage.key.window_start;
        window_end: DbTime = Instant, TIMESTAMPTZ <- line.usage.window_end;
        meter_name: String = Text, TEXT <- line.usage.meter_name.as_str();
        quantity: DbDecimal = Exact, NUMERIC <- line.usage.quantity;
        unit: String = Text, TEXT <- line.usage.unit.as_str();
        cost: DbDecimal = Exact, NUMERIC <- line.usage.cost;
        list_cost: Option<DbDecimal> = Nullable<Exact>, NUMERIC <- line.usage.list_cost;
        currency: String = Text, TEXT <- line.usage.currency.as_str();
        estimated: bool = Bool, BOOL <- line.usage.estimated;
        removed: bool = Bool, BOOL <- line.removed;
        customer_id: Option<String> = Nullable<Text>, TEXT <- line.customer_id.as_deref();
        rated_amount: Option<DbDecimal> = Nullable<Exact>, NUMERIC <- line.rating.as_ref().map(|r| r.amount);
        rated_currency: Option<String> = Nullable<Text>, TEXT <- line.rating.as_ref().map(|r| r.currency.code());
        rule_id: Option<String> = Nullable<Text>, TEXT <- line.rating.as_ref().map(|r| r.rule_id.as_str());
        unrated_reason: Option<String> = Nullable<Text>, TEXT <- line.unrated_reason.as_ref().map(encode_reason);
        updated_at: DbTime = Instant, TIMESTAMPTZ <- now;
        vendor_tenant_id: Option<String> = Nullable<Text>, TEXT <- line.usage.vendor_tenant_id.as_deref();
    }
    // What identifies the line (its key and the usage key it hashes) stays; the rest is restated.
    on conflict (line_key) replace {
        window_end, meter_name, quantity, unit, cost, list_cost, currency, estimated, removed,
        customer_id, rated_amount, rated_currency, rule_id, unrated_reason, updated_at,
        vendor_tenant_id
    }
}

ledger_row! {
    /// A charge event: one numbered change of a usage line's rated value.
    charge_events (tenant_id, sequence) as ChargeEventRow, helpers charge_event_columns;
    from NumberedEvent as numbered, with (tenant_id: &str, now: DateTime<Utc>) {
        tenant_id: String = Text, TEXT <- tenant_id;
        sequence: i64 = BigInt, INT8 <- numbered.sequence;
        line_key: Vec<u8> = Binary, BYTEA <- numbered.event.line_key.as_bytes();
        customer_id: String = Text, TEXT <- numbered.event.customer_id.as_str();
        kind: String = Text, TEXT <- numbered.event.kind.as_str();
        amount: DbDecimal = Exact, NUMERIC <- numbered.event.amount;
        currency: String = Text, TEXT <- numbered.event.currency.code();
        quantity: DbDecimal = Exact, NUMERIC <- numbered.event.quantity;
        vendor: String = Text, TEXT <- numbered.event.vendor.as_str();
        service: String = Text, TEXT <- numbered.event.service.as_str();
        meter: String = Text, TEXT <- numbered.event.meter.as_str();
        window_start: DbTime = Instant, TIMESTAMPTZ <- numbered.event.window_start;
        recorded_at: DbTime = Instant, TIMESTAMPTZ <- now;
    }
}

/// Stored form of an unrated reason: its code, with the currency pair for FX.
pub fn encode_reason(reason: &UnratedReason) -> String {
    match reason {
        UnratedReason::NoFxRate { from, to } => format!("NO_FX_RATE:{from}:{to}"),
        UnratedReason::UnknownCurrency(code) => format!("UNKNOWN_CURRENCY:{code}"),
        UnratedReason::BelowCost { rule_id } => format!("BELOW_COST:{rule_id}"),
        other => other.code().to_string(),
    }
}

fn decode_reason(stored: &str) -> Result<UnratedReason> {
    let mut parts = stored.split(':');
    Ok(match (parts.next(), parts.next(), parts.next()) {
        (Some("UNKNOWN_VENDOR_ACCOUNT"), None, None) => UnratedReason::UnknownVendorAccount,
        (Some("NO_PRICE_RULE"), None, None) => UnratedReason::NoPriceRule,
        (Some("OVERFLOW"), None, None) => UnratedReason::Overflow,
        (Some("NO_FX_RATE"), Some(from), Some(to)) => UnratedReason::NoFxRate {
            from: from.into(),
            to: to.into(),
        },
        (Some("UNKNOWN_CURRENCY"), Some(code), None) => UnratedReason::UnknownCurrency(code.into()),
        (Some("BELOW_COST"), Some(rule_id), None) => UnratedReason::BelowCost {
            rule_id: rule_id.into(),
        },
        _ => return Err(Error::Internal(format!("stored unrated reason {stored:?}"))),
    })
}

impl UsageLineRow {
    pub fn into_line(self) -> Result<LedgerLine> {
        let key = hex::encode(&self.line_key);
        let corrupt = |e: String| Error::Internal(format!("stored usage line {key}: {e}"));
        let line_key = LineKey::from_bytes(&self.line_key)
            .ok_or_else(|| corrupt("the key is not 24 bytes".into()))?;
        let vendor = self.vendor.parse().map_err(corrupt)?;
        let rating = match (self.rated_amount, &self.rated_currency, &self.rule_id) {
            (Some(amount), Some(currency), Some(rule_id)) => Some(RatedAmount {
                amount: amount.0,
                currency: Currency::parse("rated_currency", currency)
                    .map_err(|e| corrupt(e.to_string()))?,
                rule_id: rule_id.clone(),
            }),
            _ => None,
        };
        let unrated_reason = self
            .unrated_reason
            .as_deref()
            .map(decode_reason)
            .transpose()?;
        Ok(LedgerLine {
            line_key,
            partner_account_id: self.partner_account_id,
            vendor,
            usage: UsageLine {
                key: UsageKey {
                    vendor_account_id: self.vendor_account_id,
                    service: self.service,
                    meter: self.meter,
                    region: self.region,
                    window_start: self.window_start.0,
                },
                window_end: self.window_end.0,
                meter_name: self.meter_name,
                quantity: self.quantity.0,
                unit: self.unit,
                cost: self.cost.0,
                list_cost: self.list_cost.map(|d| d.0),
                currency: self.currency,
                estimated: self.estimated,
                vendor_tenant_id: self.vendor_tenant_id,
            },
            removed: self.removed,
            customer_id: self.customer_id,
            rating,
            unrated_reason,
        })
    }
}

// Charge reads join each event to its usage line for the unit.
diesel::allow_tables_to_appear_in_same_query!(charge_events, usage_lines);

impl ChargeEventRow {
    /// The event, counting `unit` (its usage line's, or none for a line with no usage line:
    /// a subscription line's is then seats).
    pub fn into_event(self, unit: Option<String>) -> Result<ChargeEvent> {
        let unit = charge_unit(unit, &self.line_key);
        let corrupt =
            |e: String| Error::Internal(format!("stored charge event {}: {e}", self.sequence));
        Ok(ChargeEvent {
            line_key: LineKey::from_bytes(&self.line_key)
                .ok_or_else(|| corrupt("the line key is not 24 bytes".into()))?,
            kind: self.kind.parse().map_err(corrupt)?,
            vendor: self.vendor.parse().map_err(corrupt)?,
            currency: Currency::parse("currency", &self.currency)
                .map_err(|e| corrupt(e.to_string()))?,
            sequence: self.sequence,
            customer_id: self.customer_id,
            amount: self.amount.0,
            quantity: self.quantity.0,
            service: self.service,
            meter: self.meter,
            window_start: self.window_start.0,
            recorded_at: self.recorded_at.0,
            unit,
        })
    }
}
