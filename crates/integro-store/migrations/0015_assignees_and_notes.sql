-- The agent a conversation is assigned to (a user of the tenant), and the
-- agents' private notes on a conversation (never sent to the contact).
ALTER TABLE conversations ADD COLUMN assignee_id TEXT;
CREATE INDEX conversations_assignee ON conversations (tenant_id, assignee_id, updated_at);

CREATE TABLE conversation_notes (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id),
    author_id        TEXT,
    author_label     TEXT NOT NULL,
    body             TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX conversation_notes_conversation ON conversation_notes (conversation_id, id);
