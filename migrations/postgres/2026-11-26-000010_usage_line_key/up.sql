-- Usage lines are keyed by their line key alone. A line key is a 128-bit hash over the partner
-- account (unique across tenants) and the usage key, so it identifies a line by itself. Keyed so,
-- looking up a write's keys always probes the primary key: with the tenant first in the key, a
-- stale estimate of a tenant's row count (a new tenant's first big pull) let the planner scan all
-- of the tenant's lines through another index for every write. The index is smaller, too.
ALTER TABLE usage_lines DROP CONSTRAINT usage_lines_pkey;
ALTER TABLE usage_lines ADD PRIMARY KEY (line_key);
