-- hoistd schema (PostgreSQL), version 7: as SQLite's version 11, each
-- effect keeps the role's `[roles.access]` as the grant was activated with
-- it (JSON text). NULL for effects queued before.
ALTER TABLE target_effects ADD COLUMN access TEXT;
