-- Daily statistics for the usage page, per tenant, day (UTC) and channel
-- account. Rolled up from messages, conversations and transitions by one
-- process a minute behind their writers (message_stats.rs), so the message
-- path writes no counter of its own.
CREATE TABLE message_stats_daily (
    tenant_id          TEXT NOT NULL,
    day                TEXT NOT NULL,
    account_id         TEXT NOT NULL,
    inbound            BIGINT NOT NULL DEFAULT 0,
    outbound_bot       BIGINT NOT NULL DEFAULT 0,
    outbound_human     BIGINT NOT NULL DEFAULT 0,
    -- Bot replies that answer a contact's message, and the time they took.
    replies            BIGINT NOT NULL DEFAULT 0,
    reply_ms           BIGINT NOT NULL DEFAULT 0,
    conversations      BIGINT NOT NULL DEFAULT 0,
    handoffs           BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, account_id)
);

-- Delivery failures, counted when a send fails or a provider reports one
-- (both off the happy path), by the provider's error code ('' when none).
CREATE TABLE delivery_failures_daily (
    tenant_id   TEXT NOT NULL,
    day         TEXT NOT NULL,
    account_id  TEXT NOT NULL,
    code        TEXT NOT NULL,
    failures    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, account_id, code)
);

-- How far each rollup has read its source table (ids are UUIDv7, so in
-- time order); moved in the transaction that adds the counts.
CREATE TABLE stats_watermarks (
    source   TEXT PRIMARY KEY,
    last_id  TEXT NOT NULL
);

-- LLM calls' time (sum, ms) and the attempts that failed.
ALTER TABLE usage_daily ADD COLUMN latency_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_daily ADD COLUMN failed_requests BIGINT NOT NULL DEFAULT 0;
