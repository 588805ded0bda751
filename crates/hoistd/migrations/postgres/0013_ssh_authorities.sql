-- hoistd schema (PostgreSQL), version 13: as SQLite's version 18, the SSH
-- CA public keys `hoistd serve` has signed certificates with (OpenSSH
-- lines), when each was first and last started with, in milliseconds since
-- 1970, so `hoistd ssh krl` revokes a serial under every one of them.
CREATE TABLE ssh_authorities (
    public_key TEXT PRIMARY KEY,
    first_at   BIGINT NOT NULL,
    last_at    BIGINT NOT NULL
);
