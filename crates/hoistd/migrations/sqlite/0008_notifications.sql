-- hoistd schema, version 8: notifications to people (Slack, Teams, JSON).
--
-- The leader reads the audit log after the cursor, routes each event to the
-- policy's channels, and writes the notifications and the new cursor in one
-- transaction; reminders are written by a periodic scan. `dedup_key` says
-- which event a notification is for on which channel (an audit entry, or a
-- reminder of one request or grant end), so none is written twice. Each is
-- tried until delivered or given up; every attempt is in the delivery log.
-- Nothing secret is kept: no channel URL, no signature, no body.

CREATE TABLE notifications (
    id              TEXT PRIMARY KEY,
    dedup_key       TEXT NOT NULL UNIQUE,
    channel         TEXT NOT NULL,
    event           TEXT NOT NULL,
    notice          TEXT NOT NULL,
    attempts        INTEGER NOT NULL CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    -- Delivered, or given up; NULL while it is still to be sent.
    done_at         INTEGER,
    delivered       INTEGER NOT NULL CHECK (delivered IN (0, 1))
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE done_at IS NULL;

CREATE TABLE notification_deliveries (
    notification_id TEXT NOT NULL REFERENCES notifications (id),
    attempt         INTEGER NOT NULL CHECK (attempt >= 1),
    channel         TEXT NOT NULL,
    event           TEXT NOT NULL,
    status          INTEGER,
    duration_ms     INTEGER NOT NULL,
    error           TEXT,
    at              INTEGER NOT NULL
);
CREATE INDEX notification_deliveries_at ON notification_deliveries (at);

-- The last audit entry routed. Starts at the log's head: what happened
-- before notifications existed is not announced now.
CREATE TABLE notification_cursor (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO notification_cursor (id, seq) SELECT 1, COALESCE(MAX(seq), 0) FROM audit;
