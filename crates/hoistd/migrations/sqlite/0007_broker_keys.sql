-- hoistd schema, version 7: keys the broker keeps for one purpose each,
-- beside the credential signing keys (which rotate, newest first): the SSH
-- user CA key. A purpose holds one key for good, so every host that trusts
-- it keeps trusting what the broker signs after a restart.
CREATE TABLE broker_keys (
    purpose    TEXT PRIMARY KEY,
    kid        TEXT NOT NULL,
    pkcs8      BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
