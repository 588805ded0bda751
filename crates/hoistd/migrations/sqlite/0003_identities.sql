-- hoistd schema, version 3: who each person signing in through an OpenID
-- provider is. A provider identity (issuer, subject) is bound to one hoist
-- user on its first sign-in, and a user to one provider identity, so that a
-- later token claiming the same user name under another subject or issuer
-- is refused rather than taken for them.
CREATE TABLE identities (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, subject)
);
