-- hoistd schema, version 1. Times are Unix milliseconds (UTC).

CREATE TABLE requests (
    id                 TEXT PRIMARY KEY,
    kind               TEXT NOT NULL CHECK (kind IN ('access', 'extension')),
    role               TEXT NOT NULL,
    role_name          TEXT NOT NULL,
    requester          TEXT NOT NULL,
    justification      TEXT NOT NULL,
    ticket             TEXT,
    incident           TEXT,
    duration_secs      INTEGER NOT NULL CHECK (duration_secs > 0),
    starts_at          INTEGER,
    break_glass        INTEGER NOT NULL CHECK (break_glass IN (0, 1)),
    state              TEXT NOT NULL CHECK (state IN
                           ('pending', 'approved', 'active', 'expired', 'revoked',
                            'denied', 'cancelled', 'timed_out')),
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    lapses_at          INTEGER,
    approvals_required INTEGER NOT NULL CHECK (approvals_required >= 0),
    grant_id           TEXT,
    reason             TEXT,
    claim_by           TEXT,
    claim_until        INTEGER,
    ack_by             TEXT,
    ack_comment        TEXT,
    ack_at             INTEGER,
    -- A pending request always has a lapse time.
    CHECK (state <> 'pending' OR lapses_at IS NOT NULL)
);
CREATE INDEX requests_requester ON requests (requester, created_at);
CREATE INDEX requests_open ON requests (state, role) WHERE state IN ('pending', 'approved', 'active');
CREATE INDEX requests_grant ON requests (grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX requests_incident ON requests (incident) WHERE incident IS NOT NULL;
CREATE INDEX requests_break_glass ON requests (role) WHERE break_glass = 1 AND ack_at IS NULL;

CREATE TABLE reviews (
    request_id TEXT NOT NULL REFERENCES requests (id),
    reviewer   TEXT NOT NULL,
    decision   TEXT NOT NULL CHECK (decision IN ('approve', 'deny')),
    comment    TEXT,
    at         INTEGER NOT NULL,
    -- Each approver counts once.
    PRIMARY KEY (request_id, reviewer)
);

CREATE TABLE grants (
    id            TEXT PRIMARY KEY,
    request_id    TEXT NOT NULL REFERENCES requests (id),
    role          TEXT NOT NULL,
    role_name     TEXT NOT NULL,
    holder        TEXT NOT NULL,
    starts_at     INTEGER NOT NULL,
    -- A grant always ends.
    expires_at    INTEGER NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('active', 'expired', 'revoked')),
    ended_at      INTEGER,
    revoked_by    TEXT,
    revoke_reason TEXT,
    break_glass   INTEGER NOT NULL CHECK (break_glass IN (0, 1)),
    ticket        TEXT,
    incident      TEXT,
    justification TEXT NOT NULL,
    CHECK (expires_at > starts_at),
    CHECK (state = 'active' OR ended_at IS NOT NULL)
);
CREATE INDEX grants_holder ON grants (holder, starts_at);
CREATE INDEX grants_active ON grants (expires_at) WHERE state = 'active';

CREATE TABLE idempotency_keys (
    requester  TEXT NOT NULL,
    key        TEXT NOT NULL,
    body_hash  TEXT NOT NULL,
    request_id TEXT NOT NULL REFERENCES requests (id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (requester, key)
);

CREATE TABLE audit (
    seq        INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    subject    TEXT,
    role       TEXT,
    request_id TEXT,
    grant_id   TEXT,
    incident   TEXT,
    reason     TEXT,
    details    TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_subject ON audit (subject, seq);
CREATE INDEX audit_actor ON audit (actor, seq);
CREATE INDEX audit_incident ON audit (incident) WHERE incident IS NOT NULL;

-- The audit log is append-only: the database itself refuses edits.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    pkcs8      BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
