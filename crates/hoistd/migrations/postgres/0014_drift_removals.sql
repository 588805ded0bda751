-- hoistd schema (PostgreSQL), version 14: as SQLite's version 19, drift
-- the reconciler is removing, written before the call and deleted with
-- the `drift_removed` audit entry.
CREATE TABLE drift_removals (
    target   TEXT NOT NULL,
    name     TEXT NOT NULL,
    grant_id TEXT,
    found_at BIGINT NOT NULL,
    PRIMARY KEY (target, name)
);
