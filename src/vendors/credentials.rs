//! Resolving a partner account's `credentials_ref` (`env:NAME` or `file:PATH`) to the secret
//! text it points at. The secret never leaves the connector that asked for it and is never logged.
use super::VendorError;

/// The secret text behind a reference.
pub fn resolve(reference: &str) -> Result<String, VendorError> {
    match reference.split_once(':') {
        Some(("env", name)) => std::env::var(name).map_err(|_| {
            VendorError::Credentials(format!("environment variable {name} is not set"))
        }),
        Some(("file", path)) => std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .map_err(|e| VendorError::Credentials(format!("cannot read {path}: {e}"))),
        _ => Err(VendorError::Credentials(format!(
            "{reference:?} is not an env: or file: reference"
        ))),
    }
}
