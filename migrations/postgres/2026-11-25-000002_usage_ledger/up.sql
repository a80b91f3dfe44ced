-- Pricing, usage lines (the current truth per usage key), the append-only charge ledger with its
-- per-tenant gap-free sequence, and per-partner-account poll state.

CREATE TABLE price_rules (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    vendor          TEXT,
    service         TEXT,
    meter           TEXT,
    customer_id     TEXT REFERENCES customers (id),
    kind            TEXT NOT NULL,
    value           NUMERIC NOT NULL,
    currency        TEXT,
    effective_from  TIMESTAMPTZ NOT NULL,
    effective_to    TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX price_rules_tenant_idx ON price_rules (tenant_id, id);

CREATE TABLE fx_rates (
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    from_currency   TEXT NOT NULL,
    to_currency     TEXT NOT NULL,
    effective_from  TIMESTAMPTZ NOT NULL,
    rate            NUMERIC NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, from_currency, to_currency, effective_from)
);

-- The two high-volume ledger tables carry no foreign keys: every row is written by a ledger
-- transaction that resolved its tenant, partner account and customer in the same transaction,
-- and per-row FK triggers would double the cost of ingesting usage.
CREATE TABLE usage_lines (
    tenant_id           TEXT NOT NULL,
    line_key            TEXT NOT NULL,
    partner_account_id  TEXT NOT NULL,
    vendor              TEXT NOT NULL,
    vendor_account_id   TEXT NOT NULL,
    service             TEXT NOT NULL,
    meter               TEXT NOT NULL,
    region              TEXT NOT NULL,
    window_start        TIMESTAMPTZ NOT NULL,
    window_end          TIMESTAMPTZ NOT NULL,
    meter_name          TEXT NOT NULL,
    quantity            NUMERIC NOT NULL,
    unit                TEXT NOT NULL,
    cost                NUMERIC NOT NULL,
    list_cost           NUMERIC,
    currency            TEXT NOT NULL,
    estimated           BOOLEAN NOT NULL,
    removed             BOOLEAN NOT NULL,
    customer_id         TEXT,
    rated_amount        NUMERIC,
    rated_currency      TEXT,
    rule_id             TEXT,
    unrated_reason      TEXT,
    updated_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, line_key)
);
CREATE INDEX usage_lines_window_idx ON usage_lines (tenant_id, partner_account_id, window_start);
CREATE INDEX usage_lines_unrated_idx ON usage_lines (tenant_id, line_key) WHERE unrated_reason IS NOT NULL;

-- The last sequence handed out per tenant. Taking it with UPDATE ... RETURNING locks the row until
-- commit, so sequences are gap-free and commit in order.
CREATE TABLE ledger_sequences (
    tenant_id      TEXT PRIMARY KEY REFERENCES tenants (id),
    last_sequence  BIGINT NOT NULL
);

CREATE TABLE charge_events (
    tenant_id     TEXT NOT NULL,
    sequence      BIGINT NOT NULL,
    line_key      TEXT NOT NULL,
    customer_id   TEXT NOT NULL,
    kind          TEXT NOT NULL,
    amount        NUMERIC NOT NULL,
    currency      TEXT NOT NULL,
    quantity      NUMERIC NOT NULL,
    vendor        TEXT NOT NULL,
    service       TEXT NOT NULL,
    meter         TEXT NOT NULL,
    window_start  TIMESTAMPTZ NOT NULL,
    recorded_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, sequence)
);
CREATE INDEX charge_events_customer_idx ON charge_events (tenant_id, customer_id, sequence);

CREATE TABLE poll_states (
    partner_account_id  TEXT PRIMARY KEY REFERENCES partner_accounts (id),
    tenant_id           TEXT NOT NULL REFERENCES tenants (id),
    version_tag         TEXT,
    last_poll_at        TIMESTAMPTZ,
    last_success_at     TIMESTAMPTZ,
    last_error          TEXT,
    requests_spent      BIGINT NOT NULL,
    lease_owner         TEXT,
    lease_expires_at    TIMESTAMPTZ
);
