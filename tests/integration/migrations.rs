//! Migrations go up, down and up again; concurrent runs wait on the lock instead of colliding;
//! a data-carrying migration (the ledger layout) moves existing rows to the new layout and back.
use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Duration, DurationRound, Utc};
use msp_gateway::domain::access::{Principal, Scope};
use msp_gateway::domain::charges::ChargeFilter;
use msp_gateway::domain::idempotency::{IdempotencyKey, Idempotent};
use msp_gateway::domain::ledger::ChargeKind;
use msp_gateway::domain::partner_account::PartnerAccountSpec;
use msp_gateway::domain::usage::{UsageKey, UsageLine};
use msp_gateway::domain::vendor::Vendor;
use msp_gateway::store::Store;
use msp_gateway::store::migrate::{self, Direction};
use rust_decimal::Decimal;

use crate::harness::{Backend, TestDatabase, fresh_request};

async fn up_down_up(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else {
        return;
    };
    let applied = migrate::run(&db.url, Direction::Up).await.unwrap();
    assert!(!applied.is_empty());
    assert!(
        migrate::run(&db.url, Direction::Up)
            .await
            .unwrap()
            .is_empty(),
        "idempotent"
    );
    let reverted = migrate::run(&db.url, Direction::RevertAll).await.unwrap();
    assert_eq!(reverted.len(), applied.len());
    let store = Store::connect(&db.url, &Default::default()).unwrap();
    assert!(
        store.tenant_count().await.is_err(),
        "tables are gone after revert"
    );
    drop(store);
    let again = migrate::run(&db.url, Direction::Up).await.unwrap();
    assert_eq!(again, applied);
    let store = Store::connect(&db.url, &Default::default()).unwrap();
    assert_eq!(store.tenant_count().await.unwrap(), 0);
}

async fn concurrent_migrations(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else {
        return;
    };
    let runs = (0..4).map(|_| {
        let url = db.url.clone();
        tokio::spawn(async move { migrate::run(&url, Direction::Up).await })
    });
    let results: Vec<Vec<String>> = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(|r| r.unwrap().expect("every replica starts"))
        .collect();
    let total: usize = results.iter().map(Vec::len).sum();
    let expected = results.iter().map(Vec::len).max().unwrap();
    assert_eq!(
        total, expected,
        "exactly one run applied the migrations: {results:?}"
    );
}

/// Plain SQL on a test database, for rows in a layout the store no longer reads or writes.
enum Sql {
    Postgres(Box<diesel_async::AsyncPgConnection>),
    Sqlite(diesel::SqliteConnection),
}

/// One text column named `v`: every check query below returns its values as text.
#[derive(diesel::QueryableByName)]
struct TextRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    v: String,
}

impl Sql {
    async fn open(url: &str) -> Sql {
        use diesel::Connection;
        use diesel_async::AsyncConnection;
        if url.starts_with("postgres") {
            Sql::Postgres(Box::new(
                diesel_async::AsyncPgConnection::establish(url)
                    .await
                    .expect("connect to PostgreSQL"),
            ))
        } else {
            let mut conn =
                diesel::SqliteConnection::establish(msp_gateway::store::sqlite_path(url))
                    .expect("open SQLite");
            diesel::connection::SimpleConnection::batch_execute(
                &mut conn,
                "PRAGMA busy_timeout = 10000;",
            )
            .unwrap();
            Sql::Sqlite(conn)
        }
    }

    async fn run(&mut self, sql: &str) {
        match self {
            Sql::Postgres(conn) => {
                diesel_async::SimpleAsyncConnection::batch_execute(&mut **conn, sql)
                    .await
                    .unwrap_or_else(|e| panic!("{e}: {sql}"))
            }
            Sql::Sqlite(conn) => diesel::connection::SimpleConnection::batch_execute(conn, sql)
                .unwrap_or_else(|e| panic!("{e}: {sql}")),
        }
    }

    /// The `v` column of every row of `sql`, sorted.
    async fn texts(&mut self, sql: &str) -> Vec<String> {
        let rows: Vec<TextRow> = match self {
            Sql::Postgres(conn) => {
                diesel_async::RunQueryDsl::load(diesel::sql_query(sql), &mut **conn).await
            }
            Sql::Sqlite(conn) => diesel::RunQueryDsl::load(diesel::sql_query(sql), conn),
        }
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
        let mut values: Vec<String> = rows.into_iter().map(|r| r.v).collect();
        values.sort();
        values
    }

    /// A timestamp literal: TIMESTAMPTZ on PostgreSQL, microseconds on SQLite.
    fn time(&self, t: DateTime<Utc>) -> String {
        match self {
            Sql::Postgres(_) => format!("'{}'", t.to_rfc3339()),
            Sql::Sqlite(_) => t.timestamp_micros().to_string(),
        }
    }

    /// `column` (bytes) as lowercase hex text.
    fn hex(&self, column: &str) -> String {
        match self {
            Sql::Postgres(_) => format!("encode({column}, 'hex')"),
            Sql::Sqlite(_) => format!("lower(hex({column}))"),
        }
    }

    /// How many of `tables` exist.
    async fn tables_present(&mut self, tables: &[&str]) -> usize {
        let names = tables
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = match self {
            Sql::Postgres(_) => format!(
                "SELECT table_name AS v FROM information_schema.tables \
                 WHERE table_schema = 'public' AND table_name IN ({names})"
            ),
            Sql::Sqlite(_) => {
                format!(
                    "SELECT name AS v FROM sqlite_master WHERE type = 'table' AND name IN ({names})"
                )
            }
        };
        self.texts(&sql).await.len()
    }

    /// Whether `table` has a column `column`.
    async fn has_column(&mut self, table: &str, column: &str) -> bool {
        let sql = match self {
            Sql::Postgres(_) => format!(
                "SELECT column_name AS v FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name = '{table}' AND column_name = '{column}'"
            ),
            Sql::Sqlite(_) => {
                format!(
                    "SELECT name AS v FROM pragma_table_info('{table}') WHERE name = '{column}'"
                )
            }
        };
        !self.texts(&sql).await.is_empty()
    }
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
}

const TENANT: &str = "tn_migrated";
/// Customers in Johannesburg (UTC+2) and in UTC.
const JOBURG: &str = "cus_migrated_joburg";
const UTC_CUSTOMER: &str = "cus_migrated_utc";
/// Partner accounts, numbered by (created_at, id): B first, then 0 and A (created together).
const PA_A: &str = "pa_migrated_a";
const PA_B: &str = "pa_migrated_b";
const PA_0: &str = "pa_migrated_0";

/// A usage line as the old layout stored it.
struct OldLine {
    account: &'static str,
    vendor_account: &'static str,
    meter: &'static str,
    window: DateTime<Utc>,
    quantity: &'static str,
    /// The line's current cost (= its rated amount: the tenant's markup is 0).
    cost: &'static str,
    customer: Option<&'static str>,
}

impl OldLine {
    fn usage_key(&self) -> UsageKey {
        UsageKey {
            vendor_account_id: self.vendor_account.into(),
            service: "Compute".into(),
            meter: self.meter.into(),
            region: String::new(),
            window_start: self.window,
        }
    }

    /// The usage line as a vendor would state it again (with `cost`).
    fn usage(&self, cost: &str) -> UsageLine {
        UsageLine {
            key: self.usage_key(),
            window_end: self.window + Duration::hours(1),
            meter_name: self.meter.into(),
            quantity: Decimal::from_str(self.quantity).unwrap(),
            unit: "h".into(),
            cost: Decimal::from_str(cost).unwrap(),
            list_cost: None,
            currency: "ZAR".into(),
            estimated: true,
            vendor_tenant_id: None,
        }
    }

    /// The old 32-hex key, computed as the old code did (independently of `LineKey`):
    /// SHA-256 over the partner account and the usage key, first 16 bytes.
    fn old_key(&self) -> String {
        use sha2::{Digest, Sha256};
        let key = self.usage_key();
        let mut hasher = Sha256::new();
        for part in [
            self.account,
            &key.vendor_account_id,
            &key.service,
            &key.meter,
            &key.region,
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0x1f]);
        }
        hasher.update(key.window_start.timestamp_micros().to_be_bytes());
        hex::encode(&hasher.finalize()[..16])
    }

    /// The new 24-byte key: prefix | window hour since the epoch (at least 0) | old key.
    fn new_key(&self) -> String {
        let prefix = match self.account {
            PA_B => 1u32,
            PA_A => 3,
            other => panic!("no lines through {other}"),
        };
        let hour = self.window.timestamp().div_euclid(3600).max(0) as u32;
        format!("{prefix:08x}{hour:08x}{}", self.old_key())
    }
}

/// A charge event as the old layout stored it: (sequence, line, kind, amount, quantity).
type OldEvent = (i64, usize, &'static str, &'static str, &'static str);

fn old_lines(now_hour: DateTime<Utc>) -> Vec<OldLine> {
    let line = |account, vendor_account, meter, window, quantity, cost, customer| OldLine {
        account,
        vendor_account,
        meter,
        window,
        quantity,
        cost,
        customer,
    };
    // 23:30 UTC on 2025-03-10 is 01:30 on 2025-03-11 in Johannesburg.
    let late = at("2025-03-10T23:30:00Z");
    vec![
        line(PA_A, "sim-j", "vm", late, "1.25", "1.5", Some(JOBURG)),
        line(PA_B, "sim-u", "vm", late, "1", "2", Some(UTC_CUSTOMER)),
        line(
            PA_A,
            "sim-j",
            "vm",
            at("2025-03-11T10:00:00Z"),
            "1",
            "0.3333333333333",
            Some(JOBURG),
        ),
        line(PA_A, "sim-j", "disk", late, "0.5", "5.5", Some(JOBURG)),
        // Before the epoch: the key's hour is clamped to 0.
        line(
            PA_B,
            "sim-u",
            "vm",
            at("1969-12-31T23:00:00Z"),
            "1",
            "0.01",
            Some(UTC_CUSTOMER),
        ),
        // In the current period of both customers.
        line(
            PA_A,
            "sim-j",
            "vm",
            now_hour,
            "2",
            "7.77777777777",
            Some(JOBURG),
        ),
        line(
            PA_B,
            "sim-u",
            "vm",
            now_hour,
            "3",
            "8.88888888888",
            Some(UTC_CUSTOMER),
        ),
        // Unrated: no customer owns the vendor account.
        line(PA_B, "sim-nobody", "vm", late, "1", "4", None),
    ]
}

/// Interleaved customers: runs J[1,2] U[3] J[4,5] U[6] J[7] U[8,9].
const OLD_EVENTS: [OldEvent; 9] = [
    (1, 0, "NEW", "1.1234567890123", "1.25"),
    (2, 2, "NEW", "0.3333333333333", "1"),
    (3, 1, "NEW", "2.0000000000001", "1"),
    (4, 3, "NEW", "5.5", "0.5"),
    (5, 0, "REVISION", "0.3765432109877", "0"),
    (6, 4, "NEW", "0.01", "1"),
    (7, 5, "NEW", "7.77777777777", "2"),
    (8, 6, "NEW", "8.88888888888", "3"),
    (9, 1, "REVISION", "-0.0000000000001", "0"),
];

fn zone_of(customer: &str) -> chrono_tz::Tz {
    match customer {
        JOBURG => chrono_tz::Tz::Africa__Johannesburg,
        _ => chrono_tz::Tz::UTC,
    }
}

/// Inserts the tenant, its customers, partner accounts, links, rule, lines and events.
async fn insert_old_layout(sql: &mut Sql, lines: &[OldLine]) {
    let t = |at: &str| sql.time(self::at(at));
    let epoch = sql.time(DateTime::from_timestamp(0, 0).unwrap());
    let mut script = format!(
        "INSERT INTO tenants (id, name, currency, time_zone, created_at) \
         VALUES ('{TENANT}', 'Migrated ISP', 'ZAR', 'Africa/Johannesburg', {});",
        t("2026-01-01T00:00:00Z")
    );
    for (id, zone) in [(JOBURG, "Africa/Johannesburg"), (UTC_CUSTOMER, "UTC")] {
        script += &format!(
            "INSERT INTO customers (id, tenant_id, external_ref, display_name, billing_currency, \
             billing_cycle, time_zone, credit_limit, status, version, created_at, updated_at) \
             VALUES ('{id}', '{TENANT}', '{id}', '{id}', 'ZAR', 'MONTHLY', '{zone}', '0', 'ACTIVE', \
             1, {c}, {c});",
            c = t("2026-01-01T00:00:00Z")
        );
    }
    for (id, account, created) in [
        (PA_A, "sim-partner-a", "2026-01-02T00:00:00Z"),
        (PA_B, "sim-partner-b", "2026-01-01T00:00:00Z"),
        (PA_0, "sim-partner-0", "2026-01-02T00:00:00Z"),
    ] {
        script += &format!(
            "INSERT INTO partner_accounts (id, tenant_id, vendor, display_name, vendor_account_id, \
             partner_discount_rate, credentials_ref, poll_interval_secs, enabled, endpoint_url, \
             version, created_at, updated_at) \
             VALUES ('{id}', '{TENANT}', 'SIMULATOR', '{id}', '{account}', '0', 'env:UNUSED', 900, \
             TRUE, '', 1, {c}, {c});",
            c = t(created)
        );
    }
    for (account, customer, through) in [("sim-j", JOBURG, PA_A), ("sim-u", UTC_CUSTOMER, PA_B)] {
        script += &format!(
            "INSERT INTO vendor_accounts (tenant_id, vendor, account_id, kind, customer_id, \
             partner_account_id, linked_at) \
             VALUES ('{TENANT}', 'SIMULATOR', '{account}', 'SIMULATOR_ACCOUNT', '{customer}', \
             '{through}', {});",
            t("2026-01-03T00:00:00Z")
        );
    }
    script += &format!(
        "INSERT INTO price_rules (id, tenant_id, kind, value, effective_from, created_at) \
         VALUES ('pr_migrated', '{TENANT}', 'MARKUP', '0', {epoch}, {});",
        t("2026-01-03T00:00:00Z")
    );
    let updated = t("2026-01-04T00:00:00Z");
    for line in lines {
        let (customer, rated, rated_currency, rule, reason) = match line.customer {
            Some(c) => (
                format!("'{c}'"),
                format!("'{}'", line.cost),
                "'ZAR'",
                "'pr_migrated'",
                "NULL".to_string(),
            ),
            None => (
                "NULL".into(),
                "NULL".into(),
                "NULL",
                "NULL",
                format!(
                    "'no customer is linked to vendor account {}'",
                    line.vendor_account
                ),
            ),
        };
        script += &format!(
            "INSERT INTO usage_lines (tenant_id, line_key, partner_account_id, vendor, \
             vendor_account_id, service, meter, region, window_start, window_end, meter_name, \
             quantity, unit, cost, list_cost, currency, estimated, removed, customer_id, \
             rated_amount, rated_currency, rule_id, unrated_reason, updated_at) \
             VALUES ('{TENANT}', '{key}', '{account}', 'SIMULATOR', '{vendor_account}', 'Compute', \
             '{meter}', '', {start}, {end}, '{meter}', '{quantity}', 'h', '{cost}', NULL, 'ZAR', \
             TRUE, FALSE, {customer}, {rated}, {rated_currency}, {rule}, {reason}, {updated});",
            key = line.old_key(),
            account = line.account,
            vendor_account = line.vendor_account,
            meter = line.meter,
            start = sql.time(line.window),
            end = sql.time(line.window + Duration::hours(1)),
            quantity = line.quantity,
            cost = line.cost,
        );
    }
    for (sequence, index, kind, amount, quantity) in OLD_EVENTS {
        let line = &lines[index];
        script += &format!(
            "INSERT INTO charge_events (tenant_id, sequence, line_key, customer_id, kind, amount, \
             currency, quantity, vendor, service, meter, window_start, recorded_at) \
             VALUES ('{TENANT}', {sequence}, '{key}', '{customer}', '{kind}', '{amount}', 'ZAR', \
             '{quantity}', 'SIMULATOR', 'Compute', '{meter}', {start}, {updated});",
            key = line.old_key(),
            customer = line.customer.unwrap(),
            meter = line.meter,
            start = sql.time(line.window),
        );
    }
    script += &format!(
        "INSERT INTO ledger_sequences (tenant_id, last_sequence) VALUES ('{TENANT}', {});",
        OLD_EVENTS.len()
    );
    sql.run(&script).await;
}

/// Daily totals as `customer|date|vendor|service|meter|amount|quantity`, amounts normalized.
async fn stored_totals(sql: &mut Sql) -> Vec<String> {
    sql.texts(
        "SELECT customer_id || '|' || CAST(usage_date AS TEXT) || '|' || vendor || '|' || service \
         || '|' || meter || '|' || CAST(amount AS TEXT) || '|' || CAST(quantity AS TEXT) AS v \
         FROM charge_totals",
    )
    .await
    .into_iter()
    .map(|row| {
        let mut parts: Vec<String> = row.split('|').map(str::to_string).collect();
        for i in [5, 6] {
            parts[i] = Decimal::from_str(&parts[i])
                .unwrap()
                .normalize()
                .to_string();
        }
        parts.join("|")
    })
    .collect()
}

/// The totals `events` add up to, in the form of [`stored_totals`].
fn expected_totals(lines: &[OldLine], events: &[OldEvent]) -> Vec<String> {
    let mut sums: BTreeMap<(String, String, String), (Decimal, Decimal)> = BTreeMap::new();
    for &(_, index, _, amount, quantity) in events {
        let line = &lines[index];
        let customer = line.customer.unwrap();
        let day = line.window.with_timezone(&zone_of(customer)).date_naive();
        let sum = sums
            .entry((
                customer.to_string(),
                day.to_string(),
                line.meter.to_string(),
            ))
            .or_default();
        sum.0 += Decimal::from_str(amount).unwrap();
        sum.1 += Decimal::from_str(quantity).unwrap();
    }
    let mut rows: Vec<String> = sums
        .into_iter()
        .map(|((customer, day, meter), (amount, quantity))| {
            format!(
                "{customer}|{day}|SIMULATOR|Compute|{meter}|{}|{}",
                amount.normalize(),
                quantity.normalize()
            )
        })
        .collect();
    rows.sort();
    rows
}

/// Runs as `customer|first|last`.
async fn stored_runs(sql: &mut Sql) -> Vec<String> {
    sql.texts(
        "SELECT customer_id || '|' || CAST(first_sequence AS TEXT) || '|' \
         || CAST(last_sequence AS TEXT) AS v FROM charge_event_runs",
    )
    .await
}

fn runs(expected: &[(&str, i64, i64)]) -> Vec<String> {
    let mut rows: Vec<String> = expected
        .iter()
        .map(|(c, first, last)| format!("{c}|{first}|{last}"))
        .collect();
    rows.sort();
    rows
}

/// Lines as `old key -> stored key (hex)`, and events as `sequence|stored key (hex)`.
async fn stored_keys(sql: &mut Sql) -> (Vec<String>, Vec<String>) {
    let lines = format!("SELECT {} AS v FROM usage_lines", sql.hex("line_key"));
    let events = format!(
        "SELECT CAST(sequence AS TEXT) || '|' || {} AS v FROM charge_events",
        sql.hex("line_key")
    );
    (sql.texts(&lines).await, sql.texts(&events).await)
}

/// The ledger layout migration.
const LEDGER_LAYOUT: &str = "20261130000001";

/// Reverts the newest migrations down to and including `version`; the versions reverted,
/// newest first.
async fn revert_through(url: &str, version: &str) -> Vec<String> {
    let mut reverted = Vec::new();
    while reverted.last().map(String::as_str) != Some(version) {
        let last = migrate::run(url, Direction::RevertLast).await.unwrap();
        assert_eq!(last.len(), 1, "{version} was never applied: {reverted:?}");
        reverted.extend(last);
    }
    reverted
}

async fn ledger_layout_migration_carries_data(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else {
        return;
    };
    let applied = migrate::run(&db.url, Direction::Up).await.unwrap();
    assert!(applied.iter().any(|v| v == LEDGER_LAYOUT), "{applied:?}");
    let reverted = revert_through(&db.url, LEDGER_LAYOUT).await;
    assert_eq!(reverted.last().unwrap(), LEDGER_LAYOUT);

    let now_hour = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    let lines = old_lines(now_hour);
    let mut sql = Sql::open(&db.url).await;
    assert!(!sql.has_column("partner_accounts", "line_key_prefix").await);
    insert_old_layout(&mut sql, &lines).await;
    // The old layout: text keys.
    let mut old_keys: Vec<String> = lines.iter().map(OldLine::old_key).collect();
    old_keys.sort();
    assert_eq!(
        sql.texts("SELECT line_key AS v FROM usage_lines").await,
        old_keys
    );
    drop(sql);

    let applied = migrate::run(&db.url, Direction::Up).await.unwrap();
    assert_eq!(applied.first().unwrap(), LEDGER_LAYOUT);
    let mut sql = Sql::open(&db.url).await;

    // Partner accounts are numbered by (created_at, id).
    let prefixes = sql
        .texts("SELECT id || '=' || CAST(line_key_prefix AS TEXT) AS v FROM partner_accounts")
        .await;
    assert_eq!(
        prefixes,
        vec![
            format!("{PA_0}=2"),
            format!("{PA_A}=3"),
            format!("{PA_B}=1")
        ]
    );

    // Keys: 24 bytes, prefix | hour | old key; events carry their lines' keys.
    let mut expected_lines: Vec<String> = lines.iter().map(OldLine::new_key).collect();
    expected_lines.sort();
    let mut expected_events: Vec<String> = OLD_EVENTS
        .iter()
        .map(|&(sequence, index, ..)| format!("{sequence}|{}", lines[index].new_key()))
        .collect();
    expected_events.sort();
    let (line_keys, event_keys) = stored_keys(&mut sql).await;
    assert!(line_keys.iter().all(|k| k.len() == 48), "{line_keys:?}");
    assert_eq!(line_keys, expected_lines);
    assert_eq!(event_keys, expected_events);
    // The key of the line before the epoch has hour 0; 2025-03-10 23:00 UTC is hour 485975.
    assert!(lines[4].new_key().starts_with("0000000100000000"));
    assert!(
        lines[0]
            .new_key()
            .starts_with(&format!("00000003{:08x}", 483_791))
    );
    assert_eq!(at("2025-03-10T23:00:00Z").timestamp() / 3600, 483_791);

    // Maximal runs of consecutive sequences per customer.
    let expected_runs = [
        (JOBURG, 1, 2),
        (UTC_CUSTOMER, 3, 3),
        (JOBURG, 4, 5),
        (UTC_CUSTOMER, 6, 6),
        (JOBURG, 7, 7),
        (UTC_CUSTOMER, 8, 9),
    ];
    assert_eq!(stored_runs(&mut sql).await, runs(&expected_runs));

    // Exact daily totals, by day in the customer's time zone.
    let totals = stored_totals(&mut sql).await;
    assert_eq!(totals, expected_totals(&lines, &OLD_EVENTS));
    // The 23:30 UTC charges: the next day in Johannesburg, the same day in UTC.
    assert!(totals.contains(&format!(
        "{JOBURG}|2025-03-11|SIMULATOR|Compute|vm|1.8333333333333|2.25"
    )));
    assert!(totals.contains(&format!(
        "{JOBURG}|2025-03-11|SIMULATOR|Compute|disk|5.5|0.5"
    )));
    assert!(totals.contains(&format!(
        "{UTC_CUSTOMER}|2025-03-10|SIMULATOR|Compute|vm|2|1"
    )));
    assert!(totals.contains(&format!(
        "{UTC_CUSTOMER}|1969-12-31|SIMULATOR|Compute|vm|0.01|1"
    )));
    drop(sql);

    // The store reads the migrated ledger.
    let store = std::sync::Arc::new(Store::connect(&db.url, &Default::default()).unwrap());
    let ledger = msp_gateway::ledger::Ledger::new(store.clone()).unwrap();
    let principal = Principal {
        tenant_id: TENANT.into(),
        key_id: "test".into(),
        scope: Scope::Admin,
        customer_id: None,
    };
    let list = |customer: &str, kinds: Vec<ChargeKind>| ChargeFilter {
        customer_id: Some(customer.to_string()),
        kinds,
        ..Default::default()
    };
    let (joburg, hwm) = ledger
        .list_charges(&principal.tenant_id, &list(JOBURG, vec![]), 0, 100)
        .await
        .unwrap();
    assert_eq!(hwm, 9);
    let seen: Vec<(i64, String, Decimal)> = joburg
        .iter()
        .map(|e| (e.sequence, e.line_key.to_string(), e.amount))
        .collect();
    let wanted: Vec<(i64, String, Decimal)> = OLD_EVENTS
        .iter()
        .filter(|&&(_, index, ..)| lines[index].customer == Some(JOBURG))
        .map(|&(sequence, index, _, amount, _)| {
            (
                sequence,
                lines[index].new_key(),
                Decimal::from_str(amount).unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, wanted);
    assert_eq!(
        joburg.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![1, 2, 4, 5, 7]
    );
    let (revisions, _) = ledger
        .list_charges(
            &principal.tenant_id,
            &list(UTC_CUSTOMER, vec![ChargeKind::Revision]),
            0,
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        revisions.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![9]
    );
    let (after, _) = ledger
        .list_charges(&principal.tenant_id, &list(UTC_CUSTOMER, vec![]), 3, 100)
        .await
        .unwrap();
    assert_eq!(
        after.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![6, 8, 9]
    );

    // The open period: the migrated totals of the current days.
    let now = Utc::now();
    for customer in [JOBURG, UTC_CUSTOMER] {
        let period = ledger
            .open_period(&principal.tenant_id, customer, now)
            .await
            .unwrap();
        let mut expected: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();
        for &(_, index, _, amount, quantity) in &OLD_EVENTS {
            let line = &lines[index];
            if line.customer == Some(customer)
                && line.window >= period.period_start
                && line.window < period.period_end
            {
                let sum = expected.entry(line.meter.to_string()).or_default();
                sum.0 += Decimal::from_str(amount).unwrap();
                sum.1 += Decimal::from_str(quantity).unwrap();
            }
        }
        let items: BTreeMap<String, (Decimal, Decimal)> = period
            .items
            .iter()
            .map(|i| (i.meter.clone(), (i.amount, i.quantity)))
            .collect();
        assert_eq!(items, expected, "{customer}");
        assert_eq!(
            period.total,
            expected.values().map(|(a, _)| *a).sum::<Decimal>()
        );
        if now_hour >= period.period_start {
            // (Not so only in the first hour of a period.)
            assert!(!items.is_empty(), "{customer}: the current hour's charge");
        }
    }

    // Writes after the migration find the migrated lines by their new keys: the same data
    // appends nothing, a revision appends one event on the line's key.
    let pa_a = store
        .partner_account(&principal.tenant_id, PA_A)
        .await
        .unwrap();
    let pa_b = store
        .partner_account(&principal.tenant_id, PA_B)
        .await
        .unwrap();
    assert_eq!((pa_a.line_key_prefix, pa_b.line_key_prefix), (3, 1));
    let same = ledger
        .ingest_push(
            TENANT,
            &pa_b,
            vec![lines[1].usage("2"), lines[6].usage("8.88888888888")],
            &fresh_request(),
        )
        .await
        .unwrap()
        .fresh()
        .unwrap();
    assert_eq!(same.events_appended, 0);
    let revised = ledger
        .ingest_push(
            TENANT,
            &pa_a,
            vec![
                lines[0].usage("1.5"),
                lines[2].usage("0.5"),
                lines[5].usage("7.77777777777"),
            ],
            &fresh_request(),
        )
        .await
        .unwrap()
        .fresh()
        .unwrap();
    assert_eq!(revised.events_appended, 1);
    assert_eq!(revised.last_sequence, Some(10));
    let (tail, _) = ledger
        .list_charges(&principal.tenant_id, &list(JOBURG, vec![]), 7, 100)
        .await
        .unwrap();
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].sequence, 10);
    assert_eq!(tail[0].kind, ChargeKind::Revision);
    assert_eq!(
        tail[0].amount,
        Decimal::from_str("0.1666666666667").unwrap()
    );
    assert_eq!(tail[0].line_key.to_string(), lines[2].new_key());
    // A new partner account's prefix follows the migrated ones.
    let spec = PartnerAccountSpec {
        vendor: Vendor::Simulator,
        display_name: "After".into(),
        vendor_account_id: "sim-partner-after".into(),
        partner_discount_rate: Decimal::ZERO,
        credentials_ref: "env:UNUSED".into(),
        poll_interval_secs: 900,
        enabled: true,
        endpoint_url: String::new(),
        aws: None,
        microsoft: None,
    };
    let created = store
        .create_partner_account(
            &principal.tenant_id,
            &spec,
            &Idempotent::unanswered(IdempotencyKey::new(
                "pa-after".into(),
                "CreatePartnerAccount",
                &spec,
            )),
        )
        .await
        .unwrap()
        .fresh()
        .unwrap()
        .0;
    assert_eq!(created.line_key_prefix, 4);
    drop(store);

    let mut events: Vec<OldEvent> = OLD_EVENTS.to_vec();
    events.push((10, 2, "REVISION", "0.1666666666667", "0"));
    let mut sql = Sql::open(&db.url).await;
    let maintained = stored_totals(&mut sql).await;
    assert_eq!(maintained, expected_totals(&lines, &events));
    assert!(maintained.contains(&format!("{JOBURG}|2025-03-11|SIMULATOR|Compute|vm|2|2.25")));
    drop(sql);

    // Down: the old text keys come back, the new tables and the prefix go.
    let reverted = revert_through(&db.url, LEDGER_LAYOUT).await;
    assert_eq!(reverted.last().unwrap(), LEDGER_LAYOUT);
    let mut sql = Sql::open(&db.url).await;
    assert_eq!(
        sql.texts("SELECT line_key AS v FROM usage_lines").await,
        old_keys
    );
    let mut old_event_keys: Vec<String> = events
        .iter()
        .map(|&(sequence, index, ..)| format!("{sequence}|{}", lines[index].old_key()))
        .collect();
    old_event_keys.sort();
    assert_eq!(
        sql.texts("SELECT CAST(sequence AS TEXT) || '|' || line_key AS v FROM charge_events")
            .await,
        old_event_keys
    );
    assert_eq!(
        sql.tables_present(&["charge_event_runs", "charge_totals"])
            .await,
        0
    );
    assert!(!sql.has_column("partner_accounts", "line_key_prefix").await);
    drop(sql);

    // Up again: the same keys, runs and totals recomputed from the events.
    migrate::run(&db.url, Direction::Up).await.unwrap();
    let mut sql = Sql::open(&db.url).await;
    let (line_keys, event_keys) = stored_keys(&mut sql).await;
    assert_eq!(line_keys, expected_lines);
    let mut expected_events: Vec<String> = events
        .iter()
        .map(|&(sequence, index, ..)| format!("{sequence}|{}", lines[index].new_key()))
        .collect();
    expected_events.sort();
    assert_eq!(event_keys, expected_events);
    let mut expected_runs = expected_runs.to_vec();
    expected_runs.push((JOBURG, 10, 10));
    assert_eq!(stored_runs(&mut sql).await, runs(&expected_runs));
    assert_eq!(stored_totals(&mut sql).await, maintained);
    let prefix_after = sql
        .texts(&format!(
            "SELECT CAST(line_key_prefix AS TEXT) AS v FROM partner_accounts WHERE id = '{}'",
            created.id
        ))
        .await;
    assert_eq!(prefix_after, vec!["4".to_string()]);
}

/// The vendor usage migration: existing Microsoft partner accounts keep the currency they were
/// exported in (their tenant's), other vendors get no Microsoft settings, poll states lose
/// their single version tag; and back.
async fn vendor_usage_migration_carries_data(backend: Backend) {
    const VENDOR_USAGE: &str = "20261202000001";
    let Some(db) = TestDatabase::create(backend).await else {
        return;
    };
    migrate::run(&db.url, Direction::Up).await.unwrap();
    assert_eq!(
        revert_through(&db.url, VENDOR_USAGE).await.last().unwrap(),
        VENDOR_USAGE
    );
    let mut sql = Sql::open(&db.url).await;
    assert!(
        !sql.has_column("partner_accounts", "ms_billing_currency")
            .await
    );
    let at = sql.time(self::at("2026-01-01T00:00:00Z"));
    let mut script = format!(
        "INSERT INTO tenants (id, name, currency, time_zone, created_at) \
         VALUES ('{TENANT}', 'Migrated ISP', 'ZAR', 'Africa/Johannesburg', {at});"
    );
    for (id, vendor, account) in [
        ("pa_ms", "MICROSOFT", "5b1d3a2e-7c4f-4e8a-9d21-0f6b8c3e4a17"),
        ("pa_sim", "SIMULATOR", "sim-partner"),
    ] {
        script += &format!(
            "INSERT INTO partner_accounts (id, tenant_id, vendor, display_name, vendor_account_id, \
             partner_discount_rate, credentials_ref, poll_interval_secs, enabled, endpoint_url, \
             version, created_at, updated_at, line_key_prefix) \
             VALUES ('{id}', '{TENANT}', '{vendor}', '{id}', '{account}', '0', 'env:UNUSED', 900, \
             TRUE, '', 1, {at}, {at}, {prefix});",
            prefix = if vendor == "MICROSOFT" { 1 } else { 2 }
        );
    }
    script += &format!(
        "INSERT INTO poll_states (partner_account_id, tenant_id, version_tag, requests_spent) \
         VALUES ('pa_ms', '{TENANT}', 'etag-before', 3);"
    );
    sql.run(&script).await;
    drop(sql);

    assert_eq!(
        migrate::run(&db.url, Direction::Up)
            .await
            .unwrap()
            .first()
            .unwrap(),
        VENDOR_USAGE
    );
    let store = Store::connect(&db.url, &Default::default()).unwrap();
    let admin = Principal {
        tenant_id: TENANT.into(),
        key_id: "test".into(),
        scope: Scope::Admin,
        customer_id: None,
    };
    let microsoft = store
        .partner_account(&admin.tenant_id, "pa_ms")
        .await
        .unwrap();
    let settings = microsoft.spec.microsoft.expect("Microsoft settings");
    assert_eq!(settings.billing_currency.code(), "ZAR");
    assert_eq!(
        (
            settings.authority_host.as_str(),
            settings.token_scope.as_str()
        ),
        ("", "")
    );
    assert_eq!(
        store
            .partner_account(&admin.tenant_id, "pa_sim")
            .await
            .unwrap()
            .spec
            .microsoft,
        None
    );
    let status = store.poll_status("pa_ms").await.unwrap();
    assert!(
        status.version_tags.is_empty(),
        "the next poll downloads once more"
    );
    assert_eq!(
        (
            status.requests_spent,
            status.consecutive_failures,
            status.next_poll_at
        ),
        (3, 0, None)
    );
    drop(store);

    assert_eq!(
        revert_through(&db.url, VENDOR_USAGE).await.last().unwrap(),
        VENDOR_USAGE
    );
    let mut sql = Sql::open(&db.url).await;
    assert!(sql.has_column("poll_states", "version_tag").await);
    assert!(
        !sql.has_column("partner_accounts", "ms_billing_currency")
            .await
    );
    assert_eq!(sql.tables_present(&["pricing_policies"]).await, 0);
}

crate::both_backends!(
    vendor_usage_migration_carries_data,
    up_down_up,
    concurrent_migrations,
    ledger_layout_migration_carries_data,
);
