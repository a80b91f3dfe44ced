//! TenantService: the caller's tenant and its API keys.
use tonic::{Request, Response, Status};

use super::Gateway;
use super::auth::principal;
use super::convert::{required_id, timestamp};
use super::replies::{guard, reply};
use crate::domain::access::{ApiKey, MintedKey, NewApiKey, Scope};
use crate::domain::error::{Error, Violations};
use crate::domain::idempotency::{Answer, IdempotencyKey};
use crate::domain::paging::PageRequest;
use crate::domain::tenant::{Branding, Color, Tenant};
use crate::domain::text;
use crate::proto::v1;
use crate::proto::v1::tenant_service_server::TenantService;

pub struct TenantApi {
    gw: Gateway,
}

impl TenantApi {
    pub fn new(gw: Gateway) -> Self {
        Self { gw }
    }
}

fn scope_from_proto(value: i32) -> Result<Scope, Error> {
    match v1::ApiKeyScope::try_from(value) {
        Ok(v1::ApiKeyScope::Admin) => Ok(Scope::Admin),
        Ok(v1::ApiKeyScope::Billing) => Ok(Scope::Billing),
        Ok(v1::ApiKeyScope::CreditControl) => Ok(Scope::CreditControl),
        Ok(v1::ApiKeyScope::HelpDesk) => Ok(Scope::HelpDesk),
        Ok(v1::ApiKeyScope::Portal) => Ok(Scope::Portal),
        Ok(v1::ApiKeyScope::Unspecified) => Err(Error::invalid("scope", "is required")),
        Err(_) => Err(Error::invalid(
            "scope",
            format!("{value} is not a known value"),
        )),
    }
}

fn scope_to_proto(scope: Scope) -> v1::ApiKeyScope {
    match scope {
        Scope::Admin => v1::ApiKeyScope::Admin,
        Scope::Billing => v1::ApiKeyScope::Billing,
        Scope::CreditControl => v1::ApiKeyScope::CreditControl,
        Scope::HelpDesk => v1::ApiKeyScope::HelpDesk,
        Scope::Portal => v1::ApiKeyScope::Portal,
    }
}

fn api_key_to_proto(key: &ApiKey) -> v1::ApiKey {
    v1::ApiKey {
        id: key.id.clone(),
        name: key.name.clone(),
        scope: scope_to_proto(key.scope).into(),
        customer_id: key.customer_id.clone().unwrap_or_default(),
        create_time: Some(timestamp(key.created_at)),
        revoke_time: key.revoked_at.map(timestamp),
    }
}

fn tenant_to_proto(tenant: &Tenant) -> v1::Tenant {
    let colour = |c: Option<Color>| c.map(Color::hex).unwrap_or_default();
    v1::Tenant {
        id: tenant.id.clone(),
        name: tenant.name.clone(),
        currency: tenant.currency.code().to_string(),
        time_zone: tenant.time_zone.clone(),
        create_time: Some(timestamp(tenant.created_at)),
        branding: Some(v1::TenantBranding {
            primary_color: colour(tenant.branding.primary),
            accent_color: colour(tenant.branding.accent),
        }),
    }
}

#[tonic::async_trait]
impl TenantService for TenantApi {
    async fn get_tenant(
        &self,
        request: Request<v1::GetTenantRequest>,
    ) -> Result<Response<v1::Tenant>, Status> {
        let principal = principal(&request)?;
        let tenant = self.gw.store.tenant(&principal.tenant_id).await?;
        Ok(Response::new(tenant_to_proto(&tenant)))
    }

    async fn update_tenant_branding(
        &self,
        request: Request<v1::UpdateTenantBrandingRequest>,
    ) -> Result<Response<v1::Tenant>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let request_id = v.check(text::request_id(&req.request_id, true)).flatten();
        let branding = match &req.branding {
            None => {
                v.add("branding", "is required");
                None
            }
            Some(b) => v.check_error(Branding::parse(
                "branding.primary_color",
                &b.primary_color,
                "branding.accent_color",
                &b.accent_color,
            ))?,
        };
        v.into_result()?;
        let (Some(request_id), Some(branding)) = (request_id, branding) else {
            return Err(Status::internal("validated fields missing"));
        };
        let key = IdempotencyKey::new(request_id, "UpdateTenantBranding", &branding);
        let answer = self
            .gw
            .store
            .set_tenant_branding(
                &principal.tenant_id,
                &branding,
                Some(&guard(key, tenant_to_proto)),
            )
            .await?;
        if let Answer::Fresh(tenant) = &answer {
            tracing::info!(tenant_id = %tenant.id, "tenant branding updated");
        }
        reply(answer, tenant_to_proto)
    }

    async fn create_api_key(
        &self,
        request: Request<v1::CreateApiKeyRequest>,
    ) -> Result<Response<v1::CreateApiKeyResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let request_id = v.check(text::request_id(&req.request_id, true)).flatten();
        let name = v.check(text::display_name("name", &req.name, text::NAME_MAX));
        let scope = v.check_error(scope_from_proto(req.scope))?;
        match (scope, req.customer_id.is_empty()) {
            (Some(Scope::Portal), true) => v.add("customer_id", "is required for a PORTAL key"),
            (Some(s), false) if s != Scope::Portal => {
                v.add("customer_id", format!("is only for PORTAL keys, not {s}"))
            }
            _ => {}
        }
        v.into_result()?;
        let (Some(request_id), Some(name), Some(scope)) = (request_id, name, scope) else {
            return Err(Status::internal("validated fields missing"));
        };
        let new = NewApiKey {
            name,
            scope,
            customer_id: (!req.customer_id.is_empty()).then_some(req.customer_id),
        };
        // The secret is never recorded: a retry gets the first answer without it.
        let without_secret = |(key, _): &(ApiKey, MintedKey)| v1::CreateApiKeyResponse {
            api_key: Some(api_key_to_proto(key)),
            secret: String::new(),
        };
        let key = IdempotencyKey::new(request_id, "CreateApiKey", &new);
        let answer = self
            .gw
            .store
            .create_api_key(
                &principal.tenant_id,
                &new,
                Some(&guard(key, without_secret)),
            )
            .await?;
        if let Answer::Fresh((key, _)) = &answer {
            tracing::info!(key_id = %key.id, scope = %key.scope, "API key created");
        }
        reply(answer, |(key, minted)| v1::CreateApiKeyResponse {
            api_key: Some(api_key_to_proto(key)),
            secret: minted.token().to_string(),
        })
    }

    async fn list_api_keys(
        &self,
        request: Request<v1::ListApiKeysRequest>,
    ) -> Result<Response<v1::ListApiKeysResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let page = PageRequest::parse(req.page_size, &req.page_token, "api_keys")
            .map_err(Error::InvalidArgument)?;
        let page = self
            .gw
            .store
            .list_api_keys(&principal.tenant_id, &page)
            .await?;
        Ok(Response::new(v1::ListApiKeysResponse {
            api_keys: page.items.iter().map(api_key_to_proto).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<v1::RevokeApiKeyRequest>,
    ) -> Result<Response<v1::ApiKey>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = v.check_error(required_id("id", &req.id))?;
        let request_id = v.check(text::request_id(&req.request_id, false)).flatten();
        v.into_result()?;
        let id = id.ok_or_else(|| Status::internal("validated id missing"))?;
        let guarded = request_id.map(|r| {
            guard(
                IdempotencyKey::new(r, "RevokeApiKey", &id),
                api_key_to_proto,
            )
        });
        let answer = self
            .gw
            .store
            .revoke_api_key(&principal.tenant_id, &id, guarded.as_ref())
            .await?;
        if let Answer::Fresh(key) = &answer {
            tracing::info!(key_id = %key.id, "API key revoked");
        }
        reply(answer, api_key_to_proto)
    }
}
