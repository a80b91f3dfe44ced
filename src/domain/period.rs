//! Billing periods: a customer's cycle (monthly, quarterly, annual) cut at midnight in its time
//! zone.
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::customer::BillingCycle;
use super::error::{Error, Result};

/// `[start, end)` of the period containing `at`, as UTC instants.
pub fn containing(
    cycle: BillingCycle,
    time_zone: &str,
    at: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let tz: Tz = time_zone
        .parse()
        .map_err(|_| Error::Internal(format!("stored time zone {time_zone:?} is unknown")))?;
    let local = at.with_timezone(&tz);
    let months = match cycle {
        BillingCycle::Monthly => 1,
        BillingCycle::Quarterly => 3,
        BillingCycle::Annual => 12,
    };
    let month0 = (local.month0() / months) * months;
    let start = NaiveDate::from_ymd_opt(local.year(), month0 + 1, 1);
    let end_total = month0 + months;
    let end = NaiveDate::from_ymd_opt(
        local.year() + (end_total / 12) as i32,
        end_total % 12 + 1,
        1,
    );
    let midnight = |d: Option<NaiveDate>| -> Result<DateTime<Utc>> {
        let d = d.ok_or_else(|| Error::Internal("period out of range".into()))?;
        let naive = d
            .and_hms_opt(0, 0, 0)
            .ok_or_else(|| Error::Internal("midnight".into()))?;
        // A zone whose midnight does not exist (a DST jump) starts the day at its first instant.
        tz.from_local_datetime(&naive)
            .earliest()
            .or_else(|| {
                tz.from_local_datetime(&(naive + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| Error::Internal(format!("no midnight on {d} in {time_zone}")))
    };
    Ok((midnight(start)?, midnight(end)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_follow_the_cycle_in_the_time_zone() {
        // 2026-03-31 23:30 UTC is already April 1st in Johannesburg (UTC+2).
        let at = Utc.with_ymd_and_hms(2026, 3, 31, 23, 30, 0).unwrap();
        let (s, e) = containing(BillingCycle::Monthly, "Africa/Johannesburg", at).unwrap();
        assert_eq!(s, Utc.with_ymd_and_hms(2026, 3, 31, 22, 0, 0).unwrap());
        assert_eq!(e, Utc.with_ymd_and_hms(2026, 4, 30, 22, 0, 0).unwrap());
        let (s, e) = containing(BillingCycle::Quarterly, "UTC", at).unwrap();
        assert_eq!(s, Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
        assert_eq!(e, Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap());
        let at = Utc.with_ymd_and_hms(2026, 12, 15, 0, 0, 0).unwrap();
        let (s, e) = containing(BillingCycle::Annual, "UTC", at).unwrap();
        assert_eq!(s, Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
        assert_eq!(e, Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
        let (_, e) = containing(BillingCycle::Monthly, "UTC", at).unwrap();
        assert_eq!(e, Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
    }
}
