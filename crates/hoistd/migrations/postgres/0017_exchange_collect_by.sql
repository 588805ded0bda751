-- hoistd schema (PostgreSQL), version 17: as SQLite's version 23, when
-- each workload task keyed by its token (`jti`) can no longer be collected
-- (its token's end with its rule's leeway, and the exchange's 10 s wait
-- for its target): the reaper revokes a grant still active then whose
-- credential was never handed over. NULL once settled, and for a task
-- keyed by its run; exchanges made before are given the most leeway any
-- rule may have (3,600 s).
ALTER TABLE workload_exchanges ADD COLUMN collect_by BIGINT;
UPDATE workload_exchanges SET collect_by = expires_at + 3610000
    WHERE redeemed_at IS NULL AND position(E'\njti:' in task_key) > 0;
CREATE INDEX workload_exchanges_uncollected ON workload_exchanges (collect_by)
    WHERE redeemed_at IS NULL AND collect_by IS NOT NULL;
