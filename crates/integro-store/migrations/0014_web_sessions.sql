-- Dashboard sign-ins: a browser holds the session's token in an HttpOnly
-- cookie; only its hash is stored. A session ends when it expires, when it is
-- revoked, or when the user's token generation rises (password reset,
-- removal from a tenant), like the API's tokens.
CREATE TABLE web_sessions (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (id),
    token_hash        TEXT NOT NULL UNIQUE,
    csrf_token        TEXT NOT NULL,
    token_generation  BIGINT NOT NULL,
    tenant_id         TEXT,
    user_agent        TEXT,
    created_at        BIGINT NOT NULL,
    last_seen_at      BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    revoked_at        BIGINT
);
CREATE INDEX web_sessions_user ON web_sessions (user_id, created_at);

-- The inbox's live view asks which of a tenant's conversations changed since
-- it last looked.
CREATE INDEX conversations_tenant_updated ON conversations (tenant_id, updated_at);
