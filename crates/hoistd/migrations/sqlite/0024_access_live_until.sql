-- While an extension has not reached its target: when the access there
-- ends, as the target last took it (before the grant's end). NULL
-- otherwise. It counts only while `live_until_updated` is the row's
-- `access_updated`: a write by an instance from before this version
-- (PostgreSQL, during a rolling upgrade) changes that, and leaves none.
ALTER TABLE grant_access ADD COLUMN live_until INTEGER;
ALTER TABLE grant_access ADD COLUMN live_until_updated INTEGER;
