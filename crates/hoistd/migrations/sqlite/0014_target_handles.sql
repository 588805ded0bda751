-- hoistd schema, version 14: what a target made for a grant that it cannot
-- find again by itself without reading everything it holds (an OpenBao
-- token's accessor: enough to look the token up or revoke it, never to use
-- it). Removal revokes what is recorded here and forgets it.
--
-- The handle `*` marks a grant whose access may include what was made before
-- handles were recorded: its removal also searches the target (OpenBao's
-- accessor list) for what names the grant. Grants that may hold access now
-- are marked here; none made from now on is.
CREATE TABLE target_handles (
    target   TEXT NOT NULL,
    grant_id TEXT NOT NULL REFERENCES grants (id),
    handle   TEXT NOT NULL,
    at       INTEGER NOT NULL,
    PRIMARY KEY (target, grant_id, handle)
);
INSERT INTO target_handles (target, grant_id, handle, at)
SELECT target, grant_id, '*', access_updated FROM grant_access
WHERE kind = 'openbao' AND access_state <> 'removed';
