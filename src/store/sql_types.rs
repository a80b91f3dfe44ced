//! Column types that read and write the same Rust value on both backends, so one schema and one
//! body of query code serve PostgreSQL and SQLite.
//!
//! - [`Exact`]: exact decimals. PostgreSQL `NUMERIC`; SQLite `TEXT` (SQLite has no exact decimal,
//!   and rust_decimal has no SQLite mapping).
//! - [`Instant`]: UTC instants. PostgreSQL `TIMESTAMPTZ`; SQLite `BIGINT` microseconds since the
//!   Unix epoch, which sort and compare correctly.
use chrono::{DateTime, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{BigInt, Numeric, Text, Timestamptz};
use diesel::sqlite::{Sqlite, SqliteValue};
use rust_decimal::Decimal;

#[derive(
    Debug, Clone, Copy, Default, diesel::sql_types::SqlType, diesel::query_builder::QueryId,
)]
#[diesel(postgres_type(oid = 1700, array_oid = 1231))]
#[diesel(sqlite_type(name = "Text"))]
pub struct Exact;

#[derive(
    Debug, Clone, Copy, Default, diesel::sql_types::SqlType, diesel::query_builder::QueryId,
)]
#[diesel(postgres_type(oid = 1184, array_oid = 1185))]
#[diesel(sqlite_type(name = "Long"))]
pub struct Instant;

/// A decimal column value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Exact)]
pub struct DbDecimal(pub Decimal);

/// An instant column value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, AsExpression, FromSqlRow)]
#[diesel(sql_type = Instant)]
pub struct DbTime(pub DateTime<Utc>);

impl ToSql<Exact, Pg> for DbDecimal {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <Decimal as ToSql<Numeric, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<Exact, Pg> for DbDecimal {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        <Decimal as FromSql<Numeric, Pg>>::from_sql(value).map(DbDecimal)
    }
}

impl ToSql<Exact, Sqlite> for DbDecimal {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.to_string());
        Ok(IsNull::No)
    }
}

impl FromSql<Exact, Sqlite> for DbDecimal {
    fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, Sqlite>>::from_sql(value)?;
        let decimal = Decimal::from_str_exact(&text)
            .map_err(|e| format!("stored decimal {text:?} is not exact: {e}"))?;
        Ok(DbDecimal(decimal))
    }
}

impl ToSql<Instant, Pg> for DbTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <DateTime<Utc> as ToSql<Timestamptz, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<Instant, Pg> for DbTime {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        <DateTime<Utc> as FromSql<Timestamptz, Pg>>::from_sql(value).map(DbTime)
    }
}

impl ToSql<Instant, Sqlite> for DbTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.timestamp_micros());
        Ok(IsNull::No)
    }
}

impl FromSql<Instant, Sqlite> for DbTime {
    fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let micros = <i64 as FromSql<BigInt, Sqlite>>::from_sql(value)?;
        DateTime::from_timestamp_micros(micros)
            .map(DbTime)
            .ok_or_else(|| format!("stored instant {micros} is out of range").into())
    }
}

/// The same values read through tokio-postgres (the ledger's COPY connections).
impl<'a> tokio_postgres::types::FromSql<'a> for DbDecimal {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        <Decimal as tokio_postgres::types::FromSql>::from_sql(ty, raw).map(DbDecimal)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <Decimal as tokio_postgres::types::FromSql>::accepts(ty)
    }
}

impl<'a> tokio_postgres::types::FromSql<'a> for DbTime {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        <DateTime<Utc> as tokio_postgres::types::FromSql>::from_sql(ty, raw).map(DbTime)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <DateTime<Utc> as tokio_postgres::types::FromSql>::accepts(ty)
    }
}
