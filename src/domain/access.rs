//! API keys, their scopes, and what each scope may do.
//!
//! A key is shown once as `mspgw.<key id>.<secret>`; the gateway keeps only the SHA-256 of the
//! secret. The secret is 256 random bits, so a fast hash is the right tool (no password stretching
//! needed), and lookups go by key id, never by hash.
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Admin,
    Billing,
    CreditControl,
    HelpDesk,
    Portal,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "ADMIN",
            Scope::Billing => "BILLING",
            Scope::CreditControl => "CREDIT_CONTROL",
            Scope::HelpDesk => "HELP_DESK",
            Scope::Portal => "PORTAL",
        }
    }

    /// Whether a key of this scope may perform `action` on `area`. Portal keys are further
    /// narrowed to their one customer by [`Principal::customer_scope`].
    pub fn allows(self, area: Area, action: Action) -> bool {
        use Action::*;
        use Area::*;
        match self {
            Scope::Admin => true,
            // Billing runs order to cash; credit policy and service actions belong to credit
            // control.
            Scope::Billing => match action {
                Read => area != ApiKeys,
                Write => matches!(
                    area,
                    Customers
                        | PartnerAccounts
                        | Pricing
                        | Usage
                        | Invoices
                        | Catalog
                        | Subscriptions
                ),
            },
            Scope::CreditControl => match action {
                Read => area != ApiKeys,
                Write => matches!(area, CreditControl | ServiceActions),
            },
            Scope::HelpDesk => action == Read && area != ApiKeys,
            // Portal keys read their own customer's invoices and service actions (handlers
            // confine them).
            Scope::Portal => {
                action == Read
                    && matches!(area, Tenant | Customers | Usage | Invoices | ServiceActions)
            }
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().replace('-', "_").as_str() {
            "ADMIN" => Ok(Scope::Admin),
            "BILLING" => Ok(Scope::Billing),
            "CREDIT_CONTROL" => Ok(Scope::CreditControl),
            "HELP_DESK" => Ok(Scope::HelpDesk),
            "PORTAL" => Ok(Scope::Portal),
            other => Err(format!(
                "unknown scope {other:?} (admin, billing, credit-control, help-desk, portal)"
            )),
        }
    }
}

/// What a call touches, for permission checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Tenant,
    ApiKeys,
    PartnerAccounts,
    Customers,
    Pricing,
    Usage,
    CreditControl,
    ServiceActions,
    Invoices,
    /// Purging a customer's vendor accounts: irreversible, so admin keys only (no scope but
    /// admin writes it).
    ServicePurge,
    /// The tenant's invoicing settings (number prefix, rounding, grace): they change every
    /// invoice to come, so admin keys only write them.
    InvoiceSettings,
    /// The catalogue: items and what their seats cost the MSP.
    Catalog,
    /// Customers' seat subscriptions (changing them appends charges).
    Subscriptions,
}

impl Area {
    fn noun(self) -> &'static str {
        match self {
            Area::Tenant => "the tenant",
            Area::ApiKeys => "API keys",
            Area::PartnerAccounts => "partner accounts",
            Area::Customers => "customers",
            Area::Pricing => "pricing",
            Area::Usage => "usage and charges",
            Area::CreditControl => "credit control",
            Area::ServiceActions => "service actions",
            Area::Invoices => "invoices and payments",
            Area::ServicePurge => "customers' services by purging them",
            Area::InvoiceSettings => "invoicing settings",
            Area::Catalog => "the catalogue",
            Area::Subscriptions => "subscriptions",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Write,
}

/// The authenticated caller: which tenant, through which key, with what scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant_id: String,
    pub key_id: String,
    pub scope: Scope,
    /// Set for portal keys: the only customer they may see.
    pub customer_id: Option<String>,
}

impl Principal {
    pub fn require(&self, area: Area, action: Action) -> Result<()> {
        if self.scope.allows(area, action) {
            return Ok(());
        }
        let verb = match action {
            Action::Read => "read",
            Action::Write => "change",
        };
        Err(Error::PermissionDenied(format!(
            "a {} key may not {verb} {}",
            self.scope,
            area.noun()
        )))
    }

    /// The one customer this caller is confined to, if any.
    pub fn customer_scope(&self) -> Option<&str> {
        self.customer_id.as_deref()
    }

    /// NOT_FOUND unless the caller may see `customer_id` (portal keys see only their own).
    pub fn require_customer(&self, customer_id: &str) -> Result<()> {
        match self.customer_scope() {
            Some(own) if own != customer_id => Err(Error::not_found("customer", customer_id)),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub scope: Scope,
    pub customer_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A freshly minted key: its secret is known only until this value is dropped.
pub struct MintedKey {
    pub id: String,
    pub secret_hash: String,
    token: String,
}

impl MintedKey {
    pub fn new() -> Self {
        let id = super::ids::new_id(super::ids::API_KEY);
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let secret = URL_SAFE_NO_PAD.encode(secret);
        MintedKey {
            token: format!("{TOKEN_PREFIX}.{id}.{secret}"),
            secret_hash: hash_secret(&secret),
            id,
        }
    }

    /// The bearer token to hand to the caller, once.
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl Default for MintedKey {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MintedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

const TOKEN_PREFIX: &str = "mspgw";

/// A bearer token split into the key id to look up and the secret to verify.
pub struct PresentedKey<'a> {
    pub key_id: &'a str,
    secret: &'a str,
}

impl<'a> PresentedKey<'a> {
    pub fn parse(token: &'a str) -> Result<Self> {
        let mut parts = token.splitn(3, '.');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(TOKEN_PREFIX), Some(key_id), Some(secret))
                if !key_id.is_empty() && !secret.is_empty() =>
            {
                Ok(PresentedKey { key_id, secret })
            }
            _ => Err(Error::Unauthenticated(
                "the API key is malformed (expected \"mspgw.<key id>.<secret>\")".into(),
            )),
        }
    }

    /// Constant-time comparison of the presented secret's hash with the stored one.
    pub fn matches(&self, stored_hash: &str) -> bool {
        let presented = hash_secret(self.secret);
        presented.len() == stored_hash.len()
            && presented
                .bytes()
                .zip(stored_hash.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A validated request for a new key.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewApiKey {
    pub name: String,
    #[serde(serialize_with = "serialize_scope")]
    pub scope: Scope,
    pub customer_id: Option<String>,
}

fn serialize_scope<S: serde::Serializer>(scope: &Scope, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(scope.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_keys_verify_and_others_do_not() {
        let key = MintedKey::new();
        let presented = PresentedKey::parse(key.token()).unwrap();
        assert_eq!(presented.key_id, key.id);
        assert!(presented.matches(&key.secret_hash));
        let other = MintedKey::new();
        assert!(!presented.matches(&other.secret_hash));
        assert!(PresentedKey::parse("Bearer x").is_err());
        assert!(PresentedKey::parse("mspgw..").is_err());
    }

    #[test]
    fn read_only_scopes_cannot_write() {
        for scope in [Scope::HelpDesk, Scope::Portal] {
            assert!(!scope.allows(Area::Customers, Action::Write));
        }
        assert!(Scope::Billing.allows(Area::Customers, Action::Write));
        assert!(!Scope::Billing.allows(Area::ApiKeys, Action::Read));
        assert!(!Scope::Portal.allows(Area::PartnerAccounts, Action::Read));
        assert!(Scope::CreditControl.allows(Area::ServiceActions, Action::Write));
        assert!(!Scope::Billing.allows(Area::CreditControl, Action::Write));
        assert!(Scope::Billing.allows(Area::CreditControl, Action::Read));
        assert!(!Scope::Billing.allows(Area::ServiceActions, Action::Write));
        assert!(!Scope::Billing.allows(Area::Tenant, Action::Write));
        assert!(!Scope::CreditControl.allows(Area::ServicePurge, Action::Write));
        assert!(Scope::Admin.allows(Area::ServicePurge, Action::Write));
        assert!(!Scope::Billing.allows(Area::InvoiceSettings, Action::Write));
        assert!(Scope::Billing.allows(Area::InvoiceSettings, Action::Read));
        assert!(!Scope::Portal.allows(Area::InvoiceSettings, Action::Read));
        assert!(Scope::Admin.allows(Area::InvoiceSettings, Action::Write));
        assert!(Scope::Portal.allows(Area::ServiceActions, Action::Read));
        assert!(!Scope::HelpDesk.allows(Area::ServiceActions, Action::Write));
    }
}
