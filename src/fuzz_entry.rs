//! Entry points of the fuzz targets (`fuzz/`, run by `scripts/fuzz.sh`) and of the corpus
//! replay test (below, part of `cargo test`): one function per target, taking
//! the raw input bytes and running the real parsers on them. Besides "no panic", each checks
//! what must hold for every input, with `assert!`, so the fuzzer reports a broken promise as a
//! crash: decimals read exactly and the same by every reader, what leaves as an amount reads
//! back as the same value, a page token has exactly one spelling, every refusal names a field.
use rust_decimal::Decimal;

use crate::domain::error::Error;
use crate::domain::money::{self, Currency};
use crate::domain::paging::{self, PageRequest};
use crate::vendors::{aws, microsoft};

/// What the parsers made of an input: accepted, or refused with the message a caller would see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Refused(String),
}

impl Outcome {
    fn of<T, E: std::fmt::Display>(result: Result<T, E>) -> Self {
        match result {
            Ok(_) => Outcome::Accepted,
            Err(e) => Outcome::Refused(e.to_string()),
        }
    }
}

/// A target's entry: the input bytes in, what the parsers made of them out.
pub type Entry = fn(&[u8]) -> Outcome;

/// The fuzz targets, by name (also the corpus directories under `fuzz/corpus/`).
pub const TARGETS: [(&str, Entry); 7] = [
    ("decimal", decimal),
    ("currency_amount", currency_amount),
    ("page_token", page_token),
    ("request_validation", request_validation),
    ("microsoft_rows", microsoft_rows),
    ("microsoft_manifest", microsoft_manifest),
    ("aws_cost_explorer", aws_cost_explorer),
];

fn text(data: &[u8]) -> Result<&str, Outcome> {
    std::str::from_utf8(data).map_err(|_| Outcome::Refused("not UTF-8".into()))
}

/// A decimal string as the API reads it (`money::parse_decimal`), and as the Microsoft rows and
/// Cost Explorer amounts read it. Whatever two readers both accept, they read as the same value;
/// what the API accepts leaves (`format_decimal`) as text that reads back as the same value.
pub fn decimal(data: &[u8]) -> Outcome {
    let text = match text(data) {
        Ok(text) => text,
        Err(refused) => return refused,
    };
    let strict = money::parse_decimal("value", text);
    let readers: [(&str, Option<Decimal>); 2] = [
        ("microsoft rows", microsoft::fuzz::exact_decimal(text)),
        ("cost explorer", aws::fuzz::amount(text).ok()),
    ];
    // The API's reader refuses what a Decimal cannot hold exactly; a vendor reader that
    // accepted it would have rounded money.
    let inexact = strict
        .as_ref()
        .is_err_and(|v| v.description.contains("held exactly"));
    for (reader, value) in readers {
        if let (Ok(strict), Some(value)) = (&strict, value) {
            assert_eq!(
                *strict, value,
                "{text:?}: the API and the {reader} reader disagree"
            );
        }
        assert!(
            !(inexact && value.is_some()),
            "{text:?} cannot be held exactly, yet the {reader} reader read {value:?}"
        );
        if let Some(value) = value {
            // A vendor reader's value as the ledger stores and shows it reads back unchanged.
            let shown = money::format_decimal(value);
            assert_eq!(
                money::parse_decimal("value", &shown).ok(),
                Some(value),
                "{text:?} read by the {reader} reader leaves as {shown:?}"
            );
        }
    }
    if let Ok(value) = &strict {
        let shown = money::format_decimal(*value);
        assert_eq!(
            money::parse_decimal("value", &shown).as_ref(),
            Ok(value),
            "{text:?} leaves as {shown:?}"
        );
    }
    if let Err(violation) = &strict {
        assert_eq!(violation.field, "value");
    }
    Outcome::of(strict)
}

/// `CODE AMOUNT` (or a code alone): a currency as a request names it, then an amount in it.
/// An accepted amount leaves (`format_amount`) as text that reads back as the same amount, with
/// at least the currency's minor digits; the portal's rounding never panics.
pub fn currency_amount(data: &[u8]) -> Outcome {
    let text = match text(data) {
        Ok(text) => text,
        Err(refused) => return refused,
    };
    let (code, amount) = match text.split_once(' ') {
        Some((code, amount)) => (code, Some(amount)),
        None => (text, None),
    };
    let currency = match Currency::parse("currency", code) {
        Ok(currency) => currency,
        Err(violation) => {
            assert_eq!(violation.field, "currency");
            return Outcome::Refused(violation.to_string());
        }
    };
    assert_eq!(currency.code(), code);
    let Some(amount) = amount else {
        return Outcome::Accepted;
    };
    let parsed = money::parse_amount("amount", amount, currency);
    if let Ok(value) = parsed {
        assert!(!value.is_sign_negative(), "{text:?} gave {value}");
        let shown = money::format_amount(value, currency);
        assert_eq!(
            money::parse_amount("amount", &shown, currency),
            Ok(value),
            "{text:?} leaves as {shown:?}"
        );
        let minor = shown.split_once('.').map_or(0, |(_, f)| f.len());
        assert!(minor >= currency.minor_digits() as usize, "{shown:?}");
        let _ = money::display_amount(value, currency);
    }
    if let Err(violation) = &parsed {
        assert_eq!(violation.field, "amount");
    }
    Outcome::of(parsed)
}

/// `FILTERS\nTOKEN` (or a token alone, for no filters): a page token as a list request carries
/// it. An accepted token is exactly the one the gateway issues after its id (one spelling per
/// page); a refusal names `page_token`. The input is also sealed as a token's payload (with a
/// good check), so the fuzzer reaches what is read after the check.
pub fn page_token(data: &[u8]) -> Outcome {
    let text = match text(data) {
        Ok(text) => text,
        Err(refused) => return refused,
    };
    let (filters, token) = text.split_once('\n').unwrap_or(("", text));
    let sealed = paging::seal(token.as_bytes());
    for candidate in [token, sealed.as_str()] {
        let _ = page_request(filters, candidate);
    }
    Outcome::of(page_request(filters, token).map_err(|v| v[0].to_string()))
}

fn page_request(
    filters: &str,
    token: &str,
) -> Result<PageRequest, Vec<crate::domain::error::FieldViolation>> {
    let parsed = PageRequest::parse(1, token, filters);
    match &parsed {
        Ok(request) => {
            if let Some(after) = &request.after {
                let page = request.page(vec![after.as_str(), "next"], |id| id);
                assert_eq!(
                    page.next_page_token.as_deref(),
                    Some(token),
                    "a second spelling of the token after {after:?}"
                );
            } else {
                assert!(token.is_empty());
            }
        }
        Err(violations) => {
            assert!(!violations.is_empty());
            assert!(violations.iter().all(|v| v.field == "page_token"));
        }
    }
    parsed
}

/// A request (first byte: its type, see `api::request_fuzz::REQUEST_TYPES`; the rest: protobuf)
/// through the services' validation. A refusal is INVALID_ARGUMENT naming fields, never another
/// error.
pub fn request_validation(data: &[u8]) -> Outcome {
    let validated = crate::api::request_fuzz::validate(data);
    match &validated {
        Ok(()) => {}
        Err(Error::InvalidArgument(violations)) => {
            assert!(!violations.is_empty());
            assert!(
                violations.iter().all(|v| !v.field.is_empty()),
                "{violations:?}"
            );
        }
        Err(other) => panic!("a bad request must be INVALID_ARGUMENT, got {other:?}"),
    }
    Outcome::of(validated)
}

/// A downloaded export blob (gzip or JSON lines) through the rows reader, placed in its period
/// and merged.
pub fn microsoft_rows(data: &[u8]) -> Outcome {
    Outcome::of(microsoft::fuzz::blob(data))
}

/// An answer of the export operation, or a manifest document, through the export's readers.
pub fn microsoft_manifest(data: &[u8]) -> Outcome {
    Outcome::of(microsoft::fuzz::operation_or_manifest(data))
}

/// A GetCostAndUsage response body through the AWS SDK's deserializer and the mapping.
pub fn aws_cost_explorer(data: &[u8]) -> Outcome {
    Outcome::of(aws::fuzz::cost_and_usage(data))
}

/// The corpus replay: every seed (`fuzz/corpus/<target>/`) and every input a fuzz run once
/// crashed on (`fuzz/regressions/<target>/`) through its entry on each `cargo test`, checked
/// against the outcome its name states (`ok-...` accepted, `err-...` refused), with no panic.
#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn fuzz_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries.map(|e| e.expect("dir entry").path()).collect();
        files.sort();
        files
    }

    #[test]
    fn every_corpus_and_regression_input_gets_the_outcome_its_name_states() {
        let mut wrong = Vec::new();
        let mut replayed = 0;
        for (target, entry) in TARGETS {
            let mut outcomes = (0, 0);
            for dir in ["corpus", "regressions"] {
                for path in files(&fuzz_dir().join(dir).join(target)) {
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    let expect_accepted = match name.split('-').next() {
                        Some("ok") => true,
                        Some("err") => false,
                        _ => panic!("{}: name it ok-... or err-...", path.display()),
                    };
                    let data = std::fs::read(&path).expect("read input");
                    replayed += 1;
                    match std::panic::catch_unwind(|| entry(&data)) {
                        Err(_) => wrong.push(format!("{}: panicked", path.display())),
                        Ok(outcome) => {
                            let accepted = outcome == Outcome::Accepted;
                            if accepted {
                                outcomes.0 += 1;
                            } else {
                                outcomes.1 += 1;
                            }
                            if accepted != expect_accepted {
                                wrong.push(format!("{}: {outcome:?}", path.display()));
                            }
                        }
                    }
                }
            }
            // A corpus of one kind only would not show the target tells them apart.
            assert!(
                outcomes.0 > 0 && outcomes.1 > 0,
                "{target}: needs accepted and refused seeds, has {outcomes:?}"
            );
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        assert!(replayed >= 100, "only {replayed} inputs replayed");
    }

    #[test]
    fn every_target_has_a_fuzz_binary_and_nothing_else_has_a_corpus() {
        let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("manifest");
        for (target, _) in TARGETS {
            assert!(
                manifest.contains(&format!("name = \"{target}\"")),
                "{target}"
            );
            let source = std::fs::read_to_string(
                fuzz_dir().join("fuzz_targets").join(format!("{target}.rs")),
            )
            .expect("fuzz target source");
            assert!(
                source.contains(&format!("fuzz_entry::{target}(")),
                "{target}"
            );
        }
        for dir in ["corpus", "regressions"] {
            for path in files(&fuzz_dir().join(dir)) {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                assert!(
                    TARGETS.iter().any(|(target, _)| *target == name),
                    "{}: no such target",
                    path.display()
                );
            }
        }
    }
}
