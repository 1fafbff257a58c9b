-- Invitations: a person joins a tenant by accepting a one-time token, and
-- sets their own password; nobody else ever does (the trust issue's account
-- takeover). A user's token generation is part of every access token: raising
-- it (removal from a tenant, disabling) ends the access tokens already issued.

CREATE TABLE invitations (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    email       TEXT NOT NULL,
    role        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT,
    accepted_at BIGINT,
    accepted_by TEXT,
    revoked_at  BIGINT
);
CREATE INDEX invitations_tenant ON invitations (tenant_id, id);

ALTER TABLE users ADD COLUMN token_generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN disabled_at BIGINT;
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
