-- hoistd schema (PostgreSQL), version 18: as SQLite's version 24, while
-- an extension has not reached its target, when the access there ends as
-- the target last took it; it counts only while `live_until_updated` is
-- the row's `access_updated`, so that an instance still running the
-- version before, which writes neither, leaves none behind.
ALTER TABLE grant_access ADD COLUMN live_until BIGINT;
ALTER TABLE grant_access ADD COLUMN live_until_updated BIGINT;
