-- The enterprise cost portal: each tenant's key for signing portal links, and portal sessions.
-- A session starts as a single-use link (valid until link_expires_at); opening it records
-- opened_at and the hash of the browser's session cookie, valid until session_expires_at.

CREATE TABLE portal_signing_keys (
    tenant_id   TEXT PRIMARY KEY REFERENCES tenants (id),
    -- Random 256 bits, hex; links are HMAC-SHA256(secret, session id).
    secret      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE portal_sessions (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL REFERENCES tenants (id),
    customer_id         TEXT NOT NULL REFERENCES customers (id),
    return_url          TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL,
    link_expires_at     TIMESTAMPTZ NOT NULL,
    opened_at           TIMESTAMPTZ,
    cookie_hash         TEXT,
    session_expires_at  TIMESTAMPTZ
);

CREATE INDEX portal_sessions_customer ON portal_sessions (tenant_id, customer_id);
