-- hoistd schema, version 11: each effect keeps what it gives or takes at
-- its target, the role's `[roles.access]` as the grant was activated with
-- it (JSON), so that a policy changed since removes what was given, not
-- what the role gives now. NULL for effects queued before.
ALTER TABLE target_effects ADD COLUMN access TEXT;
