-- hoistd schema (PostgreSQL), version 6: as SQLite's version 10, what a
-- provider last said of a user bound to one of its identities (display
-- name, groups as a JSON array). NULL until their first sign-in since.
ALTER TABLE identities ADD COLUMN display_name TEXT;
ALTER TABLE identities ADD COLUMN groups TEXT;
