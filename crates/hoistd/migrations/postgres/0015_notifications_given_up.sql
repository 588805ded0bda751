-- hoistd schema (PostgreSQL), version 15: as SQLite's version 20,
-- notifications given up (retried for a day, or their channel gone),
-- counted for `hoistd_notifications_given_up` at every metrics read; few,
-- so the count reads only them.
CREATE INDEX notifications_given_up ON notifications (done_at) WHERE done_at IS NOT NULL AND NOT delivered;
