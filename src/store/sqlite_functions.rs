//! Functions registered on every SQLite connection where SQLite has no equivalent of
//! PostgreSQL's: `mspgw_local_date(micros, time zone)` (SQLite has no time zones), and
//! `mspgw_decimal_sum(text)` and `mspgw_decimal_add(text, text)` (its arithmetic goes through
//! floats; money must stay exact). Migrations and ledger writes call them.
use chrono::DateTime;
use diesel::SqliteConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::sqlite::SqliteAggregateFunction;
use rust_decimal::Decimal;

use crate::domain::ledger_append::usage_date;

diesel::define_sql_function! {
    fn mspgw_local_date(micros: BigInt, zone: Text) -> Text;
}

diesel::define_sql_function! {
    #[aggregate]
    fn mspgw_decimal_sum(value: Text) -> Text;
}

diesel::define_sql_function! {
    fn mspgw_decimal_add(a: Text, b: Text) -> Nullable<Text>;
}

/// Exact sum of decimal text; a value that is not a decimal fails the migration.
#[derive(Default)]
struct DecimalSum(Decimal);

impl SqliteAggregateFunction<String> for DecimalSum {
    type Output = String;

    fn step(&mut self, value: String) {
        match Decimal::from_str_exact(&value) {
            Ok(d) => self.0 += d,
            Err(e) => panic!("stored decimal {value:?}: {e}"),
        }
    }

    fn finalize(sum: Option<Self>) -> String {
        sum.unwrap_or_default().0.to_string()
    }
}

/// `a + b` exactly; NULL when either is not a decimal or the sum overflows, which the NOT NULL
/// columns it writes turn into a failed statement (and a rolled-back transaction).
fn decimal_add(a: &str, b: &str) -> Option<String> {
    let a = Decimal::from_str_exact(a).ok()?;
    let b = Decimal::from_str_exact(b).ok()?;
    a.checked_add(b).map(|sum| sum.to_string())
}

pub(super) fn register(conn: &mut SqliteConnection) -> diesel::QueryResult<()> {
    mspgw_local_date_utils::register_impl(conn, |micros: i64, zone: String| {
        let zone: chrono_tz::Tz = zone.parse().unwrap_or(chrono_tz::Tz::UTC);
        let at = DateTime::from_timestamp_micros(micros).unwrap_or_default();
        usage_date(at, zone).format("%Y-%m-%d").to_string()
    })?;
    mspgw_decimal_sum_utils::register_impl::<DecimalSum, _>(conn)?;
    mspgw_decimal_add_utils::register_impl(conn, |a: String, b: String| decimal_add(&a, &b))
}

#[cfg(test)]
mod tests {
    use super::decimal_add;

    #[test]
    fn decimal_add_is_exact_and_refuses_what_is_not_a_decimal() {
        assert_eq!(
            decimal_add("0.1", "0.2").as_deref(),
            Some("0.3"),
            "floats would give 0.30000000000000004"
        );
        assert_eq!(
            decimal_add("-1.0000000001", "0.0000000001").as_deref(),
            Some("-1.0000000000")
        );
        assert_eq!(decimal_add("1e3", "1"), None);
        assert_eq!(decimal_add("abc", "1"), None);
        assert_eq!(decimal_add("79228162514264337593543950335", "1"), None);
    }
}
