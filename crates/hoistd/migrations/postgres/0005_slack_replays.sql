-- hoistd schema (PostgreSQL), version 5: signatures of the Slack posts
-- already taken, so a post replayed while its timestamp is still fresh is
-- refused, by whichever instance it reaches (rule 13). A row is kept until
-- the post could no longer pass the timestamp check (`kept_until`, ms),
-- then purged.
CREATE TABLE slack_replays (
    signature  TEXT PRIMARY KEY,
    kept_until BIGINT NOT NULL
);
CREATE INDEX slack_replays_kept_until ON slack_replays (kept_until);
