-- The message loop: bots, channel accounts, contacts, conversations, messages,
-- the job queue and the webhook log.

CREATE TABLE bots (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    name            TEXT NOT NULL,
    description     TEXT,
    fallback_reply  TEXT NOT NULL,
    active          BIGINT NOT NULL DEFAULT 1,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    created_by      TEXT,
    deleted_at      BIGINT
);
CREATE INDEX bots_tenant ON bots (tenant_id, id);

-- Secrets (auth tokens, app secrets, …) live in sealed_secrets with
-- owner_kind = 'account'; settings_json holds only what is not secret.
CREATE TABLE channel_accounts (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    bot_id          TEXT NOT NULL REFERENCES bots (id),
    kind            TEXT NOT NULL,
    name            TEXT NOT NULL,
    external_id     TEXT,
    settings_json   TEXT NOT NULL,
    active          BIGINT NOT NULL DEFAULT 1,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    created_by      TEXT,
    deleted_at      BIGINT
);
CREATE INDEX channel_accounts_tenant ON channel_accounts (tenant_id, id);

CREATE TABLE contacts (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    account_id       TEXT NOT NULL REFERENCES channel_accounts (id),
    channel_user_id  TEXT NOT NULL,
    display_name     TEXT,
    phone_e164       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (account_id, channel_user_id)
);

CREATE TABLE conversations (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    account_id       TEXT NOT NULL REFERENCES channel_accounts (id),
    bot_id           TEXT NOT NULL,
    contact_id       TEXT NOT NULL REFERENCES contacts (id),
    state            TEXT NOT NULL,
    last_inbound_at  BIGINT,
    last_message_at  BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    closed_at        BIGINT
);
CREATE UNIQUE INDEX conversations_open ON conversations (account_id, contact_id) WHERE closed_at IS NULL;
CREATE INDEX conversations_tenant ON conversations (tenant_id, id);

-- An inbound message is stored as it arrives, with who sent it; a worker then
-- files it into its contact's conversation (conversation_id is NULL until then),
-- so that a webhook costs one row and its job.
CREATE TABLE messages (
    id                   TEXT PRIMARY KEY,
    tenant_id            TEXT NOT NULL,
    conversation_id      TEXT REFERENCES conversations (id),
    account_id           TEXT NOT NULL,
    from_id              TEXT,
    from_name            TEXT,
    from_phone           TEXT,
    direction            TEXT NOT NULL,
    sender               TEXT NOT NULL,
    provider_message_id  TEXT,
    kind                 TEXT NOT NULL,
    body                 TEXT,
    media_json           TEXT,
    status               TEXT NOT NULL,
    error_code           TEXT,
    error_message        TEXT,
    reply_to             TEXT,
    request_id           TEXT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
-- A provider's retried webhook finds its message here and does nothing more.
CREATE UNIQUE INDEX messages_provider_id ON messages (account_id, direction, provider_message_id);
CREATE INDEX messages_conversation ON messages (conversation_id, id);

-- The job queue. Jobs with the same queue_key (a conversation) run one at a
-- time, oldest first; others run in parallel.
CREATE TABLE jobs (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    queue_key     TEXT,
    state         TEXT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    max_attempts  BIGINT NOT NULL,
    run_at        BIGINT NOT NULL,
    lease_until   BIGINT,
    lease_owner   TEXT,
    last_error    TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    finished_at   BIGINT
);
CREATE INDEX jobs_due ON jobs (state, run_at);
CREATE INDEX jobs_queue_key ON jobs (queue_key, state);
CREATE INDEX jobs_tenant ON jobs (tenant_id, state, id);

CREATE TABLE webhook_logs (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT,
    account_id    TEXT,
    channel       TEXT NOT NULL,
    method        TEXT NOT NULL,
    path          TEXT NOT NULL,
    headers_json  TEXT NOT NULL,
    body          TEXT,
    status        BIGINT NOT NULL,
    duration_us   BIGINT NOT NULL,
    outcome       TEXT NOT NULL,
    error         TEXT,
    request_id    TEXT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX webhook_logs_tenant ON webhook_logs (tenant_id, id);
CREATE INDEX webhook_logs_created ON webhook_logs (created_at);
