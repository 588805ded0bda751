-- hoistd schema (PostgreSQL), version 18: as SQLite's version 24, while
-- an extension has not reached its target, when the access there ends as
-- the target last took it. NULL otherwise.
ALTER TABLE grant_access ADD COLUMN live_until BIGINT;
