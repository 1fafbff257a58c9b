-- The inbox's labels, canned replies and unread marks (#36). The same SQL
-- on SQLite and PostgreSQL.

-- A tenant's labels (at most 100, `labels.rs`). `name_key` is the name in
-- lower case: "VIP" and "vip" are one label, shown as first written.
CREATE TABLE labels (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    name_key    TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX labels_tenant_name ON labels (tenant_id, name_key);

-- The labels on a conversation (at most 20). The inbox's label filter
-- reaches a label's conversations by `conversation_labels_label`; nothing
-- is added to `conversations`, whose indexes are paid on the message path.
CREATE TABLE conversation_labels (
    conversation_id  TEXT NOT NULL REFERENCES conversations (id),
    label_id         TEXT NOT NULL REFERENCES labels (id),
    tenant_id        TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, label_id)
);
CREATE INDEX conversation_labels_label ON conversation_labels (label_id, conversation_id);

-- Replies agents insert by shortcut (`/shortcut` in the message box).
CREATE TABLE canned_replies (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    shortcut    TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_by  TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX canned_replies_shortcut ON canned_replies (tenant_id, shortcut);

-- How far each user has read each conversation: the id of the latest
-- message shown to them (message ids grow with time). The contact's
-- messages after it are unread, counted along messages_conversation.
CREATE TABLE conversation_reads (
    user_id          TEXT NOT NULL,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id),
    tenant_id        TEXT NOT NULL,
    last_message_id  TEXT NOT NULL,
    read_at          BIGINT NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
);
