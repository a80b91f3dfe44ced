-- The catalogue (issue 16): what the MSP sells by the seat, Microsoft NCE licences and its own
-- items, with the offers (term and billing frequency) each is sold as.
CREATE TABLE catalog_items (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    vendor           TEXT NOT NULL,
    -- Microsoft: product:sku:availability; MSP: its own code.
    catalog_item_id  TEXT NOT NULL,
    product          TEXT NOT NULL,
    unit             TEXT NOT NULL,
    -- "P1Y:MONTHLY,P1Y:ANNUAL": a handful per item, read with it.
    offers           TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant_id, vendor, catalog_item_id)
);
CREATE INDEX catalog_items_tenant_idx ON catalog_items (tenant_id, id);

-- What one seat of an offer costs the MSP for one billing period, from a month on.
CREATE TABLE catalog_unit_costs (
    tenant_id          TEXT NOT NULL,
    item_id            TEXT NOT NULL REFERENCES catalog_items (id),
    term               TEXT NOT NULL,
    billing_frequency  TEXT NOT NULL,
    currency           TEXT NOT NULL,
    -- "YYYY-MM": sorts as text.
    effective_month    TEXT NOT NULL,
    unit_cost          NUMERIC NOT NULL,
    list_price         NUMERIC,
    PRIMARY KEY (item_id, term, billing_frequency, currency, effective_month)
);

-- Seat subscriptions: what each holds now and the billing period it is in (the state the
-- domain's Subscription keeps; its charges are in charge_events like usage's).
CREATE TABLE subscriptions (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants (id),
    customer_id        TEXT NOT NULL REFERENCES customers (id),
    item_id            TEXT NOT NULL REFERENCES catalog_items (id),
    status             TEXT NOT NULL,
    quantity           BIGINT NOT NULL,
    term               TEXT NOT NULL,
    billing_frequency  TEXT NOT NULL,
    time_zone          TEXT NOT NULL,
    currency           TEXT NOT NULL,
    term_start         TIMESTAMPTZ NOT NULL,
    period_index       BIGINT NOT NULL,
    period_start       TIMESTAMPTZ NOT NULL,
    period_end         TIMESTAMPTZ NOT NULL,
    unit_price         NUMERIC NOT NULL,
    seat_seconds       BIGINT NOT NULL,
    -- JSON: the seat additions still inside the 168-hour window, and what the renewal changes.
    lots               TEXT NOT NULL,
    scheduled          TEXT NOT NULL,
    auto_renew         BOOLEAN NOT NULL,
    ended_at           TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX subscriptions_customer_idx ON subscriptions (tenant_id, customer_id, id);
CREATE INDEX subscriptions_tenant_idx ON subscriptions (tenant_id, id);
-- The period-boundary run reads the active subscriptions whose period has ended.
CREATE INDEX subscriptions_due_idx ON subscriptions (period_end) WHERE status = 'ACTIVE';
