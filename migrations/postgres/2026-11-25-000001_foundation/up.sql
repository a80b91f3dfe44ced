-- Tenants (MSPs), their API keys, partner accounts, customers and idempotency records.
-- Money is NUMERIC (exact); instants are TIMESTAMPTZ; ids are prefixed UUIDv7 text.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    currency    TEXT NOT NULL,
    time_zone   TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    name         TEXT NOT NULL,
    scope        TEXT NOT NULL,
    customer_id  TEXT,
    secret_hash  TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id, id);

CREATE TABLE partner_accounts (
    id                     TEXT PRIMARY KEY,
    tenant_id              TEXT NOT NULL REFERENCES tenants (id),
    vendor                 TEXT NOT NULL,
    display_name           TEXT NOT NULL,
    vendor_account_id      TEXT NOT NULL,
    partner_discount_rate  NUMERIC NOT NULL,
    credentials_ref        TEXT NOT NULL,
    poll_interval_secs     BIGINT NOT NULL,
    enabled                BOOLEAN NOT NULL,
    endpoint_url           TEXT NOT NULL,
    version                BIGINT NOT NULL,
    created_at             TIMESTAMPTZ NOT NULL,
    updated_at             TIMESTAMPTZ NOT NULL,
    CONSTRAINT partner_accounts_vendor_account_key UNIQUE (tenant_id, vendor, vendor_account_id)
);
CREATE INDEX partner_accounts_tenant_idx ON partner_accounts (tenant_id, id);

CREATE TABLE customers (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    external_ref      TEXT NOT NULL,
    display_name      TEXT NOT NULL,
    billing_currency  TEXT NOT NULL,
    billing_cycle     TEXT NOT NULL,
    time_zone         TEXT NOT NULL,
    credit_limit      NUMERIC NOT NULL,
    status            TEXT NOT NULL,
    version           BIGINT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    CONSTRAINT customers_external_ref_key UNIQUE (tenant_id, external_ref)
);
CREATE INDEX customers_tenant_idx ON customers (tenant_id, id);

CREATE TABLE enrollments (
    customer_id         TEXT NOT NULL REFERENCES customers (id),
    partner_account_id  TEXT NOT NULL REFERENCES partner_accounts (id),
    vendor              TEXT NOT NULL,
    status              TEXT NOT NULL,
    status_detail       TEXT NOT NULL,
    portal_url          TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (customer_id, partner_account_id)
);

CREATE TABLE vendor_accounts (
    tenant_id           TEXT NOT NULL REFERENCES tenants (id),
    vendor              TEXT NOT NULL,
    account_id          TEXT NOT NULL,
    kind                TEXT NOT NULL,
    customer_id         TEXT NOT NULL REFERENCES customers (id),
    partner_account_id  TEXT NOT NULL REFERENCES partner_accounts (id),
    linked_at           TIMESTAMPTZ NOT NULL,
    -- One vendor account belongs to at most one customer of the tenant.
    PRIMARY KEY (tenant_id, vendor, account_id)
);
CREATE INDEX vendor_accounts_customer_idx ON vendor_accounts (customer_id);

-- A mutating call's request_id, so a retry returns the first result.
CREATE TABLE idempotency_keys (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    request_id   TEXT NOT NULL,
    operation    TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    resource_id  TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, request_id)
);
