-- hoistd schema, version 26: the one ssh target an SSH CA signs for, bound
-- the first time a policy gives the CA a target and kept for good (a host
-- that trusts a CA lets in every certificate it signs, so the CA may not
-- pass to another target's hosts). NULL for a CA no policy has given one.
ALTER TABLE ssh_authorities ADD COLUMN target TEXT;
