//! The breakdown as CSV (RFC 4180): the API's rows and exact amounts, digit for digit.
use crate::domain::spend::SpendSummary;
use crate::proto::v1;

fn field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

fn line(out: &mut String, values: &[&str]) {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(out, v);
    }
    out.push_str("\r\n");
}

/// Header, one line per row (as `GetSpendSummary` answers it), then the total.
pub fn spend_csv(summary: &SpendSummary) -> String {
    let proto = super::super::helpdesk::summary_to_proto(summary);
    let mut out = String::new();
    line(
        &mut out,
        &[
            "vendor", "service", "meter", "date", "amount", "quantity", "currency",
        ],
    );
    for r in &proto.rows {
        let vendor = v1::Vendor::try_from(r.vendor)
            .ok()
            .filter(|v| *v != v1::Vendor::Unspecified)
            .map(|v| v.as_str_name())
            .unwrap_or("");
        line(
            &mut out,
            &[
                vendor,
                &r.service,
                &r.meter,
                &r.date,
                &r.amount,
                &r.quantity,
                &proto.currency,
            ],
        );
    }
    line(
        &mut out,
        &["TOTAL", "", "", "", &proto.total, "", &proto.currency],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_separators_are_quoted() {
        let mut out = String::new();
        line(&mut out, &["a,b", "say \"hi\"", "plain"]);
        assert_eq!(out, "\"a,b\",\"say \"\"hi\"\"\",plain\r\n");
    }
}
