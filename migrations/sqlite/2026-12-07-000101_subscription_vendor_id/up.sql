-- Microsoft seats are bought through Partner Center (issue 16): the subscription its checkout
-- created, set when the vendor confirmed the order; NULL for the MSP's own items.
ALTER TABLE subscriptions ADD COLUMN vendor_subscription_id TEXT;
-- One gateway subscription per vendor subscription: a purchase is recorded once.
CREATE UNIQUE INDEX subscriptions_vendor_subscription_idx
    ON subscriptions (tenant_id, vendor_subscription_id)
    WHERE vendor_subscription_id IS NOT NULL;
