-- hoistd schema (PostgreSQL), version 4: notifications to people (Slack,
-- Teams, JSON), as SQLite's version 8. The leader routes audit entries
-- after the cursor and writes the notifications with the new cursor in one
-- transaction; `dedup_key` keeps each event to one notification per
-- channel across instances. Nothing secret is kept.

CREATE TABLE notifications (
    ord             BIGINT GENERATED ALWAYS AS IDENTITY,
    id              TEXT PRIMARY KEY,
    dedup_key       TEXT NOT NULL UNIQUE,
    channel         TEXT NOT NULL,
    event           TEXT NOT NULL,
    notice          TEXT NOT NULL,
    attempts        BIGINT NOT NULL CHECK (attempts >= 0),
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    done_at         BIGINT,
    delivered       BOOLEAN NOT NULL
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE done_at IS NULL;

CREATE TABLE notification_deliveries (
    ord             BIGINT GENERATED ALWAYS AS IDENTITY,
    notification_id TEXT NOT NULL REFERENCES notifications (id),
    attempt         BIGINT NOT NULL CHECK (attempt >= 1),
    channel         TEXT NOT NULL,
    event           TEXT NOT NULL,
    status          INTEGER,
    duration_ms     BIGINT NOT NULL,
    error           TEXT,
    at              BIGINT NOT NULL
);
CREATE INDEX notification_deliveries_at ON notification_deliveries (at, ord);

CREATE TABLE notification_cursor (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL
);
INSERT INTO notification_cursor (id, seq) SELECT 1, COALESCE(MAX(seq), 0) FROM audit;
