-- Purchases of Microsoft seats sent to Partner Center and not yet recorded (issue 16): written
-- before the cart and checkout, removed by the transaction that records the subscription. One
-- left behind (the answer was lost, the gateway died) is finished by the pending-order sweeper,
-- which repeats the order with the same request ids. `refusal` is set when Partner Center
-- refused the repeated order: the row is then the request's answer, not a pending order.
CREATE TABLE pending_seat_orders (
    tenant_id          TEXT NOT NULL REFERENCES tenants (id),
    request_id         TEXT NOT NULL,
    fingerprint        TEXT NOT NULL,
    customer_id        TEXT NOT NULL,
    item_id            TEXT NOT NULL,
    quantity           BIGINT NOT NULL,
    term               TEXT NOT NULL,
    billing_frequency  TEXT NOT NULL,
    -- The purchase time the request was decided at: the first period starts then.
    ordered_at         BIGINT NOT NULL,
    created_at         BIGINT NOT NULL,
    refusal            TEXT,
    PRIMARY KEY (tenant_id, request_id)
);
CREATE INDEX pending_seat_orders_due_idx ON pending_seat_orders (created_at) WHERE refusal IS NULL;
