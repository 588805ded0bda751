-- hoistd schema, version 17: when the provider said what identities keeps
-- of a user (their token's iat), in milliseconds since 1970, so that a
-- later word is never replaced by an earlier one. NULL for what was
-- written before or is undated, older than any date.
ALTER TABLE identities ADD COLUMN seen_at INTEGER;
