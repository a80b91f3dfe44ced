-- Service actions: suspend, resume, purge or enroll a customer, one step per vendor account.
-- The action row is its own audit record (who asked, why, which credit event caused it);
-- change_sequence numbers every change of an action or its steps per tenant, in commit order
-- (service_action_sequences is locked by each writer until commit), for StreamServiceActions.

CREATE TABLE service_action_sequences (
    tenant_id      TEXT PRIMARY KEY REFERENCES tenants (id),
    last_sequence  BIGINT NOT NULL
);

CREATE TABLE service_actions (
    id                     TEXT PRIMARY KEY,
    tenant_id              TEXT NOT NULL REFERENCES tenants (id),
    customer_id            TEXT NOT NULL REFERENCES customers (id),
    kind                   TEXT NOT NULL,
    status                 TEXT NOT NULL,
    -- ENROLL only: the vendor enrolled with.
    vendor                 TEXT,
    reason                 TEXT NOT NULL,
    -- True when credit policy asked for it (then credit_event_sequence says which event).
    automatic              BOOLEAN NOT NULL,
    requested_by_key_id    TEXT,
    requested_by_key_name  TEXT,
    credit_event_sequence  BIGINT,
    change_sequence        BIGINT NOT NULL,
    -- The replica carrying the action out, until lease_expires_at (PostgreSQL replicas).
    lease_owner            TEXT,
    lease_expires_at       TIMESTAMPTZ,
    created_at             TIMESTAMPTZ NOT NULL,
    updated_at             TIMESTAMPTZ NOT NULL,
    finished_at            TIMESTAMPTZ
);
CREATE INDEX service_actions_customer_idx ON service_actions (tenant_id, customer_id, id);
CREATE INDEX service_actions_change_idx ON service_actions (tenant_id, change_sequence);
CREATE INDEX service_actions_open_idx ON service_actions (status) WHERE status IN ('PENDING', 'RUNNING');
-- One open action changes a customer at a time (enrollments with different vendors aside):
-- a conflicting insert fails here even when two replicas admit it at once.
CREATE UNIQUE INDEX service_actions_one_open_idx ON service_actions (customer_id)
    WHERE status IN ('PENDING', 'RUNNING') AND kind <> 'ENROLL';

CREATE TABLE service_action_steps (
    action_id           TEXT NOT NULL REFERENCES service_actions (id),
    position            INTEGER NOT NULL,
    tenant_id           TEXT NOT NULL REFERENCES tenants (id),
    partner_account_id  TEXT NOT NULL REFERENCES partner_accounts (id),
    target_kind         TEXT NOT NULL,
    target_account_id   TEXT NOT NULL,
    -- A Microsoft subscription's customer tenant.
    target_tenant_id    TEXT,
    status              TEXT NOT NULL,
    attempts            INTEGER NOT NULL,
    last_error          TEXT,
    not_before          TIMESTAMPTZ,
    started_at          TIMESTAMPTZ,
    finished_at         TIMESTAMPTZ,
    PRIMARY KEY (action_id, position)
);
-- Closures counted against AWS's 30-day quota: finished purge steps per partner account.
CREATE INDEX service_action_steps_partner_idx ON service_action_steps (partner_account_id, finished_at);

-- The suspend or resume action a credit event caused.
ALTER TABLE credit_events ADD COLUMN service_action_id TEXT;
