-- Credit control: tenant defaults, per-customer settings and exposure state, and credit events
-- with their own per-tenant gap-free sequence.

CREATE TABLE credit_defaults (
    tenant_id    TEXT PRIMARY KEY REFERENCES tenants (id),
    -- Comma-separated whole percentages of the credit limit, ascending, e.g. '50,80,100'.
    thresholds   TEXT NOT NULL,
    policy       TEXT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- One row per customer that has charges or settings. open_charges is the running sum of the
-- customer's charge events (kept in the ledger write's transaction); crossed lists the thresholds
-- the exposure is currently at or above.
CREATE TABLE customer_credit (
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    customer_id      TEXT NOT NULL REFERENCES customers (id),
    thresholds       TEXT,
    policy           TEXT,
    open_charges     TEXT NOT NULL,
    unpaid_invoices  TEXT NOT NULL,
    crossed          TEXT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, customer_id)
);

CREATE TABLE credit_sequences (
    tenant_id      TEXT PRIMARY KEY REFERENCES tenants (id),
    last_sequence  BIGINT NOT NULL
);

CREATE TABLE credit_events (
    tenant_id          TEXT NOT NULL REFERENCES tenants (id),
    sequence           BIGINT NOT NULL,
    customer_id        TEXT NOT NULL REFERENCES customers (id),
    threshold_percent  INTEGER NOT NULL,
    direction          TEXT NOT NULL,
    exposure           TEXT NOT NULL,
    credit_limit       TEXT NOT NULL,
    currency           TEXT NOT NULL,
    policy             TEXT NOT NULL,
    action             TEXT NOT NULL,
    ledger_sequence    BIGINT NOT NULL,
    recorded_at        BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, sequence)
);
CREATE INDEX credit_events_customer_idx ON credit_events (tenant_id, customer_id, sequence);
CREATE INDEX charge_events_window_idx ON charge_events (tenant_id, customer_id, window_start);
