//! The export's readers on raw bytes, for the fuzz targets (`crate::fuzz_entry`): the same
//! functions the export runs on what Partner Center and the blob store answer.
use chrono::{TimeZone, Utc};

use super::export::{
    EXPORT_PATH, ManifestSource, api_base, blob_url, checked, read_blob, read_manifest,
    read_operation, same_origin,
};
use super::rows::{self, AccountKey};
use crate::vendors::VendorError;

const API_BASE: &str = "https://graph.microsoft.com/v1.0";

/// A body served at the operation URL (a JSON object with a `status`) or at the manifest link
/// (anything else), read as the export reads it: the manifest checked and every blob's URL
/// built. None while the operation runs, else how many blobs the manifest lists.
pub fn operation_or_manifest(body: &[u8]) -> Result<Option<usize>, VendorError> {
    let base = api_base(API_BASE)?;
    let export_url = base
        .join(EXPORT_PATH)
        .map_err(|e| VendorError::Failed(format!("export URL: {e}")))?;
    let operation_url = same_origin(
        &base,
        &export_url,
        "../operations/0e5a",
        "the operation Location",
    )?;
    let is_operation = serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|document| document.get("status").is_some());
    let manifest = if is_operation {
        match read_operation(body)? {
            None => return Ok(None),
            Some(ManifestSource::Inline(manifest)) => manifest,
            Some(ManifestSource::Link(link)) => {
                same_origin(&base, &operation_url, &link, "the manifest link")?;
                return Ok(Some(0));
            }
        }
    } else {
        read_manifest(body)?
    };
    let manifest = checked(manifest)?;
    for blob in &manifest.blobs {
        blob_url(&manifest, &blob.name)?;
    }
    Ok(Some(manifest.blobs.len()))
}

/// A downloaded blob (gzip or JSON lines), read with each account key, placed in November
/// 2026's export and merged by usage key. The number of merged lines, or the error of the
/// default account key's reading.
pub fn blob(body: &[u8]) -> Result<usize, VendorError> {
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let end = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    for other in [AccountKey::CustomerTenant, AccountKey::AzureEntitlement] {
        let _ = read_blob("part-00000.json.gz", body, other);
    }
    let placed = read_blob("part-00000.json.gz", body, AccountKey::Subscription)?
        .into_iter()
        .map(|row| rows::place_in_period(row, start, end))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows::merge(&placed)?.len())
}

/// A number of an export row as the rows reader takes it (a JSON literal or numeric string).
pub fn exact_decimal(text: &str) -> Option<rust_decimal::Decimal> {
    rows::parse_decimal(text)
}
