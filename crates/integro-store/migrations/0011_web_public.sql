-- Public mode of a web channel account: a website's chat widget talks to the
-- bot with a publishable key (stored as a hash; shown once) from the origins
-- listed here, and each visitor reads only their own conversation.

CREATE TABLE web_public (
    account_id      TEXT PRIMARY KEY REFERENCES channel_accounts (id),
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    enabled         BIGINT NOT NULL DEFAULT 0,
    key_hash        TEXT NOT NULL,
    key_prefix      TEXT NOT NULL,
    -- A JSON array of origins (`https://shop.example.com`), as browsers send them.
    allowed_origins TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    updated_by      TEXT
);
