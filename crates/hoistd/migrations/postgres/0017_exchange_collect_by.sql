-- hoistd schema (PostgreSQL), version 17: as SQLite's version 23, when
-- each workload task can no longer be collected (its newest token's end
-- with its rule's leeway): the reaper revokes a grant still active then
-- whose credential was never handed over. NULL once settled; exchanges
-- made before are given the most leeway any rule may have (300 s).
ALTER TABLE workload_exchanges ADD COLUMN collect_by BIGINT;
UPDATE workload_exchanges SET collect_by = expires_at + 300000 WHERE redeemed_at IS NULL;
CREATE INDEX workload_exchanges_uncollected ON workload_exchanges (collect_by)
    WHERE redeemed_at IS NULL AND collect_by IS NOT NULL;
