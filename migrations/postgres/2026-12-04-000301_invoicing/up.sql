-- Invoicing (issue 15): each customer's close chain, immutable invoices and their lines, the
-- tenant's gap-free invoice numbers, payments, tenant-wide close runs and invoicing settings.
-- The rules are docs/invoicing.md.

-- A tenant's invoicing settings; a tenant without a row uses the defaults (INV, HALF_UP, 3 days).
CREATE TABLE invoice_settings (
    tenant_id      TEXT PRIMARY KEY REFERENCES tenants (id),
    number_prefix  TEXT NOT NULL,
    rounding       TEXT NOT NULL,
    grace_days     INTEGER NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);

-- Each customer's last close, so a close reads one row instead of its invoices.
CREATE TABLE customer_billing (
    tenant_id            TEXT NOT NULL REFERENCES tenants (id),
    customer_id          TEXT NOT NULL REFERENCES customers (id),
    last_closed_end      TIMESTAMPTZ NOT NULL,
    last_close_sequence  BIGINT NOT NULL,
    -- The lowest ledger sequence the last close left open: the next close reads from here.
    open_from_sequence   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, customer_id)
);

-- The last invoice number counter handed out per tenant; taken in the transaction that stores
-- the invoice, so numbers are gap-free and commit in order.
CREATE TABLE invoice_number_sequences (
    tenant_id    TEXT PRIMARY KEY REFERENCES tenants (id),
    last_number  BIGINT NOT NULL
);

CREATE TABLE invoices (
    tenant_id                TEXT NOT NULL REFERENCES tenants (id),
    id                       TEXT NOT NULL,
    customer_id              TEXT NOT NULL REFERENCES customers (id),
    period_start             TIMESTAMPTZ NOT NULL,
    period_end               TIMESTAMPTZ NOT NULL,
    time_zone                TEXT NOT NULL,
    cycle                    TEXT NOT NULL,
    close_sequence           BIGINT NOT NULL,
    previous_close_sequence  BIGINT NOT NULL,
    -- NULL for a close that billed nothing: it takes no number.
    number_counter           BIGINT,
    number                   TEXT,
    customer_external_ref    TEXT NOT NULL,
    customer_name            TEXT NOT NULL,
    currency                 TEXT NOT NULL,
    rounding                 TEXT NOT NULL,
    unrounded_total          NUMERIC NOT NULL,
    total                    NUMERIC NOT NULL,
    rounding_difference      NUMERIC NOT NULL,
    -- Σ of the invoice's payments, kept with them.
    -- UNPAID | PARTIALLY_PAID | PAID | CREDIT (domain::payment::PaymentStatus), kept with paid.
    payment_status           TEXT NOT NULL,
    paid                     NUMERIC NOT NULL,
    finalized_at             TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, id),
    -- One close per period: closing again finds this row.
    UNIQUE (tenant_id, customer_id, period_start),
    UNIQUE (tenant_id, number_counter)
);

CREATE TABLE invoice_lines (
    tenant_id               TEXT NOT NULL,
    invoice_id              TEXT NOT NULL,
    line_number             INTEGER NOT NULL,
    vendor                  TEXT NOT NULL,
    service                 TEXT NOT NULL,
    meter                   TEXT NOT NULL,
    unit                    TEXT NOT NULL,
    quantity                NUMERIC NOT NULL,
    unrounded_amount        NUMERIC NOT NULL,
    amount                  NUMERIC NOT NULL,
    -- Set on a prior-period adjustment: the period it corrects and that period's invoice.
    adjusts_period_start    TIMESTAMPTZ,
    adjusts_period_end      TIMESTAMPTZ,
    adjusts_invoice_id      TEXT,
    adjusts_invoice_number  TEXT,
    PRIMARY KEY (tenant_id, invoice_id, line_number),
    FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, id)
);

CREATE TABLE payments (
    tenant_id    TEXT NOT NULL,
    id           TEXT NOT NULL,
    invoice_id   TEXT NOT NULL,
    amount       NUMERIC NOT NULL,
    currency     TEXT NOT NULL,
    reference    TEXT NOT NULL,
    -- The invoice's paid sum and balance just after this payment, so a retried request answers
    -- exactly what the first call did.
    paid_after     NUMERIC NOT NULL,
    balance_after  NUMERIC NOT NULL,
    recorded_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, id)
);
CREATE INDEX payments_invoice_idx ON payments (tenant_id, invoice_id);

-- A tenant-wide month-close run: which customers it has done (in id order), so a run that was
-- interrupted resumes after the last customer it finished.
CREATE TABLE close_runs (
    tenant_id           TEXT NOT NULL REFERENCES tenants (id),
    id                  TEXT NOT NULL,
    as_of               TIMESTAMPTZ NOT NULL,
    status              TEXT NOT NULL,
    customers_planned   INTEGER NOT NULL,
    customers_done      INTEGER NOT NULL,
    invoices_closed     INTEGER NOT NULL,
    cursor_customer_id  TEXT,
    last_error          TEXT,
    started_at          TIMESTAMPTZ NOT NULL,
    finished_at         TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, id)
);
