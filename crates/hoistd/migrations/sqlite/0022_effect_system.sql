-- The system (a target kind's `system()`: a host and port, or an origin)
-- each effect was queued for: a removal runs only where its grant's access
-- was given, even when the target's name has been pointed elsewhere since.
-- NULL for an effect queued before hoistd kept it.
ALTER TABLE target_effects ADD COLUMN system TEXT;
