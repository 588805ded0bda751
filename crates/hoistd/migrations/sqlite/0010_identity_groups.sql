-- hoistd schema, version 10: what a provider last said of a user bound to
-- one of its identities (display name, groups as a JSON array), so that
-- the broker weighs a user who is not the caller the same after a restart,
-- and on every instance. NULL until their first sign-in since.
ALTER TABLE identities ADD COLUMN display_name TEXT;
ALTER TABLE identities ADD COLUMN groups TEXT;
