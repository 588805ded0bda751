-- hoistd schema (PostgreSQL), version 10: as SQLite's version 14, what a
-- target made for a grant that it cannot find again by itself without
-- reading everything it holds (an OpenBao token's accessor). The handle `*`
-- marks a grant whose access may include what was made before handles were
-- recorded: its removal also searches the target.
CREATE TABLE target_handles (
    target   TEXT NOT NULL,
    grant_id TEXT NOT NULL REFERENCES grants (id),
    handle   TEXT NOT NULL,
    at       BIGINT NOT NULL,
    PRIMARY KEY (target, grant_id, handle)
);
INSERT INTO target_handles (target, grant_id, handle, at)
SELECT target, grant_id, '*', access_updated FROM grant_access
WHERE kind = 'openbao' AND access_state <> 'removed';
