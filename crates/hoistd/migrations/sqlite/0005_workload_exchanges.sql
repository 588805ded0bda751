-- hoistd schema, version 5: workload token exchanges. One task is one
-- grant: a workload token's task id (its `jti`, or the claim its rule
-- names) is exchanged once, and a second exchange is refused as a replay.
-- The row is kept past the token's end, so the refusal does not depend on
-- when anything is cleaned up.
CREATE TABLE workload_exchanges (
    task_key    TEXT PRIMARY KEY,
    principal   TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    redeemed_at INTEGER
);
