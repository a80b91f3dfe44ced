-- A change of a vendor-backed subscription in flight (issue 16): the request that holds the
-- subscription while Partner Center is asked, until it is recorded or the claim lapses (a
-- gateway that crashed mid-call holds nothing for long). NULL when no change is in flight.
ALTER TABLE subscriptions ADD COLUMN change_request TEXT;
ALTER TABLE subscriptions ADD COLUMN change_expires_at BIGINT;
