-- Posts a tenant publishes on one of its X accounts (#38): written by
-- agents, approved by admins, published once by a `publish_post` job
-- (`posts.rs`, `integro-worker/src/publish.rs`). The same SQL on SQLite and
-- PostgreSQL.
--
-- `state`: draft, pending_approval, scheduled, published, failed, rejected.
-- `approval` counts the approvals: a publish job carries the count it was
-- queued for and does nothing once the post was changed and approved again.
-- `publish_started_at` is set by the first publish attempt: from then on
-- the post can no longer be changed, and its own posts since then are where
-- X is asked whether an attempt whose answer was lost went out.
CREATE TABLE posts (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL,
    account_id          TEXT NOT NULL,
    state               TEXT NOT NULL,
    body                TEXT NOT NULL,
    media_urls          TEXT NOT NULL,
    made_with_ai        BIGINT NOT NULL DEFAULT 0,
    scheduled_at        BIGINT,
    reject_reason       TEXT,
    created_by          TEXT NOT NULL,
    approved_by         TEXT,
    approved_at         BIGINT,
    approval            BIGINT NOT NULL DEFAULT 0,
    publish_started_at  BIGINT,
    provider_post_id    TEXT,
    published_at        BIGINT,
    error_code          TEXT,
    error_message       TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
-- The tenant's list (by id, optionally by account or state) and its count
-- of unpublished posts.
CREATE INDEX posts_tenant ON posts (tenant_id, state, id);
CREATE INDEX posts_account ON posts (account_id, id);
-- One of our posts per X post: an adopted earlier attempt is never a
-- second post's.
CREATE UNIQUE INDEX posts_provider_post ON posts (account_id, provider_post_id);
