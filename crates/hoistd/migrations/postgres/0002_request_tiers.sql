-- hoistd schema (PostgreSQL), version 2: each request keeps the risk tier
-- its role had when it was filed, as it keeps the approvals it needed, so a
-- policy change later does not rewrite what approvers were shown. NULL for
-- requests filed before tiers existed.
ALTER TABLE requests ADD COLUMN tier SMALLINT CHECK (tier BETWEEN 0 AND 3);
