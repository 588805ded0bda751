-- hoistd schema, version 18: the SSH CA public keys `hoistd serve` has
-- signed certificates with (OpenSSH lines), when each was first and last
-- started with, in milliseconds since 1970. `hoistd ssh krl` revokes a
-- serial under every one of them, so a KRL written beside the broker
-- names the CA its certificates carry even when that key is not the one
-- this database keeps.
CREATE TABLE ssh_authorities (
    public_key TEXT PRIMARY KEY,
    first_at   INTEGER NOT NULL,
    last_at    INTEGER NOT NULL
);
