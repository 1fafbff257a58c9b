-- The reply engine: personas, AI credentials and profiles, rules, usage and
-- budgets, conversation memory and handoff, alerts.

-- persona_json: name, tone, interests, language, system prompt.
-- settings_json: memory, bursts, rate limit, filters, handoff timeout, time zone
-- (integro_store::bots::BotSettings); absent fields take their defaults.
ALTER TABLE bots ADD COLUMN ai_profile_id TEXT;
ALTER TABLE bots ADD COLUMN persona_json TEXT;
ALTER TABLE bots ADD COLUMN settings_json TEXT NOT NULL DEFAULT '{}';
-- Bumped on every rule change: workers keep compiled rule sets by (bot, version).
ALTER TABLE bots ADD COLUMN rules_version BIGINT NOT NULL DEFAULT 0;

-- monthly_token_budget, alert webhook (its URL is sealed: Slack's carries a token).
ALTER TABLE tenants ADD COLUMN settings_json TEXT NOT NULL DEFAULT '{}';

-- The API key lives in sealed_secrets with owner_kind = 'ai_credential'.
CREATE TABLE ai_credentials (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    provider    TEXT NOT NULL,
    base_url    TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    created_by  TEXT,
    deleted_at  BIGINT
);
CREATE INDEX ai_credentials_tenant ON ai_credentials (tenant_id, id);

CREATE TABLE ai_profiles (
    id                   TEXT PRIMARY KEY,
    tenant_id            TEXT NOT NULL REFERENCES tenants (id),
    name                 TEXT NOT NULL,
    credential_id        TEXT NOT NULL REFERENCES ai_credentials (id),
    model                TEXT NOT NULL,
    temperature          DOUBLE PRECISION,
    max_output_tokens    BIGINT NOT NULL,
    timeout_ms           BIGINT NOT NULL,
    fallback_profile_id  TEXT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    created_by           TEXT,
    deleted_at           BIGINT
);
CREATE INDEX ai_profiles_tenant ON ai_profiles (tenant_id, id);

CREATE TABLE rules (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    bot_id         TEXT NOT NULL REFERENCES bots (id),
    name           TEXT,
    priority       BIGINT NOT NULL,
    match_kind     TEXT NOT NULL,
    pattern        TEXT,
    keywords_json  TEXT NOT NULL,
    condition      TEXT,
    reply          TEXT,
    media_url      TEXT,
    action_json    TEXT,
    active         BIGINT NOT NULL DEFAULT 1,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    created_by     TEXT,
    deleted_at     BIGINT
);
CREATE INDEX rules_bot ON rules (bot_id, id);

-- vars_json: conversation variables set by rules. memory_from: history before
-- this time (ms) is not given to the LLM (a reset). rate_notice_at: when the
-- contact was last told they write too fast.
ALTER TABLE conversations ADD COLUMN vars_json TEXT NOT NULL DEFAULT '{}';
ALTER TABLE conversations ADD COLUMN memory_from BIGINT;
ALTER TABLE conversations ADD COLUMN handed_off_at BIGINT;
ALTER TABLE conversations ADD COLUMN rate_notice_at BIGINT;

CREATE TABLE conversation_transitions (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id),
    from_state       TEXT NOT NULL,
    to_state         TEXT NOT NULL,
    reason           TEXT NOT NULL,
    actor            TEXT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX conversation_transitions_conversation ON conversation_transitions (conversation_id, id);

-- Outbound: which rule or AI profile answered, and the tokens spent.
-- Inbound: handled_at is set once a reply job has answered it (alone or with
-- others of a burst), so later jobs of the same burst stay silent.
ALTER TABLE messages ADD COLUMN rule_id TEXT;
ALTER TABLE messages ADD COLUMN ai_profile_id TEXT;
ALTER TABLE messages ADD COLUMN input_tokens BIGINT;
ALTER TABLE messages ADD COLUMN output_tokens BIGINT;
ALTER TABLE messages ADD COLUMN handled_at BIGINT;
CREATE INDEX messages_unfiled ON messages (account_id, from_id) WHERE conversation_id IS NULL;

CREATE TABLE usage_daily (
    tenant_id      TEXT NOT NULL,
    bot_id         TEXT NOT NULL,
    day            TEXT NOT NULL,
    requests       BIGINT NOT NULL,
    input_tokens   BIGINT NOT NULL,
    output_tokens  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, bot_id, day)
);

-- What the engine did that an operator should know about: budget exhausted,
-- every AI option failed, a credential rejected, alerts sent or suppressed.
CREATE TABLE engine_events (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    bot_id           TEXT,
    conversation_id  TEXT,
    kind             TEXT NOT NULL,
    detail           TEXT NOT NULL,
    alerted          BIGINT NOT NULL DEFAULT 0,
    -- Events that happen once per period (a budget spent this month, an
    -- alert this hour) carry a key; a second one of the period is not stored.
    dedupe_key       TEXT,
    created_at       BIGINT NOT NULL
);
CREATE UNIQUE INDEX engine_events_dedupe ON engine_events (dedupe_key);
CREATE INDEX engine_events_tenant ON engine_events (tenant_id, id);
CREATE INDEX engine_events_kind ON engine_events (tenant_id, kind, created_at);
