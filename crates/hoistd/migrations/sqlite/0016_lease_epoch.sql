-- hoistd schema, version 16: the leader epoch of the last process that
-- opened this database. One process uses a SQLite store, and leads for as
-- long as it runs; each start takes an epoch above the last one and at
-- least the milliseconds since 1970, so a target that keeps the highest
-- epoch it has seen tells a restarted hoistd's calls from its
-- predecessor's, even with the host's clock set back.
CREATE TABLE lease_epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL
);
