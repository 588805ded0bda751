-- hoistd schema (PostgreSQL), version 3: keys the broker keeps for one
-- purpose each, beside the credential signing keys (which rotate, newest
-- first): the SSH user CA key. A purpose holds one key for good (rule 11),
-- so every host that trusts it keeps trusting what the broker signs after
-- a restart, and of two instances starting at once exactly one makes it.
CREATE TABLE broker_keys (
    purpose    TEXT PRIMARY KEY,
    kid        TEXT NOT NULL,
    pkcs8      BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
