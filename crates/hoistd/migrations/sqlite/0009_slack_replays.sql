-- hoistd schema, version 9: signatures of the Slack posts already taken,
-- so a post replayed while its timestamp is still fresh is refused. A row
-- is kept until the post could no longer pass the timestamp check
-- (`kept_until`, ms), then purged; the signature is the key, so of two
-- brokers given the same post exactly one takes it.
CREATE TABLE slack_replays (
    signature  TEXT PRIMARY KEY,
    kept_until INTEGER NOT NULL
);
CREATE INDEX slack_replays_kept_until ON slack_replays (kept_until);
