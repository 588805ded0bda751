-- hoistd schema, version 19: drift the reconciler is removing. A row is
-- written before the call that removes the access and deleted with the
-- `drift_removed` audit entry, so a removal whose entry could not be
-- written (the store down, leadership lost, a crash) is audited once a
-- later listing of the target shows the access gone.
CREATE TABLE drift_removals (
    target   TEXT NOT NULL,
    name     TEXT NOT NULL,
    grant_id TEXT,
    found_at INTEGER NOT NULL,
    PRIMARY KEY (target, name)
);
