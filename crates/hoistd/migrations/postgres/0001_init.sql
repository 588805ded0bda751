-- hoistd schema for PostgreSQL, version 1: the SQLite schema's five
-- versions at once (migrations/sqlite/), with the same columns, keys and
-- checks. Times are Unix milliseconds (UTC) as on SQLite, so both stores
-- read and write the same values. `ord` columns keep insertion order where
-- SQLite's rowid did: lists of rows filed in the same millisecond come in
-- the order they were written.

CREATE TABLE requests (
    ord                BIGINT GENERATED ALWAYS AS IDENTITY,
    id                 TEXT PRIMARY KEY,
    kind               TEXT NOT NULL CHECK (kind IN ('access', 'extension')),
    role               TEXT NOT NULL,
    role_name          TEXT NOT NULL,
    requester          TEXT NOT NULL,
    justification      TEXT NOT NULL,
    ticket             TEXT,
    incident           TEXT,
    duration_secs      BIGINT NOT NULL CHECK (duration_secs > 0),
    starts_at          BIGINT,
    break_glass        BOOLEAN NOT NULL,
    state              TEXT NOT NULL CHECK (state IN
                           ('pending', 'approved', 'active', 'expired', 'revoked',
                            'denied', 'cancelled', 'timed_out')),
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    lapses_at          BIGINT,
    approvals_required BIGINT NOT NULL CHECK (approvals_required >= 0),
    grant_id           TEXT,
    reason             TEXT,
    claim_by           TEXT,
    claim_until        BIGINT,
    ack_by             TEXT,
    ack_comment        TEXT,
    ack_at             BIGINT,
    -- A pending request always has a lapse time.
    CHECK (state <> 'pending' OR lapses_at IS NOT NULL)
);
CREATE INDEX requests_created ON requests (created_at, ord);
CREATE INDEX requests_requester ON requests (requester, created_at);
CREATE INDEX requests_requester_role ON requests (requester, role);
CREATE INDEX requests_open ON requests (state, role) WHERE state IN ('pending', 'approved', 'active');
CREATE INDEX requests_grant ON requests (grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX requests_incident ON requests (incident) WHERE incident IS NOT NULL;
CREATE INDEX requests_break_glass ON requests (role) WHERE break_glass AND ack_at IS NULL;
CREATE INDEX requests_pending_lapse ON requests (lapses_at) WHERE state = 'pending';
CREATE INDEX requests_approved_start ON requests ((coalesce(starts_at, 0))) WHERE state = 'approved';

CREATE TABLE reviews (
    request_id TEXT NOT NULL REFERENCES requests (id),
    reviewer   TEXT NOT NULL,
    decision   TEXT NOT NULL CHECK (decision IN ('approve', 'deny')),
    comment    TEXT,
    at         BIGINT NOT NULL,
    -- Each approver counts once.
    PRIMARY KEY (request_id, reviewer)
);

CREATE TABLE grants (
    id            TEXT PRIMARY KEY,
    request_id    TEXT NOT NULL REFERENCES requests (id),
    role          TEXT NOT NULL,
    role_name     TEXT NOT NULL,
    holder        TEXT NOT NULL,
    starts_at     BIGINT NOT NULL,
    -- A grant always ends.
    expires_at    BIGINT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('active', 'expired', 'revoked')),
    ended_at      BIGINT,
    revoked_by    TEXT,
    revoke_reason TEXT,
    break_glass   BOOLEAN NOT NULL,
    ticket        TEXT,
    incident      TEXT,
    justification TEXT NOT NULL,
    CHECK (expires_at > starts_at),
    CHECK (state = 'active' OR ended_at IS NOT NULL)
);
CREATE INDEX grants_holder ON grants (holder, starts_at);
CREATE INDEX grants_starts ON grants (starts_at, id);
CREATE INDEX grants_active ON grants (expires_at) WHERE state = 'active';

CREATE TABLE idempotency_keys (
    requester  TEXT NOT NULL,
    key        TEXT NOT NULL,
    body_hash  TEXT NOT NULL,
    request_id TEXT NOT NULL REFERENCES requests (id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (requester, key)
);

CREATE TABLE audit (
    seq        BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    subject    TEXT,
    role       TEXT,
    request_id TEXT,
    grant_id   TEXT,
    incident   TEXT,
    reason     TEXT,
    -- The compact JSON text the entry's hash covers, kept as text: jsonb
    -- would reorder its keys and change what was hashed.
    details    TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_subject ON audit (subject, seq);
CREATE INDEX audit_actor ON audit (actor, seq);
CREATE INDEX audit_incident ON audit (incident) WHERE incident IS NOT NULL;

-- The audit log is append-only: the database itself refuses edits.
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    pkcs8      BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE identities (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    "user"     TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);

CREATE TABLE grant_access (
    grant_id        TEXT PRIMARY KEY REFERENCES grants (id),
    target          TEXT NOT NULL,
    kind            TEXT NOT NULL,
    access_state    TEXT NOT NULL CHECK (access_state IN
                        ('provisioning', 'live', 'failed', 'removing', 'removed')),
    access_reason   TEXT,
    attempts        BIGINT NOT NULL CHECK (attempts >= 0),
    next_attempt_at BIGINT,
    access_updated  BIGINT NOT NULL
);
CREATE INDEX grant_access_target ON grant_access (target, access_state);

CREATE TABLE target_effects (
    ord             BIGINT GENERATED ALWAYS AS IDENTITY,
    id              TEXT PRIMARY KEY,
    grant_id        TEXT NOT NULL REFERENCES grants (id),
    target          TEXT NOT NULL,
    action          TEXT NOT NULL CHECK (action IN ('provision', 'deprovision')),
    attempts        BIGINT NOT NULL CHECK (attempts >= 0),
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    done_at         BIGINT
);
CREATE INDEX target_effects_due ON target_effects (next_attempt_at) WHERE done_at IS NULL;
CREATE INDEX target_effects_grant ON target_effects (grant_id);

CREATE TABLE webhook_deliveries (
    ord         BIGINT GENERATED ALWAYS AS IDENTITY,
    id          TEXT PRIMARY KEY,
    target      TEXT NOT NULL,
    action      TEXT NOT NULL,
    grant_id    TEXT,
    status      INTEGER,
    duration_ms BIGINT NOT NULL,
    error       TEXT,
    at          BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_at ON webhook_deliveries (at, ord);

CREATE TABLE workload_exchanges (
    task_key    TEXT PRIMARY KEY,
    principal   TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    redeemed_at BIGINT
);

-- Which instance leads (runs the reaper, the outbox worker and the
-- reconciler): a lease renewed by its holder, taken over once it lapses.
-- The epoch grows at each change of holder, so a leader that lost its
-- lease while paused can tell that it did (fencing).
CREATE TABLE leadership (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    epoch      BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
