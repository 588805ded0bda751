-- hoistd schema, version 4: grants that reach target systems.
--
-- Each grant whose role names a target has its access there: where it is in
-- its life and why the last attempt failed. The outbox keeps what must still
-- happen at a target (provision, deprovision), written in the same
-- transaction as the grant change that calls for it, so a crash loses none;
-- the worker records each outcome. Nothing secret is kept in any of these.

CREATE TABLE grant_access (
    grant_id        TEXT PRIMARY KEY REFERENCES grants (id),
    target          TEXT NOT NULL,
    kind            TEXT NOT NULL,
    access_state    TEXT NOT NULL CHECK (access_state IN
                        ('provisioning', 'live', 'failed', 'removing', 'removed')),
    access_reason   TEXT,
    attempts        INTEGER NOT NULL CHECK (attempts >= 0),
    next_attempt_at INTEGER,
    access_updated  INTEGER NOT NULL
);
CREATE INDEX grant_access_target ON grant_access (target, access_state);

CREATE TABLE target_effects (
    id              TEXT PRIMARY KEY,
    grant_id        TEXT NOT NULL REFERENCES grants (id),
    target          TEXT NOT NULL,
    action          TEXT NOT NULL CHECK (action IN ('provision', 'deprovision')),
    attempts        INTEGER NOT NULL CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    -- Confirmed by the target, or superseded (a provision once its grant
    -- ended); NULL while it is still to be done.
    done_at         INTEGER
);
CREATE INDEX target_effects_due ON target_effects (next_attempt_at) WHERE done_at IS NULL;
CREATE INDEX target_effects_grant ON target_effects (grant_id);

-- Every call hoistd made to a webhook target: never its secret or body.
CREATE TABLE webhook_deliveries (
    id          TEXT PRIMARY KEY,
    target      TEXT NOT NULL,
    action      TEXT NOT NULL,
    grant_id    TEXT,
    status      INTEGER,
    duration_ms INTEGER NOT NULL,
    error       TEXT,
    at          INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_at ON webhook_deliveries (at);
