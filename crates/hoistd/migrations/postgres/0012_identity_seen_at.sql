-- hoistd schema (PostgreSQL), version 12: as SQLite's version 17, when the
-- provider said what identities keeps of a user (their token's iat), in
-- milliseconds since 1970: of two instances' views, the later word wins.
-- NULL for what was written before or is undated, older than any date.
ALTER TABLE identities ADD COLUMN seen_at BIGINT;
