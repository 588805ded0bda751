-- hoistd schema (PostgreSQL), version 19: as SQLite's version 25, when a
-- request's requester last signed in at their identity provider, as the
-- token it was filed with said; NULL where it did not, and for requests
-- filed by an instance from before this version.
ALTER TABLE requests ADD COLUMN signed_in_at BIGINT;
