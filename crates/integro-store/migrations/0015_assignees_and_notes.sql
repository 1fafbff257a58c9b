-- The agent a conversation is assigned to (a user of the tenant), and the
-- agents' private notes on a conversation (never sent to the contact).
-- No index of its own: every message moves a conversation's updated_at, so
-- each index on it is paid on the message path; "assigned to me" walks
-- conversations_tenant_updated (0014) like the unfiltered inbox.
ALTER TABLE conversations ADD COLUMN assignee_id TEXT;

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
