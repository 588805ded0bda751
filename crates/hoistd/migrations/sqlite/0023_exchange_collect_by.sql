-- When each workload task keyed by its token (`jti`) can no longer be
-- collected: its token's end with its rule's leeway, after which no poll
-- is let in, and the 10 s an exchange then waits for its target. A grant
-- still active then, with its credential never handed over, is revoked by
-- the reaper: nobody could use or withdraw it. NULL once the reaper has
-- settled the task, and for a task keyed by its run (a fresh token of the
-- run may collect it later). Exchanges made before are given the most
-- leeway any rule may have (3,600 s).
ALTER TABLE workload_exchanges ADD COLUMN collect_by INTEGER;
UPDATE workload_exchanges SET collect_by = expires_at + 3610000
    WHERE redeemed_at IS NULL AND instr(task_key, char(10) || 'jti:') > 0;
CREATE INDEX workload_exchanges_uncollected ON workload_exchanges (collect_by)
    WHERE redeemed_at IS NULL AND collect_by IS NOT NULL;
