-- When each workload task can no longer be collected: its newest token's
-- end with its rule's leeway, after which no poll is let in. A grant
-- still active then, with its credential never handed over, is revoked
-- by the reaper: nobody could use or withdraw it. NULL once the reaper
-- has settled the task. Exchanges made before are given the most leeway
-- any rule may have (300 s).
ALTER TABLE workload_exchanges ADD COLUMN collect_by INTEGER;
UPDATE workload_exchanges SET collect_by = expires_at + 300000 WHERE redeemed_at IS NULL;
CREATE INDEX workload_exchanges_uncollected ON workload_exchanges (collect_by)
    WHERE redeemed_at IS NULL AND collect_by IS NOT NULL;
