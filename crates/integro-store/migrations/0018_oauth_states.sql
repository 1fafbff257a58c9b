-- OAuth 2.0 authorizations in progress (an X account being connected):
-- the state's hash, whom it is for and who started it. The PKCE verifier
-- is sealed in sealed_secrets (owner_kind 'oauth_state', owner_id the
-- state's hash). Taken once; expired ones are deleted by retention.
CREATE TABLE oauth_states (
    state_hash    TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    redirect_uri  TEXT NOT NULL,
    actor_kind    TEXT NOT NULL,
    actor_id      TEXT,
    actor_label   TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
