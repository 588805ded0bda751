-- hoistd schema (PostgreSQL), version 20: as SQLite's version 26, the one
-- ssh target an SSH CA signs for, bound the first time a policy gives the
-- CA a target and kept for good; NULL for a CA no policy has given one.
ALTER TABLE ssh_authorities ADD COLUMN target TEXT;
