//! What a Microsoft partner account's poller asks Partner Center for: the currency of the
//! unbilled-usage export, and where and for what the Entra ID token is requested (a sovereign
//! cloud has its own authority host and API scope). Chosen per partner account; the Partner
//! Center connector (`vendors::microsoft`) carries them out.
use super::error::FieldViolation;
use super::money::Currency;

/// Entra ID's global authority host.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// The Microsoft Graph scope under which the billing API answers.
pub const DEFAULT_TOKEN_SCOPE: &str = "https://graph.microsoft.com/.default";

const MAX_URL_LEN: usize = 2048;

/// A Microsoft partner account's settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MicrosoftSettings {
    /// The currency Partner Center bills the partner in: the export's `currencyCode`. A partner
    /// tenant billed in EUR has no usage in any other currency.
    pub billing_currency: Currency,
    /// Empty: [`DEFAULT_AUTHORITY_HOST`].
    pub authority_host: String,
    /// Empty: [`DEFAULT_TOKEN_SCOPE`].
    pub token_scope: String,
}

impl MicrosoftSettings {
    /// The defaults for an account billed in `billing_currency`.
    pub fn billed_in(billing_currency: Currency) -> Self {
        MicrosoftSettings {
            billing_currency,
            authority_host: String::new(),
            token_scope: String::new(),
        }
    }

    /// The authority host in force.
    pub fn authority_host(&self) -> &str {
        or_default(&self.authority_host, DEFAULT_AUTHORITY_HOST)
    }

    /// The token scope in force.
    pub fn token_scope(&self) -> &str {
        or_default(&self.token_scope, DEFAULT_TOKEN_SCOPE)
    }
}

fn or_default<'a>(value: &'a str, default: &'a str) -> &'a str {
    if value.is_empty() { default } else { value }
}

/// Which Microsoft settings a request sets; each `Some` already validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MicrosoftSettingsPatch {
    pub billing_currency: Option<Currency>,
    pub authority_host: Option<String>,
    pub token_scope: Option<String>,
}

impl MicrosoftSettingsPatch {
    pub fn is_empty(&self) -> bool {
        *self == MicrosoftSettingsPatch::default()
    }

    pub fn apply(&self, current: MicrosoftSettings) -> MicrosoftSettings {
        MicrosoftSettings {
            billing_currency: self.billing_currency.unwrap_or(current.billing_currency),
            authority_host: self
                .authority_host
                .clone()
                .unwrap_or(current.authority_host),
            token_scope: self.token_scope.clone().unwrap_or(current.token_scope),
        }
    }
}

/// An https URL without query or fragment: the token is sent wherever it points.
fn https_url(field: &str, value: &str, what: &str) -> Result<String, FieldViolation> {
    let rest = value.strip_prefix("https://").unwrap_or_default();
    let host = rest.split('/').next().unwrap_or_default();
    let well_formed = !host.is_empty()
        && value.len() <= MAX_URL_LEN
        && !value.contains(['?', '#'])
        && !value.chars().any(|c| c.is_whitespace() || c.is_control());
    if well_formed {
        Ok(value.to_string())
    } else {
        Err(FieldViolation::new(
            field,
            format!("{value:?} is not an https URL {what}"),
        ))
    }
}

/// An optional Entra ID authority host, e.g. `https://login.microsoftonline.us`; empty means
/// the global one.
pub fn parse_authority_host(field: &str, value: &str) -> Result<String, FieldViolation> {
    if value.is_empty() {
        return Ok(String::new());
    }
    https_url(
        field,
        value,
        "(an Entra ID authority host such as \"https://login.microsoftonline.com\")",
    )
}

/// An optional token scope: the API's app id URI followed by `/.default` (the client-credentials
/// flow asks for an app's whole permission set), e.g. `https://graph.microsoft.us/.default`.
pub fn parse_token_scope(field: &str, value: &str) -> Result<String, FieldViolation> {
    if value.is_empty() {
        return Ok(String::new());
    }
    let scope = https_url(field, value, "ending in /.default")?;
    if !scope.ends_with("/.default") {
        return Err(FieldViolation::new(
            field,
            format!(
                "{value:?} does not end in /.default (client credentials take an app's whole scope)"
            ),
        ));
    }
    Ok(scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_empty() {
        let settings = MicrosoftSettings::billed_in(Currency::parse("c", "EUR").unwrap());
        assert_eq!(settings.authority_host(), DEFAULT_AUTHORITY_HOST);
        assert_eq!(settings.token_scope(), DEFAULT_TOKEN_SCOPE);
        let patch = MicrosoftSettingsPatch {
            token_scope: Some("https://graph.microsoft.us/.default".into()),
            ..Default::default()
        };
        let next = patch.apply(settings);
        assert_eq!(next.token_scope(), "https://graph.microsoft.us/.default");
        assert_eq!(next.billing_currency.code(), "EUR");
    }

    #[test]
    fn urls_are_checked() {
        assert!(parse_authority_host("f", "").is_ok());
        assert!(parse_authority_host("f", "https://login.microsoftonline.us").is_ok());
        assert!(parse_authority_host("f", "https://127.0.0.1:8443").is_ok());
        for bad in [
            "http://login.microsoftonline.com",
            "https://",
            "login.x",
            "https://a b",
            "https://x?y=1",
        ] {
            assert!(parse_authority_host("f", bad).is_err(), "{bad}");
        }
        assert!(parse_token_scope("f", "https://graph.microsoft.com/.default").is_ok());
        assert!(parse_token_scope("f", "https://graph.microsoft.com/User.Read").is_err());
        assert!(parse_token_scope("f", "api://x/.default").is_err());
    }
}
