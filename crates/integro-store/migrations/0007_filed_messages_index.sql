-- A conversation's messages are indexed once filed into it. Inbound
-- messages arrive unfiled (conversation_id NULL until a worker files them),
-- and indexed over all messages each webhook wrote an entry for NULL that no
-- query reads (they all ask for one conversation): a B-tree insert per
-- webhook on the ingest path. Filing a message changes the indexed column,
-- so it writes its entry then, as it did before.
DROP INDEX messages_conversation;
CREATE INDEX messages_conversation ON messages (conversation_id, id) WHERE conversation_id IS NOT NULL;
