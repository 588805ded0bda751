-- While an extension has not reached its target: when the access there
-- ends, as the target last took it (before the grant's end). NULL
-- otherwise.
ALTER TABLE grant_access ADD COLUMN live_until INTEGER;
